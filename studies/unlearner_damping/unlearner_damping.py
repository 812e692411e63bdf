"""EK-FAC deletion requests against one exact-GGN CG Newton update, as a function of damping.

The diagnosis of issue 11 (c) on a copy of its setup that runs in minutes: Fashion-MNIST, the
first ``n`` training samples, all 10 classes, 784-256-10, 20% flipped labels, a few epochs.
Prints test accuracy and the share of test predictions equal to the CG Newton update's, for
EK-FAC at several dampings, with the safeguard off (one request of all flipped samples: the
requests are additive, so this equals requests of ``batch``) and on (requests of ``batch``).

Usage::

    OMP_NUM_THREADS=1 python studies/unlearner_damping/unlearner_damping.py \
        [--n 10000] [--epochs 3] [--batch 250]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import mlu
from mlu.unlearning.unlearner import Unlearner

DAMPINGS = (0.01, 0.03, 0.1, 0.3, 1.0)


def flipped_copy(n: int):
    """The smaller copy of issue 11's data: Fashion-MNIST (all of it, for its test split), the
    first ``n`` training samples with 20% of their labels flipped (seed 0), and the indices of
    the flipped ones: ``(ds, X, y, flipped)``."""
    ds = mlu.datasets.load("fashion-mnist")
    noisy = mlu.noise.flip_labels(ds.y_train[:n], rate=0.2, seed=0, num_classes=10)
    return ds, ds.X_train[:n], noisy.labels, np.flatnonzero(noisy.flipped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=250)
    args = parser.parse_args()
    warnings.simplefilter("ignore", mlu.exceptions.UpdateShortenedWarning)
    ds, X, y, flipped = flipped_copy(args.n)
    model = mlu.MLP(hidden=(256,), epochs=args.epochs, seed=0).fit(X, y)
    Xt, yt = ds.X_test, ds.y_test
    print(f"n={args.n} epochs={args.epochs} flipped={len(flipped)}")
    print(f"test accuracy before: {np.mean(model.predict(Xt) == yt):.4f}")
    start = time.perf_counter()
    exact = mlu.unlearn(
        model,
        X,
        y,
        flipped,
        method="newton",
        curvature="ggn",
        solver="cg",
        steps=1,
        tol=1e-6,
        polish=0,
    )  # fmt: skip (one exact-GGN CG Newton update, as measured)
    pred_cg = exact.model.predict(Xt)
    print(
        f"CG Newton (default damping): accuracy "
        f"{np.mean(pred_cg == yt):.4f}, {exact.iterations} iterations, "
        f"{time.perf_counter() - start:.0f} s"
    )
    for damping in DAMPINGS:
        one = Unlearner(model, X, y, curvature="ekfac", damping=damping)
        seq = Unlearner(model, X, y, curvature="ekfac", damping=damping)
        res = one.forget(flipped, safeguard=False, mode="exact")
        steps = []
        for s in range(0, len(flipped), args.batch):
            steps.append(seq.forget(flipped[s : s + args.batch], mode="exact").checks[0].step)
        for name, m in (("safeguard off", res.model), ("safeguard on ", seq.model)):
            pred = m.predict(Xt)
            print(
                f"damping {damping:<5g} {name}: accuracy {np.mean(pred == yt):.4f}, "
                f"equal to CG {np.mean(pred == pred_cg):.4f}"
            )
        print(f"    safeguard steps: {[round(s, 4) for s in steps]}")


if __name__ == "__main__":
    main()
