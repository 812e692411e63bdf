"""The line-search check on unlearning updates (mlu.engine._safeguard)."""

import importlib
import inspect
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.special import expit

import mlu
from mlu.engine._safeguard import UpdateCheck, checked_update
from mlu.unlearning.unlearn import UpdateShortenedWarning, unlearn

# the plain update(s): without the SGD finish ("polish") where mlu.unlearn has one (issue 22)
PLAIN = {"polish": 0} if "polish" in inspect.signature(unlearn).parameters else {}

unlearn_module = importlib.import_module("mlu.unlearning.unlearn")


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
    # f(α d) = (α²·1e12/2 − α·1e6) b·d*, minimal at α = 1e-6. Interpolation finds that minimiser
    # exactly but may shorten by at most 10x a trial: α = 1, 0.1, …, 1e-6, eight evaluations
    # with the one at θ₀ (halving took 20 and stopped at 2⁻¹⁹ ≈ 1.9e-6).
    assert check.step == pytest.approx(1e-6, rel=1e-9)
    assert check.evaluations == 8
    np.testing.assert_allclose(theta, check.step * d)
    assert check.objective_after == pytest.approx(-0.5 * b @ np.linalg.solve(A, b), rel=1e-9)
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


# ------------------------------------------------------------------ every path of mlu.unlearn


@pytest.fixture(scope="module")
def digits_small():
    """A real small problem: digits 0-vs-1 ... 3-vs-8 subsets, trained briefly (not converged)."""
    ds = mlu.datasets.load("digits", classes=(3, 5, 8))
    X, y = ds.X_train[:90], ds.y_train[:90]
    return mlu.MLP(hidden=(6,), l2=1e-3, epochs=5, seed=1).fit(X, y), X, y


def _random_problem(seed: int):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] + 0.5 * rng.standard_normal(40) > 0).astype(int)
    return mlu.MLP(hidden=(3,), epochs=3, seed=seed).fit(X, y), X, y


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    real=st.booleans(),
    method=st.sampled_from(["influence", "newton"]),
    curvature=st.sampled_from(["hessian", "ggn"]),
    params=st.sampled_from(["all", "last"]),
    solver=st.sampled_from(["auto", "eigh", "cg", "kfac", "ekfac"]),
    damping=st.sampled_from([0.0, 1e-6, 1e-3, 0.01, 0.1, 1.0]),
    steps=st.integers(1, 3),
    n_forget=st.integers(1, 20),
)
def test_unlearn_never_increases_retained_objective(
    digits_small, seed, real, method, curvature, params, solver, damping, steps, n_forget
):
    assume(not (solver in ("kfac", "ekfac") and curvature == "hessian"))  # GGN forms only
    model, X, y = digits_small if real else _random_problem(seed)
    forget = np.random.default_rng(seed).choice(len(y), size=n_forget, replace=False)
    keep = np.ones(len(y), dtype=bool)
    keep[forget] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = unlearn(
            model, X, y, forget, method=method, curvature=curvature, params=params,
            solver=solver, damping=damping, steps=steps if method == "newton" else 1,
        )  # fmt: skip
    before = model.objective(X[keep], y[keep])
    after = result.model.objective(X[keep], y[keep])
    assert after <= before
    # the check takes L_R from its gradient pass (one pass, the core's own sum of the losses),
    # model.objective from a forward pass: equal to rounding
    assert result.objective_before == pytest.approx(before, rel=1e-13, abs=0)
    assert result.objective_after == pytest.approx(after, rel=1e-13, abs=0)
    assert len(result.checks) >= 1 and all(0.0 <= c.step <= 1.0 for c in result.checks)
    assert result.gradient_residual == pytest.approx(
        np.linalg.norm(result.model.gradient(X[keep], y[keep], params=params)), rel=1e-12
    )


@pytest.mark.parametrize("method", ["influence", "newton"])
def test_bad_update_is_shortened_and_warned(digits_small, monkeypatch, method):
    model, X, y = digits_small
    forget = np.arange(0, 90, 3)
    keep = np.ones(len(y), dtype=bool)
    keep[forget] = False
    solve = unlearn_module._solve

    def huge(*args, **kwargs):  # a deliberately bad solver: 1000 times the step
        x, info = solve(*args, **kwargs)
        return 1e3 * x, info

    monkeypatch.setattr(unlearn_module, "_solve", huge)
    steps = 1 if method == "influence" else 2
    raw = unlearn(model, X, y, forget, method=method, safeguard=False, steps=1, **PLAIN)
    assert raw.model.objective(X[keep], y[keep]) > model.objective(X[keep], y[keep]) + 0.1
    with pytest.warns(
        UpdateShortenedWarning, match="would have increased the retained objective"
    ) as record:
        safe = unlearn(model, X, y, forget, method=method, steps=steps, **PLAIN)
    assert {w.filename for w in record} == {__file__}  # the warning points at the call
    check = safe.checks[0]
    assert safe.shortened and 0.0 <= check.step < 1.0 and check.full_change > 0.1
    assert check.full_change == pytest.approx(
        raw.model.objective(X[keep], y[keep]) - check.objective_before, rel=1e-10
    )
    assert safe.objective_after <= safe.objective_before
    if safe.steps == 1:  # one step: the result lies on the bad update's line
        step = raw.model.params - model.params
        np.testing.assert_allclose(safe.model.params, model.params + check.step * step, atol=1e-12)
    assert any("L_R" in note for note in safe.notes)
    assert "retained objective" in safe.summary()


def test_unlearned_model_has_no_training_record(digits_small):
    model, X, y = digits_small
    tracked = mlu.MLP(hidden=(6,), epochs=3, track=True).fit(X, y)
    assert tracked.trace_ is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = unlearn(tracked, X, y, [0, 1, 2], method="newton", curvature="ggn")
    assert result.model.trace_ is None
    assert tracked.trace_ is not None


def test_ascent_direction_stops_at_zero_after_the_full_step():
    """∇fᵀd ≥ 0 and f(θ₀ + d) > f(θ₀): no shorter trials, α = 0 after two evaluations."""
    theta0 = np.array([0.3, -0.2])
    f = _quadratic(A, b)
    d = 0.01 * f(theta0)[1]
    theta, check = checked_update(theta0, d, f)
    np.testing.assert_array_equal(theta, theta0)
    assert check.step == 0.0 and check.evaluations == 2
    assert check.full_change == pytest.approx(f(theta0 + d)[0] - f(theta0)[0], rel=1e-12)


def test_describe_never_prints_nan():
    """A check without a prediction, or whose full step overflowed, says so in words."""
    quiet = UpdateCheck(1.0, 0.5, 1.0, 0.1, math.nan, -0.5, -0.5, 1.0, 1)
    assert "nan" not in quiet.describe().lower() and "actual -0.5" in quiet.describe()
    cut = UpdateCheck(1.0, 0.9, 1.0, 0.1, math.nan, math.nan, -0.1, 0.25, 3)
    text = cut.describe()
    assert "nan" not in text.lower() and "non-finite" in text and "0.25 of its length" in text
    told = UpdateCheck(1.0, 0.9, 1.0, 0.1, -0.2, 0.3, -0.1, 0.5, 2)
    assert "predicted change -0.2" in told.describe() and "by 0.3" in told.describe()
