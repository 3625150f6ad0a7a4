"""A volume's axial slices as the uint8 model-input image, through a lookup table over its
stored values: what the export writes and what inference feeds the model, made the same way.

:class:`SliceImager` gives, byte for byte, ``preprocessing.slice_channels(vol.hu_slice(k),
prep)`` (and ``context_plane``), without computing windows or histogram breaks per voxel.
"""

from __future__ import annotations

import numpy as np

from .preprocessing import channels_to_uint8, context_plane, slice_channels
from .volumes import NiftiVolume
from .windowing import resolve_windows, to_nchan, to_uint8


def lut_dtype(dtype: np.dtype) -> bool:
    """Stored values that a lookup table over all codes can map (8- and 16-bit integers)."""
    return np.issubdtype(dtype, np.integer) and np.dtype(dtype).itemsize <= 2


def stored_canonical(vol: NiftiVolume) -> np.ndarray:
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


def hu_of_codes(vol: NiftiVolume, codes: np.ndarray) -> np.ndarray:
    """float32 HU of stored values, computed exactly as ``NiftiVolume.hu_slice`` does."""
    return vol._scale(codes.astype(vol.stored_dtype), np.dtype(np.float32))


class SliceImager:
    """The uint8 model-input image of axial slice ``k`` of a volume.

    Equal, byte for byte, to ``preprocessing.slice_channels(vol.hu_slice(k), prep)`` (tested),
    but faster: every channel of ``to_nchan`` (each window, and ``hist_scaled`` with fixed
    breaks) is a function of the voxel's value alone, and 8/16-bit stored values have at most
    65536 codes, so ``to_nchan`` is evaluated once on all codes (scaled to HU exactly as
    ``hu_slice`` scales them) and each slice is a table lookup. When the image keeps the
    slice's size (no resize), the table holds the final uint8 pixels (codes, C) and a slice is
    one lookup; otherwise it holds float32 channels, resized one by one as
    ``channels_to_uint8`` does. Other stored types (float, int32) go through
    ``slice_channels`` itself.
    """

    def __init__(self, vol: NiftiVolume, prep: dict, stored: np.ndarray | None = None):
        self._vol, self._prep = vol, prep
        self._stored = vol.raw() if stored is None else stored
        self._size = int(prep.get("size") or 0)
        self._lut = self._lut8 = self._codes = self._channels = None
        if lut_dtype(vol.stored_dtype):
            info = np.iinfo(vol.stored_dtype)
            hu = hu_of_codes(vol, np.arange(int(info.min), int(info.max) + 1))
            channels = to_nchan(hu, resolve_windows(prep["windows"]),
                                bins=np.asarray(prep["bins"], np.float32))
            self._lut = np.ascontiguousarray(channels.T)  # (C, codes)
            self._lut8 = to_uint8(np.clip(channels, 0.0, 1.0))  # (codes, C)
            self._lut8_first = np.ascontiguousarray(self._lut8[:, 0])
            self._offset = -int(info.min)

    def __call__(self, k: int, plane=None, first_only: bool = False) -> np.ndarray:
        """uint8 (size, size, C) image of slice ``k`` (``plane``: its (rows, columns) slices,
        e.g. a liver box's), or with ``first_only`` the (size, size) plane of the first window
        alone (a context channel, as ``preprocessing.context_plane`` makes it)."""
        stored = self._stored[:, :, k]
        if plane is not None:
            stored = stored[plane]
        if self._lut is None:  # hu_slice(k) of the stored values we hold
            hu = hu_of_codes(self._vol, stored)
            if first_only:
                return context_plane(hu, self._prep)
            return slice_channels(hu, self._prep)
        if not self._size or stored.shape == (self._size, self._size):
            return self._lookup8(stored, first_only)
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

    def _lookup8(self, stored: np.ndarray, first_only: bool) -> np.ndarray:
        """uint8 (rows, columns, C), or (rows, columns) with ``first_only``, of a slice's
        stored values through the uint8 table (no resize)."""
        codes = stored.astype(np.intp)
        if self._offset:
            codes += self._offset
        if first_only:
            return np.take(self._lut8_first, codes)
        return np.take(self._lut8, codes, axis=0)
