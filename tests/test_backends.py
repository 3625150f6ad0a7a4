"""The models, loss and metrics are pure Keras 3: they build, train and round-trip through
``model.keras`` on the JAX backend too (``KERAS_BACKEND=jax``), in a process of its own
(the backend is chosen when Keras is first imported). JAX comes with the ``jax`` extra,
which ``make install`` installs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import keras
import numpy as np

from livertumor.training import (
    DiceCrossEntropy, build_resnet50_unet, build_unet, load_model, segmentation_metrics)

assert keras.backend.backend() == "jax", keras.backend.backend()
rng = np.random.default_rng(0)

# the U-Net trains: a few steps lower the loss on one fixed batch
x = rng.uniform(0, 1, (4, 32, 32, 3)).astype("float32")
y = np.zeros((4, 32, 32), "uint8")
y[:, 8:24, 8:24] = 1
y[:, 12:16, 12:16] = 2
unet = build_unet((32, 32, 3), base_filters=4, depth=2)
unet.compile(optimizer=keras.optimizers.Adam(1e-2), loss=DiceCrossEntropy(),
             metrics=segmentation_metrics())
history = unet.fit(x, y, epochs=8, batch_size=4, verbose=0).history
assert history["loss"][-1] < history["loss"][0], history["loss"]
assert {"liver_dice", "tumor_dice"} <= set(history)
unet.save("unet.keras")
again = load_model("unet.keras")
np.testing.assert_allclose(unet.predict(x, verbose=0), again.predict(x, verbose=0), atol=1e-5)

# the ResNet-50 U-Net builds, predicts and round-trips
resnet = build_resnet50_unet((64, 64, 3))
x64 = rng.uniform(0, 1, (2, 64, 64, 3)).astype("float32")
p = resnet.predict(x64, verbose=0)
assert p.shape == (2, 64, 64, 3)
np.testing.assert_allclose(p.sum(-1), 1, atol=1e-4)
resnet.save("resnet.keras")
np.testing.assert_allclose(p, load_model("resnet.keras").predict(x64, verbose=0), atol=1e-5)
print("ok")
"""


def test_models_loss_and_metrics_run_on_the_jax_backend(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-4000:]
