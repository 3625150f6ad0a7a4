"""The two 2-D segmentation networks: a U-Net and a U-Net decoder on a ResNet-50 encoder.

Both take a batch of exported slices, ``(B, H, W, 3)`` float32 in [0, 1] (the three JPG
channels: liver window, abdomen window, histogram-equalised), and return per-pixel class
probabilities ``(B, H, W, num_classes)``: background (0), liver (1), tumor (2). The last layer is
a softmax pinned to float32, so the output stays float32 under a ``mixed_float16`` or
``mixed_bfloat16`` policy and the loss and metrics see full-precision probabilities.

Only ``keras`` layers and ``keras.ops`` are used, so the models build and train on any Keras 3
backend (TensorFlow, JAX, PyTorch).

ImageNet weights for the ResNet-50 encoder are optional and never downloaded: with
``encoder_weights="imagenet"`` the file Keras itself would cache,
``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``, must already be in
``$KERAS_HOME/models/`` (``~/.keras/models/`` by default), or its path can be passed directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from ..errors import EncoderWeightsError, LiverTumorError
from . import losses as _losses  # noqa: F401  (registers the loss for load_model)
from . import metrics as _metrics  # noqa: F401  (registers the metrics for load_model)

RESNET50_SKIP_LAYERS: tuple[str, ...] = (
    "conv1_relu",  # stride 2, 64 channels
    "conv2_block3_out",  # stride 4, 256 channels
    "conv3_block4_out",  # stride 8, 512 channels
    "conv4_block6_out",  # stride 16, 1024 channels
)
"""ResNet-50 layers (keras.applications names, checked against Keras 3.15) whose outputs feed the
decoder's skip connections, from the shallowest (1/2 of the input size) to the deepest (1/16)."""

RESNET50_BOTTLENECK = "conv5_block3_out"
"""The deepest ResNet-50 feature map (stride 32, 2048 channels): the decoder's starting point."""

IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
"""File name under which Keras caches the ImageNet ResNet-50 weights without the classifier."""

IMAGENET_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + IMAGENET_NOTOP_FILE
)
"""Where Keras downloads that file from (shown in error messages; never fetched here)."""

# ImageNet channel means in BGR order, from keras.applications.imagenet_utils ("caffe" mode).
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)

UPSAMPLING_MODES = ("transpose", "bilinear")


def imagenet_preprocessing(inputs, name: str = "imagenet_preprocessing"):
    """ImageNet "caffe" preprocessing of [0, 1] images, as the Keras ResNet-50 weights expect.

    Computes ``x * 255``, subtracts the ImageNet channel means and reverses the channel order
    (RGB to BGR): the same numbers as ``keras.applications.resnet50.preprocess_input(x * 255)``.
    It is a built-in ``Rescaling`` layer (scale 255, offset minus the means in RGB order),
    pinned to float32 so that the subtraction does not lose a grey level under a mixed policy
    (the first convolution casts to the policy's compute dtype), followed by a ``flip`` of the
    channel axis (a ``keras.ops`` node of the graph). Neither holds weights, and both are part
    of Keras itself, so a saved model loads with plain ``keras.saving.load_model``, and
    ResNet-50 weight files still fit the encoder layer by layer.

    Parameters
    ----------
    inputs : symbolic tensor ``(B, H, W, 3)``, floats in [0, 1]
    name : str
        Name of the ``Rescaling`` layer.

    Returns
    -------
    Symbolic tensor, same shape, float32, about [-124, 152].
    """
    offset = [-mean for mean in reversed(IMAGENET_BGR_MEAN)]  # RGB order, before the flip
    x = layers.Rescaling(255.0, offset=offset, dtype="float32", name=name)(inputs)
    return ops.flip(x, axis=-1)


def _check_common(input_shape, num_classes, dropout, upsampling, multiple: int, what: str):
    """Validate the arguments both builders share; return ``(height, width, channels)``."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    height, width, channels = input_shape
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"input_shape channels must be a positive int, got {channels!r}")
    for side_name, side in (("height", height), ("width", width)):
        if side is None:
            continue  # any size at call time; the caller feeds multiples of `multiple`
        if not isinstance(side, int) or side < multiple or side % multiple:
            raise ValueError(
                f"input {side_name} must be a positive multiple of {multiple} for {what}, "
                f"got {side}; resize or pad the slices (e.g. 256 or 512)"
            )
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
    return height, width, channels


def _conv_block(x, filters: int, prefix: str, batch_norm: bool = True):
    """Two (3x3 conv, batch norm, ReLU) layers; spatial size unchanged."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                          kernel_initializer="he_normal", name=f"{prefix}_conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{prefix}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{prefix}_relu{i}")(x)
    return x


def _upsample(x, filters: int, mode: str, prefix: str):
    """Double the spatial size: a 2x2 transposed convolution, or bilinear resize + 3x3 conv."""
    if mode == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same",
                                      kernel_initializer="he_normal", name=f"{prefix}_up")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{prefix}_up")(x)
    return layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal",
                         name=f"{prefix}_upconv")(x)


def _head(x, num_classes: int):
    """1x1 convolution to class logits, then a float32 softmax over the last axis."""
    x = layers.Conv2D(num_classes, 1, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="softmax")(x)


def set_class_prior(model: keras.Model, shares) -> None:
    """Set the output layer's biases (the 1x1 ``logits`` convolution) to the log of the
    class shares, so that an untrained model's softmax gives each class its share of the
    pixels (Lin et al. 2017, "Focal Loss for Dense Object Detection", section 3.3: the
    foreground starts rare, so the many easy background pixels do not swamp the first
    steps).

    Parameters
    ----------
    model : a model of this module (its last convolution is named ``logits``)
    shares : (num_classes,) positive class shares of the training pixels (any scale: the
        softmax is invariant to a common offset); shares below 1e-6 count as 1e-6

    Examples
    --------
    >>> m = build_unet((32, 32, 3), base_filters=4, depth=2)
    >>> set_class_prior(m, [0.9, 0.09, 0.01])
    >>> np.round(m.predict(np.zeros((1, 32, 32, 3)), verbose=0)[0, 0, 0], 2).tolist()
    [0.9, 0.09, 0.01]
    """
    layer = model.get_layer("logits")
    shares = np.asarray(shares, np.float64)
    if shares.shape != tuple(layer.bias.shape) or not (shares >= 0).all() or shares.sum() <= 0:
        raise ValueError(f"need {layer.bias.shape[0]} non-negative class shares, got {shares}")
    layer.bias.assign(np.log(np.maximum(shares / shares.sum(), 1e-6)).astype("float32"))


def build_unet(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 3),
    num_classes: int = 3,
    base_filters: int = 32,
    depth: int = 4,
    dropout: float = 0.0,
    batch_norm: bool = True,
    upsampling: str = "transpose",
    name: str = "unet",
) -> keras.Model:
    """A U-Net (Ronneberger et al. 2015) with batch normalisation and "same" padding.

    ``depth`` times: two (3x3 conv, BN, ReLU) layers, then 2x2 max-pooling, doubling the filters
    each level from ``base_filters``; a bottleneck block with ``base_filters * 2**depth``
    filters (followed by dropout, at the end of the contracting path as in the paper); then
    ``depth`` times: upsample x2, concatenate the encoder features of that level (skip
    connection), two (conv, BN, ReLU) layers; finally a 1x1 convolution and a float32 softmax.

    Parameters
    ----------
    input_shape : (height, width, channels)
        Height and width must be multiples of ``2**depth`` (or None: any such size at call
        time). Default (256, 256, 3): the exported slices.
    num_classes : int
        Output classes, default 3 (background, liver, tumor).
    base_filters : int
        Filters of the first level; the default 32 gives about 7.8 M parameters at depth 4
        (64, the paper's, about 31 M).
    depth : int
        Number of 2x2 poolings (the bottleneck is at 1 / 2**depth of the input size).
    dropout : float
        Dropout rate after the bottleneck block, in [0, 1); 0 disables it.
    batch_norm : bool
        Batch normalisation after each convolution (the convolutions then have no bias).
    upsampling : {"transpose", "bilinear"}
        2x2 transposed convolution (the paper's "up-convolution"), or bilinear resize
        followed by a 3x3 convolution (no checkerboard artefacts).
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Input ``(B, H, W, C)`` float in [0, 1]; output ``(B, H, W, num_classes)`` float32
        probabilities summing to 1 over the last axis.

    Raises
    ------
    ValueError
        For a size that is not a multiple of ``2**depth``, or another invalid argument.

    Examples
    --------
    >>> model = build_unet((64, 64, 3), base_filters=8, depth=3)
    >>> model.output_shape
    (None, 64, 64, 3)
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    if not isinstance(base_filters, int) or base_filters < 1:
        raise ValueError(f"base_filters must be an int >= 1, got {base_filters!r}")
    _check_common(input_shape, num_classes, dropout, upsampling, 2**depth,
                  f"a U-Net of depth {depth} (2**depth)")

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = _conv_block(x, base_filters * 2**level, f"enc{level + 1}", batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level + 1}_pool")(x)
    x = _conv_block(x, base_filters * 2**depth, "bottleneck", batch_norm)
    if dropout > 0:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(depth)):
        prefix = f"dec{level + 1}"
        x = _upsample(x, base_filters * 2**level, upsampling, prefix)
        x = layers.Concatenate(name=f"{prefix}_concat")([x, skips[level]])
        x = _conv_block(x, base_filters * 2**level, prefix, batch_norm)
    return keras.Model(inputs, _head(x, num_classes), name=name)


def default_imagenet_weights_path() -> Path:
    """Where ``encoder_weights="imagenet"`` looks for the ResNet-50 ImageNet weights.

    That is Keras's own download cache: ``$KERAS_HOME/models/`` when the ``KERAS_HOME``
    environment variable is set (Keras's convention), else ``~/.keras/models/``, with the file
    name :data:`IMAGENET_NOTOP_FILE`.
    """
    keras_home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(keras_home).expanduser() / "models" / IMAGENET_NOTOP_FILE


def _resolve_encoder_weights(encoder_weights) -> str | None:
    """Turn ``None | "imagenet" | path`` into None or an existing local file path."""
    if encoder_weights is None:
        return None
    if isinstance(encoder_weights, str) and encoder_weights == "imagenet":
        path = default_imagenet_weights_path()
        if not path.is_file():
            raise EncoderWeightsError(
                "ImageNet weights for the ResNet-50 encoder are not on disk and are never "
                f"downloaded at run time. Get {IMAGENET_NOTOP_FILE} (Keras publishes it at "
                f"{IMAGENET_NOTOP_URL}) and put it in {path.parent}/ , or pass its path as "
                "encoder_weights=..., or use encoder_weights=None (random initialisation)",
                path,
            )
        return str(path)
    path = Path(encoder_weights).expanduser()
    if not path.is_file():
        raise EncoderWeightsError(
            "encoder weights file not found; pass a ResNet-50 (include_top=False) weights file "
            f"such as {IMAGENET_NOTOP_FILE}, 'imagenet' to use Keras's cache, or None",
            path,
        )
    if not path.name.endswith((".h5", ".hdf5")):
        raise EncoderWeightsError(
            "encoder weights must be a Keras HDF5 weights file (.h5 / .hdf5, e.g. "
            f"{IMAGENET_NOTOP_FILE} or a file from model.save_weights('x.weights.h5'))",
            path,
        )
    return str(path)


def build_resnet50_unet(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 3),
    num_classes: int = 3,
    encoder_weights: str | os.PathLike | None = None,
    freeze_encoder: bool = False,
    decoder_filters: Sequence[int] = (256, 128, 64, 32, 16),
    dropout: float = 0.0,
    upsampling: str = "bilinear",
    name: str = "resnet50_unet",
) -> keras.Model:
    """A U-Net decoder on a ``keras.applications.ResNet50`` encoder.

    The [0, 1] input goes through :func:`imagenet_preprocessing` (x 255, RGB to BGR, minus the
    ImageNet channel means), the preprocessing the ImageNet weights were trained with. The JPG
    channels are not RGB photographs, but this keeps their scale where the pretrained filters
    expect it; with random weights it is a harmless fixed affine map, so both cases share one
    code path. The decoder starts at ``conv5_block3_out`` (1/32 of the input size) and, five
    times, upsamples x2 and applies two (3x3 conv, BN, ReLU) layers with ``decoder_filters[i]``
    filters; the first four stages first concatenate the skip features ``conv4_block6_out``
    (1/16), ``conv3_block4_out`` (1/8), ``conv2_block3_out`` (1/4) and ``conv1_relu`` (1/2); the
    fifth returns to full resolution. A 1x1 convolution and a float32 softmax close it.

    The encoder's layers keep their Keras names inside this model (``model.get_layer(
    "conv4_block6_out")``), so weights can be inspected and layers unfrozen by name.

    Parameters
    ----------
    input_shape : (height, width, 3)
        Height and width must be multiples of 32 (the encoder's total stride), or None.
    num_classes : int
        Output classes, default 3 (background, liver, tumor).
    encoder_weights : None, "imagenet" or path
        None: random initialisation. "imagenet": load
        ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`` from Keras's cache folder
        (see :func:`default_imagenet_weights_path`); nothing is downloaded. A path: a ResNet-50
        ``include_top=False`` weights file (the ImageNet file, or one written by
        ``keras.applications.ResNet50(include_top=False, ...).save_weights("x.weights.h5")``).
    freeze_encoder : bool
        Make every encoder layer non-trainable (its batch norms then also run in inference
        mode); only the decoder trains. Set ``layer.trainable = True`` later to fine-tune.
    decoder_filters : sequence of 5 ints
        Filters of the five decoder stages, deepest first.
    dropout : float
        Dropout rate on the bottleneck features, in [0, 1); 0 disables it.
    upsampling : {"bilinear", "transpose"}
        Bilinear resize + 3x3 conv (default), or a 2x2 transposed convolution.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Input ``(B, H, W, 3)`` float in [0, 1]; output ``(B, H, W, num_classes)`` float32
        probabilities summing to 1 over the last axis.

    Raises
    ------
    ValueError
        For a size that is not a multiple of 32, channels other than 3, or another invalid
        argument.
    EncoderWeightsError
        (a :class:`~livertumor.errors.LiverTumorError`) when the weights file is missing, is
        not HDF5, or does not fit ResNet-50 without its top; the message names the file and
        says how to provide it.

    Examples
    --------
    >>> model = build_resnet50_unet((64, 64, 3))
    >>> model.output_shape
    (None, 64, 64, 3)
    """
    decoder_filters = _check_resnet50_unet(input_shape, num_classes, dropout, upsampling,
                                           decoder_filters)
    weights_path = _resolve_encoder_weights(encoder_weights)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    encoder = _resnet50_encoder(imagenet_preprocessing(inputs), weights_path, freeze_encoder)
    x = encoder.get_layer(RESNET50_BOTTLENECK).output
    if dropout > 0:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    skips = [encoder.get_layer(name).output for name in reversed(RESNET50_SKIP_LAYERS)]
    x = _resnet50_decoder(x, skips, decoder_filters, upsampling)
    return keras.Model(inputs, _head(x, num_classes), name=name)


def _check_resnet50_unet(input_shape, num_classes, dropout, upsampling, decoder_filters
                         ) -> tuple[int, ...]:
    """Validate the ResNet-50 U-Net's arguments; return ``decoder_filters`` as a tuple.

    Raises
    ------
    ValueError
        A side that is not a multiple of 32, channels other than 3, not 5 positive decoder
        filter counts, or another invalid argument (see :func:`_check_common`).
    """
    _check_common(input_shape, num_classes, dropout, upsampling, 32,
                  "the ResNet-50 encoder (total stride 32)")
    if input_shape[2] != 3:
        raise ValueError(f"the ResNet-50 encoder takes 3 channels, got {input_shape[2]}")
    decoder_filters = tuple(decoder_filters)
    if len(decoder_filters) != 5 or not all(isinstance(f, int) and f > 0
                                             for f in decoder_filters):
        raise ValueError(f"decoder_filters must be 5 positive ints, got {decoder_filters!r}")
    return decoder_filters


def _resnet50_encoder(x, weights_path: str | None, freeze: bool) -> keras.Model:
    """``keras.applications.ResNet50`` without its top, on the preprocessed tensor ``x``.

    Its layers keep their Keras names and become layers of the model built on ``x``'s input.
    ``weights_path``: a local weights file, or None (random initialisation). ``freeze``: make
    every encoder layer non-trainable.

    Raises
    ------
    EncoderWeightsError
        The file cannot be read as ResNet-50 weights without the classifier.
    """
    try:
        encoder = keras.applications.ResNet50(include_top=False, weights=weights_path,
                                              input_tensor=x)
    except (ValueError, OSError, KeyError) as err:  # wrong layout, truncated or not HDF5
        keras_reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise EncoderWeightsError(
            "cannot load ResNet-50 weights from this file (it must hold a ResNet-50 without "
            f"its classifier, like {IMAGENET_NOTOP_FILE}); Keras says: {keras_reason}",
            weights_path,
        ) from err
    if freeze:
        for layer in encoder.layers:
            layer.trainable = False
    return encoder


def _resnet50_decoder(x, skips, decoder_filters: tuple[int, ...], upsampling: str):
    """Five decoder stages ``dec1`` .. ``dec5`` from the bottleneck ``x`` (1/32) to full size.

    Stage i upsamples x2 (:func:`_upsample`), concatenates ``skips[i]`` (the encoder features of
    the new size: 1/16, 1/8, 1/4, 1/2; the fifth stage has none) and applies
    :func:`_conv_block` with ``decoder_filters[i]`` filters.
    """
    for stage, (filters, skip) in enumerate(zip(decoder_filters, (*skips, None), strict=True),
                                            start=1):
        prefix = f"dec{stage}"
        x = _upsample(x, filters, upsampling, prefix)
        if skip is not None:
            x = layers.Concatenate(name=f"{prefix}_concat")([x, skip])
        x = _conv_block(x, filters, prefix)
    return x


def load_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    """Load a saved ``model.keras``, compiled with this package's loss and metrics.

    The models themselves are built-in Keras layers only: ``keras.saving.load_model(path,
    compile=False)`` reads them without this package. Compiling needs
    :class:`~livertumor.training.losses.DiceCrossEntropy` and the metrics of
    :mod:`livertumor.training.metrics`, which importing this module registers with Keras; and
    files saved by earlier versions hold a custom preprocessing layer, which
    :mod:`.legacy_layers` registers.

    Raises
    ------
    LiverTumorError
        When the file does not exist.
    """
    from . import fused_norm, legacy_layers  # noqa: F401  (register the checkpoints' and
    # older files' layers)

    path = Path(path)
    if not path.is_file():
        raise LiverTumorError("model file not found (train a model first)", path)
    return keras.saving.load_model(path, compile=compile)
