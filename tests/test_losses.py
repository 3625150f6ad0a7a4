"""The Dice + cross-entropy loss and the streaming Dice / IoU metrics, against hand counts."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from livertumor.training.losses import (
    DiceCrossEntropy,
    label_map,
    soft_dice_per_class,
    tumor_size_weights,
)
from livertumor.training.metrics import (
    LIVER_LABELS,
    TUMOR_LABELS,
    RegionDice,
    RegionIoU,
    segmentation_metrics,
)

# One image of three pixels labelled background, liver, tumor, and a softmax output for it.
LABELS_3PX = np.array([[[0, 1, 2]]], np.uint8)  # (1, 1, 3)
PROBS_3PX = np.array([[[[0.8, 0.1, 0.1],
                        [0.2, 0.6, 0.2],
                        [0.1, 0.3, 0.6]]]], np.float32)  # (1, 1, 3, 3)


def onehot(label_array, num_classes=3):
    return np.eye(num_classes, dtype=np.float32)[label_array]


def value(tensor):
    return float(tensor)


# ---- labels ------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["bhw_uint8", "bhw1_int64", "bhw_float"])
def test_label_map_accepts_bhw_and_bhw1_in_any_numeric_dtype(form):
    labels = {"bhw_uint8": LABELS_3PX, "bhw1_int64": LABELS_3PX[..., None].astype(np.int64),
              "bhw_float": LABELS_3PX.astype(np.float32)}[form]
    out = keras.ops.convert_to_numpy(label_map(labels))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, LABELS_3PX)


@pytest.mark.parametrize("shape", [(1, 1, 3, 3), (3,), (1, 1, 1, 3, 1)])
def test_label_map_rejects_one_hot_and_other_ranks(shape):
    with pytest.raises(ValueError, match="labels must be"):
        label_map(np.zeros(shape, np.uint8))


# ---- soft Dice ---------------------------------------------------------------------------------

def test_soft_dice_per_class_follows_the_formula_with_epsilon_1():
    dice = keras.ops.convert_to_numpy(soft_dice_per_class(LABELS_3PX, PROBS_3PX))
    # (2 * sum(p * g) + 1) / (sum(p) + sum(g) + 1), by hand, per class
    expected = [(2 * 0.8 + 1) / (1.1 + 1 + 1),
                (2 * 0.6 + 1) / (1.0 + 1 + 1),
                (2 * 0.6 + 1) / (0.9 + 1 + 1)]
    np.testing.assert_allclose(dice, expected, rtol=1e-6)
    assert dice.dtype == np.float32


def test_soft_dice_is_pooled_over_the_batch_not_averaged_per_image():
    labels = np.array([[[2, 2]], [[0, 0]]], np.uint8)  # tumor only in image 0
    probs = np.stack([onehot(np.array([[2, 2]])),  # image 0: perfect
                      onehot(np.array([[0, 2]]))])  # image 1: one false-positive tumor pixel
    dice = keras.ops.convert_to_numpy(soft_dice_per_class(labels, probs, epsilon=1e-9))
    # batch sums: intersection 2, predicted 3, true 2 -> 4 / 5 (per-image mean would be 0.5)
    np.testing.assert_allclose(dice[2], 4 / 5, rtol=1e-6)


def test_soft_dice_of_a_class_absent_from_truth_is_1_over_1_plus_its_probability_mass():
    labels = np.zeros((1, 1, 2), np.uint8)
    probs = np.array([[[[0.7, 0.0, 0.3], [0.9, 0.0, 0.1]]]], np.float32)
    dice = keras.ops.convert_to_numpy(soft_dice_per_class(labels, probs))
    np.testing.assert_allclose(dice[1:], [1.0, 1 / (1 + 0.4)], rtol=1e-6)


# ---- the loss ----------------------------------------------------------------------------------

def test_loss_of_known_probabilities_is_cross_entropy_plus_one_minus_mean_fg_dice():
    loss = value(DiceCrossEntropy()(LABELS_3PX, PROBS_3PX))
    cross_entropy = -(math.log(0.8) + math.log(0.6) + math.log(0.6)) / 3
    dice_liver, dice_tumor = (2 * 0.6 + 1) / 3.0, (2 * 0.6 + 1) / 2.9
    assert loss == pytest.approx(cross_entropy + 1 - (dice_liver + dice_tumor) / 2, rel=1e-5)


def test_dice_weight_and_class_weights_scale_their_terms():
    loss = DiceCrossEntropy(dice_weight=2.5, class_weights=(1.0, 2.0, 4.0), dice_classes=(2,))
    got = value(loss(LABELS_3PX, PROBS_3PX))
    cross_entropy = -(1 * math.log(0.8) + 2 * math.log(0.6) + 4 * math.log(0.6)) / 3
    assert got == pytest.approx(cross_entropy + 2.5 * (1 - 2.2 / 2.9), rel=1e-5)


def test_perfect_prediction_gives_zero_loss_also_without_tumor_in_the_batch():
    labels = np.array([[[0, 1], [1, 2]], [[0, 0], [1, 1]]], np.uint8)
    assert value(DiceCrossEntropy()(labels, onehot(labels))) == pytest.approx(0.0, abs=1e-6)
    no_tumor = labels[1:]
    assert value(DiceCrossEntropy()(no_tumor, onehot(no_tumor))) == pytest.approx(0.0, abs=1e-6)


def test_zero_dice_weight_is_keras_sparse_categorical_cross_entropy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 4, 4, 1)).astype(np.uint8)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(rng.normal(size=(2, 4, 4, 3))))
    ours = value(DiceCrossEntropy(dice_weight=0)(labels, probs))
    reference = value(keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    assert ours == pytest.approx(reference, rel=1e-5)


def test_loss_is_the_same_for_bhw_and_bhw1_labels_and_float32_for_bfloat16_probabilities():
    loss = DiceCrossEntropy()
    a = loss(LABELS_3PX, PROBS_3PX)
    b = loss(LABELS_3PX[..., None].astype(np.int32), PROBS_3PX)
    c = loss(LABELS_3PX, keras.ops.cast(PROBS_3PX, "bfloat16"))
    assert value(a) == pytest.approx(value(b), rel=1e-6)
    assert keras.backend.standardize_dtype(c.dtype) == "float32"
    assert value(c) == pytest.approx(value(a), rel=2e-2)  # bfloat16 rounds the inputs only


def test_tumor_size_weights_favour_small_tumors_and_tumor_edges():
    labels = np.zeros((2, 60, 60), np.int32)
    labels[0, 10, 10] = 2  # a one-pixel tumor
    labels[0, 25:28, 25:28] = 1  # liver weighs 1 whatever its shape
    labels[1, 10:50, 10:50] = 2  # a 40 x 40 tumor
    w = keras.ops.convert_to_numpy(tumor_size_weights(labels, 4.0, window=15))
    assert w.shape == (2, 60, 60) and w.dtype == np.float32
    assert w[0, 10, 10] == pytest.approx(1 + 4 * (1 - 1 / 225))
    assert (w[0][labels[0] != 2] == 1).all() and (w[1][labels[1] != 2] == 1).all()
    assert w[1, 30, 30] == pytest.approx(1.0)  # deep inside: all 225 neighbours are tumor
    assert w[1, 30, 10] == pytest.approx(1 + 4 * (1 - 8 / 15))  # an edge: 8 of 15 columns
    # near the image's border only the pixels inside the image count: 8 of 13 columns
    labels[1, :, :10] = 0
    labels[1, :, 5:10] = 2
    w = keras.ops.convert_to_numpy(tumor_size_weights(labels, 4.0, window=15))
    assert w[1, 30, 5] == pytest.approx(1 + 4 * (1 - 8 / 13))
    assert (keras.ops.convert_to_numpy(tumor_size_weights(labels, 0.0)) == 1).all()


def test_tumor_size_weight_multiplies_each_pixels_cross_entropy():
    rng = np.random.default_rng(1)
    labels = np.zeros((2, 20, 20, 1), np.uint8)
    labels[0, 3:6, 3:6] = 2
    labels[1, 2:18, 2:18] = 1
    labels[1, 4:16, 4:16] = 2
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(rng.normal(size=(2, 20, 20, 3))))
    loss = DiceCrossEntropy(dice_weight=0.0, class_weights=(1.0, 1.0, 2.0),
                            tumor_size_weight=3.0, size_window=5)
    w = keras.ops.convert_to_numpy(tumor_size_weights(labels, 3.0, window=5))
    truth = labels[..., 0]
    ce = -np.log(np.take_along_axis(probs, truth[..., None].astype(int), -1)[..., 0])
    expected = (ce * w * np.where(truth == 2, 2.0, 1.0)).mean(axis=(1, 2)).mean()
    assert value(loss(labels, probs)) == pytest.approx(expected, rel=1e-5)
    plain = DiceCrossEntropy(dice_weight=0.0, class_weights=(1.0, 1.0, 2.0))
    assert value(DiceCrossEntropy(dice_weight=0.0, class_weights=(1.0, 1.0, 2.0),
                                  tumor_size_weight=0.0)(labels, probs)) == pytest.approx(
        value(plain(labels, probs)))
    assert value(loss(labels, probs)) > value(plain(labels, probs))


def test_loss_serialises_and_deserialises_with_its_parameters():
    loss = DiceCrossEntropy(dice_weight=0.3, dice_classes=(2,), class_weights=(1, 1, 5),
                            epsilon=0.5, tumor_size_weight=2.0, size_window=7)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, DiceCrossEntropy)
    assert restored.get_config() == loss.get_config()
    assert value(restored(LABELS_3PX, PROBS_3PX)) == pytest.approx(
        value(loss(LABELS_3PX, PROBS_3PX)))


@pytest.mark.parametrize("bad", [{"dice_weight": -1}, {"epsilon": 0}, {"dice_classes": ()},
                                 {"class_weights": (1, -1, 1)}, {"tumor_size_weight": -1},
                                 {"size_window": 4}, {"size_window": 0}])
def test_loss_rejects_invalid_parameters(bad):
    with pytest.raises(ValueError):
        DiceCrossEntropy(**bad)


@pytest.mark.parametrize("bad", [{"dice_classes": (1, 3)}, {"class_weights": (1, 1)}])
def test_loss_rejects_classes_the_model_does_not_output(bad):
    with pytest.raises(ValueError, match="classes"):
        DiceCrossEntropy(**bad)(LABELS_3PX, PROBS_3PX)


# ---- metrics -----------------------------------------------------------------------------------

# Truth and argmax prediction of one 2 x 3 image. Liver = labels >= 1: truth 4 px, pred 4 px,
# TP 3 ((0,1), (1,0), (1,1): the true tumor pixel predicted as liver counts as liver), FP 1
# ((0,0)), FN 1 ((0,2)). Tumor = label 2: TP 1 ((1,0)), FP 0, FN 1 ((1,1)).
TRUTH = np.array([[[0, 1, 1], [2, 2, 0]]], np.uint8)
PRED = np.array([[[1, 1, 0], [2, 1, 0]]])


def metric_value(metric):
    return value(metric.result())


def test_metrics_count_liver_as_labels_1_and_2_and_tumor_as_label_2():
    scores = {}
    for metric in segmentation_metrics():
        metric.update_state(TRUTH, onehot(PRED))
        scores[metric.name] = metric_value(metric)
    assert scores == pytest.approx({"liver_dice": 2 * 3 / (2 * 3 + 1 + 1),
                                    "liver_iou": 3 / (3 + 1 + 1),
                                    "tumor_dice": 2 * 1 / (2 * 1 + 0 + 1),
                                    "tumor_iou": 1 / (1 + 0 + 1)})


def test_metric_counts_are_exposed_as_variables():
    metric = RegionDice(TUMOR_LABELS, name="tumor_dice")
    metric.update_state(TRUTH[..., None], onehot(PRED))  # (B, H, W, 1) labels too
    counts = [value(v) for v in (metric.true_positives, metric.false_positives,
                                 metric.false_negatives)]
    assert counts == [1.0, 0.0, 1.0]


@pytest.mark.parametrize("metric_class", [RegionDice, RegionIoU])
def test_metrics_are_1_when_truth_and_prediction_are_both_empty(metric_class):
    metric = metric_class(TUMOR_LABELS, name="tumor")
    assert metric_value(metric) == 1.0  # nothing seen yet
    background = np.zeros((2, 3, 3), np.uint8)
    metric.update_state(background, onehot(background))
    assert metric_value(metric) == 1.0


@pytest.mark.parametrize("metric_class", [RegionDice, RegionIoU])
def test_metrics_are_0_when_only_one_side_has_the_region(metric_class):
    tumor = np.full((1, 2, 2), 2, np.uint8)
    background = np.zeros((1, 2, 2), np.uint8)
    missed = metric_class(TUMOR_LABELS, name="missed")
    missed.update_state(tumor, onehot(background))
    invented = metric_class(TUMOR_LABELS, name="invented")
    invented.update_state(background, onehot(tumor))
    assert metric_value(missed) == 0.0
    assert metric_value(invented) == 0.0


def test_metrics_pool_counts_over_batches_and_reset():
    metric = RegionDice(TUMOR_LABELS, name="tumor_dice")
    one_tumor_px = np.array([[[2, 0, 0, 0]]], np.uint8)
    metric.update_state(one_tumor_px, onehot(one_tumor_px))  # TP 1
    three_missed = np.array([[[2, 2, 2, 0]]], np.uint8)
    metric.update_state(three_missed, onehot(np.zeros_like(three_missed)))  # FN 3
    # pooled: 2 / (2 + 3) = 0.4; a mean of the two batch scores would say 0.5
    assert metric_value(metric) == pytest.approx(0.4)
    metric.reset_state()
    assert value(metric.false_negatives) == 0.0
    assert metric_value(metric) == 1.0


def test_metrics_weigh_pixels_by_sample_weight():
    truth = np.concatenate([TRUTH, TRUTH])
    pred = np.concatenate([TRUTH, PRED])  # image 0 perfect, image 1 with the errors above
    metric = RegionIoU(LIVER_LABELS, name="liver_iou")
    metric.update_state(truth, onehot(pred), sample_weight=np.array([1.0, 0.0]))
    assert metric_value(metric) == 1.0
    metric.reset_state()
    metric.update_state(truth, onehot(pred), sample_weight=np.ones((2, 2, 3, 1)))
    assert metric_value(metric) == pytest.approx((4 + 3) / (4 + 3 + 1 + 1))


def test_metrics_serialise_with_their_labels_and_name():
    metric = RegionIoU(LIVER_LABELS, name="liver_iou")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(restored, RegionIoU)
    assert restored.labels == (1, 2)
    assert restored.name == "liver_iou"
    restored.update_state(TRUTH, onehot(PRED))
    assert metric_value(restored) == pytest.approx(0.6)
