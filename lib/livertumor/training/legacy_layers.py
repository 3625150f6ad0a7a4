"""Layers that only models saved by earlier versions of this package contain.

New models are made of built-in Keras layers and operations alone, so plain
``keras.saving.load_model`` reads them without this package. Earlier ResNet-50 U-Nets held
:class:`ImageNetPreprocessing`; importing this module registers it with Keras, and
:func:`.models.load_model` does so, so that ``livertumor.training.load_model`` still reads
those files.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from .models import IMAGENET_BGR_MEAN


@keras.saving.register_keras_serializable(package="livertumor")
class ImageNetPreprocessing(layers.Layer):
    """ImageNet "caffe" preprocessing of [0, 1] images: ``x * 255``, RGB to BGR, minus the
    BGR channel means, in float32. Input ``(..., 3)`` floats in [0, 1]; output the same shape,
    float32, about [-124, 152]. Superseded by :func:`.models.imagenet_preprocessing`."""

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, inputs):
        x = ops.flip(ops.cast(inputs, "float32") * 255.0, axis=-1)
        return x - ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype="float32")

    def compute_output_shape(self, input_shape):
        return input_shape
