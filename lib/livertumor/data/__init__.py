"""Reading the data: NIfTI volumes in one orientation, the cases table, windowing, and the one
slice preprocessing shared by export and inference.

- :mod:`.volumes`: ``read_nii``, ``read_mask``, ``NiftiVolume``, ``Geometry``, ``write_like``
- :mod:`.cases`: ``find_cases`` (volumes paired with masks, header checks), ``data_fingerprint``
- :mod:`.windowing`: the report's ``windowed``, ``freqhist_bins``, ``hist_scaled``,
  ``to_nchan``, ``save_jpg``
- :mod:`.preprocessing`: one HU slice -> the uint8 model-input image
- :mod:`.slice_images`: ``SliceImager``, the same images through a table over stored values
- :mod:`.slices`: which axial slices of a label map to show
- :mod:`.roi`: the liver's box for the cascade's tumor stage (``liver_box``, ``crop``, ``paste``)
- :mod:`.dicom`: a DICOM CT series read as a volume (``DicomVolume``, ``read_dicom_series``,
  ``convert_dicom``, ``open_volume``); :mod:`.dicom_seg`: label maps as DICOM-SEG
"""

from .cases import case_statistics, data_fingerprint, find_cases, select_case, summarize_cases
from .preprocessing import slice_channels
from .slices import key_slices, largest_slice
from .volumes import (
    CANONICAL_AXCODES,
    LABELS,
    Geometry,
    NiftiVolume,
    read_geometry,
    read_mask,
    read_nii,
    write_like,
)
from .windowing import WINDOWS, freqhist_bins, hist_scaled, save_jpg, to_nchan, windowed

__all__ = [
    "CANONICAL_AXCODES", "LABELS", "WINDOWS", "Geometry", "NiftiVolume",
    "case_statistics", "data_fingerprint", "find_cases", "freqhist_bins", "hist_scaled",
    "key_slices", "largest_slice", "read_geometry", "read_mask", "read_nii", "save_jpg",
    "select_case", "slice_channels", "summarize_cases", "to_nchan", "windowed", "write_like",
]
