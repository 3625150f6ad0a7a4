"""Tubes (vessels, bowel, ribs), branching trees and cylinders along z, in millimetres."""

from __future__ import annotations

import numpy as np

from .canvas import F32, Canvas, Grid
from .shapes import segment


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


def paint_z_cylinder(cv: Canvas, fx, fy, ax, ay, value, occupy=True, zlim=(-1e9, 1e9),
                     clip=None):
    """Paint an elliptic cylinder along z: centre ``(fx(z), fy(z))``, semi-axes ``ax, ay`` mm.

    Only slices with ``zlim[0] <= z <= zlim[1]`` are painted; ``clip`` as in :func:`paint_tube`.
    """
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
