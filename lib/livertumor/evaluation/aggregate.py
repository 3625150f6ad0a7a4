"""Scores of a data set from per-case :func:`livertumor.evaluation.per_case.lits_scores` rows.

Means leave out the cases where a metric is undefined (NaN) and count them; the global Dice
sums voxel counts over all cases, as LiTS reported it; the tumor burden error is an RMSE over
cases; lesion counts are summed before precision and recall. Definitions and the empty-mask
rules behind the NaNs: ``docs/scoring.md``.
"""

from __future__ import annotations

import math

import numpy as np

from .inputs import STRUCTURES
from .lesions import aggregate_detection
from .overlap import dice_iou
from .per_case import SEGMENTATION_METRICS

_LESION_KEYS: tuple[str, ...] = ("tp", "fp", "fn", "merge_errors", "split_errors")


def _metric_summary(column, name: str) -> dict[str, float]:
    """Mean, sample std (ddof=1) and counts of one metric over the cases where it is defined."""
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(values)
    n = int(ok.sum())
    return {f"{name}_mean": float(values[ok].mean()) if n else math.nan,
            f"{name}_std": float(values[ok].std(ddof=1)) if n > 1 else math.nan,
            f"{name}_n": n,
            f"{name}_n_undefined": int(values.size - n)}


def _global_overlap(table, structure: str) -> dict[str, float]:
    """LiTS's global Dice (and IoU) of one structure: voxel counts summed over all cases."""
    cols = [f"{structure}_intersection", f"{structure}_pred_voxels",
            f"{structure}_ref_voxels"]
    if not all(c in table for c in cols):
        return {}
    inter, n_p, n_r = (int(table[c].astype(np.int64).sum()) for c in cols)
    dice, iou = dice_iou(inter, n_p, n_r)
    return {f"{structure}_dice_global": dice, f"{structure}_iou_global": iou}


def _burden_summary(table) -> dict[str, float]:
    """RMSE and largest error of the tumor burden (reference minus prediction) over cases."""
    if "tumor_burden_pred" not in table or "tumor_burden_ref" not in table:
        return {}
    diff = (table["tumor_burden_ref"].to_numpy(np.float64)
            - table["tumor_burden_pred"].to_numpy(np.float64))
    ok = np.isfinite(diff)
    n = int(ok.sum())
    return {"tumor_burden_rmse": float(np.sqrt(np.mean(diff[ok] ** 2))) if n else math.nan,
            "tumor_burden_max_abs_error": float(np.abs(diff[ok]).max()) if n else math.nan,
            "tumor_burden_n": n,
            "tumor_burden_n_undefined": int(diff.size - n)}


def _lesion_summary(table) -> dict[str, float]:
    """Lesion counts summed over cases, with precision and recall (:func:`aggregate_detection`)."""
    lesion_cols = [f"lesion_{k}" for k in _LESION_KEYS]
    if not all(c in table for c in lesion_cols):
        return {}
    det = aggregate_detection(table[lesion_cols].to_dict("records"))
    return {f"lesion_{key}": det[key] for key in (*_LESION_KEYS, "precision", "recall")}


def aggregate_scores(per_case) -> dict[str, float]:
    """Summarise per-case :func:`livertumor.evaluation.per_case.lits_scores` rows.

    Parameters
    ----------
    per_case : list of dict or pandas.DataFrame
        One ``lits_scores`` / ``score_files`` row per case; other columns (case id, paths)
        are ignored.

    Returns
    -------
    dict (flat)
        * ``n_cases``;
        * for every per-structure metric ``m`` present (``liver_dice`` ... ``tumor_msd``):
          ``{m}_mean`` and ``{m}_std`` (sample standard deviation, ddof=1) over the cases
          where it is defined, ``{m}_n`` (that count) and ``{m}_n_undefined`` (cases with
          NaN, see the empty-mask table; they are left out, never counted as 0 or 1);
        * ``{s}_dice_global`` = 2 ΣI / Σ(|P| + |R|) and ``{s}_iou_global`` = ΣI / Σ(|P| + |R|
          - I), sums over all cases (LiTS's global Dice; 1.0 when the structure is absent
          from every case);
        * ``tumor_burden_rmse`` = sqrt(mean((ref - pred)²)) and
          ``tumor_burden_max_abs_error`` over cases where both burdens are defined, with
          ``tumor_burden_n`` and ``tumor_burden_n_undefined`` (a map without liver);
        * when the rows hold lesion counts: ``lesion_tp``, ``lesion_fp``, ``lesion_fn``,
          ``lesion_merge_errors``, ``lesion_split_errors``, ``lesion_precision``,
          ``lesion_recall`` (summed over cases, see
          :func:`livertumor.evaluation.lesions.aggregate_detection`).

    Examples
    --------
    >>> rows = [{"tumor_dice": 0.0, "tumor_intersection": 0, "tumor_pred_voxels": 0,
    ...          "tumor_ref_voxels": 10},
    ...         {"tumor_dice": 1.0, "tumor_intersection": 990, "tumor_pred_voxels": 990,
    ...          "tumor_ref_voxels": 990}]
    >>> a = aggregate_scores(rows)
    >>> a["tumor_dice_mean"], round(a["tumor_dice_global"], 3)
    (0.5, 0.995)
    """
    import pandas as pd

    table = per_case if isinstance(per_case, pd.DataFrame) else pd.DataFrame(list(per_case))
    out: dict[str, float] = {"n_cases": int(len(table))}
    for s in STRUCTURES:
        for m in SEGMENTATION_METRICS:
            col = f"{s}_{m}"
            if col in table:
                out.update(_metric_summary(table[col], col))
        out.update(_global_overlap(table, s))
    out.update(_burden_summary(table))
    out.update(_lesion_summary(table))
    return out
