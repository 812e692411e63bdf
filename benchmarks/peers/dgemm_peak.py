"""The machine's dgemm peak: NumPy ``@`` on 2000 x 2000 float64 (OpenBLAS), 1 and 2 threads.

Gives the GFLOP/s ceiling to put beside the GFLOP/s numbers of the other benchmarks. One product
is 2·n³ flops; the best of ``--repeats`` timed products (after one warm-up) estimates the peak,
the median shows how much the shared machine's load took away. Writes ``dgemm_peak.json`` beside
this file. Runs in the global environment::

    python benchmarks/peers/dgemm_peak.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

HERE = Path(__file__).resolve().parent


def time_products(a: np.ndarray, b: np.ndarray, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` products ``a @ b`` after one warm-up."""
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=HERE / "dgemm_peak.json")
    args = p.parse_args(argv)

    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.n, args.n))
    b = rng.standard_normal((args.n, args.n))
    flops = 2.0 * args.n**3
    load_start = os.getloadavg()
    runs = {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            times = time_products(a, b, args.repeats)
        runs[str(threads)] = {
            "seconds": times,
            "gflops_best": flops / min(times) / 1e9,
            "gflops_median": flops / statistics.median(times) / 1e9,
        }
        print(
            f"{threads} thread(s): best {runs[str(threads)]['gflops_best']:.1f} GFLOP/s, "
            f"median {runs[str(threads)]['gflops_median']:.1f}",
            file=sys.stderr,
        )
    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    result = {
        "what": f"numpy @ on {args.n}x{args.n} float64, 2n^3 flops per product",
        "command": " ".join(["python", *sys.argv]),
        "numpy": np.__version__,
        "blas": blas,
        "machine": {
            "platform": platform.platform(),
            "logical_cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "repeats": args.repeats,
        "threads": runs,
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
