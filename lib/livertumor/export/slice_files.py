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
from ..data.preprocessing import channels_to_uint8, jpeg_bytes, resize_mask, slice_channels
from ..data.volumes import NiftiVolume
from ..data.windowing import resolve_windows, to_nchan
from ..errors import LiverTumorError
from .state import STATE_DIR
from .stored_values import _hu_of_codes, _lut_dtype, _read_labels, _stored_canonical


def slice_stem(case_id: int, slice_index: int) -> str:
    """File name stem of an exported slice: ``0003_0042`` for case 3, slice 42."""
    return f"{case_id:04d}_{slice_index:04d}"


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
