"""Which target should a deletion request of ``mlu.Unlearner`` take? (issue 23, part 1)

Two candidate updates of a request, each computed from θ̂ with everything removed so far
(the cumulative forget set F, m retained samples):

* ``target="retained"``: the Newton step on L_R, ``θ̂ − (H_R + δI)⁻¹ ∇L_R(θ̂)``;
* ``target="tilted"``: the Newton step of the objective θ̂ minimises, L_D tilted by its
  gradient at θ̂, with F's losses taken out: ``θ̂ + (1/m)(H_R + δI)⁻¹ Σ_F ∇ℓ(θ̂)``.

On noisy data (the flipped samples forgotten in requests, until all are gone) this records
for each target and representation how often the request's check holds (the target objective
does not rise along the full step; a failed K-FAC/EK-FAC step is refined by CG first), the
test accuracy after the last request and its agreement with a model retrained without the
flipped samples (same epochs and seed), the test accuracy of that retrained model, and the
per-request time.

Usage::

    OMP_NUM_THREADS=2 PYTHONPATH=python python benchmarks/unlearner_targets.py

Writes benchmarks/results/unlearner_targets.{json,md} with the command, commit and machine.
"""

from __future__ import annotations

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


def cases() -> list[dict]:
    return [
        dict(name="paper model: Fashion-MNIST 0 vs 1, 2000 samples, 784-50-2, 10% flipped, "
             "requests of 20", data=dict(classes=(0, 1), n_per_class=1000), rate=0.1,
             hidden=(50,), epochs=20, request=20, kinds=("woodbury", "kfac", "ekfac")),
        dict(name="Fashion-MNIST 10 classes, 3000 samples, 784-64-10, 20% flipped, "
             "requests of 60", data=dict(n_per_class=300), rate=0.2,
             hidden=(64,), epochs=20, request=60, kinds=("ekfac", "kfac")),
    ]  # fmt: skip


def run_case(case: dict) -> dict:
    ds = mlu.datasets.load("fashion-mnist", **case["data"])
    X, y_true = ds.X_train, ds.y_train
    k = len(np.unique(y_true))
    noisy = mlu.noise.flip_labels(y_true, rate=case["rate"], seed=0, num_classes=k)
    y = noisy.labels
    flipped = np.flatnonzero(noisy.flipped)
    opts = dict(hidden=case["hidden"], epochs=case["epochs"], seed=0)
    model = mlu.MLP(**opts).fit(X, y)
    keep = np.setdiff1d(np.arange(len(y)), flipped)
    start = time.perf_counter()
    retrained = mlu.MLP(**opts).fit(X[keep], y[keep])
    t_retrain = time.perf_counter() - start
    pred_retrained = retrained.predict(ds.X_test)
    out = {
        "case": case["name"],
        "n": int(len(y)),
        "p": int(model.n_params),
        "flipped": int(len(flipped)),
        "retrain_s": t_retrain,
        "acc_before": float(model.score(ds.X_test, ds.y_test)),
        "acc_retrained": float(retrained.score(ds.X_test, ds.y_test)),
        "rows": [],
    }
    for kind in case["kinds"]:
        un0 = Unlearner(model, X, y, curvature=kind)
        for target in ("tilted", "retained"):
            un = un0  # each target from a fresh copy of the build (same curvature)
            un = Unlearner.__new__(Unlearner)
            un.__dict__.update(un0.__dict__)
            held, refined, times, changes = 0, 0, [], []
            requests = range(0, len(flipped), case["request"])
            for s in requests:
                rows = flipped[s : s + case["request"]]
                try:
                    res = un.forget(rows, target=target, mode="exact")
                    held += 1
                    refined += res.iterations is not None
                    times.append(res.time)
                    changes.append(res.checks[0].full_change)
                except RequestFailedError:
                    un.forget(
                        rows, target=target, safeguard=False, mode="exact"
                    )  # continue the sequence
            pred = un.model.predict(ds.X_test)
            out["rows"].append(
                {
                    "curvature": kind,
                    "target": target,
                    "requests": len(requests),
                    "check_held": held,
                    "refined": refined,
                    "acc_after": float(np.mean(pred == ds.y_test)),
                    "equal_to_retrained": float(np.mean(pred == pred_retrained)),
                    "median_request_s": float(np.median(times)) if times else float("nan"),
                }
            )
            print(out["rows"][-1], flush=True)
    return out


def header() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, threads {mlu.get_num_threads()}"
    return (
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} PYTHONPATH=python "
        f"python benchmarks/unlearner_targets.py`; commit {commit} (plus the working tree of "
        f"this change); machine {machine}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )


def markdown(results: dict) -> str:
    lines = [
        "# Unlearner request targets: tilted against retained (issue 23)",
        "",
        results["header"],
    ]
    for case in results["cases"]:
        lines += [
            "",
            f"## {case['case']} (p = {case['p']}, {case['flipped']} flipped)",
            "",
            f"Test accuracy before {100 * case['acc_before']:.2f} %, retrained without the "
            f"flipped samples {100 * case['acc_retrained']:.2f} % ({case['retrain_s']:.2f} s).",
            "",
            "| curvature | target | check held (of requests) | refined by CG | test acc after "
            "last | equal predictions to retrained | median request (s) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in case["rows"]:
            lines.append(
                f"| {r['curvature']} | {r['target']} | {r['check_held']} / {r['requests']} | "
                f"{r['refined']} | {100 * r['acc_after']:.2f} % | "
                f"{100 * r['equal_to_retrained']:.2f} % | {r['median_request_s']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    results = {"header": header(), "cases": [run_case(c) for c in cases()]}
    stem = os.path.join(HERE, "results", "unlearner_targets")
    with open(stem + ".json", "w") as fh:
        json.dump(results, fh, indent=2)
    with open(stem + ".md", "w") as fh:
        fh.write(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
