"""The spine (vertebral bodies, discs, canal, posterior elements) and the lower ribs."""

from __future__ import annotations

import numpy as np

from .body import Body
from .canvas import F32, Canvas
from .noise import qnoise, wave_dirs
from .tubes import paint_tube


class Spine:
    """Lower thoracic and lumbar spine, its position along z and its bone texture.

    Attributes (mm)
    ---------------
    x_mm
        Lateral offset of the spine from the body's midline.
    top_radius_mm
        Vertebral body radius at z = 0; it grows caudally (:meth:`radius_mm`).
    depth_mm
        Depth of the vertebral body centre under the posterior skin.
    lordosis_mm
        Forward bow of the lumbar spine.
    level_mm, level_origin_z_mm
        Height of one vertebra (disc included), and the z of one disc's upper surface.
    spinous_mm, canal_radius_mm
        Length of the spinous processes, radius of the spinal canal.
    trabecular_waves
        Plane waves (:func:`.noise.wave_dirs`) of the marrow texture.
    """

    def __init__(self, rng, body: Body):
        self.body = body
        self.x_mm = rng.uniform(-4, 4)
        self.top_radius_mm = rng.uniform(16.5, 20.5)
        self.depth_mm = body.fat_mm[0] + rng.uniform(70, 80)
        self.lordosis_mm = rng.uniform(0, 12)
        self.level_mm = rng.uniform(26, 31)
        self.level_origin_z_mm = rng.uniform(-108, -85)
        self.spinous_mm = rng.uniform(28, 38)
        self.canal_radius_mm = rng.uniform(8, 10)
        self.trabecular_waves = wave_dirs(rng, 9, (2.0, 5.0))

    def radius_mm(self, z):
        """Vertebral body radius (mm) at height z (mm)."""
        return self.top_radius_mm + 0.03 * np.clip(-np.asarray(z, float), -40, 260)

    def centre_y_mm(self, z):
        """y (mm) of the vertebral body centre at height z (mm)."""
        z = np.asarray(z, float)
        b = self.body
        return (b.posterior_half_depth_mm * b.scale(z) - self.depth_mm
                + self.lordosis_mm * ((z + 80) / 150) ** 2)


def _posterior_elements(sp: Spine, Z, dx, dyc, yz, yc, ph, disc_t):
    """Signed distance (mm) to the arch, spinous and transverse processes, and to the canal."""
    rc, P, b = sp.canal_radius_mm, sp.level_mm, sp.body
    rr = np.sqrt(dx * dx + (dyc * 1.15) ** 2)
    canal = rr - rc
    arch = np.maximum(rr - (rc + 6), -canal)
    arch = np.where(dyc < -rc * 0.9, F32(99), arch)
    skin_y = (F32(b.posterior_half_depth_mm) * b.scale(Z) - F32(b.fat_mm[0] + 14)) - yz - yc
    spin_end = np.minimum(F32(rc + sp.spinous_mm), skin_y)
    spin = np.maximum(np.abs(dx) - 3.5 + 0.04 * dyc, np.maximum(rc + 2 - dyc,
                                                                dyc - spin_end))
    spin = np.where((ph > disc_t + 3) & (ph < P - 1), spin, F32(99))
    wtp = np.where(Z > -100, F32(26), F32(36))
    tp = np.maximum(np.abs(dyc + 1) - 3.2 + 0.06 * np.abs(dx), np.abs(dx) - wtp)
    tp = np.where((ph > 0.4 * P) & (ph < 0.7 * P), tp, F32(99))
    return np.minimum(np.minimum(arch, spin), tp), canal


def paint_spine(cv: Canvas, sp: Spine, hu: dict) -> None:
    """Vertebral bodies with cortex, endplates and marrow, discs, canal, posterior elements."""
    g = cv.grid
    zs = g.z
    R = sp.radius_mm(zs)
    yv = sp.centre_y_mm(zs)
    rc = sp.canal_radius_mm
    bb = g.box((sp.x_mm - 60, float((yv - R).min()) - 3, zs[0]),
               (sp.x_mm + 60, float((yv + R).max()) + rc * 2 + sp.spinous_mm + 15, zs[-1]))
    if bb is None:
        return
    Z, Y, X = g.coords(bb)
    Rz = R[bb[0]].astype(F32)[:, None, None]
    yz = yv[bb[0]].astype(F32)[:, None, None]
    dx = X - F32(sp.x_mm)
    dy = Y - yz
    P = sp.level_mm
    ph = np.mod(Z - F32(sp.level_origin_z_mm), F32(P))
    disc_t = np.clip(5 + 0.03 * (-Z - 40), 4, 10)
    disc = ph < disc_t
    endplate = (ph < disc_t + 1.3) | (ph > P - 1.3)
    vb = np.maximum(np.sqrt(dx * dx + (dy * 1.08) ** 2) - Rz, dy - 0.6 * Rz)
    yc = Rz + rc + 3
    post, canal = _posterior_elements(sp, Z, dx, dy - yc, yz, yc, ph, disc_t)
    trab = F32(22) * qnoise(X, Y, Z, sp.trabecular_waves)
    cv.paint(bb, post < 0, hu["bone"] * 0.85)
    cv.paint(bb, post < -1.4, F32(hu["marrow"] + 40) + trab)
    cv.paint(bb, canal < 0, hu["canal"])
    cv.paint(bb, (vb < 0) & disc, hu["disc"])
    cv.paint(bb, (vb < 0) & ~disc, hu["bone"])
    cv.paint(bb, (vb < -1.8) & ~disc & ~endplate, F32(hu["marrow"]) + trab)


# angle (rad from posterior) at which ribs 5 to 12 end: the lower ribs are shorter
_RIB_ENDS = {5: 2.95, 6: 2.9, 7: 2.85, 8: 2.6, 9: 2.45, 10: 2.3, 11: 1.85, 12: 1.35}


class Ribs:
    """Ribs 5 to 12 on both sides and the xiphoid process.

    ``ribs``: per rib ``(number, drop mm, radius mm, (z left, z right) of the head mm)``;
    ``xiphoid_z_mm``: height of the xiphoid's lower tip.
    """

    def __init__(self, rng):
        self.ribs = []
        for n in range(5, 13):
            drop = rng.uniform(22, 32)
            r = rng.uniform(2.7, 3.5)
            zs = tuple(rng.uniform(-3, 3) for _side in (-1, 1))
            self.ribs.append((n, drop, r, zs))
        self.xiphoid_z_mm = rng.uniform(-45, -20)

    def paint(self, cv: Canvas, body: Body, sp: Spine, hu: dict) -> None:
        """Paint the ribs (bone shell, marrow, costal cartilage in front) and the xiphoid."""
        def inside(bb2):
            return cv.maps.box(bb2).depth(cv.grid.coords(bb2)[0]) > body.skin_mm + 1

        z12 = sp.level_origin_z_mm + sp.level_mm * 0.5
        for n, drop, r, zjit in self.ribs:
            z0 = z12 + (12 - n) * sp.level_mm
            for side, dz in zip((-1, 1), zjit, strict=True):
                pts = self._path(body, sp, n, side, z0 + dz, drop, r)
                n_cart = 4 if _RIB_ENDS[n] > 2.2 else 0
                bone = pts[: len(pts) - n_cart]
                paint_tube(cv, bone, np.full(len(bone), r),
                           [(0, hu["bone"] * 0.9, 0, True), (1.3, hu["marrow"], 0, True)],
                           clip=inside)
                if n_cart:
                    cart = pts[len(pts) - n_cart - 1:]
                    paint_tube(cv, cart, np.full(len(cart), r * 0.95),
                               [(0, hu["cartilage"], 0, True)], clip=inside)
        zx = self.xiphoid_z_mm
        x0, y0 = body.ray_point(np.pi, 1, zx, body.wall(np.pi, zx)[1] - 5)
        paint_tube(cv, [(x0, y0, zx), (x0, y0 - 2, zx + 50)], [4, 6],
                   [(0, hu["bone"] * 0.7, 0, True), (1.5, hu["marrow"], 0, True)], clip=inside)

    @staticmethod
    def _path(body: Body, sp: Spine, n, side, zb, drop, r):
        """Centre line (k, 3) of one rib: head at the spine, then along the inside of the wall."""
        psis = np.linspace(0.45, _RIB_ENDS[n], 14)
        zz = zb - drop * (psis - 0.45) ** 1.6
        pts = []
        for p, z in zip(psis, zz, strict=True):
            _, w = body.wall(side * p, z)
            x, y = body.ray_point(p, side, z, w - r - 2.0)
            pts.append((x, y, z))
        yv = float(sp.centre_y_mm(zb))
        Rv = float(sp.radius_mm(zb))
        head = [(sp.x_mm + side * Rv * 0.75, yv + Rv * 0.55, zb + 3),
                (sp.x_mm + side * (Rv + 22), yv + Rv + sp.canal_radius_mm + 2, zb + 2)]
        return np.array(head + pts)
