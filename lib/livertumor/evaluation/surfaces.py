"""Surface distances of one structure, in mm: ASSD, RMSD, HD95 and MSD.

A surface is a mask minus its binary erosion with ``generate_binary_structure(3,
connectivity)`` (1: face neighbours, as MedPy and MONAI; 2: the LiTS program's
18-neighbourhood); distances run between voxel centres, with the voxel spacing, in both
directions. The work is cropped to the bounding box of the two masks and no float64 field is
made, so a full CT volume costs what its liver box costs. Definitions, the pooled and
mean-of-directed ASSD, the empty-mask rules (both empty: 0.0; one empty: NaN) and the sources
checked: ``docs/scoring.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..errors import GridMismatchError
from .inputs import _check_connectivity, _check_spacing, _extent, _union_box

SURFACE_METRICS: tuple[str, ...] = ("assd", "rmsd", "hd95", "msd")
"""The surface metrics of :func:`surface_scores` (mm), in column order."""

ASSD_MODES: tuple[str, ...] = ("pooled", "mean_of_directed")


def _surface(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    # border_value=0: voxels outside the array are background, as in MedPy and LiTS.
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _directed_distances(source: np.ndarray, target: np.ndarray,
                        spacing: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) from every voxel of ``source`` (C order) to the nearest of ``target``.

    Equals ``distance_transform_edt(~target, sampling=spacing)[source]`` to the last bit (the
    same arithmetic, in the same order), but takes only the feature transform (int32, 3 per
    voxel) and evaluates distances at the source voxels, so no float64 field of the box is
    made.
    """
    nearest = ndimage.distance_transform_edt(~target, sampling=spacing,
                                             return_distances=False, return_indices=True)
    points = np.nonzero(source)
    squared = np.zeros(points[0].size, np.float64)
    for axis in range(3):
        step = (nearest[axis][points] - points[axis]).astype(np.float64) * spacing[axis]
        squared += step * step
    return np.sqrt(squared)


def surface_distances(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing: Sequence[float],
    connectivity: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two binary masks, in mm.

    Parameters
    ----------
    pred_mask, ref_mask : ndarray, bool (or 0/nonzero), shape (rows, columns, slices)
        Both non-empty and of the same shape.
    spacing : sequence of 3 float
        Voxel size in mm along the three axes.
    connectivity : {1, 2, 3}
        Erosion element ``generate_binary_structure(3, connectivity)`` defining the surfaces.

    Returns
    -------
    d_pred_to_ref : ndarray, float64, shape (|S(P)|,)
        For every surface voxel of the prediction, the distance to the nearest reference
        surface voxel (MedPy's ``__surface_distances(pred, ref)``).
    d_ref_to_pred : ndarray, float64, shape (|S(R)|,)
        The same from the reference surface to the prediction surface.

    Raises
    ------
    ValueError
        A mask is empty (the distances are undefined), bad spacing or connectivity.
    GridMismatchError
        The shapes differ.

    Notes
    -----
    Both distance transforms run inside the bounding box of the two masks plus one voxel:
    every surface voxel lies inside it, so the nearest surface voxel of any voxel of the box
    does too and the values equal those of a full-volume transform. Only the transform's
    nearest-voxel indices are kept, and distances are evaluated at the surface voxels; the
    values are bit-identical to ``distance_transform_edt(...)[surface]``.

    Examples
    --------
    >>> a = np.zeros((5, 5, 5), bool); a[1:4, 1:4, 1:4] = True
    >>> b = np.roll(a, 1, axis=2)
    >>> d_ab, d_ba = surface_distances(a, b, (0.7, 0.7, 2.5))
    >>> float(d_ab.max()), d_ab.size
    (2.5, 26)
    """
    spacing = _check_spacing(spacing)
    structure = ndimage.generate_binary_structure(3, _check_connectivity(connectivity))
    p = np.asarray(pred_mask)
    r = np.asarray(ref_mask)
    if p.ndim != 3 or p.shape != r.shape:
        raise GridMismatchError(f"mask shapes differ or are not 3-D: {p.shape} vs {r.shape}")
    if _extent(p) is None or _extent(r) is None:
        raise ValueError("surface distances are undefined when a mask is empty")
    box = _union_box(p.shape, p, r, margin=1)
    pb = p[box].astype(bool, copy=False)
    rb = r[box].astype(bool, copy=False)
    sp = _surface(pb, structure)
    sr = _surface(rb, structure)
    return _directed_distances(sp, sr, spacing), _directed_distances(sr, sp, spacing)


def surface_scores(d_pred_to_ref: np.ndarray, d_ref_to_pred: np.ndarray,
                   assd_mode: str = "pooled") -> dict[str, float]:
    """ASSD, RMSD, HD95 and MSD from the two sets of directed distances.

    Parameters
    ----------
    d_pred_to_ref, d_ref_to_pred : ndarray, float64, 1-D, mm, both non-empty
        :func:`surface_distances` of one structure.
    assd_mode : {"pooled", "mean_of_directed"}, default "pooled"
        "pooled": mean of all distances of both directions (LiTS, MedPy 0.5.2);
        "mean_of_directed": mean of the two directed means (MedPy <= 0.4.0 ``assd``).
        Not checked here (:func:`livertumor.evaluation.per_case.binary_scores` checks it).

    Returns
    -------
    dict
        ``assd``, ``rmsd``, ``hd95``, ``msd`` (floats, mm), ``pred_surface_voxels``,
        ``ref_surface_voxels`` (ints: the sizes of the two arrays).

    Examples
    --------
    >>> s = surface_scores(np.array([0.0, 1.0, 2.0]), np.array([3.0]))
    >>> s["assd"], s["msd"], s["ref_surface_voxels"]
    (1.5, 3.0, 1)
    """
    d_pr, d_rp = d_pred_to_ref, d_ref_to_pred
    n_sp, n_sr = d_pr.size, d_rp.size
    out: dict[str, float] = {}
    if assd_mode == "pooled":
        out["assd"] = float((d_pr.sum() + d_rp.sum()) / (n_sp + n_sr))
    else:
        out["assd"] = float((d_pr.mean() + d_rp.mean()) / 2.0)
    out["rmsd"] = float(math.sqrt((np.square(d_pr).sum() + np.square(d_rp).sum())
                                  / (n_sp + n_sr)))
    out["hd95"] = float(np.percentile(np.concatenate([d_pr, d_rp]), 95))
    out["msd"] = float(max(d_pr.max(), d_rp.max()))
    out.update(pred_surface_voxels=n_sp, ref_surface_voxels=n_sr)
    return out


def empty_surface_scores(both_empty: bool) -> dict[str, float]:
    """The surface metrics when a mask is empty: 0.0 if both are, NaN (undefined) if one is.

    Same keys as :func:`surface_scores`, with 0 surface voxels on both sides.

    >>> empty_surface_scores(False)["hd95"]
    nan
    """
    value = 0.0 if both_empty else math.nan
    out: dict[str, float] = dict.fromkeys(SURFACE_METRICS, value)
    out.update(pred_surface_voxels=0, ref_surface_voxels=0)
    return out
