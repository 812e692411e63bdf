"""Tests of SISA training: sharding, slice checkpoints, exact unlearning by partial retraining."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

import mlu
from mlu.unlearning.sisa import SISA, epoch_schedule

# Tiny models: one core thread avoids oversubscribing a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return mlu.datasets.load("digits", classes=(0, 1, 2))


def make(**kwargs) -> SISA:
    params = {"n_shards": 4, "n_slices": 3, "seed": 0, **kwargs}
    return SISA(mlu.MLP(hidden=(8,), epochs=6, seed=0), **params)


@pytest.fixture
def fitted(data):
    return make().fit(data.X_train, data.y_train)


def fresh_without(sisa: SISA, X, y) -> SISA:
    """An ensemble trained from scratch without the removed samples, same assignment."""
    keep = ~sisa.removed_
    return make().fit(
        X[keep], y[keep], shard_ids=sisa.shard_ids_[keep], slice_ids=sisa.slice_ids_[keep]
    )


def test_epoch_schedule_spreads_the_single_model_budget():
    assert epoch_schedule(20, 3) == [7, 7, 6]
    assert epoch_schedule(6, 3) == [2, 2, 2]
    assert sum(epoch_schedule(20, 4)) == 20
    assert epoch_schedule(2, 3) == [1, 1, 1]  # every stage trains at least once


def test_fit_builds_disjoint_balanced_shards(fitted, data):
    n = len(data.y_train)
    sizes = np.bincount(fitted.shard_ids_, minlength=4)
    assert sizes.sum() == n and sizes.max() - sizes.min() <= 1
    for s in range(4):
        slices = np.bincount(fitted.slice_ids_[fitted.shard_ids_ == s], minlength=3)
        assert slices.max() - slices.min() <= 1
        assert len(fitted.checkpoints_[s]) == 3
        assert np.array_equal(fitted.checkpoints_[s][-1], fitted.estimators_[s].params)
    assert fitted.last_retrained_slices_ == 12


def test_predictions(fitted, data):
    P = fitted.predict_proba(data.X_test)
    assert P.shape == (len(data.y_test), 3)
    assert np.allclose(P.sum(axis=1), 1.0)
    mean = np.mean([m.predict_proba(data.X_test) for m in fitted.estimators_], axis=0)
    assert np.allclose(P, mean, rtol=0, atol=1e-15)
    assert np.array_equal(fitted.predict(data.X_test), fitted.classes_[P.argmax(axis=1)])
    assert fitted.score(data.X_test, data.y_test) > 0.9


def test_fit_is_deterministic(fitted, data):
    again = make().fit(data.X_train, data.y_train)
    assert np.array_equal(again.predict_proba(data.X_test), fitted.predict_proba(data.X_test))
    other = make(seed=1).fit(data.X_train, data.y_train)
    assert not np.array_equal(other.shard_ids_, fitted.shard_ids_)


def test_unlearning_retrains_only_the_affected_shards(fitted, data):
    X, y = data.X_train, data.y_train
    in_shard_1 = np.flatnonzero(fitted.shard_ids_ == 1)
    in_shard_3 = np.flatnonzero(fitted.shard_ids_ == 3)
    # shard 1 loses samples in slices >= 1 only; shard 3 loses one in slice 2
    forget = np.r_[
        in_shard_1[fitted.slice_ids_[in_shard_1] == 1][:2],
        in_shard_1[fitted.slice_ids_[in_shard_1] == 2][:1],
        in_shard_3[fitted.slice_ids_[in_shard_3] == 2][:1],
    ]
    untouched = {s: [c.copy() for c in fitted.checkpoints_[s]] for s in (0, 2)}
    kept_checkpoint = fitted.checkpoints_[1][0].copy()
    fitted.unlearn(forget)
    assert fitted.last_retrained_shards_.tolist() == [1, 3]
    assert fitted.last_retrained_slices_ == 2 + 1  # shard 1 from slice 1, shard 3 from slice 2
    assert fitted.last_unlearn_time_ > 0
    for s, checkpoints in untouched.items():
        assert all(np.array_equal(a, b) for a, b in zip(checkpoints, fitted.checkpoints_[s]))
    assert np.array_equal(fitted.checkpoints_[1][0], kept_checkpoint)
    assert fitted.removed_.sum() == 4
    # exactly the ensemble trained without those samples
    ref = fresh_without(fitted, X, y)
    assert np.array_equal(ref.predict_proba(data.X_test), fitted.predict_proba(data.X_test))
    for a, b in zip(ref.estimators_, fitted.estimators_):
        assert np.array_equal(a.params, b.params)


def test_forgetting_from_the_first_slice_retrains_the_whole_shard(fitted, data):
    first = np.flatnonzero((fitted.shard_ids_ == 2) & (fitted.slice_ids_ == 0))[:1]
    fitted.unlearn(first)
    assert fitted.last_retrained_shards_.tolist() == [2]
    assert fitted.last_retrained_slices_ == 3
    ref = fresh_without(fitted, data.X_train, data.y_train)
    assert np.array_equal(ref.predict_proba(data.X_test), fitted.predict_proba(data.X_test))


def test_successive_unlearning_and_an_emptied_shard(fitted, data):
    X, y = data.X_train, data.y_train
    fitted.unlearn([0, 1, 2])
    fitted.unlearn(np.flatnonzero((fitted.shard_ids_ == 0) & ~fitted.removed_))
    assert fitted.estimators_[0] is None  # no data left in shard 0
    ref = fresh_without(fitted, X, y)
    assert ref.estimators_[0] is None
    assert np.array_equal(ref.predict_proba(data.X_test), fitted.predict_proba(data.X_test))
    with pytest.raises(ValueError, match="already forgotten"):
        fitted.unlearn([0])


def test_bad_input(fitted, data):
    n = len(data.y_train)
    for bad, match in (([], "empty"), ([n], "out of range"), ([3, 3], "duplicated")):
        with pytest.raises(ValueError, match=match):
            fitted.unlearn(bad)
    with pytest.raises(ValueError, match="no training samples"):
        fitted.unlearn(np.ones(n, dtype=bool))
    with pytest.raises(ValueError, match="n_shards"):
        make(n_shards=0).fit(data.X_train, data.y_train)
    with pytest.raises(ValueError, match="cannot fill"):
        make(n_shards=50, n_slices=10).fit(data.X_train[:20], data.y_train[:20])
    with pytest.raises(TypeError, match="mlu.MLP"):
        SISA(estimator="mlp").fit(data.X_train, data.y_train)
    with pytest.raises(ValueError, match="both"):
        make().fit(data.X_train, data.y_train, shard_ids=np.zeros(n, dtype=int))
    with pytest.raises(ValueError, match="features"):
        fitted.predict(data.X_test[:, :5])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        make().predict(data.X_test)


def test_clone_and_untouched_inputs(data):
    X, y = data.X_train.copy(), data.y_train.copy()
    template = mlu.MLP(hidden=(4,), epochs=3)
    sisa = SISA(template, n_shards=2, n_slices=2).fit(X, y)
    assert np.array_equal(X, data.X_train) and np.array_equal(y, data.y_train)
    assert not hasattr(template, "theta_")  # the template itself is never trained
    copy_ = clone(sisa)
    assert copy_.get_params()["n_shards"] == 2 and not hasattr(copy_, "estimators_")
