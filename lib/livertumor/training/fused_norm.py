"""Batch normalisation on TensorFlow's fused kernel while training; built-in layers when saved.

Keras 3's ``BatchNormalization`` computes the batch moments and the normalisation from generic
``keras.ops`` in float32, also under a ``mixed_bfloat16`` policy (it casts the activations up
and back). On the TensorFlow backend on CPU that costs nearly as much as the convolutions: the
demo's 16-filter U-Net (18 batch norms, 128 px, batch 16) trains at 32 images/s under
``mixed_bfloat16`` with it, at 53 with TensorFlow's fused kernel (``FusedBatchNormV3``, which
takes the bfloat16 activations and keeps its statistics in float32) and at 55 with no batch norm
at all; in float32 at 30, 34 and 34 (``python benchmarks/train_speed.py --batch-norm-only``, 2
CPU cores). A ResNet-50 U-Net at 96 px trained no faster with it: its convolutions dominate.

:class:`FusedBatchNormalization` is ``keras.layers.BatchNormalization`` with the same weights,
settings and inference path; only its training-mode call on the TensorFlow backend goes through
the fused kernel (every other case: another backend, a mask, synchronised statistics, no
centre or scale, not 4-D channels-last, runs the parent's code). The trainer swaps it in for
training (:func:`with_fused_batch_norm`) and swaps the built-in layer back before writing
``model.keras`` (:func:`with_builtin_batch_norm`), so the saved model still loads with plain
``keras.saving.load_model``; the checkpoints written during training (``best.keras``,
``last.keras``) hold this layer, which importing this module registers.

The kernel returns the batch variance with Bessel's correction (n / (n - 1)); the moving
variance here is updated with the uncorrected one, as the parent does, so both layers give the
same moving statistics (``tests/test_fused_norm.py``).
"""

from __future__ import annotations

import keras
from keras import layers

__all__ = ["FusedBatchNormalization", "with_builtin_batch_norm", "with_fused_batch_norm"]


@keras.saving.register_keras_serializable(package="livertumor")
class FusedBatchNormalization(layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step uses TensorFlow's fused kernel.

    Input and output as the parent's: ``(B, H, W, C)`` in the compute dtype. In training mode on
    the TensorFlow backend, for 4-D channels-last inputs without a mask, with ``center`` and
    ``scale`` and unsynchronised statistics, the output is
    ``gamma * (x - mean) / sqrt(var + epsilon) + beta`` over the batch's moments (mean and the
    biased variance over B, H, W), computed by ``FusedBatchNormV3`` in float32 from bfloat16,
    float16 or float32 activations; the moving statistics are updated as the parent updates
    them. Otherwise it is the parent's call.
    """

    def _fusable(self, inputs, training, mask) -> bool:
        return (bool(training) and self.trainable and mask is None
                and keras.backend.backend() == "tensorflow"
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.center and self.scale and not self.synchronized
                and not getattr(self, "renorm", False)
                and keras.backend.standardize_dtype(inputs.dtype)
                in ("float32", "float16", "bfloat16"))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"),
            epsilon=self.epsilon, data_format="NHWC", is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")
        variance = variance * tf.maximum(count - 1.0, 0.0) / count  # undo Bessel's correction
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum
                                    + variance * (1.0 - momentum))
        return tf.cast(outputs, self.compute_dtype)


def _swap_batch_norm(model: keras.Model, old: type, new: type) -> keras.Model:
    """A copy of the functional ``model`` with every layer of exactly class ``old`` rebuilt as
    ``new`` from the same config (names, settings, trainable flags), all other layers rebuilt
    as they are, and the weights copied; ``model`` itself if it has no ``old`` layer."""
    if not any(type(layer) is old for layer in model.layers):
        return model

    def clone(layer):
        cls = new if type(layer) is old else layer.__class__
        return cls.from_config(layer.get_config())

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


def with_fused_batch_norm(model: keras.Model) -> keras.Model:
    """The uncompiled functional ``model`` with its batch norms as
    :class:`FusedBatchNormalization` (same weights), for training on the TensorFlow backend;
    ``model`` itself on another backend or when it has no ``BatchNormalization``. Build it
    under the distribution strategy's scope, like the model."""
    if keras.backend.backend() != "tensorflow":
        return model
    return _swap_batch_norm(model, layers.BatchNormalization, FusedBatchNormalization)


def with_builtin_batch_norm(model: keras.Model) -> keras.Model:
    """``model`` with every :class:`FusedBatchNormalization` back to
    ``keras.layers.BatchNormalization`` (same weights), compiled as ``model`` was (a fresh
    optimizer); ``model`` itself when it has none. What ``model.keras`` is saved from."""
    twin = _swap_batch_norm(model, FusedBatchNormalization, layers.BatchNormalization)
    if twin is not model and model.compiled:
        twin.compile_from_config(model.get_compile_config())
    return twin
