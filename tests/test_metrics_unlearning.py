"""Tests of mlu.metrics.unlearning on hand-made classifiers with known answers, and on a real
unlearning run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mlu
from mlu.metrics import unlearning as um
from mlu.unlearning.baselines import retrain
from mlu.unlearning.sisa import SISA
from mlu.unlearning.unlearn import unlearn


class Fixed:
    """A classifier that returns given probabilities, row i for the sample whose feature is i."""

    def __init__(self, proba, classes=(0, 1), params=None):
        self.P = np.asarray(proba, dtype=float)
        self.classes_ = np.asarray(classes)
        if params is not None:
            self.params = np.asarray(params, dtype=float)

    def predict_proba(self, X):
        return self.P[np.asarray(X)[:, 0].astype(int)]

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def ids(n: int) -> np.ndarray:
    return np.arange(n, dtype=float)[:, None]


P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5 + 1e-9], [0.99, 0.01]])


def test_accuracy_and_per_class():
    model = Fixed(P)
    y = np.array([0, 1, 1, 1, 0, 0])  # predictions: 0 1 0 1 1 0
    assert um.accuracy(model, ids(6), y) == pytest.approx(4 / 6)
    assert um.per_class_accuracy(model, ids(6), y) == {0: pytest.approx(2 / 3), 1: 2 / 3}


def test_sample_losses():
    model = Fixed(P)
    y = np.array([0, 1, 1, 1, 0, 0])
    assert np.allclose(um.sample_losses(model, ids(6), y), -np.log(P[np.arange(6), y]))
    with pytest.raises(ValueError, match="not one of the model's classes"):
        um.sample_losses(model, ids(2), np.array([0, 5]))
    hard = Fixed([[1.0, 0.0]])
    assert np.isfinite(um.sample_losses(hard, ids(1), np.array([1]))).all()


def test_forget_retain_accuracy():
    model = Fixed(P)
    y = np.array([0, 1, 1, 1, 0, 0])  # given (noisy) labels
    y_true = np.array([0, 1, 0, 1, 1, 0])
    out = um.forget_retain_accuracy(model, ids(6), y, [2, 4], y_true=y_true)
    # F = {2, 4}: predicted 0 and 1; given 1 and 0 (both wrong); true 0 and 1 (both right)
    assert out == {
        "forget_acc": 0.0,
        "retain_acc": 1.0,
        "forget_acc_true": 1.0,
        "retain_acc_true": 1.0,
    }
    everything = um.forget_retain_accuracy(model, ids(6), y, np.ones(6, dtype=bool))
    assert set(everything) == {"forget_acc"}


def test_membership_inference_auc_known_values():
    # forget losses all lower than test losses: perfectly recognisable members
    member = Fixed([[0.99, 0.01]] * 3 + [[0.6, 0.4]] * 3)
    Xf, yf, Xt, yt = ids(3), np.zeros(3, int), ids(6)[3:], np.zeros(3, int)
    assert um.membership_inference_auc(member, Xf, yf, Xt, yt) == 1.0
    # identical losses: chance level
    same = Fixed([[0.7, 0.3]] * 6)
    assert um.membership_inference_auc(same, Xf, yf, Xt, yt) == 0.5
    # forget samples now fit worse than unseen data (unlearned mislabeled samples)
    worse = Fixed([[0.2, 0.8]] * 3 + [[0.9, 0.1]] * 3)
    assert um.membership_inference_auc(worse, Xf, yf, Xt, yt) == 0.0


def test_agreement_distance_speedup():
    a = Fixed(P, params=[3.0, 4.0])
    b = Fixed([[1.0, 0.0]] * 6, params=[3.0, 0.0])  # always class 0
    assert um.prediction_agreement(a, a, ids(6)) == 1.0
    assert um.prediction_agreement(a, b, ids(6)) == 0.5  # a predicts 0 on rows 0, 2, 5
    assert um.parameter_distance(a, b) == pytest.approx(4.0 / 3.0)
    assert um.parameter_distance(b, b) == 0.0
    with pytest.raises(TypeError, match="no flat .params"):
        um.parameter_distance(a, Fixed(P))
    with pytest.raises(ValueError, match="parameter counts"):
        um.parameter_distance(a, Fixed(P, params=[1.0]))
    assert um.speedup(0.5, 10.0) == 20.0
    with pytest.raises(ValueError, match="finite"):
        um.speedup(-1.0, 2.0)


def test_evaluate_unlearning_on_a_real_run():
    ds = mlu.datasets.load("digits", classes=(0, 1, 2))
    noisy = mlu.noise.flip_labels(ds.y_train, rate=0.2, seed=0)
    X, y, F = ds.X_train, noisy.labels, noisy.flipped
    model = mlu.MLP(hidden=(8,), epochs=10, seed=0).fit(X, y)
    result = unlearn(model, X, y, F, method="newton", params="last")
    reference = retrain(model, X, y, F)
    row = um.evaluate_unlearning(
        result.model, X, y, F, ds.X_test, ds.y_test, y_true=noisy.true_labels,
        reference=reference.model, unlearn_time=result.time, reference_time=reference.time,
    )  # fmt: skip
    expected = {
        "n_forget", "n_retain", "forget_acc", "retain_acc", "forget_acc_true",
        "retain_acc_true", "test_acc", "test_acc_class_0", "test_acc_class_1",
        "test_acc_class_2", "mia_auc", "agreement", "reference_test_acc", "param_distance",
        "unlearn_time", "reference_time", "speedup",
    }  # fmt: skip
    assert set(row) == expected
    assert all(type(v) is float for v in row.values())
    json.dumps(row, allow_nan=False)
    assert row["n_forget"] == F.sum() and row["n_retain"] == (~F).sum()
    assert row["test_acc"] == um.accuracy(result.model, ds.X_test, ds.y_test)
    # after unlearning, the model disagrees with the flipped labels it was trained on
    assert row["forget_acc"] < 0.2 and row["forget_acc_true"] > 0.8
    assert row["mia_auc"] < 0.5
    minimal = um.evaluate_unlearning(model, X, y, F, ds.X_test, ds.y_test)
    assert "agreement" not in minimal and "speedup" not in minimal and "mia_auc" in minimal
    sisa = SISA(mlu.MLP(hidden=(4,), epochs=3), n_shards=2, n_slices=2).fit(X, y)
    row = um.evaluate_unlearning(sisa, X, y, F, ds.X_test, ds.y_test, reference=model)
    assert "param_distance" not in row and "agreement" in row


def test_bad_input():
    model = Fixed(P)
    with pytest.raises(ValueError, match="2-D"):
        um.accuracy(model, np.zeros(6), np.zeros(6))
    with pytest.raises(ValueError, match="labels for"):
        um.accuracy(model, ids(6), np.zeros(5))
    with pytest.raises(ValueError, match="empty"):
        um.forget_retain_accuracy(model, ids(6), np.zeros(6), [])
    with pytest.raises(ValueError, match="labels for"):
        um.forget_retain_accuracy(model, ids(6), np.zeros(6), [1], y_true=np.zeros(4))
