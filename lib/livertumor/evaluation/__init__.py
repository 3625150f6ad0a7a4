"""Evaluation: LiTS scores (:mod:`.scoring`), models on the held-out test patients
(:mod:`.held_out`: predictions, Table 1, ROC) and the clinician's report (:mod:`.report`)."""

from .held_out import (
    EvaluationResult,
    evaluate,
    example_slices,
    load_test_cases,
    metric_glossary,
    postprocess_effect,
    report_reference,
    save_result,
    save_run_tables,
    table1,
)
from .scoring import (
    aggregate_detection,
    aggregate_scores,
    detect_lesions,
    lits_scores,
    mean_slice_scores,
    score_files,
    slice_scores,
)

__all__ = [
    "EvaluationResult", "aggregate_detection", "aggregate_scores", "detect_lesions", "evaluate",
    "example_slices", "lits_scores", "load_test_cases", "mean_slice_scores", "metric_glossary",
    "postprocess_effect", "report_reference", "save_result", "save_run_tables", "score_files",
    "slice_scores", "table1",
]
