"""What a DeletionStore adds to a deletion request (issue 24, "Speed": target <= 10 ms).

For each problem, the same random requests are served twice in one run: by a bare
``mlu.Unlearner`` and by ``mlu.DeletionStore`` (fsynced pending model, SQLite log row in WAL
mode, rename; docs/design.md, "Deletion store"). The bookkeeping of a request is the wall time
of ``store.forget`` minus the Unlearner's own time inside it (the record's ``cost``), measured
in the same call; the bare Unlearner's times are reported beside it. The checkpoint of the
Unlearner's state (every ``checkpoint_every`` = 32 requests by default) is timed on its own,
and so is the first request after reopening (which loads the checkpoint and replays the log).

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=python python benchmarks/store_overhead.py [--requests N]

Writes benchmarks/results/store_overhead.{json,md} with command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

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


def measure(name, model, X, y, curvature, n_requests, size, seed, workdir):
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(y))[: n_requests * size].reshape(n_requests, size)
    requests = [sorted(int(i) for i in r) for r in rows]
    un = mlu.Unlearner(model, X, y, curvature=curvature)
    bare = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in requests:
            t = time.perf_counter()
            un.forget(r, mode="exact")  # the exact update, as in the results file
            bare.append(time.perf_counter() - t)
    path = Path(workdir) / name.split(",")[0].replace(" ", "_")
    t = time.perf_counter()
    store = DeletionStore.create(
        path, model, X, y, curvature=curvature, checkpoint_every=10**9, mode="exact"
    )
    create_s = time.perf_counter() - t
    wall, cost = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in requests:
            t = time.perf_counter()
            rec = store.forget(r)
            wall.append(time.perf_counter() - t)
            cost.append(rec["cost"])
    assert np.array_equal(store.model.theta_, un.model.theta_), "store and Unlearner differ"
    t = time.perf_counter()
    store.checkpoint()
    checkpoint_s = time.perf_counter() - t
    state_mb = (path / f"unlearner-{n_requests}.npz").stat().st_size / 1e6
    store.close()
    t = time.perf_counter()  # reopen: recovery check, hashes of the data and models
    DeletionStore.open(path, X, y).close()
    open_s = time.perf_counter() - t
    overhead = np.array(wall) - np.array(cost)
    return {
        "problem": name,
        "curvature": un.curvature,
        "requests": n_requests,
        "rows_per_request": size,
        "unlearner_ms_median": 1e3 * float(np.median(bare)),
        "store_ms_median": 1e3 * float(np.median(wall)),
        "store_inner_unlearner_ms_median": 1e3 * float(np.median(cost)),
        "bookkeeping_ms_median": 1e3 * float(np.median(overhead)),
        "bookkeeping_ms_p90": 1e3 * float(np.percentile(overhead, 90)),
        "bookkeeping_ms_max": 1e3 * float(np.max(overhead)),
        "checkpoint_ms": 1e3 * checkpoint_s,
        "checkpoint_ms_per_request_at_32": 1e3 * checkpoint_s / 32,
        "state_mb": state_mb,
        "create_s": create_s,
        "open_ms": 1e3 * open_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--size", type=int, default=5, help="rows per request")
    ap.add_argument("--problems", nargs="+", default=["digits", "fmnist"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    load = os.getloadavg()
    header = (
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} PYTHONPATH=python "
        f"python benchmarks/store_overhead.py {' '.join(sys.argv[1:])}`; commit {commit}; "
        f"machine {platform.machine()}, {os.cpu_count()} cores, threads "
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
        "Unlearner's time inside it (same call). Checkpoint: one write of the Unlearner's state "
        "(every 32 requests by default; per request = /32). Reopen: `DeletionStore.open` "
        "(recovery, hashes), without replay (replay is paid by the next request: about the "
        "Unlearner's time per request since the checkpoint).",
        "",
        "| problem | curvature | Unlearner ms | store ms | bookkeeping ms median (p90, max) "
        "| checkpoint ms (state MB) | checkpoint ms / request | open ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['curvature']} | {r['unlearner_ms_median']:.1f} "
            f"| {r['store_ms_median']:.1f} | {r['bookkeeping_ms_median']:.1f} "
            f"({r['bookkeeping_ms_p90']:.1f}, {r['bookkeeping_ms_max']:.1f}) "
            f"| {r['checkpoint_ms']:.0f} ({r['state_mb']:.0f}) "
            f"| {r['checkpoint_ms_per_request_at_32']:.1f} | {r['open_ms']:.0f} |"
        )
    (OUT / "store_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
