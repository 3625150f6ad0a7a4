"""Where the notebook series lives: the project folder holding ``notebooks/`` and
``notebooks/params/<profile>.yaml``, found from the working directory (not from where the
package is installed)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LiverTumorError

PROFILES = Path("notebooks") / "params"
"""The profiles' folder, relative to the project folder."""


def find_project(start: str | Path | None = None) -> Path:
    """The project folder: ``start`` (default: the working directory) or the nearest folder
    above it that holds ``notebooks/params/``.

    Raises
    ------
    LiverTumorError
        No such folder at or above ``start``; the message says what to do.
    """
    start = Path.cwd() if start is None else Path(start)
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / PROFILES).is_dir():
            return folder
    raise LiverTumorError(
        f"no {PROFILES.as_posix()}/ here or in any folder above: run from the project's "
        "repository (where the Makefile is), or pass its path (--project-dir)", start)
