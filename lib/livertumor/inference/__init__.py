"""Inference: a whole CT volume through a trained model, written as a label map on the
volume's own grid."""

from .predict import (
    Segmentation,
    largest_liver_component,
    load_preprocessing,
    predict_volume,
    segment,
    write_probabilities,
)

__all__ = ["Segmentation", "largest_liver_component", "load_preprocessing", "predict_volume",
           "segment", "write_probabilities"]
