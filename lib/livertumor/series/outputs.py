"""Where a notebook's figures and results go inside a run folder.

``outputs/<run>/figures/<notebook>_<name>.png`` and ``outputs/<run>/results/<notebook>.json``.
Tests and later notebooks read the JSON results instead of parsing notebook outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

from ..atomic import write_json
from ..viz.figures import save_figure


class NotebookOutputs:
    """Figures and results of one notebook in one run folder.

    Parameters
    ----------
    output_dir : str or Path
        The run folder (``outputs/<run>``); created if missing.
    notebook : str
        Notebook stem, e.g. ``"01_data_loading"``; prefixes every file it writes.
    """

    def __init__(self, output_dir: str | Path, notebook: str):
        self.run_dir = Path(output_dir).resolve()
        self.notebook = notebook
        self.figures_dir = self.run_dir / "figures"
        self.results_path = self.run_dir / "results" / f"{notebook}.json"
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        self.results_path.parent.mkdir(parents=True, exist_ok=True)
        self.saved: list[Path] = []

    def figure(self, fig: plt.Figure, name: str, show: bool = True) -> Path:
        """Save ``fig`` as ``figures/<notebook>_<name>.png``; show it inline, then close it."""
        path = save_figure(fig, self.figures_dir / f"{self.notebook}_{name}.png")
        self.saved.append(path)
        if show:
            plt.show()
        plt.close(fig)
        return path

    def record(self, **results) -> Path:
        """Write (merge into) ``results/<notebook>.json``; values must be JSON-serialisable."""
        current = self.results() if self.results_path.exists() else {}
        current.update(results)
        current["figures"] = sorted({*current.get("figures", []),
                                     *(str(p.relative_to(self.run_dir)) for p in self.saved)})
        return write_json(self.results_path, current, default=_jsonable)

    def results(self) -> dict:
        """The recorded results of this notebook in this run."""
        return json.loads(self.results_path.read_text())


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
