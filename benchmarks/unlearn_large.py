"""The default pipeline on a large network, timed against retraining on the kept samples.

    OMP_NUM_THREADS=1 python benchmarks/unlearn_large.py --per-class 0 --seeds 0 1 2 \
        --solvers auto --out unlearn_large_60000            # issue 22: all 60000 samples
    OMP_NUM_THREADS=1 python benchmarks/unlearn_large.py --seeds 0 1 2 --out unlearn_large_a
    python benchmarks/unlearn_large.py --combine results/unlearn_large_{a,b}.csv

Fashion-MNIST, all 10 classes, ``--per-class`` training samples per class (600: n = 6000; 0:
all 60000), 784-256-10 (p = 203,530), 10 epochs, r = 20% flipped labels. Per seed: train on
the noisy labels (``track=True``), flag with the default detector and threshold, then forget the
flags with ``mlu.unlearn`` under each ``--solvers`` entry (its other options the defaults,
:data:`mlu.defaults.DEFAULTS`); compare test accuracy with the noisy model, with retraining on
the truly clean samples and with retraining on the samples the pipeline kept (what the
unlearning approximates), and time the unlearning against that retraining, in the same process.
Writes benchmarks/results/<out>.csv and .md, headed by the command, commit and machine.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
from pipeline_table import outcome, provenance, read_rows, write_rows

import mlu
from mlu.detection.detect import DEFAULT_PIPELINE_DETECTOR, DEFAULT_PIPELINE_THRESHOLD


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_seed(
    seed: int, per_class: int, solvers: list[str], epochs: int, tol: float | None = None
) -> list[dict]:
    ds = mlu.datasets.load("fashion-mnist", classes="all", n_per_class=per_class or None, seed=seed)
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
    kept, t_kept = timed(lambda: make().fit(X[~flags], y[~flags]))
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
                kept_acc=kept.score(Xt, yt), retrain_kept_s=t_kept, fit_time=kept.fit_time_,
                seconds=seconds, retrain_s=t_retrain, ratio_to_retrain=seconds / t_retrain,
                ratio_to_kept=seconds / t_kept, steps=result.steps,
                iterations=result.iterations, polish=result.polish,
            )
        )  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| seed | solver | flagged (precision / recall) | noisy | unlearned | retrain kept | "
        "clean retrain | gain | recovered | time (s) | retrain kept (s) | / retrain kept |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rec = r["recovered"]
        lines.append(
            f"| {r['seed']} | {r['solver']} ({r['solver_used']}, tol {r['tol']}) | "
            f"{r['n_flagged']} ({r['precision']:.2f} / {r['recall']:.2f}) | "
            f"{100 * r['noisy_acc']:.2f} | {100 * r['pipeline_acc']:.2f} | "
            f"{100 * r.get('kept_acc', float('nan')):.2f} | "
            f"{100 * r['oracle_acc']:.2f} | {100 * r['gain']:+.2f} | "
            f"{'-' if not np.isfinite(rec) else f'{100 * rec:.0f}%'} | {r['seconds']:.1f} | "
            f"{r.get('retrain_kept_s', float('nan')):.1f} | "
            f"{r.get('ratio_to_kept', float('nan')):.3f} |"
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
    header = provenance(list(argv) if argv is not None else sys.argv[1:])
    if args.combine:
        rows = read_rows(args.combine)
        _write(rows, args.out, header)
    for seed in [] if args.combine else args.seeds:
        rows += run_seed(seed, args.per_class, args.solvers, args.epochs, args.tol)
        _write(rows, args.out, header)  # after every seed: partial runs count
    sys.stdout.write(markdown(rows))


def _write(rows: list[dict], stem: str, header: str) -> None:
    text = header + "\n" + markdown(rows)
    if rows and "kept_acc" in rows[0]:
        ratio = np.array([r["ratio_to_kept"] for r in rows])
        diff = 100 * np.mean([r["pipeline_acc"] - r["kept_acc"] for r in rows])
        text += (
            f"\nUnlearning / retraining on the kept samples: max {ratio.max():.3f}, mean "
            f"{ratio.mean():.3f}; mean test accuracy unlearned minus retrained on the kept "
            f"samples {diff:+.2f} points over {len(rows)} runs.\n"
        )
    write_rows(rows, stem, text)


if __name__ == "__main__":
    main()
