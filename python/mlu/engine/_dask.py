"""The Dask engine: mlu's per-sample maps and sums over data that lives in row chunks.

Everything mlu computes over the training data after training is a per-sample map (losses,
margins, per-sample gradients, self-influence) or a sum over samples (the gradient, the
Hessian/GGN, Hessian-vector products; later the K-FAC factors and Gram blocks). On a
``dask.array`` chunked by rows (or a ``dask.dataframe`` with a label column) each chunk is
handed to the C++ core on a worker, and sums are reduced in a tree (:func:`tree_sum`), so that
no chunk is ever gathered whole and no worker holds more than a few chunks. The model's
parameters are sent once per computation (:func:`broadcast`: one task whose result the
workers fetch, recomputed like any other if a worker is lost), never once per chunk. Chunks
already held in the cluster's memory (persisted) take a shorter path: one task per worker
over the chunks it holds, the model inside it (:func:`held_groups`, :func:`submit_groups`).

The math is the one of docs/design.md ("Dask inputs"): the mean over n samples is the sum of
the chunks' sums divided by n, so the results equal the NumPy path up to the order of the sums.

dask is an optional dependency (``pip install "mlu[dask]"``): this module never imports it
unless a dask input arrives, and :func:`is_dask` recognises one by the dask collection
protocol (``__dask_graph__``) without importing dask.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _core
from .._optional import progress_bar
from . import _linalg
from ._problem import scaled as _scaled_numpy
from ._validation import (
    CURVATURE_CHOICES,
    PARAMS_CHOICES,
    activation_spec,
    as_vector,
    available_memory_bytes,
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


#: Largest object (bytes, pickled) a task to a held chunk's worker carries itself; larger
#: ones are broadcast (:func:`sent`).
INLINE_BYTES = 1 << 20


def sent(obj):
    """``obj`` itself when it pickles to at most :data:`INLINE_BYTES`, else :func:`broadcast`.

    For the few tasks of :func:`held_groups` (one per worker): inside the task, the object
    reaches the worker with it, while a broadcast one is a task that must finish and then be
    fetched by the other workers first, a round trip of its own on every computation.
    """
    import pickle

    buffers: list = []  # protocol 5 hands the arrays' memory out of band, uncopied
    head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    size = len(head) + sum(b.raw().nbytes for b in buffers)
    return obj if size <= INLINE_BYTES else broadcast(obj)


# --------------------------------------------------------------------------- worker memory

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_malloc_lock = threading.Lock()
_malloc_active = 0


def _libc():
    """glibc, or None (another C library, or no ctypes): then nothing is tuned."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, ImportError):
        return None


def on_worker(fn: Callable) -> Callable:
    """Run a chunk function with glibc's allocator in its default, reusing mode.

    A ``distributed`` nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (so
    that freed memory goes back to the OS at once). That also fixes the mmap threshold at
    128 KiB: every temporary of the core above it is a fresh mmap, page-faulted in and
    unmapped again, which made the core's kernels several times slower on a worker than in a
    plain process (docs/design.md, "Dask performance"). While any chunk function runs,
    the thresholds are raised (trim 1 GiB, mmap 32 MiB: allocations are reused); when the
    last one returns they are put back to the environment's values and the heap is trimmed
    once, so the worker still hands its memory back after every task.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        global _malloc_active
        env = os.environ.get("MALLOC_TRIM_THRESHOLD_", "")
        libc = _libc() if env.isdigit() else None  # a value glibc would not read: leave it
        if libc is None:
            return fn(*args, **kwargs)
        trim = int(env)
        with _malloc_lock:
            _malloc_active += 1
            if _malloc_active == 1:
                libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
                libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        try:
            return fn(*args, **kwargs)
        finally:
            with _malloc_lock:
                _malloc_active -= 1
                if _malloc_active == 0:
                    libc.mallopt(_M_TRIM_THRESHOLD, trim)
                    mmap = os.environ.get("MALLOC_MMAP_THRESHOLD_", str(128 << 10))
                    libc.mallopt(_M_MMAP_THRESHOLD, int(mmap))
                    libc.malloc_trim(0)

    return wrapped


# (Small tasks, the reductions' additions and taking a request's rows, are not wrapped: they
# allocate little, and the trim at the end would cost them about a millisecond.)


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
    ``labels``: y itself when it was given as NumPy (tasks on held X chunks then carry their
    slice of it: y's own chunks are never in the cluster's memory).
    """

    X: Any  # a dask array chunked by rows
    y: Any
    labels: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def row_chunks(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.X.chunks[0])

    def blocks(self, keep_empty: bool = False) -> list[tuple[Any, Any, int, int]]:
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
        labels = None if self.labels is None else self.labels[rows]
        return DaskData(self.X[rows], self.y[rows], labels)


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
        return DaskData(X, da.from_array(y, chunks=(X.chunks[0],)), y)
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


#: On a worker: the held X chunks already found finite, by key, each with a weak reference to
#: its array (an entry holds only while that very array lives; see :func:`_chunk_Xy`).
_FINITE: dict = {}


def _forget_finite(key, _ref) -> None:
    _FINITE.pop(key, None)


def _chunk_Xy(
    cm: ChunkModel, X, y, start: int, rows: np.ndarray | None = None, key=None
) -> tuple[np.ndarray, np.ndarray]:
    """A chunk checked like the NumPy path checks the whole (global row indices in errors:
    ``start + i``, or ``rows[i]`` for rows taken out of their chunks).

    ``key``, the key of a chunk held in the cluster's memory (:func:`held_groups`): its X is
    searched for NaN/inf once, not on every computation, since the array under that key
    does not change while it lives.
    """

    def where(i: int) -> int:
        return int(rows[i]) if rows is not None else int(i) + start

    known = key is not None and (ref := _FINITE.get(key)) is not None and ref() is X
    original = X
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not known and not np.isfinite(X).all():
        i, j = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"X contains NaN or inf (first at index {(where(i), int(j))})")
    if key is not None and not known:
        _FINITE[key] = weakref.ref(original, functools.partial(_forget_finite, key))
    y = np.asarray(y)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y contains NaN or inf")
    idx = np.clip(np.searchsorted(cm.classes, y), 0, len(cm.classes) - 1)
    bad = cm.classes[idx] != y
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"y[{where(first)}] = {np.asarray(y[first]).item()!r} is not one of the model's "
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


def _bar(total: int, desc: str):
    """A tqdm bar over ``total`` tasks on a terminal (as the NumPy builds show), else None."""
    if total < 2 or not sys.stderr.isatty():
        return None
    return progress_bar(total=total, desc=desc, unit="chunk", leave=False)


def compute(parts: list, desc: str, combine: Callable | None = None):
    """Compute the Delayed ``parts`` (one per chunk) in one graph: their values as a list, or
    with ``combine`` their tree reduction (fan-in :data:`SPLIT_EVERY`).

    On a terminal a tqdm bar counts the chunks as they finish: with a ``distributed`` client
    the parts become futures followed as they complete (the reduction is submitted behind
    them, so nothing waits for the bar); without one, a local-scheduler callback. Off a
    terminal it is a plain ``dask.compute`` (one round trip).
    """
    dask, _ = _dask_modules()
    if combine is not None and not parts:
        raise ValueError("nothing to sum: every chunk is empty")
    bar = _bar(len(parts), desc)
    client = _client() if bar is not None else None
    if bar is None or client is None:
        graph = parts if combine is None else _tree(parts, combine)
        if bar is None:
            return dask.compute(graph)[0]
        with _LocalBar(bar):
            return dask.compute(graph)[0]
    from distributed import as_completed

    try:
        futures = client.compute(parts)
        total = None if combine is None else _tree(futures, combine, client.submit)
        for _ in as_completed(futures):
            bar.update(1)
        return client.gather(futures) if total is None else total.result()
    finally:
        bar.close()


def _tree(parts: list, combine: Callable, submit: Callable | None = None):
    """``combine`` over ``parts`` in a tree of fan-in :data:`SPLIT_EVERY` (Delayed, or futures
    through ``submit``)."""
    dask, _ = _dask_modules()
    while len(parts) > 1:
        groups = [parts[i : i + SPLIT_EVERY] for i in range(0, len(parts), SPLIT_EVERY)]
        if submit is None:
            parts = [dask.delayed(combine, pure=True)(*g) for g in groups]
        else:
            parts = [submit(combine, *g, pure=False) for g in groups]
    return parts[0]


class _LocalBar:
    """Advances a tqdm bar per finished task of a local-scheduler ``dask.compute``."""

    def __init__(self, bar):
        from dask.callbacks import Callback

        self.bar = bar
        self._callback = Callback(start_state=self._start, posttask=self._done)

    def _start(self, dsk, state) -> None:
        self.bar.reset(total=len(state["ready"]) + len(state["waiting"]))  # the tasks to run
        self.bar.unit = "task"

    def _done(self, key, result, dsk, state, worker_id) -> None:
        self.bar.update(1)

    def __enter__(self) -> _LocalBar:
        self._callback.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._callback.__exit__(*exc)
        self.bar.close()


# --------------------------------------------------------------------------- held chunks


def held_groups(data: DaskData) -> tuple[Any, list] | None:
    """``(client, groups)`` when every chunk of ``data`` is in the cluster's memory, else None.

    ``groups`` is a list of ``(worker, blocks, moved)``: the chunks (``data.blocks()``
    entries) a worker holds, then, where one worker holds more rows than another by more than
    a chunk, its surplus chunks one per group to the workers holding the fewest rows
    (``moved``: the chunk moves, its task then runs beside the receiver's own). One task per
    group instead of one per chunk and a reduction tree: the tasks' fixed cost, not the
    chunks', is what made two workers slower than one thread (docs/design.md, "Dask
    performance"). Without a client, or with a chunk not computed yet, the graph path is
    taken (None).
    """
    client = _client()
    if client is None:
        return None
    blocks = data.blocks()
    keys = [xb.key for xb, _, _, _ in blocks]
    if data.labels is None:
        keys += [yb.key for _, yb, _, _ in blocks]
    if not keys:
        return None
    held = client.sync(client.scheduler.who_has, keys=keys)
    if not all(held.get(k) for k in keys):
        return None
    if data.labels is not None:  # the labels' slices go inside the tasks
        blocks = [(xb, data.labels[s : s + r], s, r) for xb, _, s, r in blocks]
    own: dict = {w: [] for w in sorted(client.scheduler_info()["workers"])}
    rows = dict.fromkeys(own, 0)
    # a chunk held by several workers (a moved chunk stays on both until dropped) goes to the
    # one with the fewest rows so far, after the chunks only one worker holds
    for block in sorted(blocks, key=lambda b: len(held[b[0].key])):
        home = min(sorted(held[block[0].key]), key=lambda w: rows.get(w, 0))
        own.setdefault(home, []).append(block)
        rows[home] = rows.get(home, 0) + block[3]
    for group in own.values():
        group.sort(key=lambda b: b[2])
    return client, balanced(own)


def balanced(own: dict) -> list[tuple[str, list, bool]]:
    """Groups ``(worker, blocks, moved)`` from the blocks each worker holds (``own``, by
    worker, in order; a block's rows at index 3): each worker's own blocks, less the smallest
    of the busiest worker's while moving it to the worker with the fewest rows shortens the
    run, each moved block a group of its own on its new worker (``moved`` True)."""
    own = {w: list(bs) for w, bs in own.items()}
    load = {w: sum(b[3] for b in bs) for w, bs in own.items()}
    moved = []
    while own:
        busy, idle = max(load, key=load.__getitem__), min(load, key=load.__getitem__)
        if not own[busy]:
            break
        block = min(own[busy], key=lambda b: b[3])
        if load[idle] + block[3] >= load[busy]:
            break
        own[busy].remove(block)
        load[busy] -= block[3]
        load[idle] += block[3]
        moved.append((idle, [block], True))
    return [(w, bs, False) for w, bs in own.items() if bs] + moved


def submit_groups(client, groups: list, fn: Callable, *args) -> list:
    """``fn(*args, [(X, y, start, key), ...])`` per group, a future on the group's worker (``key``:
    the X chunk's, for :func:`_chunk_Xy`).

    The groups of the workers holding their chunks go in one message and are placed where
    their chunks are (one submit each would leave all but the first waiting for the client's
    next batch: distributed batches a client's messages every 10 ms); the moved chunks' groups
    follow, pinned to their new worker.
    """
    from distributed import Future

    def chunks(blocks: list) -> list:
        return [
            (Future(xb.key, client), _held(yb, client), start, xb.key)
            for xb, yb, start, _ in blocks
        ]

    own = [bs for _, bs, moved in groups if not moved]
    futures = client.map(
        fn, *[[a] * len(own) for a in args], [chunks(bs) for bs in own], pure=False
    )
    for worker, blocks, moved in groups:
        if moved:
            futures.append(
                client.submit(
                    fn,
                    *args,
                    chunks(blocks),
                    workers=[worker],
                    allow_other_workers=True,  # where its worker is lost
                    pure=False,
                )
            )
    return futures


def _held(block, client):
    """A held block as the future of its key; NumPy data (a slice of the labels) as it is."""
    from distributed import Future

    return Future(block.key, client) if hasattr(block, "key") else block


def gather(client, futures: list, desc: str) -> list:
    """The futures' results, with a tqdm bar counting them as they finish on a terminal."""
    bar = _bar(len(futures), desc)
    if bar is None:
        return client.gather(futures)
    from distributed import as_completed

    try:
        for _ in as_completed(futures):
            bar.update(1)
        return client.gather(futures)
    finally:
        bar.close()


def chunk_sum(data: DaskData, contribution: Callable, payload) -> np.ndarray:
    """``Σ_chunks contribution(cm_payload, X_c, yk_c)`` reduced in a tree, as NumPy.

    ``contribution`` runs on the workers with the broadcast ``payload`` (whose ``.model`` is
    a :class:`ChunkModel`) and a checked chunk; it returns an array of the same shape for
    every chunk (e.g. a chunk's gradient sum, its K-FAC factor sums or a Gram block).
    """
    dask, _ = _dask_modules()
    desc = "mlu " + getattr(contribution, "__name__", "sum").strip("_").replace("_", " ")
    held = held_groups(data)
    if held is not None:  # one task per worker over the chunks it holds
        client, groups = held
        parts = submit_groups(client, groups, _contribute_all, contribution, sent(payload))
        return _add(*gather(client, parts, desc))
    shared = broadcast(payload)
    parts = [
        dask.delayed(_contribute, pure=True)(contribution, shared, xb, yb, start)
        for xb, yb, start, _ in data.blocks()
    ]
    return np.asarray(compute(parts, desc, _add))


def _checked_contribution(
    contribution: Callable, payload, X, y, start: int, key=None
) -> np.ndarray:
    X, yk = _chunk_Xy(payload.model, X, y, start, key=key)
    return contribution(payload, X, yk)


@on_worker
def _contribute(contribution: Callable, payload, X, y, start: int) -> np.ndarray:
    return _checked_contribution(contribution, payload, X, y, start)


@on_worker
def _contribute_all(contribution: Callable, payload, group: list) -> np.ndarray:
    """The sum of the contributions of a worker's chunks (see :func:`held_groups`)."""
    return _add(*[_checked_contribution(contribution, payload, *chunk) for chunk in group])


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


@on_worker
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


@on_worker
def _prepare(pl: Payload, X, y, start: int, key=None):
    """A chunk's checked problem (features for params="last"), kept on the worker."""
    X, yk = _chunk_Xy(pl.model, X, y, start, key=key)
    theta, sizes, act, F, yk = pl.model.problem(X, yk, pl.params)
    return F, yk


@on_worker
def _prepared_hvp(pl: Payload, chunk, v):
    F, yk = chunk
    op = _core.HessianOperator(*_prepared_problem(pl), F, yk, 0.0, pl.curvature)
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


#: Rows per core call within a chunk for the curvature sums, as the one-machine build's
#: sample chunks (mlu.engine.curvature): a dask chunk of ~10⁵ rows in one call makes temporaries
#: of tens of MB (fresh mmaps, out of cache), measured 2x slower (docs/design.md, "Dask
#: performance").
SUB_ROWS = 4096


def _source_terms(pl: Payload, X, y, start: int, key=None) -> list[np.ndarray]:
    X, yk = _chunk_Xy(pl.model, X, y, start, key=key)
    theta, sizes, act, F, yk = pl.model.problem(X, yk, pl.params)
    total = None
    for s in range(0, max(len(yk), 1), SUB_ROWS):
        part = pl.fn(theta, sizes, act, F[s : s + SUB_ROWS], yk[s : s + SUB_ROWS])
        total = part if total is None else [a + b for a, b in zip(total, part)]
    assert total is not None  # the loop runs at least once
    return total


@on_worker
def _source_chunk(pl: Payload, X, y, start: int) -> list[np.ndarray]:
    return _source_terms(pl, X, y, start)


@on_worker
def _source_all(pl: Payload, group: list) -> list[np.ndarray]:
    """The sums of a worker's chunks (see :func:`held_groups`)."""
    return _add_lists(*[_source_terms(pl, *chunk) for chunk in group])


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
    # the rows of the last few requests, gathered (see rows)
    _rows_cache: dict = field(default_factory=dict, compare=False, repr=False)
    _blocks: list = field(default_factory=list, compare=False, repr=False)  # to_delayed, once

    def sum(self, fn: Callable) -> list[np.ndarray]:
        dask, _ = _dask_modules()
        payload = Payload(self.model, self.params, fn=fn)
        held = held_groups(self.data)
        if held is not None:  # one task per worker over the chunks it holds
            client, groups = held
            futures = submit_groups(client, groups, _source_all, sent(payload))
            return _add_lists(*gather(client, futures, "mlu curvature"))
        shared = broadcast(payload)
        parts = [
            dask.delayed(_source_chunk, pure=True)(shared, xb, yb, start)
            for xb, yb, start, _ in self.data.blocks()
        ]
        return [np.asarray(a) for a in compute(parts, "mlu curvature", _add_lists)]

    def rows(self, rows) -> tuple:
        """``(theta, sizes, activation, X, yk)`` of the given rows, computed in memory.

        One task per chunk that holds some of them (it takes its rows out on the worker and
        checks them there), all in one computation; the last few results are kept, so a
        deletion request that needs its rows several times (gradient sum, downdate, check)
        reads each of its chunks once (docs/design.md, "Dask performance").
        """
        index = np.asarray(rows)
        if isinstance(rows, slice) or index.dtype == bool:  # not n integers for every request
            index = np.arange(self.data.n)[rows]
        index = index.astype(np.int64, copy=False)
        key = index.tobytes()
        if key in self._rows_cache:
            return self._rows_cache[key]
        if index.size == 0:
            X = np.zeros((0, self.data.X.shape[1]))
            out = self.model.problem(X, np.zeros(0, np.int64), self.params)
        else:
            out = self.model.problem(*self._gather(index), self.params)
        gathered = [k for k in self._rows_cache if isinstance(k, bytes)]
        if len(gathered) >= 4:  # a request's rows, the check rows: a few suffice
            self._rows_cache.pop(gathered[0])
        self._rows_cache[key] = out
        return out

    def _gather(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The checked float64 rows ``index`` (any order) and their encoded labels."""
        dask, _ = _dask_modules()
        if not self._blocks:
            self._blocks.extend(self.data.blocks(keep_empty=True))
        blocks = self._blocks
        starts = np.concatenate([[0], np.cumsum(self.data.row_chunks)])
        chunk = np.searchsorted(starts, index, side="right") - 1
        order = np.argsort(chunk, kind="stable")
        labels = _Labels(self.model.classes)  # what the check needs: not θ in every task
        groups: dict = {}  # one task per worker holding the chunks in memory, else per chunk
        members: dict = {}  # the chunks of each group, in its order
        homes = self._homes()
        for c in np.unique(chunk):
            xb, yb, start, _ = blocks[c]
            local = index[chunk == c] - start
            group = homes.get(xb.key, c)
            groups.setdefault(group, []).append((xb, yb, local, start))
            members.setdefault(group, []).append(c)
        needed = [b for group in groups.values() for b in group]
        client = _client() if homes else None
        numpy_labels = self.data.labels is not None
        held = client is not None and all(
            xb.key in homes and (numpy_labels or yb.key in homes) for xb, yb, *_ in needed
        )
        # labels given as NumPy, on held chunks: taken here, not sent (the graph path's chunk
        # tasks take them with the rows)
        given = self.data.labels if held else None
        if client is not None and held:
            # every chunk in the cluster's memory: the tasks go straight to the workers holding
            # them as futures, without building and optimising a graph, which costs a small
            # request more than its rows do (docs/design.md, "Dask performance")
            from distributed import Future

            # (in one message, each placed where its chunks are: see submit_groups)
            futures = client.map(
                _take,
                [labels] * len(groups),
                [
                    [
                        (
                            Future(xb.key, client),
                            None if given is not None else Future(yb.key, client),
                            i,
                            s,
                        )
                        for xb, yb, i, s in g
                    ]
                    for g in groups.values()
                ],
                pure=False,
            )
            results = client.gather(futures)
        else:
            tasks = [dask.delayed(_take, pure=True)(labels, g) for g in groups.values()]
            results = compute(tasks, "mlu rows")
        # the chunks' rows in the order of the chunks (a group's chunks need not be adjacent)
        by_chunk = {c: part for g, res in zip(groups, results) for c, part in zip(members[g], res)}
        parts = [by_chunk[c] for c in sorted(by_chunk)]
        X = np.empty((index.size, self.data.X.shape[1]))
        yk = np.empty(index.size, dtype=np.int64)
        X[order] = np.concatenate([p[0] for p in parts])
        yk[order] = np.concatenate([p[1] for p in parts])
        if given is not None:  # the labels were not sent: checked here
            _, yk = _chunk_Xy(labels, np.zeros((index.size, 0)), given[index], 0, index)  # type: ignore[arg-type]
        return X, yk

    def _homes(self) -> dict:
        """The worker holding each X chunk already in memory (persisted data), looked up once:
        a request's rows on one worker are then taken by one task (no chunk moves; per-task
        overhead, not the rows, is what a small request costs). Empty without a client."""
        if "homes" not in self._rows_cache:
            client = _client()
            held = client.who_has() if client is not None else {}
            homes = {}  # by key of the X and the y chunks
            for xb, yb, _, _ in self._blocks:
                for block in (xb, yb):
                    where = held.get(block.key, ())
                    if where:
                        homes[block.key] = sorted(where)[0]
            self._rows_cache["homes"] = homes
        return self._rows_cache["homes"]

    def sample_rows(self, count: int, seed: int = 0) -> np.ndarray:
        """``count`` rows (sorted) drawn from a few seeded chunks, not from all of them.

        Chunks are taken in a seeded order until they hold ``4·count`` rows (at least two,
        when there are), and the rows drawn uniformly from those: gathering them reads those
        chunks only (docs/design.md, "Dask performance").
        """
        rng = np.random.default_rng(seed)
        sizes = np.array(self.data.row_chunks)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        chosen: list[int] = []
        held = 0
        for c in rng.permutation(len(sizes)):
            if held >= 4 * count and len(chosen) >= min(2, len(sizes)):
                break
            chosen.append(int(c))
            held += int(sizes[c])
        pool = np.concatenate([np.arange(starts[c], starts[c + 1]) for c in sorted(chosen)])
        return np.sort(rng.permutation(pool)[: min(count, pool.size)])

    def gram_rows(self) -> GramRows:
        """The Gauss-Newton rows of every chunk, prepared on the workers (for Woodbury)."""
        return GramRows(self)


@dataclass(frozen=True)
class _Labels:
    """The part of a :class:`ChunkModel` that checking rows needs."""

    classes: np.ndarray


def _take(labels: _Labels, group: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows ``local`` of each ``(X, y, local, start)`` chunk, checked (global row indices in
    errors), float64; ``y`` None: the labels are the client's (placeholders here)."""
    out = []
    for X, y, local, start in group:
        ys = np.asarray(y)[local] if y is not None else np.repeat(labels.classes[:1], len(local))
        out.append(_chunk_Xy(labels, np.asarray(X)[local], ys, start, local + start))  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------- Woodbury


@on_worker
def _gn_prepare(pl: Payload, X, y, start: int) -> tuple:
    """A chunk's Gauss-Newton factors: (network input F, G per layer, hidden per layer)."""
    X, yk = _chunk_Xy(pl.model, X, y, start)
    theta, sizes, act, F, _ = pl.model.problem(X, yk, pl.params)
    G, hidden = _core.gn_terms(theta, sizes, act, F)
    return F, G, hidden


@on_worker
def _gram_block(r: int, a: tuple, b: tuple) -> np.ndarray:
    """``B_a B_bᵀ`` between two chunks' Gauss-Newton rows (row i·r + ρ).

    A row's block for layer l is ``g ⊗ [ã; 1]`` (weights row-major, then the bias), so
    ``b·b' = Σ_l (g·g') (ã·ã' + 1)`` with ã the layer's input (F, then the hidden outputs).
    """
    Fa, Ga, Ha = a
    Fb, Gb, Hb = b
    K = np.zeros((Ga[0].shape[0], Gb[0].shape[0]))
    for ia, ib, ga, gb in zip([Fa, *Ha], [Fb, *Hb], Ga, Gb):
        inner = ia @ ib.T + 1.0
        if r > 1:
            inner = np.repeat(np.repeat(inner, r, axis=0), r, axis=1)
        K += (ga @ gb.T) * inner
    return K


@on_worker
def _gn_jvp(sizes: list, chunk: tuple, V: np.ndarray) -> np.ndarray:
    F, G, hidden = chunk
    return _core.gn_jvp(sizes, F, G, hidden, V)


@on_worker
def _gn_vjp(sizes: list, chunk: tuple, Z: np.ndarray) -> np.ndarray:
    F, G, hidden = chunk
    return _core.gn_vjp(sizes, F, G, hidden, Z)


class GramRows:
    """The Gauss-Newton rows B of dask data, chunk by chunk on the workers.

    Each chunk's factors (its network input, G per layer, the hidden outputs: O(rows·r·width))
    are computed once and persisted on the workers; the Gram matrix ``K = B Bᵀ`` is built
    one block per pair of chunks (each pair once, on a worker) and assembled on the client,
    and the products ``B V`` and ``Bᵀ Z`` are one map (or map-reduce) over the persisted
    factors (docs/design.md, "Dask performance"). A lost worker's factors are recomputed.
    """

    def __init__(self, source: RowSource):
        dask, _ = _dask_modules()
        sent = broadcast(Payload(source.model, source.params))
        blocks = source.data.blocks()
        chunks = [dask.delayed(_gn_prepare, pure=True)(sent, xb, yb, s) for xb, yb, s, _ in blocks]
        self._chunks = list(dask.persist(*chunks))
        self._rows = [rows for _, _, _, rows in blocks]
        sizes = source.model.sizes if source.params == "all" else source.model.sizes[-2:]
        self.sizes = list(sizes)
        self.r = 1 if sizes[-1] == 2 else sizes[-1]

    def gram(self) -> np.ndarray:
        """``K = B Bᵀ``, shape (n·r, n·r): the blocks i ≤ j on the workers, mirrored here."""
        dask, _ = _dask_modules()
        pairs = [(i, j) for i in range(len(self._chunks)) for j in range(i, len(self._chunks))]
        tasks = [
            dask.delayed(_gram_block, pure=True)(self.r, self._chunks[i], self._chunks[j])
            for i, j in pairs
        ]
        edges = np.concatenate([[0], np.cumsum(self._rows)]) * self.r
        K = np.empty((edges[-1], edges[-1]))
        for (i, j), block in zip(pairs, compute(tasks, "mlu Gram blocks")):
            K[edges[i] : edges[i + 1], edges[j] : edges[j + 1]] = block
            if i != j:
                K[edges[j] : edges[j + 1], edges[i] : edges[i + 1]] = block.T
        return K

    def jvp(self, V: np.ndarray) -> np.ndarray:
        """``B Vᵀ`` for V of shape (m, p): shape (n·r, m), chunk by chunk."""
        dask, _ = _dask_modules()
        sent = broadcast(np.ascontiguousarray(V))
        tasks = [dask.delayed(_gn_jvp, pure=True)(self.sizes, c, sent) for c in self._chunks]
        return np.concatenate(compute(tasks, "mlu B·v"), axis=0)

    def vjp(self, Z: np.ndarray) -> np.ndarray:
        """``Bᵀ Z`` for Z of shape (n·r, m): shape (m, p), a sum over the chunks."""
        dask, _ = _dask_modules()
        edges = np.concatenate([[0], np.cumsum(self._rows)]) * self.r
        tasks = [
            dask.delayed(_gn_vjp, pure=True)(
                self.sizes, c, np.ascontiguousarray(Z[edges[i] : edges[i + 1]])
            )
            for i, c in enumerate(self._chunks)
        ]
        return np.asarray(compute(tasks, "mlu Bᵀ·z", _add))


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
    :func:`mlu.detection.detect.scores_self_influence`). For ``params="last"`` each chunk's checked
    last-layer inputs (rows x (hidden + 1), narrower than X) are computed once and persisted
    on the workers for both passes (the sum and the scores): one forward pass per chunk, not
    two (docs/design.md, "Dask performance"), when they take at most a quarter of the
    workers' memory; they are released with the returned array. On chunks held in the
    cluster's memory (:func:`held_groups`) each pass is one task per worker, and the scores
    are computed at once: the array returned is persisted (its chunks are futures).
    """
    dask, _ = _dask_modules()
    data = as_dask_data(model, X, y)
    p = _selected_theta(model, params).shape[0]
    check_matrix_fits(p, copies=2.2, what="the Hessian and its factorisation")
    cm = ChunkModel.of(model)
    width = int(model.sizes_[-2]) + 1  # a prepared chunk: features and labels per row
    persist = params == "last" and _fits_on_workers(8 * data.n * width)
    held = held_groups(data) if persist else None
    if held is not None:  # one task per worker over the chunks it holds, for both passes
        client, groups = held
        shared = sent(Payload(cm, params, curvature))
        prepared = submit_groups(client, groups, _prepare_all, shared)
        # one message, each task placed where its prepared chunks are
        parts = client.map(_prepared_hessian_all, [shared] * len(prepared), prepared, pure=False)
        H = _add(*gather(client, parts, "mlu hessian sum")) / data.n
        H[np.diag_indices_from(H)] += float(model.l2)
    elif persist:
        shared = broadcast(Payload(cm, params, curvature))
        blocks = data.blocks(keep_empty=True)
        prepared = dask.persist(
            *[dask.delayed(_prepare, pure=True)(shared, xb, yb, s) for xb, yb, s, r in blocks if r]
        )
        parts = [dask.delayed(_prepared_hessian, pure=True)(shared, c) for c in prepared]
        H = np.asarray(compute(parts, "mlu hessian sum", _add)) / data.n
        H[np.diag_indices_from(H)] += float(model.l2)
    else:
        H = hessian(model, data, None, params=params, curvature=curvature)
    if solver == "cholesky":
        factor, kind = _linalg.cholesky(H, damping), "cholesky"
    else:
        factor, kind = _linalg.pinv_factor(H, damping, rcond), "projection"
    del H
    payload = Payload(cm, params, curvature, factor, kind)
    if not persist:
        return chunk_map(data, _self_influence, payload)
    _, da = _dask_modules()
    if held is not None:
        return _held_scores(client, data, groups, prepared, sent(payload))
    shared = broadcast(payload)
    pieces, it = [], iter(prepared)
    for _, _, _, rows in blocks:
        if rows == 0:
            pieces.append(da.zeros((0,), dtype=np.float64))
            continue
        task = dask.delayed(_prepared_self_influence, pure=True)(shared, next(it))
        pieces.append(da.from_delayed(task, shape=(rows,), dtype=np.float64))
    return da.concatenate(pieces, axis=0)


def _held_scores(client, data: DaskData, groups: list, prepared: list, payload) -> Any:
    """The scores of the prepared chunks of :func:`held_groups`: submitted at once, one task
    per chunk on the worker holding its prepared group, and returned as the persisted dask
    array (n,) they make, with the row chunks of ``data`` (no graph left to run)."""
    from dask.highlevelgraph import HighLevelGraph

    dask, da = _dask_modules()
    name = "mlu-self-influence-" + dask.base.tokenize(payload, [c.key for c in prepared])
    where = {}  # first row of a chunk -> (its group's prepared chunks, place in the group)
    for (_, blocks, _), chunks in zip(groups, prepared):
        where.update({start: (chunks, j) for j, (_, _, start, _) in enumerate(blocks)})
    layer: dict = {}
    tasks = []  # (key, prepared chunks, place), in one message, placed where the chunks are
    for i, (_, _, start, rows) in enumerate(data.blocks(keep_empty=True)):
        if rows == 0:
            layer[(name, i)] = np.zeros(0)
        else:
            tasks.append(((name, i), *where[start]))
    keys, chunks, places = zip(*tasks)
    futures = client.map(
        _prepared_self_influence_at, [payload] * len(keys), chunks, places, key=list(keys)
    )
    layer.update(zip(keys, futures))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[])
    return da.Array(graph, name, (data.row_chunks,), dtype=np.float64)


@on_worker
def _prepare_all(pl: Payload, group: list) -> list:
    """:func:`_prepare` of each of a worker's chunks (see :func:`held_groups`)."""
    return [_prepare(pl, *chunk) for chunk in group]  # (on_worker nests: one trim, at the end)


@on_worker
def _prepared_hessian_all(pl: Payload, chunks: list) -> np.ndarray:
    return _add(*[_prepared_hessian(pl, chunk) for chunk in chunks])


@on_worker
def _prepared_self_influence_at(pl: Payload, chunks: list, j: int) -> np.ndarray:
    return _prepared_self_influence(pl, chunks[j])


def _fits_on_workers(nbytes: int, share: float = 0.25) -> bool:
    """Whether ``nbytes`` persisted take at most ``share`` of the workers' memory limits
    together (of this machine's available memory without a client, or with unlimited
    workers): data larger than that is read again rather than held."""
    client = _client()
    limits = []
    if client is not None:
        workers = client.scheduler_info().get("workers", {}).values()
        limits = [int(w.get("memory_limit") or 0) for w in workers]
    if not limits or 0 in limits:
        return nbytes <= share * available_memory_bytes()
    return nbytes <= share * sum(limits)


@on_worker
def _prepared_hessian(pl: Payload, chunk) -> np.ndarray:
    F, yk = chunk
    theta, sizes, act = _prepared_problem(pl)
    return _core.hessian(theta, sizes, act, F, yk, 0.0, pl.curvature) * F.shape[0]


@on_worker
def _prepared_self_influence(pl: Payload, chunk) -> np.ndarray:
    F, yk = chunk
    theta, sizes, act = _prepared_problem(pl)
    return np.asarray(_core.self_influence(theta, sizes, act, F, yk, pl.matrix, pl.kind))


def _prepared_problem(pl: Payload) -> tuple[np.ndarray, list[int], str]:
    """``(theta, sizes, activation)`` of a prepared chunk's problem (see :func:`_prepare`)."""
    cm = pl.model
    if pl.params == "all":
        return cm.theta, list(cm.sizes), cm.activation
    return cm.theta[cm.last], list(cm.sizes[-2:]), "relu"


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
