"""The files an export ends with, written last from the sorted records, byte-identical whatever
the number of workers or shards: ``preprocessing.json`` (the preprocessing record),
``cases.csv`` (a row per case found) and ``manifest.csv`` (a row per exported slice)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_bytes
from ..data.preprocessing import context_offsets
from ..data.volumes import CANONICAL_AXCODES, LABELS
from ..data.windowing import WINDOWS, resolve_windows
from ..errors import LiverTumorError
from .result import CASES_COLUMNS, manifest_columns
from .settings import FORMAT_VERSION, ExportSettings


def _preprocessing(settings: ExportSettings, bins: np.ndarray, train_ids: list, n_voxels: int,
                   fingerprint: str) -> dict:
    names = [w if isinstance(w, str) else f"custom {w[0]:g}/{w[1]:g}" for w in settings.windows]
    context = [f"{names[0]}, slice {o:+d}" for o in context_offsets(settings.context)]
    where = " inside their liver box" if settings.roi else ""
    return {
        "format": FORMAT_VERSION,
        "windows": [list(w) for w in resolve_windows(settings.windows)],
        "window_names": names,
        "channels": [*names, "histogram-scaled", *context],
        "bins": [float(b) for b in bins],
        "n_bins": settings.n_bins,
        "bins_from": {"cases": sorted(train_ids), "voxels": int(n_voxels),
                      "what": f"all pixels of the exported slices of the training cases{where}, "
                              "HU rounded to integers"},
        "roi": {"margin_mm": settings.roi_margin_mm, "square_mm": True,
                "box_from": "the reference liver (export), the first stage's predicted liver "
                            "(inference)"} if settings.roi else None,
        "context": settings.context,
        "context_format": "JPEG, 8-bit grey, the context channels side by side in the order "
                          "of 'channels'" if settings.context else None,
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


def _manifest(records: dict, prep: dict) -> pd.DataFrame:
    """manifest.csv's table from completion records, sorted by case and slice."""
    return pd.DataFrame([row for cid in sorted(records) for row in records[cid]],
                        columns=manifest_columns(prep))


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
