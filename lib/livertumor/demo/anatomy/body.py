"""The body outline, its wall (skin, subcutaneous fat, muscle), the diaphragm and the CT table.

The body's cross-section at height z is ``r(x, y) < scale(z)``, with ``r`` a super-ellipse
radius normalised to 1 on the outline at ``scale = 1``; depth under the skin is measured along
rays from the body centre.
"""

from __future__ import annotations

import numpy as np

from .canvas import F32, Canvas
from .shapes import smax


def _three_point(psi, post, lat, ant):
    """Smooth angular profile: ``post`` at psi=0 (posterior), ``lat`` at pi/2, ``ant`` at pi."""
    c = np.cos(psi)
    return lat + (ant - post) * 0.5 * (-c) + ((ant + post) * 0.5 - lat) * c * c


class Body:
    """Body outline (super-ellipse, flattened posteriorly), skin, fat and muscle wall.

    Attributes (mm unless stated)
    -----------------------------
    half_width_mm, anterior_half_depth_mm, posterior_half_depth_mm
        Outline: centre to skin laterally, anteriorly and posteriorly.
    anterior_exponent, posterior_exponent
        Super-ellipse exponents of the front and back halves (2 = ellipse).
    taper_linear, taper_quadratic
        Change of the outline's scale along z (see :meth:`scale`).
    outline_harmonics, fat_harmonics
        ``(order, amplitude, phase)`` ripples of the outline and the fat thickness.
    obesity
        0 (lean) to 1 (obese); thickens the subcutaneous fat.
    fat_mm, muscle_mm
        Subcutaneous fat and flat muscle thickness, (posterior, lateral, anterior).
    paraspinal_mm
        Thickness of the paraspinal muscles behind the spine.
    skin_mm
    """

    def __init__(self, rng, fov):
        self.half_width_mm = fov / 2 * rng.uniform(0.78, 0.87)
        self.anterior_half_depth_mm = self.half_width_mm * rng.uniform(0.66, 0.8)
        self.posterior_half_depth_mm = self.anterior_half_depth_mm * rng.uniform(0.86, 1.0)
        self.anterior_exponent = rng.uniform(2.0, 2.35)
        self.posterior_exponent = rng.uniform(2.7, 3.5)
        self.taper_linear = rng.uniform(-0.04, 0.04)
        self.taper_quadratic = rng.uniform(-0.03, 0.02)
        # love handles, belly, asymmetry
        self.outline_harmonics = [(m, rng.uniform(0, 0.025), rng.uniform(0, 2 * np.pi))
                                  for m in (2, 3, 4)]
        self.obesity = float(np.clip(rng.uniform() ** 1.3 * (0.5 + (fov - 340) / 120), 0, 1))
        ob, aw = self.obesity, self.half_width_mm
        aa, ap = self.anterior_half_depth_mm, self.posterior_half_depth_mm
        self.fat_mm = (min(5 + 24 * ob * rng.uniform(0.6, 1.2), 0.22 * ap),
                       min(7 + 30 * ob * rng.uniform(0.6, 1.2), 0.2 * aw),
                       min(8 + 38 * ob * rng.uniform(0.6, 1.2), 0.27 * aa))
        self.fat_harmonics = [(m, rng.uniform(0, 0.25), rng.uniform(0, 2 * np.pi))
                              for m in (1, 2, 3)]
        self.muscle_mm = (rng.uniform(12, 17), rng.uniform(10, 14), rng.uniform(9, 13))
        self.paraspinal_mm = rng.uniform(42, 55)
        self.skin_mm = rng.uniform(1.8, 2.8)

    @property
    def cavity_half_width_mm(self):
        """Body centre to the inner surface of the lateral muscle wall (for placing organs)."""
        return self.half_width_mm - self.fat_mm[1] - self.muscle_mm[1]

    @property
    def cavity_anterior_mm(self):
        """Body centre to the inner surface of the anterior wall."""
        return self.anterior_half_depth_mm - self.fat_mm[2] - self.muscle_mm[2]

    @property
    def cavity_posterior_mm(self):
        """Body centre to the inner surface of the posterior wall (paraspinal muscles aside)."""
        return self.posterior_half_depth_mm - self.fat_mm[0] - self.muscle_mm[0]

    def scale(self, z):
        """Scale of the outline at height z (mm); within 1 +- 0.05."""
        zn = (np.asarray(z, F32) + 80.0) / 200.0
        return 1.0 + self.taper_linear * zn + self.taper_quadratic * zn * zn

    def normalised_radius(self, ux, uy):
        """Super-ellipse radius of the point (ux, uy) (mm): 1 on the outline at scale 1."""
        p = np.where(uy < 0, F32(self.anterior_exponent), F32(self.posterior_exponent))
        B = np.where(uy < 0, F32(self.anterior_half_depth_mm), F32(self.posterior_half_depth_mm))
        r = ((np.abs(ux) / F32(self.half_width_mm)) ** p + (np.abs(uy) / B) ** p) ** (1 / p)
        th = np.arctan2(ux, uy)
        mod = 1.0
        for m, a, ph in self.outline_harmonics:
            mod = mod + F32(a) * np.cos(F32(m) * th + F32(ph))
        return r / mod

    def ray_point(self, psi, side, z, depth):
        """Point (x, y) at ``depth`` mm under the skin on the ray at angle psi (0 = posterior)."""
        ux, uy = side * np.sin(psi), np.cos(psi)
        tb = float(self.scale(z)) / float(self.normalised_radius(np.float32(ux), np.float32(uy)))
        t = tb - depth
        return ux * t, uy * t

    def wall_parts(self, theta):
        """In-plane wall profiles at signed angle theta (0 posterior, +-pi anterior), mm.

        Returns (subcutaneous fat, flat muscle, paraspinal muscle) thicknesses; the first two
        are scaled along z by :meth:`fat_factor` and :meth:`muscle_factor`.
        """
        psi = np.abs(theta)
        tf = _three_point(psi, *self.fat_mm)
        for m, a, ph in self.fat_harmonics:
            tf = tf * (1 + a * np.cos(m * theta + ph) * 0.5)
        tm = _three_point(psi, *self.muscle_mm)
        tp = self.paraspinal_mm * np.exp(-((psi / 0.58) ** 4))
        return tf, tm, tp

    @staticmethod
    def fat_factor(z):
        """Subcutaneous fat factor along z: thinner over the chest."""
        return 0.8 + 0.2 * np.clip(-(np.asarray(z, F32) + 20) / 60, 0, 1)

    @staticmethod
    def muscle_factor(z):
        """Flat muscle factor along z: thin intercostal wall over the chest, full abdomen wall."""
        return 0.5 + 0.5 * np.clip(-(np.asarray(z, F32) + 50) / 60, 0, 1)

    def wall(self, theta, z):
        """(subcutaneous fat thickness, total wall thickness) at angle theta and height z, mm."""
        tf, tm, tp = self.wall_parts(theta)
        tf = tf * self.fat_factor(z)
        return tf, tf + tm * self.muscle_factor(z) + tp


class Diaphragm:
    """Diaphragm surface z = D(x, y): two domes (right higher), deep posterior recesses.

    ``domes``: per dome ``(x, y, z of the top, height, lateral semi-axis, anterior semi-axis,
    posterior semi-axis)`` in mm; the right dome's top is at z = 0.
    """

    def __init__(self, rng, body: Body):
        aw = body.cavity_half_width_mm
        aa, ap = body.cavity_anterior_mm, body.cavity_posterior_mm
        h = rng.uniform(50, 70)
        self.domes = [
            (-0.45 * aw, -0.05 * aa, 0.0, h, 0.62 * aw, 1.1 * aa, 0.78 * ap),
            (0.45 * aw, 0.0, -rng.uniform(8, 25), h * rng.uniform(0.9, 1.1), 0.6 * aw,
             1.1 * aa, 0.75 * ap),
        ]

    def height(self, X, Y):
        """z (mm) of the diaphragm surface above the point (X, Y)."""
        out = None
        for xs, ys, zs, h, a, ba, bp in self.domes:
            b = np.where(Y < ys, F32(ba), F32(bp))
            d = F32(zs) - F32(h) * (((X - F32(xs)) / F32(a)) ** 2 + ((Y - F32(ys)) / b) ** 2)
            out = d if out is None else smax(out, d, 18.0)
        return out


class BodyMaps:
    """In-plane maps (float32, shape of ``X``/``Y`` broadcast) from which 3-D fields follow.

    ``dist_mm`` is the distance from the body centre, ``outline_mm`` the distance from the
    centre to the outline along the same ray at scale 1, so the depth under the skin at height
    z is ``scale(z) * outline_mm - dist_mm``. ``theta`` is the signed angle from posterior
    (+ towards the left), ``psi`` its absolute value; ``fat_mm``, ``muscle_mm``,
    ``paraspinal_mm`` the wall profiles at scale 1; ``dome_z_mm`` the diaphragm height and
    ``dome_slope`` the norm of its normal (1 where flat).
    """

    def __init__(self, body: Body, dia: Diaphragm, X, Y):
        X, Y = (np.asarray(a, F32) for a in np.broadcast_arrays(X, Y))
        self.body = body
        r = body.normalised_radius(X, Y)
        self.dist_mm = np.hypot(X, Y)
        self.outline_mm = np.where(r > 1e-4, self.dist_mm / np.maximum(r, F32(1e-4)),
                                   F32(body.half_width_mm))
        self.theta = np.arctan2(X, Y)
        self.psi = np.abs(self.theta)
        self.fat_mm, self.muscle_mm, self.paraspinal_mm = (
            np.asarray(a, F32) for a in body.wall_parts(self.theta))
        self.dome_z_mm = dia.height(X, Y).astype(F32)
        dy = float(Y[1, 0] - Y[0, 0]) if Y.shape[0] > 1 else 1.0
        dx = float(X[0, 1] - X[0, 0]) if X.shape[1] > 1 else 1.0
        gy, gx = np.gradient(self.dome_z_mm, dy, dx)
        self.dome_slope = np.sqrt(1.0 + gx * gx + gy * gy).astype(F32)

    def box(self, bb):
        """The maps within an index box, ready to broadcast against the box's ``Z``."""
        return BodyMapsBox(self, bb[1], bb[2])


class BodyMapsBox:
    """:class:`BodyMaps` within a box, with the 3-D fields that follow from them."""

    def __init__(self, maps: BodyMaps, sy, sx):
        self.body = maps.body
        for name in ("dist_mm", "outline_mm", "psi", "theta", "fat_mm", "muscle_mm",
                     "paraspinal_mm", "dome_z_mm", "dome_slope"):
            setattr(self, name, getattr(maps, name)[sy, sx][None])

    def depth(self, Z):
        """Depth under the skin (mm; negative outside the body)."""
        return self.body.scale(Z) * self.outline_mm - self.dist_mm

    def wall(self, Z):
        """Thickness of the whole wall (fat, muscle, paraspinal muscle), mm."""
        b = self.body
        return self.fat_mm * b.fat_factor(Z) + self.muscle_mm * b.muscle_factor(Z) \
            + self.paraspinal_mm

    def cavity_sdf(self, Z):
        """Signed distance to the body cavity (mm; negative inside the muscle wall)."""
        return self.wall(Z) - self.depth(Z)

    def above_diaphragm(self, Z):
        """Approximate normal distance above the diaphragm surface (mm; negative below)."""
        return (Z - self.dome_z_mm) / self.dome_slope


def maps_for(body, dia, Y, X):
    """:class:`BodyMapsBox` for broadcastable 1-D coordinate arrays, over their full extent."""
    f = BodyMaps(body, dia, X.reshape(1, -1), Y.reshape(-1, 1))
    return f.box((None, slice(None), slice(None)))


class Table:
    """The CT table under the patient: present or not, gap to the back, curvature radius (mm)."""

    def __init__(self, rng):
        self.present = rng.uniform() < 0.75
        self.gap_mm = rng.uniform(1, 12)
        self.curvature_mm = rng.uniform(500, 900)

    def outside_body(self, body: Body, grid, X, Y, air_hu):
        """In-plane HU outside the body (rows, columns): air, and the table's shells and core."""
        outside = np.full(np.broadcast_shapes(X.shape, Y.shape), F32(air_hu), F32)
        if not self.present:
            return outside
        ymax = body.posterior_half_depth_mm * 1.06 + self.gap_mm
        yt = ymax - X ** 2 / F32(2 * self.curvature_mm)
        fov_half = 0.5 * (grid.x[-1] - grid.x[0])
        within = np.abs(X) < 0.44 * 2 * fov_half
        dy = Y - yt
        for lo, hi, v in ((0, 4.5, 180), (4.5, 26, -760), (26, 30, 160)):
            outside = np.where(within & (dy >= lo) & (dy < hi), F32(v), outside)
        return outside


def paint_body_wall(cv: Canvas, body: Body, table: Table, hu: dict) -> None:
    """Air, CT table, skin, subcutaneous fat, muscle wall with fat planes; marks the cavity.

    The cavity is painted visceral fat (``hu['vfat']``); organs are painted over it.
    """
    f, g = cv.maps, cv.grid
    X = g.x.astype(F32)[None, :]
    Y = g.y.astype(F32)[:, None]
    outside = table.outside_body(body, g, X, Y, hu["air"])
    lat = (f.psi > 0.9) & (f.psi < 2.5)
    alba = (np.abs(X) < 3.5) & (f.psi > 2.75)
    post = f.paraspinal_mm > 6
    fat_plane = F32(hu["fat"] + 25)
    chunk = 16
    for k0 in range(0, g.z.size, chunk):
        sl = slice(k0, min(k0 + chunk, g.z.size))
        Z = g.z[sl].astype(F32)[:, None, None]
        depth = body.scale(Z) * f.outline_mm - f.dist_mm
        tf = f.fat_mm * body.fat_factor(Z)
        tm = f.muscle_mm * body.muscle_factor(Z)
        wall = tf + tm + f.paraspinal_mm
        out = np.where(depth < wall, F32(hu["muscle"]), F32(hu["vfat"]))
        rel = (depth - tf) / np.maximum(tm, F32(1))
        thin = F32(0.8) / np.maximum(tm, F32(1))
        sept = lat & (Z < -30) & ((np.abs(rel - 0.35) < thin) | (np.abs(rel - 0.68) < thin))
        sept |= post & (np.abs(depth - tf - tm) < 0.8)
        sept |= alba & (rel > 0) & (rel < 1)
        out = np.where(sept, fat_plane, out)
        out = np.where(depth < tf, F32(hu["fat"]), out)
        out = np.where(depth < body.skin_mm, F32(hu["skin"]), out)
        out = np.where(depth < 0, outside, out)
        cv.hu[sl] = out
        cv.cav[sl] = depth >= wall
