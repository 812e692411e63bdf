"""The default pipeline on a large network: exact-GGN CG steps against EK-FAC steps (issue 12).

    OMP_NUM_THREADS=1 python benchmarks/unlearn_large.py --seeds 0 1 2 --out unlearn_large_a
    OMP_NUM_THREADS=1 python benchmarks/unlearn_large.py --seeds 3 4 --out unlearn_large_b
    python benchmarks/unlearn_large.py --combine results/unlearn_large_{a,b}.csv

Fashion-MNIST, all 10 classes, ``--per-class`` training samples per class (600: n = 6000),
784-256-10 (p = 203,530), 10 epochs, r = 20% flipped labels. Per seed: train on the noisy
labels (``track=True``), flag with the default detector and threshold, then forget the flags
with ``mlu.unlearn`` under each ``--solvers`` entry (its other options the defaults); compare
test accuracy with the noisy model and with retraining on the truly clean samples, and time
each against one retraining measured in the same process. Writes
benchmarks/results/<out>.csv and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
from pipeline_table import outcome, read_rows, write_rows

import mlu
from mlu.detect import DEFAULT_PIPELINE_DETECTOR, DEFAULT_PIPELINE_THRESHOLD


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_seed(
    seed: int, per_class: int, solvers: list[str], epochs: int, tol: float | None = None
) -> list[dict]:
    ds = mlu.datasets.load("fashion-mnist", classes="all", n_per_class=per_class, seed=seed)
    X, Xt, yt = ds.X_train, ds.X_test, ds.y_test
    noisy = mlu.noise.flip_labels(ds.y_train, rate=0.2, seed=seed)
    y, flipped = noisy.labels, noisy.flipped

    def make(track=False):
        return mlu.MLP(hidden=(256,), epochs=epochs, seed=seed, track=track)

    model = make(track=True).fit(X, y)
    oracle, t_retrain = timed(lambda: make().fit(X[~flipped], y[~flipped]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = mlu.detect(model, X, y, method=DEFAULT_PIPELINE_DETECTOR)
    flags = mlu.select(scores, threshold=DEFAULT_PIPELINE_THRESHOLD)
    noisy_acc, oracle_acc = model.score(Xt, yt), oracle.score(Xt, yt)
    rows = []
    for solver in solvers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # UpdateShortenedWarning: the table reports outcomes
            result, seconds = timed(
                lambda s=solver: mlu.unlearn(model, X, y, flags, solver=s, tol=tol)
            )
        acc = result.model.score(Xt, yt)
        rows.append(
            dict(
                seed=seed, n=len(y), p=model.n_params, solver=solver, tol=tol or "default",
                solver_used=result.solver,
                **outcome(flags, flipped, noisy_acc, acc, oracle_acc, len(yt)),
                seconds=seconds, retrain_s=t_retrain, ratio_to_retrain=seconds / t_retrain,
                steps=result.steps, iterations=result.iterations,
            )
        )  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| seed | solver | flagged (precision / recall) | noisy | unlearned | clean retrain | "
        "gain | recovered | time (s) | × retraining |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rec = r["recovered"]
        lines.append(
            f"| {r['seed']} | {r['solver']} ({r['solver_used']}, tol {r['tol']}) | "
            f"{r['n_flagged']} ({r['precision']:.2f} / {r['recall']:.2f}) | "
            f"{100 * r['noisy_acc']:.2f} | {100 * r['pipeline_acc']:.2f} | "
            f"{100 * r['oracle_acc']:.2f} | {100 * r['gain']:+.2f} | "
            f"{'-' if not np.isfinite(rec) else f'{100 * rec:.0f}%'} | {r['seconds']:.1f} | "
            f"{r['ratio_to_retrain']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--solvers", nargs="+", default=["auto", "ekfac"])
    parser.add_argument("--tol", type=float, help="mlu.unlearn's CG tolerance (its default)")
    parser.add_argument("--out", default="unlearn_large")
    parser.add_argument(
        "--combine", nargs="+", metavar="CSV", help="only join CSVs of earlier (parallel) runs"
    )
    args = parser.parse_args(argv)
    rows: list[dict] = []
    if args.combine:
        rows = read_rows(args.combine)
        _write(rows, args.out)
    for seed in [] if args.combine else args.seeds:
        rows += run_seed(seed, args.per_class, args.solvers, args.epochs, args.tol)
        _write(rows, args.out)  # after every seed: partial runs count
    sys.stdout.write(markdown(rows))


def _write(rows: list[dict], stem: str) -> None:
    write_rows(rows, stem, markdown(rows))


if __name__ == "__main__":
    main()
