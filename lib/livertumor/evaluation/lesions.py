"""Lesion-wise tumor detection as in the LiTS scoring program.

Lesions are the 3-D connected components of label 2; a group of reference lesions counts as
detected when its IoU with the predicted components matched to it is above a threshold
(LiTS: 0.5). :func:`detect_lesions` scores one case and lists every lesion with its volume
and largest axial diameter; :func:`aggregate_detection` sums the counts over cases into
precision and recall. The matching rule is in :func:`detect_lesions`; how its counts compare
with the LiTS program's, and the sources checked: ``docs/scoring.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from .inputs import _check_connectivity, _check_pair, _check_spacing, _union_box

# Lesions: scipy.ndimage.label's default structure (face connectivity), as the LiTS program
# called it (`label_connected_components(submission_volume == 2)`).
LITS_LESION_CONNECTIVITY = 1


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
        self.origin = (0, 0, 0)                      # index of the labels' first voxel

    @property
    def ref_detected(self) -> np.ndarray:
        return self.group_detected[self.ref_group]

    @property
    def pred_detected(self) -> np.ndarray:
        return np.array([g >= 0 and self.group_detected[g] for g in self.pred_group], bool)

    def counts(self) -> dict[str, int]:
        """Per-case lesion counts, in the order :func:`detect_lesions` returns them."""
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "n_reference": self.n_ref,
                "n_predicted": self.n_pred, "merge_errors": self.merge_errors,
                "split_errors": self.split_errors}


# ----------------------------------------------------------------------------- matching


def _in_plane_cross() -> np.ndarray:
    cross = np.zeros((3, 3, 3), bool)
    cross[:, 1, 1] = cross[1, :, 1] = True
    return cross


def _label_lesions(pred_tumor: np.ndarray, ref_tumor: np.ndarray, structure: np.ndarray,
                   merge_reference_in_plane: bool) -> _Match:
    """Connected components of both tumor masks, as an unmatched :class:`_Match`."""
    pred_labels, n_pred = ndimage.label(pred_tumor, structure=structure)
    if merge_reference_in_plane:
        grown = ndimage.binary_dilation(ref_tumor, structure=_in_plane_cross())
        ref_labels, n_ref = ndimage.label(grown, structure=structure)
        ref_labels[~ref_tumor] = 0
    else:
        ref_labels, n_ref = ndimage.label(ref_tumor, structure=structure)
    return _Match(pred_labels, int(n_pred), ref_labels, int(n_ref))


def _overlap_matrix(m: _Match) -> tuple[np.ndarray, np.ndarray]:
    """Predicted components that overlap the reference, and the voxels they share with it.

    Returns ``p_ids`` (sorted 0-based component indices) and C, shape (len(p_ids), n_ref),
    int64: C[i, j] = voxels shared by component ``p_ids[i]`` and reference lesion j.
    """
    n_ref = m.n_ref
    both = (m.pred_labels > 0) & (m.ref_labels > 0)
    code = m.pred_labels[both].astype(np.int64) * (n_ref + 1) + m.ref_labels[both]
    codes, counts = np.unique(code, return_counts=True)
    pi, gi = codes // (n_ref + 1) - 1, codes % (n_ref + 1) - 1
    p_ids = np.unique(pi)
    overlap = np.zeros((p_ids.size, n_ref), np.int64)
    overlap[np.searchsorted(p_ids, pi), gi] = counts
    return p_ids, overlap


def _merge_reference_lesions(m: _Match, overlap: np.ndarray) -> tuple[np.ndarray, list]:
    """Step 1: merge the reference lesions one prediction overlaps most into one group.

    Returns the overlap with each group's columns summed into its first lesion's column
    (merged columns zeroed) and the members of each group (empty for a merged-away column);
    sets ``m.ref_group`` and counts ``m.merge_errors``.
    """
    work = overlap.copy()
    members = [[j] for j in range(m.n_ref)]
    for i in range(overlap.shape[0]):
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
    return work, members


def _score_groups(m: _Match, p_ids: np.ndarray, overlap: np.ndarray, work: np.ndarray,
                  members: list, iou_threshold: float) -> None:
    """Steps 2-4: assign predictions to groups, merge them, detect groups by IoU."""
    pred_sizes = np.bincount(m.pred_labels.ravel(), minlength=m.n_pred + 1)[1:]
    ref_sizes = np.bincount(m.ref_labels.ravel(), minlength=m.n_ref + 1)[1:]
    assigned = np.argmax(work, axis=1)                     # 2. the group overlapped most
    for g in range(m.n_ref):
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
    m = _label_lesions(pred_tumor[box], ref_tumor[box], structure, merge_reference_in_plane)
    m.origin = tuple(s.start for s in box)
    if m.n_ref == 0:
        m.fp = m.n_pred
        return m
    p_ids, overlap = _overlap_matrix(m)
    work, members = _merge_reference_lesions(m, overlap)
    _score_groups(m, p_ids, overlap, work, members, iou_threshold)
    m.fp += int(m.n_pred - p_ids.size)                     # 5. no overlap at all
    m.fn = m.n_ref - m.tp
    return m


# ----------------------------------------------------------------------------- one case


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


LESION_COLUMNS = {
    "kind": "object", "lesion": "int64", "group": "int64", "voxels": "int64",
    "volume_ml": "float64", "diameter_mm": "float64", "detected": "bool", "iou": "float64",
    "row": "float64", "column": "float64", "slice": "float64", "largest_slice": "int64",
}
"""The columns of a lesion table (one row per lesion of :func:`detect_lesions`) and their dtypes."""


def lesion_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """The ``lesions`` rows of :func:`detect_lesions` as a table with the dtypes of
    :data:`LESION_COLUMNS`, also when a case has none (so that tables of several cases
    concatenate with ``detected`` still boolean)."""
    return pd.DataFrame(list(rows), columns=list(LESION_COLUMNS)).astype(LESION_COLUMNS)


def _lesion_rows(match: _Match, spacing: tuple[float, float, float] | None,
                 origin: tuple[int, int, int] = (0, 0, 0)) -> list[dict]:
    """One row per lesion, reference lesions first (see :func:`detect_lesions`); ``origin``:
    the index of the matching box's first voxel in the whole volume."""
    voxel_ml = math.nan if spacing is None else float(np.prod(spacing)) / 1000.0
    rows: list[dict] = []
    for kind, labels, n, groups, detected in (
        ("reference", match.ref_labels, match.n_ref, match.ref_group, match.ref_detected),
        ("prediction", match.pred_labels, match.n_pred, match.pred_group,
         match.pred_detected),
    ):
        for idx, obj in enumerate(ndimage.find_objects(labels, max_label=n)):
            component = labels[obj] == idx + 1  # every label 1..n is present
            group = int(groups[idx])
            centre = [o + s.start + c for o, s, c in
                      zip(origin, obj, ndimage.center_of_mass(component), strict=True)]
            areas = component.sum(axis=(0, 1))
            rows.append({
                "kind": kind,
                "lesion": idx + 1,
                "group": group,
                "voxels": int(np.count_nonzero(component)),
                "volume_ml": int(np.count_nonzero(component)) * voxel_ml,
                "diameter_mm": (math.nan if spacing is None
                                else _largest_axial_diameter(component, spacing)),
                "detected": bool(detected[idx]),
                "iou": float(match.group_iou[group]) if group >= 0 else 0.0,
                "row": round(centre[0], 1), "column": round(centre[1], 1),
                "slice": round(centre[2], 1),
                "largest_slice": int(origin[2] + obj[2].start + int(np.argmax(areas))),
            })
    return rows


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

    Lesions are the 3-D connected components of label 2 in each map, with
    ``generate_binary_structure(3, lesion_connectivity)`` (default 1, face neighbours:
    ``scipy.ndimage.label``'s default, which the LiTS program used). Matching follows the
    program's ``detect_lesions`` (veugene/lits-challenge-scoring, ``calc_metric.py``):

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

    So TP + FN = number of reference lesions: TP counts lesions, FP components. How the
    counts compare with the LiTS program's (FN differs): ``docs/scoring.md``.

    Parameters
    ----------
    pred, truth : ndarray, uint8, shape (rows, columns, slices)
        Canonical label maps (0, 1, 2) on the same grid.
    spacing : sequence of 3 float, optional
        Voxel size in mm; without it ``volume_ml`` and ``diameter_mm`` are NaN.
    iou_threshold : float in [0, 1), default 0.5
        LiTS: 0.5 (its later analysis also reports 0: any overlap).
    lesion_connectivity : {1, 2, 3}, default 1
        Neighbourhood of the connected components (1: 6-, 2: 18-, 3: 26-connectivity).
    merge_reference_in_plane : bool, default False
        Dilate the reference tumor by one pixel in the axial plane (a 4-neighbour cross)
        before labelling, then trim the dilation, so reference fragments one pixel apart in a
        slice form one lesion (the later LiTS analysis code did; the challenge's did not).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``n_reference``, ``n_predicted``, ``merge_errors``,
        ``split_errors`` (ints) and ``lesions``: a list of dicts, one per lesion, reference
        lesions first, with ``kind`` ("reference" or "prediction"), ``lesion`` (1-based
        component number within its map), ``group`` (matching group, -1 for a prediction
        overlapping nothing), ``voxels``, ``volume_ml``, ``diameter_mm`` (largest in-slice
        Feret diameter of the pixel squares, over slices: RECIST-like, see
        ``docs/scoring.md``), ``detected`` (reference: found; prediction: part of a detected
        group, i.e. not a FP), ``iou`` (of its group; 0.0 when no component matched),
        ``row``, ``column``, ``slice`` (its centre of mass, voxel indices of the canonical
        arrays) and ``largest_slice`` (the axial slice where it is largest).
        :func:`lesion_table` gives a table.

    Raises
    ------
    GridMismatchError, LabelError
        Shapes differ or are not 3-D; a value other than 0, 1, 2.
    ValueError
        Bad spacing, threshold or connectivity.

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
    origin = tuple(s.start + o for s, o in zip(box, match.origin, strict=True))
    return {**match.counts(), "lesions": _lesion_rows(match, sp, origin)}


# ----------------------------------------------------------------------------- many cases


def _detection_summary(tp: int, fp: int, fn: int) -> dict[str, float]:
    return {"precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / (tp + fn) if tp + fn else math.nan}


def aggregate_detection(per_case: Iterable[Mapping]) -> dict[str, float]:
    """Lesion detection over many cases: counts summed over cases, then precision and recall.

    Parameters
    ----------
    per_case : iterable of dict
        :func:`detect_lesions` results (keys ``tp``, ``fp``, ``fn``, ...) or
        :func:`livertumor.evaluation.per_case.lits_scores` rows (keys ``lesion_tp``,
        ``lesion_fp``, ``lesion_fn``, ...).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``merge_errors``, ``split_errors``, ``n_cases`` (ints);
        ``precision`` = TP / (TP + FP) and ``recall`` = TP / (TP + FN), NaN when the
        denominator is 0 (no predicted / no reference lesion in any case; the LiTS program
        reported 0 there).

    Raises
    ------
    KeyError
        A case lacks one of the counts.
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


SIZE_CLASSES_MM = ((0.0, 10.0, "< 10 mm"), (10.0, 20.0, "10-20 mm"), (20.0, np.inf, "> 20 mm"))
"""Lesion size classes by largest axial diameter, as the LiTS benchmark reports detection
(Bilic et al. 2023): [low, high) in mm and the label."""


def detection_by_size(lesions: pd.DataFrame) -> pd.DataFrame:
    """Lesion recall and precision per size class, counts summed over cases.

    Parameters
    ----------
    lesions : the ``lesions`` rows of :func:`detect_lesions` of every case (``kind``,
        ``diameter_mm``, ``detected``), e.g. ``pandas.DataFrame`` of them concatenated.

    Returns
    -------
    DataFrame indexed by size class (:data:`SIZE_CLASSES_MM`) and ``all``, with columns
    ``reference`` (lesions), ``found``, ``recall`` (found / reference) by the reference
    lesion's diameter, ``touched`` and ``recall_any_overlap`` (reference lesions that any
    predicted component overlaps, the lenient criterion LiTS also reported: IoU > 0 instead of
    > 0.5), and ``predicted`` (components), ``true``, ``precision`` (true / predicted) by the
    predicted component's diameter; NaN where a count is 0.
    """
    rows = {}
    ref = lesions[lesions["kind"] == "reference"] if len(lesions) else lesions
    pred = lesions[lesions["kind"] == "prediction"] if len(lesions) else lesions
    classes = [*SIZE_CLASSES_MM, (0.0, np.inf, "all")]
    for low, high, name in classes:
        r = ref[(ref["diameter_mm"] >= low) & (ref["diameter_mm"] < high)] if len(ref) else ref
        p = (pred[(pred["diameter_mm"] >= low) & (pred["diameter_mm"] < high)]
             if len(pred) else pred)
        n_ref, found = len(r), int(r["detected"].sum()) if len(r) else 0
        touched = int((r["iou"] > 0).sum()) if len(r) else 0
        n_pred, true = len(p), int(p["detected"].sum()) if len(p) else 0
        rows[name] = {"reference": n_ref, "found": found,
                      "recall": found / n_ref if n_ref else np.nan, "touched": touched,
                      "recall_any_overlap": touched / n_ref if n_ref else np.nan,
                      "predicted": n_pred, "true": true,
                      "precision": true / n_pred if n_pred else np.nan}
    return pd.DataFrame.from_dict(rows, orient="index")
