"""One case's slice files, written in the worker processes (module-level, so that it pickles):
JPEG images through a lookup table over the stored values, PNG masks, all under temporary
names, flushed to disk, renamed, then the case's completion record (``docs/export.md``,
pass 4)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import temporary_name, write_bytes
from ..data.preprocessing import (
    context_indices,
    jpeg_bytes,
    resize_mask,
    tile,
)
from ..data.roi import Box
from ..data.slice_images import SliceImager, stored_canonical
from ..data.volumes import NiftiVolume
from ..errors import LiverTumorError
from .result import BOX_COLUMNS
from .state import STATE_DIR
from .stored_values import _read_labels
from .survey import exported_slices


def slice_stem(case_id: int, slice_index: int) -> str:
    """File name stem of an exported slice: ``0003_0042`` for case 3, slice 42."""
    return f"{case_id:04d}_{slice_index:04d}"


def _png_bytes(mask: np.ndarray) -> bytes:
    """PNG of a uint8 label slice at zlib level 1: half the time of the default level 6, and
    label maps (long runs of 0, 1, 2) still compress to a few kB at 512 x 512."""
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def _flush_to_disk() -> None:
    """Make written data durable before files get their final names (``os.sync``, POSIX)."""
    if hasattr(os, "sync"):
        os.sync()


def _slice_files(case_id: int, k: int, split: str, imager: SliceImager, mask: np.ndarray,
                 prep: dict, box: Box | None) -> tuple[dict, list[tuple[str, bytes]]]:
    """The manifest row of slice ``k`` and its files' (relative path, bytes)."""
    stem = slice_stem(case_id, k)
    plane = box.plane if box is not None else None
    image_rel, mask_rel = f"{split}/images/{stem}.jpg", f"{split}/masks/{stem}.png"
    labels = np.ascontiguousarray(mask[:, :, k][plane] if plane else mask[:, :, k],
                                  dtype=np.uint8)
    label = resize_mask(labels, prep["size"])
    files = [(image_rel, jpeg_bytes(imager(k, plane), prep["jpeg_quality"])),
             (mask_rel, _png_bytes(label))]
    row = {"case_id": case_id, "split": split, "slice_index": k, "image": image_rel,
           "mask": mask_rel, "liver_pixels": int(np.count_nonzero(label)),
           "tumor_pixels": int(np.count_nonzero(label == 2))}
    if prep.get("context"):
        neighbours = context_indices(k, mask.shape[2], prep["context"])
        planes = [imager(j, plane, first_only=True) for j in neighbours]
        row["context"] = f"{split}/context/{stem}.jpg"
        files.append((row["context"], jpeg_bytes(tile(planes), prep["jpeg_quality"])))
    if box is not None:
        row.update({key: value for key, value in box.as_dict().items()
                    if key in BOX_COLUMNS})
    return row, files


def _export_case(job: tuple) -> dict:
    """Write the images and masks of one case, then its completion record.

    ``job``: case id, volume and mask paths, split, the preprocessing record, the export
    folder, and the case's liver box as a dict (a ROI export) or None. All files are written
    under ``.<name>.part``, flushed, renamed; the record comes last. Returns ``{"case_id",
    "ok", "rows"}`` or ``{"case_id", "ok": False, "reason"}``.
    """
    case_id, volume_path, mask_path, split, prep, out_dir, box = job
    out_dir = Path(out_dir)
    box = Box.from_dict(box) if box else None
    staged: list[tuple[Path, Path]] = []
    rows = []
    try:
        vol = NiftiVolume(volume_path)
        imager = SliceImager(vol, prep, stored_canonical(vol))
        mask, _ = _read_labels(mask_path, vol.geometry)
        n_slices = vol.geometry.canonical_shape[2]
        ks = [] if prep.get("roi") and box is None else exported_slices(n_slices, prep["every"],
                                                                       box)
        for k in ks:
            row, files = _slice_files(case_id, k, split, imager, mask, prep, box)
            for rel, data in files:
                final = out_dir / rel
                staged.append((temporary_name(final), final))
                staged[-1][0].write_bytes(data)
            rows.append(row)
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
