"""Liver tumors: what they are (drawn once per case), where they go (chosen on a reference
grid), and how they are painted on a case's grid.

A tumor's plan (size, kind, shape, texture, attenuation) is drawn when the anatomy is built;
its centre is chosen once, inside the liver painted on a reference grid
(:meth:`.painter.Anatomy.settle`); neither depends on the matrix of the grid painted last.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .canvas import F32, Canvas
from .noise import qnoise, wave_dirs, wave_noise

_MIN_DEPTH_MM = 8.0


def draw_tumor_plans(rng, n: int, liver_hu: float) -> list[dict]:
    """Size, kind, shape, texture and attenuation of ``n`` tumors (no position yet).

    Each plan: ``diameter_mm``, ``kind`` ('hypo' or 'hyper'), ``shallow`` (may sit near the
    liver surface), ``blobs`` (lobules: offset direction (3,), offset and radius as fractions
    of the radius), ``modes`` (surface waves), ``rim``, ``necrosis``,
    ``hu``, ``rim_hu``, ``necrosis_hu`` (HU), ``texture_waves``; waves in mm.
    """
    # Most liver lesions are hypodense in the portal venous phase (metastases, HCC wash-out);
    # hyperdense ones are the minority.
    case_kind = rng.choice(["hypo", "hypo", "hypo", "hypo", "hyper", "mixed"])
    plans = []
    for _ in range(n):
        d = float(np.exp(rng.uniform(np.log(5.0), np.log(60.0))))
        r = d / 2
        shallow = rng.uniform() < 0.25
        kind = case_kind if case_kind != "mixed" else ("hypo" if rng.uniform() < 0.6 else "hyper")
        blobs = []
        for _ in range(int(rng.integers(0, 4))):
            u = rng.normal(size=3)
            blobs.append((u / np.linalg.norm(u), rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.7)))
        modes = wave_noise(rng, 3, (0.6 * r + 2, 1.3 * r + 4), (0.05, 0.13))
        rim = kind == "hypo" and rng.uniform() < 0.35
        necrosis = d > 28 and rng.uniform() < 0.5
        if kind == "hypo":
            base = max(liver_hu - rng.uniform(40, 80), 25.0)
        else:
            base = liver_hu + rng.uniform(20, 50)
        plans.append(dict(diameter_mm=d, kind=str(kind), shallow=bool(shallow), blobs=blobs,
                          modes=modes, rim=bool(rim), necrosis=bool(necrosis), hu=base,
                          rim_hu=liver_hu + rng.uniform(5, 30),
                          necrosis_hu=base - rng.uniform(15, 35),
                          texture_waves=wave_dirs(rng, 4, (max(r / 2, 3.0), max(r, 5.0)))))
    return plans


def place_tumors(rng, plans: list[dict], cv: Canvas) -> list[np.ndarray]:
    """Centres (x, y, z mm) for the planned tumors, inside the liver painted on ``cv``.

    A centre lies at least 60 % of the radius deep in the liver (25 % for shallow tumors) and
    at least 8 mm deep (small tumors, painted larger on coarse grids, stay in the liver), and
    apart from earlier tumors when there is room. Returns [] when no liver is painted.
    """
    liver = cv.lab == 1
    if not plans or not liver.any():
        return []
    g = cv.grid
    steps = [float(v[1] - v[0]) if v.size > 1 else 1.0 for v in (g.z, g.y, g.x)]
    depth = ndimage.distance_transform_edt(liver, sampling=steps)
    placed: list[tuple[np.ndarray, float]] = []
    for plan in plans:
        r = plan["diameter_mm"] / 2
        need = r * (0.25 if plan["shallow"] else 0.6)
        cand = np.argwhere(depth >= max(need, _MIN_DEPTH_MM))
        if len(cand) == 0:
            cand = np.argwhere(depth >= depth.max() * 0.7)
        for _attempt in range(25):
            zi, yi, xi = cand[int(rng.integers(len(cand)))]
            p = np.array([g.x[xi], g.y[yi], g.z[zi]]) + rng.uniform(-2.5, 2.5, 3)
            if all(np.linalg.norm(p - q) > 0.7 * (r + rq) for q, rq in placed):
                break
        placed.append((p, r))
    return [p for p, _ in placed]


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


def _field(plan: dict, c, r, Z, Y, X):
    """Shape field of a tumor: > 0 inside, about 1 - distance / radius near its centre."""
    F = None
    for cj, rj in [(c, r)] + [(c + u * r * off, r * rad) for u, off, rad in plan["blobs"]]:
        dj = 1 - np.sqrt((X - F32(cj[0])) ** 2 + (Y - F32(cj[1])) ** 2
                         + (Z - F32(cj[2])) ** 2) / F32(rj)
        F = dj if F is None else np.maximum(F, dj)
    for k, ph, a in plan["modes"]:
        F = F + F32(np.linalg.norm(a)) * np.sin(F32(k[0]) * X + F32(k[1]) * Y
                                                + F32(k[2]) * Z + F32(ph))
    return F


def paint_tumor(cv: Canvas, plan: dict, c) -> dict:
    """Paint one tumor centred at ``c`` (label 2, clipped to the liver and earlier tumors).

    Tumors smaller than 2.2 voxels are painted at 2.2 voxels, so that they stay visible on
    coarse grids. Returns its record: ``centre_xyz`` (mm), ``diameter_mm`` (as painted),
    ``kind``, ``rim``, ``hu`` (mean HU painted, before blur and noise), ``voxels``.
    """
    g = cv.grid
    min_d = 2.2 * float(max(g.x[1] - g.x[0], g.z[1] - g.z[0] if g.z.size > 1 else 1.0))
    r = max(plan["diameter_mm"], min_d) / 2
    rec = dict(centre_xyz=c, diameter_mm=float(2 * r), kind=plan["kind"], rim=plan["rim"],
               hu=float(plan["hu"]), voxels=0)
    bb = g.box(c - (r * 1.9 + 2), c + (r * 1.9 + 2))
    if bb is None:
        return rec
    Z, Y, X = g.coords(bb)
    F = _field(plan, c, r, Z, Y, X)
    env = (cv.lab[bb] == 1) | (cv.lab[bb] == 2)
    region = _largest_piece((F > 0) & env)
    if not region.any():
        # too small for the grid: mark the voxel nearest the centre if it is liver
        zi = int(np.argmin(np.abs(g.z[bb[0]] - c[2])))
        yi = int(np.argmin(np.abs(g.y[bb[1]] - c[1])))
        xi = int(np.argmin(np.abs(g.x[bb[2]] - c[0])))
        region = np.zeros(env.shape, bool)
        region[zi, yi, xi] = env[zi, yi, xi]
    tex = F32(5) * qnoise(X, Y, Z, plan["texture_waves"])
    val = np.broadcast_to(F32(plan["hu"]) + tex, region.shape).copy()
    if plan["necrosis"]:
        val = np.where(F > 0.45, F32(plan["necrosis_hu"]) + tex, val)
    if plan["rim"]:
        val = np.where(F < 0.05, F32(plan["rim_hu"]), val)
    cv.paint(bb, region, val, label=2, occupy=True)
    nvox = int(region.sum())
    if nvox:
        rec.update(hu=float(val[region].mean()), voxels=nvox)
    return rec
