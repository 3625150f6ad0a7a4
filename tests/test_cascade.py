"""Post-processing rules on hand-built label maps, and the two-stage cascade end to end with
models whose answer is known (fixed weights: liver above 105 HU, tumor between about 0 and
95 HU in the liver window), on a volume stored in a non-canonical orientation."""

from __future__ import annotations

import importlib
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from livertumor import LiverTumorError, read_geometry, read_mask
from livertumor.data.roi import liver_box
from livertumor.inference import (
    Cascade,
    ClassProbability,
    PostProcessing,
    TumorComponents,
    drop_elongated_tumors,
    drop_small_tumors,
    drop_unconfident_tumors,
    liver_and_tumor,
    load_predictor,
    postprocess,
    read_rules,
    segment,
    tumor_elongation,
    write_cascade,
)

from conftest import band_model_dir, cascade_volume, write_case


def test_small_tumors_are_dropped_by_volume_in_millilitres_not_voxels():
    labels = np.ones((20, 20, 10), np.uint8)
    labels[2:4, 2:4, 2:4] = 2  # 8 voxels
    labels[10:16, 10:16, 3:7] = 2  # 144 voxels
    coarse = drop_small_tumors(labels, (2.0, 2.0, 5.0), min_ml=0.1)  # 20 mm³ a voxel
    assert (coarse == 2).sum() == 8 + 144  # 0.16 mL and 2.9 mL: both kept
    fine = drop_small_tumors(labels, (0.5, 0.5, 1.0), min_ml=0.01)  # 0.25 mm³ a voxel
    assert (fine[2:4, 2:4, 2:4] == 1).all() and (fine == 2).sum() == 144  # 0.002 mL dropped
    assert (drop_small_tumors(labels, (1, 1, 1), 0) == labels).all()


def test_the_liver_holds_its_tumors_and_rules_apply_in_order():
    liver = np.zeros((10, 10, 4), bool)
    liver[2:8, 2:8] = True
    tumor = np.zeros_like(liver)
    tumor[6:10, 6:10] = True  # at the liver's edge, half outside the liver mask
    labels = liver_and_tumor(liver, tumor)
    assert (labels[tumor] == 2).all() and (labels[liver & ~tumor] == 1).all()
    assert set(np.unique(labels)) == {0, 1, 2}
    island = labels.copy()
    island[0, 0, :] = 2  # a tumor not connected to the liver
    assert (postprocess(island, (1, 1, 1), PostProcessing(largest_liver=True))[0, 0] == 0).all()
    labels[0, 0, 0] = 1  # an island of liver
    labels[2, 2, 0] = 2  # a one-voxel tumor
    out = postprocess(labels, (1, 1, 1), PostProcessing(largest_liver=True, min_tumor_ml=0.002))
    assert out[0, 0, 0] == 0 and out[2, 2, 0] == 1 and (out == 2).sum() == 4 * 4 * 4
    assert labels[0, 0, 0] == 1  # the input is not changed
    with pytest.raises(ValueError):
        PostProcessing(min_tumor_ml=-1)


def _ball(shape, centre, radius_mm, spacing):
    """bool mask of a ball of ``radius_mm`` around ``centre`` (voxel indices) in mm."""
    grid = np.indices(shape).astype(float)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True))
    return d2 <= radius_mm**2


def test_elongation_is_measured_in_mm_and_is_one_for_round_shapes():
    spacing = (0.8, 0.8, 4.0)  # thick slices, as in many LiTS scans
    ball = _ball((40, 40, 12), (20, 20, 6), 12.0, spacing)
    tube = np.zeros_like(ball)
    tube[5:7, 2:38, 3] = True  # 1.6 mm x 28.8 mm x one slice: a vessel
    disc = np.zeros_like(ball)
    disc[:, :, 6] = _ball((40, 40, 12), (20, 20, 6), 5.0, spacing)[:, :, 6]  # one slice
    elongation = [tumor_elongation(m.astype(int), 1, spacing)[0] for m in (ball, tube, disc)]
    assert elongation[0] == pytest.approx(1.0, abs=0.1)
    # the tube: its length over its width, the box moments of one voxel (28.8 / 1.6 = 18)
    assert elongation[1] == pytest.approx(np.sqrt((36**2 * 0.8**2) / (2**2 * 0.8**2)), rel=0.02)
    # a 10 mm disc on one 4 mm slice: sqrt((5**2 / 4) / (4**2 / 12)) = 2.2, not a tube
    assert 2.0 < elongation[2] < 2.4
    # the same voxels on an isotropic grid are another shape: the rule works in mm
    cube = np.zeros((10, 10, 10), int)
    cube[2:6, 2:6, 2:6] = 1
    assert tumor_elongation(cube, 1, (1, 1, 1))[0] == pytest.approx(1.0)
    assert tumor_elongation(cube, 1, (1, 1, 4))[0] == pytest.approx(4.0)
    # several components at once, labelled as scipy.ndimage.label labels them
    both, n = ndimage.label(ball | tube)
    assert n == 2 and np.allclose(sorted(tumor_elongation(both, n, spacing)),
                                  sorted(elongation[:2]))


def test_tube_shaped_tumors_become_liver_and_round_ones_stay():
    spacing = (0.8, 0.8, 4.0)
    labels = np.ones((40, 40, 12), np.uint8)
    ball = _ball(labels.shape, (20, 20, 6), 6.0, spacing)
    labels[ball] = 2
    labels[2:4, 2:38, 2:4] = 2  # a 29 mm long, 1.6 mm wide, two-slice tube
    out = drop_elongated_tumors(labels, spacing, 3.0)
    assert (out[ball] == 2).all() and (out == 2).sum() == ball.sum()
    assert (out[2:4, 2:38, 2:4] == 1).all()
    assert (drop_elongated_tumors(labels, spacing, 0) == labels).all()  # 0: off
    assert (labels[2:4, 2:38, 2:4] == 2).all()  # the input is not changed
    rules = PostProcessing(max_tumor_elongation=40.0)  # no shape is excluded
    assert (postprocess(labels, spacing, rules) == labels).all()
    for bad in (0.5, -1.0):
        with pytest.raises(ValueError, match="max_tumor_elongation"):
            PostProcessing(max_tumor_elongation=bad)
    assert PostProcessing(max_tumor_elongation=3.0).any and not PostProcessing().any


def test_the_elongation_limit_can_spare_large_tumors():
    spacing = (0.8, 0.8, 4.0)
    labels = np.ones((60, 60, 12), np.uint8)
    labels[2:4, 2:38, 2:4] = 2  # a thin tube of 0.04 mL
    labels[20:50, 10:30, 3:7] = 2  # a block of 7.7 mL, 30 x 20 x 4 voxels: 24 x 16 x 16 mm
    labels[40:44, 40:58, 8:10] = 2  # an oval of 0.09 mL, 3.2 x 14.4 x 8 mm
    block_ml = 30 * 20 * 4 * np.prod(spacing) / 1000
    components, n = ndimage.label(labels == 2)
    elongation = tumor_elongation(components, n, spacing)
    assert n == 3 and elongation[0] > 10 and 1.4 < elongation[1] < 2 and elongation[2] > 4
    every = drop_elongated_tumors(labels, spacing, 1.2)
    assert (every == 2).sum() == 0  # no component is round enough
    small = drop_elongated_tumors(labels, spacing, 1.2, below_ml=5.0)
    assert block_ml > 5 and (small == 2).sum() == 30 * 20 * 4  # the large block stays
    assert (small[20:50, 10:30, 3:7] == 2).all()
    rules = PostProcessing(max_tumor_elongation=1.2, elongation_below_ml=5.0)
    assert (postprocess(labels, spacing, rules) == small).all()
    huge = PostProcessing(max_tumor_elongation=1.2, elongation_below_ml=100.0)
    assert (postprocess(labels, spacing, huge) == every).all()  # all below 100 mL: all tested
    with pytest.raises(ValueError, match="elongation_below_ml"):
        PostProcessing(max_tumor_elongation=3.0, elongation_below_ml=-1.0)


def test_both_tumor_rules_label_once_and_equal_the_rules_one_after_another(monkeypatch):
    spacing = (0.8, 0.8, 4.0)
    labels = np.ones((40, 40, 12), np.uint8)
    ball = _ball(labels.shape, (20, 20, 6), 6.0, spacing)
    labels[ball] = 2  # about 0.8 mL, round: stays
    labels[2:4, 2:38, 2:4] = 2  # a tube of 0.04 mL: too small and too long
    labels[30:34, 30:34, 9] = 2  # 0.04 mL, round: too small only
    labels[36:38, 2:30, 9:11] = 2  # 0.07 mL, a tube: too long only
    step_by_step = drop_elongated_tumors(drop_small_tumors(labels, spacing, 0.05), spacing, 3.0)
    calls, label = [], ndimage.label
    module = importlib.import_module("livertumor.inference.postprocess")
    monkeypatch.setattr(module.ndimage, "label", lambda *a, **k: calls.append(1) or label(*a, **k))
    out = postprocess(labels, spacing, PostProcessing(min_tumor_ml=0.05,
                                                      max_tumor_elongation=3.0))
    assert len(calls) == 1  # the tumor components, once
    assert (out == step_by_step).all()
    assert (out == 2).sum() == ball.sum() and (out[ball] == 2).all()
    assert (out[labels == 2] >= 1).all() and (out[labels == 1] == 1).all()


def test_tumors_the_model_barely_gave_are_dropped_by_their_mean_probability():
    labels = np.ones((20, 20, 10), np.uint8)
    labels[2:5, 2:5, 2:5] = 2  # 27 voxels, the model unsure
    labels[10:16, 10:16, 3:7] = 2  # 144 voxels, sure at its core, unsure at its rim
    p = np.zeros(labels.shape, np.float32)
    p[2:5, 2:5, 2:5] = 0.5
    p[10:16, 10:16, 3:7] = 0.6
    p[11:15, 11:15, 4:6] = 0.99  # 32 of 144 voxels: mean (112 * 0.6 + 32 * 0.99) / 144
    mean = (112 * 0.6 + 32 * 0.99) / 144
    whole = ClassProbability(p)
    out = drop_unconfident_tumors(labels, whole, 0.6)
    assert (out[2:5, 2:5, 2:5] == 1).all() and (out == 2).sum() == 144
    assert (drop_unconfident_tumors(labels, whole, mean + 1e-3) == 2).sum() == 0
    assert (drop_unconfident_tumors(labels, whole, 0) == labels).all()
    # the probability of a box only (a cascade's tumor stage): the same components, the same
    # means; a component outside the box has no evidence and goes
    box = (slice(1, 18), slice(1, 18), slice(1, 9))
    part = ClassProbability(p[box].copy(), box)
    np.testing.assert_array_equal(drop_unconfident_tumors(labels, part, 0.6), out)
    outside = labels.copy()
    outside[19, 19, 9] = 2
    assert drop_unconfident_tumors(outside, part, 0.01)[19, 19, 9] == 1
    rules = PostProcessing(min_tumor_ml=0.0, min_tumor_confidence=0.6)
    np.testing.assert_array_equal(postprocess(labels, (1, 1, 1), rules, part), out)
    with pytest.raises(ValueError, match="tumor probability"):
        postprocess(labels, (1, 1, 1), rules)  # the rule needs the probability
    assert (postprocess(np.ones_like(labels), (1, 1, 1), rules) == 1).all()  # no tumor: none
    with pytest.raises(ValueError, match="does not fit"):
        postprocess(labels, (1, 1, 1), rules, ClassProbability(p[box]))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_tumor_confidence"):
            PostProcessing(min_tumor_confidence=bad)
    assert PostProcessing(min_tumor_confidence=0.5).any


def test_tumors_mostly_outside_the_liver_stages_liver_take_its_labels():
    labels = np.zeros((30, 30, 10), np.uint8)
    labels[5:25, 5:25, 1:9] = 1
    labels[8:12, 8:12, 3:7] = 2  # 64 voxels, all inside the liver stage's liver
    labels[20:28, 12:16, 3:7] = 2  # 128 voxels: rows 20-24 inside, 25-27 outside (3/8 out)
    labels[22:30, 20:24, 3:7] = 2  # 128 voxels: rows 22-24 inside, 25-29 outside (5/8 out)
    stage_one = np.zeros(labels.shape, bool)
    stage_one[5:25, 5:25, 1:9] = True
    tumors = TumorComponents(labels, (1, 1, 1), liver=stage_one)
    np.testing.assert_allclose(tumors.liver_share, [1.0, 5 / 8, 3 / 8])
    out = postprocess(labels, (1, 1, 1), PostProcessing(min_tumor_in_liver=0.5), liver=stage_one)
    assert (out[8:12, 8:12, 3:7] == 2).all() and (out[20:28, 12:16, 3:7] == 2).all()
    dropped = out[22:30, 20:24, 3:7]  # the liver stage's labels: liver inside, background out
    assert (dropped[:3] == 1).all() and (dropped[3:] == 0).all()
    np.testing.assert_array_equal(out[labels != 2], labels[labels != 2])
    strict = postprocess(labels, (1, 1, 1), PostProcessing(min_tumor_in_liver=0.7),
                         liver=stage_one)
    assert (strict[20:28, 12:16, 3:7] != 2).all() and (strict[8:12, 8:12, 3:7] == 2).all()
    # without the liver stage's mask (a single model) the rule drops nothing
    np.testing.assert_array_equal(
        postprocess(labels, (1, 1, 1), PostProcessing(min_tumor_in_liver=0.5)), labels)
    with pytest.raises(ValueError, match="does not fit"):
        TumorComponents(labels, (1, 1, 1), liver=stage_one[:, :, :5])
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_tumor_in_liver"):
            PostProcessing(min_tumor_in_liver=bad)
    assert PostProcessing(min_tumor_in_liver=0.5).any


@pytest.fixture(scope="module")
def cascade_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    liver = band_model_dir(root / "liver")
    tumor = band_model_dir(root / "tumor", context=1, roi={"margin_mm": 4.0})
    return write_cascade(root / "cascade", liver, tumor,
                         PostProcessing(largest_liver=True, min_tumor_ml=0.05))


def test_cascade_writes_liver_and_tumor_on_the_input_grid(cascade_dir, tmp_path):
    ct, truth = cascade_volume()
    vpath, _ = write_case(tmp_path, 0, ct, truth, axcodes=("R", "A", "S"),
                          spacing=(1.5, 1.5, 2.5))
    out = segment(cascade_dir.parent, vpath, tmp_path / "pred.nii.gz", progress=False)
    src, pred = nib.load(vpath), nib.load(out)
    assert pred.shape == src.shape and nib.aff2axcodes(pred.affine) == ("R", "A", "S")
    np.testing.assert_allclose(pred.affine, src.affine)
    labels = read_mask(out)
    core = ndimage.binary_erosion(truth == 1, iterations=2)
    assert (labels[core] == 1).mean() > 0.98
    tumor_core = ndimage.binary_erosion(truth[:, :, 4:9] == 2, iterations=2)
    assert (labels[:, :, 4:9][tumor_core] == 2).all()
    assert not labels[4:10, 44:52].any() and not labels[50:56, 44:50].any()  # not the liver
    assert (labels[38:40, 28:30, 10] == 1).all()  # 4 x 2.25 x 2.5 mm³ = 0.02 mL: dropped
    assert ((labels == 2) <= (labels >= 1)).all()


def test_cascade_looks_only_inside_the_box_of_the_first_stage(cascade_dir, tmp_path):
    ct, truth = cascade_volume()
    vpath, _ = write_case(tmp_path, 0, ct, truth, spacing=(1.5, 1.5, 2.5))
    predictor = load_predictor(cascade_dir)
    assert isinstance(predictor, Cascade) and predictor.margin_mm == 4.0
    from livertumor import NiftiVolume

    seg = predictor.predict(NiftiVolume(vpath), keep_probabilities=True, progress=False)
    expected = liver_box(truth, read_geometry(vpath).spacing, 4.0)  # the liver's, not the island's
    got, want = seg.box.as_dict(), expected.as_dict()
    assert all(abs(got[k] - want[k]) <= 1 for k in got), (got, want)
    outside = np.ones(truth.shape, bool)
    outside[seg.box.index] = False
    assert not (seg.labels[outside] == 2).any()
    p = seg.probabilities
    assert p.shape == truth.shape + (3,)
    np.testing.assert_allclose(p.sum(-1), 1, atol=1e-5)
    assert (p[..., 2][outside] == 0).all()
    # the tumor probability of the box, kept without the class probabilities too
    lean = predictor.predict(NiftiVolume(vpath), progress=False)
    assert lean.probabilities is None and lean.tumor_probability.index == seg.box.index
    assert lean.tumor_probability.values.shape == seg.box.shape
    np.testing.assert_allclose(lean.tumor_probability.values, p[seg.box.index + (2,)],
                               atol=1e-5)


def test_inside_the_box_the_liver_is_the_mean_of_both_stages(cascade_dir, tmp_path):
    from dataclasses import replace

    from livertumor import NiftiVolume
    from livertumor.inference import predict_volume

    ct, truth = cascade_volume()
    ct[30:34, 8:12, 3:9] = 95  # a liver spot the two stages see differently
    vpath, _ = write_case(tmp_path, 0, ct, truth, spacing=(1.5, 1.5, 2.5))
    volume = NiftiVolume(vpath)
    cascade = load_predictor(cascade_dir)
    assert cascade.liver_in_box == "mean"  # what write_cascade writes
    bare = replace(cascade, rules=PostProcessing())  # no rule: the combination alone
    seg = bare.predict(volume, progress=False)
    p1 = cascade.liver.predict(volume, keep_probabilities=True, progress=False).probabilities
    p2 = predict_volume(cascade.tumor.model, volume, cascade.tumor.prep, box=seg.box,
                        keep_probabilities=True, progress=False).probabilities
    liver1 = p1[..., 1] + p1[..., 2]
    mean = (liver1 + p2[..., 1] + p2[..., 2]) / 2
    inside = np.zeros(truth.shape, bool)
    inside[seg.box.index] = True
    tumor = seg.labels == 2
    expected = np.where(inside, mean > 0.5, p1.argmax(-1) >= 1) | tumor
    assert ((seg.labels >= 1) != expected).sum() <= 2  # float16 against float32 at 0.5
    # a file written before the choice existed means the liver stage alone
    spec = json.loads(cascade_dir.read_text())
    del spec["liver_in_box"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**spec, "liver": str(cascade_dir.parent / spec["liver"]),
                               "tumor": str(cascade_dir.parent / spec["tumor"])}))
    first = replace(load_predictor(old), rules=PostProcessing())
    assert first.liver_in_box == "first"
    alone = first.predict(volume, progress=False).labels
    np.testing.assert_array_equal(alone >= 1, (p1.argmax(-1) >= 1) | (alone == 2))
    with pytest.raises(ValueError, match="liver_in_box"):
        write_cascade(tmp_path / "bad", cascade.liver.model_dir, cascade.tumor.model_dir,
                      liver_in_box="max")


def test_the_cascade_applies_its_confidence_rule_to_its_tumor_stage(cascade_dir, tmp_path):
    from dataclasses import replace

    from livertumor import NiftiVolume

    ct, truth = cascade_volume()
    vpath, _ = write_case(tmp_path, 0, ct, truth, spacing=(1.5, 1.5, 2.5))
    volume = NiftiVolume(vpath)
    cascade = load_predictor(cascade_dir)
    raw = cascade.predict(volume, progress=False)
    components, n = ndimage.label(raw.labels == 2)
    means = raw.tumor_probability.component_means(components, n)
    assert n >= 2 and means.min() < means.max()  # a threshold between them splits them
    limit = float(means.min() + means.max()) / 2
    sure = replace(cascade, rules=replace(cascade.rules, min_tumor_confidence=limit))
    labels = sure.predict(volume, progress=False).labels
    np.testing.assert_array_equal(labels, drop_unconfident_tumors(raw.labels,
                                                                  raw.tumor_probability, limit))
    kept = ndimage.label(labels == 2)[1]
    assert 0 < kept == int((means >= limit).sum()) < n


def test_evaluating_models_together_reuses_the_liver_models_prediction_and_scores_the_same(
        cascade_dir, tmp_path):
    import pandas as pd

    from livertumor import NiftiVolume
    from livertumor.evaluation import evaluate, evaluate_models

    ct, truth = cascade_volume()
    ct2, truth2 = ct.copy(), truth.copy()
    ct2[16:20, 26:30, 3:7], truth2[16:20, 26:30, 3:7] = 45, 2  # one more tumor in patient 1
    rows = []
    for case_id, (image, mask, axcodes) in enumerate(((ct, truth, ("R", "A", "S")),
                                                      (ct2, truth2, ("P", "L", "S")))):
        vpath, mpath = write_case(tmp_path, case_id, image, mask, axcodes=axcodes,
                                  spacing=(1.5, 1.5, 2.5))
        rows.append({"case_id": case_id, "volume_path": vpath, "mask_path": mpath})
    cases = pd.DataFrame(rows)
    liver_dir = cascade_dir.parent.parent / "liver"

    def counted(cascade):
        calls = []
        predict = cascade.liver.predict
        cascade.liver.predict = lambda *a, **k: calls.append(1) or predict(*a, **k)
        return cascade, calls

    cascade, calls = counted(load_predictor(cascade_dir))
    together = evaluate_models({"cascade": cascade, "liver": load_predictor(liver_dir)}, cases,
                               tmp_path / "together", progress=False)
    assert list(together) == ["cascade", "liver"] and calls == []  # never predicted again
    cascade, calls = counted(load_predictor(cascade_dir))
    alone = {"cascade": evaluate(cascade, cases, tmp_path / "alone" / "cascade",
                                 progress=False),
             "liver": evaluate(liver_dir, cases, tmp_path / "alone" / "liver", progress=False)}
    assert len(calls) == 2
    for name, result in together.items():
        other = alone[name]
        assert (tmp_path / "together" / name / "metrics.json").exists()
        pd.testing.assert_frame_equal(result.per_case.drop(columns="prediction_path"),
                                      other.per_case.drop(columns="prediction_path"))
        pd.testing.assert_frame_equal(result.roc, other.roc)
        pd.testing.assert_frame_equal(result.lesions, other.lesions)
        for case_id in cases["case_id"]:
            np.testing.assert_array_equal(
                read_mask(tmp_path / "together" / name / "predictions"
                          / f"prediction-{case_id}.nii.gz"),
                read_mask(tmp_path / "alone" / name / "predictions"
                          / f"prediction-{case_id}.nii.gz"))
    assert together["cascade"].summary["n_cases"] == 2
    # a single model with other rules does not predict what the liver stage would
    cascade, calls = counted(load_predictor(cascade_dir))
    evaluate_models({"liver": load_predictor(liver_dir, PostProcessing(largest_liver=True)),
                     "cascade": cascade}, cases, tmp_path / "other", progress=False)
    assert len(calls) == 2
    # a given stage 1 must be of the volume's grid
    volume = NiftiVolume(rows[0]["volume_path"])
    wrong = cascade.liver.predict(NiftiVolume(rows[0]["volume_path"]), keep_probabilities=True,
                                  progress=False)
    wrong.labels = wrong.labels[:, :, :-1]
    with pytest.raises(ValueError, match="grid"):
        cascade.predict(volume, progress=False, first=wrong)


def test_the_cascade_drops_tumors_its_liver_stage_puts_outside_the_liver(cascade_dir, tmp_path):
    from dataclasses import replace

    from livertumor import NiftiVolume

    ct, truth = cascade_volume()
    vpath, _ = write_case(tmp_path, 0, ct, truth, spacing=(1.5, 1.5, 2.5))
    volume = NiftiVolume(vpath)
    cascade = replace(load_predictor(cascade_dir), rules=PostProcessing(largest_liver=True))
    first = cascade.liver.predict(volume, keep_probabilities=True, progress=False)
    raw = cascade.predict(volume, progress=False, first=first).labels
    big = raw[20:34, 10:24, 3:10] == 2
    assert big.sum() > 300  # the large tumor, found
    # the liver stage saw no liver where two thirds of that tumor are (rows 20-29 of 22-32)
    first.labels[:30, :, :] = np.where(first.labels[:30, :, :] >= 1, 0, first.labels[:30])
    rule = replace(cascade, rules=PostProcessing(largest_liver=True, min_tumor_in_liver=0.5))
    labels = rule.predict(volume, progress=False, first=first).labels
    assert not (labels[20:34, 10:24, 3:10] == 2).any()
    assert (labels[20:30, 10:24, 4:9][truth[20:30, 10:24, 4:9] == 2] == 0).all()


def test_the_rules_of_a_cascade_are_read_without_loading_its_models(cascade_dir, tmp_path):
    rules = PostProcessing(largest_liver=True, min_tumor_ml=0.05)
    assert read_rules(cascade_dir) == read_rules(cascade_dir.parent) == rules
    assert load_predictor(cascade_dir).rules == rules
    assert read_rules(band_model_dir(tmp_path / "single")) == PostProcessing()  # no rules
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"liver": "x"}))
    with pytest.raises(LiverTumorError, match="'tumor' model folder"):
        read_rules(incomplete)


def test_a_tumor_model_without_liver_box_training_is_refused(tmp_path):
    liver = band_model_dir(tmp_path / "liver")
    spec = write_cascade(tmp_path / "c.json", liver, liver)
    with pytest.raises(LiverTumorError, match="--roi"):
        load_predictor(spec)
    with pytest.raises(LiverTumorError, match="no preprocessing.json"):
        load_predictor(tmp_path / "nothing")


def test_cascade_and_segment_commands(tmp_path):
    import subprocess
    import sys

    liver = band_model_dir(tmp_path / "liver")
    tumor = band_model_dir(tmp_path / "tumor", context=1, roi={"margin_mm": 4.0})
    ct, truth = cascade_volume()
    vpath, _ = write_case(tmp_path, 0, ct, truth, spacing=(1.5, 1.5, 2.5))
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "livertumor"]
    res = subprocess.run(run + ["cascade", str(liver), str(tumor), str(tmp_path / "both"),
                                "--max-tumor-elongation", "3"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    spec = json.loads((tmp_path / "both" / "cascade.json").read_text())
    assert spec["liver"] == "../liver" and spec["postprocess"] == {
        "largest_liver": True, "min_tumor_ml": 0.05, "max_tumor_elongation": 3.0,
        "elongation_below_ml": 0.0, "min_tumor_confidence": 0.0, "min_tumor_in_liver": 0.0}
    assert spec["liver_in_box"] == "mean"
    res = subprocess.run(run + ["segment", str(tmp_path / "both"), str(vpath),
                                str(tmp_path / "p.nii.gz"), "--tta", "--min-tumor-ml", "0"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    labels = read_mask(tmp_path / "p.nii.gz")
    assert (labels[38:40, 28:30, 10] == 2).any()  # no minimum volume: the speck stays
    res = subprocess.run(run + ["segment", str(tmp_path / "both"), str(vpath),
                                str(tmp_path / "q.nii.gz"), "--min-tumor-ml", "0",
                                "--max-tumor-elongation", "1"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (read_mask(tmp_path / "q.nii.gz") == 2).any()  # none is perfectly round
    res = subprocess.run(run + ["cascade", str(liver), str(tumor), str(tmp_path / "big"),
                                "--max-tumor-elongation", "1", "--elongation-below-ml", "50"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert read_rules(tmp_path / "big") == PostProcessing(
        largest_liver=True, min_tumor_ml=0.05, max_tumor_elongation=1.0,
        elongation_below_ml=50.0)
    res = subprocess.run(run + ["cascade", str(liver), str(tumor), str(tmp_path / "sure"),
                                "--min-tumor-confidence", "0.75"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert read_rules(tmp_path / "sure").min_tumor_confidence == 0.75
    res = subprocess.run(run + ["cascade", str(liver), str(tumor), str(tmp_path / "inside"),
                                "--min-tumor-in-liver", "0.5"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert read_rules(tmp_path / "inside").min_tumor_in_liver == 0.5
    res = subprocess.run(run + ["cascade", str(liver), str(tumor), str(tmp_path / "alone"),
                                "--liver-in-box", "first"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert load_predictor(tmp_path / "alone").liver_in_box == "first"
    res = subprocess.run(run + ["segment", str(tmp_path / "both"), str(vpath),
                                str(tmp_path / "t.nii.gz"), "--min-tumor-confidence", "1"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (read_mask(tmp_path / "t.nii.gz") == 2).any()  # no tumor is that sure
    res = subprocess.run(run + ["segment", str(tmp_path / "both"), str(vpath),
                                str(tmp_path / "r.nii.gz"), "--min-tumor-ml", "0",
                                "--max-tumor-elongation", "1", "--elongation-below-ml", "0.01"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (read_mask(tmp_path / "r.nii.gz") == 2).sum() > 0  # the 2.8 mL tumor is spared
    res = subprocess.run(run + ["segment", str(tmp_path / "both"), str(vpath),
                                str(tmp_path / "s.nii.gz"), "--elongation-below-ml", "5"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "--max-tumor-elongation" in res.stderr  # a bound needs a limit
    assert not (tmp_path / "s.nii.gz").exists()
    res = subprocess.run(run + ["cascade", str(liver), str(liver), str(tmp_path / "bad")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "--roi" in res.stderr
    assert not (tmp_path / "bad").exists()


def test_the_minimum_tumor_volume_is_chosen_by_lesion_f1_on_given_patients(cascade_dir,
                                                                           tmp_path):
    import pandas as pd

    from livertumor.evaluation.tuning import tune_tumor_rules, validation_cases

    ct, truth = cascade_volume()
    truth[38:40, 28:30, 10:11] = 1  # the 4-voxel speck is no tumor: a false positive
    vpath, mpath = write_case(tmp_path, 0, ct, truth, spacing=(1.5, 1.5, 2.5))
    cases = pd.DataFrame({"case_id": [0], "volume_path": [str(vpath)],
                          "mask_path": [str(mpath)]})
    cascade = load_predictor(cascade_dir)
    rules, table = tune_tumor_rules(cascade, cases, min_ml=(5.0, 0.0, 2.0, 0.05),
                                    elongation=(0.0, 1.0))
    assert table[["min_tumor_ml", "max_tumor_elongation"]].values.tolist() == [
        [m, e] for m in (0.0, 0.05, 2.0, 5.0) for e in (0.0, 1.0)]
    # without candidates, the cascade's own limit and confidence are kept
    own = tune_tumor_rules(cascade, cases, min_ml=(0.05,))[1]
    assert own["max_tumor_elongation"].tolist() == [cascade.rules.max_tumor_elongation]
    assert own["min_tumor_confidence"].tolist() == [cascade.rules.min_tumor_confidence]
    # confidences are tried on the same prediction; one no tumor reaches finds nothing
    sure, by_confidence = tune_tumor_rules(cascade, cases, min_ml=(0.05,),
                                           confidence=(0.0, 0.999999))
    assert by_confidence["min_tumor_confidence"].tolist() == [0.0, 0.999999]
    assert by_confidence["found"].tolist() == [1, 0]
    assert sure == PostProcessing(largest_liver=True, min_tumor_ml=0.05)
    # a limit of 1 drops every tumor that is not perfectly round: no lesion is found
    assert (table[table["max_tumor_elongation"] == 1.0]["found"] == 0).all()
    rows = table[table["max_tumor_elongation"] == 0.0].set_index("min_tumor_ml")
    # (the band model also marks a ring at the liver's edge: one large false positive)
    assert rows.loc[0.0, "false positive"] == rows.loc[0.05, "false positive"] + 1  # the speck
    assert rows.loc[0.0, "found"] == rows.loc[2.0, "found"] == 1
    assert rows.loc[5.0, "found"] == 0  # the 2.8 mL tumor is dropped too
    # best F1, the smaller of the tied volumes (0.05 and 2 mL), the other rules kept
    assert rules == PostProcessing(largest_liver=True, min_tumor_ml=0.05)
    assert rows.loc[0.05, "lesion F1"] == pytest.approx(2 / 3)
    assert rows.loc[0.0, "lesion F1"] == pytest.approx(1 / 2)
    # validation patients are those the model's config.json names
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"data": {"validation_cases": [3]}}))
    export = tmp_path / "export"
    export.mkdir()
    pd.DataFrame({"case_id": [1, 3, 5], "split": ["train", "train", "test"]}).to_csv(
        export / "cases.csv", index=False)
    assert validation_cases(export, model)["case_id"].tolist() == [3]


def test_a_cascade_with_fixed_rules_is_written_without_tuning(tmp_path):
    from livertumor.evaluation.tuning import write_tuned_cascade

    liver = band_model_dir(tmp_path / "liver")
    tumor = band_model_dir(tmp_path / "tumor", context=1, roi={"margin_mm": 4.0})
    path, rules, table = write_tuned_cascade(tmp_path / "cascade", liver, tumor,
                                             tmp_path / "no-export", 0.1, 2.5)
    assert table is None  # nothing chosen, so the export (absent here) is not read
    assert rules == PostProcessing(largest_liver=True, min_tumor_ml=0.1,
                                   max_tumor_elongation=2.5) == read_rules(path)
