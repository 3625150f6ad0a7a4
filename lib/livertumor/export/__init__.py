"""Slice export: a LiTS folder -> JPEG images, PNG masks, ``manifest.csv`` and
``preprocessing.json``, split by patient, parallel, resumable and shardable
(see ``docs/export.md``)."""

from .patient_split import split_cases
from .pipeline import export_slices
from .result import ExportResult, load_export, tree_digest
from .settings import ExportSettings
from .shards import merge_export, parse_shard, shard_plan

__all__ = ["ExportResult", "ExportSettings", "export_slices", "load_export", "merge_export",
           "parse_shard", "shard_plan", "split_cases", "tree_digest"]
