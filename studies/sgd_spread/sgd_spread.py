"""How far test accuracy moves with the SGD seed alone, on the pipeline table's cells (issue 12).

    OMP_NUM_THREADS=1 python studies/sgd_spread/sgd_spread.py          # ~4 min

For every data set, noise rate r and data seed of benchmarks/pipeline_table.py (the same data,
flipped labels and model), train the noisy model and the clean retraining (flipped samples left
out) with five SGD seeds each — the cell's own seed and the four after it — and report the
standard deviation of their test accuracy, and how often a noisy model that differs only by its
SGD seed ends more than 0.2 points below the cell's own noisy model (the pipeline table's
"below noisy" test, which the cell's own model passes by definition). Writes
sgd_spread.{csv,md} beside this script.
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
    DATASETS,
    DEFAULT_RATES,
    MAX_DROP,
    cells_of,
    groups,
    noisy_cell,
    write_rows,
)

import mlu

HERE = Path(__file__).resolve().parent
pipeline_table.OUT = HERE  # write_rows() writes here, not to benchmarks/results/

SGD_SEEDS = 5


def cell(name: str, r: float, seed: int) -> dict:
    X, y, flipped, Xt, yt = noisy_cell(name, r, seed)
    seeds = range(seed, seed + SGD_SEEDS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc_noisy = [mlu.MLP(hidden=(50,), seed=s).fit(X, y).score(Xt, yt) for s in seeds]
        acc_clean = [
            mlu.MLP(hidden=(50,), seed=s).fit(X[~flipped], y[~flipped]).score(Xt, yt) for s in seeds
        ]
    return dict(
        dataset=name,
        r=r,
        seed=seed,
        noisy_std=float(np.std(acc_noisy, ddof=1)),
        clean_std=float(np.std(acc_clean, ddof=1)),
        noisy_accs=" ".join(f"{a:.4f}" for a in acc_noisy),
        clean_accs=" ".join(f"{a:.4f}" for a in acc_clean),
        other_seeds_below=int(sum(a < acc_noisy[0] - MAX_DROP - 1e-12 for a in acc_noisy[1:])),
    )


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data set | r | noisy model: SGD-seed std (max over data seeds) | clean retraining: "
        "SGD-seed std | noisy models of another SGD seed > 0.2 below the cell's own |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r, c in groups(rows):
        n_std = [row["noisy_std"] for row in c]
        lines.append(
            f"| {name} | {r:.0%} | {100 * np.mean(n_std):.2f} ({100 * max(n_std):.2f}) | "
            f"{100 * np.mean([row['clean_std'] for row in c]):.2f} | "
            f"{sum(row['other_seeds_below'] for row in c)} of {len(c) * (SGD_SEEDS - 1)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    rows = [cell(*c) for c in cells_of(DATASETS, DEFAULT_RATES, range(5))]
    write_rows(rows, "sgd_spread", markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
