"""Evaluation of a trained model on the held-out test cases.

For every test case: segment the whole volume (:func:`livertumor.inference.predict.predict_volume`),
write the prediction as NIfTI on the case's own grid, and score it against the reference:

- LiTS per-case metrics (:func:`livertumor.evaluation.per_case.lits_scores`), lesion detection and
  tumor burden;
- per-slice Dice and IoU (the report's "mean Dice / mean IoU"; see :data:`SLICE_RULE`);
- pixel-level ROC curves for liver and tumor from the predicted probabilities, accumulated
  over all voxels of all cases with ``keras.metrics.AUC`` (streaming: nothing is subsampled).

:func:`evaluate` returns the tables and writes ``per_case.csv``, ``per_slice.csv``,
``roc.csv`` and ``metrics.json`` into the output folder; :func:`evaluate_models` does it for
several models case by case, a cascade taking its liver stage's prediction from that model's
own evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path, write_json
from ..data.volumes import NiftiVolume, read_mask, write_like
from .aggregate import aggregate_scores
from .lesions import detect_lesions, detection_by_size, lesion_table
from .per_case import lits_scores
from .per_slice import mean_slice_scores, slice_scores

SLICE_RULE = (
    "per-slice means: every axial slice of every test volume at its original resolution; "
    "liver = labels >= 1, tumor = label 2; slices where the structure is absent from both "
    "prediction and reference are left out of the mean (and counted), a slice where only one "
    "has it scores 0"
)

SEED_REPORT = {
    # The course report's Table 1 (real LiTS data, 2-D slices, its own split and protocol).
    "U-Net (report, real LiTS)": {"mean_dice": 0.8215, "mean_iou": 0.7976, "auc": 1.00},
    "ResNet-50 (report, real LiTS)": {"mean_dice": 0.7711, "mean_iou": 0.7318, "auc": 0.99},
}

ROC_THRESHOLDS = 561
ROC_LOGIT_RANGE = 28.0
"""The ROC curves are taken at ``ROC_THRESHOLDS`` probabilities evenly spaced in logit
(log-odds), from -``ROC_LOGIT_RANGE`` to +``ROC_LOGIT_RANGE`` (p = 7e-13 to 1 - 7e-13, one
threshold per 0.1 of logit). A segmentation network's softmax piles most voxels up near 0 or 1;
thresholds evenly spaced in p (201 of them) merged all p < 0.005 into one bucket, drew the tumor
curve as a straight line and understated the area (peaked test scores: 0.70 against an exact
0.85). The ROC and its area do not change under a monotone map of the scores, so the scores are
mapped to logit space and ``keras.metrics.AUC`` runs there with evenly spaced thresholds (its
fast bucketing path; uneven thresholds would cost memory of thresholds x voxels)."""


@dataclass
class EvaluationResult:
    """Tables of one model's evaluation.

    Attributes
    ----------
    per_case : one row per test case (:func:`lits_scores` keys plus case_id and paths)
    per_slice : one row per slice and structure (:func:`slice_scores`), with case_id
    roc : columns structure, threshold, fpr, tpr
    summary : aggregate metrics (means, global Dice, detection, burden RMSE, AUCs,
        per-slice means, detection by lesion size)
    lesions : one row per reference lesion and predicted component of every case
        (:func:`detect_lesions` rows with ``case_id``)
    detection : recall and precision by lesion size (:func:`detection_by_size`)
    """

    per_case: pd.DataFrame
    per_slice: pd.DataFrame
    roc: pd.DataFrame
    summary: dict = field(default_factory=dict)
    lesions: pd.DataFrame = field(default_factory=pd.DataFrame)
    detection: pd.DataFrame = field(default_factory=pd.DataFrame)


class _RocAccumulator:
    """Streaming ROC of one structure: keras.metrics.AUC over every voxel seen."""

    def __init__(self):
        import keras

        self.metric = keras.metrics.AUC(num_thresholds=ROC_THRESHOLDS, curve="ROC")

    @staticmethod
    def _to_unit(p: np.ndarray) -> np.ndarray:
        """Probabilities -> [0, 1], evenly in logit over +-ROC_LOGIT_RANGE (monotone).

        Scores are clipped to [0, 1] first: a sum of float32 softmax outputs (the liver's
        p1 + p2) can exceed 1 by a rounding step, whose logit would be NaN. In float32, in
        place: the model's probabilities are float32 anyway; against float64, about 1 voxel in
        70,000 lands beside a threshold's bucket, at a fifth of the time."""
        p = np.clip(np.asarray(p, np.float32), 0.0, 1.0)
        with np.errstate(divide="ignore"):
            unit = np.log(p)
            unit -= np.log1p(-p)
        unit += ROC_LOGIT_RANGE
        unit *= 1 / (2 * ROC_LOGIT_RANGE)
        return np.clip(unit, 0, 1, out=unit)

    def update(self, truth: np.ndarray, score: np.ndarray, chunk: int = 1 << 22) -> None:
        t, s = truth.reshape(-1), score.reshape(-1)
        for i in range(0, t.size, chunk):
            self.metric.update_state(t[i:i + chunk].astype(np.float32),
                                     self._to_unit(s[i:i + chunk]))

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        import keras

        m = self.metric
        tp, fp = (keras.ops.convert_to_numpy(v) for v in (m.true_positives, m.false_positives))
        fn, tn = (keras.ops.convert_to_numpy(v) for v in (m.false_negatives, m.true_negatives))
        tpr = tp / np.maximum(tp + fn, 1)
        fpr = fp / np.maximum(fp + tn, 1)
        unit = np.asarray(keras.ops.convert_to_numpy(m.thresholds), np.float64)
        logit = np.clip(unit, 0, 1) * 2 * ROC_LOGIT_RANGE - ROC_LOGIT_RANGE
        thresholds = 1 / (1 + np.exp(-logit))  # back to probabilities
        return thresholds, fpr, tpr, float(keras.ops.convert_to_numpy(m.result()))


def evaluate(
    model_dir,
    cases: pd.DataFrame,
    out_dir: str | Path,
    batch_size: int = 16,
    postprocess=None,
    connectivity: int = 1,
    progress: bool = True,
    tta: bool = False,
) -> EvaluationResult:
    """Segment and score every case of ``cases`` with a model, a cascade or a predictor.

    Parameters
    ----------
    model_dir : a folder written by ``livertumor train``, a cascade (a folder holding
        ``cascade.json``, or that file), or a predictor from
        :func:`livertumor.inference.load_predictor`
    cases : DataFrame with ``case_id``, ``volume_path``, ``mask_path`` (e.g. the test rows of
        the export's ``cases.csv``)
    out_dir : predictions go to ``out_dir/predictions/prediction-<id>.nii.gz`` (on each
        volume's own grid), tables and ``metrics.json`` to ``out_dir``
    postprocess : :class:`~livertumor.inference.PostProcessing` rules, True (the largest liver
        component), or None (a cascade's own rules; none for a single model)
    connectivity : surface connectivity of the distance metrics (1 face, 2 as LiTS)
    tta : test-time augmentation

    Returns
    -------
    :class:`EvaluationResult`; its ``lesions`` table has every reference lesion and predicted
    component of every case (:func:`detect_lesions`), ``detection`` the recall and precision
    by lesion size (:func:`detection_by_size`).
    """
    results = evaluate_models({"model": model_dir}, cases, {"model": out_dir}, batch_size,
                              postprocess, connectivity, progress, tta)
    return results["model"]


def evaluate_models(
    models: dict,
    cases: pd.DataFrame,
    out_dirs: dict | str | Path,
    batch_size: int = 16,
    postprocess=None,
    connectivity: int = 1,
    progress: bool = True,
    tta: bool = False,
) -> dict[str, EvaluationResult]:
    """:func:`evaluate` for several models on the same cases, one case at a time: each case's
    CT and reference are read once, and a cascade whose liver stage is one of the single
    models (the same folder, post-processing and test-time augmentation) takes that model's
    segmentation of the case as its stage 1 instead of predicting it again. The results are
    those of :func:`evaluate` on each model alone.

    Memory: such a shared segmentation (its class probabilities, 12 bytes a voxel) is held
    until the cascade has run on the case, beside the cascade's own; a single model not shared
    is released after scoring, as with :func:`evaluate`.

    Parameters
    ----------
    models : name -> what :func:`evaluate` takes as ``model_dir``
    out_dirs : name -> output folder, or one folder holding a subfolder per name
    the others : as :func:`evaluate`, for every model

    Returns
    -------
    name -> :class:`EvaluationResult`, in the order of ``models``.
    """
    from tqdm.auto import tqdm

    from ..inference import load_predictor

    if not isinstance(out_dirs, dict):
        out_dirs = {name: Path(out_dirs) / name for name in models}
    predictors = {name: (m if hasattr(m, "predict")
                         else load_predictor(m, postprocess, batch_size, tta))
                  for name, m in models.items()}
    stage_one = _shared_liver_stages(predictors)
    scores = {name: _Scores(predictor, Path(out_dirs[name]), connectivity)
              for name, predictor in predictors.items()}
    order = sorted(predictors, key=lambda name: name in stage_one)  # cascades after their stage 1
    for row in tqdm(list(cases.itertuples()), desc="test cases", unit="case",
                    disable=not progress):
        vol = NiftiVolume(row.volume_path)
        truth = read_mask(row.mask_path, like=vol.geometry)
        made = {}
        for name in order:
            given = {"first": made[stage_one[name]]} if name in stage_one else {}
            seg = predictors[name].predict(vol, keep_probabilities=True, progress=progress,
                                           **given)
            if name in stage_one.values():
                made[name] = seg
            scores[name].add(row, vol, truth, seg)
    return {name: scores[name].result() for name in models}


def _shared_liver_stages(predictors: dict) -> dict[str, str]:
    """Cascade name -> the name of a single model among ``predictors`` that predicts exactly
    what its liver stage would (same model folder, rules, batch size and test-time
    augmentation)."""
    from ..inference import Cascade, SingleStage

    singles = {name: p for name, p in predictors.items() if isinstance(p, SingleStage)}
    shared = {}
    for name, p in predictors.items():
        if not isinstance(p, Cascade):
            continue
        for single_name, single in singles.items():
            if (single.model_dir.resolve() == p.liver.model_dir.resolve()
                    and single.rules == p.liver.rules and single.tta == p.liver.tta
                    and single.batch_size == p.liver.batch_size):
                shared[name] = single_name
                break
    return shared


class _Scores:
    """What :func:`evaluate_models` gathers for one predictor: each case's prediction written
    to ``out_dir/predictions``, its per-case row, per-slice and lesion tables, and the ROC
    accumulators; :meth:`result` makes the tables and writes them."""

    def __init__(self, predictor, out_dir: Path, connectivity: int):
        self.predictor, self.out_dir, self.connectivity = predictor, out_dir, connectivity
        (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
        self.rocs = {"liver": _RocAccumulator(), "tumor": _RocAccumulator()}
        self.case_rows, self.slice_tables, self.lesion_tables = [], [], []

    def add(self, row, vol: NiftiVolume, truth: np.ndarray, seg) -> None:
        """One case: write its prediction, score it against ``truth``; the ROC accumulators
        take its voxels."""
        pred_path = write_like(seg.labels, vol.geometry,
                               self.out_dir / "predictions" / f"prediction-{row.case_id}.nii.gz")
        case_id = int(row.case_id)
        spacing = vol.geometry.spacing
        self.case_rows.append({"case_id": case_id, "volume_path": str(row.volume_path),
                               "mask_path": str(row.mask_path),
                               "prediction_path": str(pred_path),
                               **lits_scores(seg.labels, truth, spacing, self.connectivity)})
        lesions = lesion_table(detect_lesions(seg.labels, truth, spacing)["lesions"])
        self.lesion_tables.append(lesions.assign(case_id=case_id))
        slices = slice_scores(seg.labels, truth)
        slices.insert(0, "case_id", case_id)
        self.slice_tables.append(slices)
        p = seg.probabilities
        self.rocs["liver"].update(truth >= 1, p[..., 1] + p[..., 2])
        self.rocs["tumor"].update(truth == 2, p[..., 2])

    def result(self) -> EvaluationResult:
        """The tables of the cases added, written to ``out_dir``."""
        per_case = pd.DataFrame(self.case_rows)
        per_slice = pd.concat(self.slice_tables, ignore_index=True)
        lesions = pd.concat(self.lesion_tables, ignore_index=True)
        roc, summary = _roc_table(self.rocs)
        summary.update(aggregate_scores(per_case))
        summary.update({f"slice_{k}": v for k, v in mean_slice_scores(per_slice).items()})
        detection = detection_by_size(lesions)
        summary.update(_detection_summary(detection))
        predictor = self.predictor
        summary.update({"n_cases": len(per_case), "slice_rule": SLICE_RULE,
                        "connectivity": self.connectivity, "model": predictor.describe(),
                        "model_dir": str(getattr(predictor, "source", None)
                                         or getattr(predictor, "model_dir", ""))})
        result = EvaluationResult(per_case, per_slice, roc, summary, lesions, detection)
        save_result(result, self.out_dir)
        return result


def _roc_table(rocs: dict) -> tuple[pd.DataFrame, dict]:
    """The ROC curves of the accumulators as one table (structure, threshold, fpr, tpr) and
    their areas as ``{structure}_auc``."""
    rows, aucs = [], {}
    for name, acc in rocs.items():
        thresholds, fpr, tpr, auc = acc.curve()
        aucs[f"{name}_auc"] = auc
        rows.append(pd.DataFrame({"structure": name, "threshold": thresholds,
                                  "fpr": fpr, "tpr": tpr}))
    return pd.concat(rows, ignore_index=True), aucs


def _detection_summary(detection: pd.DataFrame) -> dict:
    """Flat keys of the size-class table (``lesion_recall_10_20mm`` and so on) and the recall
    of the lesions of 10 mm and more, by LiTS's IoU > 0.5 and by any overlap."""
    keys = {"< 10 mm": "lt10mm", "10-20 mm": "10_20mm", "> 20 mm": "gt20mm"}
    out = {}
    for name, key in keys.items():
        row = detection.loc[name]
        out[f"lesion_recall_{key}"] = row["recall"]
        out[f"lesion_precision_{key}"] = row["precision"]
        out[f"lesion_n_reference_{key}"] = int(row["reference"])
    big = detection.loc[["10-20 mm", "> 20 mm"]].sum()
    out["lesion_recall_ge10mm"] = big["found"] / big["reference"] if big["reference"] else None
    out["lesion_recall_any_overlap_ge10mm"] = (big["touched"] / big["reference"]
                                              if big["reference"] else None)
    return out


def save_result(result: EvaluationResult, out_dir: str | Path) -> None:
    """Write ``per_case.csv``, ``per_slice.csv``, ``roc.csv``, ``lesions.csv``,
    ``detection.csv`` and ``metrics.json``."""
    out_dir = Path(out_dir)
    for name, table in (("per_case", result.per_case), ("per_slice", result.per_slice),
                        ("roc", result.roc), ("lesions", result.lesions)):
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
    with atomic_path(out_dir / "detection.csv") as tmp:
        result.detection.to_csv(tmp, index_label="size")
    write_json(out_dir / "metrics.json", result.summary, default=_json_number)


def _json_number(value):
    """numpy numbers as JSON numbers, NaN as null."""
    return None if value != value else float(value)


def save_run_tables(results: dict[str, EvaluationResult], run_dir: str | Path) -> pd.DataFrame:
    """Write ``run_dir/metrics.json`` (every model's summary) and ``run_dir/table1.csv``.

    Returns :func:`table1` of ``results``.
    """
    run_dir = Path(run_dir)
    table = table1(results)
    write_json(run_dir / "metrics.json", {arch: r.summary for arch, r in results.items()},
               default=_json_number)
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


def load_test_cases(export_dir: str | Path) -> pd.DataFrame:
    """The usable test cases of an export: rows of ``cases.csv`` with ``split == "test"``.

    Returns a DataFrame with ``case_id``, ``volume_path``, ``mask_path`` (and the other
    columns of ``cases.csv``).
    """
    from ..errors import LiverTumorError

    path = Path(export_dir) / "cases.csv"
    if not path.exists():
        raise LiverTumorError("no cases.csv: export the data first", Path(export_dir))
    table = pd.read_csv(path)
    test = table[table["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise LiverTumorError("the export has no test cases", path)
    return test


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
