"""A case's labels in canonical orientation, read with the least memory and checked (the
volume's stored values: :mod:`livertumor.data.slice_images`). Shared by the survey and the
slice files."""

from __future__ import annotations

import numpy as np

from ..data.slice_images import stored_canonical
from ..data.volumes import NiftiVolume, check_same_grid, read_mask


def _read_labels(path, geometry) -> tuple[np.ndarray, int]:
    """The mask in canonical orientation and its largest label, checked like ``read_mask``.

    Integer masks without scaling (all of LiTS) are checked with one min/max pass and returned
    in their stored dtype (:func:`stored_canonical`: memory-mapped for ``.nii``), with no
    transposing copy. Anything else, including a mask with bad labels, goes through
    :func:`livertumor.data.volumes.read_mask`, which converts it or raises the ``LabelError`` that
    names the values.
    """
    vol = NiftiVolume(path)
    check_same_grid(geometry, vol.geometry)
    if np.issubdtype(vol.stored_dtype, np.integer) and vol.slope is None and vol.inter is None:
        stored = stored_canonical(vol)
        hi = int(stored.max())
        lo = 0 if np.issubdtype(stored.dtype, np.unsignedinteger) else int(stored.min())
        if lo >= 0 and hi <= 2:
            return stored, hi
    mask = read_mask(path, like=geometry)
    return mask, int(mask.max())
