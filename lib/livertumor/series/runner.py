"""Run the notebook series headless with papermill, one profile at a time.

A *profile* (``notebooks/params/<name>.yaml``) names the notebooks to run, the data to use
(generated demo cases, or a user's LiTS folder) and the parameters of each notebook; a run
can replace some of them (``overrides``, ``run --set KEY=VALUE``: :mod:`.overrides`). A run
writes everything under ``outputs/<run>/``: the executed notebooks, the figures and results
they save, and ``run.json`` (parameters and overrides, git commit, package versions, data
fingerprint, timings), so any number in the outputs can be traced back to what produced it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import yaml

from ..atomic import write_json
from ..data.cases import data_fingerprint
from ..errors import LiverTumorError
from ..provenance import environment_record
from .overrides import check_overrides, overrides_for
from .project import PROFILES, find_project


def load_profile(name: str, params_dir: str | Path | None = None) -> dict:
    """Read ``params_dir/<name>.yaml`` (default: the ``notebooks/params/`` folder of
    :func:`~livertumor.series.project.find_project`).

    Keys: ``description``; ``data`` (``data_dir``, relative to the repository root unless
    absolute, and ``demo``: a mapping of :func:`make_demo_dataset` arguments, or absent for
    real data); ``common`` (parameters given to every notebook; values of keys ending in
    ``_dir`` are paths relative to the repository root); ``notebooks``: the run order, a list
    whose entries are a notebook stem, or a mapping ``{notebook: stem, name: run name,
    parameters: {...}}`` (one notebook can run several times, e.g. once per architecture).
    The result's ``notebooks`` is normalised to a list of ``{notebook, name, parameters}``.
    """
    params_dir = find_project() / PROFILES if params_dir is None else Path(params_dir)
    path = params_dir / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in params_dir.glob("*.yaml")))
        raise LiverTumorError(f"unknown profile {name!r}; known profiles: {known}", path)
    profile = yaml.safe_load(path.read_text()) or {}
    profile.setdefault("common", {})
    profile.setdefault("notebooks", {})
    profile.setdefault("data", {})
    profile["name"] = name
    entries = []
    for entry in profile["notebooks"]:
        if isinstance(entry, str):
            entry = {"notebook": entry}
        entries.append({"notebook": entry["notebook"],
                        "name": entry.get("name", entry["notebook"]),
                        "parameters": dict(entry.get("parameters") or {})})
    profile["notebooks"] = entries
    return profile


def prepare_data(data_dir: str | Path, demo: dict | None = None, progress: bool = True) -> Path:
    """Make sure ``data_dir`` holds cases: generate demo cases there when ``demo`` is given.

    Generation skips cases already on disk, so calling this again is cheap. With
    ``demo=None`` the folder must already exist (a user's LiTS copy).

    Parameters
    ----------
    data_dir : str or Path
    demo : dict, optional
        Arguments of :func:`livertumor.demo.generator.make_demo_dataset` (``n_cases``, ``seed``,
        ``size``), ``broken_examples`` (bool: also write a truncated volume and an unpaired
        mask, so the bad-case handling shows on demo data) and ``dicom_study`` (a folder: write
        there one more synthetic patient, not among the cases, as a DICOM series, the new study
        that notebook 06 reports; relative paths are taken from ``data_dir``'s parent).
    """
    data_dir = Path(data_dir)
    if demo:
        from ..demo import make_demo_dataset, write_broken_examples

        extras = ("broken_examples", "dicom_study")
        args = {k: v for k, v in demo.items() if k not in extras}
        make_demo_dataset(data_dir, progress=progress, **args)
        if demo.get("broken_examples"):
            write_broken_examples(data_dir)
        if demo.get("dicom_study"):
            from ..demo.dicom_series import write_demo_study

            write_demo_study(_demo_study_dir(demo, data_dir),
                             case_id=int(args.get("n_cases", 8)), seed=int(args.get("seed", 0)),
                             size=int(args.get("size", 512)))
    elif not data_dir.is_dir():
        raise LiverTumorError(
            "data directory not found; pass the folder holding your LiTS copy "
            "(volume-N.nii and segmentation-N.nii files at any depth)", data_dir)
    return data_dir


def _demo_study_dir(demo: dict | None, data_dir: Path) -> Path | None:
    """Where the demo's DICOM study goes (relative to the data folder's parent), or None."""
    if not demo or not demo.get("dicom_study"):
        return None
    return _resolve(demo["dicom_study"], data_dir.parent)


def _notebook_parameters(entry: dict, shared: dict, declared: set, project: Path,
                         overrides: dict | None = None) -> dict:
    """Shared values the notebook declares, then its own parameters (``*_dir`` / ``*_path``
    strings taken from the project folder; papermill warns about a misspelt own one), then
    the run's overrides that apply to it (:func:`.overrides.overrides_for`)."""
    own = {k: (str(_resolve(v, project)) if k.endswith(("_dir", "_path")) and v
               and isinstance(v, str) else v) for k, v in entry["parameters"].items()}
    return {**{k: v for k, v in shared.items() if k in declared}, **own,
            **overrides_for(entry, overrides or {}, declared)}


def _declared_parameters(entries: list[dict], project: Path, profile: str) -> dict[str, set]:
    """The parameters each entry's notebook declares (its ``parameters`` cell), by entry name.

    Raises
    ------
    LiverTumorError
        A notebook of the profile is missing.
    """
    import papermill as pm

    by_notebook: dict[str, set] = {}
    for entry in entries:
        source = project / "notebooks" / f"{entry['notebook']}.ipynb"
        if not source.exists():
            raise LiverTumorError(f"notebook {entry['name']} of profile {profile!r} not found",
                                  source)
        if entry["notebook"] not in by_notebook:
            by_notebook[entry["notebook"]] = set(pm.inspect_notebook(str(source)))
    return {entry["name"]: by_notebook[entry["notebook"]] for entry in entries}


def _resolve(path: str | Path, base: Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else (base / path)


def _select(entries: list[dict], only: list[str] | None, profile: str) -> list[dict]:
    """The profile's notebook entries named in ``only`` (stems, run names or number prefixes
    such as ``"01"``), in profile order; all of them when ``only`` is empty."""
    if not only:
        return entries
    chosen = [e for e in entries
              if any(o in (e["name"], e["notebook"], e["notebook"].split("_")[0]) for o in only)]
    if not chosen:
        names = ", ".join(e["name"] for e in entries)
        raise LiverTumorError(f"none of {only} is a notebook of profile {profile!r}: {names}")
    return chosen


def _run_record(prof: dict, common: dict, data_dir: Path, demo: dict | None,
                overrides: dict) -> dict:
    """The start of ``run.json``: profile, overrides, data and its fingerprint, environment."""
    return {
        "profile": prof["name"], "overrides": overrides, "export_dir": common.get("export_dir"),
        "description": prof.get("description", ""), "data_dir": str(data_dir),
        "data_fingerprint": data_fingerprint(data_dir), "demo_data": demo,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **environment_record(),
        "notebooks": {},
    }


def keep_earlier_notebooks(record: dict, run_json: Path, only: list[str] | None) -> dict:
    """With ``only``, the notebooks of an earlier ``run.json`` of the same profile stay in the
    record (the ones run again replace theirs), so that a partial run does not erase what the
    run folder still holds from the others."""
    if not only or not run_json.exists():
        return record
    earlier = json.loads(run_json.read_text())
    if earlier.get("profile") != record["profile"]:
        return record
    return {**record, "notebooks": dict(earlier.get("notebooks", {}))}


def _kernel_config(socket_dir: str):
    """Kernels talk to papermill over local (IPC) sockets, not TCP on loopback: nothing is
    reachable from the network, and the kernel has no reason to warn about plain-text TCP.
    The socket files go into ``socket_dir`` (a private temporary folder per kernel): by
    default they are ``kernel-ipc-N`` in the working directory, where two runs at once (or
    the files a killed kernel left) make one kernel connect to another's sockets ("Invalid
    Signature")."""
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc", "ip": f"{socket_dir}/kernel"}})


def _execute(source: Path, executed: Path, params: dict, name: str) -> float:
    """Run one notebook with papermill; return its wall time in seconds.

    Raises ``LiverTumorError`` naming the executed notebook when a cell fails."""
    import papermill as pm

    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="livertumor-kernel-") as sockets:
            pm.execute_notebook(
                str(source), str(executed), parameters=params, cwd=str(source.parent),
                kernel_name="python3", progress_bar=False, log_output=False,
                config=_kernel_config(sockets),
            )
    except pm.PapermillExecutionError as err:
        raise LiverTumorError(
            f"notebook {name} failed in cell {err.exec_count}: {err.ename}: {err.evalue}; "
            "open the executed notebook to see the traceback", executed) from None
    return round(time.perf_counter() - t0, 1)


def _common_parameters(common: dict, project: Path, export_dir, seed: int | None) -> dict:
    """The profile's ``common`` parameters (``*_dir`` taken from the project folder), with
    the run's ``export_dir`` (from the working directory) and ``seed``; another seed exports
    to ``<export_dir>-seed<seed>`` unless ``export_dir`` is given (an export holds one split)."""
    common = {k: (str(_resolve(v, project)) if k.endswith("_dir") and isinstance(v, str) else v)
              for k, v in common.items()}
    if export_dir is not None:
        common["export_dir"] = str(_resolve(export_dir, Path.cwd()))
    if seed is not None:
        common["seed"] = int(seed)
        if export_dir is None and "export_dir" in common:
            common["export_dir"] += f"-seed{int(seed)}"
    return common


def run_series(
    profile: str = "demo",
    data_dir: str | Path | None = None,
    run_name: str | None = None,
    only: list[str] | None = None,
    outputs_dir: str | Path = "outputs",
    export_dir: str | Path | None = None,
    progress: bool = True,
    project_dir: str | Path | None = None,
    seed: int | None = None,
    study: str | Path | None = None,
    overrides: dict | None = None,
) -> Path:
    """Execute the profile's notebooks in order with papermill; return the run folder.

    Parameters
    ----------
    profile : str
        Name of a YAML file in ``notebooks/params/`` (``smoke``, ``demo``, ``full``).
    data_dir : path, optional
        A LiTS folder to use instead of the profile's; no demo data is generated then.
    run_name : str, optional
        Folder under ``outputs_dir``; defaults to the profile name.
    only : list of str, optional
        Notebook stems (or their number prefixes, ``"01"``) to run, in profile order.
    outputs_dir : path
        Parent of the run folder (relative paths: to the project folder).
    export_dir : path, optional
        Where the slices are exported, instead of the profile's ``export_dir`` (relative
        paths: to the working directory).
    project_dir : path, optional
        The folder holding ``notebooks/`` (default: :func:`find_project`). The profile's
        relative paths are taken from it.
    seed : int, optional
        Replaces the profile's ``seed`` parameter (the patient split, the training runs);
        the demo cases stay the same (their own seed is in the profile's ``data``). The
        export goes to ``<export_dir>-seed<seed>`` unless ``export_dir`` is given.
    study : path, optional
        A new patient's CT (a DICOM series folder or a NIfTI file) that notebook 06 segments
        and reports without a reference (relative paths: to the working directory); default:
        the demo's synthetic DICOM study when the profile's demo data are used, else none.
    overrides : dict, optional
        Parameters to replace, ``{"image_size": 64}`` in every notebook that declares it,
        ``{"04_training_unet.epochs": 1}`` in one entry of the profile only (its name, or its
        notebook stem for every run of it); see :mod:`.overrides`. Checked against the
        notebooks' declared parameters before anything runs; recorded in ``run.json``.

    Returns
    -------
    Path of ``outputs_dir/<run>``, holding ``notebooks/``, ``figures/``, per-notebook results
    and ``run.json``.

    Raises
    ------
    LiverTumorError
        Unknown profile or notebook, missing data folder or project folder, an override of
        a parameter no notebook declares, or a notebook that failed (the message names the
        executed notebook to open).
    """
    project = find_project() if project_dir is None else Path(project_dir).resolve()
    prof = load_profile(profile, project / PROFILES)
    demo = None if data_dir is not None else prof["data"].get("demo")
    data_dir = _resolve(data_dir if data_dir is not None else prof["data"]["data_dir"], project)
    run_dir = _resolve(outputs_dir, project) / (run_name or prof["name"])
    entries = _select(prof["notebooks"], only, profile)
    declared = _declared_parameters(prof["notebooks"], project, profile)
    overrides = dict(overrides or {})
    check_overrides(overrides, prof["notebooks"], declared, profile)
    common = _common_parameters(prof["common"], project, export_dir, seed)
    # the data are prepared here, once, not by the notebooks
    shared = {**common, "data_dir": str(data_dir), "output_dir": str(run_dir),
              "generate_demo": False}
    study = _resolve(study, Path.cwd()) if study is not None else _demo_study_dir(demo, data_dir)
    if study is not None:  # the new patient 06 reports (the demo's: a DICOM series)
        shared["study_path"] = str(study)

    prepare_data(data_dir, demo, progress=progress)
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    record = keep_earlier_notebooks(_run_record(prof, common, data_dir, demo, overrides),
                                    run_dir / "run.json", only)
    for entry in entries:
        name = entry["name"]
        source = project / "notebooks" / f"{entry['notebook']}.ipynb"
        params = _notebook_parameters(entry, shared, declared[name], project, overrides)
        executed = run_dir / "notebooks" / f"{name}.ipynb"
        print(f"[{prof['name']}] {name} ...", flush=True)
        seconds = _execute(source, executed, params, name)
        record["notebooks"][name] = {"notebook": entry["notebook"], "parameters": params,
                                     "seconds": seconds,
                                     "executed": str(executed.relative_to(run_dir))}
        print(f"[{prof['name']}] {name} done in {seconds} s", flush=True)
        write_json(run_dir / "run.json", record)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(run_dir / "run.json", record)
    return run_dir


def describe_run(run_dir: str | Path) -> str:
    """A few lines saying where a run's outputs are."""
    run_dir = Path(run_dir)
    lines = [f"outputs of this run: {run_dir}"]
    items = [("notebooks", "executed notebooks"), ("figures", "figures"),
             ("models", "models"), ("evaluation", "predictions and tables"),
             ("metrics.json", "metrics"), ("report.html", "report"), ("run.json", "run manifest")]
    for name, what in items:
        path = run_dir / name
        if path.is_dir():
            n = sum(1 for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            lines.append(f"  {what:<24} {path}/  ({n} files)")
        elif path.exists():
            lines.append(f"  {what:<24} {path}")
    return "\n".join(lines)
