"""Bad input gets a clear Python exception naming what was wrong, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem

import mlu
from mlu import _core
from mlu.engine import _validation


@pytest.fixture
def problem():
    return make_problem((5,), "relu", 3, n=30, d=4)


def test_wrong_feature_count(problem):
    model, X, y = problem
    with pytest.raises(ValueError, match="has 3 features, the model expects 4"):
        model.losses(X[:, :3], y)


def test_wrong_dimensions(problem):
    model, X, y = problem
    with pytest.raises(ValueError, match="must be 2-D"):
        model.predict(X[0])
    with pytest.raises(ValueError, match="y must be 1-D"):
        model.losses(X, y[:, None])
    with pytest.raises(ValueError, match="29 labels for 30 samples"):
        model.losses(X, y[:-1])


def test_nan_and_inf(problem):
    model, X, y = problem
    X = X.copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(first at index \(3, 2\)\)"):
        model.losses(X, y)
    with pytest.raises(ValueError, match="NaN"):
        mlu.MLP(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="v contains NaN"):
        model.hvp(problem[1], y, np.full(model.n_params, np.nan))


def test_labels_out_of_range(problem):
    model, X, y = problem
    bad = y.copy()
    bad[7] = 3
    with pytest.raises(ValueError, match=r"y\[7\] = 3 is not one of the model's classes"):
        model.losses(X, bad)
    with pytest.raises(ValueError, match="not one of the model's classes"):
        model.gradients(X, y + 0.5)
    # The core checks too, in case it is called directly.
    with pytest.raises(ValueError, match="outside"):
        _core.losses(model.params, list(model.sizes_), "relu", X, bad)


def test_bad_dtypes(problem):
    model, X, y = problem
    with pytest.raises(TypeError, match="must hold numbers"):
        model.predict(np.array([["a"] * 4] * 3))
    with pytest.raises(TypeError, match="must be real"):
        model.predict(X.astype(complex))


def test_empty_data(problem):
    model, X, y = problem
    with pytest.raises(ValueError, match="empty"):
        model.losses(X[:0], y[:0])
    with pytest.raises(ValueError, match="empty"):
        mlu.MLP().fit(np.zeros((0, 4)), np.zeros(0))


def test_single_class_training_is_refused():
    with pytest.raises(ValueError, match="at least two classes"):
        mlu.MLP(epochs=1).fit(np.ones((5, 2)), np.zeros(5))


def test_bad_choices(problem):
    model, X, y = problem
    with pytest.raises(ValueError, match="params must be one of"):
        model.hessian(X, y, params="first")
    with pytest.raises(ValueError, match="curvature must be one of"):
        model.hvp(X, y, np.zeros(model.n_params), curvature="fisher")
    with pytest.raises(ValueError, match="activation must be one of"):
        mlu.MLP(activation="gelu", epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"v must have shape \(43,\)"):
        model.hvp(X, y, np.zeros(5))


def test_bad_hyper_parameters(problem):
    _, X, y = problem
    for kwargs in ({"lr": 0.0}, {"batch_size": 0}, {"momentum": 1.0}, {"l2": -1.0}):
        with pytest.raises(ValueError, match="must be"):
            mlu.MLP(epochs=1, **kwargs).fit(X, y)
    with pytest.raises(ValueError, match="positive"):
        mlu.MLP(hidden=(0,), epochs=1).fit(X, y)


def test_bad_layers():
    with pytest.raises(ValueError, match="inputs, previous layer gives"):
        mlu.MLP.from_layers([(np.zeros((3, 4)), np.zeros(3)), (np.zeros((2, 2)), np.zeros(2))])
    with pytest.raises(ValueError, match="b \\(out,\\)"):
        mlu.MLP.from_layers([(np.zeros((3, 4)), np.zeros(4))])
    with pytest.raises(ValueError, match="k >= 2"):
        mlu.MLP.from_layers([(np.zeros((1, 4)), np.zeros(1))])
    with pytest.raises(ValueError, match="empty"):
        mlu.MLP.from_layers([])


def test_hessian_too_large_is_refused_with_the_size(problem, monkeypatch):
    model, X, y = problem
    monkeypatch.setattr(_validation, "available_memory_bytes", lambda: 10_000)
    with pytest.raises(mlu.HessianTooLargeError, match=r"p = 43 parameters needs .* GiB"):
        model.hessian(X, y)
    assert issubclass(mlu.HessianTooLargeError, MemoryError)


def test_real_size_limit_on_a_big_model():
    # 784-500-10: p = 397510, the Hessian would need ~1.1 TiB.
    model = mlu.MLP.from_layers(
        [(np.zeros((500, 784)), np.zeros(500)), (np.zeros((10, 500)), np.zeros(10))]
    )
    with pytest.raises(mlu.HessianTooLargeError, match="p = 397510"):
        model.hessian(np.zeros((2, 784)), np.array([0, 1]))


def test_unfitted_model_is_reported():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        mlu.MLP().predict(np.zeros((2, 3)))


def test_core_rejects_bad_shapes_directly():
    with pytest.raises(ValueError, match="theta has 3 entries"):
        _core.logits(np.zeros(3), [2, 2], "relu", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="expected \\(n, 2\\)"):
        _core.logits(np.zeros(6), [2, 2], "relu", np.zeros((1, 3)))
    with pytest.raises(ValueError, match="activation must be"):
        _core.logits(np.zeros(6), [2, 2], "elu", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="square"):
        _core.cholesky(np.zeros((2, 3)), 0.0)


def test_inputs_are_not_modified(problem):
    model, X, y = problem
    X0, y0, p0 = X.copy(), y.copy(), model.params
    model.hessian(X, y)
    model.gradients(X, y)
    mlu.MLP(hidden=(3,), epochs=1).fit(X, y)
    assert np.array_equal(X, X0) and np.array_equal(y, y0) and np.array_equal(model.params, p0)
