"""The package's layout: imports run one way down the data flow, and the core install (no
notebook, widget or TensorBoard extras) computes everything a stage does."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "livertumor"

BASE = {"errors", "atomic", "provenance", "processes"}
ALLOWED = {
    "data": {"data"},
    "demo": {"data", "demo"},
    "export": {"data", "export"},
    "training": {"data", "training"},
    "inference": {"data", "training", "inference"},
    "evaluation": {"data", "training", "inference", "evaluation"},
    "viz": {"data", "evaluation", "viz"},
    "series": {"data", "demo", "export", "training", "inference", "evaluation", "viz", "series"},
}
"""What each stage may import besides :data:`BASE` (the order of lib/livertumor/README.md)."""


def _stage(parts: tuple[str, ...]) -> str:
    return parts[0] if parts else "__init__"


def _imports(path: Path) -> list[tuple[int, tuple[str, ...]]]:
    """(line, target module parts below livertumor) of every import of the package in a file,
    at any depth (imports inside functions count)."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    package = module[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + tuple((node.module or "").split(".")) if node.module else base
                names = [target + (a.name,) for a in node.names] if not node.module else [target]
            elif node.module and node.module.split(".")[0] == "livertumor":
                names = [tuple(node.module.split(".")[1:])]
            else:
                continue
            found += [(node.lineno, tuple(p for p in n if p)) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, tuple(a.name.split(".")[1:])) for a in node.names
                      if a.name.split(".")[0] == "livertumor"]
    return found


def _violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        stage = _stage(parts)
        if stage in ("__init__", "__main__", "cli"):
            continue  # the top: re-exports and the command line see every stage
        allowed = BASE | ({stage} if stage in BASE else ALLOWED[stage])
        for line, target in _imports(path):
            if target and _stage(target) not in allowed:
                out.append(f"{path.relative_to(PACKAGE)}:{line} imports "
                           f"livertumor.{'.'.join(target)}")
    return out


def test_every_module_belongs_to_a_known_stage():
    stages = {_stage(p.relative_to(PACKAGE).with_suffix("").parts)
              for p in PACKAGE.rglob("*.py")}
    assert stages <= set(ALLOWED) | BASE | {"__init__", "__main__", "cli"}, stages


def test_imports_run_one_way_down_the_data_flow():
    assert _violations() == []


def test_the_import_scanner_sees_relative_and_local_imports(tmp_path, monkeypatch):
    # the checker itself can fail: an upward import inside a function is reported
    fake = tmp_path / "livertumor"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "bad.py").write_text(
        "from ..errors import LiverTumorError\n\n"
        "def f():\n    from ..viz.figures import save_figure\n    from ..evaluation import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _violations() == ["data/bad.py:4 imports livertumor.viz.figures",
                             "data/bad.py:5 imports livertumor.evaluation"]


EXTRAS = ("papermill", "yaml", "ipywidgets", "IPython", "ipykernel", "tensorboard", "nbformat")


@pytest.mark.slow
def test_the_core_install_runs_without_the_extras(tmp_path):
    """Each stage's library code imports and runs with the notebook, widget and TensorBoard
    packages unimportable (as after ``pip install livertumor[cpu]``)."""
    code = f"""
import sys
for name in {EXTRAS!r}:
    sys.modules[name] = None  # import fails, as when the package is not installed
import numpy as np
import livertumor as lt
from livertumor import demo, evaluation, export, inference, training
from livertumor.viz import figures
case = demo.make_case(0, 0, 64)
scores = lt.lits_scores(case.mask, case.mask, (1.0, 1.0, 1.0))
assert scores["liver_dice"] == 1.0
model = training.build_unet((32, 32, 3), base_filters=4, depth=2)
assert model.output_shape == (None, 32, 32, 3)
figures.render_slice(case.ct[:, :, 5], case.mask[:, :, 5])
for name in {EXTRAS!r}:
    assert sys.modules[name] is None, name
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]
