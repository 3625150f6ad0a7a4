"""Implicit shapes in millimetres: approximate signed distances (negative inside) and the
operations that combine, rotate and sample them."""

from __future__ import annotations

import numpy as np

from .canvas import F32, Grid


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
