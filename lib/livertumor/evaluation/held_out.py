"""Evaluation of a trained model on the held-out test cases.

For every test case: segment the whole volume (:func:`livertumor.inference.predict.predict_volume`),
write the prediction as NIfTI on the case's own grid, and score it against the reference:

- LiTS per-case metrics (:func:`livertumor.evaluation.per_case.lits_scores`), lesion detection and
  tumor burden;
- per-slice Dice and IoU (the report's "mean Dice / mean IoU"; see :data:`SLICE_RULE`);
- pixel-level ROC curves for liver and tumor from the predicted probabilities, accumulated
  over all voxels of all cases (:mod:`.roc`).

:func:`evaluate` returns the tables and writes ``per_case.csv``, ``per_slice.csv``,
``roc.csv`` and ``metrics.json`` into the output folder; :func:`evaluate_models` does it for
several models case by case, a cascade taking its liver stage's prediction from that model's
own evaluation. What is made of several results (Table 1, example slices, the effect of the
post-processing rules) is in :mod:`.tables`.
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
from .roc import RocAccumulator, roc_table

SLICE_RULE = (
    "per-slice means: every axial slice of every test volume at its original resolution; "
    "liver = labels >= 1, tumor = label 2; slices where the structure is absent from both "
    "prediction and reference are left out of the mean (and counted), a slice where only one "
    "has it scores 0"
)

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
        self.rocs = {"liver": RocAccumulator(), "tumor": RocAccumulator()}
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
        from ..inference.predict import liver_probability

        p = seg.probabilities
        self.rocs["liver"].update(truth >= 1, liver_probability(p))
        self.rocs["tumor"].update(truth == 2, p[..., 2])

    def result(self) -> EvaluationResult:
        """The tables of the cases added, written to ``out_dir``."""
        per_case = pd.DataFrame(self.case_rows)
        per_slice = pd.concat(self.slice_tables, ignore_index=True)
        lesions = pd.concat(self.lesion_tables, ignore_index=True)
        roc, summary = roc_table(self.rocs)
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
    write_json(out_dir / "metrics.json", result.summary, default=json_number)


def json_number(value):
    """numpy numbers as JSON numbers, NaN as null (``write_json``'s ``default``)."""
    return None if value != value else float(value)


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
