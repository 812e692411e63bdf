"""select() and estimate_noise_rate(): how many samples to flag, by one criterion at a time."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mlu.detection.detect import NoiseRateWarning, estimate_noise_rate, select

SCORES = np.array([0.3, 0.9, 0.1, 0.7, 0.5, 0.2, 0.8, 0.4, 0.6, 0.0])  # distinct, n = 10


def contaminated_scores(n: int, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Loss-like scores: clean ~ lognormal around 0.01, noisy ~ lognormal around 3."""
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < rate
    log_scores = np.where(noisy, rng.normal(np.log(3.0), 0.5, n), rng.normal(np.log(0.01), 1.0, n))
    return np.exp(log_scores), noisy


# --------------------------------------------------------------------------- explicit criteria


def test_fraction_flags_the_top_scores():
    mask = select(SCORES, fraction=0.3)
    assert mask.dtype == bool and mask.shape == (10,)
    np.testing.assert_array_equal(np.flatnonzero(mask), [1, 3, 6])  # 0.9, 0.7, 0.8


def test_fraction_rounds_half_up_and_covers_the_ends():
    assert select(SCORES, fraction=0.25).sum() == 3  # 2.5 -> 3
    assert select(SCORES, fraction=0.0).sum() == 0
    assert select(SCORES, fraction=1.0).all()
    assert select(np.arange(2000.0), fraction=0.1).sum() == 200


def test_count_and_noise_rate():
    np.testing.assert_array_equal(np.flatnonzero(select(SCORES, count=2)), [1, 6])
    np.testing.assert_array_equal(select(SCORES, noise_rate=0.3), select(SCORES, fraction=0.3))
    assert select(SCORES, count=0).sum() == 0


def test_threshold_is_strict():
    np.testing.assert_array_equal(np.flatnonzero(select(SCORES, threshold=0.7)), [1, 6])
    assert select(SCORES, threshold=-np.inf).all()


def test_ties_at_the_cut_go_to_the_lower_index():
    mask = select(np.array([1.0, 2.0, 2.0, 2.0, 0.0]), count=2)
    np.testing.assert_array_equal(np.flatnonzero(mask), [1, 2])


def test_scores_are_not_modified_and_lists_work():
    scores = SCORES.copy()
    select(scores, method="gmm")
    np.testing.assert_array_equal(scores, SCORES)
    assert select(SCORES.tolist(), count=1)[1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"fraction": 0.1, "count": 3},
        {"threshold": 1.0, "method": "gmm"},
        {"noise_rate": 0.1, "fraction": 0.1},
    ],
)
def test_exactly_one_criterion(kwargs):
    with pytest.raises(ValueError, match="exactly one of"):
        select(SCORES, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fraction": 1.5}, ValueError, "fraction must be in"),
        ({"fraction": -0.1}, ValueError, "fraction must be in"),
        ({"noise_rate": 2.0}, ValueError, "noise_rate must be in"),
        ({"fraction": "10%"}, TypeError, "fraction must be a number"),
        ({"count": 11}, ValueError, "count must be in 0..10"),
        ({"count": -1}, ValueError, "count must be in 0..10"),
        ({"count": 2.5}, TypeError, "count must be an int"),
        ({"threshold": float("nan")}, ValueError, "threshold is NaN"),
        ({"method": "otsu"}, ValueError, "method must be one of"),
        ({"method": "gmm", "transform": "sqrt"}, ValueError, "transform must be one of"),
    ],
)
def test_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        select(SCORES, **kwargs)


@pytest.mark.parametrize(
    ("scores", "match"),
    [
        (np.array([]), "scores is empty"),
        (np.ones((3, 2)), "scores must be 1-D"),
        (np.array([0.1, np.nan]), "scores contains NaN"),
    ],
)
def test_bad_scores(scores, match):
    with pytest.raises(ValueError, match=match):
        select(scores, fraction=0.1)


def test_log_transform_rejects_negative_scores():
    with pytest.raises(ValueError, match="non-negative"):
        estimate_noise_rate(np.array([-1.0, 0.0, 1.0, 2.0]), transform="log")


# --------------------------------------------------------------------------- automatic selection


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gmm_recovers_the_contamination_rate_within_003(seed):
    scores, noisy = contaminated_scores(2000, 0.2, seed)
    rate = estimate_noise_rate(scores)
    assert abs(rate - noisy.mean()) <= 0.03
    mask = select(scores, method="gmm")
    assert mask.sum() == round(rate * 2000)
    # Well-separated groups: the flagged set is (nearly) the contaminated one.
    assert (mask == noisy).mean() >= 0.97


@pytest.mark.parametrize("rate", [0.05, 0.4])
def test_gmm_tracks_other_rates(rate):
    scores, noisy = contaminated_scores(4000, rate, 7)
    assert abs(estimate_noise_rate(scores) - noisy.mean()) <= 0.03


def test_gmm_on_signed_scores_uses_no_log():
    # Negative-margin-like scores: clean around -5, noisy around +3.
    rng = np.random.default_rng(3)
    noisy = rng.random(3000) < 0.2
    scores = np.where(noisy, rng.normal(3.0, 1.0, 3000), rng.normal(-5.0, 1.5, 3000))
    assert abs(estimate_noise_rate(scores) - noisy.mean()) <= 0.03
    assert estimate_noise_rate(scores) == estimate_noise_rate(scores, transform="none")


def test_auto_equals_gmm_and_is_deterministic():
    scores, _ = contaminated_scores(1000, 0.2, 5)
    np.testing.assert_array_equal(select(scores, method="auto"), select(scores, method="gmm"))
    assert estimate_noise_rate(scores, seed=0) == estimate_noise_rate(scores, seed=0)


def test_constant_scores_estimate_no_noise():
    assert estimate_noise_rate(np.full(50, 0.3)) == 0.0
    assert select(np.full(50, 0.3), method="gmm").sum() == 0


def test_overlapping_groups_warn_that_the_estimate_is_unreliable():
    rng = np.random.default_rng(0)
    scores = np.exp(rng.normal(0.0, 1.0, 2000))  # one lognormal group: nothing to split
    with pytest.warns(NoiseRateWarning, match="confident_learning"):
        estimate_noise_rate(scores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_noise_rate(scores, warn=False)
        estimate_noise_rate(contaminated_scores(2000, 0.2, 0)[0])  # well separated: silent
