"""SISA training (Sharded, Isolated, Sliced, Aggregated; Bourtoule et al., 2021).

The training set is split at random into ``n_shards`` disjoint shards, and each shard into
``n_slices`` disjoint slices. One model per shard is trained incrementally: stage j trains on
slices ``0..j`` of its shard, continuing from the parameters after stage ``j - 1``, and the
parameters after every stage are kept as a checkpoint. Predictions average the shard models'
probabilities.

Unlearning a sample retrains only the shard that held it, and only from the checkpoint taken
before the first slice that held a forgotten sample: the work saved is everything before it and
every other shard.

Epoch schedule. A single model trains ``E = estimator.epochs`` epochs. Each shard model gets
the same total: the E epochs are split over the ``n_slices`` stages as evenly as possible
(earlier stages get the remainder; e.g. E = 20 over 3 slices → 7, 7, 6), every stage getting at
least one epoch. Because stage j sees j + 1 slices, a shard costs about
``E · (n_slices + 1) / (2 · n_slices)`` epochs of its own data, and the ensemble about that
fraction of one model trained on everything.

Determinism. Shard and slice of every sample are drawn once from ``seed``; the seed of every
(shard, stage) is derived from ``seed`` too. So an ensemble fitted without some samples but with
the same assignment of the others (``fit(X, y, shard_ids=..., slice_ids=...)``) is bit-identical
to one that unlearned them.
"""

from __future__ import annotations

import copy
import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from ..engine._validation import as_features, as_labels, check_forget, check_positive_int
from ..engine.model import MLP

__all__ = ["SISA"]


def _stage_seed(seed: int, shard: int, stage: int) -> int:
    return int(np.random.SeedSequence([int(seed), shard, stage]).generate_state(1)[0] >> 1)


def epoch_schedule(epochs: int, n_slices: int) -> list[int]:
    """Epochs per stage: ``epochs`` split over ``n_slices`` stages, each at least 1."""
    base, extra = divmod(int(epochs), n_slices)
    return [max(1, base + (1 if j < extra else 0)) for j in range(n_slices)]


class SISA(ClassifierMixin, BaseEstimator):
    """An ensemble of MLPs on disjoint shards that can forget samples by partial retraining.

    Only ``estimator`` may be given by position (as for scikit-learn's meta-estimators); the
    others are keyword-only.

    Parameters
    ----------
    estimator : mlu.MLP, optional
        Template whose hyper-parameters every shard model uses (default ``mlu.MLP()``); its
        ``epochs`` are the per-shard total, spread over the slices (see the module docstring).
    n_shards : int
        Number of disjoint shards (models).
    n_slices : int
        Slices per shard (checkpoints per model).
    seed : int
        Seeds the shard/slice assignment and every shard model.

    Attributes
    ----------
    classes_ : ndarray, shape (k,)
    estimators_ : list of mlu.MLP or None, length n_shards
        The shard models (None for a shard left with no samples).
    shard_ids_, slice_ids_ : ndarray of int, shape (n,)
        Shard and slice of each training sample.
    removed_ : ndarray of bool, shape (n,)
        Samples forgotten so far (indices always refer to the data given to ``fit``).
    checkpoints_ : list of list of ndarray
        ``checkpoints_[s][j]`` = parameters of shard s after stage j, shape (p,) (None while
        the shard has no samples in slices ``0..j``).
    last_retrained_shards_ : ndarray of int
        Shards retrained by the last :meth:`unlearn`.
    last_retrained_slices_ : int
        Number of (shard, stage) trainings redone by the last :meth:`unlearn` (out of
        ``n_shards · n_slices`` for a full retrain).
    last_unlearn_time_ : float
        Wall seconds of the last :meth:`unlearn`.
    """

    def __init__(
        self, estimator: MLP | None = None, *, n_shards: int = 5, n_slices: int = 3, seed: int = 0
    ):
        self.estimator = estimator
        self.n_shards = n_shards
        self.n_slices = n_slices
        self.seed = seed

    # ------------------------------------------------------------------ helpers
    def _template(self) -> MLP:
        est = MLP() if self.estimator is None else self.estimator
        if not isinstance(est, MLP):
            raise TypeError(f"estimator must be an mlu.MLP, got {type(est).__name__}")
        return est

    def _check_sizes(self) -> tuple[int, int]:
        return (
            check_positive_int(self.n_shards, "n_shards"),
            check_positive_int(self.n_slices, "n_slices"),
        )

    def _check_ids(self, ids, n: int, upper: int, name: str) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"{name} must be integers of shape ({n},), got {arr.dtype} {arr.shape}"
            )
        if arr.size and (arr.min() < 0 or arr.max() >= upper):
            raise ValueError(f"{name} must be in 0..{upper - 1}")
        return arr.astype(np.int64)

    def _train_shard(self, s: int, first_stage: int) -> None:
        """(Re)train shard s from the checkpoint before ``first_stage`` on its retained samples."""
        keep = (self.shard_ids_ == s) & ~self.removed_
        schedule = epoch_schedule(self._template().epochs, self.n_slices)
        checkpoints = self.checkpoints_[s][:first_stage]
        theta = checkpoints[-1] if checkpoints else None  # None: no stage trained yet
        model = copy.deepcopy(self.estimators_[s]) if theta is not None else None
        for j in range(first_stage, self.n_slices):
            rows = keep & (self.slice_ids_ <= j)
            if not rows.any():  # nothing to learn from yet: no model, no checkpoint
                checkpoints.append(None)
                continue
            if theta is None:
                model = clone(self._template())
            else:
                assert model is not None  # a checkpoint exists, so its model does
                model.params = theta  # resume exactly from the checkpoint
            model.set_params(
                epochs=schedule[j], seed=_stage_seed(self.seed, s, j), warm_start=theta is not None
            )
            model.fit(self._X[rows], self._y[rows], classes=self.classes_)
            theta = model.params
            checkpoints.append(theta)
        self.checkpoints_[s] = checkpoints
        self.estimators_[s] = model if theta is not None else None

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, shard_ids=None, slice_ids=None) -> SISA:
        """Train one model per shard, slice by slice, keeping a checkpoint after each slice.

        Parameters
        ----------
        X : array-like, shape (n, d)
        y : array-like, shape (n,)
        shard_ids, slice_ids : array-like of int, shape (n,), optional
            A given assignment of samples to shards and slices (default: drawn at random
            with ``seed``, balanced). Pass both or neither.

        Returns
        -------
        self
        """
        n_shards, n_slices = self._check_sizes()
        self._template()  # fail early on a bad estimator
        X = as_features(X)
        y = as_labels(y, X.shape[0])
        n = X.shape[0]
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least two classes, got {self.classes_}")
        if (shard_ids is None) != (slice_ids is None):
            raise ValueError("pass both shard_ids and slice_ids, or neither")
        if shard_ids is None:
            if n < n_shards * n_slices:
                raise ValueError(f"{n} samples cannot fill {n_shards} shards x {n_slices} slices")
            order = np.random.default_rng(self.seed).permutation(n)
            shard_ids = np.empty(n, dtype=np.int64)
            slice_ids = np.empty(n, dtype=np.int64)
            for s, members in enumerate(np.array_split(order, n_shards)):
                shard_ids[members] = s
                for j, part in enumerate(np.array_split(members, n_slices)):
                    slice_ids[part] = j
        self.shard_ids_ = self._check_ids(shard_ids, n, n_shards, "shard_ids")
        self.slice_ids_ = self._check_ids(slice_ids, n, n_slices, "slice_ids")
        # SISA keeps its training data (retraining needs it): own copies, never the caller's
        self._X, self._y = np.array(X, copy=True), np.array(y, copy=True)
        self.removed_ = np.zeros(n, dtype=bool)
        self.n_features_in_ = X.shape[1]
        self.estimators_: list[MLP | None] = [None] * n_shards
        self.checkpoints_: list[list] = [[] for _ in range(n_shards)]
        for s in range(n_shards):
            self._train_shard(s, 0)
        if all(e is None for e in self.estimators_):
            raise ValueError("every shard is empty")
        self.last_retrained_shards_ = np.arange(n_shards)
        self.last_retrained_slices_ = n_shards * n_slices
        return self

    def unlearn(self, forget) -> SISA:
        """Forget samples by retraining only the shards that held them.

        Each affected shard restarts from the checkpoint taken before the first slice holding
        one of its forgotten samples. Records ``last_retrained_shards_``,
        ``last_retrained_slices_`` and ``last_unlearn_time_``.

        Parameters
        ----------
        forget : array-like of int, shape (m,), or of bool, shape (n,)
            Indices into (or a mask over) the training data given to :meth:`fit`; samples
            already forgotten may not be forgotten again.

        Returns
        -------
        self
        """
        start = time.perf_counter()
        check_is_fitted(self, "estimators_")
        n = self._X.shape[0]
        mask = check_forget(forget, n, allow_all=True)
        again = mask & self.removed_
        if again.any():
            raise ValueError(
                f"sample {int(np.flatnonzero(again)[0])} was already forgotten "
                f"({int(again.sum())} such samples in forget)"
            )
        if (mask | self.removed_).all():
            raise ValueError("forget would leave no training samples at all")
        self.removed_ = self.removed_ | mask
        shards = np.unique(self.shard_ids_[mask])
        redone = 0
        for s in shards:
            first = int(self.slice_ids_[mask & (self.shard_ids_ == s)].min())
            self._train_shard(int(s), first)
            redone += self.n_slices - first
        if all(e is None for e in self.estimators_):
            raise ValueError("forget left every shard empty")
        self.last_retrained_shards_ = shards.astype(np.int64)
        self.last_retrained_slices_ = redone
        self.last_unlearn_time_ = time.perf_counter() - start
        return self

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, X) -> np.ndarray:
        """Mean of the shard models' probabilities, shape (n, k) (columns as ``classes_``)."""
        check_is_fitted(self, "estimators_")
        X = as_features(X, self.n_features_in_)
        models = [m for m in self.estimators_ if m is not None]
        return np.mean([m.predict_proba(X) for m in models], axis=0)

    def predict(self, X) -> np.ndarray:
        """Labels of the largest mean probability, shape (n,)."""
        check_is_fitted(self, "estimators_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
