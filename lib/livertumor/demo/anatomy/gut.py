"""The gut: oesophagus, stomach, duodenum, colon, small bowel loops and mesenteric vessels."""

from __future__ import annotations

import numpy as np

from .body import Body
from .canvas import F32, Canvas
from .noise import qnoise, wave_dirs
from .skeleton import Spine
from .tubes import paint_tube, split_chain


def below_diaphragm(cv: Canvas, margin=4.0):
    """Clip function: inside the body cavity and ``margin`` mm below the diaphragm."""
    def clip(bb):
        Z = cv.grid.coords(bb)[0]
        return cv.cav[bb] & (cv.maps.box(bb).above_diaphragm(Z) < -margin)
    return clip


class Stomach:
    """Stomach from the fundus under the left dome to the pylorus; air above ``level_y_mm``."""

    def __init__(self, rng, body: Body):
        aw, aa, ap = body.cavity_half_width_mm, body.cavity_anterior_mm, body.cavity_posterior_mm
        self.level_y_mm = -aa * rng.uniform(0.05, 0.4)
        self.size = rng.uniform(0.65, 1.0)
        self.path_mm = np.array([
            (0.42 * aw, 0.35 * ap, -38 + rng.uniform(-8, 4)),
            (0.48 * aw, 0.05 * ap, -62),
            (0.4 * aw, -0.2 * aa, -88),
            (0.16 * aw, -0.4 * aa, -105),
            (-0.06 * aw, -0.32 * aa, -102)]) + rng.normal(0, 5, (5, 3))
        self.radii_mm = np.array([36, 33, 28, 20, 11]) * self.size

    def paint(self, cv: Canvas, spine: Spine, hu: dict) -> None:
        """Stomach (wall, fluid and air), and the oesophagus down to the cardia."""
        lev = self.level_y_mm

        def content(Z, Y, X):
            return np.where(Y < F32(lev), F32(-1000), F32(hu["fluid"] + 8))

        paint_tube(cv, self.path_mm, self.radii_mm,
                   [(0, hu["bowel_wall"] + 10, 0, True), (4.0, content, 0, True)],
                   clip=below_diaphragm(cv, 4.0))
        top = np.array([spine.x_mm + 8,
                        float(spine.centre_y_mm(40) - spine.radius_mm(40)) - 14, 80.0])
        card = self.path_mm[0] * 0.6 + self.path_mm[1] * 0.4 + (-20, 0, -5)
        paint_tube(cv, [top, (top[0] + 4, top[1] - 6, -25), card], [8, 8, 10],
                   [(0, hu["muscle"] - 5, 0, True), (5.5, -300, 0, True)],
                   clip=lambda bb2: cv.cav[bb2])


class Duodenum:
    """C-loop from the pylorus around the pancreatic head, ``radius_mm`` past the bulb."""

    def __init__(self, rng):
        self.radius_mm = rng.uniform(9, 13)

    def paint(self, cv: Canvas, stomach: Stomach, spine: Spine, hu: dict) -> None:
        pyl = stomach.path_mm[-1]
        R = float(spine.radius_mm(-140))
        yv = float(spine.centre_y_mm(-140)) - R
        x0 = spine.x_mm
        path = [pyl, pyl + (-18, 15, -8), (pyl[0] - 30, yv - 25, -120),
                (pyl[0] - 25, yv - 20, -150), (x0, yv - 28, -158), (x0 + 30, yv - 28, -145)]
        paint_tube(cv, path, [11] + [self.radius_mm] * 5,
                   [(0, hu["bowel_wall"], 0, True), (2.5, hu["fluid"] + 5, 0, True)],
                   clip=below_diaphragm(cv, 4.0))


class Colon:
    """Ascending colon, hepatic flexure, transverse colon, splenic flexure, descending colon;
    haustra, stool with gas bubbles, air above ``level_y_mm``."""

    def __init__(self, rng, body: Body):
        aw, aa, ap = body.cavity_half_width_mm, body.cavity_anterior_mm, body.cavity_posterior_mm
        bottom = -300.0
        zhf = rng.uniform(-140, -110)
        zsf = rng.uniform(-85, -60)
        self.hepatic_flexure_z_mm = zhf
        pts = np.array([
            (-0.62 * aw, 0.1 * ap, bottom), (-0.64 * aw, 0.05 * ap, zhf - 40),
            (-0.6 * aw, -0.1 * aa, zhf), (-0.45 * aw, -0.45 * aa, zhf + 5),
            (-0.15 * aw, -0.62 * aa, zhf - 25), (0.25 * aw, -0.62 * aa, zhf - 15),
            (0.58 * aw, -0.25 * aa, zsf), (0.7 * aw, 0.1 * ap, zsf - 25),
            (0.68 * aw, 0.15 * ap, zsf - 80), (0.66 * aw, 0.15 * ap, bottom)])
        pts[1:-1] += rng.normal(0, 7, (len(pts) - 2, 3))
        rad = np.array([26, 24, 24, 24, 22, 22, 20, 17, 16, 16]) * rng.uniform(0.8, 1.15)
        # haustra: resample every ~7 mm with a radius ripple
        self.path_mm, frad = split_chain(pts, rad, 7.0)
        self.radii_mm = frad * (1 + 0.12 * np.sin(np.arange(len(frad)) * 2 * np.pi / 4.0))
        self.level_y_mm = -aa * rng.uniform(0.0, 0.45)
        self.stool_hu = rng.uniform(-80, 20)
        self.stool_waves = wave_dirs(rng, 7, (5, 11))
        self.gas_threshold = rng.uniform(0.9, 1.5)

    def paint(self, cv: Canvas, hu: dict) -> None:
        level, base, thr, dirs = (self.level_y_mm, self.stool_hu, self.gas_threshold,
                                  self.stool_waves)

        def stool(Z, Y, X):
            m = qnoise(X, Y, Z, dirs)
            v = np.where(m > thr, F32(-900), F32(base) + F32(25) * m)
            return np.where(Y < F32(level), F32(-1000), v)

        paint_tube(cv, self.path_mm, self.radii_mm,
                   [(0, hu["bowel_wall"], 0, False), (2.5, stool, 0, False)],
                   clip=below_diaphragm(cv, 5.0))


class SmallBowel:
    """Loops as random walks in the lower central abdomen, and mesenteric vessels among them.

    ``loops``: per loop ``(path (k, 3) mm, radius mm, kind, content draw, air level y mm)``,
    kind in [0, 1): below 0.5 oral contrast (when given), below 0.75 fluid, else collapsed.
    ``mesenteric``: per vessel ``(p0, p1, radius mm)``.
    """

    def __init__(self, rng, body: Body, colon: Colon):
        aw, aa, ap = body.cavity_half_width_mm, body.cavity_anterior_mm, body.cavity_posterior_mm
        self.lo = np.array([-0.5 * aw, -0.85 * aa, -250.0])
        self.hi = np.array([0.6 * aw, 0.3 * ap, colon.hepatic_flexure_z_mm + 5])
        lo, hi = self.lo, self.hi
        self.loops = []
        for _ in range(int(rng.integers(16, 26))):
            p = lo + (hi - lo) * rng.uniform(0.1, 0.9, 3)
            d = rng.normal(size=3)
            chain = [p.copy()]
            for _ in range(int(rng.integers(5, 10))):
                d = d / np.linalg.norm(d) + rng.normal(0, 0.7, 3)
                d /= np.linalg.norm(d)
                p = np.clip(p + d * rng.uniform(16, 26), lo, hi)
                chain.append(p.copy())
            r = rng.uniform(8, 14)
            kind = rng.uniform()
            u = rng.random()
            lev = chain[0][1] - r * rng.uniform(0.3, 2.0)
            self.loops.append((np.array(chain), r, kind, u, lev))
        self.mesenteric = []
        for _ in range(24):
            p0 = lo + (hi - lo) * rng.uniform(0.1, 0.9, 3)
            p1 = p0 + rng.normal(0, 1, 3) * 20
            self.mesenteric.append((p0, p1, rng.uniform(0.8, 2.2)))

    @staticmethod
    def _content_hu(kind, u, oral_contrast, hu):
        if oral_contrast and kind < 0.5:
            return hu["oral"] * (0.7 + 0.3 * u)
        if kind < 0.75:
            return hu["fluid"] - 5 + 20 * u
        return 30 + 25 * u   # collapsed loop, wall and mucus

    def paint(self, cv: Canvas, hu: dict, oral_contrast: bool) -> None:
        clip = below_diaphragm(cv, 5.0)
        for chain, r, kind, u, lev in self.loops:
            content = self._content_hu(kind, u, oral_contrast, hu)

            def lumen(Z, Y, X, content=content, lev=lev):
                return np.where(Y < F32(lev), F32(-1000), F32(content))

            paint_tube(cv, chain, [r] * len(chain),
                       [(0, hu["bowel_wall"], 0, False), (2.0, lumen, 0, False)], clip=clip)
        for p0, p1, r in self.mesenteric:
            paint_tube(cv, [p0, p1], [r, r], [(0, hu["portal"] * 0.9, 0, False)],
                       clip=lambda bb2: clip(bb2) & (cv.hu[bb2] < -50))
