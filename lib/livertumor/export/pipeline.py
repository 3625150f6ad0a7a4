"""Slice export: a LiTS folder -> 2-D training data (seed report steps 3.6-3.8).

The survey of every case, the split by patient, the histogram breaks from the training cases,
the parallel export of the slices, resuming after an interruption, and sharded export over
several processes or machines. ``docs/export.md`` describes what is written, how each pass
works, resuming, sharded export and the memory used.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..atomic import temporary_name, write_bytes
from ..data.cases import data_fingerprint, find_cases
from ..data.preprocessing import channels_to_uint8, jpeg_bytes, resize_mask, slice_channels
from ..data.volumes import CANONICAL_AXCODES, LABELS, NiftiVolume, check_same_grid, read_mask
from ..data.windowing import (
    WINDOWS,
    freqhist_bins_from_counts,
    resolve_windows,
    to_nchan,
)
from ..errors import LiverTumorError

FORMAT_VERSION = 1
STATE_DIR = ".export"
MANIFEST_COLUMNS = ["case_id", "split", "slice_index", "image", "mask", "liver_pixels",
                    "tumor_pixels"]
"""Columns of ``manifest.csv``; ``liver_pixels`` counts labels 1 and 2 (liver with its
tumors, as LiTS scores the liver), ``tumor_pixels`` label 2, both in the exported mask."""
CASES_COLUMNS = ["case_id", "split", "status", "reason", "has_tumor", "slices_exported",
                 "volume_path", "mask_path", "warnings"]
"""Columns of ``cases.csv``; ``status`` is ``ok`` (exported), ``bad`` or ``unpaired``."""
_HU_RANGE = (-32768, 32767)  # the survey's HU histogram range (int16)
_EXPORT_PARTS = ("train", "test", "manifest.csv", "cases.csv", "preprocessing.json", STATE_DIR)


# --------------------------------------------------------------------------------------------
# arguments and results


@dataclass(frozen=True)
class ExportSettings:
    """The arguments that define an export (saved; a re-run must use the same ones).

    Attributes
    ----------
    every : int
        Export slice indices 0, every, 2 * every, ... (canonical, from the feet up).
    size : int
        Side of the square output images in pixels (0: keep the slice's own size).
    windows : two window names (:data:`livertumor.WINDOWS`) or ``(width, level)`` pairs
        One channel each (red, green); the histogram-equalised channel is the third (blue).
        A comma-separated string (``"liver,abdomen_soft"``) is accepted too.
    test_fraction : float in [0, 1)
        Share of the patients (in each tumor / no-tumor group) in the test split.
    seed : int
        Seed of the split.
    n_bins : int
        Histogram breaks (``freqhist_bins``).
    jpeg_quality : int
        JPEG quality of the images (fastai's ``save_jpg`` uses 90).

    Raises
    ------
    ValueError
        Unknown window name, not exactly two windows, ``every < 1``, ``size`` below 16 (but
        not 0), ``test_fraction`` outside [0, 1).
    """

    every: int = 2
    size: int = 256
    windows: tuple = ("liver", "abdomen_soft")
    test_fraction: float = 0.2
    seed: int = 0
    n_bins: int = 100
    jpeg_quality: int = 90

    def __post_init__(self):
        windows = self.windows
        if isinstance(windows, str):
            windows = [w.strip() for w in windows.split(",") if w.strip()]
        windows = tuple(w if isinstance(w, str) else tuple(float(v) for v in w)
                        for w in windows)
        object.__setattr__(self, "windows", windows)
        resolve_windows(windows)
        if len(windows) != 2:
            raise ValueError("the exported JPEG images are RGB: give exactly 2 windows (the "
                             f"third channel is the histogram-equalised image), got {windows}")
        for name in ("every", "size", "seed", "n_bins", "jpeg_quality"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")
        if self.size < 0 or 0 < self.size < 16:
            raise ValueError(f"size must be 0 (original) or at least 16 pixels, got {self.size}")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be at least 1, got {self.n_bins}")

    def as_json(self) -> dict:
        """The settings as JSON-ready values (windows as names or ``[width, level]``)."""
        d = asdict(self)
        d["windows"] = [w if isinstance(w, str) else list(w) for w in self.windows]
        d["test_fraction"] = float(self.test_fraction)
        return d


@dataclass
class ExportResult:
    """What :func:`export_slices` did (or :func:`load_export` found).

    Attributes
    ----------
    out_dir : Path
        The export folder.
    manifest : DataFrame
        ``manifest.csv``: columns :data:`MANIFEST_COLUMNS`, sorted by case and slice.
    cases : DataFrame
        ``cases.csv``: columns :data:`CASES_COLUMNS`, one row per case found, by case id.
    preprocessing : dict
        The content of ``preprocessing.json``.
    exported_now : list of int
        Cases exported by this call (the others were done by an earlier, interrupted one).
    failed : list of int
        Cases that passed the survey but failed while being exported (their files changed in
        between); empty when every good case was exported.
    shard : str or None
        ``"I/N"`` for one shard of a sharded export (``manifest`` and ``cases`` then hold its
        own cases only); None for a whole export.
    merged : bool
        For a shard: whether this call found every shard finished and wrote the merged
        manifest.csv, cases.csv and preprocessing.json.
    """

    out_dir: Path
    manifest: pd.DataFrame
    cases: pd.DataFrame
    preprocessing: dict
    exported_now: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    shard: str | None = None
    merged: bool = False

    @property
    def complete(self) -> bool:
        """True when every case that passed the survey was exported."""
        return not self.failed

    def split_summary(self) -> pd.DataFrame:
        """Patients, patients with tumor, slices, slices with liver and with tumor per split.

        Returns a DataFrame indexed ``train``, ``test``.
        """
        m, c = self.manifest, self.cases
        rows = {}
        for split in ("train", "test"):
            part = m[m["split"] == split]
            cases = c[(c["status"] == "ok") & (c["split"] == split)]
            rows[split] = {"cases": int(part["case_id"].nunique()),
                           "cases with tumor": int(cases["has_tumor"].astype(bool).sum()),
                           "slices": len(part),
                           "slices with liver": int((part["liver_pixels"] > 0).sum()),
                           "slices with tumor": int((part["tumor_pixels"] > 0).sum())}
        return pd.DataFrame.from_dict(rows, orient="index")

    def sample(self, n_tumor: int = 4, n_liver: int = 2, n_empty: int = 2,
               seed: int = 0) -> pd.DataFrame:
        """A few manifest rows to look at: slices with tumor, with liver only, and without
        liver (as many of each as exist, up to the numbers asked for)."""
        m = self.manifest
        groups = [(m["tumor_pixels"] > 0, n_tumor),
                  ((m["liver_pixels"] > 0) & (m["tumor_pixels"] == 0), n_liver),
                  (m["liver_pixels"] == 0, n_empty)]
        return pd.concat([m[sel].sample(min(n, int(sel.sum())), random_state=seed)
                          for sel, n in groups])

    def skipped(self) -> pd.DataFrame:
        """Cases that were not exported: ``case_id``, ``status``, ``reason``."""
        c = self.cases
        return c[c["status"] != "ok"][["case_id", "status", "reason"]].reset_index(drop=True)

    def summary_text(self, max_skipped: int = 12) -> str:
        """The one-screen summary the command line prints."""
        s = self.split_summary()
        skipped = self.skipped()
        done = int(self.manifest["case_id"].nunique())
        lines = [f"exported {done} of {len(self.cases)} cases to {self.out_dir}"]
        if self.shard is not None:
            lines[0] = (f"shard {self.shard}: exported {done} of its {len(self.cases)} cases "
                        f"to {self.out_dir}")
        for split in ("train", "test"):
            r = s.loc[split]
            lines.append(f"  {split + ':':6} {r['cases']:4d} cases ({r['cases with tumor']} "
                         f"with tumor), {r['slices']:6d} slices ({r['slices with liver']} with "
                         f"liver, {r['slices with tumor']} with tumor)")
        lines.append(f"  exported by this run: {len(self.exported_now)} cases; already done "
                     f"before: {done - len(self.exported_now)}")
        lines.append(f"  skipped: {len(skipped)} cases" + (":" if len(skipped) else ""))
        for row in skipped.head(max_skipped).itertuples():
            lines.append(f"    case {row.case_id} ({row.status}): {row.reason}")
        if len(skipped) > max_skipped:
            lines.append(f"    ... and {len(skipped) - max_skipped} more, see cases.csv")
        if self.failed:
            lines.append(f"  NOT exported although they passed the checks: {self.failed} "
                         "(see cases.csv; run again to retry)")
        if self.shard is not None:
            lines.append("  all shards finished: manifest.csv, cases.csv and preprocessing.json "
                         "written" if self.merged else
                         "  other shards are still running: the last one to finish writes "
                         "manifest.csv (or run: livertumor export --merge OUT_DIR)")
        return "\n".join(lines)


def load_export(out_dir: str | Path) -> ExportResult:
    """Read a finished export folder back: manifest, cases table and preprocessing.

    Raises
    ------
    LiverTumorError
        When ``manifest.csv``, ``cases.csv`` or ``preprocessing.json`` is missing.
    """
    out_dir = Path(out_dir)
    for name in ("manifest.csv", "cases.csv", "preprocessing.json"):
        if not (out_dir / name).exists():
            raise LiverTumorError(f"no {name}: not a finished export folder (run "
                                  "python -m livertumor export DATA_DIR OUT_DIR)", out_dir)
    cases = pd.read_csv(out_dir / "cases.csv", keep_default_na=False,
                        na_values={"has_tumor": [""]})
    return ExportResult(out_dir, pd.read_csv(out_dir / "manifest.csv"), cases,
                        json.loads((out_dir / "preprocessing.json").read_text()))


# --------------------------------------------------------------------------------------------
# the split


def split_cases(has_tumor: dict, test_fraction: float, seed: int) -> dict:
    """Patient-level split, stratified by tumor presence.

    The case ids with a tumor and those without are sorted, shuffled separately with
    ``numpy.random.default_rng(seed)``, and the first ``round(test_fraction * n)`` of each
    group go to ``test``: every case with a tumor has the same chance to be tested, and the
    test set has its share of tumor cases. Two corrections for tiny datasets: with two or more
    cases and ``test_fraction > 0`` at least one case is tested (from the tumor group if it
    has one), and at least one case is always left for training (the last one drawn for test
    from the no-tumor group, else from the tumor group).

    Parameters
    ----------
    has_tumor : dict case_id -> bool
    test_fraction : float in [0, 1)
    seed : int

    Returns
    -------
    dict case_id -> ``"train"`` or ``"test"``, the same for the same arguments.

    Examples
    --------
    >>> split_cases({0: True, 1: True, 2: False, 3: False, 4: True}, 0.4, seed=0)
    ... # doctest: +SKIP
    {0: 'train', 1: 'test', 2: 'test', 3: 'train', 4: 'train'}
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    split = {cid: "train" for cid in sorted(has_tumor)}
    groups = [sorted(c for c, t in has_tumor.items() if t),
              sorted(c for c, t in has_tumor.items() if not t)]
    drawn = []
    for ids in groups:
        order = list(rng.permutation(len(ids)))
        chosen = [ids[i] for i in order[: int(round(test_fraction * len(ids)))]]
        drawn.append(chosen)
        for cid in chosen:
            split[cid] = "test"
    n_test = sum(s == "test" for s in split.values())
    if test_fraction > 0 and len(split) >= 2 and n_test == 0:
        ids = groups[0] or groups[1]
        split[ids[int(rng.integers(len(ids)))]] = "test"
    elif split and n_test == len(split):
        split[(drawn[1] or drawn[0])[-1]] = "train"
    return split


# --------------------------------------------------------------------------------------------
# per-case work (run in worker processes; module-level so that it pickles)


def slice_stem(case_id: int, slice_index: int) -> str:
    """File name stem of an exported slice: ``0003_0042`` for case 3, slice 42."""
    return f"{case_id:04d}_{slice_index:04d}"


def _lut_dtype(dtype: np.dtype) -> bool:
    """Stored values that a lookup table over all codes can map (8- and 16-bit integers)."""
    return np.issubdtype(dtype, np.integer) and np.dtype(dtype).itemsize <= 2


def _stored_canonical(vol: NiftiVolume) -> np.ndarray:
    """The stored values of a volume in canonical orientation, with the least memory.

    ``.nii``: the memory-mapped view (``NiftiVolume.raw``), no copy. Compressed, unscaled
    integer data: read slab by slab into one array (``NiftiVolume.read`` in the stored dtype;
    ``raw`` would hold the whole decompressed stream a second time while it reads), whose
    axial slices are contiguous. Anything else: ``raw``. Raises ``NiftiReadError`` on a
    damaged stream.
    """
    unscaled_int = (np.issubdtype(vol.stored_dtype, np.integer) and vol.slope is None
                    and vol.inter is None)
    if unscaled_int and vol.path.name.endswith(".gz"):
        return vol.read(vol.stored_dtype)
    return vol.raw()


def _read_labels(path, geometry) -> tuple[np.ndarray, int]:
    """The mask in canonical orientation and its largest label, checked like ``read_mask``.

    Integer masks without scaling (all of LiTS) are checked with one min/max pass and returned
    in their stored dtype (:func:`_stored_canonical`: memory-mapped for ``.nii``), with no
    transposing copy. Anything else, including a mask with bad labels, goes through
    :func:`livertumor.data.volumes.read_mask`, which converts it or raises the ``LabelError`` that
    names the values.
    """
    vol = NiftiVolume(path)
    check_same_grid(geometry, vol.geometry)
    if np.issubdtype(vol.stored_dtype, np.integer) and vol.slope is None and vol.inter is None:
        stored = _stored_canonical(vol)
        lo, hi = int(stored.min()), int(stored.max())
        if lo >= 0 and hi <= 2:
            return stored, hi
    mask = read_mask(path, like=geometry)
    return mask, int(mask.max())


def _hu_of_codes(vol: NiftiVolume, codes: np.ndarray) -> np.ndarray:
    """float32 HU of stored values, computed exactly as ``NiftiVolume.hu_slice`` does."""
    return vol._scale(codes.astype(vol.stored_dtype), np.dtype(np.float32))


def _pool_rounded(hu: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of HU values rounded to integers (clipped to int16): (values, counts)."""
    rounded = np.clip(np.rint(hu), *_HU_RANGE).astype(np.int64)
    values, inverse = np.unique(rounded, return_inverse=True)
    pooled = np.zeros(values.size, np.int64)
    np.add.at(pooled, inverse.reshape(-1), counts)
    return values, pooled


def _hu_histogram(vol: NiftiVolume, stored: np.ndarray, every: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of the integer HU values of slices 0, every, 2 * every, ... of a volume.

    ``stored`` is :func:`_stored_canonical` of ``vol``. 8/16-bit integer data: a bincount of
    the stored codes per exported slice, mapped to HU once per distinct code. Other data
    (float, int32): slice by slice in float32; float data is read slice by slice in full, so
    that NaN or infinite voxels anywhere raise ``NiftiReadError``.

    Returns
    -------
    (values, counts): int64 arrays, values increasing (HU rounded, within int16)
    """
    n_slices = stored.shape[2]
    if _lut_dtype(stored.dtype):
        lo, hi = (int(v) for v in (np.iinfo(stored.dtype).min, np.iinfo(stored.dtype).max))
        counts = np.zeros(hi - lo + 1, np.int64)
        for k in range(0, n_slices, every):
            codes = stored[:, :, k].astype(np.int32).reshape(-1)
            if lo:
                codes -= lo
            counts += np.bincount(codes, minlength=counts.size)
        present = np.flatnonzero(counts)
        return _pool_rounded(_hu_of_codes(vol, present + lo), counts[present])
    offset = -_HU_RANGE[0]
    counts = np.zeros(_HU_RANGE[1] - _HU_RANGE[0] + 1, np.int64)
    step = 1 if np.issubdtype(stored.dtype, np.floating) else every
    for k in range(0, n_slices, step):
        hu = _hu_of_codes(vol, stored[:, :, k])  # as hu_slice(k); raises on NaN / infinite
        if k % every == 0:
            idx = np.clip(np.rint(hu), *_HU_RANGE).astype(np.int64).reshape(-1) + offset
            counts += np.bincount(idx, minlength=counts.size)
    present = np.flatnonzero(counts)
    return present - offset, counts[present]


def _survey_case(job: tuple) -> dict:
    """Check one case and count its HU histogram; never raises on bad data."""
    case_id, volume_path, mask_path, every = job
    try:
        vol = NiftiVolume(volume_path)
        _, top_label = _read_labels(mask_path, vol.geometry)  # the mask is not kept
        values, counts = _hu_histogram(vol, _stored_canonical(vol), every)
    except LiverTumorError as err:
        return {"case_id": case_id, "ok": False, "reason": str(err)}
    return {"case_id": case_id, "ok": True, "has_tumor": top_label == 2,
            "n_slices": int(vol.geometry.canonical_shape[2]),
            "hist_values": values.tolist(), "hist_counts": counts.tolist()}


class _SliceImager:
    """The uint8 model-input image of axial slice ``k`` of a volume.

    Equal, byte for byte, to ``preprocessing.slice_channels(vol.hu_slice(k), prep)`` (tested),
    but faster: every channel of ``to_nchan`` (each window, and ``hist_scaled`` with fixed
    breaks) is a function of the voxel's value alone, and 8/16-bit stored values have at most
    65536 codes, so ``to_nchan`` is evaluated once on all codes (scaled to HU exactly as
    ``hu_slice`` scales them) and each slice is a table lookup. Other stored types (float,
    int32) go through ``slice_channels`` itself.
    """

    def __init__(self, vol: NiftiVolume, prep: dict, stored: np.ndarray | None = None):
        self._vol, self._prep = vol, prep
        self._stored = vol.raw() if stored is None else stored
        self._size = int(prep.get("size") or 0)
        self._lut = self._codes = self._channels = None
        if _lut_dtype(vol.stored_dtype):
            info = np.iinfo(vol.stored_dtype)
            hu = _hu_of_codes(vol, np.arange(int(info.min), int(info.max) + 1))
            channels = to_nchan(hu, resolve_windows(prep["windows"]),
                                bins=np.asarray(prep["bins"], np.float32))
            self._lut = np.ascontiguousarray(channels.T)  # (C, codes)
            self._offset = -int(info.min)

    def __call__(self, k: int) -> np.ndarray:
        stored = self._stored[:, :, k]
        if self._lut is None:  # hu_slice(k) of the stored values we hold
            return slice_channels(_hu_of_codes(self._vol, stored), self._prep)
        if self._codes is None:  # buffers reused slice after slice (fresh ones cost page faults)
            self._codes = np.empty(stored.shape, np.intp)
            self._channels = np.empty((len(self._lut),) + stored.shape, np.float32)
        np.copyto(self._codes, stored)
        if self._offset:
            self._codes += self._offset
        for lut, out in zip(self._lut, self._channels, strict=True):
            np.take(lut, self._codes, out=out, mode="clip")  # codes are in range: no clipping
        return channels_to_uint8(list(self._channels), self._size)


def _png_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _flush_to_disk() -> None:
    """Make written data durable before files get their final names (``os.sync``, POSIX)."""
    if hasattr(os, "sync"):
        os.sync()


def _export_case(job: tuple) -> dict:
    """Write the images and masks of one case, then its completion record.

    All files are written under ``.<name>.part``, flushed, renamed; the record comes last.
    Returns ``{"case_id", "ok", "rows"}`` or ``{"case_id", "ok": False, "reason"}``.
    """
    case_id, volume_path, mask_path, split, prep, out_dir = job
    out_dir = Path(out_dir)
    staged: list[tuple[Path, Path]] = []
    rows = []
    try:
        vol = NiftiVolume(volume_path)
        imager = _SliceImager(vol, prep, _stored_canonical(vol))
        mask, _ = _read_labels(mask_path, vol.geometry)
        for k in range(0, vol.geometry.canonical_shape[2], prep["every"]):
            stem = slice_stem(case_id, k)
            image_rel, mask_rel = f"{split}/images/{stem}.jpg", f"{split}/masks/{stem}.png"
            label = resize_mask(np.ascontiguousarray(mask[:, :, k], dtype=np.uint8),
                                prep["size"])
            for rel, data in ((image_rel, jpeg_bytes(imager(k), prep["jpeg_quality"])),
                              (mask_rel, _png_bytes(label))):
                final = out_dir / rel
                staged.append((temporary_name(final), final))
                staged[-1][0].write_bytes(data)
            rows.append({"case_id": case_id, "split": split, "slice_index": k,
                         "image": image_rel, "mask": mask_rel,
                         "liver_pixels": int(np.count_nonzero(label)),
                         "tumor_pixels": int(np.count_nonzero(label == 2))})
    except LiverTumorError as err:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        return {"case_id": case_id, "ok": False, "reason": str(err)}
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    _flush_to_disk()
    files = {}
    for tmp, final in staged:
        os.replace(tmp, final)
        files[final.relative_to(out_dir).as_posix()] = final.stat().st_size
    record = {"case_id": case_id, "split": split, "rows": rows, "files": files}
    write_bytes(out_dir / STATE_DIR / f"case-{case_id}.json", json.dumps(record).encode(),
                durable=True)
    return {"case_id": case_id, "ok": True, "rows": rows}


def _ping(_=None) -> int:
    return os.getpid()


def _worker_init() -> None:
    """Workers ignore Ctrl-C (SIGINT goes to the whole process group): the main process
    handles it and stops them, instead of each finishing the cases already queued to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------------------------
# the export folder: settings, lock, records


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
        # surveys are written by any shard (see export_slices): never another one's file
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


# --------------------------------------------------------------------------------------------
# processes


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _mp_context():
    """Start method of the worker processes.

    ``fork`` on Linux (fast, and no ``if __name__ == "__main__"`` guard needed in a user's
    script), unless a runtime that starts native thread pools is loaded (TensorFlow, PyTorch,
    JAX: a forked copy of their locked state can deadlock); then ``forkserver`` with this
    module preloaded, else ``spawn`` (other systems). The workers only run numpy, nibabel and
    Pillow code, which is fork-safe. The output does not depend on the start method.
    """
    methods = multiprocessing.get_all_start_methods()
    threaded = any(m in sys.modules for m in ("tensorflow", "torch", "jax"))
    if sys.platform == "linux" and "fork" in methods and not threaded:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


class _Workers:
    """A process pool shared by the survey and the export (or in-process for one worker)."""

    def __init__(self, n: int):
        self.n = n
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the processes now (before any progress bar starts a thread)."""
        if self.n > 1 and self._pool is None:
            ctx = _mp_context()
            self._pool = ProcessPoolExecutor(self.n, mp_context=ctx, initializer=_worker_init)
            try:
                list(self._pool.map(_ping, range(self.n)))
            except BrokenProcessPool as err:
                raise LiverTumorError(
                    f"the worker processes could not start ({ctx.get_start_method()}): a "
                    "script that imports TensorFlow, PyTorch or JAX must call the export under "
                    "`if __name__ == \"__main__\":` (the workers import the script again), or "
                    "pass workers=1") from err

    def run(self, fn, jobs: list):
        """Yield ``fn(job)`` for every job, in order of completion."""
        if self.n <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield fn(job)
            return
        self.start()
        futures = [self._pool.submit(fn, job) for job in jobs]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except BrokenProcessPool as err:
            raise LiverTumorError(
                "a worker process died (out of memory?); run the same command again with "
                "fewer workers: the cases already exported are kept") from err

    def close(self, cancel: bool) -> None:
        """Shut the pool down; ``cancel`` (on an error or Ctrl-C): stop the workers now. A case
        they were writing has no completion record and is redone by the next run."""
        if self._pool is None:
            return
        if cancel:
            processes = getattr(self._pool, "_processes", None) or {}  # pid -> Process
            for proc in list(processes.values()):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._pool = None


# --------------------------------------------------------------------------------------------
# the export


def _preprocessing(settings: ExportSettings, bins: np.ndarray, train_ids: list, n_voxels: int,
                   fingerprint: str) -> dict:
    names = [w if isinstance(w, str) else f"custom {w[0]:g}/{w[1]:g}" for w in settings.windows]
    return {
        "format": FORMAT_VERSION,
        "windows": [list(w) for w in resolve_windows(settings.windows)],
        "window_names": names,
        "channels": [*names, "histogram-scaled"],
        "bins": [float(b) for b in bins],
        "n_bins": settings.n_bins,
        "bins_from": {"cases": sorted(train_ids), "voxels": int(n_voxels),
                      "what": "all pixels of the exported slices of the training cases, "
                              "HU rounded to integers"},
        "size": settings.size,
        "every": settings.every,
        "orientation": "".join(CANONICAL_AXCODES),
        "image_resize": "per channel, float, Pillow bilinear (antialiased when shrinking), "
                        "then x 255 truncated to uint8",
        "mask_resize": "nearest neighbour",
        "image_format": "JPEG, 8-bit RGB, channels in the order of 'channels'",
        "mask_format": "PNG, 8-bit grey (mode L), one label per pixel",
        "labels": {str(k): v for k, v in LABELS.items()},
        "file_names": "<case id, 4 digits>_<slice index, 4 digits>; slice 0 is the most "
                      "inferior",
        "jpeg_quality": settings.jpeg_quality,
        "test_fraction": settings.test_fraction,
        "seed": settings.seed,
        "source_fingerprint": fingerprint,
        "known_windows": {k: list(v) for k, v in WINDOWS.items()},
    }


def _cases_table(cases: pd.DataFrame, status: dict, split: dict, surveys: dict,
                 records: dict) -> pd.DataFrame:
    table = []
    for r in cases.itertuples():
        cid = int(r.case_id)
        done = cid in records
        st = status[cid]
        survey = surveys.get(cid) or {}
        table.append({
            "case_id": cid,
            "split": split[cid] if done else "",
            "status": "ok" if done else (st["status"] if st["status"] != "ok" else "bad"),
            "reason": "" if done else (st["reason"] or "not exported"),
            "has_tumor": survey.get("has_tumor") if survey.get("ok") else None,
            "slices_exported": len(records.get(cid, [])),
            "volume_path": _absolute(r.volume_path),
            "mask_path": _absolute(r.mask_path),
            "warnings": r.warnings or ""})
    return pd.DataFrame(table, columns=CASES_COLUMNS)


def _csv_bytes(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False, lineterminator="\n").encode()


def export_slices(
    data_dir: str | Path,
    out_dir: str | Path,
    every: int = 2,
    size: int = 256,
    windows=("liver", "abdomen_soft"),
    test_fraction: float = 0.2,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    shard: str | tuple[int, int] | None = None,
) -> ExportResult:
    """Export every ``every``-th axial slice of a LiTS folder as JPEG images and PNG masks.

    ``docs/export.md`` describes the folder layout, the passes and the guarantees.

    Parameters
    ----------
    data_dir : str or Path
        The LiTS folder (``volume-N.nii[.gz]`` / ``segmentation-N.nii[.gz]`` at any depth).
    out_dir : str or Path
        The export folder: created; resumed when it holds an interrupted export with the same
        arguments; refused when it holds anything else.
    every, size, windows, test_fraction, seed
        See :class:`ExportSettings`.
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
    from tqdm.auto import tqdm

    settings = ExportSettings(every, size, windows, test_fraction, seed)
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be positive (or 0 / None for all CPUs), got {workers}")
    shard_index, shard_count = parse_shard(shard) if shard is not None else (0, 1)
    sharded = shard is not None
    if sharded and overwrite:
        raise ValueError("overwrite cannot be combined with shard: one shard would delete the "
                         "others' work; delete the folder first, then start all shards")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    cases = find_cases(data_dir)
    fingerprint = data_fingerprint(data_dir)
    params = {**settings.as_json(), "data_fingerprint": fingerprint, "format": FORMAT_VERSION}
    _check_not_foreign(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    plan = shard_plan(cases, shard_count)
    own = {cid for cid, i in plan.items() if i == shard_index}
    lock_name = f"lock-shard-{shard_index}-of-{shard_count}" if sharded else "lock"
    with _export_lock(out_dir, lock_name):
        _prepare_out_dir(out_dir, params, overwrite)
        shard_file = out_dir / STATE_DIR / _shard_file_name(shard_index, shard_count)
        if sharded:
            shard_file.unlink(missing_ok=True)  # not done until this run is
        _clean_partial_files(out_dir, own if sharded else None)
        status = {int(r.case_id): {"status": r.status, "reason": r.reason}
                  for r in cases.itertuples()}
        usable = {int(r.case_id): r for r in cases.itertuples() if r.status == "ok"}
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
            return [(cid, usable[cid].volume_path, usable[cid].mask_path, settings.every)
                    for cid in ids if cid not in surveys]

        cached_surveys()
        # The split and the breaks need every case's survey. A shard surveys its own cases,
        # then any still missing (another shard may be doing them at the same time: the
        # result of a survey depends only on the files, so doing one twice is harmless).
        rounds = [sorted(own & set(usable)), sorted(set(usable) - own)]
        n_workers = min(workers or _default_workers(), max(1, len(usable)))
        pool = _Workers(n_workers)
        pending = any(not (out_dir / STATE_DIR / f"case-{cid}.json").exists()
                      for cid in usable if cid in own)
        cancel = True
        try:
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
            for sub in ("train", "test"):
                for kind in ("images", "masks"):
                    (out_dir / sub / kind).mkdir(parents=True, exist_ok=True)

            records, todo = {}, []
            for cid in (c for c in good if c in own):
                rec = _done_record(out_dir, cid, split[cid])
                if rec is not None:
                    records[cid] = rec["rows"]
                else:
                    todo.append((cid, usable[cid].volume_path, usable[cid].mask_path,
                                 split[cid], prep, str(out_dir)))
            n_exported = {cid: len(range(0, s["n_slices"], settings.every))
                          for cid, s in good.items() if cid in own}
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
            cancel = False
        finally:
            pool.close(cancel)
            if cancel:  # interrupted or failed: the workers are stopped, tidy their temp files
                _clean_partial_files(out_dir, own if sharded else None)

        manifest = _manifest(records)
        mine = cases[cases["case_id"].isin(own)]
        table = _cases_table(mine, status, split, surveys, records)
        if not sharded:
            _write_outputs(out_dir, manifest, table, prep, data_dir)
            return ExportResult(out_dir, manifest, table, prep, sorted(exported_now),
                                sorted(failed))
        write_bytes(shard_file, json.dumps({
            "shard": shard_index, "of": shard_count, "params": params, "preprocessing": prep,
            "cases": json.loads(table.to_json(orient="records")),
        }).encode(), durable=True)
    result = ExportResult(out_dir, manifest, table, prep, sorted(exported_now), sorted(failed),
                          shard=f"{shard_index}/{shard_count}")
    # the last shard to finish merges (when two finish together, one merges, the other sees
    # the merge lock held and leaves it to that one: both would write the same bytes)
    with contextlib.suppress(ShardsMissing, ExportLocked):
        merge_export(out_dir)
        result.merged = True
    return result


def _manifest(records: dict) -> pd.DataFrame:
    """manifest.csv's table from completion records, sorted by case and slice."""
    return pd.DataFrame([row for cid in sorted(records) for row in records[cid]],
                        columns=MANIFEST_COLUMNS)


def _write_outputs(out_dir: Path, manifest: pd.DataFrame, table: pd.DataFrame, prep: dict,
                   data_dir) -> None:
    """Write cases.csv, then manifest.csv and preprocessing.json (the last files of an export:
    their presence means the export is finished)."""
    write_bytes(out_dir / "cases.csv", _csv_bytes(table), durable=True)
    if manifest.empty:
        raise LiverTumorError(_nothing_exported(table, out_dir), data_dir)
    write_bytes(out_dir / "manifest.csv", _csv_bytes(manifest), durable=True)
    write_bytes(out_dir / "preprocessing.json", (json.dumps(prep, indent=2) + "\n").encode(),
                durable=True)


# --------------------------------------------------------------------------------------------
# sharded export


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


def _shard_file_name(index: int, count: int) -> str:
    return f"shard-{index}-of-{count}.json"


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
    manifest = _manifest(records)
    prep = parts[0]["preprocessing"]
    with _export_lock(out_dir, "lock-merge"):
        _write_outputs(out_dir, manifest, table, prep, out_dir)
    return load_export(out_dir)


def _nothing_exported(table: pd.DataFrame, out_dir: Path) -> str:
    """The message when no case was exported; ``table`` is the cases table (a row per case)."""
    if table.empty:
        return "no case could be exported: no volume-N.nii / segmentation-N.nii files found"
    first = table.iloc[0]
    return (f"no case could be exported: {len(table)} found, none usable; the reasons are in "
            f"{out_dir / 'cases.csv'}, e.g. case {first.case_id} ({first.status}): "
            f"{first.reason}")


def _absolute(path) -> str | None:
    return None if path is None or path != path else str(Path(path).resolve())


def tree_digest(out_dir: str | Path) -> dict[str, str]:
    """sha256 of every visible file under an export folder (relative path -> hex digest).

    Hidden files and folders (``.export/``, ``.*.part``) are left out. Two exports with the
    same digest are byte-identical.
    """
    import hashlib

    out_dir = Path(out_dir)
    return {p.relative_to(out_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out_dir.rglob("*"))
            if p.is_file() and not any(part.startswith(".")
                                       for part in p.relative_to(out_dir).parts)}
