"""evaluation: the streaming pixel ROC against the exact rank statistic."""

from __future__ import annotations

import numpy as np
import pytest

from livertumor.evaluation.roc import ROC_LOGIT_RANGE, ROC_THRESHOLDS, RocAccumulator


def exact_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney U / (P N): the probability that a positive outscores a negative (no ties)."""
    ranks = np.empty(score.size)
    ranks[np.argsort(score, kind="stable")] = np.arange(1, score.size + 1)
    pos = int(truth.sum())
    return (ranks[truth].sum() - pos * (pos + 1) / 2) / (pos * (score.size - pos))


@pytest.mark.parametrize("peaked", [False, True])
def test_roc_area_matches_the_rank_statistic_also_for_softmax_like_scores(peaked):
    rng = np.random.default_rng(1)
    n = 300_000
    truth = rng.random(n) < 0.02
    if peaked:  # most scores within 1e-3 of 0, as a segmentation softmax gives
        score = np.where(truth, 10 ** rng.uniform(-5, -0.3, n), 10 ** rng.uniform(-7, -2.5, n))
    else:
        score = np.clip(rng.normal(np.where(truth, 0.6, 0.4), 0.15), 0, 1)
    score = score.astype(np.float32)
    acc = RocAccumulator()
    acc.update(truth, score, chunk=50_000)  # streamed in pieces
    thresholds, fpr, tpr, auc = acc.curve()
    assert auc == pytest.approx(exact_auc(truth, score), abs=0.005)
    assert np.all(np.diff(fpr) <= 1e-12) and np.all(np.diff(tpr) <= 1e-12)  # thresholds rise
    assert len(thresholds) == ROC_THRESHOLDS and np.all(np.diff(thresholds) >= 0)
    lowest = 1 / (1 + np.exp(ROC_LOGIT_RANGE))
    assert thresholds[1] == pytest.approx(lowest, rel=0.2)  # dense near 0, not 0.005


def test_roc_scores_a_rounding_step_above_one_as_the_highest_score():
    """The liver score p1 + p2 of a float32 softmax can exceed 1 by one ulp: it must rank as
    the highest score, not turn into NaN."""
    p = np.float32(0.6) + np.float32(0.4000001)
    assert p > 1
    unit = RocAccumulator._to_unit(np.array([0.0, 0.5, 1.0, p], np.float32))
    assert not np.isnan(unit).any() and unit.tolist() == [0.0, 0.5, 1.0, 1.0]
    acc = RocAccumulator()
    acc.update(np.array([False, True, True]), np.array([0.2, 0.9, p], np.float32))
    assert acc.curve()[3] == pytest.approx(1.0)


def test_example_slices_take_the_largest_tumor_slice_and_read_each_reference_once(
        tmp_path, monkeypatch):
    import pandas as pd

    import livertumor.evaluation.tables as ev
    from livertumor import WINDOWS, read_nii, windowed
    from livertumor.evaluation import EvaluationResult

    from conftest import anatomy, write_case

    rows = []
    for cid, axcodes in ((1, ("P", "L", "S")), (2, ("R", "A", "S"))):
        ct, mask = anatomy(seed=cid)
        mask[4:9, 2:7, 7] = 2  # slice 7 holds the most tumor
        vpath, mpath = write_case(tmp_path, cid, ct, mask, axcodes=axcodes)
        rows.append({"case_id": cid, "volume_path": str(vpath), "mask_path": str(mpath),
                     "prediction_path": str(mpath)})
    per_case = pd.DataFrame(rows)
    results = {a: EvaluationResult(per_case, pd.DataFrame(), pd.DataFrame())
               for a in ("unet", "resnet50_unet")}
    calls = []
    real_read_mask = ev.read_mask
    monkeypatch.setattr(ev, "read_mask", lambda p, **kw: calls.append(p) or real_read_mask(p))
    panels = ev.example_slices(results)
    assert len(calls) == 2 + 2 * 2  # two references, two predictions per model
    for images, truths, preds, captions in panels.values():
        assert captions == ["case 1, slice 7", "case 2, slice 7"]
        for row, image, truth in zip(rows, images, truths, strict=True):
            expected = windowed(read_nii(row["volume_path"])[:, :, 7], *WINDOWS["abdomen_soft"])
            np.testing.assert_array_equal(image, expected)
            np.testing.assert_array_equal(truth, real_read_mask(row["mask_path"])[:, :, 7])
        np.testing.assert_array_equal(np.stack(preds), np.stack(truths))
