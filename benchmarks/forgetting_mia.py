"""Forgetting modes against membership inference (issue 23, part 2).

The memorising model of issue 23: Fashion-MNIST, 10 classes, ``n_per_class`` training samples
per class (300: 3000), 784-256-10, ``epochs`` epochs of the paper's SGD (40). A random 10% of
the training samples is forgotten in 4 requests through :class:`mlu.Unlearner` (its exact
update, from θ̂ with the cumulative forget set); after each request every forgetting mode of
:func:`mlu.forgetting.post_update` runs on that request's exact model (never on an earlier
post-update: path independence). After the last request, per mode, against the original model
and a model retrained without the forgotten samples (same SGD settings and seed):

* the loss-threshold membership-inference AUC (forgotten vs the 10000 test samples) and its
  per-class calibrated variant (:func:`mlu.metrics.forgetting_report`), and the share of the
  original-to-retrained AUC gap the mode closed;
* test accuracy against the retrained model's;
* the cost of a request (exact update + post-update, mean over the 4) as a fraction of the
  wall time of the retraining, measured in the same process (one thread).

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=python python benchmarks/forgetting_mia.py \
        [--seeds 0 1 2] [--n-per-class 300] [--epochs 40] [--requests 4] [--fraction 0.1] \
        [--request-size N] [--modes exact finetune:2 noisy_finetune:2:0.5 ...] \\
        [--no-check] [--stem forgetting_mia]

``--n-per-class 0`` takes all 60000 training samples; ``--request-size N`` splits the forgotten
samples into requests of N instead of ``--requests`` requests.

A mode is ``name[:epochs[:noise[:lr[:anneal[:shrink]]]]]`` (see :func:`parse_mode`; the
same settings at every request), or ``default``: the requests served end to end by a second
Unlearner with ``forget``'s defaults (the exact update, then its default forgetting mode with
the settings :func:`mlu.forgetting.scaled_settings` gives each request's cumulative forget
set; its post-update seconds are read from the result's last note). Writes
benchmarks/results/<stem>.csv (one row per seed and mode) and <stem>.md (per seed, and
mean ± std over seeds), each headed by the command, the commit and the machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import mlu
from mlu.metrics import forgetting_report
from mlu.unlearning.forgetting import post_update
from mlu.unlearning.unlearner import RequestFailedError

RESULTS = Path(__file__).resolve().parent / "results"
#: Per request (``--per-request``): the exact and default models after each request against a
#: model retrained without the samples forgotten so far.
STEPS: list[dict] = []
DEFAULT_MODES = (
    "exact",
    "finetune:1",
    "finetune:2",
    "finetune:3",
    "noise::0.5",
    "noisy_finetune:1:0.5",
    "noisy_finetune:2:0.25",
    "noisy_finetune:2:0.5",
    "noisy_finetune:2:1",
    "noisy_finetune:3:0.5",
)


def parse_mode(text: str) -> dict:
    """``"noisy_finetune:2:0.5:0.03:0:0.3"`` -> name, then post_update's epochs, noise, lr,
    anneal and shrink, fixed for every request (empty or missing fields: epochs and noise 0,
    shrink 1, lr and anneal post_update's defaults)."""
    parts = text.split(":") + [""] * 5
    out: dict = {"mode": parts[0], "epochs": float(parts[1] or 0.0), "noise": float(parts[2] or 0)}
    if parts[3]:
        out["lr"] = float(parts[3])
    if parts[4]:
        out["anneal"] = float(parts[4])
    out["shrink"] = float(parts[5] or 1.0)
    return out


def header(argv: list[str]) -> list[str]:
    """Command, commit and machine, as lines (the results files' header).

    When ``mlu`` is imported from outside this checkout (``MLU_SNAPSHOT_OF=<commit>`` names a
    ``git archive`` of that commit put first on the path, to run clean code while the checkout
    has uncommitted edits), the header says so instead of checking the checkout for edits."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    package = Path(mlu.__file__).resolve().parent
    if package.is_relative_to(root):
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "python", "benchmarks/forgetting_mia.py"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
        where = f"commit: {commit}" + (" (python/ or this script modified)" if dirty else "")
    else:
        snap = os.environ.get("MLU_SNAPSHOT_OF", "unknown")
        where = f"commit: {snap} (mlu imported from {package}, a git archive of that commit)"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        "command: OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "unset") + " "
        "PYTHONPATH=python python " + shlex.join(["benchmarks/forgetting_mia.py", *argv]),
        where,
        f"machine: {cpu}, {os.cpu_count()} cores shared with other jobs, "
        f"{mlu.get_num_threads()} core thread(s), Python {platform.python_version()}, "
        f"NumPy {np.__version__}",
    ]


def run_seed(seed: int, args, modes: list[str]) -> list[dict]:
    per_class = args.n_per_class or None  # 0: all 60000 training samples
    ds = mlu.datasets.load("fashion-mnist", n_per_class=per_class, seed=seed)
    X, y, Xt, yt = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    n = X.shape[0]
    settings = dict(hidden=(256,), epochs=args.epochs, seed=seed)
    tic = time.perf_counter()
    model = mlu.MLP(**settings).fit(X, y)
    train_time = time.perf_counter() - tic
    rng = np.random.default_rng(1000 + seed)
    forget = rng.choice(n, size=int(round(args.fraction * n)), replace=False)
    count = args.requests if args.request_size is None else -(-forget.size // args.request_size)
    requests = np.array_split(forget, count)
    keep = np.setdiff1d(np.arange(n), forget)
    tic = time.perf_counter()
    retrained = mlu.MLP(**settings).fit(X[keep], y[keep], classes=model.classes_)
    retrain_time = time.perf_counter() - tic
    tic = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        un = mlu.Unlearner(model, X, y)
    build_time = time.perf_counter() - tic
    exact_times: list[float] = []
    post_times: dict[str, list[float]] = {m: [] for m in modes}
    final: dict[str, mlu.MLP] = {}
    done: list[np.ndarray] = []
    failed = 0
    served = mlu.Unlearner(model, X, y) if "default" in modes else None
    history: list[tuple[np.ndarray, mlu.MLP, mlu.MLP, str]] = []
    for req in requests:
        tic = time.perf_counter()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            try:
                exact = un.forget(req, safeguard=not args.no_check, mode="exact").model
            except RequestFailedError:  # refused, nothing changed: the plain formula instead
                failed += 1
                exact = un.forget(req, safeguard=False, mode="exact").model
        caught += w
        exact_times.append(time.perf_counter() - tic)
        done.append(req)
        cumulative = np.concatenate(done)
        if served is not None:  # forget's defaults, end to end
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                try:
                    res = served.forget(req, safeguard=not args.no_check)
                except RequestFailedError:
                    res = served.forget(req, safeguard=False)
            caught += w
            seconds = re.search(r", ([0-9.]+) s$", res.notes[-1])
            post_times["default"].append(float(seconds.group(1)) if seconds else float("nan"))
            final["default"] = res.model
            if args.per_request:
                history.append((cumulative, exact, res.model, res.notes[-1]))
        for m in modes:
            if m == "default":
                continue
            out = post_update(exact, X, y, cumulative, **parse_mode(m))
            post_times[m].append(out.time)
            final[m] = out.model
    rows = []
    acc_re = retrained.score(Xt, yt)
    for k, (gone, exact_k, default_k, note) in enumerate(history):
        if k == len(history) - 1:
            ref = retrained
        else:  # retrained without the requests so far (untimed: after the requests)
            kept = np.setdiff1d(np.arange(n), gone)
            ref = mlu.MLP(**settings).fit(X[kept], y[kept], classes=model.classes_)
        for name, m_k in (("exact", exact_k), ("default", default_k)):
            rep = forgetting_report(m_k, X[gone], y[gone], Xt, yt, reference=ref, original=model)
            STEPS.append(
                {
                    "seed": seed,
                    "request": k + 1,
                    "n_forgotten": gone.size,
                    "mode": name,
                    "auc_original": rep.original_mia_auc,
                    "auc_unlearned": rep.mia_auc,
                    "auc_retrained": rep.reference_mia_auc,
                    "gap_closed": rep.gap_closed,
                    "test_acc": m_k.score(Xt, yt),
                    "test_acc_retrained": ref.score(Xt, yt),
                    "post_update": note if name == "default" else "",
                }
            )
    for m in modes:
        rep = forgetting_report(
            final[m], X[forget], y[forget], Xt, yt, reference=retrained, original=model
        )
        cost = (np.mean(exact_times) + np.mean(post_times[m])) / retrain_time
        post_cost = np.mean(post_times[m]) / retrain_time
        worst = max(e + q for e, q in zip(exact_times, post_times[m])) / retrain_time
        rows.append(
            {
                "seed": seed,
                "mode": m,
                "n_train": n,
                "n_forget": forget.size,
                "requests": len(requests),
                "auc_original": rep.original_mia_auc,
                "auc_unlearned": rep.mia_auc,
                "auc_retrained": rep.reference_mia_auc,
                "gap_closed": rep.gap_closed,
                "auc_cal_original": rep.original_mia_auc_calibrated,
                "auc_cal_unlearned": rep.mia_auc_calibrated,
                "auc_cal_retrained": rep.reference_mia_auc_calibrated,
                "gap_closed_cal": rep.gap_closed_calibrated,
                "loss_shift": rep.loss_shift,
                "loss_shift_retrained": rep.reference_loss_shift,
                "test_acc": final[m].score(Xt, yt),
                "test_acc_original": model.score(Xt, yt),
                "test_acc_retrained": acc_re,
                "exact_time": float(np.mean(exact_times)),
                "post_time": float(np.mean(post_times[m])),
                "retrain_time": retrain_time,
                "train_time": train_time,
                "build_time": build_time,
                "cost_per_request": cost,
                "post_cost_per_request": post_cost,
                "max_cost_per_request": worst,
                "failed_checks": failed,
                "warnings": len(caught),
                "curvature": un.curvature,
            }
        )
        print(
            f"seed {seed} {m:24s} AUC {rep.original_mia_auc:.3f} -> {rep.mia_auc:.3f} "
            f"(retrained {rep.reference_mia_auc:.3f}) closed {100 * (rep.gap_closed or 0):5.0f}%"
            f"  test {100 * rows[-1]['test_acc']:.2f} (retrained {100 * acc_re:.2f})"
            f"  cost {cost:.3f} (post {post_cost:.3f}, failed checks {failed})",
            flush=True,
        )
    return rows


def fmt(values: list[float], pct: bool = False, digits: int = 3) -> str:
    a = np.asarray(values, float) * (100 if pct else 1)
    d = 1 if pct else digits
    return f"{a.mean():.{d}f} ± {a.std(ddof=1) if a.size > 1 else 0.0:.{d}f}"


def write(rows: list[dict], head: list[str], stem: str, args) -> None:
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{stem}.csv", "w", newline="") as fh:
        for line in head:
            fh.write(f"# {line}\n")
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    n, m = rows[0]["n_train"], rows[0]["n_forget"]
    out = [f"# Forgetting modes against membership inference ({stem})", ""]
    out += [f"- {line}" for line in head]
    out += [
        "",
        f"Fashion-MNIST, 10 classes, {n} training samples, 784-256-10, {args.epochs} epochs; "
        f"{m} random samples forgotten in {rows[0]['requests']} requests through mlu.Unlearner "
        f"(curvature {rows[0]['curvature']}); unseen = the 10000 test samples; seeds "
        f"{', '.join(map(str, seeds))}. Mode `name:epochs:noise:lr:anneal:shrink` "
        "(mlu.forgetting.post_update with these settings at every request; empty fields: its "
        "lr and anneal, shrink 1, so `::0` is without annealing); `default`: forget's "
        "defaults, served end to end (settings scaled with the cumulative forget set, "
        "mlu.forgetting.scaled_settings). "
        "AUC: loss-threshold membership inference, forgotten vs unseen (0.5 = "
        "indistinguishable); closed = (original − unlearned) / (original − retrained); cost = "
        "mean wall time of one request (exact update + post-update) / one retraining, same "
        "process, one thread; costliest = the largest request's (the machine's 2 cores were "
        "shared with other jobs: times are noisy). A request whose check failed "
        "(RequestFailedError, nothing changed) was served again with safeguard=False (the "
        "plain formula); its failed attempt counts in "
        "the exact update's time; 'failed checks' counts them per seed."
        + (" This run: every request with safeguard=False (--no-check)." if args.no_check else ""),
        "",
        "## Mean ± std over seeds",
        "",
        "| mode | AUC unlearned | AUC retrained | AUC original | gap closed | calibrated gap "
        "closed | test acc | retrained acc | cost / retraining | of which post-update | costliest "
        "request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in modes:
        rs = [r for r in rows if r["mode"] == mode]

        def col(key: str, rs: list[dict] = rs) -> list[float]:
            return [r[key] for r in rs]

        out.append(
            f"| {mode} | {fmt(col('auc_unlearned'))} | {fmt(col('auc_retrained'))} | "
            f"{fmt(col('auc_original'))} | {fmt(col('gap_closed'), pct=True)}% | "
            f"{fmt(col('gap_closed_cal'), pct=True)}% | {fmt(col('test_acc'), pct=True)} | "
            f"{fmt(col('test_acc_retrained'), pct=True)} | {fmt(col('cost_per_request'))} | "
            f"{fmt(col('post_cost_per_request'))} | {fmt(col('max_cost_per_request'))} |"
        )
    out += [
        "",
        "## Per seed",
        "",
        "| seed | mode | AUC orig → unlearned (retrained) | gap closed | calibrated AUC orig → "
        "unlearned (retrained) | calibrated closed | loss shift (retrained) | test acc "
        "(retrained) | exact s | post s | retrain s | cost | costliest | failed checks |",
        "|---:|---|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['seed']} | {r['mode']} | {r['auc_original']:.3f} → {r['auc_unlearned']:.3f} "
            f"({r['auc_retrained']:.3f}) | {100 * r['gap_closed']:.0f}% | "
            f"{r['auc_cal_original']:.3f} → {r['auc_cal_unlearned']:.3f} "
            f"({r['auc_cal_retrained']:.3f}) | {100 * r['gap_closed_cal']:.0f}% | "
            f"{r['loss_shift']:+.3f} ({r['loss_shift_retrained']:+.3f}) | "
            f"{100 * r['test_acc']:.2f} ({100 * r['test_acc_retrained']:.2f}) | "
            f"{r['exact_time']:.3f} | {r['post_time']:.3f} | {r['retrain_time']:.2f} | "
            f"{r['cost_per_request']:.3f} | {r['max_cost_per_request']:.3f} | "
            f"{r['failed_checks']} |"
        )
    if STEPS:
        out += [
            "",
            "## After each request (--per-request)",
            "",
            "Against a model retrained without the samples forgotten so far (same settings "
            "and seed); AUC and gap closed for the samples forgotten so far.",
            "",
            "| seed | request | forgotten | mode | AUC orig → unlearned (retrained) | gap closed "
            "| test acc (retrained) | post-update |",
            "|---:|---:|---:|---|---|---:|---|---|",
        ]
        for r in STEPS:
            out.append(
                f"| {r['seed']} | {r['request']} | {r['n_forgotten']} | {r['mode']} | "
                f"{r['auc_original']:.3f} → {r['auc_unlearned']:.3f} ({r['auc_retrained']:.3f})"
                f" | {100 * r['gap_closed']:.0f}% | {100 * r['test_acc']:.2f} "
                f"({100 * r['test_acc_retrained']:.2f}) | {r['post_update'].split(', seed')[0]} |"
            )
        with open(RESULTS / f"{stem}_requests.csv", "w", newline="") as fh:
            for line in head:
                fh.write(f"# {line}\n")
            writer = csv.DictWriter(fh, fieldnames=list(STEPS[0]))
            writer.writeheader()
            writer.writerows(STEPS)
    (RESULTS / f"{stem}.md").write_text("\n".join(out) + "\n")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-per-class", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--request-size", type=int, default=None, help="instead of --requests")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES))
    ap.add_argument(
        "--no-check", action="store_true", help="serve every request with safeguard=False"
    )
    ap.add_argument("--stem", default="forgetting_mia")
    ap.add_argument(
        "--per-request",
        action="store_true",
        help="with the default mode: report every request's models against a retraining "
        "without the samples forgotten so far (one retraining more per request)",
    )
    args = ap.parse_args(argv)
    head = header(argv)
    rows: list[dict] = []
    for seed in args.seeds:
        rows += run_seed(seed, args, args.modes)
        write(rows, head, args.stem, args)


if __name__ == "__main__":
    main(sys.argv[1:])
