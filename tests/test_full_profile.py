"""The `full` profile, which users with real LiTS data run first on a GPU, executed here as a
whole series on a tiny LiTS-layout folder with only the sizes, epochs and steps made small
(``run --set``): mixed_float16 as written, and ``strategy: mirrored`` on two logical CPUs
(``tests/two_logical_cpus.py``, the kernels' startup file), so that a broken profile or a
float16-only failure (loss scaling, a dtype in the loss or the metrics) shows up here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from livertumor.demo.generator import make_demo_dataset
from livertumor.series.runner import load_profile

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("full_profile")]

SMALL = {"size": 64, "roi_size": 64, "image_size": 64, "base_filters": 8, "epochs": 1,
         "steps_per_epoch": 2, "batch_size": 4, "05_evaluation.batch_size": 8}
"""What is made small (every notebook declaring the key; 05's prediction batch on its own);
everything else is the profile's. The global batch of 4 splits over the two replicas."""

MODELS = ("unet", "resnet50_unet", "tumor_unet")
TRAINING = tuple(f"04_training_{m}" for m in MODELS)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    make_demo_dataset(root / "lits", n_cases=5, seed=0, size=64, progress=False)
    sets = [a for key, value in SMALL.items() for a in ("--set", f"{key}={value}")]
    res = subprocess.run(
        [sys.executable, "-m", "livertumor", "run", "--profile", "full", "--data-dir",
         str(root / "lits"), "--run", "full-test", "--outputs-dir", str(root / "outputs"),
         "--export-dir", str(root / "export"), *sets],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
             "PYTHONSTARTUP": str(Path(__file__).with_name("two_logical_cpus.py"))})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_dir = root / "outputs" / "full-test"
    yield run_dir
    for checkpoint in (run_dir / "models").glob("*/[bl]*.keras"):  # best, last: 1.3 GB
        checkpoint.unlink()


def results(run_dir, name):
    return json.loads((run_dir / "results" / f"{name}.json").read_text())


def finite_numbers(tree):
    """Every float in a JSON tree is finite."""
    if isinstance(tree, dict):
        return all(finite_numbers(v) for v in tree.values())
    if isinstance(tree, list):
        return all(finite_numbers(v) for v in tree)
    return not isinstance(tree, float) or math.isfinite(tree)


def test_every_notebook_ran_with_the_profile_as_written_and_the_overrides(full_run):
    run = json.loads((full_run / "run.json").read_text())
    profile = load_profile("full")
    assert run["profile"] == "full" and "finished" in run
    assert run["overrides"] == SMALL
    assert list(run["notebooks"]) == [e["name"] for e in profile["notebooks"]]
    for entry in profile["notebooks"]:
        params = run["notebooks"][entry["name"]]["parameters"]
        kept = {k: v for k, v in entry["parameters"].items() if k not in SMALL}
        assert kept.items() <= params.items(), entry["name"]
        assert (full_run / run["notebooks"][entry["name"]]["executed"]).exists()
    for name in TRAINING:
        params = run["notebooks"][name]["parameters"]
        assert params["precision"] == "mixed_float16" and params["strategy"] == "mirrored"
        assert {k: params[k] for k in ("image_size", "epochs", "batch_size")} == {
            "image_size": 64, "epochs": 1, "batch_size": 4}
    assert run["notebooks"]["03_slice_export"]["parameters"]["size"] == 64
    assert run["notebooks"]["05_evaluation"]["parameters"]["batch_size"] == 8  # scoped wins
    assert run["notebooks"]["06_report"]["parameters"]["synthetic"] is False


@pytest.mark.parametrize("name", MODELS)
def test_models_trained_in_float16_on_two_replicas(full_run, name):
    import keras

    from livertumor.training import load_model

    folder = full_run / "models" / name
    record = json.loads((folder / "config.json").read_text())
    assert record["config"]["precision"] == "mixed_float16"
    assert record["config"]["strategy"] == "mirrored"
    assert record["result"]["replicas"] == 2
    model = load_model(folder / "model.keras", compile=False)
    assert "mixed_float16" in {layer.dtype_policy.name for layer in model.layers}
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"
    r = results(full_run, f"04_training_{name}")
    assert r["epochs_run"] == 1
    for epoch in (r["last"], r["best"]):
        for key in ("loss", "val_loss", "liver_dice", "tumor_dice", "val_liver_dice",
                    "val_tumor_dice"):
            assert math.isfinite(epoch[key]), (name, key, epoch)
        assert 0 <= epoch["liver_dice"] <= 1 and 0 <= epoch["val_tumor_dice"] <= 1


def test_evaluation_scores_the_three_models(full_run):
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert set(metrics) == {"unet", "resnet50_unet", "cascade"}
    for model, m in metrics.items():
        for key in ("liver_dice_mean", "liver_dice_global", "tumor_dice_global", "liver_auc",
                    "tumor_auc", "slice_liver_mean_dice", "slice_tumor_mean_dice"):
            assert 0 <= m[key] <= 1, (model, key, m[key])  # NaN probabilities: a NaN AUC
        assert math.isfinite(m["tumor_burden_rmse"]), model
    r = results(full_run, "05_evaluation")
    assert set(r["summary"]) == set(metrics) and set(r["table1"]) == set(metrics)
    assert finite_numbers(r["table1"])  # std over one test patient is NaN; Table 1 has none
    assert (full_run / "table1.csv").exists()


def test_the_report_is_written_for_real_data(full_run):
    r = results(full_run, "06_report")
    assert r["architecture"] == "cascade" and r["study"] is None
    assert len(r["patients"]) >= 1 and finite_numbers(r["patients"])
    html = (full_run / "report.html").read_text()
    assert "Limitations" in html and "Synthetic data" not in html
