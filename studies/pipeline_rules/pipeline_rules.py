"""Flagging rules for the default pipeline, measured per data set, noise rate and seed (issue 12).

    OMP_NUM_THREADS=1 python studies/pipeline_rules/pipeline_rules.py --out pipeline_rules  # ~50 m
    # as run for the results (two processes, then joined):
    python pipeline_rules.py --datasets fmnist-0v6 digits-10 --out rules_a
    python pipeline_rules.py --datasets fmnist-0v1 digits-0v1 --out rules_b
    python pipeline_rules.py --combine rules_a.csv rules_b.csv --out pipeline_rules

Every cell of benchmarks/pipeline_table.py (same data, noise, model and clean retraining) runs
the pipeline ``flag -> mlu.unlearn`` (defaults) with several flagging rules on the same noisy
model, so the rules are compared on identical models:

* ``aum>0``: the default, AUM (``MLP(track=True)``) with the margin-sign threshold;
* ``aum>0@gmm``: the same ranking, the count clipped to the Gaussian-mixture noise-rate estimate
  (``min(#{aum > 0}, round(r̂ n))``);
* ``xfit``: cross-fitted margins: K = 2 models, each trained on one half (stratified by given
  label), score the samples of the other half; flag a negative out-of-fold margin;
* ``aum>0&xfit``: both;
* ``knn``: deep k-NN (Bahri et al., ICML 2020): a sample is flagged when most of its 25 nearest
  neighbours in the noisy model's hidden layer carry another given label;
* ``aum>0&knn``: both;
* ``aum>0+knn>0.8``: either AUM's flag or at least 80% of those neighbours disagreeing (the
  memorised flips AUM misses, where the neighbourhood is clear);
* ``aum1-5>0``, ``aum1-10>0``: AUM over the first 5 or 10 of the 20 epochs only (before the
  network memorises the flipped samples), the margin-sign threshold;
* ``oracle``: the truly flipped samples (what perfect detection would give the unlearning).

Writes <out>.csv and .md beside this script (one summary row per rule, over all cells and per
data set and r). Result (pipeline_rules.md): no rule beat ``aum>0`` across data sets and seeds;
``aum>0`` rows reproduce pipeline_table.csv exactly; the oracle detector still ends more than
0.2 points below the noisy model in 10 of 65 cells (8 of them Fashion-MNIST 0 vs 6): there the
unlearning step, not detection, limits the pipeline.

The k-NN rules were added later and run with ``--rules aum>0 knn aum>0&knn oracle --out
pipeline_rules_knn`` under the current defaults (eight checked Newton steps, the interpolating
line search; pipeline_rules_knn.md): both met the two per-seed targets in fewer cells than
``aum>0`` (35 and 38 of 65 against 50; the oracle 58). Its second table names the cause of each
cell ``aum>0`` misses: 12 of the 15 are detection; in 3 (Fashion-MNIST 0 vs 6, seed 1 at
r = 10, 20 and 40 %) unlearning the truly flipped samples misses too.

``aum>0+knn>0.8`` (``--rules aum>0 aum>0+knn>0.8 --out pipeline_rules_union``) changed the flags
of 11 cells by 1-3 samples and met both targets in 49 against 50: at r = 40 % a flipped
sample's neighbours disagree with it about 60 % of the time, so the k-NN part never fires
where AUM misses most. One or two more flags of 1000 moved Fashion-MNIST 0 vs 6 by 0.10-0.55
points (4 of 7 cells by more than the 0.2-point tolerance).

The early windows (``--rules aum>0 aum1-5>0 aum1-10>0 --out pipeline_rules_window``) lost too:
35 and 46 of 65 cells met both targets against 50 (mean precision 0.77 and 0.81 against 0.83,
worst cell -14.4 and -5.6 points against -1.6).
"""

from __future__ import annotations

import sys
from pathlib import Path

# The cells and helpers are benchmarks/pipeline_table.py's (it stays there, a headline
# benchmark); this study's results go beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import warnings

import numpy as np
import pipeline_table
from pipeline_table import (
    MAX_DROP,
    MIN_RECOVERED,
    cell_arguments,
    cells_of,
    groups,
    noisy_cell,
    outcome,
    read_rows,
    verdict,
    write_rows,
)

import mlu
from mlu.detection.detect import scores_aum

HERE = Path(__file__).resolve().parent
pipeline_table.OUT = HERE  # write_rows() writes here, not to benchmarks/results/

RULES = (
    "aum>0",
    "aum>0@gmm",
    "xfit",
    "aum>0&xfit",
    "knn",
    "aum>0&knn",
    "aum>0+knn>0.8",
    "aum1-5>0",
    "aum1-10>0",
    "oracle",
)
KNN_NEIGHBOURS = 25


def _knn_disagreement(H: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Share of each sample's k nearest neighbours (Euclidean, itself excluded) in the rows of
    ``H`` whose label differs from its own, shape (n,)."""
    sq = np.einsum("ij,ij->i", H, H)
    out = np.empty(len(y))
    for start in range(0, len(y), 1024):  # blocks bound the distance matrix to 1024 x n
        rows = slice(start, start + 1024)
        dist = sq[rows, None] + sq[None, :] - 2.0 * H[rows] @ H.T
        dist[np.arange(dist.shape[0]), np.arange(start, start + dist.shape[0])] = np.inf
        near = np.argpartition(dist, k, axis=1)[:, :k]
        out[rows] = (y[near] != y[rows, None]).mean(axis=1)
    return out


def _hidden(model, X: np.ndarray) -> np.ndarray:
    """The first hidden layer's ReLU activations, shape (n, hidden)."""
    W, b = model.layers[0]
    return np.maximum(X @ W.T + b, 0.0)


def _folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index in 0..k-1 per sample, stratified by the given label."""
    rng = np.random.default_rng(20_000 + seed)
    fold = np.empty(len(y), dtype=int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % k
    return fold


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    flags = np.zeros(len(scores), dtype=bool)
    flags[np.argsort(-scores, kind="stable")[:count]] = True
    return flags


def run_cell(name: str, r: float, seed: int, rules=RULES) -> list[dict]:
    X, y, flipped, Xt, yt = noisy_cell(name, r, seed)
    model = mlu.MLP(hidden=(50,), seed=seed, track=True).fit(X, y)
    oracle = mlu.MLP(hidden=(50,), seed=seed).fit(X[~flipped], y[~flipped])
    noisy_acc, oracle_acc = model.score(Xt, yt), oracle.score(Xt, yt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aum = mlu.detect(model, X, y, method="aum")
        try:
            rate = mlu.estimate_noise_rate(aum)
        except Exception:  # noqa: BLE001 - a failed estimate means "no clip"
            rate = 1.0
        oof = np.zeros(len(y))
        if {"xfit", "aum>0&xfit"} & set(rules):
            fold = _folds(y, 2, seed)
            for f in range(2):
                part = mlu.MLP(hidden=(50,), seed=seed).fit(
                    X[fold != f], y[fold != f], model.classes_
                )
                oof[fold == f] = part.margins(X[fold == f], y[fold == f])
        knn = np.zeros(len(y))
        if {"knn", "aum>0&knn", "aum>0+knn>0.8"} & set(rules):
            knn = _knn_disagreement(_hidden(model, X), y, KNN_NEIGHBOURS)
        flags = {
            "aum>0": aum > 0,
            "aum>0@gmm": _top(aum, min(int((aum > 0).sum()), int(round(rate * len(y))))),
            "xfit": oof < 0,
            "aum>0&xfit": (aum > 0) & (oof < 0),
            "knn": knn > 0.5,
            "aum>0&knn": (aum > 0) & (knn > 0.5),
            "aum>0+knn>0.8": (aum > 0) | (knn > 0.8),
            "aum1-5>0": scores_aum(model, X, y, last_epoch=5) > 0,
            "aum1-10>0": scores_aum(model, X, y, last_epoch=10) > 0,
            "oracle": flipped.copy(),
        }
        rows = []
        for rule in rules:
            flag = flags[rule]
            ok = flag.any() and not flag.all()
            acc = mlu.unlearn(model, X, y, flag).model.score(Xt, yt) if ok else noisy_acc
            rows.append(
                dict(
                    dataset=name,
                    r=r,
                    seed=seed,
                    rule=rule,
                    **outcome(flag, flipped, noisy_acc, acc, oracle_acc, len(yt)),
                )
            )
    return rows


def summary(rows: list[dict]) -> str:
    lines = [
        "| rule | cells | mean gain | worst gain | precision | recall | > 0.2 below noisy | "
        "recovered < 50% | both met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rule in RULES:
        c = [row for row in rows if row["rule"] == rule]
        if not c:
            continue
        below = [row["gain"] < -MAX_DROP - 1e-12 for row in c]
        short = [np.isfinite(row["recovered"]) and row["recovered"] < MIN_RECOVERED for row in c]
        gains = [row["gain"] for row in c]
        lines.append(
            f"| {rule} | {len(c)} | {100 * np.mean(gains):+.2f} | {100 * min(gains):+.2f} | "
            f"{np.mean([row['precision'] for row in c]):.2f} | "
            f"{np.mean([row['recall'] for row in c]):.2f} | {sum(below)} | {sum(short)} | "
            f"{sum(not (b or s) for b, s in zip(below, short))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = cell_arguments(__doc__.splitlines()[0], "pipeline_rules")
    parser.add_argument("--combine", nargs="+", metavar="CSV", help="only join earlier CSVs")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    args = parser.parse_args(argv)
    rows: list[dict] = []
    if args.combine:
        _write(read_rows(args.combine), args.out)
        return
    for cell in cells_of(args.datasets, args.rates, args.seeds):
        rows += run_cell(*cell, rules=args.rules)
        _write(rows, args.out)
    print(summary(rows))


def causes(rows: list[dict]) -> str:
    """Each cell where ``aum>0`` misses a target, with what limits it: clean retraining itself
    ends more than 0.2 points below the noisy model (the target asks more than retraining on the
    true labels gives), unlearning the truly flipped samples misses too (the unlearning limits),
    or only the flags miss (detection limits)."""
    by_cell = {}
    for row in rows:
        by_cell.setdefault((row["dataset"], row["r"], row["seed"]), {})[row["rule"]] = row
    lines = [
        "| data set | r | seed | noisy | aum>0 | oracle | clean retrain | cause |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (name, r, seed), cell in by_cell.items():
        row, oracle = cell.get("aum>0"), cell.get("oracle")
        if row is None or oracle is None or verdict(row) == "ok":
            continue
        if row["oracle_acc"] < row["noisy_acc"] - MAX_DROP - 1e-12:
            cause = "clean retraining also > 0.2 below noisy"
        elif verdict(oracle) != "ok":
            cause = "unlearning the truly flipped misses too"
        else:
            cause = "detection"
        lines.append(
            f"| {name} | {r:.0%} | {seed} | {100 * row['noisy_acc']:.2f} | "
            f"{100 * row['pipeline_acc']:.2f} | {100 * oracle['pipeline_acc']:.2f} | "
            f"{100 * row['oracle_acc']:.2f} | {cause} |"
        )
    return "\n".join(lines) + "\n"


def _write(rows: list[dict], stem: str) -> None:
    by_data = [f"\n### {name}, r = {r:.0%}\n\n" + summary(c) for name, r, c in groups(rows)]
    misses = f"\n### cells where aum>0 misses a target, by cause\n\n{causes(rows)}"
    write_rows(rows, stem, "### all cells\n\n" + summary(rows) + misses + "".join(by_data))


if __name__ == "__main__":
    main()
