"""JupyterLab for the notebook series (``make lab``): loopback only, the project's kernel.

``python -m livertumor.series.lab`` first checks what makes the notebooks work interactively, and
stops with the reason when something is missing:

- the kernel ``python3`` is the project's (display name ``Python 3 (livertumor)``, installed by
  ``make install`` into this environment), not another Python that lacks the package;
- the ipywidgets front end (``@jupyter-widgets/jupyterlab-manager``, shipped by
  ``jupyterlab_widgets``) is installed and enabled, or every slider shows as
  "Error displaying widget".

Then it starts JupyterLab on 127.0.0.1, serving the repository with the file browser opened at
``notebooks/``. :func:`lab_command` is the one definition of that command line; the browser
tests start JupyterLab through it too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .project import find_project

KERNEL_NAME = "python3"
"""Kernel name stored in every notebook's metadata."""

KERNEL_DISPLAY_NAME = "Python 3 (livertumor)"
"""Display name that ``make install`` gives the project's kernel."""

WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
"""JupyterLab extension that renders ipywidgets (from the ``jupyterlab_widgets`` package)."""


def kernel_problems(kernel_name: str = KERNEL_NAME) -> list[str]:
    """Why the kernel ``kernel_name`` is not this environment's project kernel (empty if it is).

    The kernel must exist, carry :data:`KERNEL_DISPLAY_NAME` and start a Python of this
    environment (``sys.prefix``), so that ``import livertumor`` works in the notebooks.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return [f"no Jupyter kernel named {kernel_name!r}; run `make install`"]
    where = manager.find_kernel_specs().get(kernel_name, "?")
    problems = []
    if spec.display_name != KERNEL_DISPLAY_NAME:
        problems.append(f"kernel {kernel_name!r} in {where} is {spec.display_name!r}, not "
                        f"{KERNEL_DISPLAY_NAME!r}; run `make install`, or remove that folder "
                        "if Jupyter finds it before this environment's kernel")
    python = Path(spec.argv[0]) if spec.argv else None
    if python is None or python.parent.parent.absolute() != Path(sys.prefix).absolute():
        problems.append(f"kernel {kernel_name!r} in {where} starts {python}, not this "
                        f"environment's Python ({sys.prefix}); run `make install`")
    return problems


def widgets_problems() -> list[str]:
    """Why JupyterLab would not render ipywidgets (empty when its extension is enabled)."""
    from jupyter_core.paths import jupyter_path
    from jupyterlab_server.config import get_page_config

    config = get_page_config(jupyter_path("labextensions"))
    names = {ext["name"] for ext in config.get("federated_extensions", [])}
    if WIDGETS_EXTENSION not in names:
        return [f"JupyterLab extension {WIDGETS_EXTENSION} is not installed (it comes with "
                "the jupyterlab_widgets package); run `make install`"]
    disabled = config.get("disabledExtensions") or {}
    if isinstance(disabled, list):
        disabled = dict.fromkeys(disabled, True)
    if any(disabled.get(key) for key in (WIDGETS_EXTENSION, f"{WIDGETS_EXTENSION}:plugin")):
        return [f"JupyterLab extension {WIDGETS_EXTENSION} is disabled; enable it with "
                f"`jupyter labextension enable {WIDGETS_EXTENSION}`"]
    return []


def environment_problems() -> list[str]:
    """Everything :func:`kernel_problems` and :func:`widgets_problems` find."""
    return kernel_problems() + widgets_problems()


def lab_command(
    root_dir: str | Path | None = None,
    port: int = 8888,
    token: str | None = None,
    open_at: str = "notebooks",
    open_browser: bool = True,
    python: str = sys.executable,
) -> list[str]:
    """The ``jupyter lab`` command line: 127.0.0.1 only, the file browser at ``open_at``.

    Parameters
    ----------
    root_dir : folder JupyterLab serves, default :func:`~.project.find_project` (notebooks open
        with their own folder as working directory, so their relative paths such as
        ``../data/raw/demo`` resolve)
    port : TCP port on 127.0.0.1; no other port is tried when it is taken
    token : access token; None lets JupyterLab make one and print the URL holding it
    open_at : folder under ``root_dir`` the file browser shows first
    open_browser : open the system's web browser at that URL
    """
    root_dir = find_project() if root_dir is None else Path(root_dir)
    cmd = [python, "-m", "jupyterlab", f"--ServerApp.root_dir={root_dir.absolute()}",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={int(port)}",
           "--ServerApp.port_retries=0", f"--LabApp.default_url=/lab/tree/{open_at}",
           f"--ServerApp.open_browser={open_browser}"]
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--ServerApp.allow_root=True")  # containers and CI machines run as root
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8888, help="port on 127.0.0.1 (8888)")
    parser.add_argument("--no-browser", action="store_true",
                        help="only print the URL, do not open a web browser")
    parser.add_argument("--check", action="store_true", help="run the checks and exit")
    parser.add_argument("--project-dir", type=Path,
                        help="the folder holding notebooks/ (default: found from the working "
                             "directory upwards)")
    args = parser.parse_args(argv)
    problems = environment_problems()
    for p in problems:
        print(f"cannot start JupyterLab: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"kernel {KERNEL_NAME!r} ({KERNEL_DISPLAY_NAME}) and {WIDGETS_EXTENSION}: ok")
    if args.check:
        return 0
    project = find_project(args.project_dir)
    cmd = lab_command(project, port=args.port, open_browser=not args.no_browser)
    sys.stdout.flush()
    os.chdir(project)
    os.execv(cmd[0], cmd)  # JupyterLab takes over this process (and its Ctrl-C handling)
    return 0


if __name__ == "__main__":
    sys.exit(main())
