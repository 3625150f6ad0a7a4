"""LiTS scoring: hand-computed boxes in mm, empty-mask rules, symmetry, invariance, files."""

from __future__ import annotations

import doctest
import json
import math

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from livertumor import GridMismatchError, LabelError
from livertumor.data.volumes import canonical_affine_for, reorient_image
from livertumor.evaluation import (
    aggregate,
    inputs,
    lesions,
    overlap,
    per_case,
    per_slice,
    surfaces,
)
from livertumor.evaluation.aggregate import aggregate_scores
from livertumor.evaluation.lesions import aggregate_detection, detect_lesions
from livertumor.evaluation.per_case import binary_scores, lits_scores, score_files
from livertumor.evaluation.per_slice import mean_slice_scores, slice_scores
from livertumor.evaluation.surfaces import surface_distances

SP = (0.7, 0.7, 2.5)  # mm along (rows, columns, slices): anisotropic, as in LiTS CT
SURFACE_KEYS = ("assd", "rmsd", "hd95", "msd")
SYMMETRIC_KEYS = ("dice", "iou", "voe", *SURFACE_KEYS)


def box(shape=(8, 8, 8), rows=(2, 6), cols=(2, 6), slices=(2, 6)):
    m = np.zeros(shape, bool)
    m[rows[0]:rows[1], cols[0]:cols[1], slices[0]:slices[1]] = True
    return m


def labels(liver, tumor=None):
    out = liver.astype(np.uint8)
    if tumor is not None:
        out[tumor] = 2
    return out


def blob_case(seed, shape=(24, 28, 16)):
    """A label map with a smooth irregular liver and tumors inside it, some on the border."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=3)
    liver = field > np.quantile(field, 0.5 + 0.03 * (seed % 4))      # sizes differ by seed
    spots = ndimage.gaussian_filter(rng.normal(size=shape), sigma=1.5)
    tumor = liver & (spots > np.quantile(spots, 0.88 + 0.01 * (seed % 3)))
    return labels(liver, tumor)


# ---------------------------------------------------------------- hand-computed geometry


def test_boxes_shifted_one_slice_score_overlap_and_distances_in_mm():
    # Two 4x4x4 cubes, the prediction one slice (2.5 mm) higher. Intersection 4x4x3 = 48.
    truth = box()
    pred = box(slices=(3, 7))
    s = binary_scores(pred, truth, SP)
    assert (s["intersection"], s["pred_voxels"], s["ref_voxels"]) == (48, 64, 64)
    assert s["dice"] == pytest.approx(2 * 48 / 128)
    assert s["iou"] == pytest.approx(48 / 80)
    assert s["voe"] == pytest.approx(1 - 48 / 80)
    assert s["rvd"] == 0.0
    # 56 surface voxels each (64 minus the 2x2x2 core). From the prediction's surface:
    # 36 lateral voxels in slices 3-5 lie on the reference surface (0 mm); 12 lateral voxels
    # of the top slice are 2.5 mm above the reference top; the 4 inner voxels of the bottom
    # face are one row (0.7 mm) from the reference's side; the 4 inner top voxels 2.5 mm.
    # The reverse direction is the mirror image.
    one_way = [0.0] * 36 + [2.5] * 12 + [0.7] * 4 + [2.5] * 4
    pooled = np.array(one_way * 2)
    d_pr, d_rp = surface_distances(pred, truth, SP)
    np.testing.assert_allclose(np.sort(d_pr), np.sort(one_way))
    np.testing.assert_allclose(np.sort(d_rp), np.sort(one_way))
    assert s["assd"] == pytest.approx(pooled.mean())            # 42.8 / 56
    assert s["assd"] == pytest.approx(42.8 / 56)
    assert s["rmsd"] == pytest.approx(math.sqrt(np.mean(pooled ** 2)))
    assert s["hd95"] == pytest.approx(2.5)
    assert s["msd"] == pytest.approx(2.5)


def test_one_added_voxel_is_one_row_spacing_away_and_connectivity_changes_the_surface():
    truth = box()
    pred = truth.copy()
    pred[6, 3, 3] = True          # one voxel beyond the face at row 5: 0.7 mm
    s1 = binary_scores(pred, truth, SP, connectivity=1)
    assert s1["dice"] == pytest.approx(128 / 129)
    assert s1["rvd"] == pytest.approx(1 / 64)
    # Face connectivity: (5,3,3) becomes interior in the prediction, so each surface has 56
    # voxels and one distance of 0.7 mm per direction.
    assert (s1["pred_surface_voxels"], s1["ref_surface_voxels"]) == (56, 56)
    assert s1["assd"] == pytest.approx(2 * 0.7 / 112)
    assert s1["msd"] == pytest.approx(0.7)
    assert s1["hd95"] == 0.0
    # 18-neighbourhood: (5,3,3) misses its edge neighbour (6,2,3) and stays on the surface,
    # so the prediction has 57 surface voxels and only one distance is nonzero.
    s2 = binary_scores(pred, truth, SP, connectivity=2)
    assert (s2["pred_surface_voxels"], s2["ref_surface_voxels"]) == (57, 56)
    assert s2["assd"] == pytest.approx(0.7 / 113)
    assert s2["msd"] == pytest.approx(0.7)
    # MedPy <= 0.4.0 assd: mean of the two directed means, unlike the pooled mean.
    m2 = binary_scores(pred, truth, SP, connectivity=2, assd_mode="mean_of_directed")
    assert m2["assd"] == pytest.approx((0.7 / 57 + 0.0) / 2)


def test_connectivity_2_puts_the_centre_of_a_plus_on_its_surface():
    # A 3-D plus (centre + 6 arms) against the 3x3x3 cube around it.
    cube = box(shape=(5, 5, 5), rows=(1, 4), cols=(1, 4), slices=(1, 4))
    plus = np.zeros_like(cube)
    plus[1:4, 2, 2] = plus[2, 1:4, 2] = plus[2, 2, 1:4] = True
    d1_pc, d1_cp = surface_distances(plus, cube, SP, connectivity=1)
    d2_pc, d2_cp = surface_distances(plus, cube, SP, connectivity=2)
    assert (d1_pc.size, d2_pc.size) == (6, 7)       # centre eroded away only by 18-nbhd
    assert (d1_cp.size, d2_cp.size) == (26, 26)     # the cube keeps its centre either way
    # Cube surface -> arms: 6 face centres 0; 12 edges 0.7 (one in-plane step, or one
    # in-plane step instead of a 2.5 mm slice step); 8 corners sqrt(0.7^2 + 0.7^2).
    corner = math.hypot(0.7, 0.7)
    np.testing.assert_allclose(np.sort(d1_cp), [0.0] * 6 + [0.7] * 12 + [corner] * 8)
    np.testing.assert_allclose(np.sort(d2_cp), np.sort(d1_cp))
    np.testing.assert_allclose(d1_pc, 0.0)
    np.testing.assert_allclose(np.sort(d2_pc), [0.0] * 6 + [0.7])   # centre -> a face centre
    s1 = binary_scores(plus, cube, SP, connectivity=1)
    s2 = binary_scores(plus, cube, SP, connectivity=2)
    assert s1["assd"] == pytest.approx((12 * 0.7 + 8 * corner) / 32)
    assert s2["assd"] == pytest.approx((12 * 0.7 + 8 * corner + 0.7) / 33)
    assert s1["msd"] == s2["msd"] == pytest.approx(corner)


def test_bounding_box_crop_equals_medpy_style_full_volume_distances_exactly():
    # Masks touching the array border: the crop must treat the outside as background too.
    case = blob_case(3)
    other = blob_case(4)
    for conn in (1, 2):
        structure = ndimage.generate_binary_structure(3, conn)
        for p, r in ((case >= 1, other >= 1), (case == 2, other == 2)):
            sp = p ^ ndimage.binary_erosion(p, structure=structure)
            sr = r ^ ndimage.binary_erosion(r, structure=structure)
            want_pr = ndimage.distance_transform_edt(~sr, sampling=SP)[sp]
            want_rp = ndimage.distance_transform_edt(~sp, sampling=SP)[sr]
            got_pr, got_rp = surface_distances(p, r, SP, connectivity=conn)
            np.testing.assert_array_equal(got_pr, want_pr)     # bit for bit, same order
            np.testing.assert_array_equal(got_rp, want_rp)


# ---------------------------------------------------------------- empty masks


def test_tumor_absent_from_both_scores_perfect_and_zero_distances():
    truth = labels(box(shape=(10, 10, 10)))
    s = lits_scores(truth, truth, SP)
    assert (s["tumor_dice"], s["tumor_iou"], s["tumor_voe"], s["tumor_rvd"]) == (1, 1, 0, 0)
    assert all(s[f"tumor_{k}"] == 0.0 for k in SURFACE_KEYS)
    assert (s["lesion_tp"], s["lesion_fp"], s["lesion_fn"]) == (0, 0, 0)
    assert s["tumor_burden_pred"] == s["tumor_burden_ref"] == 0.0


def test_tumor_only_in_the_prediction_has_zero_dice_and_undefined_rvd_and_distances():
    liver = box(shape=(10, 10, 10))
    truth = labels(liver)
    pred = labels(liver, box(shape=(10, 10, 10), rows=(3, 5), cols=(3, 5), slices=(3, 5)))
    s = lits_scores(pred, truth, SP)
    assert (s["tumor_dice"], s["tumor_iou"], s["tumor_voe"]) == (0.0, 0.0, 1.0)
    assert math.isnan(s["tumor_rvd"])
    assert all(math.isnan(s[f"tumor_{k}"]) for k in SURFACE_KEYS)
    assert (s["lesion_tp"], s["lesion_fp"], s["lesion_fn"]) == (0, 1, 0)


def test_tumor_only_in_the_reference_has_rvd_minus_one_and_undefined_distances():
    liver = box(shape=(10, 10, 10))
    truth = labels(liver, box(shape=(10, 10, 10), rows=(3, 5), cols=(3, 5), slices=(3, 5)))
    s = lits_scores(labels(liver), truth, SP)
    assert (s["tumor_dice"], s["tumor_iou"], s["tumor_rvd"]) == (0.0, 0.0, -1.0)
    assert all(math.isnan(s[f"tumor_{k}"]) for k in SURFACE_KEYS)
    assert (s["lesion_tp"], s["lesion_fp"], s["lesion_fn"]) == (0, 0, 1)
    assert s["liver_dice"] == 1.0    # liver = labels >= 1 includes the tumor


def test_all_background_maps_score_without_error():
    empty = np.zeros((6, 6, 6), np.uint8)
    s = lits_scores(empty, empty, SP, connectivity=2)
    assert s["liver_dice"] == s["tumor_dice"] == 1.0
    assert s["liver_msd"] == 0.0
    assert math.isnan(s["tumor_burden_pred"]) and math.isnan(s["tumor_burden_ref"])
    missed = lits_scores(empty, labels(box(shape=(6, 6, 6), rows=(1, 5))), SP)
    assert missed["liver_dice"] == 0.0 and math.isnan(missed["liver_assd"])


# ---------------------------------------------------------------- symmetry and invariance


@pytest.mark.parametrize("conn", [1, 2])
def test_swapping_prediction_and_reference_keeps_symmetric_metrics_and_flips_rvd_sign(conn):
    a, b = blob_case(0), blob_case(1)
    ab = lits_scores(a, b, SP, conn)
    ba = lits_scores(b, a, SP, conn)
    for s in ("liver", "tumor"):
        for k in SYMMETRIC_KEYS:
            assert ab[f"{s}_{k}"] == pytest.approx(ba[f"{s}_{k}"], rel=1e-12), (s, k)
        assert ab[f"{s}_rvd"] != 0
        assert np.sign(ab[f"{s}_rvd"]) == -np.sign(ba[f"{s}_rvd"])
    mab = lits_scores(a, b, SP, conn, assd_mode="mean_of_directed")
    mba = lits_scores(b, a, SP, conn, assd_mode="mean_of_directed")
    assert mab["liver_assd"] == pytest.approx(mba["liver_assd"])


@pytest.mark.parametrize("perm", [(1, 0, 2), (2, 0, 1), (0, 2, 1)])
def test_transposing_both_maps_with_the_spacing_permuted_keeps_every_distance(perm):
    a, b = blob_case(5), blob_case(6)
    want = lits_scores(a, b, SP, 2)
    spacing = tuple(SP[i] for i in perm)
    got = lits_scores(a.transpose(perm), b.transpose(perm), spacing, 2)
    for s in ("liver", "tumor"):
        for k in (*per_case.SEGMENTATION_METRICS, "pred_ml", "ref_ml"):
            assert got[f"{s}_{k}"] == pytest.approx(want[f"{s}_{k}"], rel=1e-12), (s, k)


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 1, 2)])
def test_flipping_both_maps_keeps_scores_and_lesion_counts(axes):
    a, b = blob_case(7), blob_case(8)
    want = lits_scores(a, b, SP)
    got = lits_scores(np.flip(a, axes), np.flip(b, axes), SP)
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
        else:
            assert got[key] == value, key


def test_swapping_rows_and_columns_keeps_lesion_volumes_and_axial_diameters():
    truth = np.zeros((20, 24, 6), np.uint8)
    truth[2:5, 3:11, 1:4] = 2
    truth[12:18, 14:16, 2:3] = 2
    spacing = (0.6, 0.9, 2.5)
    want = detect_lesions(truth, truth, spacing)["lesions"]
    got = detect_lesions(truth.transpose(1, 0, 2), truth.transpose(1, 0, 2),
                         (0.9, 0.6, 2.5))["lesions"]
    key = lambda r: (r["kind"], r["voxels"])  # noqa: E731
    for w, g in zip(sorted(want, key=key), sorted(got, key=key), strict=True):
        assert g["volume_ml"] == pytest.approx(w["volume_ml"])
        assert g["diameter_mm"] == pytest.approx(w["diameter_mm"])


# ---------------------------------------------------------------- aggregation


def test_global_dice_weights_cases_by_size_unlike_the_mean_of_case_dice():
    shape = (30, 30, 12)
    liver = box(shape=shape, rows=(1, 29), cols=(1, 29), slices=(1, 11))
    small = box(shape=shape, rows=(2, 4), cols=(2, 4), slices=(2, 4))          # 8 voxels
    big = box(shape=shape, rows=(10, 20), cols=(10, 20), slices=(2, 12))       # 1000 voxels
    missed = lits_scores(labels(liver), labels(liver, small), SP)               # tumor Dice 0
    perfect = lits_scores(labels(liver, big), labels(liver, big), SP)          # tumor Dice 1
    agg = aggregate_scores([missed, perfect])
    assert agg["n_cases"] == 2
    assert agg["tumor_dice_mean"] == pytest.approx(0.5)
    assert agg["tumor_dice_global"] == pytest.approx(2 * 1000 / (8 + 2000))
    assert agg["tumor_iou_global"] == pytest.approx(1000 / 1008)
    # The missed tumor has no surface distance: left out of the mean and counted.
    assert agg["tumor_assd_n"] == 1 and agg["tumor_assd_n_undefined"] == 1
    assert agg["tumor_assd_mean"] == 0.0
    assert agg["tumor_rvd_mean"] == pytest.approx(-0.5)     # (-1 + 0) / 2
    assert (agg["lesion_tp"], agg["lesion_fn"], agg["lesion_fp"]) == (1, 1, 0)
    assert agg["lesion_recall"] == pytest.approx(0.5) and agg["lesion_precision"] == 1.0


def test_aggregate_accepts_a_dataframe_and_ignores_other_columns():
    pd = pytest.importorskip("pandas")
    a = lits_scores(blob_case(0), blob_case(1), SP)
    b = lits_scores(blob_case(2), blob_case(2), SP)
    table = pd.DataFrame([a, b]).assign(case_id=["0", "2"])
    from_df = aggregate_scores(table)
    from_list = aggregate_scores([a, b])
    assert from_df == pytest.approx(from_list, nan_ok=True)
    assert from_df["liver_dice_std"] == pytest.approx(np.std([a["liver_dice"], 1.0], ddof=1))


def test_tumor_burden_rmse_over_cases_in_burden_units():
    shape = (20, 20, 10)
    liver = box(shape=shape, rows=(0, 10), cols=(0, 10), slices=(0, 10))       # 1000 voxels
    t100 = box(shape=shape, rows=(0, 10), cols=(0, 10), slices=(0, 1))         # 100 voxels
    t150 = t100 | box(shape=shape, rows=(0, 5), cols=(0, 10), slices=(1, 2))  # 150 voxels
    t200 = box(shape=shape, rows=(0, 10), cols=(0, 10), slices=(0, 2))         # 200 voxels
    c1 = lits_scores(labels(liver, t150), labels(liver, t100), SP)   # ref 0.10, pred 0.15
    c2 = lits_scores(labels(liver, t200), labels(liver, t200), SP)   # ref 0.20, pred 0.20
    assert (c1["tumor_burden_ref"], c1["tumor_burden_pred"]) == (0.1, 0.15)
    agg = aggregate_scores([c1, c2])
    assert agg["tumor_burden_rmse"] == pytest.approx(math.sqrt((0.05 ** 2 + 0) / 2))
    assert agg["tumor_burden_max_abs_error"] == pytest.approx(0.05)
    assert agg["tumor_burden_n"] == 2
    no_liver = lits_scores(np.zeros(shape, np.uint8), labels(liver, t100), SP)
    agg3 = aggregate_scores([c1, c2, no_liver])
    assert agg3["tumor_burden_n_undefined"] == 1
    assert agg3["tumor_burden_rmse"] == pytest.approx(agg["tumor_burden_rmse"])


# ---------------------------------------------------------------- lesion detection


def two_lesions_and_a_false_positive():
    truth = np.zeros((20, 20, 6), np.uint8)
    truth[2:6, 2:6, 1:4] = 2       # lesion 1: 4x4x3 = 48 voxels
    truth[12:14, 12:14, 1:3] = 2   # lesion 2: 2x2x2 = 8 voxels, missed
    pred = np.zeros_like(truth)
    pred[2:6, 2:6, 1:4] = 2        # finds lesion 1 exactly
    pred[15:18, 2:4, 2:4] = 2      # a false positive away from any lesion
    return pred, truth


def test_one_lesion_found_one_missed_and_one_false_positive():
    pred, truth = two_lesions_and_a_false_positive()
    r = detect_lesions(pred, truth, SP)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1)
    assert (r["n_reference"], r["n_predicted"]) == (2, 2)
    ref = [row for row in r["lesions"] if row["kind"] == "reference"]
    prd = [row for row in r["lesions"] if row["kind"] == "prediction"]
    assert [row["detected"] for row in ref] == [True, False]
    assert [row["detected"] for row in prd] == [True, False]
    assert [row["iou"] for row in ref] == [1.0, 0.0]
    voxel_ml = 0.7 * 0.7 * 2.5 / 1000
    assert ref[0]["volume_ml"] == pytest.approx(48 * voxel_ml)
    assert ref[1]["volume_ml"] == pytest.approx(8 * voxel_ml)
    # Largest axial diameter: the diagonal of the 4x4 (2x2) pixel squares in a slice.
    assert ref[0]["diameter_mm"] == pytest.approx(math.hypot(4 * 0.7, 4 * 0.7))
    assert ref[1]["diameter_mm"] == pytest.approx(math.hypot(2 * 0.7, 2 * 0.7))
    assert prd[1]["group"] == -1
    s = lits_scores(pred, truth, SP)
    assert (s["lesion_tp"], s["lesion_fp"], s["lesion_fn"]) == (1, 1, 1)


@pytest.mark.parametrize("seed", [0, 3])
def test_scores_without_distances_keep_every_other_value(seed):
    pred, truth = blob_case(seed), blob_case(seed + 1)
    full = lits_scores(pred, truth, SP)
    quick = lits_scores(pred, truth, SP, distances=False)
    assert quick.keys() == full.keys()
    distance_keys = {f"{s}_{k}" for s in ("liver", "tumor") for k in SURFACE_KEYS}
    assert all(math.isnan(quick[k]) for k in distance_keys)
    assert not any(math.isnan(full[k]) for k in distance_keys)  # both maps hold both labels
    for key, value in full.items():
        if key not in distance_keys:
            assert quick[key] == value or (math.isnan(quick[key]) and math.isnan(value)), key


def test_overlap_of_exactly_half_is_not_a_detection():
    truth = np.zeros((10, 10, 6), np.uint8)
    truth[2:6, 2:6, 1:3] = 2       # 32 voxels
    pred = np.zeros_like(truth)
    pred[2:6, 2:6, 1:2] = 2        # 16 voxels inside: IoU 16/32 = 0.5
    r = detect_lesions(pred, truth)
    assert (r["tp"], r["fp"], r["fn"]) == (0, 1, 1)
    assert r["lesions"][0]["iou"] == pytest.approx(0.5)
    assert math.isnan(r["lesions"][0]["volume_ml"])      # no spacing given
    r0 = detect_lesions(pred, truth, iou_threshold=0.0)
    assert (r0["tp"], r0["fp"], r0["fn"]) == (1, 0, 0)


def test_one_prediction_spanning_two_lesions_merges_them_and_detects_both():
    truth = np.zeros((10, 12, 6), np.uint8)
    truth[2:4, 2:4, 1:3] = 2
    truth[2:4, 5:7, 1:3] = 2       # one empty column between the lesions
    pred = np.zeros_like(truth)
    pred[2:4, 2:7, 1:3] = 2        # covers both and the gap: IoU 16 / 20
    r = detect_lesions(pred, truth)
    assert (r["tp"], r["fp"], r["fn"], r["merge_errors"]) == (2, 0, 0, 1)
    assert [row["iou"] for row in r["lesions"]] == pytest.approx([0.8] * 3)


def test_an_undetected_merged_group_counts_one_false_negative_per_lesion():
    truth = np.zeros((10, 14, 6), np.uint8)
    truth[2:4, 2:4, 1:3] = 2
    truth[2:4, 5:7, 1:3] = 2
    pred = np.zeros_like(truth)
    pred[2:4, 1:11, 1:3] = 2       # spans both, but 16 / 40 = IoU 0.4
    r = detect_lesions(pred, truth)
    # (LiTS's program would report FN 1 here: it counted the merged group once.)
    assert (r["tp"], r["fp"], r["fn"], r["merge_errors"]) == (0, 1, 2, 1)
    assert [row["iou"] for row in r["lesions"]] == pytest.approx([0.4] * 3)


def test_two_predictions_on_one_lesion_are_a_split_and_one_detection():
    truth = np.zeros((10, 12, 6), np.uint8)
    truth[2:4, 2:8, 1:3] = 2       # 24 voxels
    pred = np.zeros_like(truth)
    pred[2:4, 2:4, 1:3] = 2        # 8 voxels
    pred[2:4, 5:8, 1:3] = 2        # 12 voxels
    r = detect_lesions(pred, truth)
    assert (r["tp"], r["fp"], r["fn"], r["split_errors"]) == (1, 0, 0, 1)
    assert r["lesions"][0]["iou"] == pytest.approx(20 / 24)


def test_lesion_connectivity_and_in_plane_merging_of_reference_fragments():
    truth = np.zeros((10, 12, 6), np.uint8)
    truth[2:4, 2:4, 2] = 2
    truth[4:6, 4:6, 2] = 2         # touches the first only at a corner
    truth[2:4, 9:11, 2] = 2        # five empty columns away from the first block
    faces = detect_lesions(truth, truth)
    assert faces["n_reference"] == 3 and faces["tp"] == 3
    assert detect_lesions(truth, truth, lesion_connectivity=2)["n_reference"] == 2
    merged = detect_lesions(np.zeros_like(truth), truth, merge_reference_in_plane=True)
    # Grown by one pixel (4-neighbour cross) the corner-touching blocks share pixels and
    # become one lesion; the far block stays apart. The growth is trimmed away again.
    assert merged["n_reference"] == 2 and merged["fn"] == 2
    assert sum(r["voxels"] for r in merged["lesions"]) == np.count_nonzero(truth == 2)
    truth[2:4, 6:8, 2] = 2         # a block with one empty column on either side
    assert detect_lesions(truth, truth)["n_reference"] == 4
    assert detect_lesions(truth, truth, merge_reference_in_plane=True)["n_reference"] == 1


def test_aggregate_detection_sums_counts_over_cases():
    pred, truth = two_lesions_and_a_false_positive()
    a = detect_lesions(pred, truth, SP)
    b = detect_lesions(truth, truth, SP)              # 2 TP
    agg = aggregate_detection([a, b])
    assert (agg["tp"], agg["fp"], agg["fn"], agg["n_cases"]) == (3, 1, 1, 2)
    assert agg["precision"] == pytest.approx(3 / 4) and agg["recall"] == pytest.approx(3 / 4)
    nothing = np.zeros_like(truth)
    none = aggregate_detection([detect_lesions(nothing, nothing)])
    assert math.isnan(none["precision"]) and math.isnan(none["recall"])
    rows = aggregate_detection([lits_scores(pred, truth, SP)])
    assert (rows["tp"], rows["fp"], rows["fn"]) == (1, 1, 1)


# ---------------------------------------------------------------- per slice


def test_slice_scores_exclude_or_count_slices_without_the_structure():
    truth = np.zeros((6, 6, 4), np.uint8)
    truth[1:5, 1:5, 0:3] = 1
    truth[2:4, 2:4, 0] = 2                    # tumor in slice 0 only
    pred = truth.copy()
    pred[2:4, 2:3, 0] = 1                     # half the tumor pixels missed in slice 0
    pred[1:3, 1:3, 2] = 2                     # false tumor in slice 2
    t = slice_scores(pred, truth)
    tumor = t[t.structure == "tumor"].reset_index(drop=True)
    assert tumor.dice[0] == pytest.approx(2 * 2 / (2 + 4))
    assert tumor.iou[0] == pytest.approx(2 / 4)
    assert tumor.dice[2] == 0.0
    assert math.isnan(tumor.dice[1]) and math.isnan(tumor.dice[3])
    means = mean_slice_scores(t)
    assert means["tumor_mean_dice"] == pytest.approx((4 / 6 + 0.0) / 2)
    assert (means["tumor_n_scored"], means["tumor_n_both_empty"]) == (2, 2)
    assert (means["liver_n_scored"], means["liver_n_both_empty"]) == (3, 1)
    assert means["liver_mean_dice"] == 1.0
    ones = mean_slice_scores(slice_scores(pred, truth, empty="one"))
    assert ones["tumor_mean_dice"] == pytest.approx((4 / 6 + 0.0 + 1 + 1) / 4)
    assert ones["tumor_n_scored"] == 4 and ones["tumor_n_both_empty"] == 2
    with pytest.raises(ValueError, match="empty"):
        slice_scores(pred, truth, empty="zero")


# ---------------------------------------------------------------- input errors and files


def test_bad_arrays_raise_named_errors():
    good = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(GridMismatchError, match="shape"):
        lits_scores(good, np.zeros((4, 4, 5), np.uint8), SP)
    with pytest.raises(GridMismatchError, match="3-D"):
        lits_scores(good[0], good[0], SP)
    bad = good.copy()
    bad[0, 0, 0] = 3
    with pytest.raises(LabelError, match="prediction holds label values 3"):
        lits_scores(bad, good, SP)
    with pytest.raises(LabelError, match="reference"):
        lits_scores(good, bad.astype(np.float32) / 2 + 0.25, SP)
    with pytest.raises(ValueError, match="spacing"):
        lits_scores(good, good, (0.7, 0.0, 2.5))
    with pytest.raises(ValueError, match="connectivity"):
        lits_scores(good, good, SP, connectivity=4)
    with pytest.raises(ValueError, match="assd_mode"):
        lits_scores(good, good, SP, assd_mode="mean")
    with pytest.raises(ValueError, match="iou_threshold"):
        detect_lesions(good, good, iou_threshold=1.0)
    with pytest.raises(ValueError, match="empty"):
        surface_distances(good.astype(bool), good.astype(bool), SP)


def save(path, canonical, spacing=SP, axcodes=("P", "L", "S"), origin=(10.0, -20.0, 30.0)):
    img = reorient_image(canonical, canonical_affine_for(spacing, origin), axcodes)
    nib.save(img, path)
    return path


def test_score_files_reads_spacing_from_the_reference_and_any_stored_orientation(tmp_path):
    liver = box(shape=(10, 10, 10), rows=(1, 9), cols=(1, 9), slices=(1, 9))
    truth = labels(liver, box(shape=(10, 10, 10), rows=(3, 6), cols=(3, 6), slices=(3, 6)))
    pred = labels(liver, box(shape=(10, 10, 10), rows=(3, 6), cols=(3, 6), slices=(4, 7)))
    t_path = save(tmp_path / "segmentation-0.nii", truth)
    p_path = save(tmp_path / "pred-0.nii.gz", pred, axcodes=("L", "A", "I"))
    s = score_files(p_path, t_path, connectivity=2)
    want = lits_scores(pred, truth, SP, 2)
    assert {k: s[k] for k in want} == pytest.approx(want, nan_ok=True)
    assert s["tumor_msd"] == pytest.approx(2.5)      # the one-slice shift, in mm
    assert s["spacing_mm"] == pytest.approx(list(SP))
    assert s["truth_identity_affine"] is False
    assert s["pred_path"] == str(p_path)


def test_score_files_names_the_prediction_on_another_grid(tmp_path):
    truth = labels(box(shape=(10, 10, 10)))
    t_path = save(tmp_path / "truth.nii", truth)
    other_shape = save(tmp_path / "pred_shape.nii", labels(box(shape=(10, 10, 11))))
    with pytest.raises(GridMismatchError, match="pred_shape.nii") as err:
        score_files(other_shape, t_path)
    assert "shape" in str(err.value)
    other_spacing = save(tmp_path / "pred_spacing.nii", truth, spacing=(0.8, 0.7, 2.5))
    with pytest.raises(GridMismatchError, match="pred_spacing.nii"):
        score_files(other_spacing, t_path)
    shifted = save(tmp_path / "pred_origin.nii", truth, origin=(15.0, -20.0, 30.0))
    with pytest.raises(GridMismatchError, match="origin"):
        score_files(shifted, t_path)


def test_score_files_names_the_file_with_bad_labels(tmp_path):
    truth = labels(box(shape=(10, 10, 10)))
    bad = truth.copy()
    bad[0, 0, 0] = 5
    t_path = save(tmp_path / "truth.nii", truth)
    b_path = save(tmp_path / "pred_bad.nii", bad)
    with pytest.raises(LabelError, match="pred_bad.nii"):
        score_files(b_path, t_path)
    with pytest.raises(LabelError, match="truth_bad.nii"):
        score_files(t_path, save(tmp_path / "truth_bad.nii", bad))


def test_docstring_examples_run():
    for module in (inputs, overlap, surfaces, lesions, per_case, aggregate, per_slice):
        result = doctest.testmod(module, extraglobs={"np": np})
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_score_cli_prints_the_table_and_rejects_a_non_mask(tmp_path):
    import subprocess
    import sys

    from conftest import anatomy, write_case

    ct, mask = anatomy()
    _, truth = write_case(tmp_path / "ref", 0, ct, mask, axcodes=("L", "P", "S"))
    pred_mask = mask.copy()
    pred_mask[5:8, 3:6, 3:6] = 1  # the tumor is missed
    volume, pred = write_case(tmp_path / "pred", 0, ct, pred_mask, axcodes=("R", "A", "S"))
    cmd = [sys.executable, "-m", "livertumor", "score"]
    res = subprocess.run(cmd + [str(pred), str(truth)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "lesions: 0 found, 1 missed, 0 false positive" in res.stdout
    tumor_row = next(line for line in res.stdout.splitlines() if line.startswith("tumor"))
    assert tumor_row.split()[1] == "0.000"
    res = subprocess.run(cmd + [str(pred), str(truth), "--json"], capture_output=True, text=True)
    assert json.loads(res.stdout)["liver_dice"] == 1.0
    res = subprocess.run(cmd + [str(volume), str(truth)], capture_output=True, text=True)
    assert res.returncode == 2 and "unexpected label values" in res.stderr
    assert str(volume) in res.stderr and not res.stdout


def test_detection_by_size_counts_lesions_in_their_diameter_class_and_locates_them():
    import pandas as pd

    from livertumor.evaluation.lesions import detection_by_size

    truth = np.zeros((80, 80, 8), np.uint8)
    truth[5:9, 5:9, 2:5] = 2        # 4 px = 4 mm wide: < 10 mm, found
    truth[20:34, 20:34, 2:5] = 2    # 14 mm: 10-20 mm, missed
    truth[40:70, 40:70, 1:7] = 2    # 30 mm: > 20 mm, found
    pred = np.zeros_like(truth)
    pred[5:9, 5:9, 2:5] = 2
    pred[40:70, 40:70, 1:7] = 2
    pred[70:72, 2:4, 3] = 2         # a false positive speck (< 10 mm)
    for labels in (truth, pred):    # liver around the tumors (the matching crops to tumors)
        labels[1:79, 1:79][labels[1:79, 1:79] == 0] = 1
    lesions = pd.DataFrame(detect_lesions(pred, truth, (1.0, 1.0, 2.0))["lesions"])
    table = detection_by_size(lesions)
    assert table.loc["< 10 mm", ["reference", "found", "predicted", "true"]].tolist() == [1, 1,
                                                                                         2, 1]
    assert table.loc["10-20 mm", "recall"] == 0 and np.isnan(table.loc["10-20 mm",
                                                                       "precision"])
    assert table.loc["> 20 mm", "recall"] == 1 and table.loc["> 20 mm", "precision"] == 1
    assert table.loc["all", "reference"] == 3 and table.loc["all", "found"] == 2
    assert table.loc["10-20 mm", "recall_any_overlap"] == 0
    pred[20:22, 20:34, 2:5] = 2     # a sliver of the 14 mm lesion: overlapped, IoU 1/7
    lenient = detection_by_size(pd.DataFrame(detect_lesions(pred, truth,
                                                            (1.0, 1.0, 2.0))["lesions"]))
    assert lenient.loc["10-20 mm", ["recall", "recall_any_overlap"]].tolist() == [0, 1]
    assert lenient.loc["all", "touched"] == 3
    missed = lesions[(lesions["kind"] == "reference") & ~lesions["detected"]].iloc[0]
    assert (missed["row"], missed["column"], missed["slice"]) == (26.5, 26.5, 3.0)
    assert 2 <= missed["largest_slice"] <= 4
