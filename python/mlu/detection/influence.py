"""Train-to-test influence: :func:`influence`.

Koh & Liang's influence of up-weighting a training sample z on the loss of a test sample,
``I_up,loss(z, z_test) = −∇ℓ(z_test, θ̂)ᵀ (H + δI)⁻¹ ∇ℓ(z, θ̂)``, with H the curvature of the
training objective (including λI) held in one of the representations of :mod:`mlu.engine.curvature`
(docs/design.md, "Unlearner"). The test gradients are solved in blocks, and the matrix is filled
in blocks of training samples, so memory stays bounded by ``max_block_bytes``.

On dask training data (docs/design.md, "Dask inputs") the curvature is tree-summed over the row
chunks on the workers, the test gradients are solved once on the client (the test set is
gathered: n_test rows), and the matrix comes back as a lazy dask array whose column chunks are
the training rows' chunks, each computed on its worker.
"""

from __future__ import annotations

import numpy as np

from ..defaults import DEFAULT_DAMPING
from ..engine import _dask
from ..engine._validation import (
    PARAMS_CHOICES,
    as_features,
    as_labels,
    check_choice,
    check_damping,
    check_model,
    encode_labels,
)
from ..engine.curvature import REPRESENTATIONS, build_curvature, make_problem
from ..engine.model import MLP

__all__ = ["influence", "self_influence"]

_BLOCK_BYTES = 256 << 20


def _prepare(model, X, y, params):
    check_model(model)
    check_choice(params, "params", PARAMS_CHOICES)
    if _dask.is_dask(X, y):  # rows stay in their chunks (mlu.engine._dask.RowSource)
        return make_problem(model, X, y, params)[0]
    X = as_features(X, model.n_features_in_)
    yk = encode_labels(as_labels(y, X.shape[0]), model.classes_)
    return make_problem(model, X, yk, params)[0]


def _block_rows(p: int, max_block_bytes: int) -> int:
    return max(1, int(max_block_bytes // (8 * max(p, 1))))


def influence(
    model: MLP,
    X_train,
    y_train,
    X_test,
    y_test,
    *,
    curvature: str = "auto",
    damping: float = DEFAULT_DAMPING,
    params: str = "all",
    max_block_bytes: int = _BLOCK_BYTES,
) -> np.ndarray:
    """Influence of each training sample on each test sample's loss.

    Dask inputs: ``X_train`` / ``y_train`` may be row-chunked dask arrays (or a dask DataFrame
    and its label column); the test set may be dask too and is gathered.

    Parameters
    ----------
    model : mlu.MLP
        The trained model θ̂.
    X_train : array-like, shape (n, d)
    y_train : array-like, shape (n,)
        The data it was trained on (H is their objective's curvature).
    X_test : array-like, shape (n_test, d)
    y_test : array-like, shape (n_test,)
    curvature : {"auto", "dense", "woodbury", "kfac", "ekfac"}
        Representation of H (see :mod:`mlu.engine.curvature`); ``"dense"`` is the exact GGN.
    damping : float
        δ ≥ 0.
    params : {"all", "last"}
    max_block_bytes : int
        Bound on each block of per-sample gradients held at once.

    Returns
    -------
    ndarray or dask.array.Array, shape (n_test, n)
        A dask array chunked by training rows along axis 1 when the training data are dask.
        ``I[t, i] = −∇ℓ(z_test_t)ᵀ (H + δI)⁻¹ ∇ℓ(z_i)``. Negative: up-weighting z_i lowers the
        test loss (a helpful sample).
    """
    check_choice(curvature, "curvature", REPRESENTATIONS)
    damping = check_damping(damping)
    train = _prepare(model, X_train, y_train, params)
    if _dask.is_dask(X_test, y_test):
        X_test, y_test = _dask.gathered(X_test, y_test)
    test = _prepare(model, X_test, y_test, params)
    curv, _ = build_curvature(train, curvature, float(damping))
    rows = _block_rows(train.p, max_block_bytes)
    if train.source is not None:
        P = np.concatenate(
            [
                curv.solve(test.per_sample_gradients(slice(t0, min(test.n, t0 + rows))).T)
                for t0 in range(0, test.n, rows)
            ],
            axis=1,
        )  # (p, n_test): broadcast once; each training chunk's columns computed on its worker
        return _dask.influence_columns(train.source, P)
    out = np.empty((test.n, train.n))
    for t0 in range(0, test.n, rows):
        t1 = min(test.n, t0 + rows)
        P = curv.solve(test.per_sample_gradients(slice(t0, t1)).T)  # (p, block)
        for s0 in range(0, train.n, rows):
            s1 = min(train.n, s0 + rows)
            out[t0:t1, s0:s1] = -(P.T @ train.per_sample_gradients(slice(s0, s1)).T)
    return out


def self_influence(
    model: MLP,
    X,
    y,
    *,
    curvature: str = "auto",
    damping: float = DEFAULT_DAMPING,
    params: str = "all",
    max_block_bytes: int = _BLOCK_BYTES,
) -> np.ndarray:
    """``∇ℓ_iᵀ (H + δI)⁻¹ ∇ℓ_i`` for every training sample, shape (n,), through a
    representation of H (see :func:`influence`)."""
    check_choice(curvature, "curvature", REPRESENTATIONS)
    damping = check_damping(damping)
    _dask.reject(
        X, y, "mlu.detection.influence.self_influence (use mlu.detect(method='self_influence'))"
    )
    train = _prepare(model, X, y, params)
    curv, _ = build_curvature(train, curvature, float(damping))
    rows = _block_rows(train.p, max_block_bytes // 2)
    out = np.empty(train.n)
    for s0 in range(0, train.n, rows):
        s1 = min(train.n, s0 + rows)
        G = train.per_sample_gradients(slice(s0, s1))
        out[s0:s1] = np.einsum("ij,ji->i", G, curv.solve(G.T))
    return out
