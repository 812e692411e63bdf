"""The GIL is released in the core's heavy loops: one fitted model used from several Python
threads at once must give bit-identical results to the same calls made one after another."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import mlu

THREADS = 4


@pytest.fixture(scope="module")
def fitted():
    ds = mlu.datasets.load("digits")
    X, y = ds.X_train[:400], ds.y_train[:400]
    model = mlu.MLP(hidden=(16,), epochs=3, seed=0).fit(X, y)
    return model, X, y


def _calls(model: mlu.MLP, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    v = np.linspace(-1.0, 1.0, model.n_params)
    return {
        "predict_proba": model.predict_proba(X),
        "losses": model.losses(X, y),
        "gradients": model.gradients(X[:50], y[:50]),
        "gradient": model.gradient(X, y),
        "hvp": model.hvp(X, y, v),
        "ggn_hvp": model.hvp(X, y, v, curvature="ggn"),
        "hessian_last": model.hessian(X, y, params="last"),
    }


def test_one_model_from_four_threads_is_bit_identical(fitted):
    model, X, y = fitted
    before = model.params.copy()
    expected = _calls(model, X, y)
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda _: _calls(model, X, y), range(2 * THREADS)))
    for got in results:
        for name, value in expected.items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)
    np.testing.assert_array_equal(model.params, before)


def test_training_in_threads_is_bit_identical(fitted):
    _, X, y = fitted

    def train(_: int) -> np.ndarray:
        return mlu.MLP(hidden=(8,), epochs=2, seed=1).fit(X, y).params

    expected = train(0)
    with ThreadPoolExecutor(THREADS) as pool:
        for params in pool.map(train, range(THREADS)):
            np.testing.assert_array_equal(params, expected)


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_serial_blas_limits_blas_inside_and_restores_it():
    from mlu.engine._threads import serial_blas

    before = _blas_threads()
    with serial_blas():
        assert all(n == 1 for n in _blas_threads())
    assert _blas_threads() == before


def test_a_request_restores_blas_threads_even_when_refused(fitted):
    model, X, y = fitted
    before = _blas_threads()
    un = mlu.Unlearner(model, X, y, curvature="kfac")
    un.forget([0, 1, 2])
    assert _blas_threads() == before
    with pytest.raises(ValueError, match="already removed"):
        un.forget([1])
    assert _blas_threads() == before


def test_unlearn_restores_blas_threads(fitted):
    model, X, y = fitted
    before = _blas_threads()
    mlu.unlearn(model, X, y, [0, 1, 2], steps=2)
    assert _blas_threads() == before
