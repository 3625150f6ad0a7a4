"""LiTS per-case scores: one structure (:func:`binary_scores`), one case (:func:`lits_scores`:
liver and tumor, tumor burden, lesion counts) and one pair of NIfTI files (:func:`score_files`).

Each case is cropped to the bounding box of both label maps before anything is measured;
overlap scores come from :mod:`.overlap`, surface distances from :mod:`.surfaces`, lesion
counts from :mod:`.lesions`. Definitions, the empty-mask table (NaN = undefined, never an
exception) and the sources checked: ``docs/scoring.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.volumes import read_geometry, read_mask
from ..errors import GridMismatchError
from .inputs import (
    STRUCTURES,
    _check_connectivity,
    _check_pair,
    _check_spacing,
    _union_box,
    structure_mask,
)
from .lesions import LITS_LESION_CONNECTIVITY, _match_lesions
from .overlap import OVERLAP_METRICS, overlap_scores
from .surfaces import (
    ASSD_MODES,
    SURFACE_METRICS,
    empty_surface_scores,
    surface_distances,
    surface_scores,
)

SEGMENTATION_METRICS: tuple[str, ...] = (*OVERLAP_METRICS, *SURFACE_METRICS)
"""Per-structure metrics of :func:`lits_scores` (keys ``liver_dice``, ``tumor_hd95``, ...)."""


def binary_scores(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing: Sequence[float],
    connectivity: int = 1,
    assd_mode: str = "pooled",
    distances: bool = True,
) -> dict[str, float]:
    """All LiTS segmentation metrics of one structure (two binary masks).

    Parameters
    ----------
    pred_mask, ref_mask : ndarray, bool, shape (rows, columns, slices)
    spacing : sequence of 3 float
        Voxel size in mm along the three axes.
    connectivity : {1, 2, 3}, default 1
        Surface definition (see :mod:`.surfaces`); LiTS used 2.
    assd_mode : {"pooled", "mean_of_directed"}, default "pooled"
        "pooled": mean of all distances of both directions (LiTS, MedPy 0.5.2);
        "mean_of_directed": mean of the two directed means (MedPy <= 0.4.0 ``assd``).
    distances : bool, default True
        False: skip the surface distances (``assd``, ``rmsd``, ``hd95``, ``msd`` and the
        surface voxel counts are NaN), which take about nine tenths of the time; for
        comparisons that need only overlap and detection.

    Returns
    -------
    dict
        ``dice``, ``iou``, ``voe``, ``rvd`` (floats, unitless), ``assd``, ``rmsd``, ``hd95``,
        ``msd`` (floats, mm), ``intersection``, ``pred_voxels``, ``ref_voxels``,
        ``pred_surface_voxels``, ``ref_surface_voxels`` (ints). Empty masks follow the table
        in ``docs/scoring.md`` (NaN = undefined).

    Raises
    ------
    GridMismatchError
        The shapes differ.
    ValueError
        Bad spacing, connectivity or assd_mode.

    Examples
    --------
    >>> a = np.zeros((6, 6, 6), bool); a[1:5, 1:5, 1:5] = True
    >>> s = binary_scores(a, np.roll(a, 1, axis=2), (0.7, 0.7, 2.5))
    >>> s["dice"], s["iou"], s["rvd"], s["msd"]
    (0.75, 0.6, 0.0, 2.5)
    """
    if assd_mode not in ASSD_MODES:
        raise ValueError(f"assd_mode must be one of {ASSD_MODES}; got {assd_mode!r}")
    spacing = _check_spacing(spacing)
    _check_connectivity(connectivity)
    p = np.asarray(pred_mask, dtype=bool)
    r = np.asarray(ref_mask, dtype=bool)
    if p.shape != r.shape:
        raise GridMismatchError(f"mask shapes differ: {p.shape} vs {r.shape}")
    overlap = overlap_scores(p, r)
    n_p, n_r = overlap["pred_voxels"], overlap["ref_voxels"]
    if not distances:
        surface = dict.fromkeys((*SURFACE_METRICS, "pred_surface_voxels", "ref_surface_voxels"),
                                math.nan)
    elif n_p and n_r:
        surface = surface_scores(*surface_distances(p, r, spacing, connectivity), assd_mode)
    else:
        surface = empty_surface_scores(both_empty=n_p + n_r == 0)
    out: dict[str, float] = {key: overlap[key] for key in OVERLAP_METRICS}
    out.update((key, surface[key]) for key in SURFACE_METRICS)
    out.update(intersection=overlap["intersection"], pred_voxels=n_p, ref_voxels=n_r,
               pred_surface_voxels=surface["pred_surface_voxels"],
               ref_surface_voxels=surface["ref_surface_voxels"])
    return out


def _structure_columns(name: str, scores: dict[str, float],
                       voxel_ml: float) -> dict[str, float]:
    """One structure's :func:`binary_scores` as ``{name}_...`` columns, volumes in mL."""
    out = {f"{name}_{key}": scores[key] for key in SEGMENTATION_METRICS}
    for key in ("intersection", "pred_voxels", "ref_voxels"):
        out[f"{name}_{key}"] = scores[key]
    out[f"{name}_pred_ml"] = scores["pred_voxels"] * voxel_ml
    out[f"{name}_ref_ml"] = scores["ref_voxels"] * voxel_ml
    return out


def _burden_columns(row: dict[str, float]) -> dict[str, float]:
    """Tumor burden = tumor voxels / liver voxels of each map; NaN for a map without liver."""
    out = {}
    for side in ("pred", "ref"):
        liver = row[f"liver_{side}_voxels"]
        out[f"tumor_burden_{side}"] = row[f"tumor_{side}_voxels"] / liver if liver else math.nan
    return out


def lits_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    connectivity: int = 1,
    *,
    assd_mode: str = "pooled",
    iou_threshold: float = 0.5,
    distances: bool = True,
) -> dict[str, float]:
    """LiTS per-case scores of a predicted label map against the reference.

    Parameters
    ----------
    pred, truth : ndarray, uint8 (any integer or 0/1/2-valued dtype), shape (rows, columns,
        slices)
        Canonical label maps, 0 background, 1 liver, 2 tumor, on the same grid.
    spacing : sequence of 3 float
        Voxel size in mm along (rows, columns, slices): ``Geometry.spacing`` of the reference.
    connectivity : {1, 2, 3}, default 1
        Surface definition for the distance metrics: 1 = face neighbours (MedPy, MONAI
        default), 2 = the 18-neighbourhood of the LiTS program.
    assd_mode : {"pooled", "mean_of_directed"}, default "pooled"
        See :func:`binary_scores`.
    iou_threshold : float, default 0.5
        Lesion detection threshold (see :func:`livertumor.evaluation.lesions.detect_lesions`).
    distances : bool, default True
        False: the surface distance metrics are NaN and not computed (see
        :func:`binary_scores`); overlap, volumes, burden and detection are unchanged.

    Returns
    -------
    dict (flat, one row of a per-case table)
        For ``s`` in ("liver", "tumor"):

        * ``{s}_dice``, ``{s}_iou``, ``{s}_voe``, ``{s}_rvd``: floats;
        * ``{s}_assd``, ``{s}_rmsd``, ``{s}_hd95``, ``{s}_msd``: floats, mm;
        * ``{s}_intersection``, ``{s}_pred_voxels``, ``{s}_ref_voxels``: ints (for the
          global Dice of :func:`livertumor.evaluation.aggregate.aggregate_scores`);
          ``{s}_pred_ml``, ``{s}_ref_ml``: mL.

        Also ``tumor_burden_pred`` and ``tumor_burden_ref`` (tumor voxels / liver voxels,
        liver = labels >= 1; NaN when that map has no liver, where LiTS put 9001 for the
        prediction), the lesion detection counts ``lesion_tp``, ``lesion_fp``, ``lesion_fn``,
        ``lesion_n_reference``, ``lesion_n_predicted``, ``lesion_merge_errors``,
        ``lesion_split_errors`` (LiTS rule, face-connected lesions, ``iou_threshold``), and
        ``connectivity``, ``assd_mode``, ``voxel_volume_ml``. Empty structures follow the
        table in ``docs/scoring.md``.

    Raises
    ------
    GridMismatchError
        Shapes differ or are not 3-D.
    LabelError
        A value other than 0, 1, 2.
    ValueError
        Bad spacing, connectivity, assd_mode or threshold.

    Examples
    --------
    >>> truth = np.zeros((8, 8, 8), np.uint8); truth[1:7, 1:7, 1:7] = 1
    >>> truth[2:4, 2:4, 2:4] = 2
    >>> s = lits_scores(truth, truth, (0.7, 0.7, 2.5))
    >>> s["liver_dice"], s["tumor_msd"], s["lesion_tp"]
    (1.0, 0.0, 1)
    """
    pred, truth = _check_pair(pred, truth)
    spacing = _check_spacing(spacing)
    _check_connectivity(connectivity)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    # Both maps all background: any one voxel scores the same.
    box = _union_box(pred.shape, pred, truth, margin=1) or (slice(0, 1),) * 3
    pc, tc = pred[box], truth[box]
    out: dict[str, float] = {}
    for name in STRUCTURES:
        scores = binary_scores(structure_mask(pc, name), structure_mask(tc, name), spacing,
                               connectivity, assd_mode, distances)
        out.update(_structure_columns(name, scores, voxel_ml))
    out.update(_burden_columns(out))
    match = _match_lesions(pc == 2, tc == 2, iou_threshold, LITS_LESION_CONNECTIVITY, False)
    out.update((f"lesion_{key}", value) for key, value in match.counts().items())
    out.update(connectivity=int(connectivity), assd_mode=assd_mode, voxel_volume_ml=voxel_ml)
    return out


def score_files(
    pred_path: str | Path,
    truth_path: str | Path,
    connectivity: int = 1,
    *,
    assd_mode: str = "pooled",
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """:func:`lits_scores` of a predicted segmentation file against the reference file.

    Both files are read in the canonical orientation (``volumes.read_mask``), so a prediction
    stored with another axis order or flips of the *same* grid is accepted. The voxel spacing
    comes from the reference (truth) header, as in LiTS.

    Parameters
    ----------
    pred_path, truth_path : str or Path
        NIfTI label maps (0, 1, 2); the prediction must lie on the reference's voxel grid.
    connectivity, assd_mode, iou_threshold
        As in :func:`lits_scores`.

    Returns
    -------
    dict
        :func:`lits_scores`'s keys plus ``pred_path``, ``truth_path`` (str), ``spacing_mm``
        (list of 3 float) and ``truth_identity_affine`` (bool: the reference header has an
        identity affine, so its "1 mm" spacing and every mm/mL value are suspect; LiTS
        volumes 28-47 are stored like that).

    Raises
    ------
    NiftiReadError
        A file is missing, unreadable, truncated or not 3-D (names the file).
    GridMismatchError
        The prediction is not on the reference's grid (shape, spacing, axes or origin;
        names the prediction file).
    LabelError
        A file holds values other than 0, 1, 2 (names the file).

    Examples
    --------
    >>> s = score_files("pred/segmentation-3.nii", "data/segmentation-3.nii")  # doctest: +SKIP
    """
    geometry = read_geometry(truth_path)
    truth = read_mask(truth_path)
    pred = read_mask(pred_path, like=geometry)
    out = lits_scores(pred, truth, geometry.spacing, connectivity, assd_mode=assd_mode,
                      iou_threshold=iou_threshold)
    out.update(pred_path=str(pred_path), truth_path=str(truth_path),
               spacing_mm=[float(s) for s in geometry.spacing],
               truth_identity_affine=bool(geometry.identity_affine))
    return out
