"""The liver: its implicit shape, its portal and hepatic vein trees, and how it is painted."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .body import Body, Diaphragm, maps_for
from .canvas import F32, Canvas
from .noise import displace, mottle, wave_noise
from .shapes import ellipsoid, eval_smooth, rot, smax, smin
from .skeleton import Spine
from .tubes import branch_tree, paint_tube
from .vessels import Vessels


class LiverShape:
    """Implicit liver: right lobe, left lobe and caudate blended, deformed, clipped.

    The shape is the smooth union of three ellipsoids (right lobe, left lobe crossing the
    midline in front of the stomach, caudate by the IVC), deformed by a random smooth
    displacement, hollowed below by a concave visceral surface, and intersected with
    the abdominal cavity (2 mm inside the muscle wall) and the space under the diaphragm.
    The lobes are scaled about the right lobe's centre by ``scale`` (:meth:`calibrate`).
    """

    def __init__(self, rng, body: Body, dia: Diaphragm, spine: Spine, ves: Vessels):
        self.body, self.dia, self.spine, self.ves = body, dia, spine, ves
        aw, aa, ap = body.cavity_half_width_mm, body.cavity_anterior_mm, body.cavity_posterior_mm
        # right lobe tilted: its lower tip lateral and anterior, its top medial and posterior
        self.right_lobe = ((-0.45 * aw, 0.05 * (ap - aa), -70 + rng.uniform(-8, 8)),
                           (0.6 * aw * rng.uniform(0.85, 1.1),
                            0.52 * (aa + ap) * rng.uniform(0.85, 1.0), rng.uniform(80, 100)),
                           rot(pitch=rng.uniform(0.2, 0.45), roll=-rng.uniform(0.15, 0.4)))
        ll_size = rng.uniform(0.7, 1.25)
        self.left_lobe = ((0.12 * aw * ll_size, -0.52 * aa, -40 + rng.uniform(-8, 5)),
                          (0.48 * aw * ll_size, 0.3 * aa, 40 * rng.uniform(0.85, 1.15)),
                          rot(yaw=rng.uniform(-0.25, 0.05)))
        ix, iy = ves.ivc_xy(-55)
        self.caudate = ((ix + 14, iy - 14, -55.0), (20, 22, 32))
        # concave visceral surface: room for the kidney, duodenum and hepatic flexure
        self.visceral_notch = ((-0.15 * aw + rng.uniform(-10, 10), 0.25 * ap,
                                -rng.uniform(175, 200)),
                               (rng.uniform(60, 80), rng.uniform(60, 80), rng.uniform(55, 70)))
        self.modes = wave_noise(rng, 3, (120, 260), (5, 10))
        self.scale = 1.0
        self.pivot = np.array(self.right_lobe[0])

    def extent(self):
        """Box ``(lo, hi)`` (x, y, z mm) that holds the liver."""
        b = self.body
        return (np.array([-b.half_width_mm, -b.anterior_half_depth_mm, -260.0]),
                np.array([0.75 * b.half_width_mm, b.posterior_half_depth_mm, 15.0]))

    def field(self, Z, Y, X):
        """Approximate signed distance to the liver surface (mm), on broadcast coordinates."""
        fs = maps_for(self.body, self.dia, np.asarray(Y).ravel(), np.asarray(X).ravel())
        Xd, Yd, Zd = displace(X, Y, Z, self.modes)
        s = F32(self.scale)
        pv = self.pivot.astype(F32)
        Xs, Ys, Zs = (pv[0] + (Xd - pv[0]) / s, pv[1] + (Yd - pv[1]) / s,
                      pv[2] + (Zd - pv[2]) / s)
        f = ellipsoid(Xs, Ys, Zs, *self.right_lobe)
        f = smin(f, ellipsoid(Xs, Ys, Zs, *self.left_lobe), 18.0)
        f = smin(f, ellipsoid(Xs, Ys, Zs, *self.caudate), 10.0) * s
        f = smax(f, -ellipsoid(Xd, Yd, Zd, *self.visceral_notch), 15.0)
        # retroperitoneum: no liver around the spine, nor left of it behind the aorta
        zf = np.asarray(Z, float)
        R = self.spine.radius_mm(zf).astype(F32)
        yv = self.spine.centre_y_mm(zf).astype(F32)
        xs = F32(self.spine.x_mm)
        _, ay = self.ves.aorta_xy(zf)
        e = (np.sqrt(((X - xs) / (R + 26)) ** 2 + ((Y - yv) / (R + 20)) ** 2) - 1) * (R + 20)
        f = smax(f, -e, 6.0)
        f = np.maximum(f, np.minimum(X - (xs + 12), Y - (np.asarray(ay, F32) - 6)))
        f = np.maximum(f, fs.cavity_sdf(Z) + 2.0)
        return np.maximum(f, fs.above_diaphragm(Z) + 4.5)

    def coarse(self, step=5.0):
        """Inside mask on a ``step`` mm lattice over :meth:`extent`, (z, y, x) bool, and the
        lattice's axes ``[x, y, z]`` (1-D, mm)."""
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


class Liver:
    """The case's liver: shape, target volume, ligamentum teres fissure, parenchymal mottle.

    ``target_ml`` is the volume aimed at before other organs carve their share out of it.
    """

    def __init__(self, rng, body: Body, dia: Diaphragm, spine: Spine, ves: Vessels):
        self.shape = LiverShape(rng, body, dia, spine, ves)
        self.body = body
        self.target_ml = rng.uniform(1250, 1950)
        self.fissure = rng.uniform() < 0.7
        self.mottle_mm = rng.uniform(6, 12)
        self.mottle_phase = rng.uniform(0, 6.3, 3)

    def paint(self, cv: Canvas, hu: dict, fit: bool = False) -> bool:
        """Paint the liver (label 1) where no other organ is; False if it misses the grid.

        With ``fit``, first scale the shape to :attr:`target_ml`, and once more to make up for
        the share other organs painted on ``cv`` carve out of it; without, paint the shape at
        the scale last fitted.
        """
        g, lm = cv.grid, self.shape
        if fit:
            lm.calibrate(self.target_ml)
        bb = g.box(*lm.extent())
        if bb is None:
            return False
        free = cv.cav[bb] & ~cv.occ[bb]
        whole = eval_smooth(lm.field, g, bb) < 0
        liver = whole & free
        kept = liver.sum() / max(int(whole.sum()), 1)
        if fit and kept <= 0.92:
            lm.calibrate(self.target_ml / max(kept, 0.6))
            liver = (eval_smooth(lm.field, g, bb) < 0) & free
        # keep the largest connected piece (carving may leave islands)
        lab, n = ndimage.label(liver)
        if n > 1:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            liver = lab == int(np.argmax(sizes))
        Z, Y, X = g.coords(bb)
        tex = F32(4) * mottle(X, Y, Z, self.mottle_mm, self.mottle_phase)
        cv.paint(bb, liver, F32(hu["liver"]) + tex, label=1, occupy=True)
        # fissure for the ligamentum teres (fat cleft, not liver)
        if self.fissure:
            aw, aa = self.body.cavity_half_width_mm, self.body.cavity_anterior_mm
            xf = 0.08 * aw
            fis = (np.abs(X - F32(xf) + 0.25 * (Y + F32(aa))) < 1.6) & (
                Y < F32(-0.25 * aa)) & (Z < -25)
            cv.paint(bb, liver & fis, hu["vfat"], label=0)
        return True


class LiverVeins:
    """Portal vein branches from the porta hepatis and hepatic veins from the IVC below the
    diaphragm, as :func:`.tubes.branch_tree` segment lists (drawn once, grid-independent)."""

    def __init__(self, rng, ves: Vessels):
        ph = ves.porta_hepatis
        self.portal = [
            branch_tree(rng, ph, (-1, 0.15, 0.35), rng.uniform(26, 34), 6.0, 4),
            branch_tree(rng, ph, (0.9, -0.8, 0.35), rng.uniform(30, 38), 5.0, 4),
            branch_tree(rng, ph, (-0.6, 0.5, -0.6), rng.uniform(22, 30), 4.5, 3),
        ]
        top = np.array([*ves.ivc_xy(-18), -18.0])
        spread = (0.25, 0.6)
        self.hepatic = [
            branch_tree(rng, top + (-6, 0, 0), (-1, 0.15, -0.45), rng.uniform(36, 46), 5.5, 3,
                        spread=spread),
            branch_tree(rng, top + (0, -6, 0), (-0.35, -1, -0.55), rng.uniform(34, 44), 5.0, 3,
                        spread=spread),
            branch_tree(rng, top + (6, -4, 0), (0.7, -0.9, -0.25), rng.uniform(30, 40), 4.5, 3,
                        spread=spread),
        ]

    def paint(self, cv: Canvas, hu: dict) -> None:
        """Paint the veins inside the painted liver (their label stays liver)."""
        def in_liver(bb2):
            return cv.lab[bb2] == 1

        for trees, v in ((self.portal, hu["portal"]), (self.hepatic, hu["hepatic"])):
            for tree in trees:
                for p0, p1, r0, r1, _ in tree:
                    paint_tube(cv, [p0, p1], [r0, r1], [(0, v, None, True)], clip=in_liver)
