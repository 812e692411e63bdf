"""Random deletion requests on all of Fashion-MNIST (issue 23, "Done means", second case).

All 60000 training samples (or the first ``--n``), 784-256-10, 10 epochs, clean labels; a
random 1% forgotten in requests of 100 through ``mlu.Unlearner(curvature="ekfac")`` with the
check on, twice: with ``forget``'s defaults (the exact update, then the default forgetting
mode with the settings :func:`mlu.forgetting.scaled_settings` gives the cumulative forget set)
and with ``mode="exact"``. Per request: applied or refused, refined or not, the update applied
(target, damping), seconds and the ratio to one retraining (the model retrained without the
first request, same epochs and seed, measured in the same run). After the last request, per
way of serving: test accuracy and the loss-threshold membership-inference AUC of the forgotten
samples against the test samples (:func:`mlu.metrics.forgetting_report`), against the
original model and the model retrained without all of them.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=python python benchmarks/unlearner_random.py [--n N]

Writes benchmarks/results/unlearner_random_<n>.{json,md} with command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import mlu
from mlu.metrics import forgetting_report
from mlu.unlearning.unlearner import RequestFailedError, Unlearner

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from provenance import commit, cpu_name  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def serve(model, X, y, forget, mode: str | None) -> tuple[list[dict], mlu.MLP, float]:
    """The requests of 100 through one Unlearner with ``mode`` (None: forget's default)."""
    un = Unlearner(model, X, y, curvature="ekfac")
    rows = []
    for s in range(0, len(forget), 100):
        request = forget[s : s + 100]
        try:
            res = un.forget(request, mode=mode)
            post = [t for t in res.notes if t.startswith("forgetting mode")]
            rows.append(
                {
                    "applied": True,
                    "refined": res.iterations is not None,
                    "update": next(t for t in res.notes if t.startswith("update: "))[8:],
                    "s": res.time,
                    "post": post[0] if post else "",
                }
            )
        except RequestFailedError as exc:
            rows.append({"applied": False, "refused": str(exc)[:300]})
            un.forget(request, safeguard=False, mode=mode)
        print(mode, rows[-1], flush=True)
    return rows, un.model, un.build_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="first n samples (default all)")
    args = parser.parse_args()
    checkout = commit()  # at the start: the code that runs
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
    keep_all = np.setdiff1d(np.arange(n), forget)
    retrained = mlu.MLP(**opts).fit(X[keep_all], y[keep_all])
    ways = {}
    for name, mode in (("default", None), ("exact", "exact")):
        rows, final, build = serve(model, X, y, forget, mode)
        rep = forgetting_report(
            final, X[forget], y[forget], ds.X_test, ds.y_test, reference=retrained, original=model
        )
        ways[name] = {
            "requests": rows,
            "build_s": build,
            "acc": final.score(ds.X_test, ds.y_test),
            "auc": rep.mia_auc,
            "auc_calibrated": rep.mia_auc_calibrated,
        }
    rep0 = forgetting_report(
        model, X[forget], y[forget], ds.X_test, ds.y_test, reference=retrained, original=model
    )
    out = {
        "header": (
            f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} PYTHONPATH=python "
            f"python benchmarks/unlearner_random.py {' '.join(sys.argv[1:])}`; commit {checkout}; "
            f"machine {cpu_name()}, {os.cpu_count()} cores shared with other jobs, threads "
            f"{mlu.get_num_threads()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
        ),
        "n": n,
        "retrain_s": t_retrain,
        "ways": ways,
        "acc_before": model.score(ds.X_test, ds.y_test),
        "acc_retrained": retrained.score(ds.X_test, ds.y_test),
        "auc_before": rep0.original_mia_auc,
        "auc_retrained": rep0.reference_mia_auc,
        "auc_calibrated_before": rep0.original_mia_auc_calibrated,
        "auc_calibrated_retrained": rep0.reference_mia_auc_calibrated,
    }
    lines = [
        f"# Random 1% of {n} Fashion-MNIST samples forgotten in requests of 100 (issue 23)",
        "",
        out["header"],
        "",
        f"784-256-10, 10 epochs, EK-FAC (build {ways['default']['build_s']:.1f} s), check on, "
        f'`target="auto"`; one retraining {t_retrain:.1f} s. "default": `forget(rows)`, the '
        'exact update then the default forgetting mode; "exact": `forget(rows, mode="exact")`.',
    ]
    for name, way in ways.items():
        rows = way["requests"]
        applied = [r for r in rows if r["applied"]]
        lines += [
            "",
            f"## {name}",
            "",
            "| request | applied | refined | update | seconds | / retraining |",
            "| --- | --- | --- | --- | --- | --- |",
            *[
                f"| {k + 1} | {r['applied']} | {r.get('refined', '')} | {r.get('update', '')} | "
                + (f"{r['s']:.3f} | {r['s'] / t_retrain:.4f} |" if r["applied"] else "| |")
                for k, r in enumerate(rows)
            ],
            "",
            f"Applied {len(applied)} of {len(rows)}; the costliest "
            f"{max(r['s'] for r in applied) / t_retrain:.4f} of a retraining. After the last "
            f"request: test accuracy {100 * way['acc']:.2f} %, membership-inference AUC "
            f"(forgotten vs test) {way['auc']:.4f}, per-class calibrated "
            f"{way['auc_calibrated']:.4f}.",
        ]
        if applied and applied[-1]["post"]:
            lines += ["", f"Last request's post-update: {applied[-1]['post']}."]
    lines += [
        "",
        f"Before: test accuracy {100 * out['acc_before']:.2f} %, AUC {out['auc_before']:.4f} "
        f"(calibrated {out['auc_calibrated_before']:.4f}); retrained without the forgotten "
        f"samples: {100 * out['acc_retrained']:.2f} %, AUC {out['auc_retrained']:.4f} "
        f"(calibrated {out['auc_calibrated_retrained']:.4f}).",
    ]
    stem = os.path.join(HERE, "results", f"unlearner_random_{n}")
    with open(stem + ".json", "w") as fh:
        json.dump(out, fh, indent=2)
    with open(stem + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
