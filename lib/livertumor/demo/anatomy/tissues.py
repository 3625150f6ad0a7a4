"""Tissue attenuation (HU) of a case: portal venous phase values drawn from ranges."""

from __future__ import annotations


def draw_tissue_hu(rng) -> tuple[dict, bool]:
    """The case's tissue values (HU, floats) by tissue name, and whether oral contrast was given.

    The liver enhances to 100-130 HU; the spleen is up to 14 HU brighter or 2 HU darker.
    """
    liver = rng.uniform(100, 130)
    hu = dict(
        air=-1000.0, lung=rng.uniform(-880, -830), fat=rng.uniform(-112, -92),
        vfat=rng.uniform(-105, -88), skin=rng.uniform(25, 50), muscle=rng.uniform(45, 58),
        liver=liver, spleen=liver + rng.uniform(-2, 14), kid_cortex=rng.uniform(160, 200),
        aorta=rng.uniform(150, 195), ivc=rng.uniform(120, 145), portal=rng.uniform(155, 190),
        hepatic=rng.uniform(145, 175), bone=rng.uniform(750, 1000), marrow=rng.uniform(170, 250),
        canal=rng.uniform(15, 30), disc=rng.uniform(80, 100), bowel_wall=rng.uniform(75, 105),
        fluid=rng.uniform(5, 25), pancreas=rng.uniform(90, 115), bile=rng.uniform(0, 15),
        blood=rng.uniform(150, 185), myocardium=rng.uniform(95, 120),
        oral=rng.uniform(200, 320), cartilage=rng.uniform(110, 170),
    )
    hu["kid_medulla"] = hu["kid_cortex"] - rng.uniform(25, 55)
    oral_contrast = rng.uniform() < 0.35
    return hu, bool(oral_contrast)
