"""Clinician report: findings agree with the scoring code; the HTML stands alone."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from livertumor import lits_scores
from livertumor.evaluation.report import (
    LIMITATIONS,
    patient_findings,
    render_html,
    rules_sentence,
)
from livertumor.inference import PostProcessing
from livertumor.viz import figures

SPACING = (0.8, 0.8, 2.5)


def labels_with_two_tumors():
    truth = np.zeros((40, 40, 12), np.uint8)
    truth[5:35, 5:30, 1:11] = 1
    truth[10:16, 8:14, 3:7] = 2     # 6 x 6 px, 4 slices
    truth[22:30, 18:26, 5:9] = 2    # 8 x 8 px, 4 slices
    pred = truth.copy()
    pred[10:16, 8:14, 3:7] = 1      # first tumor missed
    pred[2:4, 32:35, 2:3] = 2       # a false positive outside the liver
    return truth, pred


def test_findings_match_the_scoring_code():
    truth, pred = labels_with_two_tumors()
    summary, tumors = patient_findings(pred, truth, SPACING, case_id=7)
    scores = lits_scores(pred, truth, SPACING)
    assert summary["liver_ml"] == pytest.approx(scores["liver_pred_ml"])
    assert summary["ref_liver_ml"] == pytest.approx(scores["liver_ref_ml"])
    assert summary["tumor_ml"] == pytest.approx(scores["tumor_pred_ml"])
    assert summary["burden_pct"] == pytest.approx(100 * scores["tumor_burden_pred"])
    assert summary["ref_burden_pct"] == pytest.approx(100 * scores["tumor_burden_ref"])
    assert (summary["found"], summary["missed"], summary["false_positive"]) == (1, 1, 1)
    assert summary["tumor_count"] == 2 and summary["ref_tumor_count"] == 2
    # tumors sorted largest first; the matched one is the 8 x 8 x 4 lesion
    assert list(tumors["tumor"]) == [1, 2]
    assert tumors["volume_ml"].iloc[0] == pytest.approx(8 * 8 * 4 * np.prod(SPACING) / 1000)
    assert tumors["diameter_mm"].iloc[0] >= 8 * 0.8
    assert list(tumors["matches_reference"]) == [True, False]


def test_findings_without_a_reference():
    truth, pred = labels_with_two_tumors()
    summary, tumors = patient_findings(pred, None, SPACING, case_id="new")
    assert "ref_liver_ml" not in summary and "found" not in summary
    assert list(tumors["matches_reference"]) == [None, None]


def test_html_report_is_standalone_and_says_what_it_is():
    truth, pred = labels_with_two_tumors()
    summary, tumors = patient_findings(pred, truth, SPACING, case_id=7)
    ct = np.where(truth >= 1, 100.0, -100.0).astype(np.float32)
    fig = figures.contour_figure(ct, truth, pred, [4, 6], SPACING)
    page = render_html([{"summary": summary, "tumors": tumors, "figure": fig}],
                       "Findings", synthetic=True, model_name="unet", generated="today")
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "src='http" not in page and 'src="http' not in page
    assert "Synthetic data" in page and LIMITATIONS[:40] in page
    assert "Patient 7" in page and f"{summary['liver_ml']:.0f}" in page
    assert "the LiTS rule): 1 of 2; outlined only in part: 0" in page
    assert "where the reference has none: 1" in page


def test_long_tumor_lists_are_cut():
    truth, pred = labels_with_two_tumors()
    pred = pred.copy()
    for i in range(20):
        pred[36, 2 * i % 40, i % 12] = 2
    summary, tumors = patient_findings(pred, truth, SPACING, case_id=1)
    page = render_html([{"summary": summary, "tumors": tumors}], "t", False, "unet", "now",
                       max_tumors=5)
    assert f"and {len(tumors) - 5} smaller ones" in page and "Synthetic data" not in page


def test_findings_list_found_false_positive_and_missed_tumors_with_their_slice():
    from livertumor.evaluation.report import findings

    truth, pred = labels_with_two_tumors()
    f = findings(pred, truth, SPACING, case_id=7)
    assert list(f.tumors["finding"]) == ["found", "false positive"]
    assert list(f.tumors["slice"]) == [5, 2]  # largest axial section (first of equals)
    assert len(f.missed) == 1 and f.missed["slice"].iloc[0] == 3
    assert f.missed["volume_ml"].iloc[0] == pytest.approx(6 * 6 * 4 * np.prod(SPACING) / 1000)
    page = render_html([{"summary": f.summary, "tumors": f.tumors, "missed": f.missed,
                         "figure": None}], "t", False, "cascade", "now")
    assert "the model missed" in page and "false positive" in page
    assert list(f.missed["overlap"]) == ["not marked"]
    assert (f.summary["outlined_in_part"], f.summary["no_reference"]) == (0, 1)
    assert findings(pred, None, SPACING, "new").missed.empty


def test_a_tumor_outlined_in_part_is_named_so_not_a_false_positive_without_reference():
    # LiTS counts a predicted tumor whose overlap with the reference tumor stays at IoU <= 0.5
    # as a false positive and the reference tumor as missed; the report says what it is
    from livertumor.evaluation.report import findings

    truth, pred = labels_with_two_tumors()
    pred[10:16, 8:14, 3:7] = 1
    pred[10:13, 8:14, 3:7] = 2      # the first tumor's upper half: IoU 0.5, not above
    f = findings(pred, truth, SPACING, case_id=7)
    assert (f.summary["found"], f.summary["missed"], f.summary["false_positive"]) == (1, 1, 2)
    assert (f.summary["outlined_in_part"], f.summary["no_reference"]) == (1, 1)
    assert list(f.tumors["finding"]) == ["found", "outlined in part (IoU 0.50)",
                                         "false positive"]
    assert f.tumors["iou"].iloc[1] == pytest.approx(0.5)
    assert list(f.missed["overlap"]) == ["outlined in part (IoU 0.50)"]
    page = render_html([{"summary": f.summary, "tumors": f.tumors, "missed": f.missed,
                         "figure": None}], "t", False, "cascade", "now")
    assert "outlined only in part: 1" in page and "where the reference has none: 1" in page


def test_the_report_says_what_the_post_processing_leaves_out():
    full = rules_sentence({"largest_liver": True, "min_tumor_ml": 0.25,
                           "max_tumor_elongation": 3.0})
    assert full == ("Post-processing: only the largest connected liver region is kept, with "
                    "the tumors inside it; tumors smaller than 0.25 mL and tumors more than 3 "
                    "times as long as wide (taken for vessels) are not reported.")
    assert rules_sentence({"max_tumor_elongation": 2.0, "elongation_below_ml": 5.0}) == (
        "Post-processing: tumors under 5 mL that are more than 2 times as long as wide "
        "(taken for vessels) are not reported.")
    assert rules_sentence({"min_tumor_ml": 0.1}) == (
        "Post-processing: tumors smaller than 0.1 mL are not reported.")
    assert rules_sentence({"min_tumor_ml": 0.1, "min_tumor_confidence": 0.8}) == (
        "Post-processing: tumors smaller than 0.1 mL and tumors the model found with a mean "
        "probability below 0.8 are not reported.")
    assert rules_sentence({"min_tumor_ml": 0.1, "max_tumor_elongation": 2.0,
                           "min_tumor_confidence": 0.8}) == (
        "Post-processing: tumors smaller than 0.1 mL, tumors more than 2 times as long as wide "
        "(taken for vessels) and tumors the model found with a mean probability below 0.8 are "
        "not reported.")
    assert rules_sentence({"min_tumor_in_liver": 0.5}) == (
        "Post-processing: tumors with less than 50% of their volume inside the liver the liver "
        "model found are not reported.")
    assert rules_sentence(None) == rules_sentence({"largest_liver": False}) == ""
    assert rules_sentence(PostProcessing(largest_liver=True, min_tumor_ml=0.25,
                                         max_tumor_elongation=3.0)) == full
    summary, tumors = patient_findings(*labels_with_two_tumors()[::-1], SPACING, case_id=7)
    page = render_html([{"summary": summary, "tumors": tumors}], "t", False, "cascade", "now",
                       rules=full)
    assert f"<p class='small'>{full}</p>" in page
    assert "Post-processing" not in render_html([{"summary": summary, "tumors": tumors}], "t",
                                                False, "unet", "now")
