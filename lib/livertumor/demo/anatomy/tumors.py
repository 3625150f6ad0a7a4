"""Liver tumors: what they are (drawn once per case), where they go (chosen on a reference
grid), and how they are painted on a case's grid.

A tumor's plan (size, kind, shape, texture, attenuation) is drawn when the anatomy is built;
its centre is chosen once, inside the liver painted on a reference grid
(:meth:`.painter.Anatomy.settle`); neither depends on the matrix of the grid painted last.

Three kinds of lesion, whose contrast to the liver depends on the contrast phase:

* ``hypovascular`` (metastasis-like): hypoattenuating in every phase, most in the portal
  venous phase; some larger ones with an enhancing rim in the arterial and portal venous
  phases (Sica, Ji and Ros, "CT and MR imaging of hepatic metastases", AJR 174, 2000);
* ``hypervascular`` (HCC-like): slightly hypoattenuating unenhanced, hyperenhancing in the
  late arterial phase, washing out to hypoattenuating in the portal venous and delayed
  phases, some with an enhancing capsule there (ACR LI-RADS v2018: arterial phase
  hyperenhancement, washout, enhancing capsule);
* ``cyst``: water attenuation (0-20 HU), no enhancement, sharp margin, nearly homogeneous
  (Mortele and Ros, "Cystic focal liver lesions in the adult", RadioGraphics 21, 2001).

Shapes are distorted ellipsoids, lobulated by extra blobs and rippled by smooth waves, with
textured interiors and edges blended into the liver over a narrow band, after Hu et al.,
"Label-Free Liver Tumor Segmentation", CVPR 2023 (shape variety mattered most for small
tumors). Sizes run from 5 mm to 60 mm in diameter, small ones the most common. Contrast
ranges keep every lesion at least 16 HU from the liver in its case's phase, its texture at
most a quarter of that, its blended edge within 15 % of its radius and any enhancing rim thin,
so that a lesion of 10 mm or more keeps at least 10 HU of mean contrast to the liver after
the scanner's blur at 512 px (11 HU in the worst case: 16 HU, a 10 mm sphere, the widest edge
and blur).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .canvas import F32, Canvas
from .noise import qnoise, wave_dirs, wave_noise
from .shapes import rot
from .tissues import PHASES

KINDS = ("hypovascular", "hypervascular", "cyst")
"""Lesion kinds, as recorded per tumor."""

_KIND_P = (0.5, 0.3, 0.2)
"""How often each kind is the main kind of a case with tumors."""

# lesion minus liver (low, high) HU per kind and phase; cysts have their own absolute HU
_CONTRAST = {
    "hypovascular": {"unenhanced": (-30, -16), "late arterial": (-45, -20),
                     "portal venous": (-70, -35), "delayed": (-45, -20)},
    "hypervascular": {"unenhanced": (-26, -16), "late arterial": (30, 70),
                      "portal venous": (-30, -16), "delayed": (-40, -20)},
}
_CYST_HU = (0, 20)
# enhancing rim (metastasis) or capsule (HCC): the phases that show it, rim minus liver HU
_RIM = {"hypovascular": ({"late arterial", "portal venous"}, (5, 20)),
        "hypervascular": ({"portal venous", "delayed"}, (5, 20))}

_MIN_DEPTH_MM = 8.0


def lesion_contrast_range(kind: str, phase: str, liver_hu: float) -> tuple[float, float]:
    """(low, high) lesion minus liver HU of a lesion kind in a phase (before blur and noise).

    Raises
    ------
    ValueError
        For an unknown kind or phase.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown contrast phase {phase!r}; expected one of {PHASES}")
    if kind == "cyst":
        return (_CYST_HU[0] - liver_hu, _CYST_HU[1] - liver_hu)
    if kind not in _CONTRAST:
        raise ValueError(f"unknown lesion kind {kind!r}; expected one of {KINDS}")
    return tuple(float(v) for v in _CONTRAST[kind][phase])


def _draw_size(rng) -> float:
    """Diameter (mm) in 5..60, small ones common: 5 * 12 ** (u ** 1.3), u uniform; about 37 %
    below 10 mm, 64 % below 20 mm."""
    return float(5.0 * 12.0 ** (rng.uniform() ** 1.3))


def _draw_shape(rng, kind: str, r: float) -> dict:
    """Ellipsoid axes (fractions of the radius, product 1), rotation, lobules, waves (mm)."""
    spread = 0.08 if kind == "cyst" else 0.18
    axes = np.exp(rng.normal(0, spread, 3))
    axes = np.clip(axes / np.prod(axes) ** (1 / 3), 0.6, 1.6)
    rotation = rot(*rng.uniform(0, 2 * np.pi, 3))
    blobs = []
    for _ in range(0 if kind == "cyst" else int(rng.integers(0, 4))):
        u = rng.normal(size=3)
        blobs.append((u / np.linalg.norm(u), rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.7)))
    ripple = (0.0, 0.02) if kind == "cyst" else (0.04, 0.12)
    modes = wave_noise(rng, 3, (0.6 * r + 2, 1.3 * r + 4), ripple)
    return dict(axes=axes, rotation=rotation, blobs=blobs, modes=modes)


def _draw_look(rng, kind: str, d: float, phase: str, liver_hu: float) -> dict:
    """Attenuation, texture, edge, rim and necrosis of one lesion in the case's phase."""
    lo, hi = lesion_contrast_range(kind, phase, liver_hu)
    contrast = rng.uniform(lo, hi)
    hu = liver_hu + contrast
    texture = {"hypovascular": (3, 8), "hypervascular": (5, 12), "cyst": (0.5, 2)}[kind]
    # heterogeneous, but never so much that parts of the lesion match the liver
    texture_hu = min(rng.uniform(*texture), 0.25 * abs(contrast))
    edge = {"hypovascular": (0.5, 2.0), "hypervascular": (0.5, 1.5), "cyst": (0, 0)}[kind]
    phases, rim_range = _RIM.get(kind, (set(), (0, 0)))
    # a thin rim (6 % of the radius) on lesions of 20 mm and more that differ from the liver
    # by 25 HU or more, so that the lesion's mean stays on the side of its core
    rim = d >= 20 and abs(contrast) >= 25 and phase in phases and rng.uniform() < 0.4
    necrosis = kind != "cyst" and d >= 28 and rng.uniform() < 0.4
    r = d / 2
    return dict(hu=hu, texture_hu=texture_hu,
                texture_waves=wave_dirs(rng, 4, (max(r / 2, 3.0), max(r, 5.0))),
                edge_mm=rng.uniform(*edge), rim=bool(rim),
                rim_hu=liver_hu + rng.uniform(*rim_range) if rim else hu,
                rim_mm=min(rng.uniform(0.8, 1.5), 0.06 * r), necrosis=bool(necrosis),
                necrosis_hu=rng.uniform(10, 35))


def draw_tumor_plans(rng, n: int, phase: str, liver_hu: float) -> list[dict]:
    """Size, kind, shape, texture and attenuation of ``n`` tumors (no position yet).

    A case has a main kind (hypovascular, hypervascular or cyst, 5:3:2); each tumor is of
    that kind with probability 0.75, else of one of the other two. Each plan: ``diameter_mm``,
    ``kind``, the shape (``axes``, ``rotation``, ``blobs``, ``modes``) and the look (``hu``,
    ``texture_hu``, ``texture_waves``, ``edge_mm``, ``rim``, ``rim_hu``, ``rim_mm``,
    ``necrosis``, ``necrosis_hu``), lengths in mm and attenuations in HU.

    Raises
    ------
    ValueError
        For an unknown phase.
    """
    main = KINDS[int(rng.choice(3, p=_KIND_P))]
    plans = []
    for _ in range(n):
        kind = main
        if rng.uniform() >= 0.75:
            kind = [k for k in KINDS if k != main][int(rng.integers(2))]
        d = _draw_size(rng)
        plan = dict(diameter_mm=d, kind=kind)
        plan.update(_draw_shape(rng, kind, d / 2))
        plan.update(_draw_look(rng, kind, d, phase, liver_hu))
        plans.append(plan)
    return plans


def place_tumors(rng, plans: list[dict], cv: Canvas) -> list[np.ndarray]:
    """Centres (x, y, z mm) for the planned tumors, inside the liver painted on ``cv``.

    A centre lies at least 80 % of the radius deep in the liver, and at least 8 mm deep (small
    tumors, painted larger on coarse grids, stay in the liver), and, when there is room, 1.2
    times the sum of the radii away from earlier tumors, so that tumors seldom touch (LiTS
    counts touching tumors as one lesion). Returns [] when no liver is painted.
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
        cand = np.argwhere(depth >= max(0.8 * r, _MIN_DEPTH_MM))
        if len(cand) == 0:
            cand = np.argwhere(depth >= depth.max() * 0.7)
        for _attempt in range(25):
            zi, yi, xi = cand[int(rng.integers(len(cand)))]
            p = np.array([g.x[xi], g.y[yi], g.z[zi]]) + rng.uniform(-2.5, 2.5, 3)
            if all(np.linalg.norm(p - q) > 1.2 * (r + rq) for q, rq in placed):
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
    """Shape field of a tumor of radius ``r`` mm at ``c``: > 0 inside, 1 - (ellipsoidal
    distance / radius) near its centre, so 1 / r per mm across its edge."""
    R = plan["rotation"].astype(F32)
    dx, dy, dz = X - F32(c[0]), Y - F32(c[1]), Z - F32(c[2])
    F = None
    for i in range(3):
        u = (R[0, i] * dx + R[1, i] * dy + R[2, i] * dz) / F32(plan["axes"][i] * r)
        F = u * u if F is None else F + u * u
    F = 1 - np.sqrt(F)
    for u, off, rad in plan["blobs"]:
        cj = c + u * r * off
        dj = 1 - np.sqrt((X - F32(cj[0])) ** 2 + (Y - F32(cj[1])) ** 2
                         + (Z - F32(cj[2])) ** 2) / F32(r * rad)
        F = np.maximum(F, dj)
    for k, ph, a in plan["modes"]:
        F = F + F32(np.linalg.norm(a)) * np.sin(F32(k[0]) * X + F32(k[1]) * Y
                                                + F32(k[2]) * Z + F32(ph))
    return F


def _lesion_values(plan: dict, F, r, Z, Y, X, under):
    """HU of the lesion where ``F > 0``: textured core, necrotic centre, rim, and an edge
    blended over ``edge_mm`` into what lies ``under`` it (the liver and its vessels)."""
    val = F32(plan["hu"]) + F32(plan["texture_hu"]) * qnoise(X, Y, Z, plan["texture_waves"])
    if plan["necrosis"]:
        val = np.where(F > 0.5, F32(plan["necrosis_hu"]), val)
    if plan["rim"]:
        val = np.where(F < plan["rim_mm"] / r, F32(plan["rim_hu"]), val)
    band = min(plan["edge_mm"], 0.15 * r) / r
    if plan["rim"]:
        band = min(band, 0.5 * plan["rim_mm"] / r)
    if band <= 0:
        return val
    w = np.clip(F / F32(band), 0, 1)
    return under + (val - under) * w


def paint_tumor(cv: Canvas, plan: dict, c) -> dict:
    """Paint one tumor centred at ``c`` (label 2, clipped to the liver and earlier tumors).

    The label marks exactly the voxels whose HU the tumor changed. Tumors smaller than 2.2
    voxels are painted at 2.2 voxels, so that they stay visible on coarse grids. Returns its
    record: ``centre_xyz`` (mm), ``diameter_mm`` (as painted), ``kind``, ``rim``, ``hu``
    (mean HU painted, before blur and noise), ``voxels``.
    """
    g = cv.grid
    min_d = 2.2 * float(max(g.x[1] - g.x[0], g.z[1] - g.z[0] if g.z.size > 1 else 1.0))
    r = max(plan["diameter_mm"], min_d) / 2
    rec = dict(centre_xyz=c, diameter_mm=float(2 * r), kind=plan["kind"], rim=plan["rim"],
               hu=float(plan["hu"]), voxels=0)
    ext = r * 1.6 * max(plan["axes"]) + 2
    bb = g.box(c - ext, c + ext)
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
        F = np.maximum(F, F32(1.0) * region)
    val = _lesion_values(plan, F, r, Z, Y, X, cv.hu[bb])
    cv.paint(bb, region, val, label=2, occupy=True)
    nvox = int(region.sum())
    if nvox:
        rec.update(hu=float(np.broadcast_to(val, region.shape)[region].mean()), voxels=nvox)
    return rec
