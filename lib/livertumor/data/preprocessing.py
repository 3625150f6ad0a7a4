"""The one definition of how a CT slice becomes a model input image.

The export writes these images as JPEG files for training; inference computes the same images
from a volume, with the same ``preprocessing.json`` (copied into every model folder), so the
two can never drift apart:

1. ``to_nchan(hu, windows, bins)``: each window and the histogram-equalised channel, float32
   in [0, 1], at the slice's own resolution (rows, columns);
2. resized to ``size`` x ``size`` per channel (Pillow, bilinear with antialiasing when
   shrinking), then ``to_uint8`` (fastai's truncating x 255);
3. (inference) a JPEG round trip at the export's quality, so the model sees the same
   compression artefacts it was trained on.

Label maps are resized with nearest neighbour.

Two options of the record change what a slice's image is:

* ``roi`` (the cascade's tumor stage): the slice is first cropped to the liver's box
  (:mod:`.roi`), so the crop, not the whole slice, is resized to ``size``;
* ``context`` = k > 0 (2.5-D input): the first window's channel of the k slices below and the
  k slices above (indices clamped to the volume, so the first and last slices repeat
  themselves) is added after the image's channels, stored as one grey JPEG holding the 2k
  channels side by side (:func:`tile`; Han 2017, arXiv 1704.07239, fed adjacent slices as
  channels the same way).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .windowing import resolve_windows, to_nchan, to_uint8, windowed


def channels_to_uint8(channels, size: int) -> np.ndarray:
    """Step 2: float32 (rows, columns) channels in [0, 1] -> uint8 (size, size, C).

    Each channel is resized on its own with Pillow's bilinear filter (antialiased when
    shrinking) unless it has that size already or ``size`` is 0, then clipped to [0, 1] and
    truncated to uint8 (``to_uint8``). One channel at a time, so no stacked float image of the
    output size is made.
    """
    channels = list(channels)
    shape = channels[0].shape
    resize = bool(size) and shape != (size, size)
    out = np.empty(((size, size) if resize else shape) + (len(channels),), np.uint8)
    for i, ch in enumerate(channels):
        if resize:
            ch = np.asarray(Image.fromarray(np.ascontiguousarray(ch, dtype=np.float32))
                            .resize((size, size), Image.BILINEAR))
        out[..., i] = to_uint8(np.clip(ch, 0.0, 1.0))
    return out


def slice_channels(hu: np.ndarray, prep: dict) -> np.ndarray:
    """Steps 1-2: uint8 (size, size, C) image of one HU slice (rows, columns).

    ``prep`` needs ``windows`` (list of [width, level] or names), ``bins`` (histogram breaks)
    and ``size`` (output side in pixels; 0 keeps the slice's size).
    """
    channels = to_nchan(hu, resolve_windows(prep["windows"]),
                        bins=np.asarray(prep["bins"], np.float32))
    return channels_to_uint8(np.moveaxis(channels, -1, 0), int(prep.get("size") or 0))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a uint8 label slice to (size, size)."""
    if not size or mask.shape == (size, size):
        return np.ascontiguousarray(mask, dtype=np.uint8)
    return np.asarray(Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))
                      .resize((size, size), Image.NEAREST))


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    """Encode a uint8 (H, W, 3) or (H, W) image as JPEG (deterministic for the same input)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def slice_to_jpeg_array(hu: np.ndarray, prep: dict) -> np.ndarray:
    """Steps 1-3: what the exported JPEG of this slice decodes to, uint8 (size, size, 3)."""
    data = jpeg_bytes(slice_channels(hu, prep), prep.get("jpeg_quality", 90))
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def context_offsets(k: int) -> list[int]:
    """Slice offsets of the context channels, in channel order: ``[-k, ..., -1, 1, ..., k]``."""
    return [*range(-k, 0), *range(1, k + 1)]


def context_indices(index: int, n_slices: int, k: int) -> list[int]:
    """The neighbours of slice ``index`` for ``k`` context slices per side, clamped to
    ``[0, n_slices)``: at the first slice the slices below are the slice itself."""
    return [min(max(index + o, 0), n_slices - 1) for o in context_offsets(k)]


def tile(planes: list[np.ndarray]) -> np.ndarray:
    """uint8 (S, S) planes -> one uint8 (S, n * S) image, side by side (the stored form)."""
    return np.ascontiguousarray(np.concatenate(planes, axis=1))


def untile(image: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`tile`: uint8 (S, n * S) -> (S, S, n)."""
    rows, width = image.shape[:2]
    if width % n:
        raise ValueError(f"an image {width} pixels wide does not hold {n} equal tiles")
    return np.ascontiguousarray(image.reshape(rows, n, width // n).transpose(0, 2, 1))


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """What the stored JPEG of ``image`` (uint8, grey or RGB) decodes to (step 3)."""
    with Image.open(io.BytesIO(jpeg_bytes(image, quality))) as im:
        return np.asarray(im)


def context_plane(hu: np.ndarray, prep: dict) -> np.ndarray:
    """uint8 (size, size): channel 0 of ``slice_channels(hu, prep)`` (the first window), by
    itself."""
    (width, level), = resolve_windows(prep["windows"][:1])
    return channels_to_uint8([windowed(hu, width, level)], int(prep.get("size") or 0))[..., 0]


def context_planes(hu_neighbours: list[np.ndarray], prep: dict) -> np.ndarray:
    """uint8 (size, size, 2k): the first window's channel of each neighbour slice, made as
    :func:`slice_channels` makes it, after the stored JPEG's round trip.

    ``hu_neighbours``: the HU slices (already cropped when ``prep["roi"]``), in the order of
    :func:`context_offsets`.
    """
    planes = [context_plane(hu, prep) for hu in hu_neighbours]
    stored = jpeg_round_trip(tile(planes), prep.get("jpeg_quality", 90))
    return untile(stored, len(planes))
