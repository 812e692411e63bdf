"""Does a Kronecker-factored GGN make a good CG preconditioner for the unlearning solve?

    OMP_NUM_THREADS=1 python studies/pcg_preconditioner/pcg_preconditioner.py

``mlu.unlearn(solver="pcg")`` and the Unlearner's refinement of a factored step run the core's
CG loop on the exact GGN of the retained samples, preconditioned by the K-FAC or EK-FAC GGN
built at θ̂ (docs/design.md, "Solvers"). This counts the CG products needed to reach a relative
residual of 1e-3 and 1e-6 on ``(G_R + (λ+δ)I) x = ∇L_R(θ̂)`` (δ = 0.01, mlu's default) without
a preconditioner and with K-FAC and EK-FAC built with their own damping δ_pre (the
preconditioner's damping need not be the system's). Two trained models: Fashion-MNIST 10
classes, 3000 samples, 784-64-10 (20 epochs); Fashion-MNIST 0 vs 1, 2000 samples, 784-50-2 (20
epochs); 10% of the rows removed. Writes ``pcg_preconditioner.md`` beside this script.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "benchmarks"))

from pipeline_table import provenance  # noqa: E402

import mlu  # noqa: E402
from mlu import _core  # noqa: E402
from mlu.engine._validation import encode_labels  # noqa: E402
from mlu.engine.curvature import build_curvature, make_problem  # noqa: E402

DAMPING = 0.01
PRE_DAMPINGS = (0.01, 0.1, 1.0)
TOLS = (1e-3, 1e-6)
CASES = {
    "Fashion-MNIST 10 classes, 3000 samples, 784-64-10": dict(classes=None, n=3000, hidden=64),
    "Fashion-MNIST 0 vs 1, 2000 samples, 784-50-2": dict(classes=(0, 1), n=2000, hidden=50),
}


def case_rows(name: str, classes, n: int, hidden: int) -> list[str]:
    ds = (
        mlu.datasets.load("fashion-mnist", classes=classes)
        if classes
        else mlu.datasets.load("fashion-mnist")
    )
    X, y = ds.X_train[:n], ds.y_train[:n]
    model = mlu.MLP(hidden=(hidden,), epochs=20, seed=0).fit(X, y)
    keep = np.setdiff1d(np.arange(n), np.arange(0, n, 10))
    op = model.hessian_operator(X[keep], y[keep], curvature="ggn")
    g = model.gradient(X[keep], y[keep])
    problem, _ = make_problem(model, X[keep], encode_labels(y[keep], model.classes_), "all")
    rows = []
    pres: list[tuple[str, object]] = [("none", None)]
    for kind in ("kfac", "ekfac"):
        for damping in PRE_DAMPINGS:
            pres.append(
                (f"{kind}, δ_pre = {damping:g}", build_curvature(problem, kind, damping)[0])
            )
    for label, pre in pres:
        cells = []
        for tol in TOLS:
            tic = time.perf_counter()
            out = _core.cg(
                op.matvec, g, DAMPING, tol, 5000, True,
                precondition=None if pre is None else pre.solve,  # type: ignore[attr-defined]
            )  # fmt: skip
            cells.append(f"{out['iterations']} ({time.perf_counter() - tic:.2f} s)")
        rows.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    header = provenance(sys.argv[1:])
    lines = [
        "# CG products with and without a Kronecker-factored preconditioner",
        "",
        header,
        "Products (wall time, one thread) of the core's CG loop to reach the relative residual; "
        f"system (G_R + (λ+δ)I) x = ∇L_R(θ̂), δ = {DAMPING:g}, 10% of the rows removed.",
        "",
        "| model | preconditioner | tol 1e-3 | tol 1e-6 |",
        "|---|---|---:|---:|",
    ]
    for name, spec in CASES.items():
        lines += case_rows(name, **spec)
    (HERE / "pcg_preconditioner.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
