"""The fused batch norm of training: same numbers as Keras's layer, swapped in and out whole."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from livertumor.training.fused_norm import (
    FusedBatchNormalization,
    with_builtin_batch_norm,
    with_fused_batch_norm,
)
from livertumor.training.models import build_resnet50_unet, build_unet

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _pair(dtype, channels=6, momentum=0.9, epsilon=1e-3):
    """A built-in and a fused batch norm with the same random gamma, beta and moving stats."""
    rng = np.random.default_rng(1)
    made = []
    for cls in (keras.layers.BatchNormalization, FusedBatchNormalization):
        layer = cls(momentum=momentum, epsilon=epsilon, dtype=dtype)
        layer.build((None, 5, 7, channels))
        made.append(layer)
    weights = [rng.normal(1, 0.3, channels), rng.normal(0, 0.5, channels),
               rng.normal(0, 1, channels), rng.uniform(0.5, 2, channels)]
    for layer in made:
        layer.set_weights([w.astype("float32") for w in weights])
    return made


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("mixed_bfloat16", 3e-2)])
def test_training_step_matches_keras_batch_norm(dtype, tol):
    builtin, fused = _pair(dtype)
    x = np.random.default_rng(2).normal(3, 2, (4, 5, 7, 6)).astype("float32")
    results = []
    for layer in (builtin, fused):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, training=True)
            # a loss that weighs every output differently, so gradients are not trivial
            loss = tf.reduce_sum(tf.cast(y, "float32") * tf.reshape(tf.range(840.0), y.shape))
        grads = tape.gradient(loss, [xt, layer.gamma, layer.beta])
        results.append((y, grads, [np.asarray(v) for v in (layer.moving_mean,
                                                           layer.moving_variance)]))
    (y0, g0, m0), (y1, g1, m1) = results
    assert y1.dtype == y0.dtype
    np.testing.assert_allclose(np.float32(y1), np.float32(y0), rtol=tol, atol=tol)
    for a, b in zip(g1, g0, strict=True):
        scale = np.abs(np.asarray(b)).max()
        np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=tol)
    # moving statistics: the same uncorrected variance as Keras's layer, not n / (n - 1) of it
    for a, b in zip(m1, m0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == "float32" else 1e-2)
    assert not np.allclose(m1[0], _pair(dtype)[0].moving_mean)  # they did move


def test_inference_is_the_keras_layer_exactly():
    builtin, fused = _pair("float32")
    x = np.random.default_rng(3).normal(0, 1, (2, 5, 7, 6)).astype("float32")
    np.testing.assert_array_equal(np.asarray(fused(x, training=False)),
                                  np.asarray(builtin(x, training=False)))


def test_other_cases_run_the_parent_code():
    # 2-D input: the fused kernel takes 4-D NHWC only; the parent's result, exactly
    builtin = keras.layers.BatchNormalization()
    fused = FusedBatchNormalization()
    x = np.random.default_rng(4).normal(0, 1, (8, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(fused(x, training=True)),
                                  np.asarray(builtin(x, training=True)))


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer:UserWarning")
@pytest.mark.parametrize("build", [
    lambda: build_unet((32, 32, 4), base_filters=4, depth=2),
    lambda: build_resnet50_unet((32, 32, 3), decoder_filters=(8, 8, 8, 8, 8)),
], ids=["unet", "resnet50_unet"])
def test_swapping_in_and_out_keeps_every_layer_and_weight(build, tmp_path):
    model = build()
    n_bn = sum(type(layer) is keras.layers.BatchNormalization for layer in model.layers)
    assert n_bn > 0
    fused = with_fused_batch_norm(model)
    assert [layer.name for layer in fused.layers] == [layer.name for layer in model.layers]
    assert sum(type(layer) is FusedBatchNormalization for layer in fused.layers) == n_bn
    assert not any(type(layer) is keras.layers.BatchNormalization for layer in fused.layers)
    x = np.random.default_rng(5).random((2, *model.input_shape[1:]), dtype=np.float32)
    want = model.predict(x, verbose=0)
    np.testing.assert_array_equal(fused.predict(x, verbose=0), want)

    fused.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    fused.fit(x, np.zeros((2, *model.input_shape[1:3], 1)), epochs=1, verbose=0)
    back = with_builtin_batch_norm(fused)
    assert sum(type(layer) is keras.layers.BatchNormalization for layer in back.layers) == n_bn
    assert back.compiled and back.loss == "sparse_categorical_crossentropy"
    np.testing.assert_array_equal(back.predict(x, verbose=0), fused.predict(x, verbose=0))
    assert not np.array_equal(back.predict(x, verbose=0), want)  # it trained
    # frozen layers stay frozen
    assert [layer.trainable for layer in back.layers] == [layer.trainable
                                                          for layer in model.layers]


def test_a_model_without_batch_norm_is_returned_as_it_is():
    model = build_unet((32, 32, 3), base_filters=4, depth=2, batch_norm=False)
    assert with_fused_batch_norm(model) is model
    assert with_builtin_batch_norm(model) is model
