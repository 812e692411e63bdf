"""Tests of mlu.influence: the (n_test, n_train) influence matrix against a float64 computation
with the full inverse of the reference GGN, blocks that do not change the result, every
representation against its own solve, and self-influence for params="all" through detect."""

from __future__ import annotations

import numpy as np
import pytest

import mlu
from mlu import reference as ref
from mlu.detection.detect import detect, scores_self_influence
from mlu.detection.influence import influence, self_influence

pytestmark = pytest.mark.usefixtures("one_thread")

DAMPING = 0.05


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def problem():
    ds = mlu.datasets.load("digits", classes=(3, 5, 8))
    X, y = ds.X_train[:40, ::4], ds.y_train[:40]
    Xt, yt = ds.X_test[:7, ::4], ds.y_test[:7]
    model = mlu.MLP(hidden=(6,), l2=1e-3, epochs=30, seed=1).fit(X, y)
    return model, X, y, Xt, yt


def full_inverse_influence(model, X, y, Xt, yt, params="all"):
    enc = lambda v: mlu.engine._validation.encode_labels(v, model.classes_)  # noqa: E731
    H = ref.hessian(model.layers, "relu", X, enc(y), l2=model.l2, curvature="ggn", params=params)
    G = ref.per_sample_gradients(model.layers, "relu", X, enc(y), params=params)
    Gt = ref.per_sample_gradients(model.layers, "relu", Xt, enc(yt), params=params)
    return -Gt @ np.linalg.inv(H + DAMPING * np.eye(H.shape[0])) @ G.T


@pytest.mark.parametrize("curvature", ["dense", "woodbury"])
@pytest.mark.parametrize("params", ["all", "last"])
def test_influence_equals_the_full_inverse(problem, curvature, params):
    model, X, y, Xt, yt = problem
    got = influence(model, X, y, Xt, yt, curvature=curvature, damping=DAMPING, params=params)
    assert got.shape == (7, 40)
    assert rel(got, full_inverse_influence(model, X, y, Xt, yt, params)) < 1e-10


def test_blocks_do_not_change_the_result(problem):
    model, X, y, Xt, yt = problem
    whole = influence(model, X, y, Xt, yt, curvature="woodbury", damping=DAMPING)
    tiny = influence(model, X, y, Xt, yt, curvature="woodbury", damping=DAMPING,
                     max_block_bytes=8 * 3 * model.n_params)  # fmt: skip
    assert rel(tiny, whole) < 1e-13


@pytest.mark.parametrize("curvature", ["kfac", "ekfac"])
def test_approximate_representations_use_their_solve(problem, curvature):
    model, X, y, Xt, yt = problem
    got = influence(model, X, y, Xt, yt, curvature=curvature, damping=DAMPING)
    exact = full_inverse_influence(model, X, y, Xt, yt)
    # same definition through another curvature: same sign pattern for the large entries
    big = np.abs(exact) > 0.5 * np.abs(exact).max()
    assert np.all(np.sign(got[big]) == np.sign(exact[big]))
    prob = mlu.unlearning.unlearner.make_problem(
        model, X, mlu.engine._validation.encode_labels(y, model.classes_), "all"
    )[0]
    curv, _ = mlu.engine.curvature.build_curvature(prob, curvature, DAMPING)
    tprob = mlu.unlearning.unlearner.make_problem(
        model, Xt, mlu.engine._validation.encode_labels(yt, model.classes_), "all"
    )[0]
    expected = -tprob.per_sample_gradients() @ curv.solve(prob.per_sample_gradients().T)
    assert rel(got, expected) < 1e-10


def test_self_influence_through_the_representations(problem):
    model, X, y, _, _ = problem
    dense = scores_self_influence(model, X, y, params="all", curvature="ggn", damping=DAMPING)
    for rep in ("dense", "woodbury"):
        got = scores_self_influence(model, X, y, params="all", damping=DAMPING, representation=rep)
        assert rel(got, dense) < 1e-10
    ek = detect(
        model, X, y, "self_influence", params="all", representation="ekfac", damping=DAMPING
    )
    assert ek.shape == (40,) and np.all(ek > 0)
    assert rel(self_influence(model, X, y, curvature="dense", damping=DAMPING), dense) < 1e-10


def test_bad_input(problem):
    model, X, y, Xt, yt = problem
    with pytest.raises(ValueError, match="curvature must be one of"):
        influence(model, X, y, Xt, yt, curvature="hessian")
    with pytest.raises(ValueError, match="damping"):
        influence(model, X, y, Xt, yt, damping=-1.0)
    with pytest.raises(ValueError, match="features"):
        influence(model, X, y, Xt[:, :3], yt)
    with pytest.raises(TypeError, match="fitted mlu.MLP"):
        influence("model", X, y, Xt, yt)
