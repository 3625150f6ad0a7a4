"""A case's stored values in canonical orientation, read with the least memory: the volume's
codes (memory-mapped for ``.nii``), the mask's labels, and codes -> HU exactly as
``NiftiVolume.hu_slice`` scales them. Shared by the survey and the slice files."""

from __future__ import annotations

import numpy as np

from ..data.volumes import NiftiVolume, check_same_grid, read_mask


def _lut_dtype(dtype: np.dtype) -> bool:
    """Stored values that a lookup table over all codes can map (8- and 16-bit integers)."""
    return np.issubdtype(dtype, np.integer) and np.dtype(dtype).itemsize <= 2


def _stored_canonical(vol: NiftiVolume) -> np.ndarray:
    """The stored values of a volume in canonical orientation, with the least memory.

    ``.nii``: the memory-mapped view (``NiftiVolume.raw``), no copy. Compressed, unscaled
    integer data: read slab by slab into one array (``NiftiVolume.read`` in the stored dtype;
    ``raw`` would hold the whole decompressed stream a second time while it reads), whose
    axial slices are contiguous. Anything else: ``raw``. Raises ``NiftiReadError`` on a
    damaged stream.
    """
    unscaled_int = (np.issubdtype(vol.stored_dtype, np.integer) and vol.slope is None
                    and vol.inter is None)
    if unscaled_int and vol.path.name.endswith(".gz"):
        return vol.read(vol.stored_dtype)
    return vol.raw()


def _read_labels(path, geometry) -> tuple[np.ndarray, int]:
    """The mask in canonical orientation and its largest label, checked like ``read_mask``.

    Integer masks without scaling (all of LiTS) are checked with one min/max pass and returned
    in their stored dtype (:func:`_stored_canonical`: memory-mapped for ``.nii``), with no
    transposing copy. Anything else, including a mask with bad labels, goes through
    :func:`livertumor.data.volumes.read_mask`, which converts it or raises the ``LabelError`` that
    names the values.
    """
    vol = NiftiVolume(path)
    check_same_grid(geometry, vol.geometry)
    if np.issubdtype(vol.stored_dtype, np.integer) and vol.slope is None and vol.inter is None:
        stored = _stored_canonical(vol)
        lo, hi = int(stored.min()), int(stored.max())
        if lo >= 0 and hi <= 2:
            return stored, hi
    mask = read_mask(path, like=geometry)
    return mask, int(mask.max())


def _hu_of_codes(vol: NiftiVolume, codes: np.ndarray) -> np.ndarray:
    """float32 HU of stored values, computed exactly as ``NiftiVolume.hu_slice`` does."""
    return vol._scale(codes.astype(vol.stored_dtype), np.dtype(np.float32))
