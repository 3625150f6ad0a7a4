"""Synthetic LiTS-like abdominal CT cases, for tests, demos and the notebooks without real data.

Each case is a CT of the upper abdomen (lung bases / diaphragm domes down to the lower
kidneys) in one contrast phase (unenhanced, late arterial, portal venous or delayed; see
:mod:`livertumor.demo.anatomy.tissues`) with its LiTS label map (0 background, 1 liver,
2 tumor). The anatomy
is built in 3-D in millimetres (see :mod:`livertumor.demo.anatomy`): body outline with skin,
subcutaneous fat and muscle wall, ribs, spine, lung bases, heart, diaphragm, liver with portal
and hepatic veins, spleen, kidneys, stomach, duodenum, pancreas, bowel, aorta, IVC, a CT table,
and 0 to several liver tumors: hypovascular (metastasis-like), hypervascular (HCC-like) or
cysts, whose contrast to the liver depends on the phase (see
:mod:`livertumor.demo.anatomy.tumors`). The HU map is blurred (scanner point spread) and
correlated noise is added.

:func:`make_demo_dataset` writes the Kaggle LiTS layout::

    out_dir/volume_pt1/volume-0.nii ... volume-3.nii
    out_dir/volume_pt2/volume-4.nii ...
    out_dir/segmentations/segmentation-0.nii ...
    out_dir/demo_cases.csv

Generation time grows with the number of voxels; ``benchmarks/demo_speed.py`` prints the
seconds per case at 64, 128, 256 and 512 px. Peak memory is about 18 bytes per voxel
(measured at 512 px: 520 MiB over the interpreter's for 512 x 512 x 116 voxels).

The anatomy (all shapes, tissue values, tumors) is drawn from one generator per part of the
body, ``numpy.random.default_rng([seed, case_id, key])`` with a key per part
(:func:`livertumor.demo.anatomy.painter.organ_rng`), and does not depend on ``size``; only its
sampling does. What depends on where the organs lie once painted (the liver's size after
other organs carve their share, the tumor centres inside the liver) is fixed on a grid of
``SETTLE_SIZE`` columns, also whatever ``size``; only tumors smaller than 2.2 voxels are
painted larger, at 2.2 voxels, on coarse grids. A case's content depends on
``(seed, case_id, size)`` only, not on how many cases are made.

The geometry of a case (field of view, spacing, slices, orientation on disk) and how it
depends on the matrix ``size`` are described in :mod:`livertumor.demo.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from ..atomic import atomic_path
from ..data.volumes import read_geometry, read_mask, reorient_image, save_atomic
from .anatomy import Anatomy
from .geometry import case_affine, case_geometry, case_grid
from .scanner import form_image

CASES_PER_FOLDER = 4
"""Volumes per ``volume_ptN`` folder: case i goes to ``volume_pt{1 + i // 4}``."""

CSV_NAME = "demo_cases.csv"

SETTLE_SIZE = 96
"""Matrix of the grid on which the liver's size and the tumor centres are fixed, whatever the
matrix of the case (see :meth:`livertumor.demo.anatomy.painter.Anatomy.settle`)."""



@dataclass
class DemoCase:
    """One synthetic case, in memory.

    Attributes
    ----------
    case_id, seed, size : int
    ct : ndarray, int16, (rows, columns, slices)
        Hounsfield units, canonical ``('P', 'L', 'S')`` orientation, in [-1024, 3071].
    mask : ndarray, uint8, (rows, columns, slices)
        LiTS labels, canonical: 0 background, 1 liver, 2 tumor (tumor lies inside the liver).
    spacing : tuple of float
        Voxel size (row, column, slice) in mm.
    axcodes : tuple of str
        Axis codes the case is stored with on disk.
    affine : ndarray, float64, (4, 4)
        Voxel-to-world (RAS+, mm) affine of the canonical arrays.
    tumors : list of dict
        Per tumor: ``centre_mm`` (world RAS mm, 3 floats), ``centre_voxel`` (canonical row,
        column, slice, floats), ``diameter_mm`` (nominal; at least 2.2 voxels), ``kind``
        ('hypovascular', 'hypervascular' or 'cyst'), ``rim`` (enhancing rim or capsule),
        ``hu`` (mean HU painted inside its label, before blur and noise), ``contrast_hu``
        (``hu`` minus the liver's HU of the phase), ``volume_ml`` (voxels labelled 2 by this
        tumor; a later tumor may cover some).
    phase : dict
        Contrast phase and tissue values (HU, before blur and noise): ``name`` (one of
        'unenhanced', 'late arterial', 'portal venous', 'delayed'), ``liver_hu``,
        ``spleen_hu``, ``kidney_cortex_hu``, ``kidney_medulla_hu``, ``aorta_hu``,
        ``portal_hu``, ``hepatic_hu``, ``pancreas_hu``; ``noise_hu`` (noise sigma),
        ``blur_mm`` (in-plane Gaussian sigma), ``oral_contrast`` (bool).
    fov_mm : float
        In-plane field of view.
    """

    case_id: int
    seed: int
    size: int
    ct: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]
    axcodes: tuple[str, str, str]
    affine: np.ndarray
    tumors: list[dict] = field(default_factory=list)
    phase: dict = field(default_factory=dict)
    fov_mm: float = 0.0

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def liver_ml(self) -> float:
        """Liver volume including tumors (labels 1 and 2), mL."""
        return float(np.count_nonzero(self.mask)) * self.voxel_ml

    @property
    def tumor_ml(self) -> float:
        """Tumor volume (label 2), mL."""
        return float(np.count_nonzero(self.mask == 2)) * self.voxel_ml

    def images(self) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
        """The volume (int16 HU, slope 1, intercept 0) and mask (uint8) as stored on disk.

        Both carry the same affine and axis codes (``self.axcodes``).
        """
        vol = reorient_image(self.ct, self.affine, self.axcodes)
        seg = reorient_image(self.mask, self.affine, self.axcodes)
        for img, what in ((vol, "volume"), (seg, "segmentation")):
            img.header.set_slope_inter(1.0, 0.0)
            img.header.set_xyzt_units("mm", "sec")
            img.header["descrip"] = f"livertumor demo {what} seed={self.seed} case={self.case_id}"
        vol.set_data_dtype(np.int16)
        seg.set_data_dtype(np.uint8)
        return vol, seg


def _tumor_records(painted: list[dict], grid, spacing, affine, liver_hu) -> list[dict]:
    """The :attr:`DemoCase.tumors` records of the tumors the anatomy painted on ``grid``."""
    vox_ml = float(np.prod(spacing)) / 1000.0
    out = []
    for t in painted:
        x, y, z = t["centre_xyz"]
        vox = ((y - grid.y[0]) / spacing[0], (x - grid.x[0]) / spacing[1],
               (z - grid.z[0]) / spacing[2])
        world = affine @ np.array([*vox, 1.0])
        out.append(dict(centre_mm=tuple(float(v) for v in world[:3]),
                        centre_voxel=tuple(float(v) for v in vox),
                        diameter_mm=round(float(t["diameter_mm"]), 2), kind=t["kind"],
                        rim=t["rim"], hu=round(float(t["hu"]), 1),
                        contrast_hu=round(float(t["hu"]) - liver_hu, 1),
                        volume_ml=round(t["voxels"] * vox_ml, 3)))
    return out


def _phase_record(an: Anatomy, geo: dict) -> dict:
    """The :attr:`DemoCase.phase` record: phase name, tissue values, scanner blur and noise."""
    h = an.tissue_hu
    rec = dict(name=an.phase)
    for key, tissue in (("liver_hu", "liver"), ("spleen_hu", "spleen"),
                        ("kidney_cortex_hu", "kid_cortex"), ("kidney_medulla_hu", "kid_medulla"),
                        ("aorta_hu", "aorta"), ("portal_hu", "portal"), ("hepatic_hu", "hepatic"),
                        ("pancreas_hu", "pancreas")):
        rec[key] = round(h[tissue], 1)
    rec.update(noise_hu=round(geo["noise_hu"], 2), blur_mm=round(geo["blur_mm"], 3),
               oral_contrast=bool(an.oral_contrast))
    return rec


def make_case(case_id: int, seed: int, size: int = 512) -> DemoCase:
    """Generate one synthetic case in memory.

    Parameters
    ----------
    case_id : int
        Index of the case (0, 1, ...); with ``seed`` it fixes the content.
    seed : int
        Dataset seed.
    size : int, default 512
        In-plane matrix (rows = columns = size). The field of view is fixed by the case, so
        the spacing is ``fov / size``; see the module docstring for the slice rule.

    Returns
    -------
    DemoCase
        ``ct`` int16 HU and ``mask`` uint8 labels, both canonical (rows, columns, slices).
    """
    geo = case_geometry(case_id, seed, size)
    an = Anatomy(seed, case_id, geo["fov"], n_tumors=geo["n_tumors"], phase=geo["phase"])
    ref = geo if size == SETTLE_SIZE else case_geometry(case_id, seed, SETTLE_SIZE)
    an.settle(case_grid(ref, an.body, SETTLE_SIZE))
    grid = case_grid(geo, an.body, size)
    cv = an.paint(grid)
    lab = cv.lab
    hu = cv.hu
    del cv
    ct = form_image(hu, geo, case_id, seed)
    del hu
    ct = np.ascontiguousarray(ct.transpose(1, 2, 0))
    mask = np.ascontiguousarray(lab.transpose(1, 2, 0))
    affine = case_affine(geo, grid)
    sp = geo["spacing"]
    tumors = _tumor_records(an.tumors, grid, geo["spacing"], affine, an.tissue_hu["liver"])
    phase = _phase_record(an, geo)
    return DemoCase(case_id=case_id, seed=seed, size=size, ct=ct, mask=mask,
                    spacing=tuple(float(s) for s in sp), axcodes=tuple(geo["axcodes"]),
                    affine=affine, tumors=tumors, phase=phase, fov_mm=float(geo["fov"]))


# --------------------------------------------------------------------------------------------
# the dataset on disk
# --------------------------------------------------------------------------------------------


def case_paths(out_dir: str | Path, case_id: int) -> tuple[Path, Path]:
    """``(volume path, segmentation path)`` of a case in the Kaggle LiTS layout."""
    out_dir = Path(out_dir)
    vol = out_dir / f"volume_pt{1 + case_id // CASES_PER_FOLDER}" / f"volume-{case_id}.nii"
    seg = out_dir / "segmentations" / f"segmentation-{case_id}.nii"
    return vol, seg


COLUMNS = ["case_id", "volume", "segmentation", "rows", "cols", "slices", "spacing_row_mm",
           "spacing_col_mm", "slice_mm", "axcodes", "n_tumors", "tumor_diameters_mm",
           "tumor_kinds", "tumor_contrasts_hu", "liver_ml", "tumor_ml", "phase", "liver_hu",
           "noise_hu", "seed", "size"]


def _row(case: DemoCase, out_dir: Path) -> dict:
    vol, seg = case_paths(out_dir, case.case_id)
    return dict(
        case_id=case.case_id, volume=vol.relative_to(out_dir).as_posix(),
        segmentation=seg.relative_to(out_dir).as_posix(),
        rows=case.ct.shape[0], cols=case.ct.shape[1], slices=case.ct.shape[2],
        spacing_row_mm=round(case.spacing[0], 4), spacing_col_mm=round(case.spacing[1], 4),
        slice_mm=round(case.spacing[2], 4), axcodes="".join(case.axcodes),
        n_tumors=len(case.tumors),
        tumor_diameters_mm=";".join(f"{t['diameter_mm']:.1f}" for t in case.tumors),
        tumor_kinds=";".join(t["kind"] for t in case.tumors),
        tumor_contrasts_hu=";".join(f"{t['contrast_hu']:.1f}" for t in case.tumors),
        liver_ml=round(case.liver_ml, 1), tumor_ml=round(case.tumor_ml, 2),
        phase=case.phase["name"], liver_hu=case.phase["liver_hu"],
        noise_hu=case.phase["noise_hu"],
        seed=case.seed, size=case.size)


def _row_from_files(case_id: int, out_dir: Path, seed: int, size: int) -> dict:
    """Describe an existing case from its files (when no CSV row is there)."""
    vol, seg = case_paths(out_dir, case_id)
    geo = read_geometry(vol)
    mask = read_mask(seg, like=geo)
    vox = geo.voxel_volume_ml
    lab, n = ndimage.label(mask == 2)
    sizes = np.bincount(lab.ravel())[1:] * vox * 1000.0
    diam = [(6 * s / np.pi) ** (1 / 3) for s in sizes]
    return dict(
        case_id=case_id, volume=vol.relative_to(out_dir).as_posix(),
        segmentation=seg.relative_to(out_dir).as_posix(), rows=geo.canonical_shape[0],
        cols=geo.canonical_shape[1], slices=geo.canonical_shape[2],
        spacing_row_mm=round(geo.spacing[0], 4), spacing_col_mm=round(geo.spacing[1], 4),
        slice_mm=round(geo.spacing[2], 4), axcodes="".join(geo.axcodes), n_tumors=int(n),
        tumor_diameters_mm=";".join(f"{d:.1f}" for d in diam), tumor_kinds="",
        tumor_contrasts_hu="",
        liver_ml=round(np.count_nonzero(mask) * vox, 1),
        tumor_ml=round(np.count_nonzero(mask == 2) * vox, 2), phase="", liver_hu=np.nan,
        noise_hu=np.nan, seed=seed, size=size)


def write_case(case: DemoCase, out_dir: str | Path) -> tuple[Path, Path]:
    """Write a case's volume and segmentation atomically; returns their paths."""
    vol_path, seg_path = case_paths(out_dir, case.case_id)
    vol, seg = case.images()
    save_atomic(vol, vol_path)
    save_atomic(seg, seg_path)
    return vol_path, seg_path


def _make_and_write(job: tuple) -> dict:
    """Generate one case and write its files; its ``demo_cases.csv`` row (run in workers)."""
    case_id, seed, size, out_dir = job
    case = make_case(case_id, seed, size)
    write_case(case, out_dir)
    return _row(case, Path(out_dir))


def _generate(jobs: list[tuple], workers: int | None, progress: bool) -> dict[int, dict]:
    """Rows of the generated cases by case id, made by ``workers`` processes (None or 0:
    the CPUs this process may use; one: in this process)."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    from ..processes import default_workers, mp_context

    n = min(workers or default_workers(), len(jobs))
    with tqdm(total=len(jobs), desc="demo cases", unit="case", disable=not progress) as bar:
        if n <= 1:
            rows = {}
            for job in jobs:
                rows[job[0]] = _make_and_write(job)
                bar.update()
            return rows
        with ProcessPoolExecutor(n, mp_context=mp_context([__name__])) as pool:
            rows = {}
            for job, row in zip(jobs, pool.map(_make_and_write, jobs), strict=True):
                rows[job[0]] = row
                bar.update()
            return rows


def make_demo_dataset(out_dir: str | Path, n_cases: int = 8, seed: int = 0, size: int = 512, *,
                      progress: bool = True, overwrite: bool = False,
                      workers: int | None = None) -> pd.DataFrame:
    """Write ``n_cases`` synthetic cases in the Kaggle LiTS layout and describe them.

    Parameters
    ----------
    out_dir : str or Path
        Root folder; created if missing.
    n_cases : int, default 8
        Cases 0 .. n_cases-1. Case i's content depends on ``(seed, i, size)`` only.
    seed : int, default 0
    size : int, default 512
        In-plane matrix; 64 or 128 make tiny, fast cases (see the module docstring).
    progress : bool, default True
        Show a ``tqdm`` progress bar over cases.
    overwrite : bool, default False
        Regenerate cases whose two files exist. Without it such cases are skipped, unless
        ``demo_cases.csv`` records them with another seed or size, or lacks columns (it was
        written by an earlier version of the generator).
    workers : int, optional
        Processes generating cases side by side (None or 0: the CPUs this process may use);
        the files do not depend on it. Memory: about 18 bytes per voxel per worker.

    Returns
    -------
    pandas.DataFrame
        One row per case: ``case_id``, ``volume`` and ``segmentation`` (paths relative to
        ``out_dir``), ``rows``, ``cols``, ``slices`` (canonical shape), ``spacing_row_mm``,
        ``spacing_col_mm``, ``slice_mm``, ``axcodes`` (stored, e.g. 'LPS'), ``n_tumors``,
        ``tumor_diameters_mm``, ``tumor_kinds`` and ``tumor_contrasts_hu`` (tumor minus liver
        HU as painted; ';'-joined, one per tumor), ``liver_ml`` (labels 1+2),
        ``tumor_ml`` (label 2), ``phase`` (contrast phase), ``liver_hu``, ``noise_hu``,
        ``seed``, ``size``. The same table is written to ``out_dir/demo_cases.csv``; a case
        described from its files alone (no CSV row) has an empty phase and kinds.

    Files are byte-identical for the same ``(n_cases, seed, size)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / CSV_NAME
    previous: dict[int, dict] = {}
    if csv_path.exists():
        try:
            old = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
            previous = {int(r["case_id"]): r for r in old.to_dict("records")}
        except (pd.errors.ParserError, pd.errors.EmptyDataError, KeyError, ValueError):
            previous = {}
    rows: dict[int, dict] = {}
    for i in range(n_cases):
        vol, seg = case_paths(out_dir, i)
        prev = previous.get(i)
        same = (prev is not None and all(k in prev for k in COLUMNS)
                and int(prev["seed"]) == seed and int(prev["size"]) == size)
        if not overwrite and vol.exists() and seg.exists() and (prev is None or same):
            rows[i] = ({k: prev[k] for k in COLUMNS} if same
                       else _row_from_files(i, out_dir, seed, size))
    todo = [(i, seed, size, str(out_dir)) for i in range(n_cases) if i not in rows]
    rows.update(_generate(todo, workers, progress))
    table = pd.DataFrame([rows[i] for i in range(n_cases)], columns=COLUMNS)
    for col in ("tumor_diameters_mm", "tumor_kinds", "tumor_contrasts_hu", "phase"):
        table[col] = table[col].fillna("").astype(str)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    return table
