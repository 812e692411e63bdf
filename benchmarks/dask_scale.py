"""Scale out: self-influence scores and the gradient / GGN sums on data larger than the workers.

Writes a memory-mapped float32 ``.npy`` of ``--gigabytes`` GB of rows (``--features`` columns,
labels from a fixed random linear teacher) to ``--dir`` (default /tmp), then on a
``distributed.LocalCluster`` whose workers are limited to ``--worker-memory`` each:

* self-influence scores (``params="last"``): the last-layer GGN is tree-summed, factored once,
  and every chunk's scores are computed on its worker; only the scores (n floats, d times
  smaller than X) come back;
* the gradient sum and the GGN sum (``params="last"``), tree-reduced;
* ``mlu.Unlearner(curvature="kfac")`` over all parameters: the K-FAC factor sums tree-reduced
  on the workers (``kfac_build_s``: the curvature alone; ``unlearner_s``: the whole
  construction, with the gradient-sum pass, the labels and the safeguard's row subsample),
  then one deletion request of 100 rows (``forget_s``: only those rows are read).

Each worker reads its chunks straight from the file through a memory map, so no chunk
passes through the client. The peak resident
memory of every worker process is sampled during each run and reported against its limit.

It also times the same calls with 1 and with 2 workers, and the one-machine NumPy path on the
first ``--fit-rows`` rows (which fit in memory) against the cluster on the same rows.

Run by hand (not part of the test suite; the data file is removed at the end unless --keep)::

    PYTHONPATH=python python benchmarks/dask_scale.py                  # 4 GB, workers 1 GB
    PYTHONPATH=python python benchmarks/dask_scale.py --gigabytes 0.5  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np


def write_data(path: Path, n: int, d: int, k: int, seed: int = 0) -> tuple[Path, Path]:
    """X (n, d) float32 and y (n,) int64 as .npy files, written in slabs of ~64 MB."""
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(d, k)) / np.sqrt(d)
    X = np.lib.format.open_memmap(
        path / "dask_scale_X.npy", mode="w+", dtype=np.float32, shape=(n, d)
    )
    y = np.lib.format.open_memmap(path / "dask_scale_y.npy", mode="w+", dtype=np.int64, shape=(n,))
    slab = max(1, (64 << 20) // (4 * d))
    for s in range(0, n, slab):
        e = min(n, s + slab)
        block = rng.normal(size=(e - s, d)).astype(np.float32)
        X[s:e] = block
        y[s:e] = np.argmax(block @ teacher + 0.5 * rng.normal(size=(e - s, k)), axis=1)
    X.flush()
    y.flush()
    del X, y
    return path / "dask_scale_X.npy", path / "dask_scale_y.npy"


class PeakMemory:
    """Samples the resident memory of the cluster's worker processes in a thread."""

    def __init__(self, client):
        self.client = client
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                rss = self.client.run(_rss)
                self.peak = max(self.peak, max(rss.values()))
            except Exception:  # a worker restarting: sample again
                pass
            self._stop.wait(0.25)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _read_rows(path: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a .npy file, read on the worker through a memory map."""
    return np.array(np.load(path, mmap_mode="r")[start:stop])


def dask_inputs(x_path: Path, y_path: Path, rows: int, limit: int | None = None):
    """X and y as dask arrays whose chunks are read from the file on the workers.

    (A memory map handed to ``da.from_array`` would be pickled whole into the graph.)
    """
    import dask
    import dask.array as da

    n, d = np.load(x_path, mmap_mode="r").shape
    n = n if limit is None else min(limit, n)
    pieces = []
    for s in range(0, n, rows):
        e = min(n, s + rows)
        task = dask.delayed(_read_rows, pure=True)(str(x_path), s, e)
        pieces.append(da.from_delayed(task, shape=(e - s, d), dtype=np.float32))
    Xd = da.concatenate(pieces, axis=0)
    labels = []  # read on the workers too: n labels in the graph would be sent with every call
    for s in range(0, n, rows):
        e = min(n, s + rows)
        task = dask.delayed(_read_rows, pure=True)(str(y_path), s, e)
        labels.append(da.from_delayed(task, shape=(e - s,), dtype=np.int64))
    return Xd, da.concatenate(labels)


def run(model, Xd, yd, client) -> dict:
    import mlu

    out = {}
    with PeakMemory(client) as mem:
        t = time.perf_counter()
        scores = mlu.detect(model, Xd, yd, method="self_influence", params="last")
        values = scores.compute()  # n floats: d times smaller than X, whose chunks stay put
        out["self_influence_s"] = time.perf_counter() - t
        out["score_mean"] = float(values.mean())
        del values
        t = time.perf_counter()
        g = model.gradient(Xd, yd, params="last")
        out["gradient_sum_s"] = time.perf_counter() - t
        t = time.perf_counter()
        H = model.hessian(Xd, yd, params="last", curvature="ggn")
        out["ggn_sum_s"] = time.perf_counter() - t
        t = time.perf_counter()
        unlearner = mlu.Unlearner(model, Xd, yd, curvature="kfac")
        out["unlearner_s"] = time.perf_counter() - t
        out["kfac_build_s"] = unlearner.build_time
        t = time.perf_counter()
        unlearner.forget(np.arange(0, Xd.shape[0], Xd.shape[0] // 100)[:100])
        out["forget_s"] = time.perf_counter() - t
    out["gradient_norm"] = float(np.linalg.norm(g))
    out["ggn_trace"] = float(np.trace(H))
    out["worker_peak_rss_gb"] = mem.peak / 1e9
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gigabytes", type=float, default=4.0, help="size of X in GB (float32)")
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--chunk-mb", type=float, default=64.0, help="MB of float32 per chunk")
    # a worker with mlu, scikit-learn and SciPy imported already holds ~0.35 GB: below ~0.6 GB
    # the nanny kills it ("No valid workers found")
    ap.add_argument("--worker-memory", default="1GB")
    ap.add_argument("--fit-rows", type=int, default=200_000, help="rows for the 1-machine run")
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--keep", action="store_true", help="keep the data files")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    from distributed import Client, LocalCluster

    import mlu

    d, k = args.features, args.classes
    n = int(args.gigabytes * 1e9 / (4 * d))
    rows = max(1, int(args.chunk_mb * 1e6 / (4 * d)))
    where = Path(args.dir)
    print(f"writing X: {n} x {d} float32 = {n * d * 4 / 1e9:.2f} GB to {where}", flush=True)
    t = time.perf_counter()
    x_path, y_path = write_data(where, n, d, k)
    print(f"  written in {time.perf_counter() - t:.1f} s; chunks of {rows} rows", flush=True)
    results: dict = {"n": n, "d": d, "k": k, "hidden": args.hidden, "chunk_rows": rows}
    try:
        # The model: trained on the first rows (training stays on one machine).
        X0 = np.asarray(np.load(x_path, mmap_mode="r")[:20_000], dtype=np.float64)
        y0 = np.asarray(np.load(y_path, mmap_mode="r")[:20_000])
        model = mlu.MLP(hidden=(args.hidden,), epochs=3, l2=1e-4, seed=0).fit(X0, y0)
        del X0, y0
        here = str(Path(mlu.__file__).resolve().parents[1])
        env = {"PYTHONPATH": here, "OMP_NUM_THREADS": "1"}
        for workers in (2, 1):
            with (
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    host="127.0.0.1",
                    dashboard_address=None,
                    memory_limit=args.worker_memory,
                    env=env,
                ) as cluster,
                Client(cluster) as client,
            ):
                client.wait_for_workers(workers)  # scatter needs them (slow to start under load)
                client.run(__import__, "mlu")
                Xd, yd = dask_inputs(x_path, y_path, rows)
                r = run(model, Xd, yd, client)
                results[f"full_{workers}w"] = r
                print(f"{workers} worker(s), all {n} rows: {json.dumps(r)}", flush=True)
                if workers == 2:
                    Xs, ys = dask_inputs(x_path, y_path, rows, limit=args.fit_rows)
                    r = run(model, Xs, ys, client)
                    results["fit_rows_2w"] = r
                    print(f"2 workers, first {args.fit_rows} rows: {json.dumps(r)}", flush=True)
        # The one-machine NumPy path on the rows that fit.
        m = min(args.fit_rows, n)
        X1 = np.asarray(np.load(x_path, mmap_mode="r")[:m], dtype=np.float64)
        y1 = np.asarray(np.load(y_path, mmap_mode="r")[:m])
        mlu.set_num_threads(1)  # the same compute as one worker thread
        t = time.perf_counter()
        mlu.detect(model, X1, y1, method="self_influence", params="last")
        local = {"self_influence_s": time.perf_counter() - t}
        t = time.perf_counter()
        model.gradient(X1, y1, params="last")
        local["gradient_sum_s"] = time.perf_counter() - t
        t = time.perf_counter()
        model.hessian(X1, y1, params="last", curvature="ggn")
        local["ggn_sum_s"] = time.perf_counter() - t
        t = time.perf_counter()
        unlearner = mlu.Unlearner(model, X1, y1, curvature="kfac")
        local["unlearner_s"] = time.perf_counter() - t
        local["kfac_build_s"] = unlearner.build_time
        t = time.perf_counter()
        unlearner.forget(np.arange(0, m, m // 100)[:100])
        local["forget_s"] = time.perf_counter() - t
        results["numpy_1thread_fit_rows"] = local
        print(f"NumPy path, 1 thread, first {m} rows: {json.dumps(local)}", flush=True)
    finally:
        if not args.keep:
            for p in (x_path, y_path):
                p.unlink(missing_ok=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
