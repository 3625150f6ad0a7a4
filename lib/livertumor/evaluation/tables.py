"""What is made of several models' evaluations (:class:`.held_out.EvaluationResult`): the
report's Table 1 and the run's tables, one example slice per test case, the effect of each
post-processing rule recomputed from the saved predictions, and a glossary of the metrics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_path, write_json
from ..data.volumes import NiftiVolume, read_mask
from .aggregate import aggregate_scores
from .held_out import SLICE_RULE, EvaluationResult, json_number
from .per_case import lits_scores

SEED_REPORT = {
    # The course report's Table 1 (real LiTS data, 2-D slices, its own split and protocol).
    "U-Net (report, real LiTS)": {"mean_dice": 0.8215, "mean_iou": 0.7976, "auc": 1.00},
    "ResNet-50 (report, real LiTS)": {"mean_dice": 0.7711, "mean_iou": 0.7318, "auc": 0.99},
}


def save_run_tables(results: dict[str, EvaluationResult], run_dir: str | Path) -> pd.DataFrame:
    """Write ``run_dir/metrics.json`` (every model's summary) and ``run_dir/table1.csv``.

    Returns :func:`table1` of ``results``.
    """
    run_dir = Path(run_dir)
    table = table1(results)
    write_json(run_dir / "metrics.json", {arch: r.summary for arch, r in results.items()},
               default=json_number)
    with atomic_path(run_dir / "table1.csv") as tmp:
        table.to_csv(tmp)
    return table


def example_slices(results: dict[str, EvaluationResult], window: str = "abdomen_soft"
                   ) -> dict[str, tuple[list, list, list, list]]:
    """One slice per test case for ``figures.prediction_figure``, for every model.

    The slice is the one with the most reference tumor (or liver) pixels. Each case's
    reference is read once, and only that slice of its CT, whatever the number of models.

    Parameters
    ----------
    results : model name -> :class:`EvaluationResult` (the same test cases in each)
    window : name in :data:`livertumor.data.windowing.WINDOWS` for the CT

    Returns
    -------
    model name -> (images, truths, preds, captions): lists with one entry per case of
    float32 (H, W) windowed CT in [0, 1], uint8 (H, W) reference and predicted labels, and
    ``"case C, slice K"``.
    """
    from ..data.slices import largest_slice
    from ..data.windowing import WINDOWS, windowed

    names = list(results)
    out: dict[str, tuple[list, list, list, list]] = {a: ([], [], [], []) for a in names}
    if not names:
        return out
    predictions = {a: results[a].per_case.set_index("case_id")["prediction_path"]
                   for a in names}
    for row in results[names[0]].per_case.itertuples():
        truth = read_mask(row.mask_path)
        k = largest_slice(truth, 2) or largest_slice(truth, 1) or 0
        image = windowed(NiftiVolume(row.volume_path).hu_slice(k), *WINDOWS[window])
        for arch in names:
            pred = read_mask(predictions[arch][row.case_id])
            for part, value in zip(out[arch], (image, truth[:, :, k], pred[:, :, k],
                                               f"case {row.case_id}, slice {k}"), strict=True):
                part.append(value)
    return out


def table1(results: dict[str, EvaluationResult]) -> pd.DataFrame:
    """The report's Table 1 for our models: per-slice mean Dice / IoU and pixel AUC.

    One row per model; liver and tumor separately (the report does not say which structure
    its single numbers describe), plus the LiTS per-case Dice and the tumor global Dice.
    Compare with :func:`report_reference` only as context: that is real LiTS data.
    """
    rows = {}
    for name, r in results.items():
        s = r.summary
        rows[name] = {
            "liver mean Dice": s["slice_liver_mean_dice"],
            "liver mean IoU": s["slice_liver_mean_iou"],
            "liver AUC": s["liver_auc"],
            "tumor mean Dice": s["slice_tumor_mean_dice"],
            "tumor mean IoU": s["slice_tumor_mean_iou"],
            "tumor AUC": s["tumor_auc"],
            "liver Dice per case": s["liver_dice_mean"],
            "tumor Dice per case": s["tumor_dice_mean"],
            "tumor global Dice": s["tumor_dice_global"],
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def report_reference() -> pd.DataFrame:
    """The course report's Table 1 and AUCs (real LiTS data, its own split and protocol)."""
    return pd.DataFrame.from_dict(SEED_REPORT, orient="index")


def postprocess_effect(result: EvaluationResult, rules: dict | None = None,
                       connectivity: int = 1) -> pd.DataFrame:
    """What each post-processing rule changes, recomputed from the saved predictions (no new
    inference): liver Dice per case, tumor Dice per case and global, lesion recall and
    precision, one row per rule set.

    Parameters
    ----------
    result : an evaluation without post-processing (its predictions are the raw ones)
    rules : name -> :class:`~livertumor.inference.PostProcessing`; default: none, the largest
        liver component, tumors below 0.1 mL dropped, tumors more than 3 times as long as
        wide dropped, and all three
    """
    from ..inference import PostProcessing, postprocess

    rules = rules or {
        "none": PostProcessing(),
        "largest liver": PostProcessing(largest_liver=True),
        "tumors >= 0.1 mL": PostProcessing(min_tumor_ml=0.1),
        "tumors at most 3x as long as wide": PostProcessing(max_tumor_elongation=3.0),
        "all three": PostProcessing(largest_liver=True, min_tumor_ml=0.1,
                                    max_tumor_elongation=3.0),
    }
    per_rule: dict[str, list] = {name: [] for name in rules}
    for row in result.per_case.itertuples():
        geometry = NiftiVolume(row.volume_path).geometry
        truth = read_mask(row.mask_path, like=geometry)
        pred = read_mask(row.prediction_path, like=geometry)
        for name, rule in rules.items():
            post = postprocess(pred, geometry.spacing, rule)
            per_rule[name].append(lits_scores(post, truth, geometry.spacing, connectivity,
                                              distances=False))  # overlap and detection
    rows = {}
    for name, scores in per_rule.items():
        s = aggregate_scores(pd.DataFrame(scores))
        rows[name] = {"liver Dice per case": s["liver_dice_mean"],
                      "tumor Dice per case": s["tumor_dice_mean"],
                      "tumor global Dice": s["tumor_dice_global"],
                      "lesion recall": s["lesion_recall"],
                      "lesion precision": s["lesion_precision"],
                      "false positive lesions": int(sum(c["lesion_fp"] for c in scores))}
    return pd.DataFrame.from_dict(rows, orient="index")


def metric_glossary() -> pd.DataFrame:
    """What each reported metric means: range, which way is better, and the caveat."""
    rows = [
        ("Dice", "0 to 1", "higher", "overlap 2|P∩R|/(|P|+|R|); tumor Dice is 1 when both "
         "are empty, 0 when only one is"),
        ("IoU (Jaccard)", "0 to 1", "higher", "|P∩R|/|P∪R|; always below Dice"),
        ("VOE", "0 to 1", "lower", "1 - IoU"),
        ("RVD", "-1 to +inf", "closer to 0", "(|P|-|R|)/|R|: volume error; positive means "
         "over-segmentation; undefined when the reference is empty"),
        ("ASSD (mm)", "0 to +inf", "lower", "mean distance between the two surfaces"),
        ("HD95 (mm)", "0 to +inf", "lower", "95th percentile of surface distances"),
        ("MSD (mm)", "0 to +inf", "lower", "maximum surface distance (Hausdorff); one stray "
         "voxel far away dominates it"),
        ("mean Dice / IoU per slice", "0 to 1", "higher",
         "the report's 2-D numbers; " + SLICE_RULE),
        ("global Dice", "0 to 1", "higher", "Dice of all test voxels pooled (LiTS); large "
         "tumors weigh more than small ones"),
        ("AUC", "0.5 to 1", "higher", "pixel ROC area; dominated by the many easy background "
         "pixels, so it stays near 1 even for poor segmentations"),
        ("lesion recall / precision", "0 to 1", "higher", "a reference tumor counts as found "
         "when the overlap IoU with the prediction exceeds 0.5 (LiTS)"),
        ("tumor burden RMSE", "0 to 1", "lower", "error of tumor volume / liver volume"),
    ]
    return pd.DataFrame(rows, columns=["metric", "range", "better", "meaning and caveat"])
