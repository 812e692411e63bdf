"""mlu.DeletionStore: atomic, logged, idempotent, replayable deletion requests.

The crash tests run writers in subprocesses and kill them with SIGKILL, at the points of the
commit protocol named by ``MLU_STORE_FAULT`` and at random instants, then reopen the store and
check that the log and the model agree, that ``verify()`` replays the log to the stored model
bit for bit, and that no request was lost or applied twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import mlu
from mlu.exceptions import StoreCorruptError, StoreLockedError
from mlu.unlearning.forgetting import DEFAULT_ANNEAL, DEFAULT_MODE, DEFAULT_NOISE, default_epochs
from mlu.unlearning.store import FAULT_ENV, FAULT_POINTS, DeletionStore, model_hash
from mlu.unlearning.unlearner import Unlearner

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem():
    ds = mlu.datasets.load("digits")
    X, y = ds.X_train[:300], ds.y_train[:300]
    model = mlu.MLP(hidden=(8,), epochs=5, seed=0, l2=1e-3).fit(X, y)
    return model, X, y


@pytest.fixture(scope="module")
def empty_store(problem, tmp_path_factory):
    """A store with no requests, copied by the tests that need a fresh one."""
    model, X, y = problem
    path = tmp_path_factory.mktemp("stores") / "empty"
    DeletionStore.create(path, model, X, y, curvature="dense").close()
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _leftovers(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.startswith("."))


def _states(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.startswith("unlearner"))


def _checkpoint_in_log(path: Path) -> int:
    db = sqlite3.connect(path / "log.sqlite")
    try:
        return int(db.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()[0])
    finally:
        db.close()


# ---------------------------------------------------------------------- behaviour


def test_requests_match_the_unlearner_and_are_logged(problem, empty_store, tmp_path):
    model, X, y = problem
    before = X.copy(), y.copy()
    store = DeletionStore.open(_copy(empty_store, tmp_path / "s"), X, y)
    r1 = store.forget([3, 17], request_id="first")
    r2 = store.forget(np.array([42]))
    un = mlu.Unlearner(model, X, y, curvature="dense")
    un.forget([3, 17])
    un.forget([42])
    assert np.array_equal(store.model.theta_, un.model.theta_)  # the same bits
    log = store.log()
    assert [r["id"] for r in log] == ["first", r2["id"]] and r1["applied"] and r2["applied"]
    assert [r["rows"] for r in log] == [[3, 17], [42]]
    assert log[0]["model_before"] == model_hash(model)
    assert log[0]["model_after"] == log[1]["model_before"]
    assert log[1]["model_after"] == model_hash(un.model)
    check = log[1]["check"]
    assert check["objective_after"] <= check["objective_before"]
    assert check["step"] == 1.0 and log[1]["cost"] > 0
    assert log[0]["time"].endswith("+00:00")
    assert log[0]["rows_hash"] != log[1]["rows_hash"] and len(log[0]["rows_hash"]) == 64
    assert np.array_equal(X, before[0]) and np.array_equal(y, before[1])  # inputs untouched
    store.close()
    again = DeletionStore.open(tmp_path / "s", X, y)
    assert again.recovered is None and again.n_requests == 2
    assert np.array_equal(again.model.theta_, un.model.theta_)
    result = again.verify()
    assert result.ok and result.requests == 2 and result.first_mismatch is None
    assert result.max_abs_diff == 0.0
    again.close()


def test_the_forgetting_settings_are_recorded_and_replayed(problem, empty_store, tmp_path):
    # issue 23: a request's default is the exact update then the forgetting mode; the store
    # records the mode's settings at its creation and serves and replays every request with
    # them (the default epochs, noise and shrink: None, each request's own, scaled)
    model, X, y = problem
    store = DeletionStore.open(_copy(empty_store, tmp_path / "s"), X, y)
    assert store.options["mode"] == DEFAULT_MODE
    assert store.options["epochs"] is None and default_epochs(model) is None
    assert (store.options["noise"], store.options["anneal"]) == (DEFAULT_NOISE, DEFAULT_ANNEAL)
    assert store.options["shrink"] is None
    store.forget([3, 17])
    assert "forgetting mode 'noisy_finetune'" in store.log()[0]["notes"][-1]
    store.close()
    # mode="exact" by name: the exact update, as the Unlearner gives it
    exact = DeletionStore.create(
        tmp_path / "e", model, X, y, curvature="dense", mode="exact", epochs=0.5
    )
    exact.forget([3, 17])
    un = mlu.Unlearner(model, X, y, curvature="dense")
    assert np.array_equal(exact.model.theta_, un.forget([3, 17], mode="exact").model.theta_)
    assert exact.options["epochs"] == 0.5 and exact.verify().ok
    exact.close()
    with pytest.raises(ValueError, match="mode"):
        DeletionStore.create(tmp_path / "bad", model, X, y, mode="forget-harder")
    assert not (tmp_path / "bad").exists()
    # a store written before the modes were recorded served the exact update: it still does
    db = sqlite3.connect(tmp_path / "e" / "log.sqlite")
    options = json.loads(db.execute("SELECT value FROM meta WHERE key = 'options'").fetchone()[0])
    for key in ("mode", "epochs", "noise", "anneal", "shrink"):
        del options[key]
    with db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'options'", (json.dumps(options),))
    db.close()
    old = DeletionStore.open(tmp_path / "e", X, y)
    assert old.verify().ok
    old.forget([42])
    un.forget([42], mode="exact")
    assert np.array_equal(old.model.theta_, un.model.theta_)
    old.close()


def test_a_retried_id_is_applied_once(problem, empty_store, tmp_path):
    _, X, y = problem
    with DeletionStore.open(_copy(empty_store, tmp_path / "s"), X, y) as store:
        first = store.forget([5, 6], request_id="r-1")
        theta = store.model.theta_.copy()
        again = store.forget([6, 5], request_id="r-1")  # same rows, any order
        assert first["applied"] and not again["applied"]
        assert again["model_after"] == first["model_after"] and store.n_requests == 1
        assert np.array_equal(store.model.theta_, theta)
        with pytest.raises(ValueError, match="already used for rows"):
            store.forget([7], request_id="r-1")
        assert store.n_requests == 1


def test_a_bad_request_changes_nothing(problem, empty_store, tmp_path):
    _, X, y = problem
    with DeletionStore.open(_copy(empty_store, tmp_path / "s"), X, y) as store:
        store.forget([1])
        theta = store.model.theta_.copy()
        for bad, err in (([1], ValueError), ([300], ValueError), ([], ValueError)):
            with pytest.raises(err):
                store.forget(bad)
        with pytest.raises(TypeError, match="boolean mask"):
            store.forget(np.ones(300, bool))
        with pytest.raises(TypeError, match="integers"):
            store.forget([1.5])
        assert store.n_requests == 1 and np.array_equal(store.model.theta_, theta)
        assert _leftovers(tmp_path / "s") == []
        assert store.forget([2])["seq"] == 2
        assert store.verify().ok


def test_other_data_are_refused_and_no_data_is_read_only(problem, empty_store, tmp_path):
    _, X, y = problem
    path = _copy(empty_store, tmp_path / "s")
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 10
    with pytest.raises(ValueError, match="differ from the data"):
        DeletionStore.open(path, X, y2)
    with pytest.raises(ValueError, match="differ from the data"):
        DeletionStore.open(path, X[:-1], y[:-1])
    with DeletionStore.open(path) as ro:
        assert ro.log() == [] and ro.n_requests == 0
        with pytest.raises(ValueError, match="needs the store's data"):
            ro.forget([1])
        with pytest.raises(ValueError, match="needs the store's data"):
            ro.verify()
        out = ro.export(tmp_path / "m.npz")
        assert np.array_equal(mlu.MLP.load(out).theta_, problem[0].theta_)


def test_create_is_all_or_nothing(problem, tmp_path):
    model, X, y = problem
    with pytest.raises(TypeError, match="unknown Unlearner option"):
        DeletionStore.create(tmp_path / "a", model, X, y, solver="cg")
    with pytest.raises(ValueError):
        DeletionStore.create(tmp_path / "a", model, X, y[:10])
    assert os.listdir(tmp_path) == []
    DeletionStore.create(tmp_path / "a", model, X, y).close()
    with pytest.raises(FileExistsError):
        DeletionStore.create(tmp_path / "a", model, X, y)
    assert sorted(os.listdir(tmp_path)) == ["a"]
    assert sorted(os.listdir(tmp_path / "a")) == [
        "base.npz",
        "lock",
        "log.sqlite",
        "model.npz",
        "unlearner-0.npz",
    ]


def test_checkpoints_and_replay_give_the_same_bits(problem, empty_store, tmp_path):
    _, X, y = problem
    path = _copy(empty_store, tmp_path / "s")
    with DeletionStore.open(path, X, y, checkpoint_every=2) as store:
        for i in range(3):
            store.forget([10 + i])
        store.checkpoint()  # waits for the one after request 2, then writes the 3rd's
        assert _states(path) == ["unlearner-0.npz", "unlearner-3.npz"]
        assert _checkpoint_in_log(path) == 3
        store.checkpoint()  # current: nothing to do
        for i in range(3, 5):
            store.forget([10 + i])
        theta5 = store.model.theta_.copy()
    # close() waited for the checkpoint after request 5 (written in the background)
    assert _states(path) == ["unlearner-0.npz", "unlearner-5.npz"] and _leftovers(path) == []
    assert _checkpoint_in_log(path) == 5
    saved = Unlearner.load(path / "unlearner-5.npz", X, y)
    assert np.array_equal(saved.model.theta_, theta5) and len(saved.removed) == 5
    with DeletionStore.open(path, X, y, checkpoint_every=100) as store:
        assert np.array_equal(store.model.theta_, mlu.MLP.load(path / "model.npz").theta_)
        r6 = store.forget([20])  # loads unlearner-5
        r7 = store.forget([21])  # served by the in-memory Unlearner
        store.checkpoint()  # not loaded again: writes the one in memory
        assert _states(path) == ["unlearner-0.npz", "unlearner-7.npz"]
    # another copy: from the checkpoint after 5, the replayed 6th and 7th give the same bits
    with DeletionStore.open(path, X, y) as store:
        assert [r["model_after"] for r in store.log()[-2:]] == [
            r6["model_after"],
            r7["model_after"],
        ]
        assert not np.array_equal(store.model.theta_, theta5)
        assert store.verify().ok


def _hold_checkpoints(monkeypatch):
    """Make the checkpoint writer wait (after writing its file, before flushing it) until the
    returned event is set; the returned list counts the writes that reached that point."""
    release, reached = threading.Event(), []
    flush = mlu.unlearning.store._flush_in_steps

    def held(path, *args):
        reached.append(threading.current_thread().name)
        assert release.wait(60), "the test never released the checkpoint"
        flush(path, *args)

    monkeypatch.setattr(mlu.unlearning.store, "_flush_in_steps", held)
    return release, reached


def test_a_checkpoint_is_written_off_the_request_path(problem, empty_store, tmp_path, monkeypatch):
    model, X, y = problem
    path = _copy(empty_store, tmp_path / "s")
    release, reached = _hold_checkpoints(monkeypatch)
    store = DeletionStore.open(path, X, y, checkpoint_every=2)
    try:
        store.forget([1])
        store.forget([2])  # makes the checkpoint after request 2 due: a thread writes it
        # while it is held, requests go on (they do not wait for it)...
        for i in range(3, 6):
            store.forget([i])
        deadline = time.monotonic() + 30
        while not reached and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reached == ["mlu-store-checkpoint-2"]  # ...and start no second one meanwhile
        work = [n for n in _leftovers(path) if n.startswith(".checkpoint-2-")]
        assert len(work) == 1 and (path / work[0] / "unlearner.npz").exists()
        assert _checkpoint_in_log(path) == 0 and _states(path) == ["unlearner-0.npz"]
        assert store.recovered is None  # its directory is not something to recover
        # another writer's recovery leaves a checkpoint being written alone (its busy lock)
        with DeletionStore.open(path, X, y) as other:
            assert other.recovered is None and other.n_requests == 5
        assert (path / work[0]).is_dir()
        release.set()
        store.close()  # waits for it
    finally:
        release.set()
        store.close()
    assert _leftovers(path) == [] and _checkpoint_in_log(path) == 2
    assert _states(path) == ["unlearner-0.npz", "unlearner-2.npz"]
    # the state after request 2, not after the requests served while it was written
    saved = Unlearner.load(path / "unlearner-2.npz", X, y)
    un = mlu.Unlearner(model, X, y, curvature="dense")
    un.forget([1])
    un.forget([2])
    assert np.array_equal(saved.model.theta_, un.model.theta_)
    assert [r.tolist() for r in saved.removed] == [[1], [2]]
    with DeletionStore.open(path, X, y) as store:
        store.forget([6])  # from unlearner-2, replaying requests 3-5
        for i in range(3, 7):
            un.forget([i])
        assert np.array_equal(store.model.theta_, un.model.theta_)
        assert store.verify().ok


def test_a_failed_checkpoint_changes_nothing_and_is_retried(
    problem, empty_store, tmp_path, monkeypatch
):
    _, X, y = problem
    path = _copy(empty_store, tmp_path / "s")
    flush = mlu.unlearning.store._flush_in_steps

    def full(path, *args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mlu.unlearning.store, "_flush_in_steps", full)
    with DeletionStore.open(path, X, y, checkpoint_every=2) as store:
        store.forget([1])
        store.forget([2])  # its checkpoint fails in the background
        store._wait_for_checkpoint()
        with pytest.warns(RuntimeWarning, match="checkpoint after request 2 failed"):
            store.forget([3])  # served, and says so
        assert _leftovers(path) == [] and _states(path) == ["unlearner-0.npz"]
        assert _checkpoint_in_log(path) == 0 and store.n_requests == 3
        with pytest.raises(OSError, match="No space"):  # the explicit one raises
            store.checkpoint()
        assert _leftovers(path) == [] and _checkpoint_in_log(path) == 0
        monkeypatch.setattr(mlu.unlearning.store, "_flush_in_steps", flush)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            store.forget([4])  # tried again 2 requests after the failure
    assert _states(path) == ["unlearner-0.npz", "unlearner-4.npz"]
    with DeletionStore.open(path, X, y) as store:
        assert store.recovered is None and store.verify().ok


# ---------------------------------------------------------------------- damage


def test_a_damaged_log_is_a_clear_error(problem, empty_store, tmp_path):
    _, X, y = problem
    path = _copy(empty_store, tmp_path / "s")
    with DeletionStore.open(path, X, y) as store:
        for i in range(3):
            store.forget([30 + i])
    log = path / "log.sqlite"
    raw = log.read_bytes()
    for name, data in (
        ("truncated", raw[: len(raw) // 2]),
        ("garbage", b"not a database" * 100),
        ("empty", b""),
    ):
        bad = _copy(path, tmp_path / name)
        (bad / "log.sqlite").write_bytes(data)
        with pytest.raises(StoreCorruptError, match="log"):
            DeletionStore.open(bad, X, y)
    # a row deleted: the chain of model hashes breaks
    bad = _copy(path, tmp_path / "gap")
    db = sqlite3.connect(bad / "log.sqlite")
    db.execute("DELETE FROM requests WHERE seq = 2")
    db.commit()
    db.close()
    with pytest.raises(StoreCorruptError, match="chain"):
        DeletionStore.open(bad, X, y)
    # the last row lost (e.g. its WAL deleted): the model on disk is ahead of the log
    bad = _copy(path, tmp_path / "lost")
    db = sqlite3.connect(bad / "log.sqlite")
    db.execute("DELETE FROM requests WHERE seq = 3")
    db.commit()
    db.close()
    with pytest.raises(StoreCorruptError, match="model.npz"):
        DeletionStore.open(bad, X, y)


def test_damaged_state_or_model_files_are_clear_errors(problem, empty_store, tmp_path):
    model, X, y = problem
    path = _copy(empty_store, tmp_path / "s")
    with DeletionStore.open(path, X, y, checkpoint_every=2) as store:
        for i in range(2):
            store.forget([40 + i])
    # the current model replaced by another one, or truncated
    bad = _copy(path, tmp_path / "other-model")
    model.save(bad / "model.npz")
    with pytest.raises(StoreCorruptError, match="model.npz"):
        DeletionStore.open(bad, X, y)
    # torn or lost (model.npz is written without fsync): rewritten from the log's copy
    for name in ("short-model", "no-model"):
        bad = _copy(path, tmp_path / name)
        raw = (bad / "model.npz").read_bytes()
        if name == "no-model":
            (bad / "model.npz").unlink()
        else:
            (bad / "model.npz").write_bytes(raw[: len(raw) // 2])
        with DeletionStore.open(bad, X, y) as store:
            assert store.recovered is not None and "rewrote model.npz from the log" in (
                store.recovered
            )
            assert np.array_equal(store.model.theta_, mlu.MLP.load(path / "model.npz").theta_)
            assert model_hash(mlu.MLP.load(bad / "model.npz")) == store.log()[-1]["model_after"]
    # the log's copy damaged as well: an error
    bad = _copy(path, tmp_path / "both")
    (bad / "model.npz").unlink()
    db = sqlite3.connect(bad / "log.sqlite")
    db.execute("UPDATE current SET theta = zeroblob(length(theta))")
    db.commit()
    db.close()
    with pytest.raises(StoreCorruptError, match="copy of the model"):
        DeletionStore.open(bad, X, y)
    # θ̂ replaced
    bad = _copy(path, tmp_path / "base")
    mlu.MLP.load(path / "model.npz").save(bad / "base.npz")
    with pytest.raises(StoreCorruptError, match="base"):
        DeletionStore.open(bad, X, y)
    # the checkpoint damaged (one byte) or truncated: refused when the Unlearner is needed
    for name, edit in (
        ("flip", lambda b: b[:5000] + bytes([b[5000] ^ 1]) + b[5001:]),
        ("cut", lambda b: b[: len(b) // 3]),
    ):
        bad = _copy(path, tmp_path / f"ck-{name}")
        ck = bad / "unlearner-2.npz"
        ck.write_bytes(edit(ck.read_bytes()))
        with DeletionStore.open(bad, X, y) as store:
            theta = store.model.theta_.copy()
            with pytest.raises(StoreCorruptError, match="unlearner-2.npz"):
                store.forget([50])
            assert store.n_requests == 2 and np.array_equal(store.model.theta_, theta)
        with DeletionStore.open(bad, X, y) as store:
            assert store.log()[-1]["seq"] == 2  # nothing was logged
    # the initial state damaged: verify refuses instead of comparing against garbage
    bad = _copy(path, tmp_path / "initial")
    ck = bad / "unlearner-0.npz"
    raw = ck.read_bytes()
    ck.write_bytes(raw[:4000] + bytes([raw[4000] ^ 1]) + raw[4001:])
    with DeletionStore.open(bad, X, y) as store, pytest.raises(StoreCorruptError):
        store.verify()


# ---------------------------------------------------------------------- writers and crashes

_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import mlu
    from mlu.unlearning.store import DeletionStore

    mlu.set_num_threads(1)
    path, data, plan, every = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    join = sys.argv[5:] == ["join"]
    with np.load(data) as f:
        X, y = f["X"], f["y"]
    store = DeletionStore.open(path, X, y, checkpoint_every=every, lock_timeout=60)
    print("ready", flush=True)
    for rid, rows in json.load(open(plan)):
        print("start", rid, flush=True)
        rec = store.forget(rows, request_id=rid)
        print("done", rid, rec["applied"], flush=True)
        if join:  # the checkpoint's file written before the next request (which records it)
            store._wait_for_checkpoint()
    store.close()
    """
)


@pytest.fixture(scope="module")
def child_files(problem, tmp_path_factory):
    _, X, y = problem
    d = tmp_path_factory.mktemp("child")
    (d / "child.py").write_text(_CHILD)
    np.savez(d / "data.npz", X=X, y=y)
    return d


def _plan(seed: int, count: int, start: int = 0) -> list[tuple[str, list[int]]]:
    rng = np.random.default_rng(seed)
    rows = rng.permutation(np.arange(60, 300))[: 2 * count]
    return [
        (f"q{seed}-{start + i}", sorted(int(r) for r in rows[2 * i : 2 * i + 1 + i % 2]))
        for i in range(count)
    ]


def _spawn(child_files: Path, store: Path, plan, every: int = 32, env=None, join=False):
    plan_file = store.parent / f"{store.name}.plan-{len(os.listdir(store.parent))}.json"
    plan_file.write_text(json.dumps(plan))
    return subprocess.Popen(
        [sys.executable, str(child_files / "child.py"), str(store), str(child_files / "data.npz"),
         str(plan_file), str(every), *(["join"] if join else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )  # fmt: skip


def _check_consistent(store_path: Path, X, y, plan, done: set[str]) -> DeletionStore:
    """Reopen after a kill: the log and model agree and nothing reported done is lost."""
    store = DeletionStore.open(store_path, X, y)
    log = store.log()
    ids = [r["id"] for r in log]
    assert len(ids) == len(set(ids))
    assert done <= set(ids)  # nothing the writer finished is lost
    by_id = dict(plan)
    assert all(r["rows"] == by_id[r["id"]] for r in log)  # each applied with its own rows
    rows = [i for r in log for i in r["rows"]]
    assert len(rows) == len(set(rows))  # no sample removed twice
    expected = log[-1]["model_after"] if log else model_hash(mlu.MLP.load(store_path / "base.npz"))
    assert model_hash(store.model) == expected
    assert model_hash(mlu.MLP.load(store_path / "model.npz")) == expected
    assert _leftovers(store_path) == []
    if store.recovered:
        for part in store.recovered.split("; "):
            rid = part.split("'")[1]
            assert (rid in ids) == part.startswith("finished"), store.recovered
    return store


_ROLLED_BACK = ("begin", "solved", "in-commit")


# The checkpoint after request 2 of the kill tests (checkpoint_every=1) is recorded either with
# the next request ("next": a second request in the plan) or at close ("close").
_KILLS = [(point, "") for point in FAULT_POINTS if not point.startswith("checkpoint")] + [
    ("checkpoint-begun", "close"),
    ("checkpoint-saved", "close"),
    ("checkpoint-written", "next"),
    ("checkpoint-committed", "next"),
    ("checkpoint-written", "close"),
    ("checkpoint-committed", "close"),
]


def test_a_kill_at_each_point_of_the_protocol_leaves_before_or_after(
    problem, empty_store, child_files, tmp_path
):
    _, X, y = problem
    base = _copy(empty_store, tmp_path / "base")
    with DeletionStore.open(base, X, y) as store:
        store.forget([1, 2], request_id="pre")
    assert set(FAULT_POINTS) == {point for point, _ in _KILLS}
    procs = {}
    for point, when in _KILLS:
        case = f"{point}-{when}" if when else point
        path = _copy(base, tmp_path / case)
        plan = [(f"k-{case}", [11, 12])] + ([(f"k2-{case}", [13])] if when == "next" else [])
        proc = _spawn(child_files, path, plan, 1, {FAULT_ENV: point}, join=bool(when))
        procs[case] = (point, when, path, plan, proc)
    for case, (point, when, path, plan, proc) in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, (case, out, err)
        killed = plan[-1][0]  # the request killed, or the last one before the checkpoint's kill
        assert f"done {killed}" not in out or point.startswith("checkpoint")
        work = [n for n in _leftovers(path) if n.startswith(".checkpoint-")]
        assert len(work) == point.startswith("checkpoint")  # removed after the commit, or by open
        if point == "checkpoint-saved":  # killed while writing it: a torn file at worst
            staged = path / work[0] / "unlearner.npz"
            staged.write_bytes(staged.read_bytes()[:1000])
        store = _check_consistent(path, X, y, [("pre", [1, 2]), *plan], {"pre"})
        rid = plan[0][0]
        if point in _ROLLED_BACK:
            assert store.n_requests == 1
            assert store.recovered == (
                f"rolled back request {rid!r} (seq 2): killed before its commit, the store is "
                "as before it"
            )
        elif when == "next":  # the second request was killed, recording the checkpoint
            committed = point == "checkpoint-committed"
            assert store.n_requests == 2 + committed
            assert store.recovered is not None
            assert store.recovered.startswith("finished" if committed else "rolled back")
        else:
            assert store.n_requests == 2 and store.log()[-1]["id"] == rid
            if point in ("committed", "model-written"):
                assert store.recovered is not None and store.recovered.startswith(
                    f"finished request {rid!r} (seq 2)"
                )
        if point.startswith("checkpoint"):  # the log names the previous file or a whole one
            committed = point == "checkpoint-committed"
            assert _checkpoint_in_log(path) == (2 if committed else 0)
            assert _states(path) == ["unlearner-0.npz", *(["unlearner-2.npz"] if committed else [])]
        n_before = store.n_requests
        applied = [store.forget(rows, request_id=r)["applied"] for r, rows in plan]  # retries
        assert sum(applied) == 1 + len(plan) - n_before
        assert [r["id"] for r in store.log()] == ["pre"] + [r for r, _ in plan]
        store.forget([20], request_id="next")  # from the checkpoint in force
        assert store.verify().ok
        store.close()


def test_kills_at_random_instants_lose_nothing_and_apply_nothing_twice(
    problem, empty_store, child_files, tmp_path
):
    _, X, y = problem
    rng = np.random.default_rng(24)
    kills = 0
    stores = [_copy(empty_store, tmp_path / f"s{i}") for i in range(5)]
    # plans long enough that a writer is still working at its kill (up to 0.8 s after "ready"),
    # and rounds until 15 writers were killed (a writer that finished is not spawned again):
    # on a quiet machine 12 requests took less than 0.8 s
    plans = [_plan(i, 100) for i in range(5)]
    finished: set[int] = set()
    for _ in range(6):
        if kills >= 15 or len(finished) == len(stores):
            break
        live = [i for i in range(len(stores)) if i not in finished]
        procs = {i: _spawn(child_files, stores[i], plans[i], every=3) for i in live}
        for proc in procs.values():
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        delays = dict(zip(live, rng.uniform(0.0, 0.8, size=len(live))))
        t0 = time.monotonic()
        for i in sorted(live, key=delays.__getitem__):
            time.sleep(max(0.0, t0 + delays[i] - time.monotonic()))
            procs[i].kill()
        for i, proc in procs.items():
            out, _ = proc.communicate(timeout=60)
            kills += proc.returncode == -signal.SIGKILL
            if proc.returncode == 0:
                finished.add(i)
            done = {line.split()[1] for line in out.splitlines() if line.startswith("done")}
            _check_consistent(stores[i], X, y, plans[i], done).close()
    assert kills >= 13  # (a writer that finished its plan before its kill is not counted)
    for store_path, plan in zip(stores, plans):
        with DeletionStore.open(store_path, X, y) as store:
            for rid, rows in plan:  # the client sends everything again
                store.forget(rows, request_id=rid)
            assert [(r["id"], r["rows"]) for r in store.log()] == [(i, r) for i, r in plan]
            assert store.verify().ok


def test_two_writers_at_once(problem, empty_store, child_files, tmp_path):
    _, X, y = problem
    path = _copy(empty_store, tmp_path / "s")
    plans = [_plan(10, 4), _plan(11, 4)]
    plans[1] = [(f"b{i}", rows) for i, (_, rows) in enumerate(plans[1])]
    taken = {r for _, rows in plans[0] for r in rows}
    plans[1] = [(rid, rows) for rid, rows in plans[1] if not taken & set(rows)]
    procs = [_spawn(child_files, path, plan, every=2) for plan in plans]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with DeletionStore.open(path, X, y) as store:
        log = store.log()
        assert sorted(r["id"] for r in log) == sorted(rid for p in plans for rid, _ in p)
        assert store.verify().ok
    # a writer that cannot get the lock in time gets a clear error and changes nothing
    store = DeletionStore.open(path, X, y, lock_timeout=0.2)
    with open(path / "lock", "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StoreLockedError, match="another process is writing"):
            store.forget([59], request_id="late")
        with pytest.raises(StoreLockedError):
            DeletionStore.open(path, X, y, lock_timeout=0.1)
    assert store.forget([59], request_id="late")["applied"]
    assert len(store.log()) == len(log) + 1
    store.close()
