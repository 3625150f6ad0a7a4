"""The notebook series executed headless on the smoke profile, then re-checked with nbval."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from livertumor.runner import load_profile, prepare_data

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("notebooks")]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    data = prepare_data(root / "data", load_profile("smoke")["data"]["demo"], progress=False)
    res = subprocess.run(
        [sys.executable, "-m", "livertumor", "run", "--profile", "smoke", "--data-dir",
         str(data), "--run", "smoke-test", "--outputs-dir", str(root / "outputs")],
        capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "outputs of this run" in res.stdout
    return root / "outputs" / "smoke-test"


def results(run_dir, name):
    return json.loads((run_dir / "results" / f"{name}.json").read_text())


def test_run_manifest_records_what_produced_the_outputs(smoke_run):
    run = json.loads((smoke_run / "run.json").read_text())
    assert run["profile"] == "smoke"
    assert set(run["notebooks"]) == {"01_data_loading", "02_windowing"}
    assert len(run["data_fingerprint"]) == 64
    assert "numpy" in run["packages"] and "nibabel" in run["packages"]
    assert "commit" in run["git"]
    assert run["notebooks"]["01_data_loading"]["parameters"]["generate_demo"] is False


def test_data_loading_lists_bad_cases_and_loads_one(smoke_run):
    r = results(smoke_run, "01_data_loading")
    assert r["status_counts"] == {"ok": 4, "bad": 1, "unpaired": 1}
    reasons = {p["case_id"]: p["reason"] for p in r["problems"]}
    assert "truncated" in reasons[900] and "volume-900.nii" in reasons[900]
    assert "no volume-901.nii" in reasons[901]
    assert r["liver_ml"] > 0 and 2 in r["labels"]
    assert len(r["canonical_shape"]) == 3


def test_windowing_records_channels_and_breaks(smoke_run):
    r = results(smoke_run, "02_windowing")
    assert r["channels"] == ["liver", "abdomen_soft", "histogram-scaled"]
    assert r["n_breaks"] > 20
    assert all(0 < m < 1 for m in r["channel_means"])
    with Image.open(smoke_run / r["jpg"]) as im:
        assert im.mode == "RGB"


def test_every_figure_is_saved(smoke_run):
    names = {p.name for p in (smoke_run / "figures").glob("*.png")}
    assert {"01_data_loading_overlay.png", "02_windowing_hu_histogram.png",
            "02_windowing_windows.png", "02_windowing_freqhist.png",
            "02_windowing_channels.png"} <= names
    for name in names:
        assert (smoke_run / "figures" / name).stat().st_size > 10_000
    recorded = set(results(smoke_run, "01_data_loading")["figures"])
    assert "figures/01_data_loading_overlay.png" in recorded


def test_executed_notebooks_pass_nbval(smoke_run):
    notebooks = sorted((smoke_run / "notebooks").glob("*.ipynb"))
    assert len(notebooks) == 2
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
         "-p", "no:xdist", *map(str, notebooks)],
        capture_output=True, text=True, timeout=900, cwd=smoke_run)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert " passed" in res.stdout
