"""Deletion requests against retraining: ``mlu.Unlearner`` on Fashion-MNIST (issue 11).

One run, every number a ratio to a time measured in the same run:

* large: all 10 classes, all 60000 training samples, 784-256-10, 20% flipped labels:
  (a) building EK-FAC vs one retraining with the same epochs; (b) a 100-sample request vs
  one retraining; (c) all flipped samples forgotten in requests of 500 vs one exact-GGN CG
  Newton update of all of them (``mlu.unlearn``): test accuracy and equal predictions.
* paper: Fashion-MNIST 0 vs 1, 2000 samples, 784-50-2 (10% flipped): the Woodbury path
  against the exact CG Newton update, and a 20-sample request vs retraining.

Usage::

    OMP_NUM_THREADS=2 PYTHONPATH=python python benchmarks/unlearner.py [--quick] \
        [--paper-only] [--out benchmarks/unlearner.json]

``--quick`` shrinks the large case (5000 samples, 2 epochs) for a smoke run. Writes JSON and a
markdown table beside it (``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

import mlu
from mlu.unlearn import DEFAULT_DAMPING
from mlu.unlearner import Unlearner


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def large_case(
    n: int | None, epochs: int, request: int, batch: int, partial=lambda d: None
) -> dict:
    ds = mlu.datasets.load("fashion-mnist")
    X, y_true = ds.X_train, ds.y_train
    if n is not None:
        X, y_true = X[:n], y_true[:n]
    noisy = mlu.noise.flip_labels(y_true, rate=0.2, seed=0, num_classes=10)
    y = noisy.labels
    flipped = np.flatnonzero(noisy.flipped)
    model = mlu.MLP(hidden=(256,), epochs=epochs, seed=0)
    _, t_fit = timed(lambda: model.fit(X, y))
    keep = np.setdiff1d(np.arange(len(y)), flipped[:request])
    _, t_retrain = timed(
        lambda: mlu.MLP(hidden=(256,), epochs=epochs, seed=0).fit(X[keep], y[keep])
    )

    un, t_build_total = timed(lambda: Unlearner(model, X, y, curvature="ekfac"))
    saved = os.path.join(tempfile.mkdtemp(), "unlearner.npz")
    _, t_save = timed(lambda: un.save(saved))
    res, t_request = timed(lambda: un.forget(flipped[:request]))

    partial(
        {
            "n": int(len(y)),
            "p": int(model.n_params),
            "epochs": epochs,
            "fit_s": t_fit,
            "retrain_s": t_retrain,
            "ekfac_build_s": un.build_time,
            "ratio_build_to_retrain": un.build_time / t_retrain,
            "request_s": res.time,
            "ratio_request_to_retrain": res.time / t_retrain,
        }
    )
    # (c) all flipped samples in requests of `batch`, from the saved (unrequested) Unlearner
    un_all, t_load = timed(lambda: Unlearner.load(saved, X, y))
    t_requests = []
    for s in range(0, len(flipped), batch):
        r = un_all.forget(flipped[s : s + batch])
        t_requests.append(r.time)
    exact, t_cg = timed(
        lambda: mlu.unlearn(
            model, X, y, flipped, method="newton", curvature="ggn", solver="cg", steps=1
        )
    )  # one update, as the (c) asks (the default takes more steps)
    Xt, yt = ds.X_test, ds.y_test
    pred_ek, pred_cg = un_all.model.predict(Xt), exact.model.predict(Xt)
    return {
        "n": int(len(y)),
        "p": int(model.n_params),
        "epochs": epochs,
        "flipped": int(len(flipped)),
        "fit_s": t_fit,
        "retrain_s": t_retrain,
        "ekfac_build_s": un.build_time,
        "ekfac_init_total_s": t_build_total,
        "ratio_build_to_retrain": un.build_time / t_retrain,
        "save_s": t_save,
        "load_s": t_load,
        "request": request,
        "request_s": res.time,
        "request_wall_s": t_request,
        "ratio_request_to_retrain": res.time / t_retrain,
        "batch": batch,
        "requests": len(t_requests),
        "request_batch_mean_s": float(np.mean(t_requests)),
        "cg_newton_s": t_cg,
        "cg_iterations": exact.iterations,
        "acc_before": float(np.mean(model.predict(Xt) == yt)),
        "acc_ekfac_requests": float(np.mean(pred_ek == yt)),
        "acc_cg_newton": float(np.mean(pred_cg == yt)),
        "equal_predictions": float(np.mean(pred_ek == pred_cg)),
        "damping": DEFAULT_DAMPING,
    }


def paper_case(request: int) -> dict:
    ds = mlu.datasets.load("fashion-mnist", classes=(0, 1), n_per_class=1000)
    X, y_true = ds.X_train, ds.y_train
    noisy = mlu.noise.flip_labels(y_true, rate=0.1, seed=0)
    y = noisy.labels
    flipped = np.flatnonzero(noisy.flipped)
    model = mlu.MLP(hidden=(50,), epochs=20, seed=0)
    model.fit(X, y)
    F = flipped[:request]
    keep = np.setdiff1d(np.arange(len(y)), F)
    retrains = [
        timed(lambda: mlu.MLP(hidden=(50,), epochs=20, seed=0).fit(X[keep], y[keep]))[1]
        for _ in range(3)
    ]
    t_retrain = float(np.median(retrains))
    un, _ = timed(lambda: Unlearner(model, X, y, curvature="woodbury"))
    res, t_wall = timed(lambda: un.forget(F))
    # the requests that follow: their time varies with the update check's line search
    later = [
        un.forget(flipped[k : k + request]).time for k in range(request, 11 * request, request)
    ]
    # and on until every flipped sample is gone: the Gram-space solve grows with all removed
    rest = [
        un.forget(flipped[k : k + request]).time for k in range(11 * request, len(flipped), request)
    ]
    # exactness: the plain formulas, without the update checks (the request's runs on a subsample
    # of R, mlu.unlearn's on all of R, so their line searches may stop at different steps)
    plain = Unlearner(model, X, y, curvature="woodbury").forget(F, safeguard=False)
    exact = mlu.unlearn(model, X, y, F, method="newton", curvature="ggn", solver="cg", tol=1e-12,
                        maxiter=5000, steps=1, safeguard=False)  # fmt: skip
    step_w = plain.model.params - model.params
    step_cg = exact.model.params - model.params
    return {
        "n": int(len(y)),
        "p": int(model.n_params),
        "request": request,
        "retrain_s": t_retrain,
        "woodbury_build_s": un.build_time,
        "request_s": res.time,
        "request_wall_s": t_wall,
        "speedup_request_vs_retrain": t_retrain / res.time,
        "retrain_runs_s": retrains,
        "later_requests_s": later,
        "later_request_median_s": float(np.median(later)),
        "speedup_later_median_vs_retrain": t_retrain / float(np.median(later)),
        "all_requests_s": [res.time, *later, *rest],
        "all_requests_removed": int(len(flipped)),
        "rel_diff_to_cg_newton": float(np.linalg.norm(step_w - step_cg) / np.linalg.norm(step_cg)),
        "cg_residual": exact.residual,
    }


def markdown(results: dict) -> str:
    big, paper = results["large"], results["paper"]
    lines = [
        "# mlu.Unlearner vs retraining (one run; ratios measured in that run)",
        "",
        f"Machine: {results['machine']}, threads {results['threads']}.",
        "",
        f"## Fashion-MNIST, {big['n']} samples, 784-256-10 (p = {big['p']}), 20% flipped, "
        f"{big['epochs']} epochs",
        "",
        "| quantity | value | target |",
        "| --- | --- | --- |",
        f"| retraining (s) | {big['retrain_s']:.2f} | |",
        f"| (a) EK-FAC build (s) / retraining | {big['ekfac_build_s']:.2f} / "
        f"{big['ratio_build_to_retrain']:.3f} | ≤ 0.333 |",
        f"| (b) {big['request']}-sample request (s) / retraining | {big['request_s']:.3f} / "
        f"{big['ratio_request_to_retrain']:.4f} | ≤ 0.01 |",
        f"| (c) test accuracy: before / EK-FAC, {big['requests']} requests of {big['batch']} / "
        f"CG Newton | {100 * big['acc_before']:.2f} / {100 * big['acc_ekfac_requests']:.2f} / "
        f"{100 * big['acc_cg_newton']:.2f} % | within 0.5 points |",
        f"| (c) equal test predictions | {100 * big['equal_predictions']:.2f} % | ≥ 98 % |",
        f"| mean request of {big['batch']} (s); CG Newton of all (s) | "
        f"{big['request_batch_mean_s']:.3f}; {big['cg_newton_s']:.1f} | |",
        "",
        f"## Paper model: Fashion-MNIST 0 vs 1, {paper['n']} samples, 784-50-2 (p = {paper['p']})",
        "",
        "| quantity | value | target |",
        "| --- | --- | --- |",
        f"| Woodbury build (s) | {paper['woodbury_build_s']:.3f} | |",
        f"| {paper['request']}-sample request (s) vs retraining (s) | {paper['request_s']:.4f} vs "
        f"{paper['retrain_s']:.3f} ({paper['speedup_request_vs_retrain']:.0f}×) | ≥ 100× |",
        f"| next 10 requests of {paper['request']}: median (max) (s) | "
        f"{paper['later_request_median_s']:.4f} ({max(paper['later_requests_s']):.4f}), "
        f"{paper['speedup_later_median_vs_retrain']:.0f}× | ≥ 100× |",
        f"| all {len(paper['all_requests_s'])} requests, until the {paper['all_requests_removed']} "
        f"flipped samples are gone: median (max) (s) | {np.median(paper['all_requests_s']):.4f} "
        f"({max(paper['all_requests_s']):.4f}) | |",
        f"| relative difference to the exact CG Newton update | "
        f"{paper['rel_diff_to_cg_newton']:.2e} | exact |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small large-case for a smoke run")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "unlearner.json"))
    parser.add_argument(
        "--paper-only", action="store_true", help="rerun the paper model only (into --out)"
    )
    args = parser.parse_args()
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": mlu.get_num_threads(),
        "paper": paper_case(request=20),
    }
    if args.paper_only:  # the large case's numbers stay those of the last full run
        with open(args.out) as fh:
            old = json.load(fh)
        old.update(results)
        with open(args.out, "w") as fh:
            json.dump(old, fh, indent=2)
        print(json.dumps(results["paper"], indent=2))
        return

    def partial(large: dict) -> None:  # a long run leaves its numbers so far
        with open(args.out + ".partial", "w") as fh:
            json.dump({**results, "large_partial": large}, fh, indent=2)

    partial({})
    results["large"] = large_case(
        n=5000 if args.quick else None,
        epochs=2 if args.quick else 10,
        request=100,
        batch=500,
        partial=partial,
    )
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)
    md = markdown(results)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
        fh.write(md)
    print(md)


if __name__ == "__main__":
    main()
