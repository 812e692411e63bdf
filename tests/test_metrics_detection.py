"""Detection metrics against hand-computed values on tiny examples, and their degenerate cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlu.metrics.detection import (
    average_precision,
    detection_report,
    precision_at_k,
    roc_auc,
)

# Six samples, two flipped (0 and 2); the top-2 scores (0 and 1) are flagged.
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
TRUTH = np.array([True, False, True, False, False, False])
FLAGGED = np.array([True, True, False, False, False, False])


def test_report_matches_hand_computed_values():
    report = detection_report(SCORES, FLAGGED, TRUTH)
    # ROC-AUC: positive 0.9 beats 4 negatives, 0.7 beats 3 of 4 -> 7/8.
    assert report["roc_auc"] == pytest.approx(7 / 8, abs=1e-12)
    # AP: positives at ranks 1 and 3 -> (1/1 + 2/3) / 2.
    assert report["average_precision"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-12)
    # Flags vs truth: right at 0, 3, 4, 5 -> 4/6; one of two flagged is flipped; one of two found.
    assert report["accuracy"] == pytest.approx(4 / 6, abs=1e-12)
    assert report["precision"] == pytest.approx(0.5, abs=1e-12)
    assert report["recall"] == pytest.approx(0.5, abs=1e-12)
    assert report["f1"] == pytest.approx(0.5, abs=1e-12)
    assert report["precision_at_k"] == pytest.approx(0.5, abs=1e-12)
    assert (report["n"], report["n_flagged"], report["n_true"], report["n_true_flagged"]) == (
        6.0,
        2.0,
        2.0,
        1.0,
    )
    assert all(type(v) is float for v in report.values())
    json.dumps(report)


def test_single_metrics_match_the_report():
    assert roc_auc(SCORES, TRUTH) == pytest.approx(7 / 8)
    assert average_precision(SCORES, TRUTH) == pytest.approx(5 / 6)
    assert precision_at_k(SCORES, TRUTH, 1) == 1.0
    assert precision_at_k(SCORES, TRUTH, 3) == pytest.approx(2 / 3)
    assert precision_at_k(SCORES, TRUTH, 0) == 0.0


def test_precision_differs_from_precision_at_k_when_flags_are_not_the_top():
    flagged = np.array([False, False, True, False, False, False])  # flagged by another rule
    report = detection_report(SCORES, flagged, TRUTH)
    assert report["precision"] == 1.0
    assert report["recall"] == 0.5
    assert report["f1"] == pytest.approx(2 / 3)
    assert report["precision_at_k"] == 1.0  # top-1 score (index 0) is flipped too


def test_integer_masks_are_accepted():
    report = detection_report(SCORES.tolist(), FLAGGED.astype(int), TRUTH.astype(int))
    assert report["roc_auc"] == pytest.approx(7 / 8)


def test_no_flipped_sample_gives_nan_ranking_metrics_and_zero_precision():
    truth = np.zeros(6, dtype=bool)
    report = detection_report(SCORES, FLAGGED, truth)
    assert math.isnan(report["roc_auc"]) and math.isnan(report["average_precision"])
    assert report["precision"] == 0.0 and report["recall"] == 0.0 and report["f1"] == 0.0
    assert report["accuracy"] == pytest.approx(4 / 6)
    json.dumps(report)  # NaN is written as NaN, not a crash


def test_all_flipped_gives_nan_auc_but_defined_ap():
    truth = np.ones(6, dtype=bool)
    assert math.isnan(roc_auc(SCORES, truth))
    assert average_precision(SCORES, truth) == pytest.approx(1.0)


def test_nothing_flagged_gives_zeros_without_warnings():
    nothing = np.zeros(6, dtype=bool)
    with np.errstate(all="raise"):
        report = detection_report(SCORES, nothing, TRUTH)
    assert report["precision"] == 0.0 and report["recall"] == 0.0 and report["f1"] == 0.0
    assert report["precision_at_k"] == 0.0 and report["n_flagged"] == 0.0
    assert report["accuracy"] == pytest.approx(4 / 6)


def test_inputs_are_not_modified():
    s, f, t = SCORES.copy(), FLAGGED.copy(), TRUTH.copy()
    detection_report(s, f, t)
    np.testing.assert_array_equal(s, SCORES)
    np.testing.assert_array_equal(f, FLAGGED)
    np.testing.assert_array_equal(t, TRUTH)


@pytest.mark.parametrize(
    ("scores", "flagged", "truth", "match"),
    [
        (SCORES[:5], FLAGGED, TRUTH, "scores has 5 entries"),
        (SCORES, FLAGGED[:5], TRUTH, "flagged has 5 entries"),
        (SCORES, FLAGGED, np.array([0, 1, 2, 0, 0, 0]), "true_mask must be a boolean"),
        (SCORES, FLAGGED, TRUTH[None, :], "true_mask must be a 1-D"),
        (np.array([0.1, np.nan, 0, 0, 0, 0]), FLAGGED, TRUTH, "scores contains NaN"),
    ],
)
def test_bad_input_names_what_is_wrong(scores, flagged, truth, match):
    with pytest.raises(ValueError, match=match):
        detection_report(scores, flagged, truth)


def test_bad_k():
    with pytest.raises(ValueError, match="k must be in 0..6"):
        precision_at_k(SCORES, TRUTH, 7)
    with pytest.raises(TypeError, match="k must be an int"):
        precision_at_k(SCORES, TRUTH, 1.5)


def test_detection_report_without_flagged():
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.2])
    truth = np.array([True, False, True, False, False])
    report = detection_report(scores, true_mask=truth)
    assert report == {"roc_auc": 1.0, "average_precision": 1.0, "n": 5.0, "n_true": 2.0}
    full = detection_report(scores, truth, truth)
    assert full["roc_auc"] == 1.0 and full["precision"] == 1.0
    with pytest.raises(TypeError, match="true_mask"):
        detection_report(scores)
