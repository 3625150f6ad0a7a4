"""Sharded export (``docs/export.md``, Sharded export): which cases each shard exports
(:func:`shard_plan`), a finished shard's record, and the merge of the shards' records into the
export's final files (:func:`merge_export`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_bytes
from ..errors import LiverTumorError
from .outputs import _manifest, _write_outputs
from .result import CASES_COLUMNS, ExportResult, load_export
from .state import STATE_DIR, ExportLocked, _describe_change, _export_lock, _read_json


class ShardsMissing(LiverTumorError):
    """A merge was asked for before every shard of a sharded export had finished."""


def parse_shard(value: str | tuple[int, int]) -> tuple[int, int]:
    """``"1/3"`` or ``(1, 3)`` -> ``(1, 3)``: shard index I and count N, 0 <= I < N.

    Raises
    ------
    ValueError
        Not of the form I/N, or I outside [0, N).
    """
    try:
        if isinstance(value, str):
            index_text, count_text = value.split("/")
            index, count = int(index_text), int(count_text)
        else:
            index, count = (int(v) for v in value)
    except (ValueError, TypeError):
        raise ValueError(f"a shard is I/N with 0 <= I < N (e.g. 0/3), got {value!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"a shard is I/N with 0 <= I < N (e.g. 0/3), got {value!r}")
    return index, count


def _case_key(case_id: int) -> int:
    """A stable pseudo-random key of a case id: the first 8 bytes of the SHA-256 of its decimal
    form (the same on every machine and Python version, unlike ``hash``)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(str(int(case_id)).encode()).digest()[:8], "big")


def shard_plan(cases: pd.DataFrame, count: int) -> dict[int, int]:
    """Which shard (0 .. count - 1) exports each case of a :func:`find_cases` table.

    Balanced by work: cases in decreasing order of voxels (rows x columns x slices from the
    header; 0 when unreadable), ties broken by :func:`_case_key`, each given to the shard with
    the fewest voxels so far (longest-processing-time-first). Every shard computes the same plan
    from the same folder (the export's data fingerprint makes sure the folder is the same).
    Hashing the case ids alone balances badly with few cases: six 300-slice cases fell 1 / 4 /
    1 over three shards (``benchmarks/scale.py``).

    Returns
    -------
    dict: case id -> shard index
    """
    def voxels(row) -> int:
        dims = [row.get(k) for k in ("rows", "columns", "slices")]
        if any(d is None or d != d for d in dims):  # missing or NaN
            return 0
        return int(np.prod([int(d) for d in dims]))

    items = sorted(((voxels(r), int(r["case_id"])) for r in cases.to_dict("records")),
                   key=lambda vc: (-vc[0], _case_key(vc[1])))
    load = [0] * int(count)
    plan = {}
    for size, cid in items:
        target = min(range(int(count)), key=lambda i: (load[i], i))
        plan[cid] = target
        load[target] += size
    return plan


def _shard_record(out_dir: Path, index: int, count: int) -> Path:
    """Where shard I of N leaves its record when it has finished: ``.export/shard-I-of-N.json``
    (:func:`_write_shard_record`)."""
    return out_dir / STATE_DIR / f"shard-{index}-of-{count}.json"


def _write_shard_record(out_dir: Path, index: int, count: int, params: dict, prep: dict,
                        table: pd.DataFrame) -> None:
    """Write the record of a finished shard (:func:`_shard_record`): its settings
    (``params``, as in settings.json), the preprocessing it computed and its rows of
    cases.csv (``table``). :func:`merge_export` reads it."""
    write_bytes(_shard_record(out_dir, index, count), json.dumps({
        "shard": index, "of": count, "params": params, "preprocessing": prep,
        "cases": json.loads(table.to_json(orient="records")),
    }).encode(), durable=True)


def _merge_if_last(out_dir: Path) -> bool:
    """Merge the shards if every one has finished; True when this call merged.

    When two shards finish together, one merges, the other sees the merge lock held and leaves
    it to that one (both would write the same bytes)."""
    with contextlib.suppress(ShardsMissing, ExportLocked):
        merge_export(out_dir)
        return True
    return False


def merge_export(out_dir: str | Path) -> ExportResult:
    """Write manifest.csv, cases.csv and preprocessing.json of a sharded export.

    Reads what each finished shard left in ``.export/shard-I-of-N.json`` and the completion
    records of the cases; the files written are byte-identical to those of the same export run
    on one machine. The last shard to finish calls this itself; call it (``livertumor export
    --merge OUT_DIR``) when shards ran with ``--shard`` and a merge is wanted again.

    Raises
    ------
    ShardsMissing
        Some shard has not finished (the message names them).
    LiverTumorError
        ``out_dir`` holds no sharded export, the shards disagree on the settings, the data or
        the preprocessing, or a case's completion record is missing or damaged.
    """
    out_dir = Path(out_dir)
    state = out_dir / STATE_DIR
    settings = _read_json(state / "settings.json")
    found = sorted(state.glob("shard-*-of-*.json")) if state.is_dir() else []
    if settings is None or not found:
        raise LiverTumorError("holds no sharded export (no .export/shard-*-of-*.json); export "
                              "with --shard I/N first", out_dir)
    shards = [_read_json(p) for p in found]
    counts = {s["of"] for s in shards if isinstance(s, dict)}
    complete = [n for n in sorted(counts)
                if {s["shard"] for s in shards if isinstance(s, dict) and s["of"] == n}
                == set(range(n))]
    if not complete:
        n = max(counts) if counts else 0
        done = {s["shard"] for s in shards if isinstance(s, dict) and s["of"] == n}
        missing = [f"{i}/{n}" for i in range(n) if i not in done]
        raise ShardsMissing(f"shards {', '.join(missing)} have not finished; run them (the "
                            "last one to finish merges), then merge", out_dir)
    n = complete[-1]
    parts = sorted((s for s in shards if isinstance(s, dict) and s["of"] == n),
                   key=lambda s: s["shard"])
    for part in parts:
        if part["params"] != settings:
            raise LiverTumorError(f"shard {part['shard']}/{n} was made with other settings or "
                                  f"data: {_describe_change(settings, part['params'])}", out_dir)
        if part["preprocessing"] != parts[0]["preprocessing"]:
            raise LiverTumorError(f"shards 0/{n} and {part['shard']}/{n} computed different "
                                  "preprocessing (their case folders differ?)", out_dir)
    table = pd.DataFrame([row for part in parts for row in part["cases"]],
                         columns=CASES_COLUMNS).sort_values("case_id", kind="stable")
    table = table.reset_index(drop=True)
    records = {}
    for row in table[table["status"] == "ok"].itertuples():
        record = _read_json(state / f"case-{row.case_id}.json")
        if not isinstance(record, dict) or record.get("split") != row.split:
            raise LiverTumorError(f"the completion record of case {row.case_id} is missing or "
                                  "damaged; run its shard again", out_dir)
        records[int(row.case_id)] = record["rows"]
    prep = parts[0]["preprocessing"]
    manifest = _manifest(records, prep)
    with _export_lock(out_dir, "lock-merge"):
        _write_outputs(out_dir, manifest, table, prep, out_dir)
    return load_export(out_dir)
