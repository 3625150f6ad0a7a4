"""Liver tumors: where they go, their shape (blobs, wave-distorted), texture, rim, necrosis."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .canvas import F32, Canvas
from .liver import LiverShape
from .noise import qnoise, wave_dirs, wave_noise


def liver_depth(shape: LiverShape, cv: Canvas, step=5.0):
    """Depth (mm) inside the painted liver on the shape's coarse lattice, and its axes.

    A lattice point counts as liver when it lies inside the shape and the voxel nearest to it
    was painted liver (not carved by another organ, inside the scan). Returns
    ``(depth (z, y, x) float, [x, y, z] axes)``, or ``(None, axes)`` when no point is liver.
    """
    g = cv.grid
    m, axes = shape.coarse(step)
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
        return None, axes
    return ndimage.distance_transform_edt(m, sampling=step), axes


def _place(rt, depth, axes, r, centres):
    """A centre (x, y, z mm) at least ``need`` mm deep in the liver, apart from ``centres``."""
    need = r * (0.25 if rt.uniform() < 0.25 else 0.6)
    for _attempt in range(25):
        cand = np.argwhere(depth >= max(need, 2.5))
        if len(cand) == 0:
            cand = np.argwhere(depth >= depth.max() * 0.7)
        zi, yi, xi = cand[int(rt.integers(len(cand)))]
        p = np.array([axes[0][xi], axes[1][yi], axes[2][zi]]) + rt.uniform(-2.5, 2.5, 3)
        if all(np.linalg.norm(p - q) > 0.7 * (r + rq) for q, rq in centres):
            return p
    return p


def _draw_tumor(rt, c, r, d, kind, liver_hu):
    """Shape, texture and attenuation of a tumor of radius ``r`` mm at ``c``; ``d`` is the
    diameter drawn before the grid's minimum size was applied."""
    blobs = [(c, r)]
    for _ in range(int(rt.integers(0, 4))):
        u = rt.normal(size=3)
        u /= np.linalg.norm(u)
        blobs.append((c + u * r * rt.uniform(0.3, 0.6), r * rt.uniform(0.4, 0.7)))
    modes = wave_noise(rt, 3, (0.6 * r + 2, 1.3 * r + 4), (0.05, 0.13))
    rim = kind == "hypo" and rt.uniform() < 0.35
    necrosis = d > 28 and rt.uniform() < 0.5
    if kind == "hypo":
        base = max(liver_hu - rt.uniform(40, 80), 25.0)
    else:
        base = liver_hu + rt.uniform(20, 50)
    rim_hu = liver_hu + rt.uniform(5, 30)
    nec_hu = base - rt.uniform(15, 35)
    tex_dirs = wave_dirs(rt, 4, (max(r / 2, 3.0), max(r, 5.0)))
    return dict(centre=c, radius=r, kind=kind, blobs=blobs, modes=modes, rim=rim,
                necrosis=necrosis, base=base, rim_hu=rim_hu, nec_hu=nec_hu, tex_dirs=tex_dirs)


def _largest_piece(region):
    """The largest face-connected piece of a boolean array: clipping to the liver may cut a
    lobulated tumor into pieces, and one tumor must be one lesion as LiTS counts them
    (``scipy.ndimage.label``'s default structure)."""
    lab, n = ndimage.label(region)
    if n <= 1:
        return region
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _paint_tumor(cv: Canvas, t: dict) -> dict:
    """Paint one tumor (label 2, clipped to liver and earlier tumors); returns its record."""
    g, c, r = cv.grid, t["centre"], t["radius"]
    rec = dict(centre_xyz=c, diameter_mm=float(2 * r), kind=t["kind"], rim=bool(t["rim"]),
               hu=float(t["base"]), voxels=0)
    ext = r * 1.9 + 2
    bb = g.box(c - ext, c + ext)
    if bb is None:
        return rec
    Z, Y, X = g.coords(bb)
    F = None
    for cj, rj in t["blobs"]:
        dj = 1 - np.sqrt((X - F32(cj[0])) ** 2 + (Y - F32(cj[1])) ** 2
                         + (Z - F32(cj[2])) ** 2) / F32(rj)
        F = dj if F is None else np.maximum(F, dj)
    for k, ph, a in t["modes"]:
        F = F + F32(np.linalg.norm(a)) * np.sin(F32(k[0]) * X + F32(k[1]) * Y
                                                + F32(k[2]) * Z + F32(ph))
    env = (cv.lab[bb] == 1) | (cv.lab[bb] == 2)
    region = _largest_piece((F > 0) & env)
    if not region.any():
        # too small for the grid: mark the voxel nearest the centre if it is liver
        zi = int(np.argmin(np.abs(g.z[bb[0]] - c[2])))
        yi = int(np.argmin(np.abs(g.y[bb[1]] - c[1])))
        xi = int(np.argmin(np.abs(g.x[bb[2]] - c[0])))
        region = np.zeros(env.shape, bool)
        region[zi, yi, xi] = env[zi, yi, xi]
    tex = F32(5) * qnoise(X, Y, Z, t["tex_dirs"])
    val = np.broadcast_to(F32(t["base"]) + tex, region.shape).copy()
    if t["necrosis"]:
        val = np.where(F > 0.45, F32(t["nec_hu"]) + tex, val)
    if t["rim"]:
        val = np.where(F < 0.05, F32(t["rim_hu"]), val)
    cv.paint(bb, region, val, label=2, occupy=True)
    nvox = int(region.sum())
    if nvox:
        rec.update(hu=float(val[region].mean()), voxels=nvox)
    return rec


def place_and_paint_tumors(rt, n: int, shape: LiverShape, cv: Canvas, liver_hu: float) -> list:
    """Choose ``n`` tumors inside the painted liver and paint them (label 2).

    Returns one dict per tumor: ``centre_xyz`` (anatomical mm), ``diameter_mm``, ``kind``
    ('hypo' or 'hyper'), ``rim`` (bool), ``hu`` (mean HU painted), ``voxels`` (count).
    """
    if n == 0:
        return []
    depth, axes = liver_depth(shape, cv)
    if depth is None:
        return []
    g = cv.grid
    # Most liver lesions are hypodense in the portal venous phase (metastases, HCC wash-out);
    # hyperdense ones are the minority.
    case_kind = rt.choice(["hypo", "hypo", "hypo", "hypo", "hyper", "mixed"])
    centres: list[tuple[np.ndarray, float]] = []
    out = []
    min_d = 2.2 * float(max(g.x[1] - g.x[0], g.z[1] - g.z[0] if g.z.size > 1 else 1.0))
    for _ in range(n):
        d = float(np.exp(rt.uniform(np.log(5.0), np.log(60.0))))
        r = max(d, min_d) / 2
        c = _place(rt, depth, axes, r, centres)
        centres.append((c, r))
        kind = case_kind if case_kind != "mixed" else ("hypo" if rt.uniform() < 0.6 else "hyper")
        out.append(_paint_tumor(cv, _draw_tumor(rt, c, r, d, kind, liver_hu)))
    return out
