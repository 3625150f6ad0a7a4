"""Inference: a whole CT volume through a trained model or the two-stage cascade, written as a
label map on the volume's own grid.

- :mod:`.inputs`: the model inputs of a volume's slices (the export's preprocessing)
- :mod:`.predict`: ``predict_volume``, ``segment``, test-time augmentation
- :mod:`.cascade`: ``SingleStage``, ``Cascade``, ``load_predictor``, ``read_rules``,
  ``write_cascade``
- :mod:`.postprocess`: ``PostProcessing`` rules (largest liver, minimum tumor volume,
  maximum tumor elongation)
"""

from .cascade import (
    CASCADE_FILE,
    Cascade,
    SingleStage,
    load_predictor,
    read_rules,
    write_cascade,
)
from .postprocess import (
    ClassProbability,
    PostProcessing,
    TumorComponents,
    drop_elongated_tumors,
    drop_small_tumors,
    drop_unconfident_tumors,
    largest_liver_component,
    liver_and_tumor,
    postprocess,
    tumor_elongation,
)
from .predict import (
    TTA_SCALES,
    Segmentation,
    load_preprocessing,
    predict_volume,
    segment,
    write_probabilities,
)

__all__ = [
    "CASCADE_FILE", "TTA_SCALES", "Cascade", "PostProcessing", "Segmentation", "SingleStage",
    "TumorComponents", "ClassProbability", "drop_elongated_tumors", "drop_small_tumors",
    "drop_unconfident_tumors", "largest_liver_component", "liver_and_tumor",
    "load_predictor", "load_preprocessing", "postprocess", "predict_volume", "read_rules",
    "segment",
    "tumor_elongation", "write_cascade", "write_probabilities",
]
