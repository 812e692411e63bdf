"""EK-FAC deletion requests against one exact-GGN CG Newton update, from the SGD model and from
(nearly) a minimiser of the training objective: how much of the issue 11 (c) gap is the
non-stationary starting point.

Influence and Newton unlearning assume θ̂ minimises L_D. An SGD model after a few epochs does
not (‖∇L_D(θ̂)‖ is of the size of the removed samples' gradient), so "one Newton step on L_R"
is also half an optimisation step of the whole objective, taken along the directions of small
curvature where a Kronecker-factored curvature and the exact GGN differ most. This script
trains the issue's model on a smaller copy of its data (Fashion-MNIST, the first ``n`` training
samples, all 10 classes, 784-256-10, 20% flipped labels) with a small ``l2`` (so a minimiser
exists), then polishes a copy with L-BFGS on L_D, and compares on both starting points:

* one CG Newton step on L_R with the exact GGN (the reference of issue 11 (c));
* EK-FAC (:class:`mlu.Unlearner`), all flipped samples in one request without the update check;
* EK-FAC, the flipped samples in requests of ``batch`` (the check on, as served).

Usage::

    python studies/unlearner_stationary/unlearner_stationary.py [--n 5000] [--epochs 3] \
        [--l2 1e-3] [--maxiter 2000] [--batch 250]

Writes unlearner_stationary.{json,md} beside this script.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

# flipped_copy() is studies/unlearner_damping/unlearner_damping.py's.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unlearner_damping"))

import numpy as np
from scipy.optimize import minimize
from unlearner_damping import flipped_copy

import mlu
from mlu.unlearning.unlearner import Unlearner

OUT = Path(__file__).resolve().parent  # results beside this script


def polish(model: mlu.MLP, X: np.ndarray, y: np.ndarray, maxiter: int) -> tuple[mlu.MLP, int]:
    """A copy of ``model`` moved by L-BFGS towards a minimiser of its objective on (X, y)."""
    out = copy.deepcopy(model)

    def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        out.params = theta
        return out.objective(X, y), out.gradient(X, y)

    res = minimize(
        value_and_gradient,
        model.params,
        jac=True,
        method="L-BFGS-B",
        options=dict(maxiter=maxiter, gtol=1e-10, ftol=1e-16),
    )
    out.params = res.x
    return out, int(res.nit)


def compare(model, X, y, forget, Xt, yt, batch: int) -> dict:
    """Test accuracy and agreement with the CG Newton update of the three updates above."""
    start = time.perf_counter()
    exact = mlu.unlearn(
        model, X, y, forget, method="newton", curvature="ggn", solver="cg", steps=1, tol=1e-8
    )
    cg_seconds = time.perf_counter() - start
    reference = exact.model.predict(Xt)
    one = (
        Unlearner(model, X, y, curvature="ekfac")
        .forget(forget, safeguard=False, mode="exact")
        .model
    )
    served = Unlearner(model, X, y, curvature="ekfac")
    for s in range(0, len(forget), batch):
        served.forget(forget[s : s + batch], mode="exact")

    def accuracy(m) -> float:
        return float(100 * np.mean(m.predict(Xt) == yt))

    def equal(m) -> float:
        return float(100 * np.mean(m.predict(Xt) == reference))

    return {
        "gradient_norm": float(np.linalg.norm(model.gradient(X, y))),
        "accuracy_before": accuracy(model),
        "equal_before": equal(model),
        "cg_accuracy": float(100 * np.mean(reference == yt)),
        "cg_iterations": int(exact.iterations),
        "cg_seconds": cg_seconds,
        "ekfac_one_accuracy": accuracy(one),
        "ekfac_one_equal": equal(one),
        "ekfac_requests_accuracy": accuracy(served.model),
        "ekfac_requests_equal": equal(served.model),
    }


def markdown(meta: dict, rows: dict) -> str:
    lines = [
        "# EK-FAC requests vs exact CG Newton: SGD model vs minimiser",
        "",
        f"Fashion-MNIST, first {meta['n']} samples, 784-256-10, 20% flipped ({meta['flipped']}), "
        f"{meta['epochs']} epochs of SGD, l2 = {meta['l2']:g}; the minimiser: L-BFGS, "
        f"{meta['lbfgs_iterations']} iterations from the SGD model; requests of {meta['batch']}.",
        "",
        "| start | ‖∇L_D‖ | test acc. before (equal to CG) | CG Newton acc. (iterations) | "
        "EK-FAC, one request, unchecked: acc. / equal to CG | EK-FAC, requests: acc. / equal |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['gradient_norm']:.2e} | {r['accuracy_before']:.2f} "
            f"({r['equal_before']:.2f} %) | {r['cg_accuracy']:.2f} ({r['cg_iterations']}) | "
            f"{r['ekfac_one_accuracy']:.2f} / {r['ekfac_one_equal']:.2f} % | "
            f"{r['ekfac_requests_accuracy']:.2f} / {r['ekfac_requests_equal']:.2f} % |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--maxiter", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--out", default="unlearner_stationary", help="file stem, beside this")
    args = parser.parse_args()
    warnings.simplefilter("ignore", mlu.exceptions.UpdateShortenedWarning)
    ds, X, y, forget = flipped_copy(args.n)
    sgd = mlu.MLP(hidden=(256,), epochs=args.epochs, seed=0, l2=args.l2).fit(X, y)
    start = time.perf_counter()
    minimiser, iterations = polish(sgd, X, y, args.maxiter)
    meta = dict(
        vars(args),
        flipped=int(len(forget)),
        lbfgs_iterations=iterations,
        lbfgs_seconds=time.perf_counter() - start,
    )
    rows = {}
    for name, model in (("SGD", sgd), ("L-BFGS minimiser", minimiser)):
        rows[name] = compare(model, X, y, forget, ds.X_test, ds.y_test, args.batch)
        print(name, json.dumps(rows[name]), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    (OUT / f"{args.out}.md").write_text(markdown(meta, rows))
    print(markdown(meta, rows))


if __name__ == "__main__":
    main()
