"""The C++ core against the NumPy reference (mlu.reference) and against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem
from hypothesis import given, settings
from hypothesis import strategies as st

import mlu
from mlu import _core
from mlu import reference as ref

CASES = [
    ((), "relu", 2),
    ((), "tanh", 4),
    ((7,), "relu", 2),
    ((7,), "relu", 3),
    ((6,), "tanh", 2),
    ((6,), "sigmoid", 5),
    ((6, 4), "relu", 2),
    ((5, 4), "tanh", 3),
    ((4, 3, 3), "sigmoid", 2),
    ((6,), "identity", 3),
    # A different activation per hidden layer (each kernel must use the layer's own).
    ((5, 4), "tanh,relu", 3),
    ((5, 4), "relu,sigmoid", 2),
    ((4, 3, 3), "sigmoid,identity,tanh", 3),
    ((5, 4), ("identity", "tanh"), 2),
]


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("hidden,act,k", CASES)
def test_forward_losses_gradients_match_reference(hidden, act, k):
    model, X, y = make_problem(hidden, act, k)
    L = model.layers
    assert rel(model.logits(X), ref.forward(L, act, X)) < 1e-12
    assert rel(model.predict_proba(X), ref.softmax(ref.forward(L, act, X))) < 1e-12
    assert rel(model.losses(X, y), ref.losses(L, act, X, y)) < 1e-12
    assert rel(model.gradient(X, y), ref.gradient(L, act, X, y, l2=model.l2)) < 1e-12
    assert rel(model.gradients(X, y), ref.per_sample_gradients(L, act, X, y)) < 1e-12
    for params in ("all", "last"):
        assert (
            rel(
                model.gradient(X, y, params=params),
                ref.gradient(L, act, X, y, l2=model.l2, params=params),
            )
            < 1e-12
        )
        assert (
            rel(
                model.gradients(X, y, params=params),
                ref.per_sample_gradients(L, act, X, y, params=params),
            )
            < 1e-12
        )


@pytest.mark.parametrize("hidden,act,k", CASES)
@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
@pytest.mark.parametrize("params", ["all", "last"])
def test_hvp_and_hessian_match_reference(hidden, act, k, curvature, params):
    model, X, y = make_problem(hidden, act, k, seed=1)
    L = model.layers
    H = model.hessian(X, y, params=params, curvature=curvature)
    H_ref = ref.hessian(L, act, X, y, l2=model.l2, curvature=curvature, params=params)
    assert H.shape == H_ref.shape
    assert rel(H, H_ref) < 1e-10
    assert np.array_equal(H, H.T)
    v = np.random.default_rng(2).normal(size=H.shape[0])
    Hv = model.hvp(X, y, v, params=params, curvature=curvature)
    assert (
        rel(Hv, ref.hvp(L, act, X, y, v, l2=model.l2, curvature=curvature, params=params)) < 1e-10
    )
    assert rel(Hv, H @ v) < 1e-10


@pytest.mark.parametrize("hidden,act,k", CASES)
def test_gradient_and_hvp_against_finite_differences(hidden, act, k):
    model, X, y = make_problem(hidden, act, k, seed=3)
    theta = model.params
    rng = np.random.default_rng(4)
    u = rng.normal(size=theta.size)
    eps = 1e-5

    def at(t):
        m = mlu.MLP.from_layers(model.layers, activation=act, l2=model.l2)
        m.params = t
        return m

    # Directional derivative of the objective vs the gradient.
    fd = (at(theta + eps * u).objective(X, y) - at(theta - eps * u).objective(X, y)) / (2 * eps)
    assert abs(fd - model.gradient(X, y) @ u) < 1e-7 * max(1.0, abs(fd))
    # Directional derivative of the gradient vs the exact Hessian-vector product.
    fd_g = (at(theta + eps * u).gradient(X, y) - at(theta - eps * u).gradient(X, y)) / (2 * eps)
    assert rel(model.hvp(X, y, u), fd_g) < 1e-6


def test_relu_exact_hessian_has_cross_layer_terms():
    model, X, y = make_problem((8,), "relu", 2, n=60)
    H = model.hessian(X, y)
    G = model.hessian(X, y, curvature="ggn")
    # The W2 x W1 block differs (residual terms), the first-layer block does not (ReLU'' = 0).
    d, h = 5, 8
    w1 = slice(0, d * h)
    w2 = slice(d * h + h, d * h + h + 2 * h)
    assert np.abs(H[w2, w1] - G[w2, w1]).max() > 1e-3
    assert rel(H[w1, w1], G[w1, w1]) < 1e-12


@pytest.mark.parametrize("hidden,act,k", CASES)
def test_ggn_is_psd_and_last_block_matches(hidden, act, k):
    model, X, y = make_problem(hidden, act, k, seed=5, l2=0.0)
    G = model.hessian(X, y, curvature="ggn")
    w = np.linalg.eigvalsh(G)
    assert w.min() >= -1e-10 * max(w.max(), 1.0)
    H = model.hessian(X, y)
    last = model.last_layer_slice()
    assert rel(model.hessian(X, y, params="last"), H[last, last]) < 1e-10


@settings(max_examples=25, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple),
    acts=st.lists(st.sampled_from(["relu", "tanh", "sigmoid", "identity"]), min_size=3, max_size=3),
    k=st.integers(2, 5),
    n=st.integers(1, 30),
    d=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_property_core_equals_reference(hidden, acts, k, n, d, seed):
    act = ",".join(acts[: len(hidden)]) or acts[0]  # one activation per hidden layer
    model, X, y = make_problem(hidden, act, k, n=max(n, k), d=d, seed=seed)
    L = model.layers
    v = np.random.default_rng(seed).normal(size=model.n_params)
    assert rel(model.losses(X, y), ref.losses(L, act, X, y)) < 1e-10
    assert rel(model.gradients(X, y), ref.per_sample_gradients(L, act, X, y)) < 1e-10
    assert rel(model.hvp(X, y, v), ref.hvp(L, act, X, y, v, l2=model.l2)) < 1e-10
    assert rel(model.hessian(X, y), ref.hessian(L, act, X, y, l2=model.l2)) < 1e-10


def test_large_chunked_problem_matches_reference():
    # More samples than one core block (1024), so chunking and the threaded reductions run.
    model, X, y = make_problem((9,), "tanh", 3, n=2600, d=7, seed=6)
    L = model.layers
    assert rel(model.gradient(X, y), ref.gradient(L, "tanh", X, y, l2=model.l2)) < 1e-11
    assert rel(model.hessian(X, y), ref.hessian(L, "tanh", X, y, l2=model.l2)) < 1e-10
    v = np.ones(model.n_params)
    assert (
        rel(
            model.hvp(X, y, v, curvature="ggn"),
            ref.hvp(L, "tanh", X, y, v, l2=model.l2, curvature="ggn"),
        )
        < 1e-11
    )


# ---------------------------------------------------------------- solvers


def spd_problem():
    model, X, y = make_problem((6,), "tanh", 3, n=80, seed=7, l2=0.05)
    return model, X, y, model.hessian(X, y, curvature="ggn")


def test_cholesky_solves_the_system():
    model, X, y, H = spd_problem()
    b = np.random.default_rng(0).normal(size=(H.shape[0], 3))
    L = _core.cholesky(H, 0.1)
    assert np.allclose(L, np.tril(L))
    x = _core.cholesky_solve(L, b)
    assert rel((H + 0.1 * np.eye(len(H))) @ x, b) < 1e-10


def test_cholesky_reports_indefinite_matrix():
    H = np.diag([1.0, -0.5, 2.0])
    with pytest.raises(mlu.NotPositiveDefiniteError, match="not positive definite.*damping"):
        _core.cholesky(H, 0.0)
    with pytest.raises(np.linalg.LinAlgError):
        _core.cholesky(H, 0.1)
    assert np.allclose(_core.cholesky(H, 1.0), np.sqrt(np.diag([2.0, 0.5, 3.0])))


def test_eigh_pseudo_inverse_drops_small_eigenvalues():
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    w_true = np.array([1e-14, 1e-3, 0.5, 1.0, 2.0, 3.0])
    H = (Q * w_true) @ Q.T
    w, U = _core.eigh(H)
    assert rel(w, w_true) < 1e-12
    b = rng.normal(size=(6, 1))
    x, dropped = _core.eig_pinv_solve(w, U, b, 0.0, 1e-10)
    assert dropped == 1
    assert rel(x, np.linalg.pinv(H, rcond=1e-10) @ b) < 1e-8


def test_cg_meets_its_tolerance_and_reports_iterations():
    model, X, y, H = spd_problem()
    b = np.random.default_rng(2).normal(size=H.shape[0])
    op = model.hessian_operator(X, y, curvature="ggn")
    for tol in (1e-4, 1e-8):
        out = op.cg(b, damping=0.01, tol=tol)
        assert out["converged"] and not out["negative_curvature"]
        assert 1 <= out["iterations"] <= 10 * len(b)
        true_res = np.linalg.norm((H + 0.01 * np.eye(len(b))) @ out["x"] - b) / np.linalg.norm(b)
        assert true_res <= 1.01 * tol
        assert abs(true_res - out["relative_residual"]) < 1e-12 + 1e-6 * true_res


def test_cg_flags_negative_curvature():
    model, X, y = make_problem((8,), "relu", 2, n=60, l2=0.0)
    H = model.hessian(X, y)
    w, U = np.linalg.eigh(H)
    assert w.min() < 0  # random weights: the exact Hessian is indefinite
    out = model.hessian_operator(X, y).cg(U[:, 0], damping=0.0, tol=1e-10)
    assert out["negative_curvature"] and not out["converged"]


def test_cg_on_a_python_operator_is_the_core_operators_loop():
    # One CG loop (cpp/solvers.hpp): on the core's operator and on a Python callable it runs
    # the same iteration, so the same iterates, iterations and residuals, bit for bit.
    model, X, y, H = spd_problem()
    b = np.random.default_rng(2).normal(size=H.shape[0])
    op = model.hessian_operator(X, y, curvature="ggn")
    for tol, true_residual in ((1e-4, True), (1e-9, False)):
        core = op.cg(b, damping=0.01, tol=tol, true_residual=true_residual)
        mine = _core.cg(op.matvec, b, 0.01, tol, 10 * len(b), true_residual)
        assert not mine.pop("stopped")
        assert set(mine) == set(core)
        assert np.array_equal(mine["x"], core["x"])
        assert {k: mine[k] for k in mine if k != "x"} == {k: core[k] for k in core if k != "x"}


def test_preconditioned_cg_from_a_start_solves_and_stops_when_asked():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(40, 40))
    A = A @ A.T + np.diag(np.geomspace(1e-2, 1e2, 40))  # ill-conditioned
    b, x0 = rng.normal(size=40), rng.normal(size=40)
    exact = np.linalg.solve(A + 0.1 * np.eye(40), b)
    plain = _core.cg(lambda v: A @ v, b, 0.1, 1e-12, 400, x0=x0)
    jacobi = 1.0 / (np.diag(A) + 0.1)
    pre = _core.cg(lambda v: A @ v, b, 0.1, 1e-12, 400, x0=x0, precondition=lambda r: jacobi * r)
    for out in (plain, pre):
        assert out["converged"] and rel(out["x"], exact) < 1e-9
        true_res = np.linalg.norm((A + 0.1 * np.eye(40)) @ out["x"] - b) / np.linalg.norm(b)
        assert abs(out["relative_residual"] - true_res) < 1e-12
    assert pre["iterations"] < plain["iterations"]  # the preconditioner is used
    # an exact preconditioner: one product; maxiter 0 returns the start; stop() every 3
    inverse = np.linalg.inv(A + 0.1 * np.eye(40))
    one = _core.cg(lambda v: A @ v, b, 0.1, 1e-10, 400, precondition=lambda r: inverse @ r)
    assert one["iterations"] == 1 and rel(one["x"], exact) < 1e-9
    start = _core.cg(lambda v: A @ v, b, 0.1, 1e-12, 0, x0=x0)
    assert np.array_equal(start["x"], x0) and start["iterations"] == 0
    seen = []
    early = _core.cg(
        lambda v: A @ v,
        b,
        0.1,
        1e-14,
        400,
        stop_every=3,
        stop=lambda x: seen.append(x) or len(seen) == 2,
    )
    assert early["stopped"] and early["iterations"] == 6 and np.array_equal(early["x"], seen[-1])
    zero = _core.cg(lambda v: A @ v, np.zeros(40), 0.1, 1e-12, 400, x0=x0)
    assert zero["converged"] and not zero["x"].any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"matvec": lambda v: v[:3]}, "matvec must return a 1-D array of 5 floats"),
        ({"matvec": lambda v: "no"}, "matvec must return a 1-D array"),
        ({"precondition": lambda r: np.ones((5, 1))}, "precondition must return"),
        ({"x0": np.ones(4)}, "x0 has 4 entries, expected 5"),
        ({"tol": 0.0}, "tol > 0"),
        ({"stop_every": 2}, "needs a stop callable"),
    ],
)
def test_cg_on_a_python_operator_checks_its_inputs(kwargs, match):
    args = {"matvec": lambda v: 2.0 * v, "b": np.ones(5), "damping": 0.0, "tol": 1e-8,
            "maxiter": 10, **kwargs}  # fmt: skip
    with pytest.raises(ValueError, match=match):
        _core.cg(**args)
    with pytest.raises(ZeroDivisionError):  # the callable's own error comes through
        _core.cg(lambda v: 1 / 0, np.ones(5), 0.0, 1e-8, 10)


# ---------------------------------------------------------------- training


def test_training_lowers_loss_and_is_repeatable(digits01):
    ds = digits01
    m1 = mlu.MLP(hidden=(20,), epochs=5, seed=3).fit(ds.X_train, ds.y_train)
    m2 = mlu.MLP(hidden=(20,), epochs=5, seed=3).fit(ds.X_train, ds.y_train)
    m3 = mlu.MLP(hidden=(20,), epochs=5, seed=4).fit(ds.X_train, ds.y_train)
    assert np.array_equal(m1.params, m2.params)
    assert not np.array_equal(m1.params, m3.params)
    assert m1.loss_curve_[-1] < 0.5 * m1.loss_curve_[0]
    init = mlu.MLP(hidden=(20,), epochs=0, seed=3).fit(ds.X_train, ds.y_train)
    assert m1.objective(ds.X_train, ds.y_train) < 0.2 * init.objective(ds.X_train, ds.y_train)
    assert m1.score(ds.X_test, ds.y_test) > 0.95


@pytest.mark.parametrize(
    "hidden, act", [((6,), "sigmoid"), ((6, 5), "tanh,relu"), ((5, 4, 3), "relu,identity,sigmoid")]
)
def test_sgd_epoch_matches_reference(hidden, act):
    model, X, y = make_problem(hidden, act, 3, n=70, seed=8)
    theta, v = model.params, np.zeros(model.n_params)
    new_theta, new_v, _ = _core.sgd_epoch(
        theta, v, list(model.sizes_), act, X, y, 11, 0.05, 0.9, 16, 0.01
    )
    order = _core.permutation(len(y), 11)
    assert sorted(order.tolist()) == list(range(len(y)))
    ref_layers, ref_v = ref.sgd_epoch(model.layers, act, X, y, 0.05, 0.9, 16, 0.01, v, order)
    assert rel(new_theta, ref.flatten(ref_layers)) < 1e-12
    assert rel(new_v, ref_v) < 1e-12
    assert np.array_equal(theta, model.params)  # input untouched


def test_paper_defaults():
    m = mlu.MLP()
    assert (m.hidden, m.activation, m.epochs, m.lr, m.momentum, m.batch_size) == (
        (50,),
        "relu",
        20,
        0.01,
        0.9,
        32,
    )


def test_trace_records_every_epoch(digits01):
    ds = digits01
    m = mlu.MLP(hidden=(10,), epochs=4, track=True).fit(ds.X_train, ds.y_train)
    assert m.trace_.loss.shape == m.trace_.margin.shape == (4, len(ds.y_train))
    assert rel(m.trace_.loss[-1], m.losses(ds.X_train, ds.y_train)) < 1e-12
    assert rel(m.trace_.margin[-1], m.margins(ds.X_train, ds.y_train)) < 1e-12


def test_warm_start_continues_training(digits01):
    ds = digits01
    m = mlu.MLP(hidden=(10,), epochs=2, seed=0).fit(ds.X_train, ds.y_train)
    before = m.params
    m.set_params(warm_start=True, epochs=1).fit(ds.X_train, ds.y_train)
    cold = mlu.MLP(hidden=(10,), epochs=1, seed=0).fit(ds.X_train, ds.y_train)
    assert not np.array_equal(m.params, before)
    assert np.linalg.norm(m.params - before) < np.linalg.norm(cold.params - before)


def test_layers_and_params_round_trip():
    model, X, y = make_problem((4, 3), "tanh", 3)
    layers = model.layers
    assert [W.shape for W, _ in layers] == [(4, 5), (3, 4), (3, 3)]
    assert np.array_equal(ref.flatten(layers), model.params)
    p = model.params
    p[0] = 123.0  # a copy: the model is unchanged
    assert model.params[0] != 123.0
    model.params = p
    assert model.layers[0][0][0, 0] == 123.0


def test_float32_and_non_contiguous_inputs_are_converted():
    model, X, y = make_problem((5,), "relu", 2, n=30, d=6)
    expected = model.losses(X, y)
    assert rel(model.losses(np.asfortranarray(X), y), expected) < 1e-15
    assert rel(model.losses(X.astype(np.float32), y), expected) < 1e-6
    Xs = np.zeros((30, 12))
    Xs[:, ::2] = X
    assert rel(model.losses(Xs[:, ::2], y), expected) < 1e-15


def test_parameter_count_overflow_is_refused():
    # (in + 1) * out summed over layers must fit in 64 bits: refused, not wrapped around.
    with pytest.raises(OverflowError, match="parameter count overflows"):
        _core.num_params([2**40, 2**40, 2])
    assert _core.num_params([3, 4, 2]) == ref.num_params([3, 4, 2])
