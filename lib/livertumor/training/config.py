"""The settings of one training run (:class:`TrainConfig`) and the model they describe.

Each setting is documented once, next to its field (``field.metadata["doc"]``); the class
docstring's attribute list and the ``python -m livertumor train`` options are made from it.
This module imports no Keras or TensorFlow until :func:`build_model` is called.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import LiverTumorError

ARCHITECTURES = ("unet", "resnet50_unet")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "mirrored", "multi_worker")
UPSAMPLING = ("auto", "transpose", "bilinear")  # "auto": the architecture's own

MONITOR = "val_loss"
"""The quantity the best checkpoint and early stopping follow (lower is better)."""


def _setting(default, doc: str, choices: tuple[str, ...] | None = None,
             metavar: str | None = None):
    """A dataclass field with its documentation (and, for the command line, choices and
    metavar) in ``field.metadata``."""
    return field(default=default, metadata={"doc": doc, "choices": choices, "metavar": metavar})


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (all JSON-serialisable; saved as ``config.json``).

    Raises
    ------
    ValueError
        On construction, for a value outside the allowed choices, a ResNet-50 U-Net image size
        that is not a multiple of 32, ``epochs`` or ``batch_size`` < 1, or ``image_size`` < 16.

    Examples
    --------
    >>> TrainConfig(epochs=3).batch_size
    16
    >>> TrainConfig.from_dict({"epochs": 3, "export_dir": "x"}).epochs  # extra keys ignored
    3
    """

    architecture: str = _setting(
        "unet", "the network: unet (U-Net) or resnet50_unet (U-Net decoder on a ResNet-50 "
        "encoder)", choices=ARCHITECTURES)
    epochs: int = _setting(20, "number of epochs (early stopping may end sooner)")
    batch_size: int = _setting(
        16, "global batch in slices, split evenly over the replicas of the strategy")
    image_size: int = _setting(
        128, "model input side in pixels (a multiple of 32 for resnet50_unet)", metavar="PX")
    patch_size: int = _setting(
        0, "0: the model trains on whole slices resized to image_size. N > 0: on random N x N "
        "patches of those slices (a slice with tumor gives a patch that holds one of its tumor "
        "pixels); the model is then fully convolutional and predicts whole image_size slices, "
        "so image_size must be the export's size. Patches keep the cost of a step while the "
        "model works at a higher resolution", metavar="PX")
    precision: str = _setting(
        "float32", "float32, mixed_float16 (NVIDIA GPUs) or mixed_bfloat16 (recent CPUs, "
        "TPUs, Ampere and later GPUs)", choices=PRECISIONS)
    strategy: str = _setting(
        "auto", "auto: the default device; mirrored: all local GPUs (or logical CPUs); "
        "multi_worker: MultiWorkerMirroredStrategy over the TF_CONFIG cluster, one process per "
        "host running this same command (see livertumor.training.distributed and the README, "
        "Several machines)", choices=STRATEGIES)
    encoder_weights: str = _setting(
        "none", "ResNet-50 encoder weights: none, imagenet (a local file; nothing is "
        "downloaded) or a path")
    seed: int = _setting(
        0, "seeds Python, numpy and Keras (keras.utils.set_random_seed) and the data pipeline")
    learning_rate: float = _setting(
        1e-3, "peak learning rate of Adam with cosine decay over all steps")
    base_filters: int = _setting(
        16, "U-Net width: filters of the first level (ignored by resnet50_unet)")
    depth: int = _setting(4, "U-Net number of 2x2 poolings (ignored by resnet50_unet)")
    upsampling: str = _setting(
        "auto", "decoder upsampling: transpose (2x2 transposed convolution), bilinear (resize, "
        "then 3x3 convolution: no checkerboard) or auto (the architecture's own: transpose for "
        "unet, bilinear for resnet50_unet)", choices=UPSAMPLING)
    steps_per_epoch: int = _setting(
        0, "training batches per epoch; 0: one pass's worth (slices / batch size)")
    validation_fraction: float = _setting(
        0.2, "share of the training cases held out for validation (whole cases)")
    validation_slice_step: int = _setting(
        1, "score every k-th exported slice of each validation patient after each epoch (1: "
        "all): the choice of the best epoch then looks at fewer slices, and each epoch's "
        "validation takes 1/k of the time", metavar="K")
    tumor_oversampling: float = _setting(
        3.0, "slices with tumor are drawn this many times as often as slices without")
    dice_weight: float = _setting(1.0, "weight of the soft-Dice term against cross-entropy")
    tumor_weight: float = _setting(
        1.0, "cross-entropy weight of tumor pixels (background and liver pixels weigh 1)")
    tumor_size_weight: float = _setting(
        0.0, "extra cross-entropy weight of the pixels of small tumors and tumor edges: a "
        "tumor pixel weighs 1 + w * (1 - the tumor share of its 15 x 15 neighbourhood); 0: off")
    head_prior: bool = _setting(
        False, "start the output layer's biases at the log of each class's share of the "
        "training pixels as the stream draws them (tumor slices oversampled), so that the "
        "first steps predict background where the data have it instead of a third for each "
        "class (the prior initialisation of Lin et al. 2017, Focal Loss, section 3.3); off: "
        "Keras's zero biases")
    batch_norm_momentum: float = _setting(
        0.0, "momentum of every batch norm's moving mean and variance (0: the layers' own, "
        "0.99 in Keras); short runs want a lower one, such as 0.9, so that the statistics "
        "used at inference follow the weights")
    patience: int = _setting(
        10, "epochs without a better val_loss before early stopping (0: never stop early)")
    augment: bool = _setting(
        True, "data augmentation: small rotations, zooms, shifts, brightness and contrast "
        "changes")
    cache: bool = _setting(
        True, "keep the decoded slices in memory after the first pass (about 6 GB for full "
        "LiTS at 256 px)")

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, "
                             f"got {self.architecture!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {self.upsampling!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.architecture == "resnet50_unet" and self.image_size % 32:
            raise ValueError(f"the ResNet-50 U-Net needs an image size divisible by 32, "
                             f"got {self.image_size}")
        if self.validation_slice_step < 1:
            raise ValueError(f"validation_slice_step must be >= 1, got "
                             f"{self.validation_slice_step}")
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 16:
            raise ValueError("epochs and batch_size must be >= 1 and image_size >= 16")
        if self.patch_size:
            multiple = 32 if self.architecture == "resnet50_unet" else 2 ** self.depth
            if not multiple <= self.patch_size <= self.image_size or self.patch_size % multiple:
                raise ValueError(f"patch_size must be 0 or a multiple of {multiple} from "
                                 f"{multiple} to image_size ({self.image_size}), got "
                                 f"{self.patch_size}")
        if not self.tumor_weight > 0:
            raise ValueError(f"tumor_weight must be > 0, got {self.tumor_weight}")
        if not self.tumor_size_weight >= 0:
            raise ValueError(f"tumor_size_weight must be >= 0, got {self.tumor_size_weight}")
        if not 0 <= self.batch_norm_momentum < 1:
            raise ValueError(f"batch_norm_momentum must be in [0, 1), got "
                             f"{self.batch_norm_momentum}")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict, ignoring keys that are not settings (e.g. notebook parameters,
        ``globals()`` of a notebook, or parsed command-line arguments)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def _attributes_section(cls) -> str:
    """The numpydoc ``Attributes`` section of a dataclass whose fields carry a ``doc``."""
    lines = ["    Attributes", "    ----------"]
    for f in fields(cls):
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        lines += [f"    {f.name} : {kind}, default {f.default!r}",
                  f"        {f.metadata['doc']}"]
    return "\n".join(lines) + "\n\n"


if TrainConfig.__doc__:  # None under python -OO
    TrainConfig.__doc__ = TrainConfig.__doc__.replace(
        "    Raises\n", _attributes_section(TrainConfig) + "    Raises\n", 1)


def _encoder_weights(value: str):
    return None if value in ("none", "", None) else value


def build_model(config: TrainConfig, channels: int = 3):
    """The Keras model a config describes (uncompiled), for inputs of ``channels`` channels
    (3 image channels, plus the context channels of an export made with ``context``).

    Returns
    -------
    keras.Model
        Input ``(B, image_size, image_size, channels)`` float32 in [0, 1]; output
        ``(B, image_size, image_size, 3)`` float32 class probabilities. With ``patch_size``,
        height and width are left open (``None``): any side that is a multiple of the
        network's total downsampling.

    Raises
    ------
    EncoderWeightsError
        ``encoder_weights`` names a file that is missing or does not fit (ResNet-50 U-Net).
    LiverTumorError
        A ResNet-50 U-Net for other than 3 channels (its encoder takes the 3 image channels).
    """
    from .models import build_resnet50_unet, build_unet

    if config.architecture == "resnet50_unet" and channels != 3:
        raise LiverTumorError(f"the ResNet-50 encoder takes the 3 image channels, the export has "
                              f"{channels} (context slices): train a unet on it, or export "
                              "without context")
    side = None if config.patch_size else config.image_size  # patches: fully convolutional
    shape = (side, side, channels)
    own = {} if config.upsampling == "auto" else {"upsampling": config.upsampling}
    if config.architecture == "unet":
        model = build_unet(shape, base_filters=config.base_filters, depth=config.depth, **own)
    else:
        model = build_resnet50_unet(shape, encoder_weights=_encoder_weights(config.encoder_weights),
                                    **own)
    if config.batch_norm_momentum:
        import keras

        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = config.batch_norm_momentum
    return model
