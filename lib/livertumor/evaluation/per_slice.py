"""Per-slice Dice and IoU: the 2-D "mean Dice / mean IoU" of slice-based reports.

Every axial slice is scored on its own, per structure (liver = labels >= 1, tumor = label 2),
and the means are taken over slices. Slices where a structure is absent from both maps have
no defined score: they are left out of the means and counted (``empty="exclude"``, the
default) or scored 1.0 (``empty="one"``). The per-case 3-D scores and their empty-mask rules:
``docs/scoring.md``.
"""

from __future__ import annotations

import math

import numpy as np

from .inputs import STRUCTURES, _check_pair, structure_mask

SLICE_EMPTY_RULES: tuple[str, ...] = ("exclude", "one")


def slice_scores(pred: np.ndarray, truth: np.ndarray, empty: str = "exclude"):
    """Dice and IoU of every axial slice, per structure (the 2-D "mean Dice / mean IoU").

    For slice k and structure s (liver = labels >= 1, tumor = label 2), with P and R the
    structure's pixels of that slice::

        dice = 2 |P ∩ R| / (|P| + |R|)        iou = |P ∩ R| / |P ∪ R|

    **Slices where the structure is absent from both** (|P| + |R| = 0; most slices for the
    tumor) have no defined score. ``empty="exclude"`` (default) sets their dice and iou to
    NaN, so :func:`mean_slice_scores` leaves them out of the means and counts them apart;
    ``empty="one"`` scores them 1.0 (nothing to find, nothing found), which raises the mean
    with every empty slice, as per-slice means over exported slices often silently do.
    A slice where only one of the two has the structure scores 0.0 under both rules.

    Parameters
    ----------
    pred, truth : ndarray, uint8, shape (rows, columns, slices)
        Canonical label maps (0, 1, 2) on the same grid.
    empty : {"exclude", "one"}, default "exclude"

    Returns
    -------
    pandas.DataFrame
        One row per slice per structure (liver rows first), columns ``structure`` (str),
        ``slice`` (int, 0 = most inferior), ``dice``, ``iou`` (float), ``intersection``,
        ``pred_pixels``, ``ref_pixels`` (int) and ``both_empty`` (bool).

    Examples
    --------
    >>> truth = np.zeros((4, 4, 3), np.uint8); truth[1:3, 1:3, 0] = 2
    >>> t = slice_scores(truth, truth)
    >>> t[t.structure == "tumor"].dice.tolist()
    [1.0, nan, nan]
    """
    import pandas as pd

    if empty not in SLICE_EMPTY_RULES:
        raise ValueError(f"empty must be one of {SLICE_EMPTY_RULES}; got {empty!r}")
    pred, truth = _check_pair(pred, truth)
    frames = []
    for name in STRUCTURES:
        p, r = structure_mask(pred, name), structure_mask(truth, name)
        inter = np.count_nonzero(p & r, axis=(0, 1)).astype(np.int64)
        n_p = np.count_nonzero(p, axis=(0, 1)).astype(np.int64)
        n_r = np.count_nonzero(r, axis=(0, 1)).astype(np.int64)
        total = n_p + n_r
        both_empty = total == 0
        fill = math.nan if empty == "exclude" else 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(both_empty, fill, 2.0 * inter / np.maximum(total, 1))
            iou = np.where(both_empty, fill, inter / np.maximum(total - inter, 1))
        frames.append(pd.DataFrame({
            "structure": name, "slice": np.arange(pred.shape[2]), "dice": dice, "iou": iou,
            "intersection": inter, "pred_pixels": n_p, "ref_pixels": n_r,
            "both_empty": both_empty,
        }))
    return pd.concat(frames, ignore_index=True)


def mean_slice_scores(table) -> dict[str, float]:
    """Means of a :func:`slice_scores` table (one case, or several concatenated).

    Returns
    -------
    dict
        Per structure ``s``: ``{s}_mean_dice``, ``{s}_mean_iou`` (means over the rows whose
        score is defined: NaN rows, the both-empty slices under ``empty="exclude"``, are
        left out), ``{s}_n_slices`` (all rows), ``{s}_n_scored`` (rows in the means) and
        ``{s}_n_both_empty`` (slices without the structure in either map, whatever the rule).
    """
    out: dict[str, float] = {}
    for s in STRUCTURES:
        rows = table[table["structure"] == s]
        dice = rows["dice"].to_numpy(np.float64)
        iou = rows["iou"].to_numpy(np.float64)
        ok = np.isfinite(dice)
        out[f"{s}_mean_dice"] = float(dice[ok].mean()) if ok.any() else math.nan
        out[f"{s}_mean_iou"] = float(iou[ok].mean()) if ok.any() else math.nan
        out[f"{s}_n_slices"] = int(len(rows))
        out[f"{s}_n_scored"] = int(ok.sum())
        out[f"{s}_n_both_empty"] = int(rows["both_empty"].sum())
    return out
