"""LiTS scoring of whole volumes: overlap, volume and surface metrics, lesion detection, burden.

Every function takes canonical label arrays (``volumes.read_mask``: shape (rows, columns,
slices), 0 background, 1 liver, 2 tumor) and the voxel spacing in mm along the same three
axes (``Geometry.spacing``); liver is every label >= 1, tumor is label 2, as in the LiTS
scoring program. The definitions (Dice, IoU, VOE, RVD; surfaces, pooled ASSD, RMSD, HD95,
MSD), what every metric returns when a mask is empty (NaN = undefined, never an exception),
the RVD sign, the public sources checked and the speed and memory figures are in
``docs/scoring.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from ..data.volumes import read_geometry, read_mask
from ..errors import GridMismatchError, LabelError

STRUCTURES: tuple[str, ...] = ("liver", "tumor")
"""The scored structures: liver = labels >= 1, tumor = label 2."""

SEGMENTATION_METRICS: tuple[str, ...] = ("dice", "iou", "voe", "rvd", "assd", "rmsd", "hd95",
                                         "msd")
"""Per-structure metrics of :func:`lits_scores` (keys ``liver_dice``, ``tumor_hd95``, ...)."""

ASSD_MODES: tuple[str, ...] = ("pooled", "mean_of_directed")

SLICE_EMPTY_RULES: tuple[str, ...] = ("exclude", "one")

# Lesions: scipy.ndimage.label's default structure (face connectivity), as the LiTS program
# called it (`label_connected_components(submission_volume == 2)`).
LITS_LESION_CONNECTIVITY = 1


# ----------------------------------------------------------------------------- input checks


def _check_labels(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.size == 0:
        raise GridMismatchError(
            f"{name} must be a non-empty 3-D label array (rows, columns, slices); "
            f"got shape {arr.shape}"
        )
    if arr.dtype == np.bool_:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        ok = int(arr.min()) >= 0 and int(arr.max()) <= 2
    else:
        ok = bool(np.all((arr == 0) | (arr == 1) | (arr == 2)))
    if not ok:
        values = np.unique(arr[(arr != 0) & (arr != 1) & (arr != 2)])
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if values.size > 8 else "")
        raise LabelError(
            f"{name} holds label values {shown}; LiTS label maps hold only 0 (background), "
            "1 (liver), 2 (tumor)"
        )
    return arr


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = _check_labels(pred, "prediction")
    truth = _check_labels(truth, "reference")
    if pred.shape != truth.shape:
        raise GridMismatchError(
            f"prediction shape {pred.shape} differs from the reference shape {truth.shape}; "
            "write predictions on the reference's grid (volumes.write_like)"
        )
    return pred, truth


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be three positive finite mm values; got {spacing!r}")
    return sp


def _check_connectivity(connectivity: int, name: str = "connectivity") -> int:
    if connectivity not in (1, 2, 3):
        raise ValueError(f"{name} must be 1 (faces), 2 (faces + edges) or 3 (full 3x3x3); "
                         f"got {connectivity!r}")
    return int(connectivity)


# ----------------------------------------------------------------------------- boxes


def _extent(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """Per-axis [first, last + 1) of the nonzero voxels of a 3-D array, or None if empty."""
    m01 = mask.any(axis=2)
    rows = np.flatnonzero(m01.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m01.any(axis=0))
    slices = np.flatnonzero(mask.any(axis=(0, 1)))
    return [(int(a[0]), int(a[-1]) + 1) for a in (rows, cols, slices)]


def _union_box(shape: tuple[int, ...], *masks: np.ndarray,
               margin: int = 1) -> tuple[slice, ...] | None:
    """Bounding box of the nonzero voxels of all masks, widened by ``margin`` (clipped)."""
    extents = [e for e in (_extent(m) for m in masks) if e is not None]
    if not extents:
        return None
    return tuple(
        slice(max(0, min(e[ax][0] for e in extents) - margin),
              min(shape[ax], max(e[ax][1] for e in extents) + margin))
        for ax in range(3)
    )


# ----------------------------------------------------------------------------- distances


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


# ----------------------------------------------------------------------------- one structure


def binary_scores(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing: Sequence[float],
    connectivity: int = 1,
    assd_mode: str = "pooled",
) -> dict[str, float]:
    """All LiTS segmentation metrics of one structure (two binary masks).

    Parameters
    ----------
    pred_mask, ref_mask : ndarray, bool, shape (rows, columns, slices)
    spacing : sequence of 3 float
        Voxel size in mm along the three axes.
    connectivity : {1, 2, 3}, default 1
        Surface definition (see ``docs/scoring.md``); LiTS used 2.
    assd_mode : {"pooled", "mean_of_directed"}, default "pooled"
        "pooled": mean of all distances of both directions (LiTS, MedPy 0.5.2);
        "mean_of_directed": mean of the two directed means (MedPy <= 0.4.0 ``assd``).

    Returns
    -------
    dict
        ``dice``, ``iou``, ``voe``, ``rvd`` (floats, unitless), ``assd``, ``rmsd``, ``hd95``,
        ``msd`` (floats, mm), ``intersection``, ``pred_voxels``, ``ref_voxels``,
        ``pred_surface_voxels``, ``ref_surface_voxels`` (ints). Empty masks follow the table
        in ``docs/scoring.md`` (NaN = undefined).

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
    n_p = int(np.count_nonzero(p))
    n_r = int(np.count_nonzero(r))
    inter = int(np.count_nonzero(p & r)) if n_p and n_r else 0
    out: dict[str, float] = {}
    if n_p + n_r == 0:
        dice = iou = 1.0
    else:
        dice = 2.0 * inter / (n_p + n_r)
        iou = inter / (n_p + n_r - inter)
    out["dice"], out["iou"], out["voe"] = dice, iou, 1.0 - iou
    out["rvd"] = (n_p - n_r) / n_r if n_r else (0.0 if n_p == 0 else math.nan)
    n_sp = n_sr = 0
    if n_p and n_r:
        d_pr, d_rp = surface_distances(p, r, spacing, connectivity)
        n_sp, n_sr = d_pr.size, d_rp.size
        if assd_mode == "pooled":
            out["assd"] = float((d_pr.sum() + d_rp.sum()) / (n_sp + n_sr))
        else:
            out["assd"] = float((d_pr.mean() + d_rp.mean()) / 2.0)
        out["rmsd"] = float(math.sqrt((np.square(d_pr).sum() + np.square(d_rp).sum())
                                      / (n_sp + n_sr)))
        out["hd95"] = float(np.percentile(np.concatenate([d_pr, d_rp]), 95))
        out["msd"] = float(max(d_pr.max(), d_rp.max()))
    else:
        value = 0.0 if n_p + n_r == 0 else math.nan
        for key in ("assd", "rmsd", "hd95", "msd"):
            out[key] = value
    out.update(intersection=inter, pred_voxels=n_p, ref_voxels=n_r,
               pred_surface_voxels=n_sp, ref_surface_voxels=n_sr)
    return out


# ----------------------------------------------------------------------------- one case


def lits_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    connectivity: int = 1,
    *,
    assd_mode: str = "pooled",
    iou_threshold: float = 0.5,
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
        Lesion detection threshold (see :func:`detect_lesions`).

    Returns
    -------
    dict (flat, one row of a per-case table)
        For ``s`` in ("liver", "tumor"):

        * ``{s}_dice``, ``{s}_iou``, ``{s}_voe``, ``{s}_rvd``: floats;
        * ``{s}_assd``, ``{s}_rmsd``, ``{s}_hd95``, ``{s}_msd``: floats, mm;
        * ``{s}_intersection``, ``{s}_pred_voxels``, ``{s}_ref_voxels``: ints (for the
          global Dice of :func:`aggregate_scores`); ``{s}_pred_ml``, ``{s}_ref_ml``: mL.

        Also ``tumor_burden_pred`` and ``tumor_burden_ref`` (tumor voxels / liver voxels,
        liver = labels >= 1; NaN when that map has no liver, where LiTS put 9001 for the
        prediction), the lesion detection counts
        ``lesion_tp``, ``lesion_fp``, ``lesion_fn``, ``lesion_n_reference``,
        ``lesion_n_predicted``, ``lesion_merge_errors``, ``lesion_split_errors`` (LiTS rule,
        face-connected lesions, ``iou_threshold``), and ``connectivity``, ``assd_mode``,
        ``voxel_volume_ml``. Empty structures follow the table in ``docs/scoring.md``.

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
    box = _union_box(pred.shape, pred, truth, margin=1)
    if box is None:  # both maps all background: any one voxel scores the same
        box = (slice(0, 1),) * 3
    pc, tc = pred[box], truth[box]
    out: dict[str, float] = {}
    regions = {"liver": lambda a: a >= 1, "tumor": lambda a: a == 2}
    for name, region in regions.items():
        scores = binary_scores(region(pc), region(tc), spacing, connectivity, assd_mode)
        for key in SEGMENTATION_METRICS:
            out[f"{name}_{key}"] = scores[key]
        for key in ("intersection", "pred_voxels", "ref_voxels"):
            out[f"{name}_{key}"] = scores[key]
        out[f"{name}_pred_ml"] = scores["pred_voxels"] * voxel_ml
        out[f"{name}_ref_ml"] = scores["ref_voxels"] * voxel_ml
    for side in ("pred", "ref"):
        liver = out[f"liver_{side}_voxels"]
        out[f"tumor_burden_{side}"] = (out[f"tumor_{side}_voxels"] / liver if liver
                                       else math.nan)
    match = _match_lesions(pc == 2, tc == 2, iou_threshold, LITS_LESION_CONNECTIVITY, False)
    out.update(lesion_tp=match.tp, lesion_fp=match.fp, lesion_fn=match.fn,
               lesion_n_reference=match.n_ref, lesion_n_predicted=match.n_pred,
               lesion_merge_errors=match.merge_errors, lesion_split_errors=match.split_errors)
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


# ----------------------------------------------------------------------------- lesions


class _Match:
    """Result of the LiTS lesion matching inside a box (0-based component indices)."""

    def __init__(self, pred_labels, n_pred, ref_labels, n_ref):
        self.pred_labels, self.n_pred = pred_labels, n_pred
        self.ref_labels, self.n_ref = ref_labels, n_ref
        self.ref_group = np.arange(n_ref)            # reference lesion -> group (column)
        self.pred_group = np.full(n_pred, -1)        # predicted component -> group, -1: none
        self.group_iou = np.zeros(n_ref)             # IoU of each group with its predictions
        self.group_detected = np.zeros(n_ref, bool)
        self.tp = self.fp = self.fn = 0
        self.merge_errors = self.split_errors = 0

    @property
    def ref_detected(self) -> np.ndarray:
        return self.group_detected[self.ref_group]

    @property
    def pred_detected(self) -> np.ndarray:
        return np.array([g >= 0 and self.group_detected[g] for g in self.pred_group], bool)


def _in_plane_cross() -> np.ndarray:
    cross = np.zeros((3, 3, 3), bool)
    cross[:, 1, 1] = cross[1, :, 1] = True
    return cross


def _match_lesions(pred_tumor: np.ndarray, ref_tumor: np.ndarray, iou_threshold: float,
                   lesion_connectivity: int, merge_reference_in_plane: bool) -> _Match:
    """LiTS lesion matching (veugene/lits-challenge-scoring, helpers/calc_metric.py).

    Steps, with C[i, j] = voxels shared by predicted component i and reference lesion j:

    1. For each predicted component i that overlaps the reference (in label order), the
       reference lesions j that i overlaps and for which i is the largest overlapper
       (first ``argmax`` of column j) are merged into one group (merge error: count - 1).
    2. Each overlapping predicted component is assigned to the one group it overlaps most
       (first ``argmax`` of its row).
    3. A group's predictions are merged (split error: max(0, #predictions - #lesions)).
    4. IoU of a group = |P_g ∩ R_g| / |P_g ∪ R_g| (P_g: union of its predicted components,
       R_g: union of its reference lesions). IoU > threshold: every lesion of the group is a
       TP; otherwise its lesions are FN and its predicted components FP.
    5. Predicted components that overlap no reference lesion are FP.

    FN = lesions - TP (LiTS counted an undetected merged group once).
    """
    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1); got {iou_threshold!r}")
    structure = ndimage.generate_binary_structure(
        3, _check_connectivity(lesion_connectivity, "lesion_connectivity"))
    box = _union_box(pred_tumor.shape, pred_tumor, ref_tumor, margin=1)
    if box is None:  # no tumor in either map
        empty = np.zeros((1, 1, 1), np.int32)
        return _Match(empty, 0, empty, 0)
    pred_tumor, ref_tumor = pred_tumor[box], ref_tumor[box]
    pred_labels, n_pred = ndimage.label(pred_tumor, structure=structure)
    if merge_reference_in_plane:
        grown = ndimage.binary_dilation(ref_tumor, structure=_in_plane_cross())
        ref_labels, n_ref = ndimage.label(grown, structure=structure)
        ref_labels[~ref_tumor] = 0
    else:
        ref_labels, n_ref = ndimage.label(ref_tumor, structure=structure)
    m = _Match(pred_labels, int(n_pred), ref_labels, int(n_ref))
    if n_ref == 0:
        m.fp = m.n_pred
        return m
    both = (pred_labels > 0) & (ref_labels > 0)
    code = pred_labels[both].astype(np.int64) * (n_ref + 1) + ref_labels[both]
    codes, counts = np.unique(code, return_counts=True)
    pi, gi = codes // (n_ref + 1) - 1, codes % (n_ref + 1) - 1
    p_ids = np.unique(pi)                                  # overlapping components, sorted
    overlap = np.zeros((p_ids.size, n_ref), np.int64)      # the original C
    overlap[np.searchsorted(p_ids, pi), gi] = counts
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)[1:]
    ref_sizes = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)[1:]

    # 1. merge reference lesions spanned by one prediction (columns summed in place).
    work = overlap.copy()
    members = [[j] for j in range(n_ref)]
    for i in range(p_ids.size):
        cols = np.flatnonzero(work[i])
        merge = [c for c in cols if int(np.argmax(work[:, c])) == i]
        if len(merge) > 1:
            keep = merge[0]
            work[:, keep] = work[:, merge].sum(axis=1)
            for c in merge[1:]:
                members[keep].extend(members[c])
                members[c] = []
                work[:, c] = 0
            m.ref_group[members[keep]] = keep
            m.merge_errors += len(merge) - 1
    # 2. each overlapping prediction -> the group it overlaps most.
    assigned = np.argmax(work, axis=1)
    # 3.-4. per group: merge its predictions, IoU against its lesions.
    for g in range(n_ref):
        if not members[g]:
            continue
        rows = np.flatnonzero(assigned == g)
        if rows.size == 0:
            continue
        m.pred_group[p_ids[rows]] = g
        m.split_errors += max(0, rows.size - len(members[g]))
        inter = int(overlap[np.ix_(rows, members[g])].sum())
        union = int(pred_sizes[p_ids[rows]].sum() + ref_sizes[members[g]].sum()) - inter
        m.group_iou[g] = inter / union
        if m.group_iou[g] > iou_threshold:
            m.group_detected[g] = True
            m.tp += len(members[g])
        else:
            m.fp += rows.size
    m.fp += int(n_pred - p_ids.size)                       # 5. no overlap at all
    m.fn = m.n_ref - m.tp
    return m


def _largest_axial_diameter(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Largest in-slice Feret diameter (mm) of a 3-D mask, over its axial slices.

    Pixels are squares of ``spacing[0] x spacing[1]`` mm; the diameter is the largest
    distance between two points of the pixel squares of one slice (so one pixel measures its
    diagonal), found on the convex hull of the corners of the slice's boundary pixels.
    """
    sr, sc = spacing[0], spacing[1]
    offsets = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    best = 0.0
    for k in range(mask.shape[2]):
        sl = mask[:, :, k]
        if not sl.any():
            continue
        edge = sl & ~ndimage.binary_erosion(sl, border_value=0)
        centres = np.argwhere(edge).astype(np.float64)
        pts = np.unique((centres[:, None, :] + offsets[None]).reshape(-1, 2), axis=0)
        pts *= (sr, sc)
        if len(pts) > 4:
            pts = pts[ConvexHull(pts).vertices]
        best = max(best, float(pdist(pts).max()))
    return best


def detect_lesions(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float] | None = None,
    iou_threshold: float = 0.5,
    *,
    lesion_connectivity: int = LITS_LESION_CONNECTIVITY,
    merge_reference_in_plane: bool = False,
) -> dict:
    """Lesion-wise detection of tumors (label 2) as in the LiTS scoring program.

    Lesions are the 3-D connected components of label 2, in the reference and in the
    prediction, with ``generate_binary_structure(3, lesion_connectivity)``; the default 1
    (face neighbours, 6-connectivity) is ``scipy.ndimage.label``'s default, which the LiTS
    program used. Matching follows the program's ``detect_lesions``
    (veugene/lits-challenge-scoring, ``program/helpers/calc_metric.py``):

    1. reference lesions that one predicted component overlaps most are merged into one
       group (a *merge error* per extra lesion);
    2. every predicted component that overlaps the reference joins the group it shares the
       most voxels with; a group with more components than lesions has *split errors*;
    3. a group is **detected** when IoU(union of its predicted components, union of its
       reference lesions) > ``iou_threshold`` (strictly); then each of its reference lesions
       is a true positive (TP), else each is a false negative (FN) and each of its predicted
       components a false positive (FP);
    4. a predicted component that overlaps no reference lesion is a FP; a reference lesion
       no component overlaps is a FN.

    So TP + FN = number of reference lesions, and TP counts lesions, FP components. TP, FP
    and the merge and split errors equal those of the LiTS function (checked against a port
    of it on 400 random cases); its FN differs in one case: LiTS counts an *undetected*
    group of merged reference lesions as one FN (while a detected one gives a TP per lesion),
    we count one FN per lesion.

    Parameters
    ----------
    pred, truth : ndarray, uint8, shape (rows, columns, slices)
        Canonical label maps (0, 1, 2) on the same grid.
    spacing : sequence of 3 float, optional
        Voxel size in mm (rows, columns, slices); without it ``volume_ml`` and
        ``diameter_mm`` are NaN.
    iou_threshold : float in [0, 1), default 0.5
        LiTS: 0.5 (its later analysis also reports 0: any overlap).
    lesion_connectivity : {1, 2, 3}, default 1
        Neighbourhood of the connected components (1: 6-, 2: 18-, 3: 26-connectivity).
    merge_reference_in_plane : bool, default False
        Before labelling, dilate the reference tumor by one pixel in the axial plane (a
        4-neighbour cross), label, then trim the dilation, so reference fragments one pixel
        apart in a slice form one lesion. The later LiTS analysis code did this
        (veugene/lits-challenge-scoring ``program/evaluate.py``); the challenge's scoring
        program (PatrickChrist/lits-challenge-scoring) did not.

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``n_reference``, ``n_predicted``, ``merge_errors``,
        ``split_errors`` (ints) and ``lesions``: a list of dicts, one per lesion, reference
        lesions first, with ``kind`` ("reference" or "prediction"), ``lesion`` (1-based
        component number within its map), ``group`` (matching group, -1 for a prediction
        overlapping nothing), ``voxels``, ``volume_ml``, ``diameter_mm`` (largest axial
        diameter: the largest in-slice Feret diameter of the pixel squares, over slices;
        RECIST-like, whereas LiTS measured a minimum bounding box of the projection),
        ``detected`` (reference: found; prediction: part of a detected group, i.e. not a
        FP) and ``iou`` (of its group; 0.0 when no component matched). ``pandas.DataFrame(
        result["lesions"])`` gives a table.

    Examples
    --------
    >>> truth = np.zeros((20, 20, 6), np.uint8); truth[2:6, 2:6, 1:4] = 2
    >>> truth[12:14, 12:14, 1:3] = 2
    >>> pred = np.zeros_like(truth); pred[2:6, 2:6, 1:4] = 2; pred[15:18, 2:4, 2:4] = 2
    >>> r = detect_lesions(pred, truth, (0.7, 0.7, 2.5))
    >>> r["tp"], r["fp"], r["fn"]
    (1, 1, 1)
    """
    pred, truth = _check_pair(pred, truth)
    sp = None if spacing is None else _check_spacing(spacing)
    box = _union_box(pred.shape, pred, truth, margin=1) or (slice(0, 1),) * 3
    match = _match_lesions(pred[box] == 2, truth[box] == 2, iou_threshold,
                           lesion_connectivity, merge_reference_in_plane)
    voxel_ml = math.nan if sp is None else float(np.prod(sp)) / 1000.0
    rows: list[dict] = []
    for kind, labels, n, groups, detected in (
        ("reference", match.ref_labels, match.n_ref, match.ref_group, match.ref_detected),
        ("prediction", match.pred_labels, match.n_pred, match.pred_group,
         match.pred_detected),
    ):
        for idx, obj in enumerate(ndimage.find_objects(labels, max_label=n)):
            component = labels[obj] == idx + 1  # every label 1..n is present
            group = int(groups[idx])
            rows.append({
                "kind": kind,
                "lesion": idx + 1,
                "group": group,
                "voxels": int(np.count_nonzero(component)),
                "volume_ml": int(np.count_nonzero(component)) * voxel_ml,
                "diameter_mm": (math.nan if sp is None
                                else _largest_axial_diameter(component, sp)),
                "detected": bool(detected[idx]),
                "iou": float(match.group_iou[group]) if group >= 0 else 0.0,
            })
    return {"tp": match.tp, "fp": match.fp, "fn": match.fn, "n_reference": match.n_ref,
            "n_predicted": match.n_pred, "merge_errors": match.merge_errors,
            "split_errors": match.split_errors, "lesions": rows}


# ----------------------------------------------------------------------------- aggregation


def _detection_summary(tp: int, fp: int, fn: int) -> dict[str, float]:
    return {"precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / (tp + fn) if tp + fn else math.nan}


def aggregate_detection(per_case: Iterable[Mapping]) -> dict[str, float]:
    """Lesion detection over many cases: counts summed over cases, then precision and recall.

    Parameters
    ----------
    per_case : iterable of dict
        :func:`detect_lesions` results (keys ``tp``, ``fp``, ``fn``, ...) or
        :func:`lits_scores` rows (keys ``lesion_tp``, ``lesion_fp``, ``lesion_fn``, ...).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``merge_errors``, ``split_errors``, ``n_cases`` (ints);
        ``precision`` = TP / (TP + FP) and ``recall`` = TP / (TP + FN), NaN when the
        denominator is 0 (no predicted / no reference lesion in any case; the LiTS program
        reported 0 there).
    """
    totals = dict.fromkeys(("tp", "fp", "fn", "merge_errors", "split_errors"), 0)
    n_cases = 0
    for case in per_case:
        n_cases += 1
        for key in totals:
            value = case[key] if key in case else case[f"lesion_{key}"]
            totals[key] += int(value)
    out: dict[str, float] = dict(totals)
    out["n_cases"] = n_cases
    out.update(_detection_summary(totals["tp"], totals["fp"], totals["fn"]))
    return out


def aggregate_scores(per_case) -> dict[str, float]:
    """Summarise per-case :func:`lits_scores` rows over a data set.

    Parameters
    ----------
    per_case : list of dict or pandas.DataFrame
        One :func:`lits_scores` / :func:`score_files` row per case; other columns (case id,
        paths) are ignored.

    Returns
    -------
    dict (flat)
        * ``n_cases``;
        * for every per-structure metric ``m`` present (``liver_dice`` ... ``tumor_msd``):
          ``{m}_mean`` and ``{m}_std`` (sample standard deviation, ddof=1) over the cases
          where it is defined, ``{m}_n`` (that count) and ``{m}_n_undefined`` (cases with
          NaN, see the empty-mask table; they are left out, never counted as 0 or 1);
        * ``{s}_dice_global`` = 2 ΣI / Σ(|P| + |R|) and ``{s}_iou_global`` = ΣI / Σ(|P| + |R|
          - I), sums over all cases (LiTS's global Dice; 1.0 when the structure is absent
          from every case);
        * ``tumor_burden_rmse`` = sqrt(mean((ref - pred)²)) and
          ``tumor_burden_max_abs_error`` over cases where both burdens are defined, with
          ``tumor_burden_n`` and ``tumor_burden_n_undefined`` (a map without liver);
        * when the rows hold lesion counts: ``lesion_tp``, ``lesion_fp``, ``lesion_fn``,
          ``lesion_precision``, ``lesion_recall`` (summed over cases, see
          :func:`aggregate_detection`).

    Examples
    --------
    >>> rows = [{"tumor_dice": 0.0, "tumor_intersection": 0, "tumor_pred_voxels": 0,
    ...          "tumor_ref_voxels": 10},
    ...         {"tumor_dice": 1.0, "tumor_intersection": 990, "tumor_pred_voxels": 990,
    ...          "tumor_ref_voxels": 990}]
    >>> a = aggregate_scores(rows)
    >>> a["tumor_dice_mean"], round(a["tumor_dice_global"], 3)
    (0.5, 0.995)
    """
    import pandas as pd

    table = per_case if isinstance(per_case, pd.DataFrame) else pd.DataFrame(list(per_case))
    out: dict[str, float] = {"n_cases": int(len(table))}
    for s in STRUCTURES:
        for m in SEGMENTATION_METRICS:
            col = f"{s}_{m}"
            if col not in table:
                continue
            values = pd.to_numeric(table[col], errors="coerce").to_numpy(np.float64)
            ok = np.isfinite(values)
            n = int(ok.sum())
            out[f"{col}_mean"] = float(values[ok].mean()) if n else math.nan
            out[f"{col}_std"] = float(values[ok].std(ddof=1)) if n > 1 else math.nan
            out[f"{col}_n"] = n
            out[f"{col}_n_undefined"] = int(values.size - n)
        cols = [f"{s}_intersection", f"{s}_pred_voxels", f"{s}_ref_voxels"]
        if all(c in table for c in cols):
            inter, n_p, n_r = (int(table[c].astype(np.int64).sum()) for c in cols)
            out[f"{s}_dice_global"] = 2.0 * inter / (n_p + n_r) if n_p + n_r else 1.0
            out[f"{s}_iou_global"] = inter / (n_p + n_r - inter) if n_p + n_r else 1.0
    if "tumor_burden_pred" in table and "tumor_burden_ref" in table:
        diff = (table["tumor_burden_ref"].to_numpy(np.float64)
                - table["tumor_burden_pred"].to_numpy(np.float64))
        ok = np.isfinite(diff)
        n = int(ok.sum())
        out["tumor_burden_rmse"] = float(np.sqrt(np.mean(diff[ok] ** 2))) if n else math.nan
        out["tumor_burden_max_abs_error"] = float(np.abs(diff[ok]).max()) if n else math.nan
        out["tumor_burden_n"] = n
        out["tumor_burden_n_undefined"] = int(diff.size - n)
    lesion_cols = [f"lesion_{k}" for k in ("tp", "fp", "fn", "merge_errors", "split_errors")]
    if all(c in table for c in lesion_cols):
        det = aggregate_detection(table[lesion_cols].to_dict("records"))
        for key in ("tp", "fp", "fn", "merge_errors", "split_errors", "precision", "recall"):
            out[f"lesion_{key}"] = det[key]
    return out


# ----------------------------------------------------------------------------- per slice


def slice_scores(pred: np.ndarray, truth: np.ndarray, empty: str = "exclude"):
    """Dice and IoU of every axial slice, per structure (the 2-D "mean Dice / mean IoU").

    For slice k and structure s (liver = labels >= 1, tumor = label 2), with P and R the
    structure's pixels of that slice::

        dice = 2 |P ∩ R| / (|P| + |R|)        iou = |P ∩ R| / |P ∪ R|

    **Slices where the structure is absent from both** (|P| + |R| = 0; most slices for the
    tumor) have no defined score. ``empty="exclude"`` (default) sets their dice and iou to
    NaN, so :func:`mean_slice_scores` leaves them out of the means and counts them apart;
    ``empty="one"`` scores them 1.0 (nothing to find, nothing found), which raises the mean
    with every empty slice, as per-slice means over exported slices often silently do.
    A slice where only one of the two has the structure scores 0.0 under both rules.

    Parameters
    ----------
    pred, truth : ndarray, uint8, shape (rows, columns, slices)
        Canonical label maps (0, 1, 2) on the same grid.
    empty : {"exclude", "one"}, default "exclude"

    Returns
    -------
    pandas.DataFrame
        One row per slice per structure (liver rows first), columns ``structure`` (str),
        ``slice`` (int, 0 = most inferior), ``dice``, ``iou`` (float), ``intersection``,
        ``pred_pixels``, ``ref_pixels`` (int) and ``both_empty`` (bool).

    Examples
    --------
    >>> truth = np.zeros((4, 4, 3), np.uint8); truth[1:3, 1:3, 0] = 2
    >>> t = slice_scores(truth, truth)
    >>> t[t.structure == "tumor"].dice.tolist()
    [1.0, nan, nan]
    """
    import pandas as pd

    if empty not in SLICE_EMPTY_RULES:
        raise ValueError(f"empty must be one of {SLICE_EMPTY_RULES}; got {empty!r}")
    pred, truth = _check_pair(pred, truth)
    frames = []
    for name, region in (("liver", lambda a: a >= 1), ("tumor", lambda a: a == 2)):
        p, r = region(pred), region(truth)
        inter = np.count_nonzero(p & r, axis=(0, 1)).astype(np.int64)
        n_p = np.count_nonzero(p, axis=(0, 1)).astype(np.int64)
        n_r = np.count_nonzero(r, axis=(0, 1)).astype(np.int64)
        total = n_p + n_r
        both_empty = total == 0
        fill = math.nan if empty == "exclude" else 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(both_empty, fill, 2.0 * inter / np.maximum(total, 1))
            iou = np.where(both_empty, fill, inter / np.maximum(total - inter, 1))
        frames.append(pd.DataFrame({
            "structure": name, "slice": np.arange(pred.shape[2]), "dice": dice, "iou": iou,
            "intersection": inter, "pred_pixels": n_p, "ref_pixels": n_r,
            "both_empty": both_empty,
        }))
    return pd.concat(frames, ignore_index=True)


def mean_slice_scores(table) -> dict[str, float]:
    """Means of a :func:`slice_scores` table (one case, or several concatenated).

    Returns
    -------
    dict
        Per structure ``s``: ``{s}_mean_dice``, ``{s}_mean_iou`` (means over the rows whose
        score is defined: NaN rows, the both-empty slices under ``empty="exclude"``, are
        left out), ``{s}_n_slices`` (all rows), ``{s}_n_scored`` (rows in the means) and
        ``{s}_n_both_empty`` (slices without the structure in either map, whatever the rule).
    """
    out: dict[str, float] = {}
    for s in STRUCTURES:
        rows = table[table["structure"] == s]
        dice = rows["dice"].to_numpy(np.float64)
        iou = rows["iou"].to_numpy(np.float64)
        ok = np.isfinite(dice)
        out[f"{s}_mean_dice"] = float(dice[ok].mean()) if ok.any() else math.nan
        out[f"{s}_mean_iou"] = float(iou[ok].mean()) if ok.any() else math.nan
        out[f"{s}_n_slices"] = int(len(rows))
        out[f"{s}_n_scored"] = int(ok.sum())
        out[f"{s}_n_both_empty"] = int(rows["both_empty"].sum())
    return out
