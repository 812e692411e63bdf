"""Random deletion requests on all of Fashion-MNIST (issue 23, "Done means", second case).

All 60000 training samples (or the first ``--n``), 784-256-10, 10 epochs, clean labels; a
random 1% forgotten in requests of 100 through ``mlu.Unlearner(curvature="ekfac")`` with the
check on. Per request: applied or refused, refined or not, the target applied, seconds and the
ratio to one retraining (the model retrained without the first request, same epochs and seed,
measured in the same run); then test accuracy before, after the last request and retrained.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=python python benchmarks/unlearner_random.py [--n N]

Writes benchmarks/results/unlearner_random_<n>.{json,md} with command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

import mlu
from mlu.unlearning.unlearner import RequestFailedError, Unlearner

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="first n samples (default all)")
    args = parser.parse_args()
    ds = mlu.datasets.load("fashion-mnist")
    X, y = ds.X_train, ds.y_train
    if args.n is not None:
        X, y = X[: args.n], y[: args.n]
    n = len(y)
    forget = np.random.default_rng(0).choice(n, size=n // 100, replace=False)
    opts = dict(hidden=(256,), epochs=10, seed=0)
    model = mlu.MLP(**opts).fit(X, y)
    keep = np.setdiff1d(np.arange(n), forget[:100])
    start = time.perf_counter()
    mlu.MLP(**opts).fit(X[keep], y[keep])
    t_retrain = time.perf_counter() - start
    un = Unlearner(model, X, y, curvature="ekfac")
    rows = []
    for s in range(0, len(forget), 100):
        request = forget[s : s + 100]
        try:
            res = un.forget(request, mode="exact")
            rows.append(
                {
                    "applied": True,
                    "refined": res.iterations is not None,
                    "target": next(t for t in res.notes if t.startswith("update: ")),
                    "s": res.time,
                }
            )
        except RequestFailedError as exc:
            rows.append({"applied": False, "refused": str(exc)[:300]})
            un.forget(request, safeguard=False, mode="exact")
        print(rows[-1], flush=True)
    keep_all = np.setdiff1d(np.arange(n), forget)
    retrained = mlu.MLP(**opts).fit(X[keep_all], y[keep_all])

    def acc(m: mlu.MLP) -> float:
        return float(np.mean(m.predict(ds.X_test) == ds.y_test))

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    out = {
        "header": (
            f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} PYTHONPATH=python "
            f"python benchmarks/unlearner_random.py {' '.join(sys.argv[1:])}`; commit {commit}; "
            f"machine {platform.machine()}, {os.cpu_count()} cores, threads "
            f"{mlu.get_num_threads()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
        ),
        "n": n,
        "retrain_s": t_retrain,
        "ekfac_build_s": un.build_time,
        "requests": rows,
        "acc_before": acc(model),
        "acc_after": acc(un.model),
        "acc_retrained": acc(retrained),
    }
    applied = [r for r in rows if r["applied"]]
    lines = [
        f"# Random 1% of {n} Fashion-MNIST samples forgotten in requests of 100 (issue 23)",
        "",
        out["header"],
        "",
        f"784-256-10, 10 epochs, EK-FAC (build {un.build_time:.1f} s), check on, "
        f'`target="auto"`; one retraining {t_retrain:.1f} s.',
        "",
        "| request | applied | refined | target | seconds | / retraining |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {k + 1} | {r['applied']} | {r.get('refined', '')} | {r.get('target', '')} | "
            + (f"{r['s']:.3f} | {r['s'] / t_retrain:.4f} |" if r["applied"] else "| |")
            for k, r in enumerate(rows)
        ],
        "",
        f"Applied {len(applied)} of {len(rows)}. Test accuracy before "
        f"{100 * out['acc_before']:.2f} %, after the last request {100 * out['acc_after']:.2f} %, "
        f"retrained without the forgotten samples {100 * out['acc_retrained']:.2f} %.",
    ]
    stem = os.path.join(HERE, "results", f"unlearner_random_{n}")
    with open(stem + ".json", "w") as fh:
        json.dump(out, fh, indent=2)
    with open(stem + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
