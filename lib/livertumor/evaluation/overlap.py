"""Overlap and volume scores of one structure: Dice, IoU, VOE and RVD from voxel counts.

The same Dice and IoU formula over counts summed over all cases is LiTS's global Dice
(:func:`livertumor.evaluation.aggregate.aggregate_scores`). Definitions, the empty-mask rules
(both empty: Dice 1; reference empty: RVD undefined) and the sources they were checked
against: ``docs/scoring.md``.
"""

from __future__ import annotations

import math

import numpy as np

OVERLAP_METRICS: tuple[str, ...] = ("dice", "iou", "voe", "rvd")
"""The overlap and volume metrics of :func:`overlap_scores`, in column order."""


def dice_iou(intersection: int, pred_voxels: int, ref_voxels: int) -> tuple[float, float]:
    """Dice 2I / (|P| + |R|) and IoU I / (|P| + |R| - I) from voxel counts.

    Both are 1.0 when |P| + |R| = 0 (nothing to find, nothing found). Counts summed over
    cases give the global Dice and IoU.

    >>> dice_iou(48, 64, 64)
    (0.75, 0.6)
    >>> dice_iou(0, 0, 0)
    (1.0, 1.0)
    """
    total = pred_voxels + ref_voxels
    if total == 0:
        return 1.0, 1.0
    return 2.0 * intersection / total, intersection / (total - intersection)


def relative_volume_difference(pred_voxels: int, ref_voxels: int) -> float:
    """RVD = (|P| - |R|) / |R|; 0.0 when both are empty, NaN when only |R| is 0.

    Positive values mean over-segmentation.

    >>> relative_volume_difference(0, 10), relative_volume_difference(5, 0)
    (-1.0, nan)
    """
    if ref_voxels:
        return (pred_voxels - ref_voxels) / ref_voxels
    return 0.0 if pred_voxels == 0 else math.nan


def overlap_scores(pred_mask: np.ndarray, ref_mask: np.ndarray) -> dict[str, float]:
    """Dice, IoU, VOE and RVD of two binary masks, with the counts they come from.

    Parameters
    ----------
    pred_mask, ref_mask : ndarray, bool, same shape
        One structure of the prediction and of the reference (not checked here; see
        :func:`livertumor.evaluation.per_case.binary_scores`).

    Returns
    -------
    dict
        ``dice``, ``iou``, ``voe`` = 1 - iou, ``rvd`` (floats, unitless), then
        ``intersection``, ``pred_voxels``, ``ref_voxels`` (ints).

    Examples
    --------
    >>> a = np.zeros((6, 6, 6), bool); a[1:5, 1:5, 1:5] = True
    >>> s = overlap_scores(a, np.roll(a, 1, axis=2))
    >>> s["dice"], s["iou"], s["rvd"], s["intersection"]
    (0.75, 0.6, 0.0, 48)
    """
    n_p = int(np.count_nonzero(pred_mask))
    n_r = int(np.count_nonzero(ref_mask))
    inter = int(np.count_nonzero(pred_mask & ref_mask)) if n_p and n_r else 0
    dice, iou = dice_iou(inter, n_p, n_r)
    return {"dice": dice, "iou": iou, "voe": 1.0 - iou,
            "rvd": relative_volume_difference(n_p, n_r),
            "intersection": inter, "pred_voxels": n_p, "ref_voxels": n_r}
