"""Slice export: a LiTS folder -> 2-D training data (seed report steps 3.6-3.8).

``export_slices(data_dir, out_dir, ...)`` writes::

    out_dir/{train,test}/images/<case>_<slice>.jpg   to_nchan image, 8-bit RGB (JPEG q 90)
    out_dir/{train,test}/masks/<case>_<slice>.png    labels 0/1/2 as pixel values
    out_dir/manifest.csv        one row per slice: case_id, split, slice_index, image, mask,
                                liver_pixels, tumor_pixels (paths relative to out_dir)
    out_dir/cases.csv           every case: split, or status and reason when it was skipped
    out_dir/preprocessing.json  the one definition of the preprocessing (see PREPROCESSING)

File names are ``<case id, 4 digits>_<slice index, 4 digits>``; slice 0 is the most inferior
(canonical orientation, see :mod:`livertumor.volumes`), and every ``every``-th slice is
exported. How it works:

1. **Survey** (parallel over cases): each usable case's mask is read and checked (labels, grid)
   and its volume read (NaN, truncation), giving whether it has a tumor and the histogram of
   the integer HU values of the slices that will be exported. Cases failing here are listed
   as ``bad`` with the reason and left out.
2. **Split by patient**, stratified by tumor presence (:func:`split_cases`).
3. **Histogram breaks** from the pooled histograms of the TRAINING cases only
   (:func:`livertumor.windowing.freqhist_bins_from_counts`), stored in preprocessing.json.
4. **Export** (parallel over cases): every file is written to a temporary name and renamed;
   a case's completion record (``out_dir/.export/case-<id>.json``) is written last.
5. The manifest, cases table and preprocessing.json are written from the records, sorted, so
   the output is byte-identical whatever the number of workers.

An interrupted export started again with the same arguments skips the cases whose record
exists and ends with the same files. Different arguments into the same folder are refused.
Memory per worker stays near one volume's stored size: uncompressed ``.nii`` files are
memory-mapped and read a slice at a time, ``.nii.gz`` decompressed once in int16; slices are
converted to float32 one at a time.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .cases import data_fingerprint, find_cases
from .errors import LiverTumorError
from .preprocessing import jpeg_bytes, resize_mask, slice_channels
from .volumes import CANONICAL_AXCODES, NiftiVolume, read_mask
from .windowing import WINDOWS, freqhist_bins_from_counts, resolve_windows

FORMAT_VERSION = 1
HU_OFFSET = 32768  # histogram index = HU + offset (int16 range)
MANIFEST_COLUMNS = ["case_id", "split", "slice_index", "image", "mask", "liver_pixels",
                    "tumor_pixels"]
CASES_COLUMNS = ["case_id", "split", "status", "reason", "has_tumor", "slices_exported",
                 "volume_path", "mask_path"]


@dataclass(frozen=True)
class ExportSettings:
    """The arguments that define an export (saved; a re-run must use the same ones).

    Attributes
    ----------
    every : export slice indices 0, every, 2 * every, ...
    size : side of the square output images in pixels (0: keep the original size)
    windows : window names (:data:`livertumor.WINDOWS`) or (width, level) pairs, one channel
        each; the histogram-equalised channel is added after them
    test_fraction : share of the patients (per tumor / no-tumor group) in the test split
    seed : seed of the split
    n_bins : histogram breaks (``freqhist_bins``)
    jpeg_quality : JPEG quality of the images
    """

    every: int = 2
    size: int = 256
    windows: tuple = ("liver", "abdomen_soft")
    test_fraction: float = 0.2
    seed: int = 0
    n_bins: int = 100
    jpeg_quality: int = 90

    def __post_init__(self):
        object.__setattr__(self, "windows", tuple(
            w if isinstance(w, str) else tuple(float(v) for v in w) for w in self.windows))
        resolve_windows(self.windows)
        if self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")
        if self.size < 0 or 0 < self.size < 16:
            raise ValueError(f"size must be 0 (original) or at least 16 pixels, got {self.size}")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if len(self.windows) + 1 not in (1, 3, 4):
            raise ValueError("JPEG images need 3 (RGB) or 4 (CMYK) channels: give 2 or 3 "
                             f"windows, got {len(self.windows)}")

    def as_json(self) -> dict:
        d = asdict(self)
        d["windows"] = [w if isinstance(w, str) else list(w) for w in self.windows]
        return d


@dataclass
class ExportResult:
    """What :func:`export_slices` did.

    Attributes
    ----------
    out_dir : the export folder
    manifest : DataFrame of ``manifest.csv``
    cases : DataFrame of ``cases.csv``
    preprocessing : the dict of ``preprocessing.json``
    exported_now : case ids exported by this call (the others were already done)
    """

    out_dir: Path
    manifest: pd.DataFrame
    cases: pd.DataFrame
    preprocessing: dict
    exported_now: list = field(default_factory=list)

    def split_summary(self) -> pd.DataFrame:
        """Cases, slices, slices with liver and with tumor per split."""
        m = self.manifest
        rows = {}
        for split in ("train", "test"):
            part = m[m["split"] == split]
            rows[split] = {"cases": int(part["case_id"].nunique()), "slices": len(part),
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
        """Cases that were not exported, with the reason."""
        c = self.cases
        return c[c["status"] != "ok"][["case_id", "status", "reason"]].reset_index(drop=True)

    def summary_text(self) -> str:
        """The one-screen summary the command line prints."""
        s = self.split_summary()
        skipped = self.skipped()
        lines = [f"export in {self.out_dir}",
                 f"  train: {s.loc['train', 'cases']} cases, {s.loc['train', 'slices']} slices "
                 f"({s.loc['train', 'slices with tumor']} with tumor)",
                 f"  test:  {s.loc['test', 'cases']} cases, {s.loc['test', 'slices']} slices "
                 f"({s.loc['test', 'slices with tumor']} with tumor)",
                 f"  exported by this run: {len(self.exported_now)} cases; "
                 f"skipped: {len(skipped)}"]
        for row in skipped.head(12).itertuples():
            lines.append(f"    case {row.case_id} ({row.status}): {row.reason}")
        if len(skipped) > 12:
            lines.append(f"    ... and {len(skipped) - 12} more, see cases.csv")
        return "\n".join(lines)


def split_cases(has_tumor: dict, test_fraction: float, seed: int) -> dict:
    """Patient-level split, stratified by tumor presence.

    The case ids with a tumor and those without are sorted, shuffled separately with
    ``numpy.random.default_rng(seed)``, and the first ``round(test_fraction * n)`` of each
    group go to ``test``; so every case with a tumor has the same chance to be tested. When
    that gives no test case at all but there are two or more cases and ``test_fraction > 0``,
    one case (from the tumor group if it has one) goes to test.

    Returns
    -------
    dict case_id -> "train" or "test"
    """
    rng = np.random.default_rng(seed)
    split = {cid: "train" for cid in has_tumor}
    groups = [sorted(c for c, t in has_tumor.items() if t),
              sorted(c for c, t in has_tumor.items() if not t)]
    for ids in groups:
        order = list(rng.permutation(len(ids)))
        for i in order[: int(round(test_fraction * len(ids)))]:
            split[ids[i]] = "test"
    if test_fraction > 0 and len(split) >= 2 and "test" not in split.values():
        ids = groups[0] or groups[1]
        split[ids[int(rng.integers(len(ids)))]] = "test"
    return split


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    _atomic_bytes(path, text.encode("utf-8"))


def _png_bytes(mask: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _survey_case(args) -> dict:
    """Read one case fully: tumor presence and the HU histogram of the slices to export."""
    case_id, volume_path, mask_path, every = args
    try:
        vol = NiftiVolume(volume_path)
        mask = read_mask(mask_path, like=vol.geometry)
        counts = np.zeros(1 << 16, np.int64)
        n_slices = vol.geometry.canonical_shape[2]
        for k in range(0, n_slices, every):
            hu = np.rint(vol.hu_slice(k)).astype(np.int64)
            np.clip(hu, -HU_OFFSET, HU_OFFSET - 1, out=hu)
            counts += np.bincount((hu + HU_OFFSET).ravel(), minlength=1 << 16)
        return {"case_id": case_id, "ok": True, "has_tumor": bool((mask == 2).any()),
                "counts": counts, "n_slices": n_slices}
    except LiverTumorError as err:
        return {"case_id": case_id, "ok": False, "reason": str(err)}


def _export_case(args) -> dict:
    """Write the images and masks of one case, then its completion record."""
    case_id, volume_path, mask_path, split, prep, out_dir = args
    out_dir = Path(out_dir)
    try:
        vol = NiftiVolume(volume_path)
        mask = read_mask(mask_path, like=vol.geometry)
        rows = []
        for k in range(0, vol.geometry.canonical_shape[2], prep["every"]):
            stem = f"{case_id:04d}_{k:04d}"
            image = slice_channels(vol.hu_slice(k), prep)
            label = resize_mask(mask[:, :, k], prep["size"])
            image_rel = f"{split}/images/{stem}.jpg"
            mask_rel = f"{split}/masks/{stem}.png"
            _atomic_bytes(out_dir / image_rel, jpeg_bytes(image, prep["jpeg_quality"]))
            _atomic_bytes(out_dir / mask_rel, _png_bytes(label))
            rows.append({"case_id": case_id, "split": split, "slice_index": k,
                         "image": image_rel, "mask": mask_rel,
                         "liver_pixels": int((label >= 1).sum()),
                         "tumor_pixels": int((label == 2).sum())})
        record = {"case_id": case_id, "split": split, "rows": rows,
                  "files": {r[key]: (out_dir / r[key]).stat().st_size
                            for r in rows for key in ("image", "mask")}}
        _atomic_text(out_dir / ".export" / f"case-{case_id}.json", json.dumps(record))
        return {"case_id": case_id, "ok": True, "rows": rows}
    except LiverTumorError as err:
        return {"case_id": case_id, "ok": False, "reason": str(err)}


def _done_record(out_dir: Path, case_id: int, split: str) -> dict | None:
    """The completion record of a case, if it exists and its files are all there."""
    path = out_dir / ".export" / f"case-{case_id}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("split") != split:
        return None
    for rel, size in record["files"].items():
        f = out_dir / rel
        if not f.exists() or f.stat().st_size != size:
            return None
    return record


def _map(fn, jobs, workers: int, progress_bar=None, weight=None):
    """Run ``fn`` over ``jobs`` in order of completion; yields results."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            result = fn(job)
            if progress_bar is not None:
                progress_bar.update(weight(job) if weight else 1)
            yield result
        return
    # fork is fast and needs no `if __name__ == "__main__"` guard in a user's script, but is
    # unsafe once a threaded runtime (TensorFlow) is loaded: then spawn fresh interpreters.
    threaded = "tensorflow" in sys.modules or "torch" in sys.modules
    ctx = multiprocessing.get_context("spawn" if threaded else "fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(fn, job): job for job in jobs}
        from concurrent.futures import as_completed

        for fut in as_completed(futures):
            if progress_bar is not None:
                progress_bar.update(weight(futures[fut]) if weight else 1)
            yield fut.result()


def _check_settings(out_dir: Path, settings: dict) -> None:
    path = out_dir / ".export" / "settings.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings)
                             if before.get(k) != settings.get(k))
            raise LiverTumorError(
                f"holds an export made with other arguments ({', '.join(changed)} differ); "
                "export into a new folder, or delete this one first", out_dir)
    else:
        (out_dir / ".export").mkdir(parents=True, exist_ok=True)
        _atomic_text(path, json.dumps(settings, indent=2, sort_keys=True))


def _clean_partial_files(out_dir: Path) -> None:
    for tmp in out_dir.rglob(".*.part"):
        tmp.unlink(missing_ok=True)


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
) -> ExportResult:
    """Export every ``every``-th axial slice of a LiTS folder as JPEG images and PNG masks.

    Parameters
    ----------
    data_dir : the LiTS folder (``volume-N.nii`` / ``segmentation-N.nii`` at any depth)
    out_dir : the export folder (created; resumed when it holds an interrupted export)
    every, size, windows, test_fraction, seed : see :class:`ExportSettings`
    workers : processes; default: the number of CPUs. The output does not depend on it.
    progress : show progress bars

    Returns
    -------
    :class:`ExportResult`

    Raises
    ------
    LiverTumorError
        ``data_dir`` missing; ``out_dir`` holds an export with other arguments; no case
        could be exported.
    """
    from tqdm.auto import tqdm

    settings = ExportSettings(every, size, tuple(windows), test_fraction, seed)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    workers = max(1, workers or os.cpu_count() or 1)
    cases = find_cases(data_dir)
    fingerprint = data_fingerprint(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, {**settings.as_json(), "data_fingerprint": fingerprint,
                              "format": FORMAT_VERSION})
    _clean_partial_files(out_dir)

    status = {int(r.case_id): {"status": r.status, "reason": r.reason} for r in cases.itertuples()}
    usable = cases[cases["status"] == "ok"]
    jobs = [(int(r.case_id), r.volume_path, r.mask_path, settings.every)
            for r in usable.itertuples()]
    surveyed = {}
    with tqdm(total=len(jobs), desc="survey", unit="case", disable=not progress) as bar:
        for res in _map(_survey_case, jobs, workers, bar):
            surveyed[res["case_id"]] = res
            if not res["ok"]:
                status[res["case_id"]] = {"status": "bad", "reason": res["reason"]}
    good = {cid: r for cid, r in sorted(surveyed.items()) if r["ok"]}
    if not good:
        raise LiverTumorError("no case could be exported (see cases: "
                              f"{len(cases)} found, {len(usable)} with readable headers)",
                              data_dir)
    split = split_cases({cid: r["has_tumor"] for cid, r in good.items()},
                        settings.test_fraction, settings.seed)
    train_ids = [cid for cid in good if split[cid] == "train"] or list(good)
    counts = np.sum([good[cid]["counts"] for cid in train_ids], axis=0)
    values = np.flatnonzero(counts)
    bins = freqhist_bins_from_counts(values - HU_OFFSET, counts[values], settings.n_bins)
    prep = {
        "format": FORMAT_VERSION,
        "windows": [list(w) for w in resolve_windows(settings.windows)],
        "window_names": [w if isinstance(w, str) else f"custom {w[0]:g}/{w[1]:g}"
                         for w in settings.windows],
        "channels": [*(w if isinstance(w, str) else "custom" for w in settings.windows),
                     "histogram-scaled"],
        "bins": [float(b) for b in bins],
        "n_bins": settings.n_bins,
        "bins_from": {"cases": sorted(train_ids), "voxels": int(counts.sum()),
                      "what": "all pixels of the exported slices of the training cases, "
                              "HU rounded to integers"},
        "size": settings.size,
        "every": settings.every,
        "orientation": "".join(CANONICAL_AXCODES),
        "image_resize": "per channel, float, Pillow bilinear (antialiased when shrinking), "
                        "then x 255 truncated to uint8",
        "mask_resize": "nearest neighbour",
        "jpeg_quality": settings.jpeg_quality,
        "test_fraction": settings.test_fraction,
        "seed": settings.seed,
        "source_fingerprint": fingerprint,
        "known_windows": {k: list(v) for k, v in WINDOWS.items()},
    }
    for sub in ("train", "test"):
        for kind in ("images", "masks"):
            (out_dir / sub / kind).mkdir(parents=True, exist_ok=True)

    records, todo = {}, []
    for cid in good:
        rec = _done_record(out_dir, cid, split[cid])
        if rec is not None:
            records[cid] = rec["rows"]
        else:
            case = usable[usable["case_id"] == cid].iloc[0]
            todo.append((cid, case["volume_path"], case["mask_path"], split[cid], prep,
                         str(out_dir)))
    n_slices = {cid: len(range(0, good[cid]["n_slices"], settings.every)) for cid in good}
    exported_now = []
    with tqdm(total=sum(n_slices[j[0]] for j in todo), desc=f"export ({len(todo)} cases)",
              unit="slice", disable=not progress) as bar:
        for res in _map(_export_case, todo, workers, bar, weight=lambda j: n_slices[j[0]]):
            if res["ok"]:
                records[res["case_id"]] = res["rows"]
                exported_now.append(res["case_id"])
            else:
                status[res["case_id"]] = {"status": "bad", "reason": res["reason"]}

    rows = [row for cid in sorted(records) for row in records[cid]]
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    table = []
    for r in cases.itertuples():
        cid = int(r.case_id)
        st = status[cid]
        done = cid in records
        table.append({
            "case_id": cid, "split": split.get(cid, "") if done else "",
            "status": "ok" if done else (st["status"] if st["status"] != "ok" else "bad"),
            "reason": "" if done else (st["reason"] or "not exported"),
            "has_tumor": bool(good[cid]["has_tumor"]) if cid in good else None,
            "slices_exported": len(records.get(cid, [])),
            "volume_path": _absolute(r.volume_path), "mask_path": _absolute(r.mask_path)})
    cases_out = pd.DataFrame(table, columns=CASES_COLUMNS)
    _atomic_text(out_dir / "manifest.csv", manifest.to_csv(index=False, lineterminator="\n"))
    _atomic_text(out_dir / "cases.csv", cases_out.to_csv(index=False, lineterminator="\n"))
    _atomic_text(out_dir / "preprocessing.json", json.dumps(prep, indent=2) + "\n")
    if manifest.empty:
        raise LiverTumorError("no case could be exported; see cases.csv", out_dir)
    return ExportResult(out_dir, manifest, cases_out, prep, sorted(exported_now))


def _absolute(path) -> str | None:
    return None if path is None or path != path else str(Path(path).resolve())


def tree_digest(out_dir: str | Path) -> dict[str, str]:
    """sha256 of every visible file under an export folder (relative path -> hex digest)."""
    out_dir = Path(out_dir)
    return {p.relative_to(out_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out_dir.rglob("*"))
            if p.is_file() and not any(part.startswith(".")
                                       for part in p.relative_to(out_dir).parts)}
