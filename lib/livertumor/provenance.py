"""What produced a result: Python, platform, package versions and the git state of the code,
recorded in run manifests (``run.json``) and model folders (``config.json``)."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
"""This package's folder: the git state recorded is that of the code that ran."""

REPORTED_PACKAGES = (
    "livertumor", "numpy", "scipy", "nibabel", "pandas", "matplotlib", "seaborn", "pillow",
    "keras", "tensorflow", "tensorflow-cpu", "papermill", "ipywidgets",
)


def git_commit(path: str | Path = PACKAGE_DIR) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the git work tree holding
    ``path`` (by default this package's own code; None when it is not in a work tree)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True,
                              timeout=20)
    try:
        sha = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if sha.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions(names=REPORTED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape the results (missing ones omitted)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def environment_record() -> dict:
    """Python, platform, packages and git state, for run manifests and model folders."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_commit(),
    }
