"""The geometry of a synthetic case: field of view, voxel grid, orientation on disk, affine.

Dependence on the matrix ``size``
---------------------------------
For every case a field of view ``fov`` (340-460 mm), a *reference* slice thickness ``t512``
(drawn from 0.7, 1, 1.5, 2, 2.5, 3, 5 mm, mostly 1-2.5) and a z coverage (200-240 mm, from
15-35 mm above the right diaphragm dome down past the kidneys) are drawn; they do not depend
on ``size``. Then

* in-plane spacing = ``fov / size`` (rows = columns = ``size``): 0.66-0.9 mm at 512,
  2.7-3.6 mm at 128, 5.3-7.2 mm at 64, so the body always fits the image;
* slice thickness = ``t512`` for ``size >= 512``; for smaller sizes
  ``max(t512, min(t512 * 512 / size, 1.5 * in-plane spacing))``, i.e. it grows with the
  in-plane spacing up to 1.5 times it (never thinner than ``t512``);
* number of slices = ``round(coverage / slice thickness)`` (about 40-340 at 512,
  about 40-90 at 128, about 20-45 at 64).

Orientation: arrays in memory are canonical ``('P', 'L', 'S')`` (see
:mod:`livertumor.data.volumes`); on disk each case is stored with its own axis codes, as LiTS
files are: mostly ``('L', 'P', 'S')``, some ``('R', 'A', 'S')``, ``('L', 'P', 'I')`` and
permuted orders (``('P', 'L', 'S')``, ``('A', 'R', 'S')``).

Every block of 8 consecutive case ids holds each orientation kind and each tumor-count kind
(0, 1, 1, 2, 3, 4, 6, random) once, and every contrast phase (portal venous three times, late
arterial and unenhanced twice, delayed once), in orders shuffled by the seed.
"""

from __future__ import annotations

import numpy as np

from ..data.volumes import canonical_affine_for
from .anatomy import Grid
from .anatomy.body import Body

_THICKNESSES = (0.7, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0)
_THICKNESS_P = (0.06, 0.18, 0.2, 0.2, 0.16, 0.1, 0.1)
_ORIENT_KINDS = ("LPS", "LPS", "LPS", "LPS", "RAS", "LPI", "permuted", "any")
_TUMOR_KINDS = (0, 1, 1, 2, 3, 4, 6, -1)
# portal venous the most common, as in LiTS; every phase in every block of 8 case ids
_PHASE_KINDS = ("portal venous", "portal venous", "portal venous", "late arterial",
                "late arterial", "delayed", "unenhanced", "unenhanced")


def _orientation(kind: str, rng) -> tuple[str, str, str]:
    if kind == "any":
        kind = str(rng.choice(["LPS", "LPS", "RAS", "LPI"]))
    if kind == "permuted":
        return tuple(rng.choice(["PLS", "ARS", "SPL", "LSP"]))
    return tuple(kind)


def _block_kinds(seed: int, case_id: int) -> tuple[str, int, str]:
    """Orientation kind, tumor count and contrast phase of a case, balanced within blocks of
    8 case ids."""
    rb = np.random.default_rng([seed, case_id // 8, 7919])
    o = _ORIENT_KINDS[rb.permutation(8)[case_id % 8]]
    t = _TUMOR_KINDS[rb.permutation(8)[case_id % 8]]
    p = _PHASE_KINDS[rb.permutation(8)[case_id % 8]]
    return o, t, p


def case_geometry(case_id: int, seed: int, size: int) -> dict:
    """Draw the geometry of a case (see the module docstring for the size rule).

    Returns
    -------
    dict with ``fov`` (mm), ``t512`` (slice thickness at 512, mm), ``spacing`` (row, col,
    slice mm), ``n_slices``, ``z_top`` (mm above the right diaphragm dome), ``coverage``
    (nominal z extent, mm), ``axcodes``, ``n_tumors``, ``phase`` (contrast phase, one of
    :data:`.anatomy.tissues.PHASES`), ``world_centre`` (RAS x, y of the image
    centre and z of the coverage's lower end, mm), ``centre_jitter`` (anatomical (x, y) shift
    of the image centre, mm), ``blur_mm``, ``noise_hu`` (standard deviation per voxel: 10-20
    HU on the 512 grid, scaled by the square root of the voxel volume ratio for other
    sizes), ``noise_corr_px``, ``fov_circle`` (bool).
    """
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    rng = np.random.default_rng([seed, case_id])
    fov = rng.uniform(340, 460)
    t512 = float(rng.choice(_THICKNESSES, p=_THICKNESS_P))
    coverage = rng.uniform(200, 240)
    z_top = rng.uniform(15, 35)
    sp = fov / size
    if size >= 512:
        thick = t512
    else:
        thick = max(t512, min(t512 * 512 / size, 1.5 * sp))
    n_slices = max(int(round(coverage / thick)), 8)
    okind, n_tumors, phase = _block_kinds(seed, case_id)
    axcodes = _orientation(okind, rng)
    if n_tumors < 0:
        n_tumors = int(rng.integers(0, 9))
    world_centre = (rng.uniform(-25, 25), rng.uniform(-40, 60), rng.uniform(-700, 50))
    jitter = (rng.uniform(-12, 12), rng.uniform(-6, 6))
    blur_mm, noise_512 = rng.uniform(0.6, 1.0), rng.uniform(10, 20)
    # Quantum noise falls with the square root of the voxel volume at a given dose: the drawn
    # 10-20 HU hold for the 512 matrix and its slices, larger voxels are less noisy.
    noise_hu = noise_512 * np.sqrt((fov / 512) ** 2 * t512 / (sp * sp * thick))
    return dict(
        fov=fov, t512=t512, spacing=(sp, sp, thick), n_slices=n_slices, z_top=z_top,
        coverage=coverage,
        axcodes=axcodes, n_tumors=int(n_tumors), phase=phase, world_centre=world_centre,
        centre_jitter=jitter, blur_mm=blur_mm, noise_hu=float(noise_hu),
        noise_corr_px=rng.uniform(0.55, 0.85), fov_circle=bool(rng.uniform() < 0.6),
    )


def case_grid(geo: dict, body: Body, size: int) -> Grid:
    """Voxel centres of a case in anatomical mm: the body centred in the image."""
    sp, _, ss = geo["spacing"]
    b = body
    # the image centre in anatomical coordinates: body centred laterally, and in the AP
    # direction the span from the anterior skin to the table is centred
    ymid = (b.posterior_half_depth_mm * 1.06 + 45 - b.anterior_half_depth_mm * 1.05) / 2
    cx, cy = geo["centre_jitter"][0], ymid + geo["centre_jitter"][1]
    idx = np.arange(size) - (size - 1) / 2
    x = idx * sp + cx
    y = idx * sp + cy
    nz = geo["n_slices"]
    z = geo["z_top"] - (nz - 1) * ss + np.arange(nz) * ss
    return Grid(x=x, y=y, z=z)


def case_affine(geo: dict, grid: Grid) -> np.ndarray:
    """Voxel-to-world (RAS+, mm) affine of a case's canonical arrays on ``grid``."""
    sp, _, ss = geo["spacing"]
    n = grid.x.size
    wx, wy, wz = geo["world_centre"]
    # canonical columns step towards -x (left), rows towards -y (posterior); along z, world
    # wz is the anatomical z_top - coverage, so a point of the anatomy has the same world
    # coordinates whatever the number of slices the coverage was rounded to
    origin = (wx + sp * (n - 1) / 2, wy + sp * (n - 1) / 2,
              wz + float(grid.z[0]) - (geo["z_top"] - geo["coverage"]))
    return canonical_affine_for((sp, sp, ss), origin)
