"""The Dask engine: mlu's per-sample maps and sums over data that lives in row chunks.

Everything mlu computes over the training data after training is a per-sample map (losses,
margins, per-sample gradients, self-influence) or a sum over samples (the gradient, the
Hessian/GGN, Hessian-vector products; later the K-FAC factors and Gram blocks). On a
``dask.array`` chunked by rows (or a ``dask.dataframe`` with a label column) each chunk is
handed to the C++ core on a worker, and sums are reduced in a tree (:func:`tree_sum`), so that
no chunk is ever gathered whole and no worker holds more than a few chunks. The model's
parameters are sent once per computation (:func:`broadcast`: one task whose result the
workers fetch, recomputed like any other if a worker is lost), never once per chunk.

The math is the one of docs/design.md ("Dask inputs"): the mean over n samples is the sum of
the chunks' sums divided by n, so the results equal the NumPy path up to the order of the sums.

dask is an optional dependency (``pip install "mlu[dask]"``): this module never imports it
unless a dask input arrives, and :func:`is_dask` recognises one by the dask collection
protocol (``__dask_graph__``) without importing dask.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core
from . import _linalg
from ._problem import scaled as _scaled_numpy
from ._validation import (
    CURVATURE_CHOICES,
    PARAMS_CHOICES,
    activation_spec,
    as_vector,
    check_choice,
    check_matrix_fits,
)

EXTRA = 'pip install "mlu[dask]"'
#: How many partial sums one task of the reduction tree adds up.
SPLIT_EVERY = 8


# --------------------------------------------------------------------------- detection


def is_dask(*objs) -> bool:
    """Whether any of ``objs`` is a dask collection (array, dataframe, series, delayed).

    Uses the dask collection protocol, so it works (and imports nothing) without dask.
    """
    return any(callable(getattr(obj, "__dask_graph__", None)) for obj in objs)


def _dask_modules():
    """``(dask, dask.array)``, or an ImportError that names the extra to install."""
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError(
            "a dask input needs mlu's optional Dask support, which is not installed: "
            f"{EXTRA} (it brings dask[array,dataframe] and distributed)"
        ) from exc
    return dask, da


def _client():
    """The active ``distributed`` client, or None (no distributed, or no client running)."""
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:  # "No clients found"
        return None


def _identity(obj):
    return obj


def broadcast(obj):
    """Put ``obj`` once where every chunk task can read it.

    With an active ``distributed`` client it becomes one submitted task that returns it (sent
    once to the scheduler, then fetched by each worker that needs it); otherwise one task of
    the graph. Either way the chunk tasks depend on one key instead of carrying a copy each.
    Not ``client.scatter``: scattered data has no task behind it, so when the worker holding
    it leaves (and the scheduler's memory manager drops spare replicas, so even a broadcast
    scatter can end on one worker) it is lost for good; a task is simply recomputed.
    """
    dask, _ = _dask_modules()
    client = _client()
    if client is not None:
        with warnings.catch_warnings():  # sending it once is the point, large or not
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            return client.submit(_identity, obj, pure=False)
    return dask.delayed(obj, pure=True)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ChunkModel:
    """What a worker needs of an :class:`mlu.MLP`: plain arrays, cheap to send."""

    theta: np.ndarray
    sizes: tuple[int, ...]
    activation: str
    classes: np.ndarray
    last: slice
    scale_offset_: np.ndarray | None = None  # the model's input transform (MLP(scale=...))
    scale_factor_: np.ndarray | None = None

    @classmethod
    def of(cls, model) -> ChunkModel:
        return cls(
            theta=np.array(model.theta_, dtype=np.float64),
            sizes=tuple(int(s) for s in model.sizes_),
            activation=activation_spec(model.activation, len(model.sizes_) - 2),
            classes=np.asarray(model.classes_),
            last=model.last_layer_slice(),
            scale_offset_=getattr(model, "scale_offset_", None),
            scale_factor_=getattr(model, "scale_factor_", None),
        )

    def problem(
        self, X: np.ndarray, yk: np.ndarray, params: str
    ) -> tuple[np.ndarray, list[int], str, np.ndarray, np.ndarray]:
        """``(theta, sizes, activation, X, y)`` of the problem ``params`` selects.

        For params="last" the frozen layers are applied once and the last layer is a
        multinomial logistic regression on their output (as :meth:`mlu.MLP.gradient` does).
        """
        X = _scaled_numpy(self, X)
        if params == "all":
            return self.theta, list(self.sizes), self.activation, X, yk
        F = _core.hidden_features(self.theta, list(self.sizes), self.activation, X)
        return self.theta[self.last].copy(), list(self.sizes[-2:]), "relu", F, yk


@dataclass(frozen=True)
class DaskData:
    """Row-chunked features and labels with aligned chunks.

    ``X`` is float64 of shape (n, d) with one chunk across the columns; ``y`` holds the given
    labels (not yet encoded), shape (n,). Both are lazy: NaN and unknown labels are found
    chunk by chunk when a computation runs, and reported with their global row index.
    """

    X: Any  # a dask array chunked by rows
    y: Any

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def row_chunks(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.X.chunks[0])

    def blocks(self, keep_empty: bool = False) -> list[tuple[object, object, int, int]]:
        """``(X block, y block, first row, rows)`` per chunk, as dask Delayed objects."""
        xs = self.X.to_delayed().ravel()
        ys = self.y.to_delayed().ravel()
        out, start = [], 0
        for xb, yb, rows in zip(xs, ys, self.row_chunks):
            if rows or keep_empty:
                out.append((xb, yb, start, rows))
            start += rows
        return out

    def __getitem__(self, rows) -> DaskData:
        """Rows selected by a NumPy boolean mask or index array (as ``X[mask]``)."""
        return DaskData(self.X[rows], self.y[rows])


def as_dask_data(model, X, y) -> DaskData:
    """Check a dask (X, y) against a fitted model and align their row chunks.

    ``X`` is a ``dask.array`` of shape (n, d), or a ``dask.dataframe`` with ``y`` naming its
    label column; ``y`` may also be a NumPy array or a dask array of shape (n,). Cheap checks
    (shapes, dtypes, feature count) run here; NaN/inf and unknown labels are found when the
    chunks are computed and give the same errors as the NumPy path.
    """
    _, da = _dask_modules()
    if isinstance(X, DaskData):
        return X
    if not hasattr(model, "theta_"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(
            f"model must be a fitted mlu.MLP (call fit first), got {type(model).__name__}"
        )
    X, y = _as_arrays(X, y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool) or np.iscomplexobj(
        np.empty(0, X.dtype)
    ):
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    if X.shape[1] != model.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, the model expects {model.n_features_in_}")
    if any(math.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.shape[0] == 0:
        raise ValueError(f"X is empty: it has shape {X.shape}, need at least one sample")
    if len(X.chunks[1]) > 1:  # a chunk must hold whole rows
        X = X.rechunk({1: -1})
    X = X.astype(np.float64)
    if is_dask(y):
        if any(math.isnan(c) for c in y.chunks[0]):
            y = y.compute_chunk_sizes()
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} samples")
        y = y.rechunk((X.chunks[0],))
    else:
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} samples")
        y = da.from_array(y, chunks=(X.chunks[0],))
    return DaskData(X, y)


def _as_arrays(X, y):
    """dask arrays from a dask dataframe + label column, or a NumPy X beside a dask y."""
    _, da = _dask_modules()
    if hasattr(X, "columns") and is_dask(X):  # a dask DataFrame
        if not isinstance(y, str) or y not in X.columns:
            raise ValueError(
                "with a dask DataFrame, y must name its label column, got "
                f"{y!r} (columns: {list(X.columns)})"
            )
        labels = X[y].to_dask_array(lengths=True)
        features = X.drop(columns=[y]).to_dask_array(lengths=True)
        return features, labels
    if not is_dask(X):
        X = np.asarray(X)
        chunks = y.chunks[0] if is_dask(y) and y.ndim == 1 else "auto"
        X = da.from_array(X, chunks=(chunks, -1) if X.ndim == 2 else "auto")
    if not hasattr(X, "chunks"):
        raise TypeError(f"X must be a dask array or dask DataFrame, got {type(X).__name__}")
    return X, y


def _chunk_Xy(cm: ChunkModel, X, y, start: int) -> tuple[np.ndarray, np.ndarray]:
    """A chunk checked like the NumPy path checks the whole (global row indices in errors)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not np.isfinite(X).all():
        i, j = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"X contains NaN or inf (first at index {(int(i) + start, int(j))})")
    y = np.asarray(y)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y contains NaN or inf")
    idx = np.clip(np.searchsorted(cm.classes, y), 0, len(cm.classes) - 1)
    bad = cm.classes[idx] != y
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"y[{first + start}] = {np.asarray(y[first]).item()!r} is not one of the model's "
            f"classes {cm.classes.tolist()} (label out of range)"
        )
    return X, idx.astype(np.int64)


# --------------------------------------------------------------------------- map and reduce


def _add(*parts: np.ndarray) -> np.ndarray:
    out = np.array(parts[0], dtype=np.float64)
    for part in parts[1:]:
        out += part
    return out


def tree_sum(parts: list, split_every: int = SPLIT_EVERY):
    """Sum Delayed arrays in a tree of fan-in ``split_every`` (one Delayed result)."""
    dask, _ = _dask_modules()
    if not parts:
        raise ValueError("nothing to sum: every chunk is empty")
    while len(parts) > 1:
        parts = [
            dask.delayed(_add, pure=True)(*parts[i : i + split_every])
            for i in range(0, len(parts), split_every)
        ]
    return parts[0]


def chunk_sum(data: DaskData, contribution: Callable, payload) -> np.ndarray:
    """``Σ_chunks contribution(cm_payload, X_c, yk_c)`` reduced in a tree, as NumPy.

    ``contribution`` runs on the workers with the broadcast ``payload`` (whose ``.model`` is
    a :class:`ChunkModel`) and a checked chunk; it returns an array of the same shape for
    every chunk (e.g. a chunk's gradient sum, its K-FAC factor sums or a Gram block).
    """
    dask, _ = _dask_modules()
    sent = broadcast(payload)
    parts = [
        dask.delayed(_contribute, pure=True)(contribution, sent, xb, yb, start)
        for xb, yb, start, _ in data.blocks()
    ]
    return np.asarray(tree_sum(parts).compute())


def _contribute(contribution: Callable, payload, X, y, start: int) -> np.ndarray:
    X, yk = _chunk_Xy(payload.model, X, y, start)
    return contribution(payload, X, yk)


def chunk_map(data: DaskData, per_sample: Callable, payload, columns: int | None = None):
    """``per_sample(payload, X_c, yk_c)`` for every chunk, as a lazy dask array.

    The result has the row chunks of ``data`` and shape (n,) or (n, columns).
    """
    dask, da = _dask_modules()
    sent = broadcast(payload)
    pieces = []
    for xb, yb, start, rows in data.blocks(keep_empty=True):
        shape = (rows,) if columns is None else (rows, columns)
        if rows == 0:
            pieces.append(da.zeros(shape, dtype=np.float64))
            continue
        task = dask.delayed(_map_chunk, pure=True)(per_sample, sent, xb, yb, start)
        pieces.append(da.from_delayed(task, shape=shape, dtype=np.float64))
    return da.concatenate(pieces, axis=0)


def _map_chunk(per_sample: Callable, payload, X, y, start: int) -> np.ndarray:
    X, yk = _chunk_Xy(payload.model, X, y, start)
    return np.asarray(per_sample(payload, X, yk), dtype=np.float64)


@dataclass(frozen=True)
class Payload:
    """What one computation broadcasts: the model and the settings of the chunk function."""

    model: ChunkModel
    params: str = "all"
    curvature: str = "hessian"
    matrix: Any = None  # a factor (self-influence) or a vector (HVP)
    kind: str = ""
    fn: Any = None  # a chunk's contribution (RowSource.sum)


# --------------------------------------------------------------------------- chunk functions
# Each runs on a worker on one checked chunk; sums are of the chunk's samples (no l2 term).


def _losses(pl: Payload, X, yk):
    return _core.losses(*pl.model.problem(X, yk, "all"))


def _margins(pl: Payload, X, yk):
    cm = pl.model
    Z = _core.logits(cm.theta, list(cm.sizes), cm.activation, _scaled_numpy(cm, X))
    rows = np.arange(len(yk))
    given = Z[rows, yk]
    Z[rows, yk] = -np.inf
    return given - Z.max(axis=1)


def _gradients(pl: Payload, X, yk):
    return _core.per_sample_gradients(*pl.model.problem(X, yk, pl.params))


def _gradient_and_loss_sum(pl: Payload, X, yk):
    g, loss = _core.gradient(*pl.model.problem(X, yk, pl.params), 0.0)
    return np.append(g, loss) * X.shape[0]


def _loss_sum(pl: Payload, X, yk):
    return np.array([_core.losses(*pl.model.problem(X, yk, "all")).sum()])


def _hessian_sum(pl: Payload, X, yk):
    return _core.hessian(*pl.model.problem(X, yk, pl.params), 0.0, pl.curvature) * X.shape[0]


def _self_influence(pl: Payload, X, yk):
    return _core.self_influence(*pl.model.problem(X, yk, pl.params), pl.matrix, pl.kind)


# --------------------------------------------------------------------------- MLP methods


def _selected_theta(model, params: str) -> np.ndarray:
    return model.theta_ if params == "all" else model.theta_[model.last_layer_slice()]


def losses(model, X, y):
    """Per-sample losses as a dask array of shape (n,) (see :meth:`mlu.MLP.losses`)."""
    data = as_dask_data(model, X, y)
    return chunk_map(data, _losses, Payload(ChunkModel.of(model)))


def margins(model, X, y):
    """Per-sample margins as a dask array of shape (n,) (see :meth:`mlu.MLP.margins`)."""
    data = as_dask_data(model, X, y)
    return chunk_map(data, _margins, Payload(ChunkModel.of(model)))


def gradients(model, X, y, params: str = "all"):
    """Per-sample gradients as a dask array of shape (n, p), chunked by rows."""
    check_choice(params, "params", PARAMS_CHOICES)
    data = as_dask_data(model, X, y)
    p = _selected_theta(model, params).shape[0]
    return chunk_map(data, _gradients, Payload(ChunkModel.of(model), params), columns=p)


def gradient(model, X, y, params: str = "all") -> np.ndarray:
    """Mean loss gradient + l2·θ, shape (p,), from a tree sum of the chunks' gradient sums."""
    check_choice(params, "params", PARAMS_CHOICES)
    data = as_dask_data(model, X, y)
    total = chunk_sum(data, _gradient_and_loss_sum, Payload(ChunkModel.of(model), params))
    return total[:-1] / data.n + float(model.l2) * _selected_theta(model, params)


def objective(model, X, y) -> float:
    """Mean loss plus (l2/2)‖θ‖² (see :meth:`mlu.MLP.objective`)."""
    data = as_dask_data(model, X, y)
    total = chunk_sum(data, _loss_sum, Payload(ChunkModel.of(model)))
    theta = model.theta_
    return float(total[0] / data.n + 0.5 * float(model.l2) * theta @ theta)


def hessian(model, X, y, params: str = "all", curvature: str = "hessian") -> np.ndarray:
    """H + l2·I over the data, shape (p, p), from a tree sum of the chunks' Hessian sums."""
    check_choice(params, "params", PARAMS_CHOICES)
    check_choice(curvature, "curvature", CURVATURE_CHOICES)
    data = as_dask_data(model, X, y)
    p = _selected_theta(model, params).shape[0]
    # a chunk's sum, the tree's partial sums (≤ SPLIT_EVERY + 1 per task) and the result
    check_matrix_fits(p, copies=1.2)
    H = chunk_sum(data, _hessian_sum, Payload(ChunkModel.of(model), params, curvature))
    H /= data.n
    H[np.diag_indices_from(H)] += float(model.l2)
    return H


def hvp(model, X, y, v, params: str = "all", curvature: str = "hessian") -> np.ndarray:
    """(H + l2·I) v, shape (p,): one map-reduce over the chunks."""
    return hessian_operator(model, X, y, params, curvature, persist=False).matvec(v)


def hessian_operator(
    model, X, y, params: str = "all", curvature: str = "hessian", persist: bool = True
) -> DaskHessianOperator:
    """The operator v ↦ (H + l2·I) v over dask data (see :class:`DaskHessianOperator`)."""
    check_choice(params, "params", PARAMS_CHOICES)
    check_choice(curvature, "curvature", CURVATURE_CHOICES)
    return DaskHessianOperator(model, as_dask_data(model, X, y), params, curvature, persist)


def _prepare(pl: Payload, X, y, start: int):
    """A chunk's checked problem (features for params="last"), kept on the worker."""
    X, yk = _chunk_Xy(pl.model, X, y, start)
    theta, sizes, act, F, yk = pl.model.problem(X, yk, pl.params)
    return F, yk


def _prepared_hvp(pl: Payload, chunk, v):
    F, yk = chunk
    theta = pl.model.theta if pl.params == "all" else pl.model.theta[pl.model.last]
    sizes = list(pl.model.sizes) if pl.params == "all" else list(pl.model.sizes[-2:])
    act = pl.model.activation if pl.params == "all" else "relu"
    op = _core.HessianOperator(theta, sizes, act, F, yk, 0.0, pl.curvature)
    return op.matvec(v) * F.shape[0]


class DaskHessianOperator:
    """``v ↦ (H + l2·I) v`` over row chunks: each product is one map-reduce.

    The chunks' problems (the checked X, or for params="last" the last layer's input
    features, and the encoded labels) are persisted on the workers once, when the operator
    is built, and reused by every product; only v travels per product (broadcast once).
    """

    def __init__(self, model, data: DaskData, params: str, curvature: str, persist: bool = True):
        dask, _ = _dask_modules()
        self.params = params
        self.curvature = curvature
        self._l2 = float(model.l2)
        self._n = data.n
        self._size = int(_selected_theta(model, params).shape[0])
        self._payload = broadcast(Payload(ChunkModel.of(model), params, curvature))
        chunks = [
            dask.delayed(_prepare, pure=True)(self._payload, xb, yb, start)
            for xb, yb, start, _ in data.blocks()
        ]
        self._chunks = list(dask.persist(*chunks)) if persist else chunks

    @property
    def size(self) -> int:
        """Number of parameters p the operator acts on."""
        return self._size

    def matvec(self, v) -> np.ndarray:
        """Return ``(H + l2·I) v`` for v of shape (p,)."""
        dask, _ = _dask_modules()
        v = as_vector(v, self._size)
        sent = broadcast(v)
        parts = [
            dask.delayed(_prepared_hvp, pure=True)(self._payload, chunk, sent)
            for chunk in self._chunks
        ]
        return np.asarray(tree_sum(parts).compute()) / self._n + self._l2 * v

    def cg(
        self,
        b,
        damping: float = 0.0,
        tol: float = 1e-6,
        maxiter: int | None = None,
        true_residual: bool = True,
    ):
        """Solve ``(H + damping·I) x = b`` by conjugate gradients, one map-reduce per product.

        The same iteration, stopping rule and result dict as :meth:`mlu.HessianOperator.cg`
        (the C++ core's CG): ``x``, ``iterations``, ``relative_residual`` (true residual of
        the returned x from one more product, or with ``true_residual=False`` the recursively
        updated one), ``converged``, ``negative_curvature``.
        """
        b = as_vector(b, self._size, "b")
        maxiter = 10 * self._size if maxiter is None else int(maxiter)
        # the core's one CG loop (docs/design.md, "Solvers"), each product a map-reduce here
        res = _core.cg(self.matvec, b, float(damping), float(tol), maxiter, bool(true_residual))
        del res["stopped"]  # the dict of mlu.HessianOperator.cg
        return res


# --------------------------------------------------------------------------- curvature


def _add_lists(*parts: list) -> list[np.ndarray]:
    return [_add(*terms) for terms in zip(*parts)]


def _source_chunk(pl: Payload, X, y, start: int) -> list[np.ndarray]:
    X, yk = _chunk_Xy(pl.model, X, y, start)
    return pl.fn(*pl.model.problem(X, yk, pl.params))


@dataclass(frozen=True)
class RowSource:
    """The rows of a :class:`mlu.engine.curvature.Problem` on dask data (its ``source``).

    ``sum(fn)`` is ``Σ_chunks fn(theta, sizes, activation, X_c, yk_c)`` for a function
    returning a list of arrays, run on the workers and tree-summed (the model and ``fn``, with
    whatever it carries, broadcast once); ``rows(indices)`` gathers only the given rows.
    """

    data: DaskData
    model: ChunkModel
    params: str

    def sum(self, fn: Callable) -> list[np.ndarray]:
        dask, _ = _dask_modules()
        sent = broadcast(Payload(self.model, self.params, fn=fn))
        parts = [
            dask.delayed(_source_chunk, pure=True)(sent, xb, yb, start)
            for xb, yb, start, _ in self.data.blocks()
        ]
        while len(parts) > 1:
            parts = [
                dask.delayed(_add_lists, pure=True)(*parts[i : i + SPLIT_EVERY])
                for i in range(0, len(parts), SPLIT_EVERY)
            ]
        return [np.asarray(a) for a in parts[0].compute()]

    def rows(self, rows) -> tuple:
        """``(theta, sizes, activation, X, yk)`` of the given rows, computed in memory (only
        the chunks holding them are read)."""
        index = np.arange(self.data.n)[rows]
        if index.size == 0:
            X = np.zeros((0, self.data.X.shape[1]))
            return self.model.problem(X, np.zeros(0, np.int64), self.params)
        X, y = self.data.X[index], self.data.y[index]
        X, y = (np.asarray(a) for a in _dask_modules()[0].compute(X, y))
        X, yk = _chunk_Xy(self.model, X, y, 0)
        return self.model.problem(X, yk, self.params)


def row_source(model, X, y, params: str) -> tuple[RowSource, np.ndarray]:
    """The :class:`RowSource` of dask (X, y) for ``model`` and the labels encoded 0..k-1,
    gathered (n integers: what a deletion request checks against)."""
    data = as_dask_data(model, X, y)
    cm = ChunkModel.of(model)
    return RowSource(data, cm, params), encoded_labels(data, cm)


def encoded_labels(data: DaskData, cm: ChunkModel) -> np.ndarray:
    """The encoded labels, checked chunk by chunk (unknown labels: the NumPy path's error)."""
    dask, _ = _dask_modules()
    parts = dask.compute(
        *[
            dask.delayed(_encode_chunk, pure=True)(cm, yb, start)
            for _, yb, start, _ in data.blocks()
        ]
    )
    return np.concatenate(parts).astype(np.int64)


def _encode_chunk(cm: ChunkModel, y, start: int) -> np.ndarray:
    y = np.asarray(y)
    _, yk = _chunk_Xy(cm, np.zeros((len(y), 0)), y, start)
    return yk


def _influence_rows(pl: Payload, X, yk):
    G = _core.per_sample_gradients(*pl.model.problem(X, yk, pl.params))
    return -(G @ pl.matrix)


def influence_columns(source: RowSource, P: np.ndarray):
    """``−Gᵀ P`` transposed: the (n_test, n) influence matrix as a lazy dask array whose column
    chunks are the training rows' chunks, from the solved test gradients ``P`` (p, n_test)."""
    payload = Payload(source.model, source.params, matrix=np.ascontiguousarray(P))
    return chunk_map(source.data, _influence_rows, payload, columns=P.shape[1]).T


def gathered(X, y) -> tuple[np.ndarray, np.ndarray]:
    """A small dask (X, y) (a test set) computed into memory."""
    dask, _ = _dask_modules()
    X, y = _as_arrays(X, y)
    Xc, yc = dask.compute(X, y)
    return np.asarray(Xc), np.asarray(yc)


# --------------------------------------------------------------------------- detection


def self_influence(
    model, X, y, params: str, curvature: str, damping: float, solver: str, rcond: float
):
    """Self-influence scores as a dask array (n,); arguments checked by the caller.

    H is tree-summed and factored once on the client (p x p), then the factor is broadcast
    and every chunk's scores are computed on its worker (see
    :func:`mlu.detection.detect.scores_self_influence`).
    """
    data = as_dask_data(model, X, y)
    p = _selected_theta(model, params).shape[0]
    check_matrix_fits(p, copies=2.2, what="the Hessian and its factorisation")
    H = hessian(model, data, None, params=params, curvature=curvature)
    cm = ChunkModel.of(model)
    if solver == "cholesky":
        L = _linalg.cholesky(H, damping)
        del H
        return chunk_map(data, _self_influence, Payload(cm, params, curvature, L, "cholesky"))
    M = _linalg.pinv_factor(H, damping, rcond)
    del H
    return chunk_map(data, _self_influence, Payload(cm, params, curvature, M, "projection"))


def checked_pair(model, X, y) -> tuple[Any, Any]:
    """(X, y) as aligned row-chunked dask arrays, checked against the model (for unlearn).

    Unlike the per-sample maps, this checks every chunk now (one pass): unlearn goes on to
    compute over row subsets, whose errors would otherwise carry shifted row indices.
    """
    dask, _ = _dask_modules()
    data = as_dask_data(model, X, y)
    sent = broadcast(Payload(ChunkModel.of(model)))
    found = dask.compute(
        *[
            dask.delayed(_chunk_error, pure=True)(sent, xb, yb, start)
            for xb, yb, start, _ in data.blocks()
        ]
    )
    errors = [e for e in found if e is not None]
    if errors:
        raise ValueError(errors[0])
    return data.X, data.y


def _chunk_error(payload, X, y, start: int) -> str | None:
    try:
        _chunk_Xy(payload.model, X, y, start)
    except ValueError as exc:
        return str(exc)
    return None


def reject(X, y, what: str) -> None:
    """Raise a clear error when ``what`` gets a dask input it cannot take."""
    if is_dask(X, y):
        raise NotImplementedError(
            f"{what} does not take dask inputs; compute it on a NumPy sample or subset"
        )


# --------------------------------------------------------------------------- training


def training_data(X, y, n_features: int | None = None) -> tuple[object, np.ndarray]:
    """Row-chunked float64 dask X and its labels as NumPy (n,) for streaming training.

    The labels (n values) are gathered; X stays in its chunks.
    """
    _, da = _dask_modules()
    X, y = _as_arrays(X, y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise TypeError(f"X must hold numbers, got dtype {X.dtype}")
    if np.iscomplexobj(np.empty(0, X.dtype)):
        raise ValueError(f"Complex data not supported: X must be real, got {X.dtype}")
    if any(math.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty: it has shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, the model expects {n_features}")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    y = np.asarray(y.compute() if is_dask(y) else y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
    _check_finite(X)
    return X.astype(np.float64), y


def _check_finite(X) -> None:
    """One pass over the chunks, before training starts: NaN/inf found mid-epoch would leave
    a half-trained model behind. Same message as the NumPy path, global index."""
    dask, _ = _dask_modules()
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])])
    found = dask.compute(
        *[
            dask.delayed(_first_nonfinite, pure=True)(block, int(start))
            for block, start in zip(X.to_delayed().ravel(), starts)
        ]
    )
    bad = [f for f in found if f is not None]
    if bad:
        raise ValueError(f"X contains NaN or inf (first at index {bad[0]})")


def _first_nonfinite(X, start: int) -> tuple[int, int] | None:
    finite = np.isfinite(X)
    if finite.all():
        return None
    i, j = np.argwhere(~finite)[0]
    return int(i) + start, int(j)


def fit_scale(X, scale, choices: tuple, unscaled_rms: float):
    """(offset, factor) of ``MLP(scale=...)`` from column statistics reduced over the chunks.

    As the NumPy path: min/max are exact, mean/std agree to rounding; a constant feature
    keeps factor 1. ``scale=None`` gives (None, None) and warns when the features look raw.
    """
    dask, da = _dask_modules()
    if scale not in choices:
        raise ValueError(f"scale must be one of {choices}, got {scale!r}")
    if scale is None:
        (rms,) = dask.compute(da.sqrt((X * X).mean(axis=0)))
        if rms.max() > unscaled_rms:
            import warnings

            from ..exceptions import UnscaledFeaturesWarning

            j = int(np.argmax(rms))
            warnings.warn(
                f"features look unscaled: feature {j} has root mean square {rms[j]:.3g}; SGD "
                "with the default learning rate may not train. Use mlu.MLP(scale='standard') "
                "(or 'minmax')",
                UnscaledFeaturesWarning,
                stacklevel=4,
            )
        return None, None
    if scale == "standard":
        offset, spread = dask.compute(X.mean(axis=0), X.std(axis=0))
    else:
        offset, top = dask.compute(X.min(axis=0), X.max(axis=0))
        spread = top - offset
    factor = np.ones_like(spread)
    nonzero = spread > 0
    factor[nonzero] = 1.0 / spread[nonzero]
    return offset, factor


def scaled(model, X):
    """The dask X as the network sees it (the model's input transform), lazily per chunk."""
    offset = getattr(model, "scale_offset_", None)
    return X if offset is None else (X - offset) * model.scale_factor_


def _chunk_seed(seed: int, chunk: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1, np.uint64)[0])


def sgd_epoch(theta, velocity, sizes, activation, X, yk, seed, lr, momentum, batch_size, l2):
    """One SGD epoch over a row-chunked dask X, one chunk in memory at a time.

    The same signature and result ``(theta, velocity, mean minibatch loss)`` as the core's
    ``sgd_epoch``. The order ("block shuffle"): the chunks are visited in the order
    ``permutation(n_chunks, seed)`` of the core, and chunk c is one core epoch over its rows
    with the seed ``SeedSequence([seed, c])`` (its own seeded permutation, minibatches of
    ``batch_size`` rows within the chunk, the last one of a chunk possibly smaller). With a
    single chunk the seed is ``seed`` itself, so the epoch is bit for bit the NumPy one.
    The returned loss is the mean over all minibatches of the epoch.
    """
    rows = tuple(int(c) for c in X.chunks[0])
    blocks = X.to_delayed().ravel()
    starts = np.concatenate([[0], np.cumsum(rows)])
    single = len(rows) == 1
    order = [0] if single else [int(c) for c in _core.permutation(len(rows), int(seed))]
    loss_sum, batches = 0.0, 0
    for c in order:
        if rows[c] == 0:
            continue
        Xc = np.ascontiguousarray(blocks[c].compute(), dtype=np.float64)  # checked before
        yc = yk[starts[c] : starts[c + 1]]
        theta, velocity, loss = _core.sgd_epoch(
            theta,
            velocity,
            sizes,
            activation,
            Xc,
            yc,
            int(seed) if single else _chunk_seed(seed, c),
            lr,
            momentum,
            batch_size,
            l2,
        )
        del Xc
        nb = math.ceil(rows[c] / min(int(batch_size), rows[c]))
        loss_sum += loss * nb
        batches += nb
    return theta, velocity, loss_sum / batches
