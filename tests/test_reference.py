"""Tests of mlu.reference, the pure-NumPy specification of the MLP math.

Every analytic quantity is checked against something computed another way: finite differences
(gradient, Jacobians, Hessian-vector products), explicit per-sample loops, or the other
curvature path (R-operator vs explicit Jacobians).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlu import reference as ref

ACTIVATIONS = ("relu", "tanh", "sigmoid")
# (hidden widths, input dimension d): depth 0, 1 and 2 hidden layers
ARCHS = (((), 6), ((5,), 4), ((4, 3), 3))
KS = (2, 3, 5)
CASES = [(hidden, d, act, k) for (hidden, d), act, k in itertools.product(ARCHS, ACTIVATIONS, KS)]
CASE_IDS = [f"h{'x'.join(map(str, h)) or '0'}-d{d}-{a}-k{k}" for h, d, a, k in CASES]
L2 = 0.1


def make_problem(
    hidden: tuple[int, ...], d: int, k: int, n: int = 30, seed: int = 0
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Random float64 MLP (weights ~ N(0, 1/in), so tanh/sigmoid are not saturated) and data."""
    rng = np.random.default_rng(seed)
    sizes = (d, *hidden, k)
    layers = [
        (rng.normal(size=(n_out, n_in)) / np.sqrt(n_in), 0.3 * rng.normal(size=n_out))
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)  # every class present
    return layers, X, y


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-300))


def fd_gradient(f, theta: np.ndarray, eps: float) -> np.ndarray:
    """Central finite-difference gradient of a scalar function (vector-valued f also works)."""
    cols = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = eps
        cols.append((np.asarray(f(theta + e)) - np.asarray(f(theta - e))) / (2 * eps))
    return np.stack(cols, axis=-1)


def with_theta(layers, theta):
    return ref.unflatten(theta, ref.layer_sizes(layers))


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


def test_layout_is_w1_row_major_b1_w2_b2():
    W1 = np.arange(6.0).reshape(3, 2)
    b1 = np.array([10.0, 11.0, 12.0])
    W2 = np.array([[20.0, 21.0, 22.0], [23.0, 24.0, 25.0]])
    b2 = np.array([30.0, 31.0])
    layers = [(W1, b1), (W2, b2)]
    theta = ref.flatten(layers)
    np.testing.assert_array_equal(
        theta, [0, 1, 2, 3, 4, 5, 10, 11, 12, 20, 21, 22, 23, 24, 25, 30, 31]
    )
    assert ref.layer_sizes(layers) == (2, 3, 2)
    assert ref.num_params((2, 3, 2)) == 17
    assert ref.last_layer_slice((2, 3, 2)) == slice(9, 17)
    np.testing.assert_array_equal(theta[ref.last_layer_slice((2, 3, 2))], ref.flatten([(W2, b2)]))


@pytest.mark.parametrize(("hidden", "d"), ARCHS)
def test_unflatten_roundtrip_and_copies(hidden, d):
    layers, _, _ = make_problem(hidden, d, 3)
    sizes = ref.layer_sizes(layers)
    assert sizes == (d, *hidden, 3)
    theta = ref.flatten(layers)
    assert theta.shape == (ref.num_params(sizes),)
    back = ref.unflatten(theta, sizes)
    for (W, b), (W2, b2) in zip(layers, back):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)
    theta[:] = 0.0  # unflatten returned copies
    assert np.any(back[0][0] != 0.0)
    sl = ref.last_layer_slice(sizes)
    assert sl.stop == theta.size
    assert sl.stop - sl.start == (sizes[-2] + 1) * sizes[-1]


# --------------------------------------------------------------------------------------------
# Forward, softmax, losses, objective
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES[::4])
def test_forward_matches_per_sample_formula(hidden, d, activation, k):
    layers, X, _ = make_problem(hidden, d, k)
    sigma = {
        "relu": lambda z: np.where(z > 0, z, 0.0),
        "tanh": np.tanh,
        "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    }[activation]
    expected = []
    for x in X:
        a = x
        for l, (W, b) in enumerate(layers):
            z = W @ a + b
            a = sigma(z) if l < len(layers) - 1 else z
        expected.append(a)
    out = ref.forward(layers, activation, X)
    assert out.shape == (len(X), k)
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-14)


def test_softmax_and_log_softmax_are_stable():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -999.0], [0.0, 0.0, 0.0]])
    P = ref.softmax(logits)
    logP = ref.log_softmax(logits)
    assert np.all(np.isfinite(P)) and np.all(np.isfinite(logP))
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(P[0], [1.0, 0.0, 0.0], atol=1e-300)
    np.testing.assert_allclose(logP[0], [0.0, -1000.0, -2000.0], rtol=1e-15)
    e = np.exp(1.0)
    np.testing.assert_allclose(P[1], [1 / (2 + e), 1 / (2 + e), e / (2 + e)], rtol=1e-14)
    np.testing.assert_allclose(P[2], 1 / 3, rtol=1e-15)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (4, 3), elements=st.floats(-50, 50)),
    st.floats(-1e3, 1e3),
)
def test_softmax_shift_invariant_and_consistent(logits, shift):
    P = ref.softmax(logits)
    np.testing.assert_allclose(P, ref.softmax(logits + shift), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(ref.log_softmax(logits), np.log(P), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)


@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES, ids=CASE_IDS)
def test_losses_and_objective(hidden, d, activation, k):
    layers, X, y = make_problem(hidden, d, k)
    z = ref.forward(layers, activation, X)
    expected = np.array([np.log(np.sum(np.exp(zi))) - zi[yi] for zi, yi in zip(z, y)])
    loss = ref.losses(layers, activation, X, y)
    assert loss.shape == (len(X),)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    theta = ref.flatten(layers)
    obj = ref.objective(layers, activation, X, y, l2=L2)
    assert isinstance(obj, float)
    assert obj == pytest.approx(expected.mean() + 0.5 * L2 * theta @ theta, rel=1e-13)


def test_losses_finite_for_extreme_logits():
    layers = [(np.array([[1.0], [-1.0]]) * 1e4, np.zeros(2))]
    X = np.array([[1.0], [-1.0]])
    loss = ref.losses(layers, "relu", X, np.array([1, 1]))
    np.testing.assert_allclose(loss, [2e4, 0.0], atol=1e-12)


# --------------------------------------------------------------------------------------------
# Gradients and Jacobians
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES, ids=CASE_IDS)
def test_gradient_matches_finite_differences(hidden, d, activation, k):
    layers, X, y = make_problem(hidden, d, k)
    theta = ref.flatten(layers)
    grad = ref.gradient(layers, activation, X, y, l2=L2)
    assert grad.shape == theta.shape
    fd = fd_gradient(
        lambda t: ref.objective(with_theta(layers, t), activation, X, y, l2=L2), theta, 1e-6
    )
    assert rel_err(grad, fd) < 1e-6
    last = ref.gradient(layers, activation, X, y, l2=L2, params="last")
    np.testing.assert_array_equal(last, grad[ref.last_layer_slice(ref.layer_sizes(layers))])


@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES, ids=CASE_IDS)
def test_per_sample_gradients(hidden, d, activation, k):
    layers, X, y = make_problem(hidden, d, k)
    theta = ref.flatten(layers)
    G = ref.per_sample_gradients(layers, activation, X, y)
    assert G.shape == (len(X), theta.size)
    grad = ref.gradient(layers, activation, X, y, l2=L2)
    assert rel_err(G.mean(axis=0) + L2 * theta, grad) < 1e-12
    for i in (0, 7, len(X) - 1):  # row i is the gradient of ℓ_i alone, no l2 term
        single = ref.gradient(layers, activation, X[i : i + 1], y[i : i + 1], l2=0.0)
        np.testing.assert_allclose(G[i], single, rtol=1e-12, atol=1e-15)
    G_last = ref.per_sample_gradients(layers, activation, X, y, params="last")
    np.testing.assert_array_equal(G_last, G[:, ref.last_layer_slice(ref.layer_sizes(layers))])


@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES, ids=CASE_IDS)
def test_output_jacobians_match_finite_differences(hidden, d, activation, k):
    layers, X, _ = make_problem(hidden, d, k, n=12)
    theta = ref.flatten(layers)
    J = ref.output_jacobians(layers, activation, X)
    assert J.shape == (len(X), k, theta.size)
    fd = fd_gradient(lambda t: ref.forward(with_theta(layers, t), activation, X), theta, 1e-6)
    assert rel_err(J, fd) < 1e-7


def test_relu_derivative_at_zero_is_zero():
    # First layer all zero: every hidden pre-activation is exactly 0, so ReLU'(0) = 0 kills
    # every gradient and curvature entry of the first layer.
    layers, X, y = make_problem((4,), 3, 3)
    layers[0] = (np.zeros((4, 3)), np.zeros(4))
    n_first = 4 * 3 + 4
    grad = ref.gradient(layers, "relu", X, y)
    np.testing.assert_array_equal(grad[:n_first], 0.0)
    np.testing.assert_array_equal(ref.per_sample_gradients(layers, "relu", X, y)[:, :n_first], 0)
    np.testing.assert_array_equal(ref.output_jacobians(layers, "relu", X)[:, :, :n_first], 0.0)
    H = ref.hessian(layers, "relu", X, y)
    np.testing.assert_array_equal(H[:n_first], 0.0)


# --------------------------------------------------------------------------------------------
# Curvature
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", ["all", "last"])
@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES, ids=CASE_IDS)
def test_hvp_matches_finite_differences_of_gradient(hidden, d, activation, k, params):
    layers, X, y = make_problem(hidden, d, k)
    sizes = ref.layer_sizes(layers)
    theta = ref.flatten(layers)
    sl = slice(None) if params == "all" else ref.last_layer_slice(sizes)
    rng = np.random.default_rng(1)
    for _ in range(3):
        v = rng.normal(size=theta[sl].size)
        Hv = ref.hvp(layers, activation, X, y, v, l2=L2, params=params)
        assert Hv.shape == v.shape

        def grad_along(t: float, v=v) -> np.ndarray:
            moved = theta.copy()
            moved[sl] += t * v
            return ref.gradient(with_theta(layers, moved), activation, X, y, l2=L2, params=params)

        eps = 1e-5
        fd = (grad_along(eps) - grad_along(-eps)) / (2 * eps)
        assert rel_err(Hv, fd) < 1e-5


@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES, ids=CASE_IDS)
def test_hessian_properties(hidden, d, activation, k):
    layers, X, y = make_problem(hidden, d, k)
    sizes = ref.layer_sizes(layers)
    p = ref.num_params(sizes)
    sl = ref.last_layer_slice(sizes)
    H = ref.hessian(layers, activation, X, y, l2=L2)
    assert H.shape == (p, p)
    # symmetric by itself (nothing is symmetrised)
    assert np.abs(H - H.T).max() <= 1e-12 * np.abs(H).max()
    # H v == hvp
    v = np.random.default_rng(2).normal(size=p)
    assert rel_err(H @ v, ref.hvp(layers, activation, X, y, v, l2=L2)) < 1e-10
    # last-layer Hessian == block of the full one
    H_last = ref.hessian(layers, activation, X, y, l2=L2, params="last")
    np.testing.assert_allclose(H_last, H[sl, sl], rtol=1e-12, atol=1e-14 * np.abs(H).max())
    # l2 enters as l2 * I
    H0 = ref.hessian(layers, activation, X, y, l2=0.0)
    np.testing.assert_allclose(H - H0, L2 * np.eye(p), atol=1e-14)


@pytest.mark.parametrize("params", ["all", "last"])
@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES, ids=CASE_IDS)
def test_ggn_from_jacobians_matches_ggn_hvp_and_is_psd(hidden, d, activation, k, params):
    layers, X, y = make_problem(hidden, d, k)
    G = ref.hessian(layers, activation, X, y, l2=0.0, curvature="ggn", params=params)
    m = G.shape[0]
    columns = np.stack(
        [
            ref.hvp(layers, activation, X, y, e, l2=0.0, curvature="ggn", params=params)
            for e in np.eye(m)
        ],
        axis=1,
    )
    assert np.abs(G - columns).max() <= 1e-12 * np.abs(G).max()
    assert np.abs(G - G.T).max() <= 1e-13 * np.abs(G).max()
    eig = np.linalg.eigvalsh(G)
    assert eig.min() >= -1e-10 * eig.max()
    G_l2 = ref.hessian(layers, activation, X, y, l2=L2, curvature="ggn", params=params)
    np.testing.assert_allclose(G_l2 - G, L2 * np.eye(m), atol=1e-14)


def test_ggn_from_jacobians_explicit_formula():
    layers, X, y = make_problem((5,), 4, 3, n=10)
    J = ref.output_jacobians(layers, "tanh", X)
    P = ref.softmax(ref.forward(layers, "tanh", X))
    expected = sum(Ji.T @ (np.diag(pi) - np.outer(pi, pi)) @ Ji for Ji, pi in zip(J, P)) / len(X)
    G = ref.hessian(layers, "tanh", X, y, curvature="ggn")
    np.testing.assert_allclose(G, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES, ids=CASE_IDS)
def test_exact_hessian_vs_ggn(hidden, d, activation, k):
    layers, X, y = make_problem(hidden, d, k)
    H = ref.hessian(layers, activation, X, y, l2=L2)
    G = ref.hessian(layers, activation, X, y, l2=L2, curvature="ggn")
    if hidden:
        # the residual / cross-layer terms are there (for ReLU: δ_l (dA_{l-1})ᵀ and dW_lᵀ δ_l)
        assert rel_err(H, G) > 1e-2
    else:
        # logits linear in θ: the exact Hessian is the GGN
        assert np.abs(H - G).max() <= 1e-13 * np.abs(H).max()
    # the last layer enters the logits linearly, so its block is always Gauss-Newton
    H_last = ref.hessian(layers, activation, X, y, l2=L2, params="last")
    G_last = ref.hessian(layers, activation, X, y, l2=L2, curvature="ggn", params="last")
    assert np.abs(H_last - G_last).max() <= 1e-13 * np.abs(H_last).max()


def test_relu_hessian_has_cross_layer_terms_in_first_layer_weights():
    # For ReLU, σ'' = 0, yet the exact Hessian differs from the GGN in the block coupling
    # W_1 and W_2 (through δ_2 (dA_1)ᵀ) — the term a Gauss-Newton-only implementation misses.
    layers, X, y = make_problem((5,), 4, 3)
    H = ref.hessian(layers, "relu", X, y)
    G = ref.hessian(layers, "relu", X, y, curvature="ggn")
    n1 = 5 * 4 + 5
    np.testing.assert_allclose(H[:n1, :n1], G[:n1, :n1], rtol=1e-10, atol=1e-14)
    assert rel_err(H[:n1, n1:], G[:n1, n1:]) > 1e-2


# --------------------------------------------------------------------------------------------
# Influence and unlearning
# --------------------------------------------------------------------------------------------

UNLEARN_CASES = [
    ((), 4, "relu", 3),
    ((5,), 4, "relu", 2),
    ((5,), 3, "tanh", 3),
    ((4, 3), 3, "sigmoid", 5),
]
SETTINGS = [
    ("hessian", "all"),
    ("hessian", "last"),
    ("ggn", "all"),
    ("ggn", "last"),
]


@pytest.mark.parametrize(("curvature", "params"), SETTINGS)
@pytest.mark.parametrize(("hidden", "d", "activation", "k"), UNLEARN_CASES)
def test_self_influence_direct(hidden, d, activation, k, curvature, params):
    layers, X, y = make_problem(hidden, d, k, n=20)
    damping = 0.05
    s = ref.self_influence(
        layers, activation, X, y, l2=L2, damping=damping, curvature=curvature, params=params
    )
    assert s.shape == (len(X),)
    H = ref.hessian(layers, activation, X, y, l2=L2, curvature=curvature, params=params)
    H_inv = np.linalg.inv(H + damping * np.eye(len(H)))
    expected = []
    for i in range(len(X)):
        g = ref.gradient(layers, activation, X[i : i + 1], y[i : i + 1], params=params)
        expected.append(g @ H_inv @ g)
    np.testing.assert_allclose(s, expected, rtol=1e-9)
    if curvature == "ggn":
        assert np.all(s > 0)  # GGN + l2 I + δ I is positive definite


@pytest.mark.parametrize(("curvature", "params"), SETTINGS)
@pytest.mark.parametrize(("hidden", "d", "activation", "k"), UNLEARN_CASES)
def test_influence_update_direct(hidden, d, activation, k, curvature, params):
    layers, X, y = make_problem(hidden, d, k, n=20)
    n = len(X)
    damping = 0.05
    options = {"l2": L2, "damping": damping, "curvature": curvature, "params": params}
    forget = np.array([2, 5, 11])
    theta = ref.flatten(layers)
    new = ref.influence_update(layers, activation, X, y, forget, **options)
    assert new.shape == theta.shape
    sl = slice(None) if params == "all" else ref.last_layer_slice(ref.layer_sizes(layers))
    H = ref.hessian(layers, activation, X, y, l2=L2, curvature=curvature, params=params)
    g_forget = sum(
        ref.gradient(layers, activation, X[i : i + 1], y[i : i + 1], params=params) for i in forget
    )
    expected = theta.copy()
    expected[sl] += np.linalg.inv(H + damping * np.eye(len(H))) @ g_forget / n
    np.testing.assert_allclose(new, expected, rtol=1e-9, atol=1e-13)
    if params == "last":
        np.testing.assert_array_equal(new[: sl.start], theta[: sl.start])
    mask = np.zeros(n, dtype=bool)
    mask[forget] = True
    same = ref.influence_update(layers, activation, X, y, mask, **options)
    np.testing.assert_array_equal(same, new)


@pytest.mark.parametrize(("curvature", "params"), SETTINGS)
@pytest.mark.parametrize(("hidden", "d", "activation", "k"), UNLEARN_CASES)
def test_newton_update_direct(hidden, d, activation, k, curvature, params):
    layers, X, y = make_problem(hidden, d, k, n=20)
    damping = 0.05
    options = {"l2": L2, "damping": damping, "curvature": curvature, "params": params}
    forget = np.array([0, 3, 4, 17])
    theta = ref.flatten(layers)
    new = ref.newton_update(layers, activation, X, y, forget, **options)
    sl = slice(None) if params == "all" else ref.last_layer_slice(ref.layer_sizes(layers))
    keep = np.setdiff1d(np.arange(len(X)), forget)
    H_R = ref.hessian(
        layers, activation, X[keep], y[keep], l2=L2, curvature=curvature, params=params
    )
    per_sample = [
        ref.gradient(layers, activation, X[i : i + 1], y[i : i + 1], params=params) for i in keep
    ]
    grad_R = np.mean(per_sample, axis=0) + L2 * theta[sl]
    expected = theta.copy()
    expected[sl] -= np.linalg.solve(H_R + damping * np.eye(len(H_R)), grad_R)
    np.testing.assert_allclose(new, expected, rtol=1e-9, atol=1e-13)
    if params == "last":
        np.testing.assert_array_equal(new[: sl.start], theta[: sl.start])


def _fit_logistic_regression(X, y, k, l2, steps=30):
    """Minimise the (strictly convex) objective of a zero-hidden-layer model by Newton steps."""
    layers = [(np.zeros((k, X.shape[1])), np.zeros(k))]
    for _ in range(steps):
        theta = ref.flatten(layers)
        step = np.linalg.solve(
            ref.hessian(layers, "relu", X, y, l2=l2), ref.gradient(layers, "relu", X, y, l2=l2)
        )
        layers = with_theta(layers, theta - step)
    return layers


@pytest.mark.parametrize("k", [2, 3])
def test_newton_update_reaches_retained_optimum_for_logistic_regression(k):
    rng = np.random.default_rng(5)
    n, d, l2 = 40, 3, 0.05
    X = rng.normal(size=(n, d))
    y = (X @ rng.normal(size=(d, k)) + rng.normal(size=(n, k))).argmax(axis=1)
    layers = _fit_logistic_regression(X, y, k, l2)
    assert np.linalg.norm(ref.gradient(layers, "relu", X, y, l2=l2)) < 1e-12
    forget = np.array([1, 6, 9, 20, 33])
    keep = np.setdiff1d(np.arange(n), forget)
    before = np.linalg.norm(ref.gradient(layers, "relu", X[keep], y[keep], l2=l2))
    new = ref.newton_update(layers, "relu", X, y, forget, l2=l2)
    after = np.linalg.norm(ref.gradient(with_theta(layers, new), "relu", X[keep], y[keep], l2=l2))
    assert before > 1e-3
    assert after < 0.1 * before
    # a second step converges quadratically
    again = ref.newton_update(with_theta(layers, new), "relu", X, y, forget, l2=l2)
    after2 = np.linalg.norm(
        ref.gradient(with_theta(layers, again), "relu", X[keep], y[keep], l2=l2)
    )
    assert after2 < 10 * after**2
    # and it is close to retraining on R
    retrained = ref.flatten(_fit_logistic_regression(X[keep], y[keep], k, l2))
    theta = ref.flatten(layers)
    assert np.linalg.norm(new - retrained) < 0.1 * np.linalg.norm(theta - retrained)


def test_influence_update_approximates_upweighting_optimum():
    # Koh & Liang: θ̂ + (1/n) H⁻¹ Σ_F ∇ℓ is the first-order estimate of the minimiser of
    # (1/n) Σ_{i∈R} ℓ_i + (λ/2)‖θ‖² (samples in F up-weighted by -1/n), here exactly computable.
    rng = np.random.default_rng(6)
    n, d, k, l2 = 40, 3, 3, 0.05
    X = rng.normal(size=(n, d))
    y = (X @ rng.normal(size=(d, k)) + rng.normal(size=(n, k))).argmax(axis=1)
    layers = _fit_logistic_regression(X, y, k, l2)
    forget = np.array([4])
    keep = np.setdiff1d(np.arange(n), forget)
    # minimiser of (|R|/n) L_R-loss + λ/2 ‖θ‖² == minimiser of mean-over-R loss + (λ n/|R|)/2 ‖θ‖²
    target = ref.flatten(_fit_logistic_regression(X[keep], y[keep], k, l2 * n / len(keep)))
    theta = ref.flatten(layers)
    new = ref.influence_update(layers, "relu", X, y, forget, l2=l2)
    assert np.linalg.norm(new - target) < 0.05 * np.linalg.norm(theta - target)


# --------------------------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "d", "activation", "k"), CASES[::5])
def test_sgd_full_batch_no_momentum_is_gradient_step(hidden, d, activation, k):
    layers, X, y = make_problem(hidden, d, k)
    n = len(X)
    order = np.random.default_rng(3).permutation(n)
    new, vel = ref.sgd_epoch(
        layers,
        activation,
        X,
        y,
        lr=0.1,
        momentum=0.0,
        batch_size=n,
        l2=L2,
        velocity=None,
        order=order,
    )
    grad = ref.gradient(layers, activation, X, y, l2=L2)
    np.testing.assert_allclose(ref.flatten(new), ref.flatten(layers) - 0.1 * grad, rtol=1e-13)
    np.testing.assert_allclose(vel, grad, rtol=1e-13)
    assert ref.layer_sizes(new) == ref.layer_sizes(layers)


def test_sgd_momentum_minibatches_and_partial_last_batch():
    layers, X, y = make_problem((4,), 3, 3, n=10)
    order = np.array([3, 9, 0, 1, 8, 2, 5, 7, 4, 6])
    lr, mom = 0.05, 0.9
    velocity = np.random.default_rng(4).normal(size=ref.flatten(layers).size)
    new, vel = ref.sgd_epoch(
        layers,
        "tanh",
        X,
        y,
        lr=lr,
        momentum=mom,
        batch_size=4,
        l2=L2,
        velocity=velocity.copy(),
        order=order,
    )
    theta, buf = ref.flatten(layers), velocity.copy()
    for batch in (order[0:4], order[4:8], order[8:10]):
        g = ref.gradient(with_theta(layers, theta), "tanh", X[batch], y[batch], l2=L2)
        buf = mom * buf + g
        theta = theta - lr * buf
    np.testing.assert_allclose(ref.flatten(new), theta, rtol=1e-13)
    np.testing.assert_allclose(vel, buf, rtol=1e-13)
    # None is a zero buffer
    a, va = ref.sgd_epoch(layers, "tanh", X, y, lr, mom, 4, L2, None, order)
    b, vb = ref.sgd_epoch(layers, "tanh", X, y, lr, mom, 4, L2, np.zeros_like(velocity), order)
    np.testing.assert_array_equal(ref.flatten(a), ref.flatten(b))
    np.testing.assert_array_equal(va, vb)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_sgd_decreases_loss_on_separable_data(activation):
    rng = np.random.default_rng(7)
    n = 40
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    layers, _, _ = make_problem((8,), 2, 2, seed=8)
    velocity = None
    history = [ref.objective(layers, activation, X, y, l2=1e-4)]
    for _ in range(5):
        order = rng.permutation(n)
        layers, velocity = ref.sgd_epoch(
            layers,
            activation,
            X,
            y,
            lr=0.1,
            momentum=0.9,
            batch_size=8,
            l2=1e-4,
            velocity=velocity,
            order=order,
        )
        history.append(ref.objective(layers, activation, X, y, l2=1e-4))
    assert history[-1] < 0.5 * history[0]
    assert np.mean(ref.forward(layers, activation, X).argmax(axis=1) == y) >= 0.9


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_unknown_strings_raise_value_error():
    layers, X, y = make_problem((3,), 2, 2, n=5)
    v = np.ones(ref.flatten(layers).size)
    with pytest.raises(ValueError, match="activation"):
        ref.forward(layers, "gelu", X)
    with pytest.raises(ValueError, match="activation"):
        ref.gradient(layers, "softplus", X, y)
    with pytest.raises(ValueError, match="params"):
        ref.gradient(layers, "relu", X, y, params="first")
    with pytest.raises(ValueError, match="params"):
        ref.per_sample_gradients(layers, "relu", X, y, params="none")
    with pytest.raises(ValueError, match="curvature"):
        ref.hvp(layers, "relu", X, y, v, curvature="fisher")
    with pytest.raises(ValueError, match="params"):
        ref.hvp(layers, "relu", X, y, v, params="middle")
    with pytest.raises(ValueError, match="curvature"):
        ref.hessian(layers, "relu", X, y, curvature="kfac")
    with pytest.raises(ValueError, match="params"):
        ref.hessian(layers, "relu", X, y, params="")
    with pytest.raises(ValueError, match="curvature"):
        ref.self_influence(layers, "relu", X, y, curvature="bfgs")
    with pytest.raises(ValueError, match="params"):
        ref.influence_update(layers, "relu", X, y, [0], params="lsat")
    with pytest.raises(ValueError, match="curvature"):
        ref.newton_update(layers, "relu", X, y, [0], curvature="GGN")
