"""The great vessels: aorta (with calcified plaques), IVC, portal venous system, SMA; and the
muscles that run beside them (diaphragmatic crura, psoas)."""

from __future__ import annotations

import numpy as np

from .body import Body
from .canvas import Canvas
from .skeleton import Spine
from .tubes import paint_tube, paint_z_cylinder

_PLAQUE_HU = 850.0


class Vessels:
    """Positions and calibres of the aorta and IVC along z, and the portal venous landmarks.

    Attributes (mm)
    ---------------
    aorta_radius_mm, aorta_offset_mm
        Aortic radius, and its offset to the left of the spine's centre.
    aorta_calcified : bool
    plaques
        Calcified plaques: ``(angle on the wall rad, z mm, radius mm)``.
    ivc_radii_mm
        IVC semi-axes (lateral, antero-posterior).
    """

    def __init__(self, rng, body: Body, spine: Spine):
        self.body, self.spine = body, spine
        self.aorta_radius_mm = rng.uniform(9.5, 12.5)
        self.aorta_offset_mm = rng.uniform(8, 16)
        self.aorta_calcified = rng.uniform() < 0.45
        self.plaques = [(rng.uniform(0, 2 * np.pi), rng.uniform(-250, 0), rng.uniform(1.2, 2.5))
                        for _ in range(int(rng.integers(4, 14)))]
        self.ivc_radii_mm = (rng.uniform(11, 15), rng.uniform(8, 12))

    def aorta_xy(self, z):
        """Centre (x, y) mm of the aorta at height z, in front of the spine and to its left."""
        R = self.spine.radius_mm(z)
        return (self.spine.x_mm + self.aorta_offset_mm,
                self.spine.centre_y_mm(z) - R - self.aorta_radius_mm - 2)

    def ivc_xy(self, z):
        """Centre (x, y) mm of the IVC at height z: right of the spine, forward near the liver."""
        z = np.asarray(z, float)
        R = self.spine.radius_mm(z)
        up = np.clip((z + 90) / 60, 0, 1)
        return (self.spine.x_mm - 0.6 * R - 14 - 6 * up,
                self.spine.centre_y_mm(z) - R - self.ivc_radii_mm[1] - 4 - 14 * up)

    @property
    def porta_hepatis(self) -> np.ndarray:
        """Where the main portal vein enters the liver, (x, y, z) mm."""
        return np.array([-0.22 * self.body.cavity_half_width_mm,
                         float(self.ivc_xy(-80)[1]) - 12, -78.0])

    @property
    def portal_confluence(self) -> np.ndarray:
        """Where the splenic vein and the SMV join behind the pancreatic neck, (x, y, z) mm."""
        return np.array([self.spine.x_mm + 2, float(self.ivc_xy(-105)[1]) - 18, -105.0])

    @property
    def splenic_hilum(self) -> np.ndarray:
        """Where the splenic vein leaves the spleen, (x, y, z) mm."""
        b = self.body
        return np.array([0.6 * b.cavity_half_width_mm, 0.3 * b.cavity_posterior_mm, -68.0])

    @property
    def splenic_vein_mid(self) -> np.ndarray:
        """Middle point of the splenic vein (it bows forward and up), (x, y, z) mm."""
        return self.portal_confluence * 0.5 + self.splenic_hilum * 0.5 + (0, -8, 6)


def paint_crura_and_psoas(cv: Canvas, ves: Vessels, hu: dict) -> None:
    """Diaphragmatic crura around the aorta, and the psoas muscles beside the lumbar spine."""
    sp = ves.spine
    axy = ves.aorta_xy
    r = ves.aorta_radius_mm
    paint_z_cylinder(cv, lambda z: axy(z)[0], lambda z: axy(z)[1] - 3, r + 6, r + 7,
                     hu["muscle"], zlim=(-120, -25), clip=lambda bb2: cv.cav[bb2])
    for side in (-1, 1):
        R = sp.radius_mm(-200)
        top = (sp.x_mm + side * (sp.top_radius_mm * 0.7), float(sp.centre_y_mm(-95)) - 5, -95.0)
        bot = (sp.x_mm + side * (R + 18), float(sp.centre_y_mm(-300)) - 12, -320.0)
        paint_tube(cv, [top, bot], [3, 24], [(0, hu["muscle"], 0, True)])


def paint_vessels(cv: Canvas, ves: Vessels, hu: dict) -> None:
    """Aorta with plaques, IVC, main portal vein, SMV, splenic vein and SMA."""
    axy, ivc = ves.aorta_xy, ves.ivc_xy
    r = ves.aorta_radius_mm
    paint_z_cylinder(cv, lambda z: axy(z)[0], lambda z: axy(z)[1], r, r, hu["aorta"],
                     zlim=(-400, 60.0))
    if ves.aorta_calcified:
        for ang, z, rp in ves.plaques:
            x0, y0 = axy(z)
            p = np.array([x0 + r * np.cos(ang), y0 + r * np.sin(ang), z])
            paint_tube(cv, [p, p + (0, 0, 2 * rp)], [rp, rp], [(0, _PLAQUE_HU, 0, True)])
    paint_z_cylinder(cv, lambda z: ivc(z)[0], lambda z: ivc(z)[1], *ves.ivc_radii_mm,
                     hu["ivc"], zlim=(-400, 5))
    pc = ves.portal_confluence
    paint_tube(cv, [pc, ves.porta_hepatis], [7, 6.5], [(0, hu["portal"], 0, True)])
    paint_tube(cv, [pc, pc + (4, -4, -60), pc + (6, -10, -250)], [5.5, 5, 4.5],
               [(0, hu["portal"] - 10, 0, True)])
    paint_tube(cv, [pc, ves.splenic_vein_mid, ves.splenic_hilum], [5, 4.5, 4.5],
               [(0, hu["portal"], 0, True)])
    ax0, ay0 = axy(-112)
    sma = [(ax0, ay0 - r + 2, -112), (ax0 - 3, ay0 - r - 14, -125),
           (ax0 - 4, ay0 - r - 24, -300)]
    paint_tube(cv, sma, [3.5, 3.2, 3.0], [(0, hu["aorta"], 0, True)])
