"""The notebook skeleton check, on the real notebooks and on broken copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from livertumor.series.notebook_checks import check_notebook, strip_outputs

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_follows_the_skeleton(path):
    assert check_notebook(path) == []


def test_broken_notebooks_are_reported(tmp_path):
    nb = json.loads(NOTEBOOKS[0].read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    params["source"] = "data_dir = '../data'\nout = data_dir + '/x'\n"
    nb["cells"].append(json.loads(json.dumps(params)))
    nb["cells"][3]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x"}]
    bad = tmp_path / "01_bad.ipynb"
    bad.write_text(json.dumps(nb))
    problems = " ".join(check_notebook(bad))
    assert "2 cells tagged 'parameters'" in problems
    assert "stored with outputs" in problems
    assert "last code cell must record" in problems
    assert strip_outputs(bad) is True
    assert "stored with outputs" not in " ".join(check_notebook(bad))


def test_non_literal_parameters_are_reported(tmp_path):
    nb = json.loads(NOTEBOOKS[0].read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    params["source"] = "a = 1\nb = a + 1\n"
    path = tmp_path / "01_x.ipynb"
    path.write_text(json.dumps(nb))
    assert any("not literal" in p for p in check_notebook(path))


def test_a_partial_run_keeps_the_earlier_notebooks_of_its_run_json(tmp_path):
    from livertumor.series.runner import keep_earlier_notebooks

    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"profile": "demo", "notebooks": {
        "03_slice_export": {"seconds": 5}, "05_evaluation": {"seconds": 120}}}))
    fresh = {"profile": "demo", "notebooks": {}}
    kept = keep_earlier_notebooks(fresh, run_json, only=["05"])
    assert list(kept["notebooks"]) == ["03_slice_export", "05_evaluation"]
    assert keep_earlier_notebooks(fresh, run_json, only=None)["notebooks"] == {}  # a full run
    other = {"profile": "smoke", "notebooks": {}}
    assert keep_earlier_notebooks(other, run_json, only=["05"])["notebooks"] == {}
    assert keep_earlier_notebooks(fresh, tmp_path / "none.json", only=["05"]) == fresh
