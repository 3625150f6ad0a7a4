"""Slice export: a LiTS folder -> 2-D training data (seed report steps 3.6-3.8).

:func:`export_slices` runs the passes in order: the survey of every case (:mod:`.survey`), the
split by patient (:mod:`.patient_split`) with the histogram breaks from the training cases,
the export of the cases' slices in worker processes (:mod:`.slice_files`, :mod:`.workers`),
and the final files (:mod:`.outputs`) or, for one shard, its record and the merge
(:mod:`.shards`). The folder's settings, lock and completion records, by which an interrupted
export resumes, are kept by :mod:`.state`. ``docs/export.md`` describes what is written, how
each pass works, resuming, sharded export and the memory used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_bytes
from ..data.cases import data_fingerprint, find_cases
from ..data.windowing import freqhist_bins_from_counts
from ..errors import LiverTumorError
from ..processes import default_workers
from .outputs import (
    _cases_table,
    _csv_bytes,
    _manifest,
    _nothing_exported,
    _preprocessing,
    _write_outputs,
)
from .patient_split import split_cases
from .result import ExportResult
from .settings import FORMAT_VERSION, ExportSettings
from .shards import _merge_if_last, _shard_record, _write_shard_record, parse_shard, shard_plan
from .slice_files import _export_case
from .state import (
    STATE_DIR,
    _check_not_foreign,
    _clean_partial_files,
    _done_record,
    _export_lock,
    _prepare_out_dir,
    _read_json,
)
from .survey import _pool_rounded, _survey_case
from .workers import _Workers


def export_slices(data_dir: str | Path, out_dir: str | Path, every: int = 2, size: int = 256,
                  windows=("liver", "abdomen_soft"), test_fraction: float = 0.2, seed: int = 0,
                  workers: int | None = None, progress: bool = True, overwrite: bool = False,
                  shard: str | tuple[int, int] | None = None, roi: bool = False,
                  roi_margin_mm: float = 10.0, context: int = 0) -> ExportResult:
    """Export every ``every``-th axial slice of a LiTS folder as JPEG images and PNG masks.

    ``docs/export.md`` describes the folder layout, the passes and the guarantees.

    Parameters
    ----------
    data_dir : str or Path
        The LiTS folder (``volume-N.nii[.gz]`` / ``segmentation-N.nii[.gz]`` at any depth).
    out_dir : str or Path
        The export folder: created; resumed when it holds an interrupted export with the same
        arguments; refused when it holds anything else.
    every, size, windows, test_fraction, seed, roi, roi_margin_mm, context
        See :class:`ExportSettings`. The same data, ``test_fraction`` and ``seed`` give the
        same patient split with or without ``roi`` and ``context``.
    workers : int, optional
        Processes, one case each; None or 0: the CPUs this process may use. The output does
        not depend on it; memory grows with it (about one volume's int16 size per worker).
    progress : bool
        Progress bars (tqdm.auto) over the cases checked and the slices exported.
    overwrite : bool
        Delete an export already in ``out_dir`` (only the files an export writes) and start
        again, instead of resuming it or refusing other arguments.
    shard : ``"I/N"`` or ``(I, N)``, optional
        Export only the cases of shard I of N (0 <= I < N; :func:`shard_plan`), so that N
        processes or machines fill one shared ``out_dir`` side by side (see "Sharded export"
        in ``docs/export.md``). Not with ``overwrite``.

    Returns
    -------
    ExportResult
        ``.manifest`` and ``.cases`` as DataFrames, ``.split_summary()``, ``.summary_text()``.
        For a shard: its own cases only, with ``.shard`` set and ``.merged`` telling whether
        it was the last shard to finish and wrote the merged manifest.

    Raises
    ------
    ValueError
        Invalid arguments (see :class:`ExportSettings`).
    LiverTumorError
        ``data_dir`` missing; ``out_dir`` holds other files, an export with other arguments
        or data, or another export is running into it; no case could be exported (the
        reasons are in ``out_dir/cases.csv``).

    Examples
    --------
    >>> result = export_slices("data/raw/demo", "data/processed/demo", size=128)  # doctest: +SKIP
    >>> result.split_summary()  # doctest: +SKIP
    """
    settings = ExportSettings(every, size, windows, test_fraction, seed, roi=roi,
                              roi_margin_mm=roi_margin_mm, context=context)
    shard_index, shard_count = _check_run_arguments(workers, shard, overwrite)
    sharded = shard is not None
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    cases = find_cases(data_dir)
    fingerprint = data_fingerprint(data_dir)
    params = {**settings.as_json(), "data_fingerprint": fingerprint, "format": FORMAT_VERSION}
    _check_not_foreign(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    own = {cid for cid, i in shard_plan(cases, shard_count).items() if i == shard_index}
    tidy = own if sharded else None  # a shard removes the partial files of its own cases only
    lock_name = f"lock-shard-{shard_index}-of-{shard_count}" if sharded else "lock"
    with _export_lock(out_dir, lock_name):
        _prepare_out_dir(out_dir, params, overwrite)
        if sharded:  # not done until this run is
            _shard_record(out_dir, shard_index, shard_count).unlink(missing_ok=True)
        _clean_partial_files(out_dir, tidy)
        status = {int(r.case_id): {"status": r.status, "reason": r.reason}
                  for r in cases.itertuples()}
        usable = {int(r.case_id): r for r in cases.itertuples() if r.status == "ok"}
        pool = _Workers(min(workers or default_workers(), max(1, len(usable))))
        cancel = True
        try:
            surveys = _survey_all(pool, out_dir, usable, own, settings, progress)
            good, split, prep = _split_and_breaks(surveys, status, cases, settings, fingerprint,
                                                  out_dir, data_dir)
            records, exported_now, failed = _export_cases(pool, out_dir, usable, own, good,
                                                          split, prep, status, progress)
            cancel = False
        finally:
            pool.close(cancel)
            if cancel:  # interrupted or failed: the workers are stopped, tidy their temp files
                _clean_partial_files(out_dir, tidy)

        manifest = _manifest(records, prep)
        table = _cases_table(cases[cases["case_id"].isin(own)], status, split, surveys, records)
        if not sharded:
            _write_outputs(out_dir, manifest, table, prep, data_dir)
            return ExportResult(out_dir, manifest, table, prep, exported_now, failed)
        _write_shard_record(out_dir, shard_index, shard_count, params, prep, table)
    result = ExportResult(out_dir, manifest, table, prep, exported_now, failed,
                          shard=f"{shard_index}/{shard_count}")
    result.merged = _merge_if_last(out_dir)  # the last shard to finish merges
    return result


def _check_run_arguments(workers: int | None, shard, overwrite: bool) -> tuple[int, int]:
    """Check the arguments of :func:`export_slices` that :class:`ExportSettings` does not hold.

    Returns the shard as (index, count); ``(0, 1)`` for a whole export.

    Raises
    ------
    ValueError
        Negative ``workers``; ``shard`` not of the form I/N (:func:`parse_shard`); ``shard``
        with ``overwrite``.
    """
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be positive (or 0 / None for all CPUs), got {workers}")
    if shard is None:
        return 0, 1
    shard_index, shard_count = parse_shard(shard)
    if overwrite:
        raise ValueError("overwrite cannot be combined with shard: one shard would delete the "
                         "others' work; delete the folder first, then start all shards")
    return shard_index, shard_count


def _survey_all(pool: _Workers, out_dir: Path, usable: dict, own: set,
                settings: ExportSettings, progress: bool) -> dict:
    """Pass 1: the survey of every usable case (``usable``: case id -> its find_cases row).

    Read from ``.export/survey/`` where cached, else computed in the pool and cached there:
    first the cases of ``own`` (this call's), then any still missing. The split and the breaks
    need every case's survey; another shard may be surveying the same case at the same time,
    which is harmless: a survey depends only on the files. The pool is started first when any
    survey, or the export of any case of ``own``, is still to do: before a progress bar starts
    a thread.

    Returns
    -------
    dict case id -> the survey's dict (:func:`.survey._survey_case`), for every usable case
    """
    from tqdm.auto import tqdm

    survey_dir = out_dir / STATE_DIR / "survey"
    survey_dir.mkdir(exist_ok=True)
    surveys: dict = {}

    def cached_surveys():
        for cid in usable:
            if cid not in surveys:
                cached = _read_json(survey_dir / f"case-{cid}.json")
                if isinstance(cached, dict) and cached.get("case_id") == cid:
                    surveys[cid] = cached

    def survey_jobs(ids):
        margin = settings.roi_margin_mm if settings.roi else None
        return [(cid, usable[cid].volume_path, usable[cid].mask_path, settings.every, margin)
                for cid in ids if cid not in surveys]

    cached_surveys()
    rounds = [sorted(own & set(usable)), sorted(set(usable) - own)]
    pending = any(not (out_dir / STATE_DIR / f"case-{cid}.json").exists()
                  for cid in usable if cid in own)
    if survey_jobs(usable) or pending:
        pool.start()
    with tqdm(total=len(survey_jobs(usable)), desc="checking cases", unit="case",
              disable=not progress or not survey_jobs(usable)) as bar:
        for ids in rounds:
            cached_surveys()
            bar.total = len(survey_jobs(usable)) + bar.n
            for res in pool.run(_survey_case, survey_jobs(ids)):
                write_bytes(survey_dir / f"case-{res['case_id']}.json",
                            json.dumps(res).encode())
                surveys[res["case_id"]] = res
                bar.update()
    return surveys


def _split_and_breaks(surveys: dict, status: dict, cases: pd.DataFrame,
                      settings: ExportSettings, fingerprint: str, out_dir: Path,
                      data_dir: Path) -> tuple[dict, dict, dict]:
    """Passes 2 and 3: the patient split of the cases that passed the survey, and the
    histogram breaks from the pooled histograms of the training cases only.

    The cases whose survey failed are marked ``bad`` in ``status`` (case id -> ``{"status",
    "reason"}``, changed in place).

    Returns
    -------
    (good, split, prep)
        The surveys of the good cases by case id, increasing; case id -> ``"train"`` or
        ``"test"``; the preprocessing record (``preprocessing.json``).

    Raises
    ------
    LiverTumorError
        No case passed the survey; cases.csv is written first, with every case's reason.
    """
    for cid, res in surveys.items():
        if not res["ok"]:
            status[cid] = {"status": "bad", "reason": res["reason"]}
    good = {cid: surveys[cid] for cid in sorted(surveys) if surveys[cid]["ok"]}
    split = split_cases({cid: s["has_tumor"] for cid, s in good.items()},
                        settings.test_fraction, settings.seed)
    if not good:
        table = _cases_table(cases, status, split, surveys, {})
        write_bytes(out_dir / "cases.csv", _csv_bytes(table), durable=True)
        raise LiverTumorError(_nothing_exported(table, out_dir), data_dir)

    train_ids = [cid for cid in good if split[cid] == "train"]
    values = np.concatenate([good[c]["hist_values"] for c in train_ids]).astype(np.int64)
    counts = np.concatenate([good[c]["hist_counts"] for c in train_ids]).astype(np.int64)
    values, pooled = _pool_rounded(values, counts)
    bins = freqhist_bins_from_counts(values, pooled, settings.n_bins)
    prep = _preprocessing(settings, bins, train_ids, int(pooled.sum()), fingerprint)
    return good, split, prep


def _export_cases(pool: _Workers, out_dir: Path, usable: dict, own: set, good: dict,
                  split: dict, prep: dict, status: dict, progress: bool
                  ) -> tuple[dict, list, list]:
    """Pass 4: export the good cases of ``own`` that have no valid completion record yet, the
    biggest first, in the pool. A case that fails is marked ``bad`` in ``status``.

    Returns
    -------
    (records, exported_now, failed)
        case id -> its manifest rows, for every good case of ``own`` exported (by this call or
        an earlier one); the case ids exported by this call; those that failed (both sorted).
    """
    from tqdm.auto import tqdm

    kinds = ("images", "masks", "context") if prep.get("context") else ("images", "masks")
    for sub in ("train", "test"):
        for kind in kinds:
            (out_dir / sub / kind).mkdir(parents=True, exist_ok=True)

    records, todo = {}, []
    for cid in (c for c in good if c in own):
        rec = _done_record(out_dir, cid, split[cid])
        if rec is not None:
            records[cid] = rec["rows"]
        else:
            todo.append((cid, usable[cid].volume_path, usable[cid].mask_path,
                         split[cid], prep, str(out_dir), good[cid]["box"]))
    n_exported = {cid: s["n_exported"] for cid, s in good.items() if cid in own}
    todo.sort(key=lambda job: (-n_exported[job[0]], job[0]))  # biggest first
    exported_now, failed = [], []
    with tqdm(total=sum(n_exported[j[0]] for j in todo), unit="slice",
              desc="exporting", disable=not progress or not todo) as bar:
        bar.set_postfix_str(f"cases 0/{len(todo)}")
        for res in pool.run(_export_case, todo):
            cid = res["case_id"]
            if res["ok"]:
                records[cid] = res["rows"]
                exported_now.append(cid)
            else:
                status[cid] = {"status": "bad", "reason": res["reason"]}
                failed.append(cid)
            bar.update(n_exported[cid])
            bar.set_postfix_str(f"cases {len(exported_now) + len(failed)}/{len(todo)}")
    return records, sorted(exported_now), sorted(failed)
