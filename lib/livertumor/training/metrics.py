"""Streaming training metrics: Dice and IoU of the liver and the tumor, over all pixels seen.

These are Keras metrics for ``model.compile(metrics=...)``: they run inside the training and
validation loops, on 2-D slices, and report one number per epoch. (The per-case LiTS scores of
whole volumes, with surface distances, are numpy code in the scoring stage.)

Regions follow the LiTS scoring program: **liver is every label >= 1** (liver and tumor
together, labels 1 and 2), **tumor is label 2**. The prediction is the argmax of the softmax
output. Each metric accumulates, over every pixel of every batch since the last reset, the
counts of true positives (TP: in the region in truth and prediction), false positives (FP:
predicted only) and false negatives (FN: true only), and reports::

    dice = 2 TP / (2 TP + FP + FN)        iou = TP / (TP + FP + FN)

This is the global (pooled) score of the epoch, not a mean of per-slice scores, so slices
without tumor neither count as perfect nor as failed. **Empty case:** when neither truth nor
prediction has held a pixel of the region since the last reset (TP + FP + FN = 0), both metrics
report 1.0 (nothing to find, nothing found). Truth present but nothing predicted gives 0.

Counts are float32 variables, like those of Keras's own IoU metrics: exact up to 2**24 pixels
each (16.7 M: 256 slices of 256 x 256), then rounded to a relative 6e-8 per update.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from .losses import label_map

LIVER_LABELS: tuple[int, ...] = (1, 2)
"""Labels that count as liver in the metrics (LiTS: every label >= 1)."""

TUMOR_LABELS: tuple[int, ...] = (2,)
"""Labels that count as tumor."""


class _RegionCounts(keras.metrics.Metric):
    """Accumulate TP / FP / FN of one region (a set of labels) between argmax and labels.

    Parameters
    ----------
    labels : sequence of int
        Class labels forming the region (e.g. (1, 2) for the liver).
    name : str
        Metric name (the key in the training logs).
    dtype : str
        Dtype of the count variables, default float32.
    """

    def __init__(self, labels: Sequence[int], name: str, dtype: str | None = "float32"):
        super().__init__(name=name, dtype=dtype)
        self.labels = tuple(int(v) for v in labels)
        if not self.labels:
            raise ValueError("labels must name at least one class")
        self.true_positives = self.add_variable(shape=(), initializer="zeros",
                                                name="true_positives")
        self.false_positives = self.add_variable(shape=(), initializer="zeros",
                                                 name="false_positives")
        self.false_negatives = self.add_variable(shape=(), initializer="zeros",
                                                 name="false_negatives")

    def _in_region(self, label_tensor):
        inside = ops.equal(label_tensor, self.labels[0])
        for value in self.labels[1:]:
            inside = ops.logical_or(inside, ops.equal(label_tensor, value))
        return ops.cast(inside, self.dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add the counts of one batch.

        Parameters
        ----------
        y_true : (B, H, W) or (B, H, W, 1) integer labels
        y_pred : (B, H, W, C) class probabilities (or logits: only the argmax is used)
        sample_weight : optional, (B,), (B, H, W) or (B, H, W, 1)
            Multiplies each pixel's contribution (e.g. 0 for padding).
        """
        truth = self._in_region(label_map(y_true))
        pred = self._in_region(ops.argmax(y_pred, axis=-1))
        both = truth * pred
        if sample_weight is not None:
            weight = ops.cast(sample_weight, self.dtype)
            if len(weight.shape) == 1:
                weight = ops.reshape(weight, (-1, 1, 1))
            elif len(weight.shape) == 4:
                weight = ops.squeeze(weight, axis=-1)
            truth, pred, both = truth * weight, pred * weight, both * weight
        tp = ops.sum(both)
        self.true_positives.assign_add(tp)
        self.false_positives.assign_add(ops.sum(pred) - tp)
        self.false_negatives.assign_add(ops.sum(truth) - tp)

    def _ratio(self, numerator, denominator):
        return ops.where(denominator > 0, numerator / ops.maximum(denominator, 1e-12),
                         ops.ones_like(denominator))

    def reset_state(self):
        for variable in (self.true_positives, self.false_positives, self.false_negatives):
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {"labels": list(self.labels), "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="livertumor")
class RegionDice(_RegionCounts):
    """Global Dice ``2 TP / (2 TP + FP + FN)`` of a label region; 1.0 when both are empty.

    See the module docstring for the counts and the empty case. ``result()`` is a float32
    scalar in [0, 1].

    Examples
    --------
    >>> metric = RegionDice(TUMOR_LABELS, name="tumor_dice")
    """

    def result(self):
        tp2 = 2.0 * self.true_positives
        return self._ratio(tp2, tp2 + self.false_positives + self.false_negatives)


@keras.saving.register_keras_serializable(package="livertumor")
class RegionIoU(_RegionCounts):
    """Global IoU (Jaccard) ``TP / (TP + FP + FN)`` of a label region; 1.0 when both are empty.

    See the module docstring for the counts and the empty case. ``result()`` is a float32
    scalar in [0, 1].
    """

    def result(self):
        tp = self.true_positives
        return self._ratio(tp, tp + self.false_positives + self.false_negatives)


def segmentation_metrics(prefix: str = "") -> list[keras.metrics.Metric]:
    """Fresh ``liver_dice``, ``tumor_dice``, ``liver_iou``, ``tumor_iou`` metrics for compile.

    Liver is labels >= 1 (liver + tumor), tumor is label 2; see the module docstring.
    ``prefix`` goes before each name (``val_`` for validation copies in a custom loop).

    Examples
    --------
    >>> model.compile(loss=DiceCrossEntropy(), metrics=segmentation_metrics())  # doctest: +SKIP
    """
    return [
        RegionDice(LIVER_LABELS, name=f"{prefix}liver_dice"),
        RegionDice(TUMOR_LABELS, name=f"{prefix}tumor_dice"),
        RegionIoU(LIVER_LABELS, name=f"{prefix}liver_iou"),
        RegionIoU(TUMOR_LABELS, name=f"{prefix}tumor_iou"),
    ]
