"""Shared fixtures: small random problems for comparing the C++ core with mlu.reference."""

from __future__ import annotations

import numpy as np
import pytest

import mlu


def make_problem(hidden, activation, k, n=40, d=5, seed=0, l2=0.01, scale=1.0):
    """A model with random (non-saturated) weights and random data: (model, X, y)."""
    rng = np.random.default_rng(seed)
    sizes = (d, *hidden, k)
    layers = [
        (rng.normal(0, scale / np.sqrt(i), size=(o, i)), rng.normal(0, 0.3, size=o))
        for i, o in zip(sizes[:-1], sizes[1:])
    ]
    model = mlu.MLP.from_layers(layers, activation=activation, l2=l2)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)  # every class present
    return model, X, y


@pytest.fixture
def digits01():
    return mlu.datasets.load("digits", classes=(0, 1))


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one core thread (tiny models: threads only add overhead)."""
    before = mlu.get_num_threads()
    mlu.set_num_threads(1)
    yield
    mlu.set_num_threads(before)
