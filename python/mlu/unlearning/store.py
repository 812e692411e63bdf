"""Deletion requests that survive crashes: :class:`DeletionStore`.

A store is a directory (docs/design.md, "Deletion store")::

    base.npz              the trained model θ̂ (never changes)
    unlearner-0.npz       the Unlearner built at θ̂ (never changes; what verify() replays from)
    unlearner-<k>.npz     a checkpoint: the Unlearner's state after request k (the latest only)
    .checkpoint-<k>-<t>/  a checkpoint being written in the background (its ``busy`` file is
                          locked by the writing process while it works)
    model.npz             the current model, after the last request in the log
    log.sqlite            the request log (SQLite, WAL, synchronous=FULL): one row per request,
                          the metadata, and a copy of the current θ
    lock                  the writers' lock file (fcntl.flock)

The log is the truth; every other file is derived from it and from θ̂. A request k

1. takes the lock and writes ``.pending-request-<k>.json`` (its id and rows, to say which
   request a crash interrupted);
2. computes the new model in memory (:meth:`mlu.Unlearner.forget`);
3. inserts its log row and the new θ and commits, in one SQLite transaction (one fsync of the
   write-ahead log): **the commit point**;
4. writes ``model.npz`` (to a temporary file renamed over it) and removes the pending file.

A kill before 3 completes leaves the log and ``model.npz`` as before the request, and the next
:meth:`DeletionStore.open` deletes the pending file ("rolled back"); a kill after it leaves a
committed row whose θ is in the log, and ``open`` rewrites ``model.npz`` from it when that is
behind, missing or torn ("finished"). SQLite makes 3 atomic and durable. A ``model.npz`` that
holds any other model is an error, never overwritten. :attr:`DeletionStore.recovered` says
what ``open`` did.

The Unlearner's state (the downdated curvature: 67 MB for the paper's Fashion-MNIST model in
Woodbury form, benchmarks/results/store_overhead.md) is too large to write with every request, so
it is checkpointed every ``checkpoint_every`` requests (and by :meth:`DeletionStore.checkpoint`)
and the requests after the checkpoint are replayed from the log when the Unlearner is next
needed. Replay is exact because a request is a deterministic function of the state and its rows;
every replayed model is checked against the hash in its log row.

A checkpoint is written off the request path, in three steps:

1. the request that makes one due takes a snapshot of the Unlearner under the lock (a shallow
   copy: a request replaces the Unlearner's arrays, it never changes them in place) and creates
   ``.checkpoint-<k>-<t>/busy``, locked (``fcntl.flock``) while this process works on it;
2. a thread of this process writes the state into that directory, flushes it to disk and hashes
   it, without the lock (requests are served meanwhile); it touches nothing else;
3. the next request, under the lock, renames the file to ``unlearner-<k>.npz``, fsyncs the
   directory, and records it (number and SHA-256) in the log's metadata **in its own
   transaction** (no fsync of the checkpoint's own); when no request comes, :meth:`close` or
   :meth:`checkpoint` records it in a transaction of its own. The previous file is deleted
   later (by the next checkpoint's thread, ``close`` or ``open``), not on a request's path.

A kill before the commit of 3 leaves the previous checkpoint in force, and ``open`` deletes what
was left (a ``.checkpoint-*`` directory whose ``busy`` lock nobody holds, a renamed file the log
does not name); the log never names a file before it is durable. A checkpoint that fails changes
nothing either: the next request says so (RuntimeWarning) and it is tried again
``checkpoint_every`` requests later. The replay from the last checkpoint is therefore at most
``checkpoint_every`` requests plus those served while one was written.

Testing hook: when the environment variable ``MLU_STORE_FAULT`` names one of
:data:`FAULT_POINTS`, the process kills itself with SIGKILL at that point of a request or a
checkpoint (the crash tests use it; it costs one dictionary look-up per point).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..engine import _dask
from ..engine._validation import as_features, as_labels
from ..engine.model import MLP
from ..exceptions import StoreCorruptError, StoreLockedError, UpdateShortenedWarning
from . import forgetting
from .unlearner import Unlearner

__all__ = ["FAULT_POINTS", "FORMAT_TAG", "DeletionStore", "VerifyResult", "model_hash"]

FORMAT_TAG = "mlu-deletion-store"
FORMAT_VERSION = 1
LOG = "log.sqlite"
BASE = "base.npz"
MODEL = "model.npz"
LOCK = "lock"
FAULT_ENV = "MLU_STORE_FAULT"
FAULT_POINTS = (
    "begin",  # lock taken, pending request file written
    "solved",  # the new model computed in memory
    "in-commit",  # log row and model inserted, transaction not committed
    "committed",  # transaction committed, model.npz not yet replaced
    "model-written",  # model.npz replaced, pending request file not removed
    "checkpoint-begun",  # checkpoint thread started: its directory made, nothing written
    "checkpoint-saved",  # state written, flushed and hashed in that directory, not renamed
    "checkpoint-written",  # checkpoint file in place, not recorded in the log's metadata
    "checkpoint-committed",  # checkpoint recorded, older checkpoint not removed
)
"""Where ``MLU_STORE_FAULT`` can kill a request or a checkpoint (in order)."""

_OPTIONS = ("curvature", "damping", "params", "matrix")
_FORGET_OPTIONS = ("mode", "epochs", "noise", "anneal", "shrink")
"""The forgetting settings of every request (:meth:`mlu.Unlearner.forget`), recorded at the
store's creation so that a replay uses the same ones."""
_PENDING_REQUEST = re.compile(r"^\.pending-request-(\d+)\.json$")
_PENDING_CHECKPOINT = re.compile(r"^\.pending-unlearner-(\d+)\.npz$")
_CHECKPOINT = re.compile(r"^unlearner-(\d+)\.npz$")
_CHECKPOINT_WORK = re.compile(r"^\.checkpoint-(\d+)-[0-9a-f]+$")
_BUSY = "busy"
_TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
"""The temporary names of mlu._files.atomic_path (``.NAME.XXXXXXXX.tmp``)."""

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL,
    rows TEXT NOT NULL,
    rows_hash TEXT NOT NULL,
    model_before TEXT NOT NULL,
    model_after TEXT NOT NULL,
    cost REAL NOT NULL,
    "check" TEXT NOT NULL,
    notes TEXT NOT NULL
);
CREATE TABLE current (k INTEGER PRIMARY KEY CHECK (k = 0), seq INTEGER NOT NULL, theta BLOB);
"""
_COLUMNS = (
    "seq",
    "id",
    "time",
    "rows",
    "rows_hash",
    "model_before",
    "model_after",
    "cost",
    "check",
    "notes",
)


def _fault(point: str) -> None:
    """Kill this process with SIGKILL if ``MLU_STORE_FAULT`` names ``point`` (tests only)."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def model_hash(model: MLP) -> str:
    """SHA-256 of a model's architecture, classes and parameters θ (hex).

    Parameters
    ----------
    model : mlu.MLP
        A fitted model.

    Returns
    -------
    str
        64 hex digits; equal for two models exactly when their layer sizes, activations, l2,
        classes and every bit of ``theta_`` (shape (p,)) agree.
    """
    h = hashlib.sha256()
    head = {
        "sizes": [int(s) for s in model.sizes_],
        "activation": str(model.activation),
        "l2": float(model.l2),
        "classes": [str(c) for c in model.classes_],
    }
    h.update(json.dumps(head, sort_keys=True).encode())
    h.update(np.ascontiguousarray(model.theta_, dtype="<f8").tobytes())
    return h.hexdigest()


def _data_hash(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(X.shape).encode())
    h.update(np.ascontiguousarray(X, dtype="<f8").tobytes())
    h.update("\x00".join(str(v) for v in y.tolist()).encode())
    return h.hexdigest()


def _rows_hash(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> str:
    """SHA-256 of the removed rows' indices, features and labels."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(rows, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(X[rows], dtype="<f8").tobytes())
    h.update("\x00".join(str(v) for v in y[rows].tolist()).encode())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be fsynced
        _fsync_file(path)


def _flush_in_steps(path: Path, step: int = 4 << 20) -> None:
    """fsync ``path``, first writing its pages out ``step`` bytes at a time (Linux).

    On ext4 an fsync of the log (a request's commit) can wait for the data of other files that
    the same journal commit writes out; a checkpoint flushed in small steps keeps that wait as
    short as one step instead of the whole file (benchmarks/store_overhead.py measures the
    requests served while a checkpoint is written).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        range_sync = _sync_file_range()
        if range_sync is not None:
            size = os.fstat(fd).st_size
            for offset in range(0, size, step):
                # WAIT_BEFORE | WRITE | WAIT_AFTER: this step is on disk before the next one
                if range_sync(fd, offset, step, 1 | 2 | 4) != 0:
                    break  # the fsync below still makes the file durable
        os.fsync(fd)
    finally:
        os.close(fd)


_RANGE_SYNC: list[Any] = []


def _sync_file_range() -> Any:
    """libc's sync_file_range (Linux), or None."""
    if not _RANGE_SYNC:
        func = None
        if sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(OSError, AttributeError):
                func = ctypes.CDLL(None, use_errno=True).sync_file_range
                func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                func.restype = ctypes.c_int
        _RANGE_SYNC.append(func)
    return _RANGE_SYNC[0]


def _remove_stale_temp_files(directory: Path) -> None:
    """Delete the temporary files of ``mlu._files.atomic_path`` a killed writer left in
    ``directory`` itself (not below it, as ``mlu._files.remove_stale_temp_files`` would: a
    checkpoint being written has its own directory, where its writer's are not stale)."""
    for name in os.listdir(directory):
        if _TEMP_FILE.match(name):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                (directory / name).unlink()


def _busy(work: Path) -> bool:
    """Whether a live writer holds the ``busy`` lock of the checkpoint directory ``work``."""
    import fcntl

    try:
        fd = os.open(work / _BUSY, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return False  # made under the lock with its busy file: this one's writer died
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the lock if it was taken
    return False


@dataclasses.dataclass
class _CheckpointJob:
    """A checkpoint being written: the state after request ``seq`` and where it is written."""

    seq: int
    model_after: str
    unlearner: Unlearner | None
    work: Path
    busy_fd: int
    sha: str = ""
    written: bool = False  # saved, flushed and hashed: left to rename and record
    error: BaseException | None = None


def _finite(value: Any) -> Any:
    """JSON-safe: a non-finite float becomes None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def _as_rows(rows: Any) -> list[int]:
    """A request's row indices as a sorted list of int (the Unlearner checks the rest)."""
    arr = np.asarray(rows)
    if arr.dtype == bool:
        raise TypeError("rows must be integer indices into the data, not a boolean mask")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"rows must be a non-empty 1-D list of indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"rows must be integers, got dtype {arr.dtype}")
    return sorted(int(i) for i in arr)


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """What :meth:`DeletionStore.verify` found.

    Attributes
    ----------
    ok : bool
        Every replayed request gave the model hash of its log row, and the last one is bit for
        bit the stored ``model.npz``.
    requests : int
        Requests replayed.
    first_mismatch : int or None
        The sequence number of the first request whose replay differed from its log row.
    max_abs_diff : float
        ``max |θ_replayed − θ_stored|`` of the final model (0.0 when bit-equal).
    seconds : float
        Time the replay took.
    """

    ok: bool
    requests: int
    first_mismatch: int | None
    max_abs_diff: float
    seconds: float

    def describe(self) -> str:
        """One line for people."""
        if self.ok:
            return (
                f"verified: {self.requests} request(s) replayed from θ̂ reproduce the stored "
                f"model bit for bit ({self.seconds:.2f} s)"
            )
        where = (
            f"request {self.first_mismatch} differs from its log row"
            if self.first_mismatch is not None
            else "the final model differs from model.npz"
        )
        return (
            f"NOT verified: {where}; max |Δθ| of the final model {self.max_abs_diff:.3g} "
            f"({self.requests} request(s) replayed)"
        )


class DeletionStore:
    """A directory that serves deletion requests on a trained MLP and keeps a crash-safe log.

    Make one with :meth:`create` and reopen it with :meth:`open`; see the module docs and
    docs/design.md ("Deletion store") for the files and the commit protocol.

    Attributes
    ----------
    directory : pathlib.Path
        The store.
    recovered : str or None
        What :meth:`open` had to do after a crash ("rolled back request ...", "finished request
        ..."), or None when the store was consistent.
    options : dict
        The Unlearner's options (curvature as resolved at the build, damping, params, matrix)
        and the forgetting settings of every request (mode, epochs, noise, anneal; a store
        created before they were recorded serves ``mode="exact"``, as it did).
    checkpoint_every : int
        Requests between checkpoints of the Unlearner's state (written in the background).
    lock_timeout : float
        Seconds a writer waits for another one before :class:`~mlu.exceptions.StoreLockedError`.
    """

    def __init__(
        self,
        directory: Path,
        db: sqlite3.Connection,
        meta: dict[str, str],
        X: np.ndarray | None,
        y: np.ndarray | None,
        base: MLP,
        *,
        lock_timeout: float,
        checkpoint_every: int,
    ):
        self.directory = directory
        self._db = db
        self._meta = meta
        self._X, self._y = X, y
        self.options: dict[str, Any] = json.loads(meta["options"])
        # a store written before the forgetting modes served the exact update: it still does
        self._forget_options: dict[str, Any] = {
            k: self.options[k] for k in _FORGET_OPTIONS if k in self.options
        } or {"mode": "exact"}
        self.lock_timeout = float(lock_timeout)
        self.checkpoint_every = int(checkpoint_every)
        self.recovered: str | None = None
        self._lock_fd: int | None = os.open(directory / LOCK, os.O_RDWR)
        self._base = base
        self._unlearner: Unlearner | None = None
        self._seq = 0
        self._model_hash = meta["base_hash"]
        self._model = self._base
        self._checkpoint_thread: threading.Thread | None = None
        # being written, or written and not yet recorded: one at a time
        self._checkpoint_job: _CheckpointJob | None = None
        # (request, error) of a checkpoint that failed in the background: reported at the next
        # request
        self._checkpoint_failed: tuple[int, BaseException] | None = None
        self._checkpoint_retry_at = 0  # no new attempt before this request after a failure
        self._checkpoint_times: list[tuple[int, float]] = []  # (request, seconds to write)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        directory: str | os.PathLike,
        model: MLP,
        X,
        y,
        *,
        data_source: dict[str, Any] | None = None,
        lock_timeout: float = 10.0,
        checkpoint_every: int = 32,
        **unlearner_options: Any,
    ) -> DeletionStore:
        """Build the Unlearner on ``model`` and its training data and write a new store.

        Parameters
        ----------
        directory : path
            Must not exist; it appears whole or not at all (written beside it, then renamed).
        model : mlu.MLP
            The trained model θ̂ (never modified).
        X : array-like, shape (n, d)
            The data it was trained on (NumPy; dask arrays are refused).
        y : array-like, shape (n,)
            Its labels.
        data_source : dict, optional
            Where the data came from (recorded for the command line, which reopens it).
        lock_timeout : float, default 10.0
            Seconds a writer waits for another.
        checkpoint_every : int, default 32
            Requests between checkpoints of the Unlearner's state.
        **unlearner_options
            ``curvature``, ``damping``, ``params``, ``matrix`` of :class:`mlu.Unlearner`, and
            the forgetting settings ``mode``, ``epochs``, ``noise``, ``anneal``, ``shrink`` of
            its :meth:`~mlu.Unlearner.forget` (default: its defaults), recorded so that every
            request and every replay uses the same ones. The default ``epochs``, ``noise`` and
            ``shrink`` are recorded as None: each request's own, scaled with the share of the
            data forgotten so far (:func:`mlu.forgetting.scaled_settings`), the same for a
            replay of the same requests.

        Returns
        -------
        DeletionStore

        Raises
        ------
        FileExistsError
            ``directory`` exists.
        ValueError, TypeError
            Bad model, data or options (as :class:`mlu.Unlearner` raises them).
        """
        directory = Path(directory)
        unknown = set(unlearner_options) - set(_OPTIONS) - set(_FORGET_OPTIONS)
        if unknown:
            raise TypeError(
                f"unknown Unlearner option(s) {sorted(unknown)}; expected some of "
                f"{_OPTIONS + _FORGET_OPTIONS}"
            )
        forget_options = {
            k: unlearner_options.pop(k) for k in _FORGET_OPTIONS if k in unlearner_options
        }
        mode, epochs, noise, _, anneal, shrink = forgetting.check_settings(  # before the build
            forget_options.get("mode", forgetting.DEFAULT_MODE),
            forget_options.get("epochs", forgetting.DEFAULT_EPOCHS),
            forget_options.get("noise", forgetting.DEFAULT_NOISE),
            None,
            forget_options.get("anneal", forgetting.DEFAULT_ANNEAL),
            shrink=forget_options.get("shrink", forgetting.DEFAULT_SHRINK),
            full=True,
        )
        _check_policy(lock_timeout, checkpoint_every)
        if directory.exists():
            raise FileExistsError(
                f"{directory}: already exists; DeletionStore.open it or choose a new directory"
            )
        if _dask.is_dask(X, y):
            raise TypeError("a DeletionStore takes NumPy data (its log hashes every row)")
        unlearner = Unlearner(model, X, y, **unlearner_options)
        Xc = as_features(X, model.n_features_in_)
        yc = as_labels(y, Xc.shape[0])
        options = {
            "curvature": unlearner.curvature,
            "damping": unlearner.damping,
            "params": unlearner.params,
            "matrix": unlearner_options.get("matrix", "ggn"),
            "mode": mode,
            "epochs": epochs,
            "noise": noise,
            "anneal": anneal,
            "shrink": shrink,
        }
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide the store from its group
            model.save(tmp / BASE)
            model.save(tmp / MODEL)
            unlearner.save(tmp / "unlearner-0.npz")
            for name in (BASE, MODEL, "unlearner-0.npz"):
                _fsync_file(tmp / name)
            meta = {
                "format": FORMAT_TAG,
                "version": str(FORMAT_VERSION),
                "mlu_version": __version__,
                "created": _utc_now(),
                "data_hash": _data_hash(Xc, yc),
                "n": str(Xc.shape[0]),
                "options": json.dumps(options),
                "choice": unlearner.choice,
                "base_hash": model_hash(model),
                "checkpoint": "0",
                "checkpoint_sha256": _file_sha256(tmp / "unlearner-0.npz"),
                "initial_sha256": _file_sha256(tmp / "unlearner-0.npz"),
                "data_source": json.dumps(data_source),
            }
            db = sqlite3.connect(tmp / LOG, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
                db.execute("INSERT INTO current VALUES (0, 0, NULL)")  # θ̂: base.npz
                db.execute("COMMIT")
            finally:
                db.close()
            (tmp / LOCK).touch()
            _fsync_dir(tmp)
            os.rename(tmp, directory)  # refuses a non-empty directory that appeared meanwhile
            _fsync_dir(directory.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        store = cls.open(
            directory, Xc, yc, lock_timeout=lock_timeout, checkpoint_every=checkpoint_every
        )
        store._unlearner = unlearner
        return store

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike,
        X=None,
        y=None,
        *,
        lock_timeout: float = 10.0,
        checkpoint_every: int = 32,
    ) -> DeletionStore:
        """Open a store, finishing or rolling back a request a crash interrupted.

        Parameters
        ----------
        directory : path
            A store written by :meth:`create`.
        X : array-like, shape (n, d), optional
            The data the store was created on (checked by hash). Without it the store is read
            only: :meth:`log`, :attr:`model`, :meth:`export` work, :meth:`forget` and
            :meth:`verify` refuse.
        y : array-like, shape (n,), optional
            Its labels (with ``X``).
        lock_timeout : float, default 10.0
            Seconds to wait for a writer of another process (recovery takes the lock).
        checkpoint_every : int, default 32
            Requests between checkpoints of the Unlearner's state.

        Returns
        -------
        DeletionStore
            :attr:`recovered` says what a crash left and what was done about it.

        Raises
        ------
        FileNotFoundError
            Not a store.
        ValueError
            X and y differ from the data of the store (hash mismatch).
        StoreCorruptError
            The log, the base model or the current model is damaged or disagrees with the log.
        StoreLockedError
            Another process held the lock for longer than ``lock_timeout``.
        """
        directory = Path(directory)
        _check_policy(lock_timeout, checkpoint_every)
        if not (directory / LOG).is_file() or not (directory / LOCK).is_file():
            raise FileNotFoundError(f"{directory}: not a deletion store (no {LOG} or {LOCK})")
        db = _connect(directory / LOG)
        try:
            meta = _read_meta(db, directory / LOG)
        except BaseException:
            db.close()
            raise
        Xc = yc = None
        try:
            if (X is None) != (y is None):
                raise TypeError("give both X and y, or neither (read only)")
            base = _load_model_file(directory / BASE)
            if model_hash(base) != meta["base_hash"]:
                raise StoreCorruptError(
                    f"{directory / BASE}: the base model differs from the one the store was "
                    "created with (hash mismatch)"
                )
            if X is not None:
                if _dask.is_dask(X, y):
                    raise TypeError("a DeletionStore takes NumPy data (its log hashes every row)")
                Xc = as_features(X, base.n_features_in_)
                yc = as_labels(y, Xc.shape[0])
                if _data_hash(Xc, yc) != meta["data_hash"]:
                    raise ValueError(
                        f"{directory}: X and y differ from the data the store was created on "
                        "(hash mismatch); a store serves requests on its own data only"
                    )
            store = cls(
                directory,
                db,
                meta,
                Xc,
                yc,
                base,
                lock_timeout=lock_timeout,
                checkpoint_every=checkpoint_every,
            )
        except BaseException:
            db.close()
            raise
        try:
            with store._locked():
                store.recovered = store._recover()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Wait for a checkpoint being written, then release the log and the lock file.

        The store stays usable on disk. A checkpoint that failed meanwhile is reported as a
        RuntimeWarning (the store is consistent; it replays from the previous checkpoint).
        """
        if self._lock_fd is not None:
            self._wait_for_checkpoint()
            job = self._written_checkpoint()
            if job is not None:
                try:
                    with self._locked():
                        self._record_written_checkpoint()
                except Exception as exc:  # the store is consistent: say so, do not fail
                    self._checkpoint_failed = (job.seq, exc)
            self._drop_checkpoint()
            with contextlib.suppress(OSError):
                self._remove_superseded()
            self._warn_checkpoint_failed(stacklevel=3)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._db.close()

    def __enter__(self) -> DeletionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    @property
    def model(self) -> MLP:
        """The current model: θ̂ with every logged request removed (do not modify it)."""
        return self._model

    @property
    def n_requests(self) -> int:
        """Requests in the log."""
        return self._seq

    @property
    def data_source(self) -> dict[str, Any] | None:
        """What :meth:`create` was told about where the data came from (for the CLI)."""
        value = json.loads(self._meta["data_source"])
        return value if isinstance(value, dict) else None

    def log(self) -> list[dict[str, Any]]:
        """The requests, oldest first, one dict each.

        Returns
        -------
        list of dict
            Keys: ``seq`` (1, 2, ...), ``id``, ``time`` (UTC, ISO 8601), ``rows`` (list of int),
            ``rows_hash`` (SHA-256 of their indices, features and labels), ``model_before``,
            ``model_after`` (:func:`model_hash`), ``cost`` (seconds of the Unlearner's
            request), ``check`` (the update check's numbers: ``objective_before``/``after``,
            ``grad_norm_before``/``after``, ``predicted_change``, ``actual_change``,
            ``step``; None without a check) and ``notes``.
        """
        try:
            cur = self._db.execute(
                "SELECT seq, id, time, rows, rows_hash, model_before, model_after, cost, "
                '"check", notes FROM requests ORDER BY seq'
            )
            return [_record(row) for row in cur.fetchall()]
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            raise StoreCorruptError(f"{self.directory / LOG}: unreadable log ({exc})") from exc

    def export(self, path: str | os.PathLike) -> Path:
        """Write the current model to ``path``: ``.npz`` (mlu) or ``.pt`` (a PyTorch state dict).

        The file appears whole or not at all. Returns the path.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".pt", ".pth"):
            raise ValueError(f"export to .npz or .pt, got {path.name!r}")
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            if suffix == ".npz":
                self._model.save(tmp)
            else:
                import torch  # optional; to_torch names the extra when it is missing

                net = self._model.to_torch()
                torch.save(net.state_dict(), tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return path

    # ------------------------------------------------------------------ requests
    def forget(self, rows, request_id: str | None = None) -> dict[str, Any]:
        """Remove the samples ``rows`` and log the request, atomically.

        Parameters
        ----------
        rows : array-like of int, shape (m,)
            Indices into the store's data, as :meth:`mlu.Unlearner.forget` takes them.
        request_id : str, optional
            The request's id (default: a new random one). A request whose id is in the log
            already is not applied again: its record is returned (``applied`` False), so a
            client may retry after a crash; the same id with other rows is refused.

        Returns
        -------
        dict
            The request's log record (see :meth:`log`) with ``applied``: whether this call
            applied it.

        Raises
        ------
        ValueError, TypeError
            A bad request (the store is unchanged), or a store opened without its data.
        StoreLockedError
            Another process held the lock for longer than :attr:`lock_timeout`.

        Notes
        -----
        When the request makes a checkpoint due (:attr:`checkpoint_every`), the state is
        written by a thread after the request returns (module docs); the request itself only
        takes a snapshot. A checkpoint that failed is reported here, at the next request, as a
        RuntimeWarning.
        """
        self._warn_checkpoint_failed(stacklevel=3)
        X, y = self._need_data("forget")
        wanted = _as_rows(rows)
        if request_id is not None:
            request_id = str(request_id)
            if not request_id.strip():
                raise ValueError("request_id must not be empty")
        with self._locked():
            self._sync()
            if request_id is not None:
                found = self._record_by_id(request_id)
                if found is not None:
                    if found["rows"] != wanted:
                        raise ValueError(
                            f"request id {request_id!r} was already used for rows "
                            f"{found['rows']}, not {wanted}"
                        )
                    return {**found, "applied": False}
            else:
                request_id = uuid.uuid4().hex
            record = self._apply(request_id, wanted, X, y)
            if self._checkpoint_due():
                self._start_checkpoint()
        return {**record, "applied": True}

    def _apply(self, request_id: str, rows: list[int], X: np.ndarray, y: np.ndarray) -> dict:
        """Steps 1-4 of a request (module docs), under the lock, with the store in sync; step 3
        of a checkpoint when the thread has written one."""
        d = self.directory
        seq = self._seq + 1
        pending_request = d / f".pending-request-{seq}.json"
        pending_request.write_text(json.dumps({"seq": seq, "id": request_id, "rows": rows}))
        _fault("begin")
        committed = False
        try:
            unlearner = self._current_unlearner()
            start = time.perf_counter()
            result = unlearner.forget(rows, **self._forget_options)
            cost = time.perf_counter() - start
            _fault("solved")
            new_model: MLP = unlearner.model  # = result.model
            after = model_hash(new_model)
            check = (
                {k: _finite(v) for k, v in dataclasses.asdict(result.checks[-1]).items()}
                if result.checks
                else None
            )
            record = {
                "seq": seq,
                "id": request_id,
                "time": _utc_now(),
                "rows": rows,
                "rows_hash": _rows_hash(X, y, np.asarray(rows, dtype=np.int64)),
                "model_before": self._model_hash,
                "model_after": after,
                "cost": cost,
                "check": check,
                "notes": list(result.notes),
            }
            values = [
                json.dumps(record[c]) if c in ("rows", "check", "notes") else record[c]
                for c in _COLUMNS
            ]
            # a checkpoint the thread has written is renamed into place now and recorded in
            # this request's transaction (no fsync of its own)
            job = self._written_checkpoint()
            try:
                if job is not None and not self._place_checkpoint(job):
                    job = None
            except Exception as exc:  # the request goes on; the checkpoint is tried again
                self._drop_checkpoint()
                self._checkpoint_failed = (job.seq, exc) if job is not None else None
                self._checkpoint_retry_at = seq + self.checkpoint_every
                job = None
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    f"INSERT INTO requests VALUES ({', '.join('?' * len(_COLUMNS))})", values
                )
                theta = np.ascontiguousarray(new_model.theta_, dtype="<f8").tobytes()
                self._db.execute("UPDATE current SET seq = ?, theta = ? WHERE k = 0", (seq, theta))
                if job is not None:
                    self._record_checkpoint(job)
                _fault("in-commit")
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if job is not None:  # its file, in place, is not named: the next open deletes it
                    self._drop_checkpoint()
                raise
            committed = True
            if job is not None:
                self._checkpoint_recorded(job)
            _fault("committed")
            new_model.save(d / MODEL)  # derived from the log: no fsync (recovery rewrites it)
            _fault("model-written")
            pending_request.unlink()
        except BaseException:
            if not committed:
                # the log was not touched: drop what was written and the advanced Unlearner
                self._unlearner = None
                with contextlib.suppress(FileNotFoundError):
                    pending_request.unlink()
            else:  # committed: the next open (or request) writes model.npz from the log
                self._unlearner = None
                self._seq = -1
            raise
        self._seq = seq
        self._model = new_model
        self._model_hash = after
        return record

    def checkpoint(self) -> None:
        """Write the Unlearner's state now, in this thread, so that the next open replays nothing.

        Waits for a checkpoint being written in the background and records it first. Does
        nothing when the Unlearner is not loaded or the last checkpoint is current.

        Raises
        ------
        OSError, StoreCorruptError, StoreLockedError
            The checkpoint could not be written; the store is as before (the previous
            checkpoint stays in force).
        """
        self._wait_for_checkpoint()
        with self._locked():
            self._sync()
            self._record_written_checkpoint()
            if self._unlearner is None or self._checkpoint_in_force()[0] >= self._seq:
                return
            job = self._begin_checkpoint()
        self._checkpoint_job = job
        self._write_checkpoint(job)
        if job.error is not None:
            self._drop_checkpoint()
            raise job.error
        with self._locked():
            self._record_written_checkpoint()

    # The protocol of a checkpoint (module docs): _begin_checkpoint (request path, under the
    # lock), _write_checkpoint (its thread, no lock), _place_checkpoint and _record_checkpoint
    # (under the lock: with the next request, or at close or checkpoint()), and
    # _checkpoint_recorded. Only the thread that owns the store touches the log and the lock;
    # the checkpoint's thread touches its job and its own directory.

    def _checkpoint_due(self) -> bool:
        return (
            self._unlearner is not None
            and self._checkpoint_job is None
            and self._seq - int(self._meta["checkpoint"]) >= self.checkpoint_every
            and self._seq >= self._checkpoint_retry_at
        )

    def _start_checkpoint(self) -> None:
        """Snapshot the state and start the thread that writes it (under the lock, after a
        committed request: a failure here is reported at the next request, never raised)."""
        try:
            self._checkpoint_job = self._begin_checkpoint()
            thread = threading.Thread(
                target=self._write_checkpoint,
                args=(self._checkpoint_job, True),
                name=f"mlu-store-checkpoint-{self._seq}",
            )
            thread.start()
            self._checkpoint_thread = thread
        except Exception as exc:
            self._drop_checkpoint()
            self._checkpoint_failed = (self._seq, exc)
            self._checkpoint_retry_at = self._seq + self.checkpoint_every

    def _begin_checkpoint(self) -> _CheckpointJob:
        """The snapshot of the current state and its locked directory (under the lock, so
        that a recovery, which runs under it too, sees the directory only once it is busy)."""
        import fcntl

        assert self._unlearner is not None
        seq = self._seq
        work = self.directory / f".checkpoint-{seq}-{uuid.uuid4().hex[:8]}"
        work.mkdir()
        try:
            fd = os.open(work / _BUSY, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: never blocks
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        # a shallow copy is a snapshot: a request replaces the Unlearner's arrays and objects,
        # it never changes them in place
        snapshot = copy.copy(self._unlearner)
        return _CheckpointJob(seq, self._model_hash, snapshot, work, fd)

    def _write_checkpoint(self, job: _CheckpointJob, background: bool = False) -> None:
        """Save, flush and hash ``job``'s state in its directory, without the lock (in the
        checkpoint's thread, or in the caller's for :meth:`checkpoint`). Never raises: sets
        ``job.written``, or ``job.error`` (last, so the owner may then clean up)."""
        try:
            # not at a lower CPU priority: descheduled while it holds the GIL, the thread would
            # hold up the requests
            if background:
                self._remove_superseded()
            start = time.perf_counter()
            _fault("checkpoint-begun")
            assert job.unlearner is not None
            staged = job.work / "unlearner.npz"
            job.unlearner.save(staged)
            _flush_in_steps(staged)
            job.sha = _file_sha256(staged)
            _fault("checkpoint-saved")
            job.unlearner = None  # its arrays may be freed
            self._checkpoint_times.append((job.seq, time.perf_counter() - start))
            job.written = True
        except BaseException as exc:
            job.error = exc

    def _written_checkpoint(self) -> _CheckpointJob | None:
        """The checkpoint the thread has written and is not recorded yet, if any; a failed one
        is cleaned up and reported at the next request."""
        job = self._checkpoint_job
        if job is None:
            return None
        if job.error is not None:
            self._drop_checkpoint()
            self._checkpoint_failed = (job.seq, job.error)
            self._checkpoint_retry_at = job.seq + self.checkpoint_every
            return None
        return job if job.written else None

    def _place_checkpoint(self, job: _CheckpointJob) -> bool:
        """Rename the written state to ``unlearner-<k>.npz`` (durably), under the lock; False
        when the log names one as recent already (written by another writer)."""
        if self._checkpoint_in_force()[0] >= job.seq:
            self._drop_checkpoint()
            return False
        d = self.directory
        os.replace(job.work / "unlearner.npz", d / f"unlearner-{job.seq}.npz")
        _fsync_dir(d)  # the log never names a file that is not durable
        # a kill from here to the commit leaves a file the log does not name: the previous
        # checkpoint stays in force and the next open deletes the file
        _fault("checkpoint-written")
        return True

    def _record_checkpoint(self, job: _CheckpointJob) -> None:
        """Name the placed checkpoint in the log's metadata (inside the caller's transaction)."""
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'checkpoint'", (str(job.seq),))
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'checkpoint_sha256'", (job.sha,))

    def _checkpoint_recorded(self, job: _CheckpointJob) -> None:
        """After the commit that recorded ``job``. The previous checkpoint's file is deleted by
        the next checkpoint's thread or by :meth:`close` (not on a request's path)."""
        self._meta["checkpoint"], self._meta["checkpoint_sha256"] = str(job.seq), job.sha
        _fault("checkpoint-committed")
        self._drop_checkpoint()

    def _record_written_checkpoint(self) -> None:
        """Record a written checkpoint in a transaction of its own (under the lock; when no
        request comes to record it with: close and checkpoint())."""
        job = self._written_checkpoint()
        if job is None or not self._place_checkpoint(job):
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._record_checkpoint(job)
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            self._drop_checkpoint()
            raise
        self._checkpoint_recorded(job)
        self._remove_superseded()

    def _drop_checkpoint(self) -> None:
        """Forget the current checkpoint job: remove its directory, then release its busy
        lock (the thread, if any, has finished with it or will find its directory gone)."""
        job, self._checkpoint_job = self._checkpoint_job, None
        if job is not None and job.busy_fd >= 0:
            shutil.rmtree(job.work, ignore_errors=True)
            os.close(job.busy_fd)
            job.busy_fd = -1
            job.unlearner = None

    def _remove_superseded(self) -> None:
        """Delete the checkpoint files older than the one in force (no lock needed: the
        checkpoint in force only moves forward, and a request loads only that one)."""
        ck = int(self._meta["checkpoint"])
        for name in os.listdir(self.directory):
            c = _CHECKPOINT.match(name)
            if c and 0 < int(c.group(1)) < ck:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / name).unlink()

    def _wait_for_checkpoint(self) -> None:
        """Wait for the checkpoint's thread (its job stays, to be recorded or dropped)."""
        thread, self._checkpoint_thread = self._checkpoint_thread, None
        if thread is not None:
            thread.join()

    def _warn_checkpoint_failed(self, stacklevel: int) -> None:
        self._written_checkpoint()  # collects a failure of the thread
        failed = self._checkpoint_failed
        if failed is None:
            return
        self._checkpoint_failed = None
        warnings.warn(
            f"{self.directory}: the checkpoint after request {failed[0]} failed ({failed[1]!r}); "
            "the store is consistent and replays the requests since the previous checkpoint; "
            f"the next attempt is due after request {self._checkpoint_retry_at}",
            RuntimeWarning,
            stacklevel=stacklevel,
        )

    def _checkpoint_in_force(self) -> tuple[int, str]:
        """(request, SHA-256) of the checkpoint the log names now (another process may have
        written one since this one read the metadata)."""
        try:
            ck, sha = _checkpoint_of(self._db)
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(f"{self.directory / LOG}: unreadable log ({exc})") from exc
        self._meta["checkpoint"], self._meta["checkpoint_sha256"] = str(ck), sha
        return ck, sha

    # ------------------------------------------------------------------ replay
    def verify(self) -> VerifyResult:
        """Replay every logged request from θ̂ and compare with the stored model bit for bit.

        The replay starts from ``unlearner-0.npz``, the Unlearner as built at θ̂ when the store
        was created (its file hash is checked): a fresh build's sums can differ in the last
        bit with the number of threads (docs/design.md, "Deletion store"), the requests on a
        given state do not.

        Returns
        -------
        VerifyResult
        """
        X, y = self._need_data("verify")
        start = time.perf_counter()
        with self._locked():
            self._sync()
            records = self.log()
            stored = self._model
        unlearner = self._load_state(0, self._meta["initial_sha256"], X, y)
        first = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UpdateShortenedWarning)  # reported at the request
            for rec in records:
                unlearner.forget(rec["rows"], **self._forget_options)
                if first is None and model_hash(unlearner.model) != rec["model_after"]:
                    first = int(rec["seq"])
        a, b = unlearner.model.theta_, stored.theta_
        equal = a.shape == b.shape and bool(np.array_equal(a, b))
        diff = float(np.max(np.abs(a - b))) if a.shape == b.shape and a.size else 0.0
        ok = equal and first is None and model_hash(unlearner.model) == model_hash(stored)
        return VerifyResult(
            ok=ok,
            requests=len(records),
            first_mismatch=first,
            max_abs_diff=diff if not equal else 0.0,
            seconds=time.perf_counter() - start,
        )

    def _load_state(self, seq: int, sha: str, X: np.ndarray, y: np.ndarray) -> Unlearner:
        path = self.directory / f"unlearner-{seq}.npz"
        try:
            actual = _file_sha256(path)
        except FileNotFoundError:
            raise StoreCorruptError(f"{path}: missing (the log names it as a checkpoint)") from None
        if actual != sha:
            raise StoreCorruptError(f"{path}: damaged (its SHA-256 differs from the log's)")
        try:
            unlearner = Unlearner.load(path, X, y)
        except ValueError as exc:
            raise StoreCorruptError(f"{path}: unreadable ({exc})") from exc
        expected = self._meta["base_hash"] if seq == 0 else self._after_of(seq)
        if model_hash(unlearner.model) != expected:
            raise StoreCorruptError(f"{path}: its model differs from the log's request {seq}")
        return unlearner

    def _current_unlearner(self) -> Unlearner:
        """The Unlearner after the last logged request: loaded from the checkpoint and replayed."""
        if self._unlearner is not None:
            return self._unlearner
        X, y = self._need_data("forget")
        ck, sha = self._checkpoint_in_force()
        unlearner = self._load_state(ck, sha, X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UpdateShortenedWarning)
            for rec in self.log()[ck:]:
                unlearner.forget(rec["rows"], **self._forget_options)
                if model_hash(unlearner.model) != rec["model_after"]:
                    raise StoreCorruptError(
                        f"{self.directory}: replaying request {rec['seq']} ({rec['id']!r}) from "
                        f"the checkpoint after request {ck} does not reproduce its logged model"
                    )
        self._unlearner = unlearner
        return unlearner

    # ------------------------------------------------------------------ consistency
    def _need_data(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        if self._X is None or self._y is None:
            raise ValueError(f"{what} needs the store's data: DeletionStore.open(directory, X, y)")
        return self._X, self._y

    def _after_of(self, seq: int) -> str:
        row = self._db.execute("SELECT model_after FROM requests WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise StoreCorruptError(f"{self.directory / LOG}: request {seq} missing from the log")
        return str(row[0])

    def _record_by_id(self, request_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT seq, id, time, rows, rows_hash, model_before, model_after, cost, "
            '"check", notes FROM requests WHERE id = ?',
            (request_id,),
        ).fetchone()
        return _record(row) if row is not None else None

    def _last(self) -> tuple[int, str]:
        """(sequence number, model hash) of the last logged request; (0, θ̂'s hash) if none."""
        try:
            rows = self._db.execute(
                "SELECT seq, model_before, model_after FROM requests ORDER BY seq"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(f"{self.directory / LOG}: unreadable log ({exc})") from exc
        expected = self._meta["base_hash"]
        for i, (seq, before, after) in enumerate(rows, start=1):
            if seq != i or before != expected:
                raise StoreCorruptError(
                    f"{self.directory / LOG}: the log is not a chain of requests at row {i} "
                    "(a request is missing or does not start from the model before it)"
                )
            expected = after
        return len(rows), expected

    def _sync(self) -> None:
        """Catch up with requests another process logged (under the lock)."""
        try:
            row = self._db.execute(
                "SELECT seq, model_after FROM requests ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(f"{self.directory / LOG}: unreadable log ({exc})") from exc
        seq, after = (int(row[0]), str(row[1])) if row else (0, self._meta["base_hash"])
        if seq == self._seq and after == self._model_hash and not self._pending_files():
            return
        self.recovered = self._recover() or self.recovered
        self._unlearner = None  # another writer moved on: replay from the checkpoint

    def _pending_files(self) -> list[str]:
        """What a writer left that a recovery has to look at (a checkpoint being written
        does not change the log or the model: it is not one of them)."""
        return [
            n
            for n in os.listdir(self.directory)
            if n.startswith(".") and not _CHECKPOINT_WORK.match(n)
        ]

    def _recover(self) -> str | None:
        """Finish or roll back what a killed writer left (under the lock); say what was done."""
        d = self.directory
        self._meta = _read_meta(self._db, d / LOG)
        last, after = self._last()
        ids = {}
        messages = []
        for name in os.listdir(d):
            m = _PENDING_REQUEST.match(name)
            if m:
                with contextlib.suppress(OSError, ValueError):
                    ids[int(m.group(1))] = json.loads((d / name).read_text()).get("id")
        try:
            on_disk: str | None = self._file_model_hash(d / MODEL)
        except StoreCorruptError:
            on_disk = "unreadable"
        if on_disk != after:
            behind = self._db.execute(
                "SELECT model_before FROM requests WHERE seq = ?", (last,)
            ).fetchone()
            if on_disk not in (None, "unreadable") and (behind is None or on_disk != behind[0]):
                raise StoreCorruptError(
                    f"{d / MODEL}: differs from the model the log's last request ({last}) "
                    "produced; the store cannot vouch for it"
                )
            # killed after the commit and before model.npz was replaced, or model.npz lost or
            # torn (it is written without fsync): the log holds the model, committed with it
            self._model_from_log(last, after).save(d / MODEL)
            if last not in ids:
                what = {None: "missing", "unreadable": "damaged"}.get(on_disk, "behind the log")
                messages.append(f"rewrote {MODEL} from the log ({MODEL} was {what})")
        ck = int(self._meta["checkpoint"])
        for name in os.listdir(d):
            m = _PENDING_REQUEST.match(name) or _PENDING_CHECKPOINT.match(name)
            c = _CHECKPOINT.match(name)
            if m or (c and int(c.group(1)) not in (0, ck)):
                with contextlib.suppress(FileNotFoundError):
                    (d / name).unlink()
            elif _CHECKPOINT_WORK.match(name) and not _busy(d / name):
                shutil.rmtree(d / name, ignore_errors=True)  # its writer died
        _remove_stale_temp_files(d)
        for seq in sorted(ids):
            rid = ids[seq]
            label = f"request {rid!r} (seq {seq})" if rid is not None else f"request {seq}"
            if seq <= last:
                messages.append(f"finished {label}: it was committed to the log before the crash")
            else:
                messages.append(
                    f"rolled back {label}: killed before its commit, the store is as before it"
                )
        self._seq, self._model_hash = last, after
        self._model = _load_model_file(d / MODEL)
        self._unlearner = None
        return "; ".join(messages) or None

    def _model_from_log(self, last: int, after: str) -> MLP:
        """The model after request ``last`` from the copy committed with it in the log."""
        model = copy.deepcopy(self._base)
        if last > 0:
            row = self._db.execute("SELECT seq, theta FROM current WHERE k = 0").fetchone()
            p = model.theta_.shape[0]
            if row is None or row[0] != last or row[1] is None or len(row[1]) != 8 * p:
                raise StoreCorruptError(
                    f"{self.directory / LOG}: no copy of the model after request {last}"
                )
            model.theta_ = np.frombuffer(row[1], dtype="<f8").astype(np.float64)
        if model_hash(model) != after:
            raise StoreCorruptError(
                f"{self.directory / LOG}: its copy of the model after request {last} is damaged"
            )
        return model

    def _file_model_hash(self, path: Path) -> str | None:
        if not path.exists():
            return None
        return model_hash(_load_model_file(path))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl  # POSIX; imported here so that `import mlu` does not need it

        if self._lock_fd is None:
            raise ValueError(f"{self.directory}: the store is closed")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLockedError(
                        f"{self.directory}: another process is writing to this store (waited "
                        f"{self.lock_timeout:g} s for its lock); try again later"
                    ) from None
                time.sleep(0.005)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def __repr__(self) -> str:
        return (
            f"DeletionStore({str(self.directory)!r}, requests={self._seq}, "
            f"curvature={self.options.get('curvature')!r})"
        )


def _load_model_file(path: Path) -> MLP:
    """A model file of the store; a missing or damaged one gives StoreCorruptError."""
    try:
        return MLP.load(path)
    except Exception as exc:
        raise StoreCorruptError(f"{path}: missing or unreadable model ({exc})") from exc


def _check_policy(lock_timeout: float, checkpoint_every: int) -> None:
    if not isinstance(lock_timeout, (int, float)) or not lock_timeout >= 0:
        raise ValueError(f"lock_timeout must be a number of seconds >= 0, got {lock_timeout!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
        raise TypeError(f"checkpoint_every must be an int, got {checkpoint_every!r}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")


def _connect(path: Path) -> sqlite3.Connection:
    """Open the log and check it: a damaged or foreign file gives StoreCorruptError."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreCorruptError(f"{path}: cannot open the log ({exc})") from exc
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        db.execute("PRAGMA synchronous=FULL")
        check = db.execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in check] != [("ok",)] or str(mode).lower() != "wal":
            raise sqlite3.DatabaseError("; ".join(str(r[0]) for r in check[:3]))
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreCorruptError(f"{path}: the log is damaged ({exc})") from exc
    return db


def _checkpoint_of(db: sqlite3.Connection) -> tuple[int, str]:
    """(request, SHA-256) of the checkpoint the log's metadata names."""
    meta = dict(
        db.execute(
            "SELECT key, value FROM meta WHERE key IN ('checkpoint', 'checkpoint_sha256')"
        ).fetchall()
    )
    return int(meta["checkpoint"]), str(meta["checkpoint_sha256"])


def _read_meta(db: sqlite3.Connection, path: Path) -> dict[str, str]:
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        db.execute("SELECT count(*) FROM requests").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreCorruptError(f"{path}: not a deletion store's log ({exc})") from exc
    if meta.get("format") != FORMAT_TAG:
        raise StoreCorruptError(f"{path}: not a deletion store's log (no format tag)")
    if meta.get("version") != str(FORMAT_VERSION):
        raise StoreCorruptError(f"{path}: unsupported store version {meta.get('version')!r}")
    needed = ("data_hash", "options", "base_hash", "checkpoint", "checkpoint_sha256")
    missing = [k for k in needed if k not in meta]
    if missing:
        raise StoreCorruptError(f"{path}: the log's metadata lacks {missing}")
    return meta


def _record(row: Sequence[Any]) -> dict[str, Any]:
    rec = dict(zip(_COLUMNS, row))
    for key in ("rows", "check", "notes"):
        rec[key] = json.loads(rec[key])
    rec["seq"], rec["cost"] = int(rec["seq"]), float(rec["cost"])
    return rec
