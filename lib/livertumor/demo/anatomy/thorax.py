"""Above the diaphragm: lung bases with their vessels, diaphragm muscle, mediastinal fat and
the heart resting on the central tendon."""

from __future__ import annotations

import numpy as np

from .body import Body, Diaphragm
from .canvas import F32, Canvas
from .shapes import ellipsoid, rot
from .skeleton import Spine
from .tubes import paint_tube


class Heart:
    """Ellipsoid on the diaphragm: ``centre_xy_mm``, ``semi_axes_mm``, ``yaw`` (rad)."""

    def __init__(self, rng, body: Body):
        self.centre_xy_mm = (rng.uniform(15, 35), -0.4 * body.cavity_anterior_mm)
        self.semi_axes_mm = (rng.uniform(50, 62), rng.uniform(40, 50), rng.uniform(45, 55))
        self.yaw = rng.uniform(0.3, 0.7)


class LungVessels:
    """Short branching tubes in both lung bases: ``(p0, p1, radius mm, HU)`` each."""

    def __init__(self, rng, body: Body):
        self.tubes = []
        aw, ap = body.cavity_half_width_mm, body.cavity_posterior_mm
        for side in (-1, 1):
            for _ in range(22):
                p0 = np.array([side * aw * rng.uniform(0.15, 0.9), rng.uniform(-0.6, 0.9) * ap,
                               rng.uniform(-110, 60)])
                d = np.array([side * rng.uniform(0, 1), rng.uniform(-0.5, 0.8), -1.0])
                p1 = p0 + d / np.linalg.norm(d) * rng.uniform(15, 40)
                r = rng.uniform(0.8, 2.6)
                self.tubes.append((p0, p1, r, rng.uniform(-20, 60)))


def _paint_slab(cv: Canvas, bb, spine: Spine, heart: Heart, heart_centre, hu: dict) -> None:
    """The thorax within one box of slices (all of it is voxelwise)."""
    Z, Y, X = cv.grid.coords(bb)
    ds = cv.maps.box(bb).above_diaphragm(Z)
    cav = cv.cav[bb]
    cv.paint(bb, cav & (ds > -4.5) & (ds <= 0), hu["muscle"], occupy=False)
    lung = cav & (ds > 0)
    cv.paint(bb, lung, hu["lung"], occupy=False)
    zs = np.asarray(Z).ravel()
    ys = spine.centre_y_mm(zs)[:, None, None] - spine.radius_mm(zs)[:, None, None]
    med = ((X - F32(spine.x_mm + 6)) / F32(32)) ** 2 + ((Y - ys.astype(F32) + 14) / F32(24)) ** 2
    cv.paint(bb, lung & (med < 1), hu["vfat"], occupy=False)
    e = ellipsoid(X, Y, Z, heart_centre, heart.semi_axes_mm, rot(heart.yaw))
    cv.paint(bb, cav & (ds > 0) & (e < 7), hu["vfat"])
    cv.paint(bb, cav & (ds > 1.5) & (e < 0), hu["myocardium"])
    cv.paint(bb, cav & (ds > 10) & (e < -9), hu["blood"])


def paint_thorax(cv: Canvas, dia: Diaphragm, spine: Spine, heart: Heart,
                 lung_vessels: LungVessels, hu: dict, slab: int = 16) -> None:
    """Lungs above the diaphragm, diaphragm muscle, mediastinum, heart, lung vessels.

    Painted ``slab`` slices at a time, so that the temporary arrays stay small.
    """
    g = cv.grid
    zmin = float(cv.maps.dome_z_mm.min()) - 6
    bb = g.box((g.x[0], g.y[0], zmin), (g.x[-1], g.y[-1], g.z[-1] + 1))
    if bb is None:
        return
    # the heart rests on the central tendon
    xc, yc = heart.centre_xy_mm
    dz = float(dia.height(np.float32(xc), np.float32(yc)))
    centre = (xc, yc, dz + heart.semi_axes_mm[2] * 0.7)
    for k0 in range(bb[0].start, bb[0].stop, slab):
        _paint_slab(cv, (slice(k0, min(k0 + slab, bb[0].stop)), bb[1], bb[2]), spine, heart,
                    centre, hu)

    def lung_clip(bb2):
        return (cv.hu[bb2] < -600) & cv.cav[bb2]

    for p0, p1, r, v in lung_vessels.tubes:
        paint_tube(cv, [p0, p1], [r, r * 0.7], [(0, v, 0, False)], clip=lung_clip)
