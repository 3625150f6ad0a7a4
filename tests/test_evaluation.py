"""evaluation: the streaming pixel ROC against the exact rank statistic."""

from __future__ import annotations

import numpy as np
import pytest

from livertumor.evaluation import ROC_LOGIT_RANGE, ROC_THRESHOLDS, _RocAccumulator


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
    acc = _RocAccumulator()
    acc.update(truth, score, chunk=50_000)  # streamed in pieces
    thresholds, fpr, tpr, auc = acc.curve()
    assert auc == pytest.approx(exact_auc(truth, score), abs=0.005)
    assert np.all(np.diff(fpr) <= 1e-12) and np.all(np.diff(tpr) <= 1e-12)  # thresholds rise
    assert len(thresholds) == ROC_THRESHOLDS and np.all(np.diff(thresholds) >= 0)
    lowest = 1 / (1 + np.exp(ROC_LOGIT_RANGE))
    assert thresholds[1] == pytest.approx(lowest, rel=0.2)  # dense near 0, not 0.005
