"""The export folder's state, by which an export resumes (``docs/export.md``, Resuming):
``.export/settings.json`` (start, resume or refuse), the lock, the cases' completion records,
and the removal of files an interrupted run left half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

from ..atomic import write_bytes
from ..errors import LiverTumorError

STATE_DIR = ".export"
"""The export's bookkeeping folder inside ``out_dir``: settings.json, survey/, case-<id>.json
(completion records), locks, shard records."""
_EXPORT_PARTS = ("train", "test", "manifest.csv", "cases.csv", "preprocessing.json", STATE_DIR)


def _read_json(path: Path):
    """Parsed JSON, or None when the file is missing, empty or damaged (e.g. a power loss)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _describe_change(before: dict, now: dict) -> str:
    changed = []
    for key in sorted(set(before) | set(now)):
        if before.get(key) == now.get(key):
            continue
        if key == "data_fingerprint":
            changed.append("the data (files were added, removed or rewritten since)")
        else:
            changed.append(f"{key} (was {before.get(key)!r}, now {now.get(key)!r})")
    return "; ".join(changed)


def _remove_export(out_dir: Path) -> None:
    """Delete what an export wrote into ``out_dir`` (and nothing else; the lock stays)."""
    paths = [out_dir / name for name in _EXPORT_PARTS if name != STATE_DIR]
    paths += [p for p in (out_dir / STATE_DIR).iterdir() if p.name != "lock"]
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _prepare_out_dir(out_dir: Path, params: dict, overwrite: bool) -> None:
    """Check ``out_dir`` against the saved settings; start, resume or refuse
    (``docs/export.md``, Resuming).

    Call with the lock held.
    """
    settings_path = out_dir / STATE_DIR / "settings.json"
    if settings_path.exists():
        before = _read_json(settings_path)
        if overwrite:
            _remove_export(out_dir)
        elif before != params:
            what = ("its settings file cannot be read" if before is None
                    else f"it was made with other arguments: {_describe_change(before, params)}")
            raise LiverTumorError(
                f"holds an export that cannot be continued: {what}. Export into a new folder, "
                "or pass --overwrite (overwrite=True) to replace it", out_dir)
    (out_dir / STATE_DIR).mkdir(parents=True, exist_ok=True)
    if not settings_path.exists():
        write_bytes(settings_path,
                    (json.dumps(params, indent=2, sort_keys=True) + "\n").encode(), durable=True)


def _check_not_foreign(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise LiverTumorError("exists and is not a folder", out_dir)
    if not out_dir.is_dir() or (out_dir / STATE_DIR / "settings.json").exists():
        return
    visible = sorted(p.name for p in out_dir.iterdir() if not p.name.startswith("."))
    if visible:
        shown = ", ".join(visible[:5]) + (" ..." if len(visible) > 5 else "")
        raise LiverTumorError(f"is not empty ({shown}) and holds no export; choose a new or "
                              "empty folder", out_dir)


def _lock_is_stale(lock: Path) -> bool:
    holder = _read_json(lock)
    if not isinstance(holder, dict):  # a crash while it was written, or one being written now
        return time.time() - lock.stat().st_mtime > 10
    if holder.get("host") != socket.gethostname():
        return False
    pid = int(holder.get("pid", -1))
    if pid == os.getpid():
        return True  # an earlier call in this process that did not clean up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


class ExportLocked(LiverTumorError):
    """Another process holds the lock this export (or shard, or merge) needs."""


@contextlib.contextmanager
def _export_lock(out_dir: Path, name: str = "lock"):
    """Hold ``out_dir/.export/<name>`` (pid and host) while exporting; stale locks are taken.

    An export takes ``lock``; shard I of N of a sharded export takes ``lock-shard-I-of-N``, so
    the shards of one export run side by side but never twice the same shard."""
    state = out_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    lock = state / name
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if not _lock_is_stale(lock):
                    holder = _read_json(lock) or {}
                    raise ExportLocked(
                        f"another export (pid {holder.get('pid', '?')} on "
                        f"{holder.get('host', '?')}) is writing into this folder; wait for it, "
                        f"or delete {lock} if no export is running", out_dir) from None
                lock.unlink()
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(me)
        break
    else:
        raise LiverTumorError(f"cannot take the lock {lock}", out_dir)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _clean_partial_files(out_dir: Path, cases=None) -> int:
    """Remove ``.<name>.part`` files left by an interrupted run; returns how many.

    ``cases`` (a shard's own case ids): only the slice files and records of those cases, so
    that the files other shards are writing at the same time are left alone."""
    n = 0
    for tmp in out_dir.rglob(".*.part"):
        # a shard also surveys the cases no other shard has surveyed yet, so any shard may be
        # writing into survey/: never remove another one's file there
        if cases is not None and (tmp.parent.name == "survey"
                                  or _part_case(tmp.name) not in cases):
            continue
        tmp.unlink(missing_ok=True)
        n += 1
    return n


def _part_case(part_name: str) -> int | None:
    """The case a ``.<name>.<pid>.part`` file belongs to: ``.0003_0042.jpg.77.part`` and
    ``.case-3.json.77.part`` give 3; other names None."""
    name = part_name[1:]
    head = name.split("_", 1)[0]
    if head.isdigit() and len(head) >= 4:
        return int(head)
    if name.startswith("case-"):
        number = name[5:].split(".", 1)[0]
        if number.isdigit():
            return int(number)
    return None


def _done_record(out_dir: Path, case_id: int, split: str) -> dict | None:
    """The completion record of a case, if it is readable, for this split, and every file it
    lists exists with the recorded size."""
    record = _read_json(out_dir / STATE_DIR / f"case-{case_id}.json")
    if not isinstance(record, dict) or record.get("split") != split:
        return None
    for rel, size in record.get("files", {}).items():
        try:
            if (out_dir / rel).stat().st_size != size:
                return None
        except OSError:
            return None
    return record
