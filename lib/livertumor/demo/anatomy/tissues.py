"""Tissue attenuation (HU) of a case, by contrast phase.

Each case is scanned in one phase of an intravenous contrast bolus; the phases follow the
ACR LI-RADS v2018 CT/MRI manual's definitions:

* ``unenhanced``: no contrast;
* ``late arterial``: hepatic artery and its branches fully enhanced, portal vein enhanced,
  hepatic veins not yet enhanced by antegrade flow (about 35-40 s after injection);
* ``portal venous``: portal and hepatic veins enhanced, liver parenchyma near its peak
  (about 60-80 s); the phase of most LiTS scans;
* ``delayed``: 2-5 min after injection; vessels and liver less enhanced than in the portal
  venous phase, contrast excreted into the renal collecting systems.

Values are ranges; each case draws one value per tissue within its phase's range. Sources:

* unenhanced liver 50-70 HU and 8-10 HU above the spleen: Boll and Merkle, "Diffuse liver
  disease: strategies for hepatic CT and MR imaging", RadioGraphics 29 (2009); Piekarski
  et al., "Difference between liver and spleen CT numbers in the normal adult", Radiology
  137 (1980);
* unenhanced blood 35-50 HU (with haematocrit): New and Aronow, "Attenuation measurements
  of whole blood and blood fractions in computed tomography", Radiology 121 (1976);
* aorta 250-350 HU and more in the arterial phase, liver enhanced by about 50 HU over
  unenhanced in the portal venous phase: Bae, "Intravenous contrast medium administration
  and scan timing at CT", Radiology 256 (2010);
* kidneys 30-50 HU unenhanced; cortex bright and medulla dark in the corticomedullary phase
  (25-70 s), evening out in the nephrographic phase (80-120 s), contrast in the collecting
  system from about 3 min: Yuh and Cohan, "Different phases of renal enhancement", AJR 173
  (1999);
* pancreas most enhanced in the pancreatic (late arterial) phase, less in the hepatic phase:
  Lu et al., "Two-phase helical CT for pancreatic tumors", Radiology 199 (1996);
* spleen heterogeneous (arciform bands) in the arterial phase, homogeneous from the portal
  venous phase on: Glazer et al., "Dynamic CT of the normal spleen", AJR 137 (1981).
"""

from __future__ import annotations

PHASES = ("unenhanced", "late arterial", "portal venous", "delayed")
"""The contrast phases, in the order of the per-phase tuples below."""

# Tissues whose attenuation does not depend on the phase: (low, high) HU.
_FIXED = dict(
    lung=(-880, -830), fat=(-112, -92), vfat=(-105, -88), skin=(25, 50), muscle=(45, 58),
    bone=(750, 1000), marrow=(170, 250), canal=(15, 30), disc=(80, 100), fluid=(5, 25),
    bile=(0, 15), oral=(200, 320), cartilage=(110, 170),
)

# Tissues that enhance: one entry per phase (PHASES order), either (low, high) HU, or
# (other tissue, low, high): that tissue's value plus low..high HU. A tissue referred to is
# listed before the tissues that refer to it.
_ENHANCED = {
    "liver": ((50, 70), (65, 90), (100, 130), (80, 105)),
    "spleen": (("liver", -14, -6), (110, 150), ("liver", -2, 14), ("liver", -5, 8)),
    # amplitude of the arciform bands of the spleen (HU), arterial phase only
    "spleen_bands": ((0, 0), (15, 30), (0, 0), (0, 0)),
    "kid_cortex": ((30, 45), (150, 230), (160, 200), (120, 170)),
    "kid_medulla": (("kid_cortex", -8, 0), (55, 100), ("kid_cortex", -55, -25),
                    ("kid_cortex", 0, 25)),
    "urine": ((0, 15), (0, 15), (0, 20), (300, 700)),
    "aorta": ((35, 50), (250, 380), (150, 195), (100, 140)),
    # the IVC at the liver still carries unenhanced blood in the arterial phase
    "ivc": ((35, 50), (60, 100), (120, 145), (100, 130)),
    "renal_vein": ((35, 50), (150, 220), (140, 180), (100, 135)),
    "portal": ((35, 50), (120, 180), (155, 190), (100, 135)),
    "hepatic": ((35, 50), (45, 75), (145, 175), (100, 130)),
    "pancreas": ((35, 50), (100, 140), (85, 115), (70, 95)),
    "blood": ((35, 50), (220, 330), (150, 185), (100, 135)),
    "myocardium": ((40, 55), (100, 150), (95, 120), (80, 105)),
    # bowel wall: mucosal enhancement peaks early
    "bowel_wall": ((30, 45), (80, 120), (75, 105), (65, 90)),
}

TISSUES = ("air", *_FIXED, *_ENHANCED)
"""Names of the tissue values of a case, as keys of :func:`draw_tissue_hu`'s dict."""


def tissue_range(tissue: str, phase: str, hu: dict | None = None) -> tuple[float, float]:
    """The (low, high) HU range a tissue is drawn from in a phase.

    A range relative to another tissue needs that tissue's value in ``hu``.

    Raises
    ------
    ValueError
        For an unknown tissue or phase.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown contrast phase {phase!r}; expected one of {PHASES}")
    if tissue == "air":
        return (-1000.0, -1000.0)
    if tissue in _FIXED:
        lo, hi = _FIXED[tissue]
        return (float(lo), float(hi))
    if tissue not in _ENHANCED:
        raise ValueError(f"unknown tissue {tissue!r}; expected one of {TISSUES}")
    entry = _ENHANCED[tissue][PHASES.index(phase)]
    if len(entry) == 2:
        return (float(entry[0]), float(entry[1]))
    ref, lo, hi = entry
    if hu is None or ref not in hu:
        raise ValueError(f"the range of {tissue!r} in the {phase} phase is relative to {ref!r}")
    return (hu[ref] + lo, hu[ref] + hi)


def draw_tissue_hu(rng, phase: str) -> tuple[dict, bool]:
    """The case's tissue values (HU, floats) by tissue name, and whether oral contrast was given.

    One uniform draw per tissue, in :data:`TISSUES` order, mapped into the tissue's range in
    ``phase`` (:func:`tissue_range`).

    Raises
    ------
    ValueError
        For an unknown phase.
    """
    oral_contrast = bool(rng.uniform() < 0.35)
    u = rng.random(len(TISSUES))
    hu: dict[str, float] = {}
    for tissue, ui in zip(TISSUES, u, strict=True):
        lo, hi = tissue_range(tissue, phase, hu)
        hu[tissue] = float(lo + (hi - lo) * ui)
    return hu, oral_contrast
