"""Certified removal (Guo et al., 2020) for models without hidden layer: mlu.certified."""

import math
import warnings

import numpy as np
import pytest

import mlu
from mlu import reference
from mlu.unlearning.certified import GAMMA_SOFTMAX, fit_certified, noise_budget


def _problem(seed=0, n=80, d=4, k=3):
    """Separable-ish blobs with ‖x_i‖ ≤ 1 (the paper's normalisation)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) + 1.5 * np.eye(k, d)[y]
    X /= np.linalg.norm(X, axis=1, keepdims=True).max()
    return X, y


def _perturbed_gradient(model, X, y):
    """(1/n) Σ ∇ℓ + λθ + b/n, from the NumPy reference."""
    g = reference.gradient(model.layers, "relu", X, model.classes_.searchsorted(y), l2=model.l2)
    return g + model.perturbation_.b / X.shape[0]


def test_perturbed_training_reaches_its_minimum():
    X, y = _problem()
    model = fit_certified(X, y, sigma=2.0, l2=0.1, seed=3)
    assert model.sizes_ == (4, 3)
    g = _perturbed_gradient(model, X, y)
    assert np.linalg.norm(g) <= 1e-10
    assert model.perturbation_.training_residual == pytest.approx(
        X.shape[0] * np.linalg.norm(g), abs=1e-10
    )
    # b ~ N(0, σ²): the perturbation actually moved the minimum
    plain = fit_certified(X, y, sigma=1e-12, l2=0.1, seed=3)
    assert np.linalg.norm(model.params - plain.params) > 1e-3
    assert model.perturbation_.b.std() == pytest.approx(2.0, rel=0.5)


def _numpy_bound(model, X_R, delta):
    """γ ‖X̃‖₂ ‖Δ‖₂ max_i‖x̃_i‖ ‖X̃ Δ_Wᵀ‖_F, written out."""
    d, k = model.sizes_
    Xt = np.column_stack([X_R, np.ones(len(X_R))])
    W = np.column_stack([delta[: k * d].reshape(k, d), delta[k * d :]])
    return (
        GAMMA_SOFTMAX
        * np.linalg.svd(Xt, compute_uv=False)[0]
        * np.linalg.norm(delta)
        * max(np.linalg.norm(row) for row in Xt)
        * np.sqrt(sum(np.linalg.norm(W @ row) ** 2 for row in Xt))
    )


def test_gamma_bounds_the_softmax_hessian_change():
    """‖A(z) − A(z')‖₂ ≤ γ‖z − z'‖ for A = diag(p) − ppᵀ, sampled."""
    rng = np.random.default_rng(0)

    def A(z):
        p = np.exp(z - z.max())
        p /= p.sum()
        return np.diag(p) - np.outer(p, p)

    worst = 0.0
    for _ in range(2000):
        k = rng.integers(2, 6)
        z = rng.normal(scale=3, size=k)
        h = rng.normal(scale=1e-5, size=k)
        worst = max(worst, np.linalg.norm(A(z + h) - A(z), 2) / np.linalg.norm(h))
    assert worst <= GAMMA_SOFTMAX


def test_certified_removal_reports_bound_budget_and_certifies():
    X, y = _problem()
    model = fit_certified(X, y, sigma=10.0, l2=0.1, seed=1)
    before = model.params.copy()
    forget = np.array([5, 17])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a certified removal warns about nothing
        result = mlu.unlearn(model, X, y, forget, certify=(1.0, 1e-4))
    np.testing.assert_array_equal(model.params, before)  # input untouched
    cert = result.certificate
    mask = np.zeros(len(y), dtype=bool)
    mask[forget] = True
    X_R, y_R = X[~mask], y[~mask]
    n_R = len(y_R)

    # The step is the exact Newton step of the retained perturbed objective (NumPy).
    yk = model.classes_.searchsorted(y_R)
    g0 = reference.gradient(model.layers, "relu", X_R, yk, l2=0.1) + model.perturbation_.b / n_R
    H = reference.hessian(model.layers, "relu", X_R, yk, l2=0.1)
    delta = -np.linalg.solve(H, g0)
    np.testing.assert_allclose(result.model.params - before, delta, rtol=1e-9, atol=1e-13)

    assert cert.budget == pytest.approx(10.0 * 1.0 / math.sqrt(2 * math.log(1.5 / 1e-4)))
    assert cert.bound == pytest.approx(_numpy_bound(model, X_R, delta), rel=1e-9)
    assert cert.solve_residual <= 1e-10
    # the bound holds: the measured residual (sum form) is below it
    g1 = _perturbed_gradient(result.model, X_R, y_R)
    assert cert.gradient_residual == pytest.approx(n_R * np.linalg.norm(g1), rel=1e-6, abs=1e-14)
    assert cert.gradient_residual <= cert.bound + cert.solve_residual
    assert cert.bound < cert.budget and cert.certified
    assert (cert.epsilon, cert.delta, cert.sigma) == (1.0, 1e-4, 10.0)
    assert "certified removal" in result.summary() and not result.notes
    assert result.method == "newton" and result.damping == 0.0 and result.steps == 1
    # the certified model carries its perturbation on, for the next request
    np.testing.assert_array_equal(result.model.perturbation_.b, model.perturbation_.b)
    # and a second removal from the unlearned model is checked again against the budget
    again = mlu.unlearn(result.model, X_R, y_R, [0], certify=(1.0, 1e-4))
    assert again.certificate.gradient_residual <= again.certificate.bound + 1e-10


def test_over_budget_removal_is_not_certified_and_warns():
    X, y = _problem(seed=2)
    model = fit_certified(X, y, sigma=1e-3, l2=0.1, seed=0)
    with pytest.warns(mlu.NotCertifiedWarning, match="retrain"):
        result = mlu.unlearn(model, X, y, np.arange(10), certify=(0.5, 1e-5))
    cert = result.certificate
    assert not cert.certified
    assert (
        cert.bound + cert.solve_residual
        > cert.budget
        == pytest.approx(noise_budget(1e-3, 0.5, 1e-5))
    )
    assert any("NOT (0.5, 1e-05)-certified" in note for note in result.notes)


def test_certify_refuses_hidden_layers_and_unperturbed_models():
    X, y = _problem()
    deep = mlu.MLP(hidden=(5,), l2=0.1, epochs=2).fit(X, y)
    with pytest.raises(ValueError, match="without hidden layer.*convex loss"):
        mlu.unlearn(deep, X, y, [0], certify=(1.0, 1e-4))
    plain = mlu.MLP(hidden=(), l2=0.1, epochs=2).fit(X, y)
    with pytest.raises(ValueError, match="fit_certified"):
        mlu.unlearn(plain, X, y, [0], certify=(1.0, 1e-4))
    model = fit_certified(X, y, l2=0.1)
    for bad in [(0.0, 1e-4), (1.0, 1.0), (1.0,), "eps", (np.nan, 0.1)]:
        with pytest.raises(ValueError, match="certify"):
            mlu.unlearn(model, X, y, [0], certify=bad)
    with pytest.raises(ValueError, match="method='newton'"):
        mlu.unlearn(model, X, y, [0], method="influence", certify=(1.0, 1e-4))
    with pytest.raises(ValueError, match="steps=1"):
        mlu.unlearn(model, X, y, [0], steps=3, certify=(1.0, 1e-4))
    with pytest.raises(ValueError, match="sigma"):
        fit_certified(X, y, sigma=0.0)
    with pytest.raises(ValueError, match="l2"):
        fit_certified(X, y, l2=0.0)


def test_certified_removal_on_real_digits():
    """digits 0 vs 1 scaled to ‖x‖ ≤ 1, λ = 0.03: 3 removals certified at ε = 1, δ = 1e-4, σ = 10;
    10 are not (the bound grows about as |F|², measured 18.5 against the budget 2.28)."""
    ds = mlu.datasets.load("digits", classes=(0, 1))
    scale = np.linalg.norm(ds.X_train, axis=1).max()
    X, y = ds.X_train / scale, ds.y_train
    model = fit_certified(X, y, sigma=10.0, l2=0.03, seed=0)
    result = mlu.unlearn(model, X, y, np.arange(3), certify=(1.0, 1e-4))
    cert = result.certificate
    assert cert.certified, cert.describe()
    assert cert.gradient_residual <= cert.bound + cert.solve_residual
    assert result.model.score(ds.X_test / scale, ds.y_test) >= 0.99
    with pytest.warns(mlu.NotCertifiedWarning):
        over = mlu.unlearn(model, X, y, np.arange(10), certify=(1.0, 1e-4))
    assert over.certificate.bound > over.certificate.budget
