"""The voxel grid of a case in anatomical millimetres, and the canvas the organs are painted on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class Grid:
    """Voxel centres of a case in anatomical mm (1-D, increasing, float64)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, columns)``."""
        return (self.z.size, self.y.size, self.x.size)

    def box(self, lo, hi):
        """Index box ``(slice_z, slice_y, slice_x)`` of the voxels within ``lo..hi`` (x, y, z mm).

        Returns None when the box misses the grid.
        """
        out = []
        for v, a, b in ((self.z, lo[2], hi[2]), (self.y, lo[1], hi[1]), (self.x, lo[0], hi[0])):
            d = float(v[1] - v[0]) if v.size > 1 else 1.0
            i0 = max(int(np.floor((a - v[0]) / d)), 0)
            i1 = min(int(np.ceil((b - v[0]) / d)) + 1, v.size)
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)

    def coords(self, bb):
        """Broadcastable float32 coordinates ``Z (n,1,1), Y (1,m,1), X (1,1,k)`` of a box."""
        return (self.z[bb[0]].astype(F32)[:, None, None],
                self.y[bb[1]].astype(F32)[None, :, None],
                self.x[bb[2]].astype(F32)[None, None, :])


class Canvas:
    """The volumes being painted, all of shape ``grid.shape`` = (slices, rows, columns).

    Attributes
    ----------
    grid : Grid
    hu : ndarray, float32
        Hounsfield units before blur and noise; air (-1000) to start with.
    lab : ndarray, uint8
        LiTS labels (0 background, 1 liver, 2 tumor).
    occ : ndarray, bool
        Voxels taken by a solid structure, which the liver may not take.
    cav : ndarray, bool
        The body cavity inside the muscle wall (set by the body wall painter).
    maps : object
        The in-plane body maps of the grid (:class:`.body.BodyMaps`), set by the painter.
    """

    def __init__(self, grid: Grid, maps=None):
        self.grid = grid
        self.maps = maps
        self.hu = np.full(grid.shape, -1000.0, dtype=F32)
        self.lab = np.zeros(grid.shape, dtype=np.uint8)
        self.occ = np.zeros(grid.shape, dtype=bool)
        self.cav = np.zeros(grid.shape, dtype=bool)

    def paint(self, bb, region, value, label=0, occupy=True) -> None:
        """Set HU ``value`` (scalar or broadcastable array) where ``region`` within box ``bb``.

        ``label`` None keeps the labels; ``occupy`` marks the voxels as a solid structure that
        the liver may not take.
        """
        hv = self.hu[bb]
        region = np.broadcast_to(region, hv.shape)
        np.copyto(hv, np.asarray(value, dtype=F32), where=region)
        if label is not None:
            np.copyto(self.lab[bb], np.uint8(label), where=region)
        if occupy:
            self.occ[bb] |= region
