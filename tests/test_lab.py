"""`make lab`: the environment checks and the JupyterLab command line (no server started)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jupyter_core.paths
import pytest

from livertumor.series import lab


@pytest.fixture
def jupyter_dirs(tmp_path, monkeypatch):
    """Empty user-level Jupyter folders that take precedence over the environment's."""
    data, config = tmp_path / "data", tmp_path / "config"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config))
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    monkeypatch.delenv("JUPYTER_CONFIG_PATH", raising=False)
    return data, config


def test_the_installed_environment_passes_the_checks(jupyter_dirs):
    assert lab.environment_problems() == []
    assert lab.main(["--check"]) == 0


def test_a_kernel_of_another_python_is_reported(jupyter_dirs, monkeypatch):
    data, _ = jupyter_dirs
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")  # the user folder first, as outside a venv
    spec = data / "kernels" / "python3" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f",
                                         "{connection_file}"],
                                "display_name": "Python 3", "language": "python"}))
    problems = lab.kernel_problems()
    assert len(problems) == 2
    assert "'Python 3', not 'Python 3 (livertumor)'" in problems[0]
    assert str(spec.parent) in problems[0]
    assert "starts /usr/bin/python3" in problems[1]
    assert lab.kernel_problems("no-such-kernel") == [
        "no Jupyter kernel named 'no-such-kernel'; run `make install`"]


def test_a_missing_or_disabled_widgets_extension_is_reported(jupyter_dirs, tmp_path,
                                                             monkeypatch):
    _, config = jupyter_dirs
    page_config = config / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True)
    page_config.write_text(json.dumps({"disabledExtensions": {lab.WIDGETS_EXTENSION: True}}))
    (problem,) = lab.widgets_problems()
    assert "is disabled" in problem and lab.WIDGETS_EXTENSION in problem
    assert lab.main(["--check"]) == 1

    monkeypatch.setattr(jupyter_core.paths, "jupyter_path", lambda *sub: [str(tmp_path / "x")])
    (problem,) = lab.widgets_problems()
    assert "is not installed" in problem and "jupyterlab_widgets" in problem


def test_lab_command_serves_on_loopback_only(tmp_path):
    cmd = lab.lab_command(tmp_path, port=8999, token="abc", open_browser=False)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=8999" in cmd
    assert "--ServerApp.port_retries=0" in cmd
    assert f"--ServerApp.root_dir={tmp_path}" in cmd
    assert "--LabApp.default_url=/lab/tree/notebooks" in cmd
    assert "--IdentityProvider.token=abc" in cmd and "--ServerApp.open_browser=False" in cmd
    default = lab.lab_command()  # the project found from the working directory: the repository
    assert f"--ServerApp.root_dir={Path(__file__).resolve().parents[1]}" in default
    assert not any(a.startswith("--IdentityProvider.token") for a in default)
