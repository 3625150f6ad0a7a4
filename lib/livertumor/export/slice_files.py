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
    channels_to_uint8,
    context_indices,
    context_plane,
    jpeg_bytes,
    resize_mask,
    slice_channels,
    tile,
)
from ..data.roi import Box
from ..data.volumes import NiftiVolume
from ..data.windowing import resolve_windows, to_nchan
from ..errors import LiverTumorError
from .result import BOX_COLUMNS
from .state import STATE_DIR
from .stored_values import _hu_of_codes, _lut_dtype, _read_labels, _stored_canonical
from .survey import exported_slices


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

    def __call__(self, k: int, plane=None, first_only: bool = False) -> np.ndarray:
        """uint8 (size, size, C) image of slice ``k`` (``plane``: its (rows, columns) slices,
        e.g. a liver box's), or with ``first_only`` the (size, size) plane of the first window
        alone (a context channel, as ``preprocessing.context_plane`` makes it)."""
        stored = self._stored[:, :, k]
        if plane is not None:
            stored = stored[plane]
        if self._lut is None:  # hu_slice(k) of the stored values we hold
            hu = _hu_of_codes(self._vol, stored)
            if first_only:
                return context_plane(hu, self._prep)
            return slice_channels(hu, self._prep)
        luts = self._lut[:1] if first_only else self._lut
        if self._codes is None or self._codes.shape != stored.shape:
            # buffers reused slice after slice (fresh ones cost page faults)
            self._codes = np.empty(stored.shape, np.intp)
            self._channels = np.empty((len(self._lut),) + stored.shape, np.float32)
        np.copyto(self._codes, stored)
        if self._offset:
            self._codes += self._offset
        for lut, out in zip(luts, self._channels, strict=False):
            np.take(lut, self._codes, out=out, mode="clip")  # codes are in range: no clipping
        image = channels_to_uint8(list(self._channels[: len(luts)]), self._size)
        return image[..., 0] if first_only else image


def _png_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _flush_to_disk() -> None:
    """Make written data durable before files get their final names (``os.sync``, POSIX)."""
    if hasattr(os, "sync"):
        os.sync()


def _slice_files(case_id: int, k: int, split: str, imager: _SliceImager, mask: np.ndarray,
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
        imager = _SliceImager(vol, prep, _stored_canonical(vol))
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
