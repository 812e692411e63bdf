"""The two request targets solved exactly (issue 23): is a target, or its K-FAC form, the loss?

Fashion-MNIST, the first 5000 training samples, 10 classes, 784-256-10, 20% flipped, 10 epochs;
all flipped samples forgotten in one request without the check: test accuracy of the EK-FAC
step and of the exact-GGN step (the Unlearner's refinement, CG preconditioned by EK-FAC, run
to 100 iterations) of each target, against the model before and one retrained without them.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=python python benchmarks/unlearner_exact_targets.py

Writes benchmarks/results/unlearner_exact_targets.{json,md} with command, commit and machine.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import time

import numpy as np

import mlu
from mlu.unlearning.unlearner import Unlearner

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    ds = mlu.datasets.load("fashion-mnist")
    X, y_true = ds.X_train[:5000], ds.y_train[:5000]
    noisy = mlu.noise.flip_labels(y_true, rate=0.2, seed=0, num_classes=10)
    y, flipped = noisy.labels, np.flatnonzero(noisy.flipped)
    model = mlu.MLP(hidden=(256,), epochs=10, seed=0).fit(X, y)

    def acc(m: mlu.MLP) -> float:
        return float(np.mean(m.predict(ds.X_test) == ds.y_test))

    keep = np.setdiff1d(np.arange(len(y)), flipped)
    retrained = mlu.MLP(hidden=(256,), epochs=10, seed=0).fit(X[keep], y[keep])
    base = Unlearner(model, X, y, curvature="ekfac")
    alive = np.ones(len(y), dtype=bool)
    alive[flipped] = False
    curv, prob = base._curv.downdated(flipped), base._problem
    g_F = prob.gradient_sum(flipped)
    rows = []
    for target in ("tilted", "retained"):
        if target == "tilted":
            b = -g_F / curv.m
        else:
            b = (base._grad_sum - g_F) / curv.m + prob.l2 * prob.theta
        x0 = curv.solve(-b)
        x, iterations, residual, seconds = base._refine(alive, curv, -b, x0, lambda v: False)
        for name, step in (("ekfac", x0), ("exact GGN (CG)", x)):
            moved = copy.deepcopy(model)
            moved.theta_ = model.theta_ + step
            rows.append({"target": target, "curvature": name, "test_acc": acc(moved)})
        rows[-1].update(cg_iterations=iterations, cg_residual=residual, cg_s=seconds)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    out = {
        "header": (
            "Command: `OMP_NUM_THREADS=1 PYTHONPATH=python python "
            f"benchmarks/unlearner_exact_targets.py`; commit {commit}; machine "
            f"{platform.machine()}, {os.cpu_count()} cores, threads {mlu.get_num_threads()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
        ),
        "n": int(len(y)),
        "flipped": int(len(flipped)),
        "acc_before": acc(model),
        "acc_retrained": acc(retrained),
        "rows": rows,
    }
    lines = [
        "# Request targets solved exactly (issue 23)",
        "",
        out["header"],
        "",
        f"Fashion-MNIST, {out['n']} samples, 784-256-10, 20% flipped ({out['flipped']}), all "
        "forgotten in one request, no check. Test accuracy before "
        f"{100 * out['acc_before']:.2f} %, retrained without them "
        f"{100 * out['acc_retrained']:.2f} %.",
        "",
        "| target | curvature | test accuracy |",
        "| --- | --- | --- |",
        *[f"| {r['target']} | {r['curvature']} | {100 * r['test_acc']:.2f} % |" for r in rows],
    ]
    stem = os.path.join(HERE, "results", "unlearner_exact_targets")
    with open(stem + ".json", "w") as fh:
        json.dump(out, fh, indent=2)
    with open(stem + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
