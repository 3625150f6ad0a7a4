"""The `full` profile's training settings (mixed_float16, the mirrored strategy), which users
with real LiTS data run first on a GPU, executed here on two logical CPUs with only the sizes
and the number of steps made small: a float16-only failure (loss scaling, a dtype in the loss
or the metrics) or a broken profile shows up here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from livertumor.series.runner import load_profile
from livertumor.training import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("full_profile")]

SMALL = {"epochs": 1, "batch_size": 4, "image_size": 64, "steps_per_epoch": 2,
         "base_filters": 8}
"""What is made small; everything else is the profile's."""


def _training_entries() -> dict[str, dict]:
    """The full profile's training notebooks with distinct settings (the tumor stage trains
    like the U-Net, on other inputs)."""
    entries = {}
    for entry in load_profile("full")["notebooks"]:
        if entry["notebook"] == "04_training" and entry["parameters"].get("stage") != "tumor":
            entries[entry["name"]] = entry["parameters"]
    return entries


ENTRIES = _training_entries()


def test_the_full_profile_trains_in_float16_with_the_mirrored_strategy_as_written():
    assert set(ENTRIES) == {"04_training_unet", "04_training_resnet50_unet"}
    for params in ENTRIES.values():
        config = TrainConfig.from_dict(params)
        assert config.precision == "mixed_float16" and config.strategy == "mirrored"


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_full_profile_training_runs_on_two_logical_cpus(name, export_dir, tmp_path):
    # one process per model: the mirrored strategy's collectives belong to their process
    params = {**ENTRIES[name], **SMALL}
    code = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from livertumor.training import TrainConfig, load_model, train
        r = train(sys.argv[1], sys.argv[2], TrainConfig.from_dict({params!r}), verbose=0)
        model = load_model(sys.argv[2] + "/model.keras", compile=False)
        print(json.dumps({{"replicas": r["replicas"], "last": r["last"],
                          "policies": sorted({{la.dtype_policy.name for la in model.layers}}),
                          "output": keras.backend.standardize_dtype(model.outputs[0].dtype)}}))
    """)
    res = subprocess.run([sys.executable, "-c", code, str(export_dir), str(tmp_path / "m")],
                         capture_output=True, text=True, timeout=900,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert "mixed_float16" in out["policies"] and out["output"] == "float32"  # as trained
    for key in ("loss", "val_loss", "liver_dice", "val_tumor_dice"):
        assert np.isfinite(out["last"][key]), (key, out["last"])
    assert 0 <= out["last"]["liver_dice"] <= 1
