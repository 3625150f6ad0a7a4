"""Slice export: a LiTS folder -> JPEG images, PNG masks, ``manifest.csv`` and
``preprocessing.json``, split by patient, parallel, resumable and shardable
(see ``docs/export.md``)."""

from .pipeline import (
    ExportResult,
    ExportSettings,
    export_slices,
    load_export,
    merge_export,
    parse_shard,
    shard_plan,
    split_cases,
    tree_digest,
)

__all__ = ["ExportResult", "ExportSettings", "export_slices", "load_export", "merge_export",
           "parse_shard", "shard_plan", "split_cases", "tree_digest"]
