"""The line-search check on unlearning updates (mlu._safeguard)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from mlu._safeguard import UpdateCheck, checked_update


def _quadratic(A, b):
    def f(theta):
        return 0.5 * theta @ A @ theta - b @ theta, A @ theta - b

    return f


A = np.diag([1.0, 4.0])
b = np.array([1.0, 2.0])


def test_newton_step_is_kept_and_reported():
    theta0 = np.zeros(2)
    d = np.linalg.solve(A, b)  # the exact minimiser
    theta, check = checked_update(theta0, d, _quadratic(A, b), predicted_change=-0.5 * b @ d)
    np.testing.assert_array_equal(theta, d)
    assert isinstance(check, UpdateCheck)
    assert check.step == 1.0 and not check.shortened
    assert check.objective_before == 0.0
    assert check.objective_after == pytest.approx(-0.5 * b @ d)
    assert check.actual_change == pytest.approx(check.predicted_change)
    assert check.grad_norm_before == pytest.approx(np.linalg.norm(b))
    assert check.grad_norm_after == pytest.approx(0.0, abs=1e-15)
    assert check.evaluations == 2


def test_huge_step_is_shortened():
    theta0 = np.zeros(2)
    d = 1e6 * np.linalg.solve(A, b)
    theta, check = checked_update(theta0, d, _quadratic(A, b))
    # f(α d*) = (α²/2 − α) b·d*, negative for 0 < α·1e6 < 2: the first such halving
    alpha = 0.5 ** math.ceil(math.log2(1e6 / 2 + 1e-9))
    assert check.step == alpha
    np.testing.assert_allclose(theta, alpha * d)
    assert check.shortened and check.significant
    assert check.objective_after <= check.objective_before
    assert check.full_change > 0
    assert "shortened" in check.describe()


def test_ascent_direction_is_not_applied():
    theta0 = np.array([0.3, -0.2])
    f = _quadratic(A, b)
    d = f(theta0)[1]  # the gradient: every positive step increases f
    theta, check = checked_update(theta0, d, f)
    np.testing.assert_array_equal(theta, theta0)
    assert check.step == 0.0 and check.actual_change == 0.0
    assert "not applied" in check.describe()


def test_inputs_not_modified_and_bad_shapes():
    theta0, d = np.zeros(2), np.ones(2)
    t0, d0 = theta0.copy(), d.copy()
    checked_update(theta0, d, _quadratic(A, b))
    np.testing.assert_array_equal(theta0, t0)
    np.testing.assert_array_equal(d, d0)
    with pytest.raises(ValueError, match="one shape"):
        checked_update(theta0, np.ones(3), _quadratic(A, b))
    with pytest.raises(ValueError, match="finite"):
        checked_update(theta0, np.array([np.nan, 1.0]), _quadratic(A, b))


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(1e-3, 1e8),
)
def test_never_increases_on_random_nonconvex(seed, scale):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((4, 4))
    W = rng.standard_normal(4)

    def f(theta):  # smooth, non-convex
        z = M @ theta
        val = float(np.sum(np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)) + np.sin(W @ theta))
        sig = expit(z)
        return val, M.T @ sig + np.cos(W @ theta) * W

    theta0 = rng.standard_normal(4)
    d = scale * rng.standard_normal(4)
    theta, check = checked_update(theta0, d, f)
    assert f(theta)[0] <= f(theta0)[0]
    assert check.objective_after == f(theta)[0]
    np.testing.assert_allclose(theta, theta0 + check.step * d)
