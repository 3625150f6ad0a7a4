"""What the scoring functions take: the two structures of a label map, the checks of label
maps, voxel spacing and connectivity, and the bounding box every computation is cropped to.

Label maps are canonical (``read_mask``: shape (rows, columns, slices), 0 background,
1 liver, 2 tumor); as in the LiTS scoring program, liver is every label >= 1 and tumor is
label 2. Definitions and empty-mask rules of the metrics: ``docs/scoring.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import GridMismatchError, LabelError

STRUCTURES: tuple[str, ...] = ("liver", "tumor")
"""The scored structures: liver = labels >= 1, tumor = label 2."""


def structure_mask(labels: np.ndarray, structure: str) -> np.ndarray:
    """Boolean mask of one structure of a label map (same shape as ``labels``).

    ``"liver"`` is every label >= 1 (liver and tumor together), ``"tumor"`` is label 2.
    Raises ``ValueError`` for another name.

    >>> structure_mask(np.array([0, 1, 2]), "liver").tolist()
    [False, True, True]
    """
    if structure == "liver":
        return labels >= 1
    if structure == "tumor":
        return labels == 2
    raise ValueError(f"structure must be one of {STRUCTURES}; got {structure!r}")


def _check_labels(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.size == 0:
        raise GridMismatchError(
            f"{name} must be a non-empty 3-D label array (rows, columns, slices); "
            f"got shape {arr.shape}"
        )
    if arr.dtype == np.bool_:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        ok = int(arr.min()) >= 0 and int(arr.max()) <= 2
    else:
        ok = bool(np.all((arr == 0) | (arr == 1) | (arr == 2)))
    if not ok:
        values = np.unique(arr[(arr != 0) & (arr != 1) & (arr != 2)])
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if values.size > 8 else "")
        raise LabelError(
            f"{name} holds label values {shown}; LiTS label maps hold only 0 (background), "
            "1 (liver), 2 (tumor)"
        )
    return arr


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = _check_labels(pred, "prediction")
    truth = _check_labels(truth, "reference")
    if pred.shape != truth.shape:
        raise GridMismatchError(
            f"prediction shape {pred.shape} differs from the reference shape {truth.shape}; "
            "write predictions on the reference's grid (volumes.write_like)"
        )
    return pred, truth


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be three positive finite mm values; got {spacing!r}")
    return sp


def _check_connectivity(connectivity: int, name: str = "connectivity") -> int:
    if connectivity not in (1, 2, 3):
        raise ValueError(f"{name} must be 1 (faces), 2 (faces + edges) or 3 (full 3x3x3); "
                         f"got {connectivity!r}")
    return int(connectivity)


def _extent(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """Per-axis [first, last + 1) of the nonzero voxels of a 3-D array, or None if empty."""
    m01 = mask.any(axis=2)
    rows = np.flatnonzero(m01.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m01.any(axis=0))
    slices = np.flatnonzero(mask.any(axis=(0, 1)))
    return [(int(a[0]), int(a[-1]) + 1) for a in (rows, cols, slices)]


def _union_box(shape: tuple[int, ...], *masks: np.ndarray,
               margin: int = 1) -> tuple[slice, ...] | None:
    """Bounding box of the nonzero voxels of all masks, widened by ``margin`` (clipped)."""
    extents = [e for e in (_extent(m) for m in masks) if e is not None]
    if not extents:
        return None
    return tuple(
        slice(max(0, min(e[ax][0] for e in extents) - margin),
              min(shape[ax], max(e[ax][1] for e in extents) + margin))
        for ax in range(3)
    )
