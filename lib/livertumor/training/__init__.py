"""Training: the configuration, the ``tf.data`` input pipeline, the Keras 3 models, loss and
metrics, and the single-host and multi-worker loops.

Keras is imported on first use of a Keras-dependent name (PEP 562), so that
``import livertumor.training`` for a ``TrainConfig`` stays light.
"""

import importlib

from .config import ARCHITECTURES, PRECISIONS, STRATEGIES, TrainConfig, build_model
from .dataset import Augmentation, load_manifest, make_dataset, split_validation
from .trainer import fit_and_validation_rows, read_history, train

_LAZY = {
    "build_unet": "models", "build_resnet50_unet": "models", "load_model": "models",
    "DiceCrossEntropy": "losses", "segmentation_metrics": "metrics", "RegionDice": "metrics",
    "RegionIoU": "metrics",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ARCHITECTURES", "PRECISIONS", "STRATEGIES", "Augmentation", "TrainConfig",
           "build_model", "fit_and_validation_rows", "load_manifest", "make_dataset",
           "read_history", "split_validation", "train", *_LAZY]
