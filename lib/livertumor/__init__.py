"""livertumor: liver and liver-tumor segmentation in CT (LiTS layout).

One sub-package per stage of the data flow (see lib/livertumor/README.md); the names most
users need are re-exported here:

- data: :func:`find_cases`, :func:`read_nii`, :func:`read_mask`, :class:`NiftiVolume`,
  :func:`read_geometry`, :func:`write_like`, :data:`WINDOWS`, :func:`windowed`,
  :func:`freqhist_bins`, :func:`hist_scaled`, :func:`to_nchan`, :func:`save_jpg`,
  :func:`largest_slice`, :func:`key_slices`; DICOM: :func:`read_dicom_series`,
  :class:`DicomVolume`, :func:`open_volume`, :func:`list_series`, :func:`convert_dicom`,
  :func:`write_dicom_seg`
- demo: :func:`make_demo_dataset`
- export: :func:`export_slices`, :func:`load_export`, :func:`split_cases`,
  :func:`merge_export` (sharded exports)
- evaluation: :func:`lits_scores`, :func:`score_files`, :func:`aggregate_scores`,
  :func:`detect_lesions`, :func:`slice_scores`
- training (Keras; loaded on first use so that ``import livertumor`` does not import
  TensorFlow): :func:`build_unet`, :func:`build_resnet50_unet`, :func:`load_model`,
  :class:`DiceCrossEntropy`, :func:`segmentation_metrics`, :class:`RegionDice`,
  :class:`RegionIoU`; inference: :func:`segment` (a NIfTI file or a DICOM folder in, a label
  map on its grid out)
"""

import importlib

from .data.cases import case_statistics, find_cases, select_case, summarize_cases
from .data.dicom import (
    DicomVolume,
    convert_dicom,
    list_series,
    open_volume,
    read_dicom_series,
)
from .data.dicom_seg import write_dicom_seg
from .data.slices import key_slices, largest_slice
from .data.volumes import (
    CANONICAL_AXCODES,
    LABELS,
    Geometry,
    NiftiVolume,
    read_geometry,
    read_mask,
    read_nii,
    write_like,
)
from .data.windowing import WINDOWS, freqhist_bins, hist_scaled, save_jpg, to_nchan, windowed
from .demo import make_demo_dataset
from .errors import (
    DicomReadError,
    EncoderWeightsError,
    GridMismatchError,
    LabelError,
    LiverTumorError,
    NiftiReadError,
    PairingError,
)
from .evaluation import (
    aggregate_detection,
    aggregate_scores,
    detect_lesions,
    lits_scores,
    mean_slice_scores,
    score_files,
    slice_scores,
)
from .export import (
    ExportResult,
    ExportSettings,
    export_slices,
    load_export,
    merge_export,
    split_cases,
)

__version__ = "0.1.0"

# Keras-dependent names (and segment, which loads models), imported on first access (PEP 562).
_LAZY = {
    "build_unet": "training.models", "build_resnet50_unet": "training.models",
    "load_model": "training.models",
    "DiceCrossEntropy": "training.losses", "segmentation_metrics": "training.metrics",
    "RegionDice": "training.metrics", "RegionIoU": "training.metrics",
    "segment": "inference.predict",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CANONICAL_AXCODES", "LABELS", "WINDOWS",
    "Geometry", "NiftiVolume", "DicomVolume",
    "DicomReadError", "EncoderWeightsError", "GridMismatchError", "LabelError", "LiverTumorError",
    "NiftiReadError", "PairingError",
    "case_statistics", "find_cases", "key_slices", "largest_slice", "select_case",
    "summarize_cases", "convert_dicom", "list_series", "open_volume", "read_dicom_series",
    "write_dicom_seg", "freqhist_bins", "hist_scaled", "make_demo_dataset",
    "read_geometry", "read_mask", "read_nii", "save_jpg", "to_nchan", "windowed", "write_like",
    "ExportResult", "ExportSettings", "export_slices", "load_export", "merge_export",
    "split_cases",
    "aggregate_detection", "aggregate_scores", "detect_lesions", "lits_scores",
    "mean_slice_scores", "score_files", "slice_scores",
    *_LAZY,
]
