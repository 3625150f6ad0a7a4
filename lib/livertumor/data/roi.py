"""The liver's region of interest: the box the tumor stage of the cascade looks at.

A :class:`Box` is a block of a canonical ``('P', 'L', 'S')`` volume (:mod:`.volumes`): rows,
columns and slices as half-open index ranges. :func:`liver_box` puts one box around the liver
of a whole volume (labels >= 1; every slice's liver inside the same rows and columns), with a
margin in millimetres, square in millimetres in the axial plane, so that every crop of one
volume has the same scale and a 1 cm tumor spans the same number of pixels in each of them.
Crops (:func:`crop`) are plain array slices; putting a crop's result back on the slice
(:func:`paste`) is their exact inverse on the box's pixels.

Training crops come from the reference mask's box; at inference the box comes from the liver
the first stage predicted (Christ et al. 2016, "Automatic liver and lesion segmentation in CT
using cascaded fully convolutional neural networks", arXiv 1610.02177: the liver first, then
lesions inside its region, at a higher resolution).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ROI_MARGIN_MM = 10.0
"""Default margin around the liver (mm), on every side and along the slices."""


@dataclass(frozen=True)
class Box:
    """Half-open index ranges of a canonical volume: ``volume[box.index]`` is the block.

    Attributes
    ----------
    row0, row1, col0, col1, slice0, slice1 : int
        ``0 <= row0 < row1 <= rows`` (and so on): rows (posterior axis), columns (left axis)
        and slices (superior axis) of the canonical array.
    """

    row0: int
    row1: int
    col0: int
    col1: int
    slice0: int
    slice1: int

    def __post_init__(self):
        for name in ("row0", "row1", "col0", "col1", "slice0", "slice1"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for lo, hi in ((self.row0, self.row1), (self.col0, self.col1),
                       (self.slice0, self.slice1)):
            if not 0 <= lo < hi:
                raise ValueError(f"empty or negative range [{lo}, {hi}) in {self}")

    @property
    def index(self) -> tuple[slice, slice, slice]:
        """``(rows, columns, slices)`` slices for indexing a (rows, columns, slices) array."""
        return (slice(self.row0, self.row1), slice(self.col0, self.col1),
                slice(self.slice0, self.slice1))

    @property
    def plane(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices for indexing one axial slice."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.row1 - self.row0, self.col1 - self.col0, self.slice1 - self.slice0)

    def contains_slice(self, k: int) -> bool:
        return self.slice0 <= k < self.slice1

    def as_dict(self) -> dict[str, int]:
        """JSON- and CSV-ready: ``{"row0": ..., ..., "slice1": ...}``."""
        return {k: int(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> Box:
        return cls(**{k: int(values[k]) for k in ("row0", "row1", "col0", "col1", "slice0",
                                                  "slice1")})


def _extent(present: np.ndarray) -> tuple[int, int]:
    """First index and one past the last where ``present`` is True (1-D)."""
    where = np.flatnonzero(present)
    return int(where[0]), int(where[-1]) + 1


def _widen(lo: int, hi: int, size: int, length: int) -> tuple[int, int]:
    """Grow [lo, hi) symmetrically to ``size`` indices, kept inside [0, length) by shifting
    it (and cut to the whole axis when it does not fit)."""
    size = min(max(size, hi - lo), length)
    lo -= (size - (hi - lo)) // 2
    lo = min(max(lo, 0), length - size)
    return lo, lo + size


def liver_box(labels: np.ndarray, spacing, margin_mm: float = ROI_MARGIN_MM,
              square: bool = True) -> Box | None:
    """The box around the liver (labels >= 1) of a canonical label volume.

    Parameters
    ----------
    labels : integer (rows, columns, slices)
        0 background, 1 liver, 2 tumor (a predicted map or the reference).
    spacing : (row, column, slice) voxel size in mm
    margin_mm : float
        Added on both sides of the liver along every axis (rounded up to whole voxels).
    square : bool
        Grow the shorter in-plane side so that rows and columns span the same millimetres
        (crops resized to a square model input then keep the anatomy's proportions).

    Returns
    -------
    Box inside the volume, or None when there is no liver.

    Examples
    --------
    >>> m = np.zeros((40, 40, 10), np.uint8); m[10:20, 5:25, 3:6] = 1
    >>> liver_box(m, (1.0, 1.0, 2.0), margin_mm=2)
    Box(row0=3, row1=27, col0=3, col1=27, slice0=2, slice1=7)
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be (rows, columns, slices), got shape {labels.shape}")
    liver = labels >= 1
    if not liver.any():
        return None
    spacing = np.asarray(spacing, np.float64)
    pad = np.ceil(margin_mm / spacing).astype(int)
    ranges = []
    for axis, other in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1))):
        lo, hi = _extent(liver.any(axis=other))
        ranges.append((max(lo - pad[axis], 0), min(hi + pad[axis], labels.shape[axis])))
    if square:
        side_mm = max((hi - lo) * s for (lo, hi), s in zip(ranges[:2], spacing[:2],
                                                            strict=True))
        for axis in (0, 1):
            size = int(np.ceil(side_mm / spacing[axis] - 1e-6))
            ranges[axis] = _widen(*ranges[axis], size, labels.shape[axis])
    (r0, r1), (c0, c1), (s0, s1) = ranges
    return Box(r0, r1, c0, c1, s0, s1)


def crop(plane: np.ndarray, box: Box) -> np.ndarray:
    """The box's part of one axial slice (rows, columns, ...): a view, no copy."""
    return plane[box.plane]


def paste(crop_values: np.ndarray, box: Box, plane_shape: tuple[int, int],
          fill=0) -> np.ndarray:
    """Put a crop back on its slice: the inverse of :func:`crop`.

    Parameters
    ----------
    crop_values : (box rows, box columns, ...) array, e.g. labels or class probabilities
        already resized to the box's size.
    plane_shape : (rows, columns) of the full slice
    fill : value outside the box (a scalar, or one value per trailing channel, e.g.
        ``[1, 0, 0]`` for background probabilities)

    Returns
    -------
    array (rows, columns, ...) of ``crop_values``' dtype.
    """
    rows, cols = box.shape[:2]
    if crop_values.shape[:2] != (rows, cols):
        raise ValueError(f"crop of shape {crop_values.shape[:2]} does not fit box {box}")
    out = np.empty(tuple(plane_shape) + crop_values.shape[2:], crop_values.dtype)
    out[...] = fill
    out[box.plane] = crop_values
    return out
