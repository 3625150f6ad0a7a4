"""Shapes and tissues of the synthetic abdominal CT cases of :mod:`livertumor.demo.generator`.

Everything here is built in physical millimetres from smooth implicit shapes (approximate
signed distances, negative inside), sampled on the case's voxel grid, so shapes are continuous
across slices whatever the slice thickness.

Anatomical coordinates (mm), used throughout this module:

* ``x`` grows towards the patient's **left** (canonical columns), 0 on the body's midline;
* ``y`` grows towards **posterior** (canonical rows), 0 at the body's centre;
* ``z`` grows towards the **head** (canonical slices), 0 at the top of the right diaphragm dome.

Arrays built here are in ``(z, y, x)`` order (slices, rows, columns) so that each axial slice
is contiguous; :mod:`livertumor.demo.generator` transposes the result to the canonical
``(rows, columns, slices)`` order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

F32 = np.float32


# --------------------------------------------------------------------------------------------
# grid, canvas and primitives
# --------------------------------------------------------------------------------------------


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
    """The volumes being painted: HU (float32), LiTS labels (uint8), occupancy, cavity (bool).

    All of shape ``grid.shape`` = (slices, rows, columns).
    """

    def __init__(self, grid: Grid):
        self.grid = grid
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


def smin(a, b, k):
    """Smooth minimum (union of signed distances) with blending width ``k`` mm."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * (k * 0.25)


def smax(a, b, k):
    """Smooth maximum (intersection of signed distances)."""
    return -smin(-a, -b, k)


def rot(yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
    """Rotation matrix (3, 3): about z by ``yaw``, then y by ``pitch``, then x by ``roll`` (rad)."""
    cz, sz, cy, sy, cx, sx = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


def local(X, Y, Z, c, R=None):
    """Coordinates relative to centre ``c`` (x, y, z), in the frame of rotation ``R``."""
    dx, dy, dz = X - F32(c[0]), Y - F32(c[1]), Z - F32(c[2])
    if R is None:
        return dx, dy, dz
    R = R.astype(F32)
    return (R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz,
            R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz,
            R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz)


def ellipsoid(X, Y, Z, c, axes, R=None):
    """Approximate signed distance (mm) to an ellipsoid (centre, semi-axes, rotation)."""
    u, v, w = local(X, Y, Z, c, R)
    a, b, cc = (F32(t) for t in axes)
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / cc) ** 2)
    k1 = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2 + (w / (cc * cc)) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, F32(1e-6))


def segment(X, Y, Z, p0, p1):
    """Distance (mm) to the segment p0-p1 and the position ``t`` in [0, 1] along it."""
    d = np.asarray(p1, float) - np.asarray(p0, float)
    L2 = max(float(d @ d), 1e-9)
    dx, dy, dz = X - F32(p0[0]), Y - F32(p0[1]), Z - F32(p0[2])
    t = np.clip((dx * F32(d[0]) + dy * F32(d[1]) + dz * F32(d[2])) / F32(L2), 0.0, 1.0)
    ex, ey, ez = dx - t * F32(d[0]), dy - t * F32(d[1]), dz - t * F32(d[2])
    return np.sqrt(ex * ex + ey * ey + ez * ez), t


def upsample_linear(coarse, c_axes, f_axes):
    """Separable linear interpolation of a (z, y, x) array from coarse to fine axis values."""
    out = coarse
    for ax in range(3):
        c, f = c_axes[ax], f_axes[ax]
        if c.size == 1:
            out = np.repeat(out, f.size, axis=ax)
            continue
        pos = np.clip((f - c[0]) / (c[1] - c[0]), 0, c.size - 1 - 1e-6)
        i0 = np.floor(pos).astype(np.intp)
        w = (pos - i0).astype(F32)
        shape = [1, 1, 1]
        shape[ax] = -1
        w = w.reshape(shape)
        out = np.take(out, i0, axis=ax) * (1 - w) + np.take(out, i0 + 1, axis=ax) * w
    return out


def eval_smooth(fn, grid: Grid, bb, step=2.0):
    """Evaluate a smooth field ``fn(Z, Y, X)`` on box ``bb``, on a grid no finer than ``step``.

    Axes finer than ``step`` mm are evaluated at ``step`` and linearly interpolated, which is
    exact enough for smooth signed distances and several times faster at 512 x 512.
    """
    f_axes = (grid.z[bb[0]], grid.y[bb[1]], grid.x[bb[2]])
    c_axes = []
    for f in f_axes:
        d = float(f[1] - f[0]) if f.size > 1 else step
        if d >= step * 0.75 or f.size < 4:
            c_axes.append(f)
        else:
            n = int(np.ceil((f[-1] - f[0]) / step)) + 1
            c_axes.append(np.linspace(f[0], f[0] + (n - 1) * step, n))
    Zc = c_axes[0].astype(F32)[:, None, None]
    Yc = c_axes[1].astype(F32)[None, :, None]
    Xc = c_axes[2].astype(F32)[None, None, :]
    val = np.broadcast_to(fn(Zc, Yc, Xc), (c_axes[0].size, c_axes[1].size, c_axes[2].size))
    if all(c is f for c, f in zip(c_axes, f_axes, strict=True)):
        return np.ascontiguousarray(val, dtype=F32)
    return upsample_linear(np.asarray(val, F32), c_axes, f_axes).astype(F32, copy=False)


def wave_noise(rng, n, wavelength, amp):
    """Random smooth 3-D displacement: list of (k vector (3,), phase, amplitude vector (3,))."""
    modes = []
    for _ in range(n):
        k = rng.normal(size=3)
        k *= 2 * np.pi / (np.linalg.norm(k) * rng.uniform(*wavelength))
        a = rng.normal(size=3)
        a *= rng.uniform(*amp) / np.linalg.norm(a)
        modes.append((k, rng.uniform(0, 2 * np.pi), a))
    return modes


def displace(X, Y, Z, modes):
    """Apply a :func:`wave_noise` displacement to coordinates."""
    Xd, Yd, Zd = X, Y, Z
    for k, ph, a in modes:
        s = np.sin(F32(k[0]) * X + F32(k[1]) * Y + F32(k[2]) * Z + F32(ph))
        Xd = Xd + F32(a[0]) * s
        Yd = Yd + F32(a[1]) * s
        Zd = Zd + F32(a[2]) * s
    return Xd, Yd, Zd


# --------------------------------------------------------------------------------------------
# body outline, wall layers and diaphragm
# --------------------------------------------------------------------------------------------


def _three_point(psi, post, lat, ant):
    """Smooth angular profile: ``post`` at psi=0 (posterior), ``lat`` at pi/2, ``ant`` at pi."""
    c = np.cos(psi)
    return lat + (ant - post) * 0.5 * (-c) + ((ant + post) * 0.5 - lat) * c * c


class Body:
    """Body outline (super-ellipse, flattened posteriorly), skin, fat and muscle wall.

    The body's cross-section at height z is ``r(x, y) < s(z)`` with ``r`` a super-ellipse
    radius normalised to 1 on the outline at ``s = 1``; depth under the skin is measured along
    rays from the body centre.
    """

    def __init__(self, rng, fov):
        self.A = fov / 2 * rng.uniform(0.78, 0.87)           # half width (mm)
        self.Bant = self.A * rng.uniform(0.66, 0.8)            # anterior half depth
        self.Bpost = self.Bant * rng.uniform(0.86, 1.0)        # posterior half depth
        self.pant = rng.uniform(2.0, 2.35)
        self.ppost = rng.uniform(2.7, 3.5)
        self.g1 = rng.uniform(-0.04, 0.04)
        self.g2 = rng.uniform(-0.03, 0.02)
        # outline harmonics (m, amplitude, phase): love handles, belly, asymmetry
        self.harm = [(m, rng.uniform(0, 0.025), rng.uniform(0, 2 * np.pi)) for m in (2, 3, 4)]
        obese = float(np.clip(rng.uniform() ** 1.3 * (0.5 + (fov - 340) / 120), 0, 1))
        self.obese = obese
        self.fat = (min(5 + 24 * obese * rng.uniform(0.6, 1.2), 0.22 * self.Bpost),
                    min(7 + 30 * obese * rng.uniform(0.6, 1.2), 0.2 * self.A),
                    min(8 + 38 * obese * rng.uniform(0.6, 1.2), 0.27 * self.Bant))
        self.fat_harm = [(m, rng.uniform(0, 0.25), rng.uniform(0, 2 * np.pi)) for m in (1, 2, 3)]
        self.mus = (rng.uniform(12, 17), rng.uniform(10, 14), rng.uniform(9, 13),
                    rng.uniform(42, 55))
        self.skin = rng.uniform(1.8, 2.8)

    # cavity half sizes (mm), for placing organs
    @property
    def Ac(self):
        return self.A - self.fat[1] - self.mus[1]

    @property
    def Bca(self):
        return self.Bant - self.fat[2] - self.mus[2]

    @property
    def Bcp(self):
        return self.Bpost - self.fat[0] - self.mus[0]

    def s(self, z):
        """Scale of the outline at height z (mm); within 1 +- 0.05."""
        zn = (np.asarray(z, F32) + 80.0) / 200.0
        return 1.0 + self.g1 * zn + self.g2 * zn * zn

    def radius(self, ux, uy):
        """Normalised radius of the point (ux, uy) (mm)."""
        p = np.where(uy < 0, F32(self.pant), F32(self.ppost))
        B = np.where(uy < 0, F32(self.Bant), F32(self.Bpost))
        r = ((np.abs(ux) / F32(self.A)) ** p + (np.abs(uy) / B) ** p) ** (1 / p)
        th = np.arctan2(ux, uy)
        mod = 1.0
        for m, a, ph in self.harm:
            mod = mod + F32(a) * np.cos(F32(m) * th + F32(ph))
        return r / mod

    def ray_point(self, psi, side, z, depth):
        """Point (x, y) at ``depth`` mm under the skin on the ray at angle psi (0 = posterior)."""
        ux, uy = side * np.sin(psi), np.cos(psi)
        tb = float(self.s(z)) / float(self.radius(np.float32(ux), np.float32(uy)))
        t = tb - depth
        return ux * t, uy * t

    def wall_parts(self, theta):
        """In-plane wall profiles at signed angle theta (0 posterior, +-pi anterior), mm.

        Returns (subcutaneous fat, flat muscle, paraspinal muscle) thicknesses; the first two
        are scaled along z by :meth:`fat_z` and :meth:`mus_z`.
        """
        psi = np.abs(theta)
        tf = _three_point(psi, *self.fat)
        for m, a, ph in self.fat_harm:
            tf = tf * (1 + a * np.cos(m * theta + ph) * 0.5)
        mp, ml, ma, P = self.mus
        tm = _three_point(psi, mp, ml, ma)
        tp = P * np.exp(-((psi / 0.58) ** 4))
        return tf, tm, tp

    @staticmethod
    def fat_z(z):
        """Subcutaneous fat factor along z: thinner over the chest."""
        return 0.8 + 0.2 * np.clip(-(np.asarray(z, F32) + 20) / 60, 0, 1)

    @staticmethod
    def mus_z(z):
        """Flat muscle factor along z: thin intercostal wall over the chest, full abdomen wall."""
        return 0.5 + 0.5 * np.clip(-(np.asarray(z, F32) + 50) / 60, 0, 1)

    def wall(self, theta, z):
        """(subcutaneous fat thickness, total wall thickness) at angle theta and height z, mm."""
        tf, tm, tp = self.wall_parts(theta)
        tf = tf * self.fat_z(z)
        return tf, tf + tm * self.mus_z(z) + tp


class Diaphragm:
    """Diaphragm surface z = D(x, y): two domes (right higher), deep posterior recesses."""

    def __init__(self, rng, body: Body):
        Ac, Bca, Bcp = body.Ac, body.Bca, body.Bcp
        h = rng.uniform(50, 70)
        self.domes = [
            # x, y, z, height, a (lateral), b anterior, b posterior
            (-0.45 * Ac, -0.05 * Bca, 0.0, h, 0.62 * Ac, 1.1 * Bca, 0.78 * Bcp),
            (0.45 * Ac, 0.0, -rng.uniform(8, 25), h * rng.uniform(0.9, 1.1), 0.6 * Ac,
             1.1 * Bca, 0.75 * Bcp),
        ]

    def height(self, X, Y):
        out = None
        for xs, ys, zs, h, a, ba, bp in self.domes:
            b = np.where(Y < ys, F32(ba), F32(bp))
            d = F32(zs) - F32(h) * (((X - F32(xs)) / F32(a)) ** 2 + ((Y - F32(ys)) / b) ** 2)
            out = d if out is None else smax(out, d, 18.0)
        return out


class Fields2D:
    """In-plane maps (float32, shape of ``X``/``Y`` broadcast) from which 3-D fields follow.

    ``depth(z) = s(z) * q - rho`` (mm under the skin), ``cavity_sdf(z) = wall - depth``,
    ``dia_sdf(z) = (z - D) / gn`` (mm above the diaphragm surface, approx. normal distance).
    """

    def __init__(self, body: Body, dia: Diaphragm, X, Y):
        X, Y = (np.asarray(a, F32) for a in np.broadcast_arrays(X, Y))
        self.body = body
        r = body.radius(X, Y)
        self.rho = np.hypot(X, Y)
        self.q = np.where(r > 1e-4, self.rho / np.maximum(r, F32(1e-4)), F32(body.A))
        self.theta = np.arctan2(X, Y)
        self.psi = np.abs(self.theta)
        self.tf, self.tm, self.tp = (np.asarray(a, F32) for a in body.wall_parts(self.theta))
        self.D = dia.height(X, Y).astype(F32)
        dy = float(Y[1, 0] - Y[0, 0]) if Y.shape[0] > 1 else 1.0
        dx = float(X[0, 1] - X[0, 0]) if X.shape[1] > 1 else 1.0
        gy, gx = np.gradient(self.D, dy, dx)
        self.gn = np.sqrt(1.0 + gx * gx + gy * gy).astype(F32)

    def sub(self, bb):
        return _SubFields(self, bb[1], bb[2])


class _SubFields:
    def __init__(self, f: Fields2D, sy, sx):
        self.body = f.body
        for name in ("rho", "q", "psi", "theta", "tf", "tm", "tp", "D", "gn"):
            setattr(self, name, getattr(f, name)[sy, sx][None])

    def depth(self, Z):
        return self.body.s(Z) * self.q - self.rho

    def tfat(self, Z):
        return self.tf * self.body.fat_z(Z)

    def wall(self, Z):
        return self.tf * self.body.fat_z(Z) + self.tm * self.body.mus_z(Z) + self.tp

    def cavity_sdf(self, Z):
        return self.wall(Z) - self.depth(Z)

    def dia_sdf(self, Z):
        return (Z - self.D) / self.gn


def fields_for(body, dia, Y, X):
    """:class:`Fields2D` for broadcastable 1-D coordinate arrays, as a full-extent sub-view."""
    f = Fields2D(body, dia, X.reshape(1, -1), Y.reshape(-1, 1))
    return f.sub((None, slice(None), slice(None)))


# --------------------------------------------------------------------------------------------
# tubes (vessels, bowel, ribs) and trees
# --------------------------------------------------------------------------------------------


def split_chain(points, radii, max_len=14.0):
    """Split a poly-line (n, 3) with radii (n,) into pieces no longer than ``max_len`` mm."""
    pts, rad = [np.asarray(points[0], float)], [float(radii[0])]
    for i in range(1, len(points)):
        p0, p1 = np.asarray(points[i - 1], float), np.asarray(points[i], float)
        n = max(int(np.ceil(np.linalg.norm(p1 - p0) / max_len)), 1)
        for j in range(1, n + 1):
            t = j / n
            pts.append(p0 + (p1 - p0) * t)
            rad.append(radii[i - 1] + (radii[i] - radii[i - 1]) * t)
    return np.array(pts), np.array(rad)


def tube_fields(grid: Grid, points, radii, pad=0.0):
    """Yield ``(bb, sdf)`` for each piece of a tapered tube (sdf in mm, negative inside)."""
    pts, rad = split_chain(points, radii)
    for i in range(1, len(pts)):
        p0, p1, r0, r1 = pts[i - 1], pts[i], rad[i - 1], rad[i]
        m = max(r0, r1) + pad + 1.0
        bb = grid.box(np.minimum(p0, p1) - m, np.maximum(p0, p1) + m)
        if bb is None:
            continue
        Z, Y, X = grid.coords(bb)
        d, t = segment(X, Y, Z, p0, p1)
        yield bb, d - (F32(r0) + (F32(r1) - F32(r0)) * t)


def paint_tube(cv: Canvas, points, radii, layers, clip=None):
    """Paint a tube chain in layers: ``layers`` = [(inset mm, value, label, occupy), ...].

    Each layer paints ``sdf < -inset`` of every piece (outer layers first, so that inner
    layers are continuous across joints). ``value`` may be a callable ``(Z, Y, X) -> array``.
    ``clip`` is an optional callable ``bb -> bool array`` limiting where paint goes.
    """
    pieces = list(tube_fields(cv.grid, points, radii))
    clips = [None if clip is None else clip(bb) for bb, _ in pieces]
    for inset, value, label, occupy in layers:
        for (bb, sdf), cm in zip(pieces, clips, strict=True):
            region = sdf < -inset
            if cm is not None:
                region = region & cm
            if not region.any():
                continue
            val = value(*cv.grid.coords(bb)) if callable(value) else value
            cv.paint(bb, region, val, label=label, occupy=occupy)


def branch_tree(rng, root, direction, length, radius, depth, spread=(0.35, 0.75),
                shrink=(0.62, 0.8), min_radius=0.9, bias=None):
    """Random branching tree of segments ``(p0, p1, r0, r1, generation)`` (mm)."""
    segs = []
    stack = [(np.asarray(root, float), np.asarray(direction, float), length, radius, 0)]
    while stack:
        p, d, L, r, g = stack.pop()
        d = d / np.linalg.norm(d)
        # gently curved: two sub-segments
        bend = rng.normal(size=3) * 0.15
        mid = p + d * L * 0.5
        d2 = d + bend
        d2 /= np.linalg.norm(d2)
        end = mid + d2 * L * 0.5
        segs.append((p, mid, r, r * 0.95, g))
        segs.append((mid, end, r * 0.95, r * 0.9, g))
        if g >= depth or r * 0.9 * shrink[0] < min_radius:
            continue
        perp = np.cross(d2, rng.normal(size=3))
        perp /= np.linalg.norm(perp)
        n_child = 2 if rng.uniform() < 0.8 else 3
        for j in range(n_child):
            ang = rng.uniform(*spread) * (1 if j % 2 == 0 else -1)
            nd = d2 * np.cos(ang) + perp * np.sin(ang)
            if bias is not None:
                nd = nd + np.asarray(bias) * 0.2
            f = rng.uniform(*shrink)
            stack.append((end, nd, L * rng.uniform(0.65, 0.85), r * 0.9 * f, g + 1))
            perp = np.cross(d2, perp)
    return segs


# --------------------------------------------------------------------------------------------
# the case's anatomy
# --------------------------------------------------------------------------------------------


def _texture(X, Y, Z, scale, phase):
    """Cheap separable mottle in [-1, 1] (broadcast product of sines)."""
    return (np.sin(F32(1.0 / scale) * X + F32(phase[0]))
            * np.sin(F32(1.3 / scale) * Y + F32(phase[1]))
            * np.sin(F32(0.9 / scale) * Z + F32(phase[2])))


def wave_dirs(rng, n, wavelength):
    """``n`` random plane waves ``(k vector (3,), phase)`` with wavelengths in the range (mm)."""
    out = []
    for _ in range(n):
        k = rng.normal(size=3)
        k *= 2 * np.pi / (np.linalg.norm(k) * rng.uniform(*wavelength))
        out.append((k.astype(F32), F32(rng.uniform(0, 2 * np.pi))))
    return out


def qnoise(X, Y, Z, dirs):
    """Quasi-random smooth field, standard deviation about 1, from :func:`wave_dirs`."""
    acc = None
    for k, ph in dirs:
        t = np.sin(k[0] * X + k[1] * Y + k[2] * Z + ph)
        acc = t if acc is None else acc + t
    return acc * F32(np.sqrt(2.0 / len(dirs)))


class Anatomy:
    """All random anatomy and tissue parameters of one case, and the painter.

    Every draw is made here, from generators seeded by ``(seed, case_id, k)``, never from the
    voxel grid, so the anatomy does not depend on the matrix size.

    Parameters
    ----------
    seed, case_id : int
    fov : float
        In-plane field of view (mm); the body is sized to fit it.
    n_tumors : int
        Number of liver tumors to place.
    """

    def __init__(self, seed: int, case_id: int, fov: float, n_tumors: int = 0):
        def g(k):
            return np.random.default_rng([seed, case_id, 100 + k])

        self._g = g
        rb = g(0)
        self.body = b = Body(rb, fov)
        self.dia = Diaphragm(rb, b)
        Ac, Bca, Bcp = b.Ac, b.Bca, b.Bcp

        # tissue HU (portal venous phase)
        rh = g(1)
        L = rh.uniform(100, 130)
        self.hu = dict(
            air=-1000.0, lung=rh.uniform(-880, -830), fat=rh.uniform(-112, -92),
            vfat=rh.uniform(-105, -88), skin=rh.uniform(25, 50), muscle=rh.uniform(45, 58),
            liver=L, spleen=L + rh.uniform(-2, 14), kid_cortex=rh.uniform(160, 200),
            aorta=rh.uniform(150, 195), ivc=rh.uniform(120, 145), portal=rh.uniform(155, 190),
            hepatic=rh.uniform(145, 175), bone=rh.uniform(750, 1000), marrow=rh.uniform(170, 250),
            canal=rh.uniform(15, 30), disc=rh.uniform(80, 100), bowel_wall=rh.uniform(75, 105),
            fluid=rh.uniform(5, 25), pancreas=rh.uniform(90, 115), bile=rh.uniform(0, 15),
            blood=rh.uniform(150, 185), myocardium=rh.uniform(95, 120),
            oral=rh.uniform(200, 320), cartilage=rh.uniform(110, 170),
        )
        self.hu["kid_medulla"] = self.hu["kid_cortex"] - rh.uniform(25, 55)
        self.oral_contrast = rh.uniform() < 0.35

        # spine and retroperitoneum
        rs = g(2)
        self.sp_x = rs.uniform(-4, 4)
        self.sp_R0 = rs.uniform(16.5, 20.5)
        self.sp_depth = b.fat[0] + rs.uniform(70, 80)
        self.sp_lord = rs.uniform(0, 12)
        self.sp_P = rs.uniform(26, 31)
        self.sp_zT = rs.uniform(-108, -85)
        self.sp_spin = rs.uniform(28, 38)
        self.sp_canal = rs.uniform(8, 10)
        self.trab_dirs = wave_dirs(rs, 9, (2.0, 5.0))
        self.ao_r = rs.uniform(9.5, 12.5)
        self.ao_dx = rs.uniform(8, 16)
        self.ao_calc = rs.uniform() < 0.45
        self.ao_calc_pts = [(rs.uniform(0, 2 * np.pi), rs.uniform(-250, 0), rs.uniform(1.2, 2.5))
                            for _ in range(int(rs.integers(4, 14)))]
        self.ivc_r = (rs.uniform(11, 15), rs.uniform(8, 12))

        # organs
        ro = g(3)
        self.kid = []
        zk = rs.uniform(-138, -118)
        for side in (-1, 1):
            zc = zk - (rs.uniform(10, 25) if side < 0 else 0)
            self.kid.append(dict(
                side=side, z=zc, dx=rs.uniform(36, 46), dy=rs.uniform(4, 16),
                axes=(rs.uniform(22, 27), rs.uniform(20, 25), rs.uniform(46, 57)),
                yaw=rs.uniform(0.35, 0.7), pitch=rs.uniform(0.05, 0.25), cortex=rs.uniform(5, 7)))
        self.spleen = dict(c=(0.66 * Ac, 0.55 * Bcp, ro.uniform(-75, -50)),
                           axes=(ro.uniform(20, 28), ro.uniform(42, 60), ro.uniform(40, 55)),
                           modes=wave_noise(ro, 2, (80, 160), (3, 7)))
        self.gallbladder = ro.uniform() < 0.75
        self.gb = dict(c=(-0.2 * Ac + ro.uniform(-10, 10), -0.4 * Bca, ro.uniform(-105, -85)),
                       axes=(ro.uniform(12, 18), ro.uniform(12, 18), ro.uniform(28, 40)),
                       pitch=ro.uniform(0.3, 0.8))
        self.stomach_level = -Bca * ro.uniform(0.05, 0.4)
        self.stomach_r = ro.uniform(0.65, 1.0)
        self.stomach_pts = np.array([
            (0.42 * Ac, 0.35 * Bcp, -38 + ro.uniform(-8, 4)),
            (0.48 * Ac, 0.05 * Bcp, -62),
            (0.4 * Ac, -0.2 * Bca, -88),
            (0.16 * Ac, -0.4 * Bca, -105),
            (-0.06 * Ac, -0.32 * Bca, -102)]) + ro.normal(0, 5, (5, 3))
        self.stomach_rad = np.array([36, 33, 28, 20, 11]) * self.stomach_r
        self.pancreas_hu_jit = ro.uniform(-5, 5)
        self.heart = dict(c=(ro.uniform(15, 35), -0.4 * Bca, 0.0),
                          axes=(ro.uniform(50, 62), ro.uniform(40, 50), ro.uniform(45, 55)),
                          yaw=ro.uniform(0.3, 0.7))

        # bowel
        self._bowel_rng = g(4)
        # lung vessels, mesenteric vessels
        self._vessel_rng = g(5)
        # liver
        rl = g(6)
        self.liver = LiverModel(rl, self)
        self.liver_target_ml = rl.uniform(1250, 1950)
        self.fissure = rl.uniform() < 0.7
        self.liver_tex = (rl.uniform(6, 12), rl.uniform(0, 6.3, 3))
        # intrahepatic vessel trees (built now: the draws must not depend on the grid)
        rv = g(7)
        self.portal_trees, self.hepatic_trees = self._liver_trees(rv)
        self.tumors: list[dict] = []
        self.n_tumors = int(n_tumors)
        self._tumor_rng = g(8)

        # table
        rt = g(9)
        self.table = rt.uniform() < 0.75
        self.table_gap = rt.uniform(1, 12)
        self.table_Rc = rt.uniform(500, 900)

    # --- spine geometry as functions of z -----------------------------------------------
    def spine_R(self, z):
        return self.sp_R0 + 0.03 * np.clip(-np.asarray(z, float), -40, 260)

    def spine_y(self, z):
        z = np.asarray(z, float)
        return (self.body.Bpost * self.body.s(z) - self.sp_depth
                + self.sp_lord * ((z + 80) / 150) ** 2)

    def aorta_xy(self, z):
        R = self.spine_R(z)
        return self.sp_x + self.ao_dx, self.spine_y(z) - R - self.ao_r - 2

    def ivc_xy(self, z):
        z = np.asarray(z, float)
        R = self.spine_R(z)
        up = np.clip((z + 90) / 60, 0, 1)
        return (self.sp_x - 0.6 * R - 14 - 6 * up,
                self.spine_y(z) - R - self.ivc_r[1] - 4 - 14 * up)

    # --- intrahepatic trees ---------------------------------------------------------------
    def _liver_trees(self, rv):
        Ac = self.body.Ac
        ph = np.array([-0.22 * Ac, float(self.ivc_xy(-80)[1]) - 12, -78.0])
        self.porta = ph
        portal = [
            branch_tree(rv, ph, (-1, 0.15, 0.35), rv.uniform(26, 34), 6.0, 4),
            branch_tree(rv, ph, (0.9, -0.8, 0.35), rv.uniform(30, 38), 5.0, 4),
            branch_tree(rv, ph, (-0.6, 0.5, -0.6), rv.uniform(22, 30), 4.5, 3),
        ]
        top = np.array([*self.ivc_xy(-18), -18.0])
        hepatic = [
            branch_tree(rv, top + (-6, 0, 0), (-1, 0.15, -0.45), rv.uniform(36, 46), 5.5, 3,
                        spread=(0.25, 0.6)),
            branch_tree(rv, top + (0, -6, 0), (-0.35, -1, -0.55), rv.uniform(34, 44), 5.0, 3,
                        spread=(0.25, 0.6)),
            branch_tree(rv, top + (6, -4, 0), (0.7, -0.9, -0.25), rv.uniform(30, 40), 4.5, 3,
                        spread=(0.25, 0.6)),
        ]
        return portal, hepatic

    # --- painting ---------------------------------------------------------------------------
    def paint(self, grid: Grid, liver_tumors=True) -> Canvas:
        """Paint the whole case on ``grid``; returns the canvas (HU before blur and noise)."""
        cv = Canvas(grid)
        self.f2 = Fields2D(self.body, self.dia, grid.x[None, :], grid.y[:, None])
        self._layers(cv)
        self._thorax(cv)
        self._bowel(cv)
        self._stomach_duodenum(cv)
        self._vessels(cv)
        self._solid_organs(cv)
        self._spine(cv)
        self._ribs(cv)
        self._liver(cv, liver_tumors)
        return cv

    def fields(self, bb):
        return self.f2.sub(bb)

    def _below_dia(self, cv, margin=4.0):
        def clip(bb):
            Z = cv.grid.coords(bb)[0]
            return cv.cav[bb] & (self.fields(bb).dia_sdf(Z) < -margin)
        return clip

    def _layers(self, cv: Canvas):
        """Air, CT table, skin, subcutaneous fat, muscle wall; marks the body cavity."""
        b, f, h, g = self.body, self.f2, self.hu, cv.grid
        X = g.x.astype(F32)[None, :]
        Y = g.y.astype(F32)[:, None]
        outside = np.full(f.q.shape, F32(h["air"]), F32)
        if self.table:
            ymax = b.Bpost * 1.06 + self.table_gap
            yt = ymax - X ** 2 / F32(2 * self.table_Rc)
            fov_half = 0.5 * (g.x[-1] - g.x[0])
            within = np.abs(X) < 0.44 * 2 * fov_half
            dy = Y - yt
            for lo, hi, v in ((0, 4.5, 180), (4.5, 26, -760), (26, 30, 160)):
                outside = np.where(within & (dy >= lo) & (dy < hi), F32(v), outside)
        lat = (f.psi > 0.9) & (f.psi < 2.5)
        alba = (np.abs(X) < 3.5) & (f.psi > 2.75)
        post = f.tp > 6
        fat_plane = F32(h["fat"] + 25)
        chunk = 16
        for k0 in range(0, g.z.size, chunk):
            sl = slice(k0, min(k0 + chunk, g.z.size))
            Z = g.z[sl].astype(F32)[:, None, None]
            depth = b.s(Z) * f.q - f.rho
            tf = f.tf * b.fat_z(Z)
            tm = f.tm * b.mus_z(Z)
            wall = tf + tm + f.tp
            hu = np.where(depth < wall, F32(h["muscle"]), F32(h["vfat"]))
            rel = (depth - tf) / np.maximum(tm, F32(1))
            thin = F32(0.8) / np.maximum(tm, F32(1))
            sept = lat & (Z < -30) & ((np.abs(rel - 0.35) < thin) | (np.abs(rel - 0.68) < thin))
            sept |= post & (np.abs(depth - tf - tm) < 0.8)
            sept |= alba & (rel > 0) & (rel < 1)
            hu = np.where(sept, fat_plane, hu)
            hu = np.where(depth < tf, F32(h["fat"]), hu)
            hu = np.where(depth < b.skin, F32(h["skin"]), hu)
            hu = np.where(depth < 0, outside, hu)
            cv.hu[sl] = hu
            cv.cav[sl] = depth >= wall

    def _thorax(self, cv: Canvas):
        """Lungs above the diaphragm, diaphragm muscle, mediastinum, heart, lung vessels."""
        g, h = cv.grid, self.hu
        zmin = float(self.f2.D.min()) - 6
        bb = g.box((g.x[0], g.y[0], zmin), (g.x[-1], g.y[-1], g.z[-1] + 1))
        if bb is None:
            return
        Z, Y, X = g.coords(bb)
        fs = self.fields(bb)
        ds = fs.dia_sdf(Z)
        cav = cv.cav[bb]
        cv.paint(bb, cav & (ds > -4.5) & (ds <= 0), h["muscle"], occupy=False)
        lung = cav & (ds > 0)
        cv.paint(bb, lung, h["lung"], occupy=False)
        zs = np.asarray(Z).ravel()
        ys = self.spine_y(zs)[:, None, None] - self.spine_R(zs)[:, None, None]
        med = ((X - F32(self.sp_x + 6)) / F32(32)) ** 2 + ((Y - ys.astype(F32) + 14) / F32(24)) ** 2
        cv.paint(bb, lung & (med < 1), h["vfat"], occupy=False)
        # heart resting on the central tendon
        hc = self.heart
        xc, yc = hc["c"][0], hc["c"][1]
        dz = float(self.dia.height(np.float32(xc), np.float32(yc)))
        c = (xc, yc, dz + hc["axes"][2] * 0.7)
        e = ellipsoid(X, Y, Z, c, hc["axes"], rot(hc["yaw"]))
        cv.paint(bb, cav & (ds > 0) & (e < 7), h["vfat"])
        cv.paint(bb, cav & (ds > 1.5) & (e < 0), h["myocardium"])
        cv.paint(bb, cav & (ds > 10) & (e < -9), h["blood"])
        # lung vessels: short branching tubes, painted only on lung
        rv = self._vessel_rng
        b = self.body
        lung_clip = lambda bb2: (cv.hu[bb2] < -600) & cv.cav[bb2]  # noqa: E731
        for side in (-1, 1):
            for _ in range(22):
                p0 = np.array([side * b.Ac * rv.uniform(0.15, 0.9), rv.uniform(-0.6, 0.9) * b.Bcp,
                               rv.uniform(-110, 60)])
                d = np.array([side * rv.uniform(0, 1), rv.uniform(-0.5, 0.8), -1.0])
                p1 = p0 + d / np.linalg.norm(d) * rv.uniform(15, 40)
                r = rv.uniform(0.8, 2.6)
                paint_tube(cv, [p0, p1], [r, r * 0.7], [(0, rv.uniform(-20, 60), 0, False)],
                           clip=lung_clip)

    def _bowel(self, cv: Canvas):
        rb, b, h = self._bowel_rng, self.body, self.hu
        Ac, Bca, Bcp = b.Ac, b.Bca, b.Bcp
        clip = self._below_dia(cv, 5.0)
        bottom = -300.0
        zhf = rb.uniform(-140, -110)
        zsf = rb.uniform(-85, -60)
        pts = np.array([
            (-0.62 * Ac, 0.1 * Bcp, bottom), (-0.64 * Ac, 0.05 * Bcp, zhf - 40),
            (-0.6 * Ac, -0.1 * Bca, zhf), (-0.45 * Ac, -0.45 * Bca, zhf + 5),
            (-0.15 * Ac, -0.62 * Bca, zhf - 25), (0.25 * Ac, -0.62 * Bca, zhf - 15),
            (0.58 * Ac, -0.25 * Bca, zsf), (0.7 * Ac, 0.1 * Bcp, zsf - 25),
            (0.68 * Ac, 0.15 * Bcp, zsf - 80), (0.66 * Ac, 0.15 * Bcp, bottom)])
        pts[1:-1] += rb.normal(0, 7, (len(pts) - 2, 3))
        rad = np.array([26, 24, 24, 24, 22, 22, 20, 17, 16, 16]) * rb.uniform(0.8, 1.15)
        # haustra: resample every ~7 mm with a radius ripple
        fine, frad = split_chain(pts, rad, 7.0)
        frad = frad * (1 + 0.12 * np.sin(np.arange(len(frad)) * 2 * np.pi / 4.0))
        level = -Bca * rb.uniform(0.0, 0.45)
        base = rb.uniform(-80, 20)
        dirs = wave_dirs(rb, 7, (5, 11))
        thr = rb.uniform(0.9, 1.5)

        def stool(Z, Y, X):
            m = qnoise(X, Y, Z, dirs)
            v = np.where(m > thr, F32(-900), F32(base) + F32(25) * m)
            return np.where(Y < F32(level), F32(-1000), v)

        paint_tube(cv, fine, frad, [(0, h["bowel_wall"], 0, False), (2.5, stool, 0, False)],
                   clip=clip)
        # small bowel: random walks in the lower central abdomen
        lo = np.array([-0.5 * Ac, -0.85 * Bca, -250.0])
        hi = np.array([0.6 * Ac, 0.3 * Bcp, zhf + 5])
        for _ in range(int(rb.integers(16, 26))):
            p = lo + (hi - lo) * rb.uniform(0.1, 0.9, 3)
            d = rb.normal(size=3)
            chain = [p.copy()]
            for _ in range(int(rb.integers(5, 10))):
                d = d / np.linalg.norm(d) + rb.normal(0, 0.7, 3)
                d /= np.linalg.norm(d)
                p = np.clip(p + d * rb.uniform(16, 26), lo, hi)
                chain.append(p.copy())
            r = rb.uniform(8, 14)
            kind = rb.uniform()
            if self.oral_contrast and kind < 0.5:
                content = h["oral"] * rb.uniform(0.7, 1.0)
            elif kind < 0.75:
                content = h["fluid"] + rb.uniform(-5, 15)
            else:
                content = rb.uniform(30, 55)   # collapsed loop, wall and mucus
            lev = chain[0][1] - r * rb.uniform(0.3, 2.0)

            def lumen(Z, Y, X, content=content, lev=lev):
                return np.where(Y < F32(lev), F32(-1000), F32(content))

            paint_tube(cv, chain, [r] * len(chain),
                       [(0, h["bowel_wall"], 0, False), (2.0, lumen, 0, False)], clip=clip)
        # mesenteric vessels
        for _ in range(24):
            p0 = lo + (hi - lo) * rb.uniform(0.1, 0.9, 3)
            p1 = p0 + rb.normal(0, 1, 3) * 20
            r = rb.uniform(0.8, 2.2)
            paint_tube(cv, [p0, p1], [r, r], [(0, h["portal"] * 0.9, 0, False)],
                       clip=lambda bb2: clip(bb2) & (cv.hu[bb2] < -50))

    def _stomach_duodenum(self, cv: Canvas):
        h = self.hu
        clip = self._below_dia(cv, 4.0)
        lev = self.stomach_level

        def content(Z, Y, X):
            return np.where(Y < F32(lev), F32(-1000), F32(h["fluid"] + 8))

        paint_tube(cv, self.stomach_pts, self.stomach_rad,
                   [(0, h["bowel_wall"] + 10, 0, True), (4.0, content, 0, True)], clip=clip)
        # esophagus down to the cardia
        top = np.array([self.sp_x + 8, float(self.spine_y(40) - self.spine_R(40)) - 14, 80.0])
        card = self.stomach_pts[0] * 0.6 + self.stomach_pts[1] * 0.4 + (-20, 0, -5)
        paint_tube(cv, [top, (top[0] + 4, top[1] - 6, -25), card], [8, 8, 10],
                   [(0, h["muscle"] - 5, 0, True), (5.5, -300, 0, True)],
                   clip=lambda bb2: cv.cav[bb2])
        # duodenum: C-loop around the pancreatic head
        pyl = self.stomach_pts[-1]
        R = float(self.spine_R(-140))
        yv = float(self.spine_y(-140)) - R
        duo = [pyl, pyl + (-18, 15, -8), (pyl[0] - 30, yv - 25, -120), (pyl[0] - 25, yv - 20, -150),
               (self.sp_x, yv - 28, -158), (self.sp_x + 30, yv - 28, -145)]
        rd = self._bowel_rng.uniform(9, 13)
        paint_tube(cv, duo, [11] + [rd] * 5,
                   [(0, h["bowel_wall"], 0, True), (2.5, h["fluid"] + 5, 0, True)], clip=clip)

    def _zprism(self, cv, fx, fy, ax, ay, value, occupy=True, zlim=(-1e9, 1e9), clip=None):
        """Paint an elliptic cylinder running along z with centre (fx(z), fy(z))."""
        g = cv.grid
        z = g.z
        keep = (z >= zlim[0]) & (z <= zlim[1])
        if not keep.any():
            return
        k = np.flatnonzero(keep)
        xc, yc = fx(z[k]), fy(z[k])
        xc = np.broadcast_to(np.asarray(xc, float), k.shape)
        yc = np.broadcast_to(np.asarray(yc, float), k.shape)
        bb = g.box((xc.min() - ax - 1, yc.min() - ay - 1, z[k[0]]),
                   (xc.max() + ax + 1, yc.max() + ay + 1, z[k[-1]]))
        if bb is None:
            return
        bb = (slice(int(k[0]), int(k[-1]) + 1), bb[1], bb[2])
        Z, Y, X = g.coords(bb)
        xcz = xc.astype(F32)[:, None, None]
        ycz = yc.astype(F32)[:, None, None]
        region = ((X - xcz) / F32(ax)) ** 2 + ((Y - ycz) / F32(ay)) ** 2 < 1
        if clip is not None:
            region = region & clip(bb)
        cv.paint(bb, region, value, occupy=occupy)

    def _vessels(self, cv: Canvas):
        h, b = self.hu, self.body
        ztop = 60.0
        # crura, psoas
        axy = self.aorta_xy
        cav = lambda bb2: cv.cav[bb2]  # noqa: E731
        self._zprism(cv, lambda z: axy(z)[0], lambda z: axy(z)[1] - 3,
                     self.ao_r + 6, self.ao_r + 7, h["muscle"], zlim=(-120, -25), clip=cav)
        for side in (-1, 1):
            R = self.spine_R(-200)
            top = (self.sp_x + side * (self.sp_R0 * 0.7), float(self.spine_y(-95)) - 5, -95.0)
            bot = (self.sp_x + side * (R + 18), float(self.spine_y(-300)) - 12, -320.0)
            paint_tube(cv, [top, bot], [3, 24], [(0, h["muscle"], 0, True)])
        # aorta (with calcified plaques), IVC
        self._zprism(cv, lambda z: axy(z)[0], lambda z: axy(z)[1], self.ao_r, self.ao_r,
                     h["aorta"], zlim=(-400, ztop))
        if self.ao_calc:
            for ang, z, r in self.ao_calc_pts:
                x0, y0 = axy(z)
                p = np.array([x0 + self.ao_r * np.cos(ang), y0 + self.ao_r * np.sin(ang), z])
                paint_tube(cv, [p, p + (0, 0, 2 * r)], [r, r], [(0, 850, 0, True)])
        ivc = self.ivc_xy
        self._zprism(cv, lambda z: ivc(z)[0], lambda z: ivc(z)[1], *self.ivc_r, h["ivc"],
                     zlim=(-400, 5))
        # portal system: main portal vein, SMV, splenic vein; SMA
        pc = np.array([self.sp_x + 2, float(ivc(-105)[1]) - 18, -105.0])
        self.portal_conf = pc
        paint_tube(cv, [pc, self.porta], [7, 6.5], [(0, h["portal"], 0, True)])
        paint_tube(cv, [pc, pc + (4, -4, -60), pc + (6, -10, -250)], [5.5, 5, 4.5],
                   [(0, h["portal"] - 10, 0, True)])
        sh = np.array([0.6 * b.Ac, 0.3 * b.Bcp, -68.0])
        self.spl_hilum = sh
        mid = pc * 0.5 + sh * 0.5 + (0, -8, 6)
        paint_tube(cv, [pc, mid, sh], [5, 4.5, 4.5], [(0, h["portal"], 0, True)])
        ax0, ay0 = axy(-112)
        sma = [(ax0, ay0 - self.ao_r + 2, -112), (ax0 - 3, ay0 - self.ao_r - 14, -125),
               (ax0 - 4, ay0 - self.ao_r - 24, -300)]
        paint_tube(cv, sma, [3.5, 3.2, 3.0], [(0, h["aorta"], 0, True)])
        # pancreas along the splenic vein, head by the duodenum
        head = np.array([pc[0] - 25, pc[1] + 2, -118.0])
        neck = pc + (2, -12, 4)
        body = mid + (0, -11, 2)
        tail = sh + (-12, -10, -2)
        paint_tube(cv, [head, neck, body, tail], [15, 10, 10, 8],
                   [(0, h["pancreas"] + self.pancreas_hu_jit, 0, True)],
                   clip=lambda bb2: cv.cav[bb2] & (cv.hu[bb2] < 60) & ~cv.occ[bb2])

    def _solid_organs(self, cv: Canvas):
        h, b, g = self.hu, self.body, cv.grid
        # kidneys
        for k in self.kid:
            side = k["side"]
            c = np.array([self.sp_x + side * (self.spine_R(k["z"]) + k["dx"]),
                          float(self.spine_y(k["z"])) + k["dy"], k["z"]])
            # local frame: u points to the hilum (medial, anterior), w along the long axis
            R = rot(yaw=(0.0 if side < 0 else np.pi) + side * k["yaw"], pitch=k["pitch"])
            m = max(k["axes"]) + 55
            bb = g.box(c - m, c + m)
            if bb is None:
                continue
            Z, Y, X = g.coords(bb)
            sdf = ellipsoid(X, Y, Z, c, k["axes"], R)
            u, v, w = local(X, Y, Z, c, R)
            a = k["axes"]
            inside = sdf < 0
            sinus = (u > a[0] * 0.05) & (((u - a[0] * 0.45) / (a[0] * 0.75)) ** 2
                                         + (v / (a[1] * 0.55)) ** 2 + (w / (a[2] * 0.55)) ** 2 < 1)
            hilum = (u > a[0] * 0.55) & (np.abs(v) < a[1] * 0.4) & (np.abs(w) < a[2] * 0.3)
            inside &= ~hilum
            ang = np.arctan2(w / F32(a[2]), v / F32(a[1]))
            medulla = (sdf < -k["cortex"]) & (np.abs(np.sin(ang * 4)) > 0.35)
            # perirenal fat, reaching back to the posterior wall (the liver stays in front)
            peri = ellipsoid(X, Y, Z, c + (0, 22, 0), (a[0] + 10, a[1] + 30, a[2] + 8), R) < 0
            cv.paint(bb, peri & cv.cav[bb] & ~cv.occ[bb], h["vfat"] + 8)
            cv.paint(bb, inside, h["kid_cortex"])
            cv.paint(bb, inside & medulla, h["kid_medulla"])
            cv.paint(bb, (inside | hilum) & sinus, h["vfat"] + 20)
            pel = ((u - a[0] * 0.55) / 9) ** 2 + (v / 7) ** 2 + (w / 14) ** 2 < 1
            cv.paint(bb, (inside | hilum) & pel, h["fluid"])
            # renal vein to the IVC
            hil = c + R @ np.array([a[0] * 0.9, 0, 0])
            ix, iy = self.ivc_xy(c[2])
            if side > 0:
                ax_, ay_ = self.aorta_xy(c[2])
                path = [hil, (ax_, ay_ - self.ao_r - 5, c[2] + 4), (ix, iy, c[2] + 6)]
            else:
                path = [hil, (ix, iy, c[2] + 3)]
            paint_tube(cv, path, [4.5] * len(path), [(0, h["ivc"], 0, True)],
                       clip=lambda bb2: cv.cav[bb2])
        # spleen: ellipsoid along the posterolateral wall, deformed, clipped to the cavity
        s = self.spleen
        c = np.array(s["c"])
        psi = np.arctan2(c[0], c[1])
        R = rot(yaw=np.pi / 2 - psi)
        m = max(s["axes"]) + 10
        bb = g.box(c - m, c + m)
        if bb is not None:
            def spl(Z, Y, X):
                fs = fields_for(b, self.dia, Y.ravel(), X.ravel())
                Xd, Yd, Zd = displace(X, Y, Z, s["modes"])
                e = ellipsoid(Xd, Yd, Zd, c, s["axes"], R)
                e = smax(e, -ellipsoid(X, Y, Z, c - R @ np.array([s["axes"][0] * 1.6, 0, 0]),
                                       (s["axes"][0] * 1.2, s["axes"][1] * 0.6,
                                        s["axes"][2] * 0.7), R), 6)
                return np.maximum(np.maximum(e, fs.cavity_sdf(Z) + 1.5), fs.dia_sdf(Z) + 4.5)
            sdf = eval_smooth(spl, g, bb)
            cv.paint(bb, (sdf < 0) & cv.cav[bb], h["spleen"])
        # gallbladder
        if self.gallbladder:
            gb = self.gb
            c = np.array(gb["c"])
            m = max(gb["axes"]) + 3
            bb = g.box(c - m, c + m)
            if bb is not None:
                Z, Y, X = g.coords(bb)
                e = ellipsoid(X, Y, Z, c, gb["axes"], rot(roll=gb["pitch"]))
                cv.paint(bb, (e < 0) & cv.cav[bb], h["liver"] - 40)
                cv.paint(bb, (e < -2) & cv.cav[bb], h["bile"])

    def _spine(self, cv: Canvas):
        h, g = self.hu, cv.grid
        zs = g.z
        R = self.spine_R(zs)
        yv = self.spine_y(zs)
        rc = self.sp_canal
        bb = g.box((self.sp_x - 60, float((yv - R).min()) - 3, zs[0]),
                   (self.sp_x + 60, float((yv + R).max()) + rc * 2 + self.sp_spin + 15, zs[-1]))
        if bb is None:
            return
        Z, Y, X = g.coords(bb)
        Rz = R[bb[0]].astype(F32)[:, None, None]
        yz = yv[bb[0]].astype(F32)[:, None, None]
        dx = X - F32(self.sp_x)
        dy = Y - yz
        P = self.sp_P
        ph = np.mod(Z - F32(self.sp_zT), F32(P))
        disc_t = np.clip(5 + 0.03 * (-Z - 40), 4, 10)
        disc = ph < disc_t
        endplate = (ph < disc_t + 1.3) | (ph > P - 1.3)
        vb = np.maximum(np.sqrt(dx * dx + (dy * 1.08) ** 2) - Rz, dy - 0.6 * Rz)
        yc = Rz + rc + 3
        dyc = dy - yc
        rr = np.sqrt(dx * dx + (dyc * 1.15) ** 2)
        canal = rr - rc
        arch = np.maximum(rr - (rc + 6), -canal)
        arch = np.where(dyc < -rc * 0.9, F32(99), arch)
        skin_y = (F32(self.body.Bpost) * self.body.s(Z) - F32(self.body.fat[0] + 14)) - yz - yc
        spin_end = np.minimum(F32(rc + self.sp_spin), skin_y)
        spin = np.maximum(np.abs(dx) - 3.5 + 0.04 * dyc, np.maximum(rc + 2 - dyc,
                                                                    dyc - spin_end))
        spin = np.where((ph > disc_t + 3) & (ph < P - 1), spin, F32(99))
        wtp = np.where(Z > -100, F32(26), F32(36))
        tp = np.maximum(np.abs(dyc + 1) - 3.2 + 0.06 * np.abs(dx), np.abs(dx) - wtp)
        tp = np.where((ph > 0.4 * P) & (ph < 0.7 * P), tp, F32(99))
        post = np.minimum(np.minimum(arch, spin), tp)
        trab = F32(22) * qnoise(X, Y, Z, self.trab_dirs)
        cv.paint(bb, post < 0, h["bone"] * 0.85)
        cv.paint(bb, post < -1.4, F32(h["marrow"] + 40) + trab)
        cv.paint(bb, canal < 0, h["canal"])
        cv.paint(bb, (vb < 0) & disc, h["disc"])
        cv.paint(bb, (vb < 0) & ~disc, h["bone"])
        cv.paint(bb, (vb < -1.8) & ~disc & ~endplate, F32(h["marrow"]) + trab)

    def _ribs(self, cv: Canvas):
        h, b = self.hu, self.body
        rr = self._g(10)
        inside = lambda bb2: self.fields(bb2).depth(cv.grid.coords(bb2)[0]) > b.skin + 1  # noqa
        z12 = self.sp_zT + self.sp_P * 0.5
        ends = {5: 2.95, 6: 2.9, 7: 2.85, 8: 2.6, 9: 2.45, 10: 2.3, 11: 1.85, 12: 1.35}
        for n in range(5, 13):
            z0 = z12 + (12 - n) * self.sp_P
            drop = rr.uniform(22, 32)
            r = rr.uniform(2.7, 3.5)
            for side in (-1, 1):
                zb = z0 + rr.uniform(-3, 3)
                psis = np.linspace(0.45, ends[n], 14)
                zz = zb - drop * (psis - 0.45) ** 1.6
                pts = []
                for p, z in zip(psis, zz, strict=True):
                    tf, w = b.wall(side * p, z)
                    x, y = b.ray_point(p, side, z, w - r - 2.0)
                    pts.append((x, y, z))
                yv = float(self.spine_y(zb))
                Rv = float(self.spine_R(zb))
                head = [(self.sp_x + side * Rv * 0.75, yv + Rv * 0.55, zb + 3),
                        (self.sp_x + side * (Rv + 22), yv + Rv + self.sp_canal + 2, zb + 2)]
                pts = np.array(head + pts)
                n_cart = 4 if ends[n] > 2.2 else 0
                bone = pts[: len(pts) - n_cart]
                paint_tube(cv, bone, np.full(len(bone), r),
                           [(0, h["bone"] * 0.9, 0, True), (1.3, h["marrow"], 0, True)],
                           clip=inside)
                if n_cart:
                    cart = pts[len(pts) - n_cart - 1:]
                    paint_tube(cv, cart, np.full(len(cart), r * 0.95),
                               [(0, h["cartilage"], 0, True)], clip=inside)
        # xiphoid
        zx = rr.uniform(-45, -20)
        x0, y0 = b.ray_point(np.pi, 1, zx, b.wall(np.pi, zx)[1] - 5)
        paint_tube(cv, [(x0, y0, zx), (x0, y0 - 2, zx + 50)], [4, 6],
                   [(0, h["bone"] * 0.7, 0, True), (1.5, h["marrow"], 0, True)], clip=inside)

    def _liver(self, cv: Canvas, with_tumors: bool):
        h, g, lm = self.hu, cv.grid, self.liver
        lm.calibrate(self.liver_target_ml)
        lo, hi = lm.extent()
        bb = g.box(lo, hi)
        if bb is None:
            return
        free = cv.cav[bb] & ~cv.occ[bb]
        for attempt in range(2):
            sdf = eval_smooth(lm.field, g, bb)
            whole = sdf < 0
            liver = whole & free
            # other organs took a share of the shape: enlarge it once to make up for it
            kept = liver.sum() / max(int(whole.sum()), 1)
            if attempt or kept > 0.92:
                break
            lm.calibrate(self.liver_target_ml / max(kept, 0.6))
        # keep the largest connected piece (carving may leave islands)
        lab, n = ndimage.label(liver)
        if n > 1:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            liver = lab == int(np.argmax(sizes))
        Z, Y, X = g.coords(bb)
        tex = F32(4) * _texture(X, Y, Z, self.liver_tex[0], self.liver_tex[1])
        cv.paint(bb, liver, F32(h["liver"]) + tex, label=1, occupy=True)
        # fissure for the ligamentum teres (fat cleft, not liver)
        if self.fissure:
            xf = 0.08 * self.body.Ac
            fis = (np.abs(X - F32(xf) + 0.25 * (Y + F32(self.body.Bca))) < 1.6) & (
                Y < F32(-0.25 * self.body.Bca)) & (Z < -25)
            cv.paint(bb, liver & fis, h["vfat"], label=0)
        # intrahepatic vessels (label stays liver)
        in_liver = lambda bb2: cv.lab[bb2] == 1  # noqa: E731
        for trees, hu in ((self.portal_trees, h["portal"]), (self.hepatic_trees, h["hepatic"])):
            for tree in trees:
                for p0, p1, r0, r1, _ in tree:
                    paint_tube(cv, [p0, p1], [r0, r1], [(0, hu, None, True)], clip=in_liver)
        if with_tumors:
            self.tumors = place_and_paint_tumors(self, cv)


class LiverModel:
    """Implicit liver: right lobe, left lobe and caudate blended, deformed, clipped.

    The shape is the smooth union of three ellipsoids (right lobe, left lobe crossing the
    midline in front of the stomach, caudate by the IVC), deformed by a random smooth
    displacement, hollowed below by a concave visceral surface, and intersected with
    the abdominal cavity (2 mm inside the muscle wall) and the space under the diaphragm.
    """

    def __init__(self, rng, an: Anatomy):
        b = an.body
        self.an = an
        Ac, Bca, Bcp = b.Ac, b.Bca, b.Bcp
        # right lobe tilted: its lower tip lateral and anterior, its top medial and posterior
        self.rl = ((-0.45 * Ac, 0.05 * (Bcp - Bca), -70 + rng.uniform(-8, 8)),
                   (0.6 * Ac * rng.uniform(0.85, 1.1), 0.52 * (Bca + Bcp) * rng.uniform(0.85, 1.0),
                    rng.uniform(80, 100)),
                   rot(pitch=rng.uniform(0.2, 0.45), roll=-rng.uniform(0.15, 0.4)))
        ll_size = rng.uniform(0.7, 1.25)
        self.ll = ((0.12 * Ac * ll_size, -0.52 * Bca, -40 + rng.uniform(-8, 5)),
                   (0.48 * Ac * ll_size, 0.3 * Bca, 40 * rng.uniform(0.85, 1.15)),
                   rot(yaw=rng.uniform(-0.25, 0.05)))
        ix, iy = an.ivc_xy(-55)
        self.cd = ((ix + 14, iy - 14, -55.0), (20, 22, 32))
        # concave visceral surface: room for the kidney, duodenum and hepatic flexure
        self.notch = ((-0.15 * Ac + rng.uniform(-10, 10), 0.25 * Bcp, -rng.uniform(175, 200)),
                      (rng.uniform(60, 80), rng.uniform(60, 80), rng.uniform(55, 70)))
        self.Ac = Ac
        self.modes = wave_noise(rng, 3, (120, 260), (5, 10))
        self.scale = 1.0
        self.pivot = np.array(self.rl[0])

    def extent(self):
        b = self.an.body
        return (np.array([-b.A, -b.Bant, -260.0]),
                np.array([0.75 * b.A, b.Bpost, 15.0]))

    def field(self, Z, Y, X):
        """Approximate signed distance to the liver surface (mm), on broadcast coordinates."""
        an = self.an
        fs = fields_for(an.body, an.dia, np.asarray(Y).ravel(), np.asarray(X).ravel())
        Xd, Yd, Zd = displace(X, Y, Z, self.modes)
        s = F32(self.scale)
        pv = self.pivot.astype(F32)
        Xs, Ys, Zs = (pv[0] + (Xd - pv[0]) / s, pv[1] + (Yd - pv[1]) / s,
                      pv[2] + (Zd - pv[2]) / s)
        f = ellipsoid(Xs, Ys, Zs, *self.rl)
        f = smin(f, ellipsoid(Xs, Ys, Zs, *self.ll), 18.0)
        f = smin(f, ellipsoid(Xs, Ys, Zs, *self.cd), 10.0) * s
        f = smax(f, -ellipsoid(Xd, Yd, Zd, *self.notch), 15.0)
        # retroperitoneum: no liver around the spine, nor left of it behind the aorta
        zf = np.asarray(Z, float)
        R = self.an.spine_R(zf).astype(F32)
        yv = self.an.spine_y(zf).astype(F32)
        xs = F32(self.an.sp_x)
        ax, ay = self.an.aorta_xy(zf)
        e = (np.sqrt(((X - xs) / (R + 26)) ** 2 + ((Y - yv) / (R + 20)) ** 2) - 1) * (R + 20)
        f = smax(f, -e, 6.0)
        f = np.maximum(f, np.minimum(X - (xs + 12), Y - (np.asarray(ay, F32) - 6)))
        f = np.maximum(f, fs.cavity_sdf(Z) + 2.0)
        return np.maximum(f, fs.dia_sdf(Z) + 4.5)

    def coarse(self, step=5.0):
        lo, hi = self.extent()
        axes = [np.arange(lo[i], hi[i] + step, step) for i in range(3)]
        Z = axes[2].astype(F32)[:, None, None]
        Y = axes[1].astype(F32)[None, :, None]
        X = axes[0].astype(F32)[None, None, :]
        return self.field(Z, Y, X) < 0, axes

    def volume(self, step=5.0):
        """Volume (mL) of the liver shape on a coarse grid (before carving by other organs)."""
        m, _ = self.coarse(step)
        return float(m.sum()) * step ** 3 / 1000.0

    def calibrate(self, target_ml, step=5.0):
        """Scale the lobes so that the (uncarved) liver volume is about ``target_ml``."""
        pts = []
        for _ in range(7):
            vol = self.volume(step)
            if abs(vol / target_ml - 1) < 0.025:
                return
            pts.append((np.log(self.scale), np.log(max(vol, 1.0))))
            if len(pts) >= 2 and abs(pts[-1][1] - pts[-2][1]) > 1e-3:
                (a0, v0), (a1, v1) = pts[-2], pts[-1]
                slope = np.clip((v1 - v0) / (a1 - a0), 1.0, 4.0)
            else:
                slope = 2.0
            step_log = np.clip((np.log(target_ml) - pts[-1][1]) / slope, -0.4, 0.4)
            self.scale = float(np.clip(self.scale * np.exp(step_log), 0.55, 2.2))


def place_and_paint_tumors(an: Anatomy, cv: Canvas) -> list[dict]:
    """Choose tumors inside the liver and paint them (label 2, clipped to the liver).

    Returns one dict per tumor: ``centre_xyz`` (anatomical mm), ``diameter_mm``, ``kind``
    ('hypo' or 'hyper'), ``rim`` (bool), ``hu`` (mean HU painted), ``voxels`` (count).
    """
    rt = an._tumor_rng
    n = an.n_tumors
    if n == 0:
        return []
    g, h = cv.grid, an.hu
    m, axes = an.liver.coarse(5.0)
    # keep coarse points whose nearest voxel was painted liver (not carved, inside the scan)
    idx = []
    for ax, v in zip((2, 1, 0), (g.z, g.y, g.x), strict=True):
        a = axes[ax]
        d = float(v[1] - v[0]) if v.size > 1 else 1.0
        i = np.rint((a - v[0]) / d).astype(int)
        ok = (i >= 0) & (i < v.size) & (np.abs(a - v[np.clip(i, 0, v.size - 1)]) <= d)
        idx.append((np.clip(i, 0, v.size - 1), ok))
    (iz, oz), (iy, oy), (ix, ox) = idx
    painted = cv.lab[np.ix_(iz, iy, ix)] == 1
    m &= painted & oz[:, None, None] & oy[None, :, None] & ox[None, None, :]
    if not m.any():
        return []
    depth = ndimage.distance_transform_edt(m, sampling=5.0)
    L = h["liver"]
    # Most liver lesions are hypodense in the portal venous phase (metastases, HCC wash-out);
    # hyperdense ones are the minority.
    case_kind = rt.choice(["hypo", "hypo", "hypo", "hypo", "hyper", "mixed"])
    centres: list[tuple[np.ndarray, float]] = []
    out = []
    min_d = 2.2 * float(max(g.x[1] - g.x[0], g.z[1] - g.z[0] if g.z.size > 1 else 1.0))
    for _ in range(n):
        d = float(np.exp(rt.uniform(np.log(5.0), np.log(60.0))))
        r = max(d, min_d) / 2
        need = r * (0.25 if rt.uniform() < 0.25 else 0.6)
        c = None
        for _attempt in range(25):
            cand = np.argwhere(depth >= max(need, 2.5))
            if len(cand) == 0:
                cand = np.argwhere(depth >= depth.max() * 0.7)
            zi, yi, xi = cand[int(rt.integers(len(cand)))]
            p = np.array([axes[0][xi], axes[1][yi], axes[2][zi]]) + rt.uniform(-2.5, 2.5, 3)
            if all(np.linalg.norm(p - q) > 0.7 * (r + rq) for q, rq in centres):
                c = p
                break
        if c is None:
            c = p
        centres.append((c, r))
        kind = case_kind if case_kind != "mixed" else ("hypo" if rt.uniform() < 0.6 else "hyper")
        blobs = [(c, r)]
        for _ in range(int(rt.integers(0, 4))):
            u = rt.normal(size=3)
            u /= np.linalg.norm(u)
            blobs.append((c + u * r * rt.uniform(0.3, 0.6), r * rt.uniform(0.4, 0.7)))
        modes = wave_noise(rt, 3, (0.6 * r + 2, 1.3 * r + 4), (0.05, 0.13))
        rim = kind == "hypo" and rt.uniform() < 0.35
        necrosis = d > 28 and rt.uniform() < 0.5
        if kind == "hypo":
            base = max(L - rt.uniform(40, 80), 25.0)
        else:
            base = L + rt.uniform(20, 50)
        rim_hu = L + rt.uniform(5, 30)
        nec_hu = base - rt.uniform(15, 35)
        tex_dirs = wave_dirs(rt, 4, (max(r / 2, 3.0), max(r, 5.0)))
        ext = r * 1.9 + 2
        bb = g.box(c - ext, c + ext)
        if bb is None:
            out.append(dict(centre_xyz=c, diameter_mm=2 * r, kind=kind, rim=rim, hu=base,
                            voxels=0))
            continue
        Z, Y, X = g.coords(bb)
        F = None
        for cj, rj in blobs:
            dj = 1 - np.sqrt((X - F32(cj[0])) ** 2 + (Y - F32(cj[1])) ** 2
                             + (Z - F32(cj[2])) ** 2) / F32(rj)
            F = dj if F is None else np.maximum(F, dj)
        for k, ph, a in modes:
            F = F + F32(np.linalg.norm(a)) * np.sin(F32(k[0]) * X + F32(k[1]) * Y
                                                    + F32(k[2]) * Z + F32(ph))
        env = (cv.lab[bb] == 1) | (cv.lab[bb] == 2)
        region = (F > 0) & env
        if not region.any():
            # too small for the grid: mark the voxel nearest the centre if it is liver
            zi = int(np.argmin(np.abs(g.z[bb[0]] - c[2])))
            yi = int(np.argmin(np.abs(g.y[bb[1]] - c[1])))
            xi = int(np.argmin(np.abs(g.x[bb[2]] - c[0])))
            region = np.zeros(env.shape, bool)
            region[zi, yi, xi] = env[zi, yi, xi]
        tex = F32(5) * qnoise(X, Y, Z, tex_dirs)
        val = np.broadcast_to(F32(base) + tex, region.shape).copy()
        if necrosis:
            val = np.where(F > 0.45, F32(nec_hu) + tex, val)
        if rim:
            val = np.where(F < 0.05, F32(rim_hu), val)
        cv.paint(bb, region, val, label=2, occupy=True)
        nvox = int(region.sum())
        out.append(dict(centre_xyz=c, diameter_mm=float(2 * r), kind=kind, rim=bool(rim),
                        hu=float(val[region].mean()) if nvox else float(base), voxels=nvox))
    return out
