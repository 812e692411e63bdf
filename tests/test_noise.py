"""Tests for mlu.noise: the three flip modes, validation, and the transition matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import mlu.data.noise
from mlu.data.noise import (
    NoisyLabels,
    flip_labels,
    pair_matrix,
    symmetric_matrix,
    transition_matrix,
)


def balanced(n_per_class: int, k: int) -> np.ndarray:
    return np.repeat(np.arange(k), n_per_class)


def check_invariants(out: NoisyLabels, y: np.ndarray, k: int) -> None:
    assert out.labels.dtype == np.int64 and out.labels.shape == y.shape
    assert out.flipped.dtype == np.bool_
    np.testing.assert_array_equal(out.true_labels, y)
    np.testing.assert_array_equal(out.flipped, out.labels != y)
    assert out.labels.min(initial=0) >= 0 and out.labels.max(initial=0) < k
    assert out.rate == pytest.approx(out.flipped.mean() if y.size else 0.0)
    assert out.n_flipped == int(out.flipped.sum())
    np.testing.assert_array_equal(out.flipped_indices, np.flatnonzero(out.flipped))


# --------------------------------------------------------------------------- random mode


@pytest.mark.parametrize("k", [2, 10])
@pytest.mark.parametrize("rate", [0.01, 0.2, 0.5])
def test_random_rate_within_binomial_error_over_seeds(rate, k):
    n = 2000
    y = balanced(n // k, k)
    sigma = math.sqrt(rate * (1 - rate) / n)
    observed = np.array([flip_labels(y, rate, seed=s).rate for s in range(50)])
    assert np.all(np.abs(observed - rate) < 4 * sigma), observed
    # The mean over 50 seeds is 50**0.5 times tighter.
    assert abs(observed.mean() - rate) < 4 * sigma / math.sqrt(50)


def test_binary_random_flips_to_the_other_class():
    y = np.array([0, 1] * 500)
    out = flip_labels(y, 0.3, seed=1)
    check_invariants(out, y, 2)
    np.testing.assert_array_equal(out.labels[out.flipped], 1 - y[out.flipped])
    np.testing.assert_array_equal(out.labels[~out.flipped], y[~out.flipped])


def test_random_multiclass_targets_are_uniform_over_other_classes():
    k = 5
    y = balanced(20000, k)
    out = flip_labels(y, 0.5, seed=7)
    check_invariants(out, y, k)
    assert np.all(out.labels[out.flipped] != y[out.flipped])
    for c in range(k):
        rows = out.flipped & (y == c)
        counts = np.bincount(out.labels[rows], minlength=k)
        assert counts[c] == 0
        others = np.delete(counts, c)
        assert stats.chisquare(others).pvalue > 1e-3, (c, others)
    # Pooled over classes, the offset (noisy - true) mod k is uniform on 1..k-1.
    offsets = (out.labels[out.flipped] - y[out.flipped]) % k
    assert stats.chisquare(np.bincount(offsets, minlength=k)[1:]).pvalue > 1e-3


def test_rate_one_random_flips_everything():
    y = balanced(100, 3)
    out = flip_labels(y, 1.0, seed=0)
    assert out.flipped.all() and out.rate == 1.0
    check_invariants(out, y, 3)


@pytest.mark.parametrize("mode", ["random", "per_class"])
def test_rate_zero_flips_nothing(mode):
    y = balanced(50, 4)
    out = flip_labels(y, 0.0, seed=3, mode=mode)
    assert not out.flipped.any() and out.rate == 0.0
    np.testing.assert_array_equal(out.labels, y)
    assert out.labels is not y


def test_rate_zero_matrix_flips_nothing():
    y = balanced(50, 4)
    out = flip_labels(y, mode="matrix", matrix=np.eye(4))
    assert out.n_flipped == 0


# --------------------------------------------------------------------------- per_class mode


def test_per_class_counts_are_exact():
    y = np.concatenate([np.full(100, 0), np.full(37, 1), np.full(250, 2)])
    y = np.random.default_rng(0).permutation(y)
    out = flip_labels(y, 0.3, seed=5, mode="per_class")
    check_invariants(out, y, 3)
    np.testing.assert_array_equal(np.bincount(y[out.flipped], minlength=3), [30, 11, 75])
    assert out.n_flipped == 116 and out.rate == pytest.approx(116 / 387)


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.1, 0.2, 0.29, 0.3, 0.4, 0.5, 0.7])
def test_per_class_floor_is_not_fooled_by_rounding(rate):
    # 0.29 * 100 == 28.999999999999996 in floating point; the paper's count is 29.
    y = balanced(100, 2)
    out = flip_labels(y, rate, seed=0, mode="per_class")
    expected = math.floor(round(rate * 100, 9))
    np.testing.assert_array_equal(np.bincount(y[out.flipped], minlength=2), [expected] * 2)


def test_per_class_full_rate_and_absent_class():
    y = np.array([0, 0, 2, 2, 2])  # class 1 absent: floor(rate * 0) = 0
    out = flip_labels(y, 1.0, seed=0, mode="per_class", num_classes=3)
    assert out.flipped.all()
    check_invariants(out, y, 3)


# --------------------------------------------------------------------------- matrix mode


def test_matrix_mode_reproduces_T():
    T = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05], [0.0, 0.4, 0.6]])
    n_per_class = 40000
    y = balanced(n_per_class, 3)
    out = flip_labels(y, mode="matrix", matrix=T, seed=11)
    check_invariants(out, y, 3)
    M = transition_matrix(y, out.labels, 3)
    sigma = np.sqrt(T * (1 - T) / n_per_class)
    assert np.all(np.abs(M - T) <= 4 * sigma + 1e-12), M - T
    assert M[2, 0] == 0.0  # impossible transitions never happen
    expected_rate = 1 - np.trace(T) / 3
    assert out.rate == pytest.approx(expected_rate, abs=4 * math.sqrt(0.27 * 0.73 / 120000))


def test_matrix_num_classes_from_matrix_and_helpers():
    y = np.zeros(1000, dtype=int)  # only class 0 present; k comes from T
    out = flip_labels(y, mode="matrix", matrix=pair_matrix(4, 1.0))
    np.testing.assert_array_equal(out.labels, 1)
    out = flip_labels(y, mode="matrix", matrix=symmetric_matrix(4, 0.3), seed=2)
    check_invariants(out, y, 4)
    assert 0.25 < out.rate < 0.35


def test_symmetric_matrix_equals_random_mode_in_distribution():
    y = balanced(30000, 4)
    a = flip_labels(y, 0.4, seed=0)
    b = flip_labels(y, mode="matrix", matrix=symmetric_matrix(4, 0.4), seed=1)
    Ma, Mb = transition_matrix(y, a.labels), transition_matrix(y, b.labels)
    sigma = math.sqrt(0.4 * 0.6 / 30000)
    assert np.all(np.abs(Ma - Mb) < 4 * math.sqrt(2) * sigma)


# --------------------------------------------------------------------------- seeds, inputs


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0.3},
        {"rate": 0.3, "mode": "per_class"},
        {"mode": "matrix", "matrix": symmetric_matrix(3, 0.3)},
    ],
)
def test_seeds_deterministic_and_distinct(kwargs):
    y = balanced(300, 3)
    a = flip_labels(y, seed=0, **kwargs)
    b = flip_labels(y, seed=0, **kwargs)
    c = flip_labels(y, seed=1, **kwargs)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.flipped, b.flipped)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0.5},
        {"rate": 0.5, "mode": "per_class"},
        {"mode": "matrix", "matrix": pair_matrix(3, 0.5)},
    ],
)
def test_input_unchanged_and_outputs_are_new_arrays(kwargs):
    y = np.array([2, 0, 1, 1, 0, 2, 2, 1, 0, 0], dtype=np.int32)
    before = y.copy()
    out = flip_labels(y, **kwargs)
    np.testing.assert_array_equal(y, before)
    assert y.dtype == np.int32
    assert not np.shares_memory(out.labels, y) and not np.shares_memory(out.true_labels, y)
    assert not np.shares_memory(out.labels, out.true_labels)


def test_accepts_lists_and_integer_valued_floats():
    out = flip_labels([0.0, 1.0, 1.0, 0.0], 1.0)
    np.testing.assert_array_equal(out.labels, [1, 0, 0, 1])
    assert out.labels.dtype == np.int64


def test_empty_labels_with_num_classes():
    out = flip_labels(np.array([], dtype=int), 0.5, num_classes=2)
    assert out.labels.shape == (0,) and out.rate == 0.0


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("rate", [-0.1, 1.1, float("nan"), float("inf"), "0.1", True])
@pytest.mark.parametrize("mode", ["random", "per_class"])
def test_bad_rates_rejected(rate, mode):
    with pytest.raises(ValueError, match="rate"):
        flip_labels(np.array([0, 1, 0, 1]), rate, mode=mode)


@pytest.mark.parametrize(
    ("y", "kwargs", "match"),
    [
        ([0, 1.5, 1], {}, "non-integer"),
        ([0, float("nan"), 1], {}, "non-integer"),
        (["a", "b"], {}, "integer labels"),
        ([0, -1, 1], {}, "negative"),
        ([0, 1, 3], {"num_classes": 3}, "label 3 but num_classes=3"),
        ([[0, 1], [1, 0]], {}, "1-D"),
        ([0, 0, 0], {}, "at least 2 classes"),
        ([0, 1], {"num_classes": 1}, "num_classes=1"),
        ([0, 1], {"num_classes": 2.0}, "num_classes must be an int"),
        ([0, 1], {"mode": "uniform"}, "unknown mode 'uniform'"),
        ([0, 1], {"rate": None}, "needs a rate"),
        ([0, 1], {"matrix": np.eye(2)}, "only used with mode='matrix'"),
        ([0, 1], {"rate": None, "mode": "matrix"}, "needs matrix"),
        ([0, 1], {"rate": 0.1, "mode": "matrix", "matrix": np.eye(2)}, "rate must be None"),
        ([], {"rate": 0.1}, "num_classes is required"),
    ],
)
def test_bad_inputs_rejected(y, kwargs, match):
    kwargs = {"rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        flip_labels(np.asarray(y), **kwargs)


@pytest.mark.parametrize(
    ("matrix", "match"),
    [
        (np.ones((2, 3)) / 3, "square"),
        (np.ones(2) / 2, "square"),
        (np.ones((1, 1)), "at least 2x2"),
        (np.array([[1.2, -0.2], [0.0, 1.0]]), "negative"),
        (np.array([[0.5, 0.4], [0.0, 1.0]]), "row 0 sums to 0.9"),
        (np.array([[0.5, 0.5], [0.5, 0.5 + 1e-6]]), "row 1"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
        (np.array([[np.inf, 0.0], [0.0, 1.0]]), "infinite"),
        (np.eye(3), "3x3 but num_classes=4"),
    ],
)
def test_bad_matrices_rejected(matrix, match):
    y = np.array([0, 1, 1, 0])
    num_classes = 4 if matrix.shape == (3, 3) else None
    with pytest.raises(ValueError, match=match):
        flip_labels(y, mode="matrix", matrix=matrix, num_classes=num_classes)


def test_matrix_row_sum_tolerance():
    T = np.array([[0.5, 0.5 + 5e-9], [0.0, 1.0]])
    out = flip_labels(np.array([0, 1] * 10), mode="matrix", matrix=T)
    check_invariants(out, np.array([0, 1] * 10), 2)


def test_labels_beyond_matrix_rejected():
    with pytest.raises(ValueError, match="label 2 but num_classes=2"):
        flip_labels(np.array([0, 1, 2]), mode="matrix", matrix=np.eye(2))


# --------------------------------------------------------------------------- matrices


def test_transition_matrix_values():
    true = np.array([0, 0, 0, 0, 1, 1, 2])
    noisy = np.array([0, 1, 1, 2, 1, 1, 0])
    M = transition_matrix(true, noisy, 4)
    expected = np.array(
        [
            [0.25, 0.5, 0.25, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [np.nan] * 4,  # class 3 absent: no estimate
        ]
    )
    np.testing.assert_array_equal(M, expected)
    assert transition_matrix(true, noisy).shape == (3, 3)
    with pytest.raises(ValueError, match="length"):
        transition_matrix(true, noisy[:-1])


@pytest.mark.parametrize("k", [2, 3, 10])
@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0])
def test_helper_matrices_are_valid(k, rate):
    S = symmetric_matrix(k, rate)
    P = pair_matrix(k, rate)
    for T in (S, P):
        assert T.shape == (k, k)
        np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(np.diag(T), 1 - rate)
        mlu.noise.check_transition_matrix(T, k)
    np.testing.assert_allclose(S[0, 1:], rate / (k - 1))
    assert P[k - 1, 0] == rate and P[0, 1] == rate
    assert np.count_nonzero(P - np.diag(np.diag(P))) == (k if rate > 0 else 0)


def test_binary_helpers_coincide():
    np.testing.assert_array_equal(symmetric_matrix(2, 0.3), pair_matrix(2, 0.3))
    np.testing.assert_array_equal(pair_matrix(2, 0.3), [[0.7, 0.3], [0.3, 0.7]])


@pytest.mark.parametrize(("k", "rate"), [(1, 0.1), (2.0, 0.1), (3, 1.5), (3, -0.5)])
def test_helper_matrices_reject(k, rate):
    with pytest.raises(ValueError):
        symmetric_matrix(k, rate)
    with pytest.raises(ValueError):
        pair_matrix(k, rate)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    y=st.lists(st.integers(0, 5), min_size=1, max_size=200),
    rate=st.floats(0.0, 1.0),
    mode=st.sampled_from(["random", "per_class"]),
    seed=st.integers(0, 2**32 - 1),
    extra=st.integers(0, 2),
)
def test_invariants_hold_for_any_input(y, rate, mode, seed, extra):
    y = np.array(y)
    k = max(int(y.max()) + 1, 2) + extra
    out = flip_labels(y, rate, seed=seed, mode=mode, num_classes=k)
    check_invariants(out, y, k)
    if mode == "per_class":
        counts = np.bincount(y[out.flipped], minlength=k)
        expected = [math.floor(rate * n + 1e-9) for n in np.bincount(y, minlength=k)]
        np.testing.assert_array_equal(counts, expected)
    if rate == 0.0:
        assert out.n_flipped == 0
    if rate == 1.0 and mode == "random":
        assert out.flipped.all()


# ------------------------------------------------------------------ the label set (issue 12)


@pytest.mark.parametrize("mode", ["random", "per_class"])
def test_labels_outside_zero_to_k_never_invent_a_class(mode):
    y = np.repeat([3, 8], 500)
    noisy = flip_labels(y, 0.2, mode=mode, seed=1)
    assert set(np.unique(noisy.labels)) == {3, 8}
    # two classes: a flip is the other one
    np.testing.assert_array_equal(noisy.labels[noisy.flipped], 11 - y[noisy.flipped])
    assert 0.15 < noisy.rate < 0.25


def test_classes_names_the_label_set():
    y = np.array([2, 2, 5, 5, 2, 5] * 50)
    noisy = flip_labels(y, 1.0, classes=[2, 5, 7], seed=0)
    assert set(np.unique(noisy.labels)) == {2, 5, 7}
    assert noisy.flipped.all()
    # same draws as the equivalent labels 0..k-1
    codes = flip_labels(np.searchsorted([2, 5, 7], y), 1.0, num_classes=3, seed=0)
    np.testing.assert_array_equal(noisy.labels, np.array([2, 5, 7])[codes.labels])
    with pytest.raises(ValueError, match="not in classes"):
        flip_labels(y, 0.1, classes=[2, 7])
    with pytest.raises(ValueError, match="not both"):
        flip_labels(y, 0.1, classes=[2, 5], num_classes=6)
    with pytest.raises(ValueError, match="distinct"):
        flip_labels(y, 0.1, classes=[2, 5, 5])


def test_matrix_mode_with_classes():
    y = np.repeat([3, 8], 100)
    T = np.array([[0.0, 1.0], [1.0, 0.0]])
    noisy = flip_labels(y, mode="matrix", matrix=T, classes=[3, 8])
    np.testing.assert_array_equal(noisy.labels, 11 - y)
