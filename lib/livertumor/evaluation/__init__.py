"""Evaluation: LiTS scores of whole volumes (:mod:`.overlap`, :mod:`.surfaces`, :mod:`.lesions`,
one case in :mod:`.per_case`, a data set in :mod:`.aggregate`, per slice in :mod:`.per_slice`;
definitions and empty-mask rules in ``docs/scoring.md``), models on the held-out test patients
(:mod:`.held_out`: predictions and scores, :mod:`.roc`, :mod:`.tables`: Table 1 and what else is
made of several results) and the clinician's report (:mod:`.report`)."""

from .aggregate import aggregate_scores
from .held_out import EvaluationResult, evaluate, evaluate_models, load_test_cases, save_result
from .lesions import LITS_LESION_CONNECTIVITY, aggregate_detection, detect_lesions
from .per_case import lits_scores, score_files
from .per_slice import mean_slice_scores, slice_scores
from .tables import (
    example_slices,
    metric_glossary,
    postprocess_effect,
    report_reference,
    save_run_tables,
    table1,
)

__all__ = [
    "LITS_LESION_CONNECTIVITY", "EvaluationResult", "aggregate_detection", "aggregate_scores",
    "detect_lesions", "evaluate", "evaluate_models", "example_slices", "lits_scores",
    "load_test_cases", "mean_slice_scores", "metric_glossary", "postprocess_effect",
    "report_reference", "save_result", "save_run_tables", "score_files", "slice_scores", "table1",
]
