"""The settings of one training run (:class:`TrainConfig`) and the model they describe.

This module imports no Keras or TensorFlow until :func:`build_model` is called.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

ARCHITECTURES = ("unet", "resnet50_unet")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "mirrored", "multi_worker")
MONITOR = "val_loss"
"""The quantity the best checkpoint and early stopping follow (lower is better)."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (all JSON-serialisable; saved as ``config.json``).

    Attributes
    ----------
    architecture : ``unet`` or ``resnet50_unet``
    epochs, batch_size : int
        ``batch_size`` is the global batch, split evenly over the replicas of the strategy.
    image_size : int
        Model input side in pixels (a multiple of 32 for the ResNet-50 U-Net).
    precision : ``float32``, ``mixed_float16`` (NVIDIA GPUs) or ``mixed_bfloat16`` (recent CPUs,
        TPUs, Ampere+ GPUs)
    strategy : ``auto`` (the default device), ``mirrored`` (all local GPUs, or logical CPUs) or
        ``multi_worker`` (``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG`` cluster; see
        :mod:`livertumor.training.distributed`)
    encoder_weights : ``none``, ``imagenet`` (a local file; nothing is downloaded) or a path
    seed : int
        Seeds Python, numpy and Keras (``keras.utils.set_random_seed``) and the data pipeline.
    learning_rate : float
        Peak learning rate of Adam with cosine decay over all steps.
    base_filters, depth : int
        U-Net width and number of poolings (ignored by the ResNet-50 U-Net).
    steps_per_epoch : int
        Training batches per epoch; 0 means one pass's worth (slices / batch size).
    validation_fraction : float
        Share of the training cases held out for validation (whole cases).
    tumor_oversampling : float
        Slices with tumor are drawn this many times as often as slices without.
    dice_weight : float
        Weight of the soft-Dice term against cross-entropy.
    patience : int
        Epochs without a better ``val_loss`` before early stopping (0: never stop early).
    augment, cache : bool
        Data augmentation on/off; keep decoded slices in memory.
    """

    architecture: str = "unet"
    epochs: int = 20
    batch_size: int = 16
    image_size: int = 128
    precision: str = "float32"
    strategy: str = "auto"
    encoder_weights: str = "none"
    seed: int = 0
    learning_rate: float = 1e-3
    base_filters: int = 16
    depth: int = 4
    steps_per_epoch: int = 0
    validation_fraction: float = 0.2
    tumor_oversampling: float = 3.0
    dice_weight: float = 1.0
    patience: int = 10
    augment: bool = True
    cache: bool = True

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, "
                             f"got {self.architecture!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.architecture == "resnet50_unet" and self.image_size % 32:
            raise ValueError(f"the ResNet-50 U-Net needs an image size divisible by 32, "
                             f"got {self.image_size}")
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 16:
            raise ValueError("epochs and batch_size must be >= 1 and image_size >= 16")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict, ignoring keys that are not settings (e.g. notebook parameters)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def _encoder_weights(value: str):
    return None if value in ("none", "", None) else value


def build_model(config: TrainConfig):
    """The Keras model a config describes (uncompiled).

    Returns
    -------
    keras.Model
        Input ``(B, image_size, image_size, 3)`` float32 in [0, 1]; output
        ``(B, image_size, image_size, 3)`` float32 class probabilities.

    Raises
    ------
    EncoderWeightsError
        ``encoder_weights`` names a file that is missing or does not fit (ResNet-50 U-Net).
    """
    from .models import build_resnet50_unet, build_unet

    shape = (config.image_size, config.image_size, 3)
    if config.architecture == "unet":
        return build_unet(shape, base_filters=config.base_filters, depth=config.depth)
    return build_resnet50_unet(shape, encoder_weights=_encoder_weights(config.encoder_weights))
