"""Training loss: pixel-wise cross-entropy plus soft Dice over the liver and tumor classes.

Everything here takes softmax probabilities ``(B, H, W, C)`` and integer label maps
``(B, H, W)`` or ``(B, H, W, 1)`` (0 background, 1 liver, 2 tumor), computes in float32 whatever
the dtype policy, and uses ``keras.ops`` only (any Keras 3 backend).

Soft Dice is computed **over the whole batch** (sums over images and pixels, one value per
class), not per image and then averaged. Most training slices contain no tumor, and many no
liver: per image, a class absent from both truth and prediction has an undefined Dice that the
smoothing term turns into 1 (or, with a slight false positive, into nearly 0), so the per-image
mean jumps between those extremes and its gradient is dominated by empty slices. Summed over the
batch, the few tumor pixels present are weighed by their count, which is more stable (the
"batch Dice" of nnU-Net). Under a distribution strategy, the batch is each replica's share.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

_LOG_CLIP = 1e-7  # probabilities are clipped to [1e-7, 1] before the log


def label_map(y_true):
    """Integer label map ``(B, H, W)`` int32 from ``(B, H, W)`` or ``(B, H, W, 1)`` labels.

    Labels may arrive as any integer or float dtype (Keras casts ``y_true`` to the loss dtype);
    they are rounded to the nearest integer.

    Raises
    ------
    ValueError
        For any other rank or a last axis longer than 1 (one-hot labels are not accepted).
    """
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 4:
        if y_true.shape[-1] != 1:
            raise ValueError("labels must be (B, H, W) or (B, H, W, 1) integer maps, got shape "
                             f"{tuple(y_true.shape)} (one-hot labels are not accepted)")
        y_true = ops.squeeze(y_true, axis=-1)
    elif len(y_true.shape) != 3:
        raise ValueError(f"labels must be (B, H, W) or (B, H, W, 1), got {tuple(y_true.shape)}")
    if "int" not in keras.backend.standardize_dtype(y_true.dtype):
        y_true = ops.round(y_true)
    return ops.cast(y_true, "int32")


def soft_dice_per_class(y_true, y_pred, epsilon: float = 1.0):
    """Batch-level soft Dice of every class.

    For class c, with ``p = y_pred[..., c]`` and ``g = (labels == c)``, summed over all images
    and pixels of the batch::

        dice_c = (2 * sum(p * g) + epsilon) / (sum(p) + sum(g) + epsilon)

    Parameters
    ----------
    y_true : (B, H, W) or (B, H, W, 1) integer labels in [0, C)
    y_pred : (B, H, W, C) float probabilities
    epsilon : float
        Smoothing term; with the default 1.0 a class absent from truth and prediction scores 1,
        and an absent class predicted with total probability mass s scores 1 / (1 + s).

    Returns
    -------
    tensor (C,), float32, values in (0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[[[0.5, 0.5]]]], "float32")  # one pixel, two classes, label 1
    >>> np.round(np.asarray(soft_dice_per_class(np.array([[[1]]]), probs, 1e-9)), 3)
    array([0.   , 0.667], dtype=float32)
    """
    probs = ops.cast(y_pred, "float32")
    onehot = ops.one_hot(label_map(y_true), probs.shape[-1], dtype="float32")
    return _soft_dice(onehot, probs, epsilon)


def tumor_size_weights(y_true, weight: float, window: int = 15):
    """Cross-entropy weight of each pixel: ``1 + weight * (1 - d)`` on tumor pixels, 1 on the
    others, where ``d`` is the share of tumor among the ``window`` x ``window`` pixels around
    the pixel (those inside the image).

    The pixels of a tumor a few pixels wide, and those at any tumor's edge, weigh up to
    ``1 + weight``; the inside of a large tumor about 1. Pixel-wise losses otherwise give a
    small tumor a say in proportion to its area, so the largest tumors of a batch decide the
    gradient (the U-Net paper's weight map, Ronneberger et al. 2015, weighs the borders
    between touching cells in the same spirit).

    Parameters
    ----------
    y_true : (B, H, W) or (B, H, W, 1) integer labels (2 = tumor)
    weight : float >= 0 (0: all ones)
    window : odd int, side of the neighbourhood in pixels

    Returns
    -------
    tensor (B, H, W) float32, values in [1, 1 + weight]

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((1, 31, 31), "int32"); labels[0, 15, 15] = 2  # a one-pixel tumor
    >>> w = np.asarray(tumor_size_weights(labels, 4.0))
    >>> round(float(w[0, 15, 15]), 3), float(w[0, 0, 0])  # 1 + 4 * (1 - 1/225)
    (4.982, 1.0)
    """
    tumor = ops.cast(ops.equal(label_map(y_true), 2), "float32")[..., None]
    if weight == 0:
        return ops.ones_like(tumor[..., 0])
    density = ops.average_pool(tumor, window, strides=1, padding="same")
    return (1.0 + weight * tumor * (1.0 - density))[..., 0]


def _soft_dice(onehot, probs, epsilon: float):
    """Batch-level soft Dice (C,) from one-hot truth and probabilities, both (B, H, W, C)."""
    axes = (0, 1, 2)
    intersection = ops.sum(probs * onehot, axis=axes)
    total = ops.sum(probs, axis=axes) + ops.sum(onehot, axis=axes)
    return (2.0 * intersection + epsilon) / (total + epsilon)


@keras.saving.register_keras_serializable(package="livertumor")
class DiceCrossEntropy(keras.losses.Loss):
    """Cross-entropy plus ``dice_weight`` times the soft Dice loss of the foreground classes.

    Per image b::

        loss_b = mean over pixels of  w[g] * s * -log(clip(p[g], 1e-7, 1))
                 + dice_weight * (1 - mean over c in dice_classes of dice_c)

    where ``g`` is the true label of the pixel, ``w`` the ``class_weights`` (all 1 by default),
    ``s`` the pixel's :func:`tumor_size_weights` (all 1 with ``tumor_size_weight`` 0) and
    ``dice_c`` the batch-level soft Dice of :func:`soft_dice_per_class` (the same value for
    every image of the batch). Keras then averages ``loss_b`` over the batch, so the loss is the
    pixel-mean (weighted) cross-entropy plus the Dice term. Everything is computed in float32,
    also under mixed precision. The Dice term scores the softmax channels as they are (liver =
    channel 1 alone), whereas the metrics of :mod:`.metrics` score the LiTS regions
    (liver = labels 1 and 2): the classes are mutually exclusive in the output, so each channel
    gets its own gradient. When a batch holds no tumor and none is predicted, its Dice is 1
    (no loss); a false-positive tumor mass s there costs ``1 - 1 / (1 + s)`` (epsilon 1).

    Parameters
    ----------
    dice_weight : float
        Weight of the Dice term, >= 0; 0 gives plain (weighted) cross-entropy.
    dice_classes : sequence of int
        Classes the Dice term averages over; default (1, 2): liver and tumor, not background.
    class_weights : sequence of float, optional
        One weight per class for the cross-entropy (e.g. (1, 1, 5) to weigh tumor pixels up);
        None weighs all pixels equally.
    epsilon : float
        Dice smoothing term (see :func:`soft_dice_per_class`), > 0.
    tumor_size_weight : float
        >= 0: the extra cross-entropy weight of pixels of small tumors and tumor edges
        (:func:`tumor_size_weights`); 0 (default) leaves it out.
    size_window : int
        Odd neighbourhood side, in pixels, of :func:`tumor_size_weights`.
    name : str
        Loss name.
    **kwargs
        ``reduction`` / ``dtype`` as in ``keras.losses.Loss`` (defaults: mean over the batch,
        float32); they exist so that saved models reload.

    Notes
    -----
    ``y_true`` is ``(B, H, W)`` or ``(B, H, W, 1)`` integer labels in [0, C); ``y_pred`` is
    ``(B, H, W, C)`` probabilities (a softmax output, not logits). ``call`` returns ``(B,)``
    float32.

    Examples
    --------
    >>> model.compile(optimizer="adam", loss=DiceCrossEntropy(dice_weight=1.0))  # doctest: +SKIP
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        dice_classes: Sequence[int] = (1, 2),
        class_weights: Sequence[float] | None = None,
        epsilon: float = 1.0,
        tumor_size_weight: float = 0.0,
        size_window: int = 15,
        name: str = "dice_cross_entropy",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=name, **kwargs)
        if not dice_weight >= 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.dice_classes = tuple(int(c) for c in dice_classes)
        if dice_weight > 0 and not self.dice_classes:
            raise ValueError("dice_classes is empty but dice_weight > 0")
        if any(c < 0 for c in self.dice_classes):
            raise ValueError(f"dice_classes must be class indices >= 0, got {self.dice_classes}")
        self.class_weights = None if class_weights is None else tuple(float(w)
                                                                      for w in class_weights)
        if self.class_weights is not None and any(w < 0 for w in self.class_weights):
            raise ValueError(f"class_weights must be >= 0, got {self.class_weights}")
        if not tumor_size_weight >= 0:
            raise ValueError(f"tumor_size_weight must be >= 0, got {tumor_size_weight}")
        if int(size_window) != size_window or size_window < 1 or size_window % 2 == 0:
            raise ValueError(f"size_window must be an odd number of pixels, got {size_window}")
        self.dice_weight = float(dice_weight)
        self.epsilon = float(epsilon)
        self.tumor_size_weight = float(tumor_size_weight)
        self.size_window = int(size_window)

    def call(self, y_true, y_pred):
        probs = ops.cast(y_pred, "float32")
        num_classes = probs.shape[-1]
        if max(self.dice_classes, default=0) >= num_classes:
            raise ValueError(f"dice_classes {self.dice_classes} out of range for "
                             f"{num_classes} output classes")
        onehot = ops.one_hot(label_map(y_true), num_classes, dtype="float32")
        log_p = ops.log(ops.clip(probs, _LOG_CLIP, 1.0))
        if self.class_weights is not None:
            if len(self.class_weights) != num_classes:
                raise ValueError(f"class_weights has {len(self.class_weights)} entries for "
                                 f"{num_classes} output classes")
            onehot_w = onehot * ops.convert_to_tensor(self.class_weights, dtype="float32")
        else:
            onehot_w = onehot
        pixel_ce = -ops.sum(onehot_w * log_p, axis=-1)  # (B, H, W)
        if self.tumor_size_weight > 0:
            pixel_ce = pixel_ce * tumor_size_weights(y_true, self.tumor_size_weight,
                                                     self.size_window)
        cross_entropy = ops.mean(pixel_ce, axis=(1, 2))  # (B,)
        if self.dice_weight == 0:
            return cross_entropy
        dice = _soft_dice(onehot, probs, self.epsilon)
        dice_fg = ops.mean(ops.take(dice, ops.convert_to_tensor(self.dice_classes)))
        return cross_entropy + self.dice_weight * (1.0 - dice_fg)

    def get_config(self):
        config = super().get_config()
        config.update(dice_weight=self.dice_weight, dice_classes=list(self.dice_classes),
                      class_weights=None if self.class_weights is None
                      else list(self.class_weights),
                      epsilon=self.epsilon, tumor_size_weight=self.tumor_size_weight,
                      size_window=self.size_window)
        return config
