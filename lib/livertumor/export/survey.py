"""The survey of one case, run in the worker processes (module-level, so that it pickles): the
mask is checked against the volume, its largest label gives tumor presence, and the integer HU
values of the exported slices are counted (``docs/export.md``, pass 1)."""

from __future__ import annotations

import numpy as np

from ..data.roi import Box, liver_box
from ..data.slice_images import hu_of_codes, lut_dtype, stored_canonical
from ..data.volumes import NiftiVolume
from ..errors import LiverTumorError
from .stored_values import _read_labels

_HU_RANGE = (-32768, 32767)  # the survey's HU histogram range (int16)


def _pool_rounded(hu: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of HU values rounded to integers (clipped to int16): (values, counts)."""
    rounded = np.clip(np.rint(hu), *_HU_RANGE).astype(np.int64)
    values, inverse = np.unique(rounded, return_inverse=True)
    pooled = np.zeros(values.size, np.int64)
    np.add.at(pooled, inverse.reshape(-1), counts)
    return values, pooled


def _hu_histogram(vol: NiftiVolume, stored: np.ndarray, every: int, box: Box | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of the integer HU values of slices 0, every, 2 * every, ... of a volume (with
    ``box``: of the slices it spans, inside its rows and columns).

    ``stored`` is :func:`stored_canonical` of ``vol``. 8/16-bit integer data: a bincount of
    the stored codes per exported slice, mapped to HU once per distinct code. Other data
    (float, int32): slice by slice in float32; float data is read slice by slice in full, so
    that NaN or infinite voxels anywhere raise ``NiftiReadError``.

    Returns
    -------
    (values, counts): int64 arrays, values increasing (HU rounded, within int16)
    """
    n_slices = stored.shape[2]
    plane = box.plane if box is not None else (slice(None), slice(None))
    counted = set(exported_slices(n_slices, every, box))
    if lut_dtype(stored.dtype):
        lo, hi = (int(v) for v in (np.iinfo(stored.dtype).min, np.iinfo(stored.dtype).max))
        counts = np.zeros(hi - lo + 1, np.int64)
        for k in sorted(counted):
            codes = stored[:, :, k][plane].astype(np.int32).reshape(-1)
            if lo:
                codes -= lo
            counts += np.bincount(codes, minlength=counts.size)
        present = np.flatnonzero(counts)
        return _pool_rounded(hu_of_codes(vol, present + lo), counts[present])
    offset = -_HU_RANGE[0]
    counts = np.zeros(_HU_RANGE[1] - _HU_RANGE[0] + 1, np.int64)
    step = 1 if np.issubdtype(stored.dtype, np.floating) else every
    for k in range(0, n_slices, step):
        hu = hu_of_codes(vol, stored[:, :, k])  # as hu_slice(k); raises on NaN / infinite
        if k in counted:
            idx = np.clip(np.rint(hu[plane]), *_HU_RANGE).astype(np.int64).reshape(-1) + offset
            counts += np.bincount(idx, minlength=counts.size)
    present = np.flatnonzero(counts)
    return present - offset, counts[present]


def exported_slices(n_slices: int, every: int, box: Box | None = None) -> list[int]:
    """Slice indices a case exports: 0, every, 2 * every, ...; with ``box``, those it spans
    (the count of a case is known from its survey)."""
    return [k for k in range(0, n_slices, every) if box is None or box.contains_slice(k)]


def _survey_case(job: tuple) -> dict:
    """Check one case, find its liver box (``roi_margin_mm`` not None: a ROI export) and count
    its HU histogram; never raises on bad data. A case without liver has no box: it keeps its
    place in the split (the split must equal that of a whole-slice export of the same data)
    and exports no crop."""
    case_id, volume_path, mask_path, every, roi_margin_mm = job
    box = None
    try:
        vol = NiftiVolume(volume_path)
        mask, top_label = _read_labels(mask_path, vol.geometry)
        if roi_margin_mm is not None:
            box = liver_box(mask, vol.geometry.spacing, roi_margin_mm)
        del mask  # not kept
        n_slices = int(vol.geometry.canonical_shape[2])
        if roi_margin_mm is not None and box is None:
            values = counts = np.zeros(0, np.int64)
        else:
            values, counts = _hu_histogram(vol, stored_canonical(vol), every, box)
    except LiverTumorError as err:
        return {"case_id": case_id, "ok": False, "reason": str(err)}
    return {"case_id": case_id, "ok": True, "has_tumor": top_label == 2, "n_slices": n_slices,
            "box": box.as_dict() if box is not None else None,
            "n_exported": len(exported_slices(n_slices, every, box))
            if roi_margin_mm is None or box is not None else 0,
            "hist_values": values.tolist(), "hist_counts": counts.tolist()}
