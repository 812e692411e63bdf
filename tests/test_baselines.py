"""Tests of the unlearning baselines: retraining, fine-tuning and guarded gradient ascent."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.base import clone

import mlu
from mlu.unlearning.baselines import finetune, gradient_ascent, retrain
from mlu.unlearning.unlearn import UnlearningResult

# Tiny models: one core thread avoids oversubscribing a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    ds = mlu.datasets.load("digits", classes=(0, 1))
    noisy = mlu.noise.flip_labels(ds.y_train, rate=0.2, seed=0)
    model = mlu.MLP(hidden=(8,), epochs=20, seed=0).fit(ds.X_train, noisy.labels)
    return model, ds.X_train, noisy.labels, noisy.flipped


def test_retrain_is_a_fresh_fit_on_the_retained_set(setup):
    model, X, y, F = setup
    before = model.params
    result = retrain(model, X, y, F)
    expected = clone(model).fit(X[~F], y[~F])
    assert np.array_equal(result.model.params, expected.params)
    assert isinstance(result, UnlearningResult)
    assert result.method == "retrain" and result.iterations == model.epochs
    assert result.n_forget == F.sum() and result.time > 0
    other = retrain(model, X, y, np.flatnonzero(F), epochs=3, seed=5)
    assert np.array_equal(
        other.model.params, clone(model).set_params(epochs=3, seed=5).fit(X[~F], y[~F]).params
    )
    assert other.iterations == 3
    assert np.array_equal(model.params, before)


def test_retrain_keeps_the_class_layout():
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = np.repeat([0, 1, 2], 10)
    model = mlu.MLP(hidden=(3,), epochs=2).fit(X, y)
    result = retrain(model, X, y, np.flatnonzero(y == 2))  # a class disappears from R
    assert result.model.classes_.tolist() == [0, 1, 2]
    assert result.model.params.shape == model.params.shape


def test_finetune_continues_from_the_trained_model(setup):
    model, X, y, F = setup
    before = model.params
    result = finetune(model, X, y, F, epochs=2)
    manual = copy.deepcopy(model).set_params(warm_start=True, epochs=2)
    manual.fit(X[~F], y[~F], classes=model.classes_)
    assert np.array_equal(result.model.params, manual.params)
    assert result.method == "finetune" and result.iterations == 2
    # the returned model keeps the original hyper-parameters
    assert result.model.get_params() == model.get_params()
    slow = finetune(model, X, y, F, epochs=1, lr=1e-6)
    assert np.linalg.norm(slow.model.params - before) < 1e-3 * np.linalg.norm(before)
    assert np.array_equal(model.params, before)


def test_finetune_on_clean_data_helps_a_noisy_model(setup):
    model, X, y, F = setup
    # the flipped samples are the worst fitted; forgetting them lowers the loss on the rest
    result = finetune(model, X, y, F, epochs=3)
    assert result.model.losses(X[~F], y[~F]).mean() < model.losses(X[~F], y[~F]).mean()


def test_gradient_ascent_raises_the_forget_loss_with_guards(setup):
    model, X, y, flipped = setup
    F = np.flatnonzero(~flipped)[:40]  # well-fitted samples, loss far below ln 2
    before = model.params
    loss0 = model.losses(X[F], y[F]).mean()
    result = gradient_ascent(model, X, y, F, epochs=1, lr=0.05)
    assert result.method == "gradient_ascent" and result.iterations >= 1
    assert result.model.losses(X[F], y[F]).mean() > loss0
    assert np.isfinite(result.model.params).all()
    # a huge learning rate is clipped to max_step·‖θ‖ per step and stopped at the loss cap
    wild = gradient_ascent(model, X, y, F, epochs=50, lr=1e6, max_step=0.05)
    # each step is at most 5% of ‖θ‖, so the norm grows at most geometrically
    growth = np.linalg.norm(wild.model.params) / np.linalg.norm(before)
    assert growth <= 1.05**wild.iterations + 1e-12
    assert any("stopped" in n for n in wild.notes) and any("clipped" in n for n in wild.notes)
    assert wild.iterations < 50 * int(np.ceil(F.sum() / model.batch_size))
    assert np.array_equal(model.params, before)


def test_gradient_ascent_stops_at_the_loss_cap(setup):
    model, X, y, F = setup
    # the noisy model never fitted the flipped labels: their loss is above ln 2 already
    assert model.losses(X[F], y[F]).mean() > np.log(2)
    result = gradient_ascent(model, X, y, F, epochs=3)
    assert result.iterations == 0 and "stopped" in result.notes[0]
    assert np.array_equal(result.model.params, model.params)
    low = gradient_ascent(model, X, y, np.flatnonzero(~F)[:10], loss_cap=1e-9)
    assert low.iterations == 0


@pytest.mark.parametrize(
    ("func", "kwargs", "error", "match"),
    [
        (retrain, {"epochs": -1}, ValueError, "epochs"),
        (finetune, {"epochs": 0}, ValueError, "epochs"),
        (finetune, {"lr": -0.1}, ValueError, "lr"),
        (finetune, {"lr": "fast"}, TypeError, "lr"),
        (gradient_ascent, {"epochs": 1.5}, ValueError, "epochs"),
        (gradient_ascent, {"lr": 0.0}, ValueError, "lr"),
        (gradient_ascent, {"max_step": -1.0}, ValueError, "max_step"),
        (gradient_ascent, {"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_options(setup, func, kwargs, error, match):
    model, X, y, F = setup
    with pytest.raises(error, match=match):
        func(model, X, y, F, **kwargs)


@pytest.mark.parametrize("func", [retrain, finetune, gradient_ascent])
def test_bad_input_is_rejected(setup, func):
    model, X, y, F = setup
    with pytest.raises(ValueError, match="empty"):
        func(model, X, y, [])
    with pytest.raises(ValueError, match="all"):
        func(model, X, y, np.ones(len(y), dtype=bool))
    with pytest.raises(ValueError, match="features"):
        func(model, X[:, :3], y, F)
    with pytest.raises(TypeError, match="mlu.MLP"):
        func("model", X, y, F)
