"""The notebook series: papermill runs per profile (:mod:`.runner`), where a notebook's
outputs go (:mod:`.outputs`), ``make lab`` (:mod:`.lab`) and the notebooks' skeleton check
(:mod:`.notebook_checks`)."""

from .outputs import NotebookOutputs
from .runner import load_profile, prepare_data, run_series

__all__ = ["NotebookOutputs", "load_profile", "prepare_data", "run_series"]
