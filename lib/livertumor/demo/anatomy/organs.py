"""Solid abdominal organs besides the liver: kidneys, spleen, gallbladder, pancreas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import Body, Diaphragm, maps_for
from .canvas import F32, Canvas
from .noise import displace, qnoise, wave_dirs, wave_noise
from .shapes import ellipsoid, eval_smooth, local, rot, smax
from .skeleton import Spine
from .tubes import paint_tube
from .vessels import Vessels


@dataclass(frozen=True)
class Kidney:
    """One kidney: ``side`` -1 right, +1 left; centre height ``z_mm``; distance from the spine
    (``lateral_mm`` beyond the vertebral body, ``posterior_mm`` behind its centre); semi-axes
    (towards the hilum, across, along the long axis); ``yaw`` and ``pitch`` (rad); cortex
    thickness."""

    side: int
    z_mm: float
    lateral_mm: float
    posterior_mm: float
    semi_axes_mm: tuple[float, float, float]
    yaw: float
    pitch: float
    cortex_mm: float


def draw_kidneys(rng) -> list[Kidney]:
    """The right kidney (lower by 10-25 mm) and the left kidney."""
    zk = rng.uniform(-138, -118)
    out = []
    for side in (-1, 1):
        zc = zk - (rng.uniform(10, 25) if side < 0 else 0)
        out.append(Kidney(side=side, z_mm=zc, lateral_mm=rng.uniform(36, 46),
                          posterior_mm=rng.uniform(4, 16),
                          semi_axes_mm=(rng.uniform(22, 27), rng.uniform(20, 25),
                                        rng.uniform(46, 57)),
                          yaw=rng.uniform(0.35, 0.7), pitch=rng.uniform(0.05, 0.25),
                          cortex_mm=rng.uniform(5, 7)))
    return out


def paint_kidney(cv: Canvas, k: Kidney, spine: Spine, ves: Vessels, hu: dict) -> None:
    """Perirenal fat, cortex, medullary pyramids, sinus fat, pelvis (urine) and renal vein."""
    g, side = cv.grid, k.side
    c = np.array([spine.x_mm + side * (spine.radius_mm(k.z_mm) + k.lateral_mm),
                  float(spine.centre_y_mm(k.z_mm)) + k.posterior_mm, k.z_mm])
    # local frame: u points to the hilum (medial, anterior), w along the long axis
    R = rot(yaw=(0.0 if side < 0 else np.pi) + side * k.yaw, pitch=k.pitch)
    a = k.semi_axes_mm
    m = max(a) + 55
    bb = g.box(c - m, c + m)
    if bb is None:
        return
    Z, Y, X = g.coords(bb)
    sdf = ellipsoid(X, Y, Z, c, a, R)
    u, v, w = local(X, Y, Z, c, R)
    inside = sdf < 0
    sinus = (u > a[0] * 0.05) & (((u - a[0] * 0.45) / (a[0] * 0.75)) ** 2
                                 + (v / (a[1] * 0.55)) ** 2 + (w / (a[2] * 0.55)) ** 2 < 1)
    hilum = (u > a[0] * 0.55) & (np.abs(v) < a[1] * 0.4) & (np.abs(w) < a[2] * 0.3)
    inside &= ~hilum
    ang = np.arctan2(w / np.float32(a[2]), v / np.float32(a[1]))
    medulla = (sdf < -k.cortex_mm) & (np.abs(np.sin(ang * 4)) > 0.35)
    # perirenal fat, reaching back to the posterior wall (the liver stays in front)
    peri = ellipsoid(X, Y, Z, c + (0, 22, 0), (a[0] + 10, a[1] + 30, a[2] + 8), R) < 0
    cv.paint(bb, peri & cv.cav[bb] & ~cv.occ[bb], hu["vfat"] + 8)
    cv.paint(bb, inside, hu["kid_cortex"])
    cv.paint(bb, inside & medulla, hu["kid_medulla"])
    cv.paint(bb, (inside | hilum) & sinus, hu["vfat"] + 20)
    pel = ((u - a[0] * 0.55) / 9) ** 2 + (v / 7) ** 2 + (w / 14) ** 2 < 1
    cv.paint(bb, (inside | hilum) & pel, hu["urine"])
    # renal vein to the IVC; the left one passes in front of the aorta
    hil = c + R @ np.array([a[0] * 0.9, 0, 0])
    ix, iy = ves.ivc_xy(c[2])
    if side > 0:
        ax_, ay_ = ves.aorta_xy(c[2])
        path = [hil, (ax_, ay_ - ves.aorta_radius_mm - 5, c[2] + 4), (ix, iy, c[2] + 6)]
    else:
        path = [hil, (ix, iy, c[2] + 3)]
    paint_tube(cv, path, [4.5] * len(path), [(0, hu["renal_vein"], 0, True)],
               clip=lambda bb2: cv.cav[bb2])


class Spleen:
    """Ellipsoid along the posterolateral wall, deformed by a smooth displacement, its hilar
    side hollowed; ``centre_mm``, ``semi_axes_mm`` (thickness, width, height), ``modes``;
    ``band_waves`` shape the arciform enhancement of the arterial phase."""

    def __init__(self, rng, body: Body):
        self.centre_mm = (0.66 * body.cavity_half_width_mm, 0.55 * body.cavity_posterior_mm,
                          rng.uniform(-75, -50))
        self.semi_axes_mm = (rng.uniform(20, 28), rng.uniform(42, 60), rng.uniform(40, 55))
        self.modes = wave_noise(rng, 2, (80, 160), (3, 7))
        self.band_waves = wave_dirs(rng, 3, (18, 30))

    def paint(self, cv: Canvas, body: Body, dia: Diaphragm, hu: dict) -> None:
        c = np.array(self.centre_mm)
        ax = self.semi_axes_mm
        psi = np.arctan2(c[0], c[1])
        R = rot(yaw=np.pi / 2 - psi)
        m = max(ax) + 10
        bb = cv.grid.box(c - m, c + m)
        if bb is None:
            return
        hollow_c = c - R @ np.array([ax[0] * 1.6, 0, 0])
        hollow_ax = (ax[0] * 1.2, ax[1] * 0.6, ax[2] * 0.7)

        def field(Z, Y, X):
            fs = maps_for(body, dia, Y.ravel(), X.ravel())
            Xd, Yd, Zd = displace(X, Y, Z, self.modes)
            e = ellipsoid(Xd, Yd, Zd, c, ax, R)
            e = smax(e, -ellipsoid(X, Y, Z, hollow_c, hollow_ax, R), 6)
            return np.maximum(np.maximum(e, fs.cavity_sdf(Z) + 1.5), fs.above_diaphragm(Z) + 4.5)

        sdf = eval_smooth(field, cv.grid, bb)
        value = hu["spleen"]
        if hu["spleen_bands"] > 0:
            # alternating bands of red and white pulp enhancing at different rates
            Z, Y, X = cv.grid.coords(bb)
            bands = np.tanh(F32(2) * qnoise(X, Y, Z, self.band_waves))
            value = F32(value) + F32(hu["spleen_bands"]) * bands
        cv.paint(bb, (sdf < 0) & cv.cav[bb], value)


class Gallbladder:
    """Present in most cases; an ellipsoid under the liver with a wall and bile inside."""

    def __init__(self, rng, body: Body):
        aw, aa = body.cavity_half_width_mm, body.cavity_anterior_mm
        self.present = rng.uniform() < 0.75
        self.centre_mm = (-0.2 * aw + rng.uniform(-10, 10), -0.4 * aa, rng.uniform(-105, -85))
        self.semi_axes_mm = (rng.uniform(12, 18), rng.uniform(12, 18), rng.uniform(28, 40))
        self.tilt = rng.uniform(0.3, 0.8)

    def paint(self, cv: Canvas, hu: dict) -> None:
        if not self.present:
            return
        c = np.array(self.centre_mm)
        m = max(self.semi_axes_mm) + 3
        bb = cv.grid.box(c - m, c + m)
        if bb is None:
            return
        Z, Y, X = cv.grid.coords(bb)
        e = ellipsoid(X, Y, Z, c, self.semi_axes_mm, rot(roll=self.tilt))
        cv.paint(bb, (e < 0) & cv.cav[bb], hu["bowel_wall"] - 10)
        cv.paint(bb, (e < -2) & cv.cav[bb], hu["bile"])


class Pancreas:
    """Head by the duodenum, neck in front of the portal confluence, body and tail along the
    splenic vein; ``hu_offset`` shifts its attenuation from the case's pancreas value."""

    def __init__(self, rng):
        self.hu_offset = rng.uniform(-5, 5)

    def paint(self, cv: Canvas, ves: Vessels, hu: dict) -> None:
        pc = ves.portal_confluence
        head = np.array([pc[0] - 25, pc[1] + 2, -118.0])
        neck = pc + (2, -12, 4)
        body = ves.splenic_vein_mid + (0, -11, 2)
        tail = ves.splenic_hilum + (-12, -10, -2)
        paint_tube(cv, [head, neck, body, tail], [15, 10, 10, 8],
                   [(0, hu["pancreas"] + self.hu_offset, 0, True)],
                   clip=lambda bb2: cv.cav[bb2] & (cv.hu[bb2] < 60) & ~cv.occ[bb2])
