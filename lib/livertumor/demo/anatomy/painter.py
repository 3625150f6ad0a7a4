"""One case's anatomy: every random part drawn once, then painted on a voxel grid in order."""

from __future__ import annotations

import zlib

import numpy as np

from .body import Body, BodyMaps, Diaphragm, Table, paint_body_wall
from .canvas import Canvas, Grid
from .gut import Colon, Duodenum, SmallBowel, Stomach
from .liver import Liver, LiverVeins
from .organs import Gallbladder, Pancreas, Spleen, draw_kidneys, paint_kidney
from .skeleton import Ribs, Spine, paint_spine
from .thorax import Heart, LungVessels, paint_thorax
from .tissues import draw_tissue_hu
from .tumors import draw_tumor_plans, paint_tumor, place_tumors
from .vessels import Vessels, paint_crura_and_psoas, paint_vessels


def organ_rng(seed: int, case_id: int, part: str) -> np.random.Generator:
    """The random generator of one part of one case.

    ``numpy.random.default_rng([seed, case_id, key])`` with ``key`` the CRC-32 of the part's
    name, so that each part draws from its own stream: a change to how one part is drawn
    leaves every other part of the case as it was.
    """
    return np.random.default_rng([seed, case_id, zlib.crc32(part.encode("ascii"))])


class Anatomy:
    """All random anatomy and tissue parameters of one case, and the painter.

    Every draw is made here, each part from its own generator (:func:`organ_rng`), never
    from the voxel grid, so the anatomy does not depend on the matrix size.

    Parameters
    ----------
    seed, case_id : int
    fov : float
        In-plane field of view (mm); the body is sized to fit it.
    n_tumors : int
        Number of liver tumors to place.
    phase : str
        Contrast phase, one of :data:`.tissues.PHASES`; sets the tissue values and how the
        tumors look.

    Raises
    ------
    ValueError
        For an unknown phase.
    """

    def __init__(self, seed: int, case_id: int, fov: float, n_tumors: int = 0,
                 phase: str = "portal venous"):
        def rng(part):
            return organ_rng(seed, case_id, part)

        self.body = Body(rng("body"), fov)
        self.diaphragm = Diaphragm(rng("diaphragm"), self.body)
        self.phase = phase
        self.tissue_hu, self.oral_contrast = draw_tissue_hu(rng("tissues"), phase)
        self.spine = Spine(rng("spine"), self.body)
        self.vessels = Vessels(rng("vessels"), self.body, self.spine)
        self.kidneys = draw_kidneys(rng("kidneys"))
        self.spleen = Spleen(rng("spleen"), self.body)
        self.gallbladder = Gallbladder(rng("gallbladder"), self.body)
        self.stomach = Stomach(rng("stomach"), self.body)
        self.pancreas = Pancreas(rng("pancreas"))
        self.heart = Heart(rng("heart"), self.body)
        self.colon = Colon(rng("colon"), self.body)
        self.small_bowel = SmallBowel(rng("small bowel"), self.body, self.colon)
        self.duodenum = Duodenum(rng("duodenum"))
        self.lung_vessels = LungVessels(rng("lung vessels"), self.body)
        self.liver = Liver(rng("liver"), self.body, self.diaphragm, self.spine, self.vessels)
        self.liver_veins = LiverVeins(rng("liver veins"), self.vessels)
        self.tumor_plans = draw_tumor_plans(rng("tumors"), int(n_tumors), phase,
                                            self.tissue_hu["liver"])
        self._placement_rng = rng("tumor placement")
        self.tumor_centres: list[np.ndarray] = []
        self.tumors: list[dict] = []
        self.settled = False
        self.table = Table(rng("table"))
        self.ribs = Ribs(rng("ribs"))

    def settle(self, grid: Grid) -> None:
        """Fix, once, what depends on where the organs lie: the liver's scale (other organs
        carve their share out of its shape) and the tumor centres (inside the painted liver).

        :func:`livertumor.demo.generator.make_case` settles on a grid of a fixed matrix, so
        that neither depends on the matrix of the case.
        """
        cv = self._paint_organs(grid)
        if self.liver.paint(cv, self.tissue_hu, fit=True):
            self.liver_veins.paint(cv, self.tissue_hu)
            self.tumor_centres = place_tumors(self._placement_rng, self.tumor_plans, cv)
        self.settled = True

    def paint(self, grid: Grid, liver_tumors=True) -> Canvas:
        """Paint the whole case on ``grid``; returns the canvas (HU before blur and noise).

        Settles on ``grid`` first if :meth:`settle` was not called. The tumors painted are
        recorded in :attr:`tumors` (see :func:`.tumors.paint_tumor`).
        """
        if not self.settled:
            self.settle(grid)
        hu = self.tissue_hu
        cv = self._paint_organs(grid)
        if self.liver.paint(cv, hu):
            self.liver_veins.paint(cv, hu)
            if liver_tumors:
                self.tumors = [paint_tumor(cv, plan, c)
                               for plan, c in zip(self.tumor_plans, self.tumor_centres,
                                                  strict=False)]
        return cv

    def _paint_organs(self, grid: Grid) -> Canvas:
        """Everything but the liver, in an order where later parts cover earlier ones."""
        hu = self.tissue_hu
        cv = Canvas(grid, BodyMaps(self.body, self.diaphragm, grid.x[None, :], grid.y[:, None]))
        paint_body_wall(cv, self.body, self.table, hu)
        paint_thorax(cv, self.diaphragm, self.spine, self.heart, self.lung_vessels, hu)
        self.colon.paint(cv, hu)
        self.small_bowel.paint(cv, hu, self.oral_contrast)
        self.stomach.paint(cv, self.spine, hu)
        self.duodenum.paint(cv, self.stomach, self.spine, hu)
        paint_crura_and_psoas(cv, self.vessels, hu)
        paint_vessels(cv, self.vessels, hu)
        self.pancreas.paint(cv, self.vessels, hu)
        for kidney in self.kidneys:
            paint_kidney(cv, kidney, self.spine, self.vessels, hu)
        self.spleen.paint(cv, self.body, self.diaphragm, hu)
        self.gallbladder.paint(cv, hu)
        paint_spine(cv, self.spine, hu)
        self.ribs.paint(cv, self.body, self.spine, hu)
        return cv
