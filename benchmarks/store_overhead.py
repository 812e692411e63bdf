"""What a DeletionStore adds to a deletion request (issue 24, "Speed": target <= 10 ms).

For each problem, the same random requests are served twice in one run: by a bare
``mlu.Unlearner`` and by ``mlu.DeletionStore`` (pending note, SQLite log row in WAL mode with
the new θ, model.npz renamed into place; docs/design.md, "Deletion store"). The bookkeeping of a
request is the wall time of ``store.forget`` minus the Unlearner's own time inside it (the
record's ``cost``), measured in the same call; the bare Unlearner's times are reported beside it.
The store runs with its default ``checkpoint_every`` = 32, so the checkpoints of the
Unlearner's state are written by its background thread while the measured requests are served:
the maximum over all requests includes the ones served meanwhile (counted and reported apart).
Then, on their own: a checkpoint written alone (``store.checkpoint()``), ``DeletionStore.open``,
and the first request after an open, which loads the checkpoint and replays the requests logged
since (none, and ``checkpoint_every`` - 1 = 31: the replay a checkpoint bounds).

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=python python benchmarks/store_overhead.py [--requests N]

Writes benchmarks/results/store_overhead.{json,md} with command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from provenance import commit, cpu_name  # benchmarks/ (the script's directory)

import mlu
from mlu.unlearning.store import DeletionStore

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"


def problems(which: list[str]):
    """(name, model, X, y, curvature) of the problems measured."""
    if "digits" in which:
        ds = mlu.datasets.load("digits")
        model = mlu.MLP(hidden=(50,), seed=0, l2=1e-3).fit(ds.X_train, ds.y_train)
        yield "digits, 10 classes, 1347 samples, 64-50-10", model, ds.X_train, ds.y_train, "auto"
    if "fmnist" in which:
        ds = mlu.datasets.load("fashion-mnist", classes=(0, 1), n_per_class=1000)
        model = mlu.MLP(hidden=(50,), seed=0, l2=1e-3).fit(ds.X_train, ds.y_train)
        yield (
            "Fashion-MNIST 0 vs 1, 2000 samples, 784-50-2 (the paper's model)",
            model,
            ds.X_train,
            ds.y_train,
            "auto",
        )


def _added_ms(store: DeletionStore, rows: list[int]) -> float:
    """Wall time of one request minus the Unlearner's time inside it, in ms."""
    t = time.perf_counter()
    rec = store.forget(rows)
    return 1e3 * (time.perf_counter() - t - rec["cost"])


def _writing(store: DeletionStore) -> bool:
    """Whether the store's background thread is writing a checkpoint (benchmark only)."""
    thread = store._checkpoint_thread
    return thread is not None and thread.is_alive()


def measure(name, model, X, y, curvature, n_requests, size, seed, workdir):
    every = 32  # the default
    rng = np.random.default_rng(seed)
    n_all = n_requests + every
    rows = rng.permutation(len(y))[: n_all * size].reshape(n_all, size)
    requests = [sorted(int(i) for i in r) for r in rows]
    served, later = requests[:n_requests], requests[n_requests:]
    un = mlu.Unlearner(model, X, y, curvature=curvature)
    bare = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in served:
            t = time.perf_counter()
            un.forget(r, mode="exact")  # the exact update, as in the results file
            bare.append(time.perf_counter() - t)
    path = Path(workdir) / name.split(",")[0].replace(" ", "_")
    t = time.perf_counter()
    store = DeletionStore.create(
        path, model, X, y, curvature=curvature, checkpoint_every=every, mode="exact"
    )
    create_s = time.perf_counter() - t
    wall, cost, during = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in served:
            before = _writing(store)
            t = time.perf_counter()
            rec = store.forget(r)
            wall.append(time.perf_counter() - t)
            cost.append(rec["cost"])
            during.append(before or _writing(store))
        assert np.array_equal(store.model.theta_, un.model.theta_), "store and Unlearner differ"
        store.close()  # waits for the checkpoint in flight
        written = list(store._checkpoint_times)
        # reopened right after a checkpoint: the first request only loads it
        t = time.perf_counter()
        store = DeletionStore.open(path, X, y, checkpoint_every=10**9)
        open_s = time.perf_counter() - t
        first_ms = _added_ms(store, later[0])
        for r in later[1 : every - 1]:  # 31 requests after the checkpoint, none written
            store.forget(r)
        store.close()
        store = DeletionStore.open(path, X, y, checkpoint_every=10**9)
        replay_ms = _added_ms(store, later[every - 1])  # loads it and replays 31
        t = time.perf_counter()
        store.checkpoint()  # alone: nothing else runs
        checkpoint_s = time.perf_counter() - t
        store.close()
    state_mb = (path / f"unlearner-{n_requests + every}.npz").stat().st_size / 1e6
    overhead = 1e3 * (np.array(wall) - np.array(cost))
    quiet = overhead[~np.array(during)]
    busy = overhead[np.array(during)]
    return {
        "problem": name,
        "curvature": un.curvature,
        "requests": n_requests,
        "rows_per_request": size,
        "checkpoint_every": every,
        "unlearner_ms_median": 1e3 * float(np.median(bare)),
        "store_ms_median": 1e3 * float(np.median(wall)),
        "store_inner_unlearner_ms_median": 1e3 * float(np.median(cost)),
        "bookkeeping_ms_median": float(np.median(overhead)),
        "bookkeeping_ms_p90": float(np.percentile(overhead, 90)),
        "bookkeeping_ms_max": float(np.max(overhead)),
        "requests_during_checkpoint": int(busy.size),
        "bookkeeping_ms_max_during_checkpoint": float(busy.max()) if busy.size else None,
        "bookkeeping_ms_max_otherwise": float(quiet.max()) if quiet.size else None,
        "requests_over_10_ms": int((overhead > 10).sum()),
        "requests_over_10_ms_during_checkpoint": int((busy > 10).sum()),
        "bookkeeping_ms_per_request": [round(float(v), 2) for v in overhead],
        "during_checkpoint_per_request": [bool(v) for v in during],
        "checkpoints_in_background": [{"after_request": k, "ms": 1e3 * sec} for k, sec in written],
        "checkpoint_ms_alone": 1e3 * checkpoint_s,
        "state_mb": state_mb,
        "create_s": create_s,
        "open_ms": 1e3 * open_s,
        "first_request_after_open_added_ms": {"replaying 0": first_ms, "replaying 31": replay_ms},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--size", type=int, default=5, help="rows per request")
    ap.add_argument("--problems", nargs="+", default=["digits", "fmnist"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    load = os.getloadavg()
    header = (
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} PYTHONPATH=python "
        f"python benchmarks/store_overhead.py {' '.join(sys.argv[1:])}`; commit {commit()}; "
        f"machine {cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, threads "
        f"{mlu.get_num_threads()}, load average {load[0]:.1f} (shared machine); ext4 disk; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("STORE_DIR")) as workdir:
        for name, model, X, y, curvature in problems(args.problems):
            rows.append(
                measure(name, model, X, y, curvature, args.requests, args.size, args.seed, workdir)
            )
            print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "store_overhead.json").write_text(
        json.dumps({"header": header, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Bookkeeping of a DeletionStore per deletion request (issue 24)",
        "",
        header,
        "",
        f"{args.requests} requests of {args.size} random rows, served by a bare Unlearner and by "
        "a DeletionStore in the same run. Bookkeeping = wall time of `store.forget` minus the "
        "Unlearner's time inside it (same call), over every request, including those served "
        "while the store's thread wrote a checkpoint of the Unlearner's state (every 32 "
        "requests, the default; their number and maximum in the next columns). Checkpoint: its "
        "time in the background (meanwhile requests were served), and one written alone. "
        "Open: `DeletionStore.open` (recovery, hashes); the first request after it loads the "
        "checkpoint and replays the requests logged since (0, or 31 = the most a checkpoint "
        "every 32 leaves): its added ms.",
        "",
        "| problem | curvature | Unlearner ms | store ms | bookkeeping ms median (p90, max) "
        "| requests during a checkpoint (max ms) "
        "| requests > 10 ms (during a checkpoint) | checkpoint ms in background; alone (state MB) "
        "| open ms | first request after open: added ms (replaying 0; 31) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        during = r["bookkeeping_ms_max_during_checkpoint"]
        background = ", ".join(f"{c['ms']:.0f}" for c in r["checkpoints_in_background"])
        first = r["first_request_after_open_added_ms"]
        lines.append(
            f"| {r['problem']} | {r['curvature']} | {r['unlearner_ms_median']:.1f} "
            f"| {r['store_ms_median']:.1f} | {r['bookkeeping_ms_median']:.1f} "
            f"({r['bookkeeping_ms_p90']:.1f}, {r['bookkeeping_ms_max']:.1f}) "
            f"| {r['requests_during_checkpoint']} "
            f"({'-' if during is None else format(during, '.1f')}) "
            f"| {r['requests_over_10_ms']} ({r['requests_over_10_ms_during_checkpoint']}) "
            f"| {background}; {r['checkpoint_ms_alone']:.0f} ({r['state_mb']:.0f}) "
            f"| {r['open_ms']:.0f} | {first['replaying 0']:.0f}; {first['replaying 31']:.0f} |"
        )
    (OUT / "store_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
