"""Files that are either complete or absent: write a temporary sibling, then rename it.

Every file the package writes goes through here, so a reader (another process, a resumed run,
a person opening a folder) never sees half of one, also after a kill or a power loss
(``durable=True``). The temporary name is ``.<name>.<pid>.part`` (hidden, and unique per
process, so two processes writing the same file at once, as export shards may, never rename
each other's temporary), or ``.<stem>.<pid>.part<suffixes>`` when the writer picks its format
from the extension (matplotlib, nibabel, Keras, Pillow).

``os.replace`` is atomic on POSIX and Windows when both names are in one folder.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


def temporary_name(path: str | Path, keep_suffix: bool = False) -> Path:
    """The temporary sibling of ``path`` this process writes first.

    ``keep_suffix=False``: ``dir/.name.ext.<pid>.part``; ``True``: ``dir/.name.<pid>.part.ext``
    (all suffixes kept: ``x.nii.gz`` -> ``.x.<pid>.part.nii.gz``).
    """
    path = Path(path)
    if not keep_suffix:
        return path.with_name(f".{path.name}.{os.getpid()}.part")
    stem, dot, suffixes = path.name.partition(".")
    return path.with_name(f".{stem}.{os.getpid()}.part{dot}{suffixes}")


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False,
                durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is untouched. The parent folder
    is created. ``durable``: the file's data is flushed to disk (fsync) before the rename.

    Examples
    --------
    >>> with atomic_path("out/fig.png", keep_suffix=True) as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, keep_suffix)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, durable: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"), durable)


def write_json(path: str | Path, obj, default=str, durable: bool = False) -> Path:
    """Write ``obj`` as indented JSON (and a final newline) atomically; returns ``path``.

    ``default`` converts what JSON cannot hold (``str`` by default).
    """
    return write_text(path, json.dumps(obj, indent=2, default=default) + "\n", durable)
