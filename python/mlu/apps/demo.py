"""``mlu demo``: label noise that visibly hurts, and :func:`mlu.clean` visibly helping.

The default case is scikit-learn's bundled digits, all ten classes, with 30% of the training
labels flipped (seeded): no files, no network, a few seconds. :func:`mlu.clean` holds out part
of the training set, trains the paper's MLP on the rest (features standardised inside the
model), flags suspects by AUM (the pipeline's default detector) and unlearns them; the
demo then scores the model before and after on the untouched test set, next to the same MLP
retrained on the truly clean labels, and leaves the report (with the suspects' pictures) in
``out``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write_text
from ..data.datasets import load
from ..data.noise import flip_labels
from ..data.userdata import from_arrays
from ..engine.model import MLP
from .clean import CleanResult, clean

__all__ = ["demo"]

_DEMO_MARKER = "report.html"  # a directory holding this is an earlier report: safe to replace
_FASHION_PER_CLASS = 200  # keeps Fashion-MNIST (10 classes, 784 features) within ~10 s


def _image_shape(d: int) -> tuple[int, int] | None:
    side = math.isqrt(d)
    return (side, side) if side * side == d else None


def demo(
    out: str | os.PathLike = "mlu-demo",
    dataset: str = "digits",
    ratio: float = 0.3,
    seed: int = 0,
    classes: Sequence[int | str] | None = None,
    n_per_class: int | None = None,
    progress: bool | None = None,
    print_fn: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Flip labels, run :func:`mlu.clean`, and compare on the test set.

    Parameters
    ----------
    out : path
        Directory for :func:`mlu.clean`'s outputs and ``demo.json``. Replaced when it holds an
        earlier report; any other existing directory is refused.
    dataset : str
        A name for :func:`mlu.datasets.load` (``"digits"``, or ``"fashion-mnist"`` when its
        files are present).
    ratio : float
        Fraction of the training labels flipped, in [0, 1).
    seed : int
        Seeds the flips, the held-out split and the training.
    classes : sequence, optional
        Classes to keep (default all).
    n_per_class : int, optional
        Training samples per class (default: all for digits, 200 for the others).
    progress : bool, optional
        Progress bars (default: when stderr is a terminal).
    print_fn : callable or None
        Where the table goes (None: silent).

    Returns
    -------
    dict
        ``test`` (accuracy and loss of ``"before"``, ``"after"`` and ``"clean_retrain"`` on
        the test set), ``gain`` (after − before test accuracy), ``result`` (the
        :class:`~mlu.apps.clean.CleanResult`), ``seconds``.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not (out / _DEMO_MARKER).exists():
        raise FileExistsError(f"{out} exists and is not an earlier report; choose another --out")
    ratio = float(ratio)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if n_per_class is None and dataset != "digits":
        n_per_class = _FASHION_PER_CLASS
    ds = load(dataset, classes=classes, n_per_class=n_per_class, seed=seed)
    noisy = flip_labels(ds.y_train, rate=ratio, seed=seed)
    names = np.asarray(ds.class_names)
    data = from_arrays(
        ds.X_train,
        names[noisy.labels],
        image_shape=_image_shape(ds.n_features),
        flipped=noisy.flipped,
        source=f"{dataset} training set, {ratio:.0%} of the labels flipped (seed {seed})",
    )
    result: CleanResult = clean(data, seed=seed, out=out, force=True, progress=progress)
    # The same MLP on the same searched samples with their true labels: the ceiling.
    train = result.train_index
    oracle = MLP(seed=seed).fit(ds.X_train[train], names[ds.y_train[train]])
    y_test = names[ds.y_test]
    test = {}
    for key, model in (
        ("before", result.original),
        ("after", result.model),
        ("clean_retrain", oracle),
    ):
        test[key] = {
            "accuracy": float(model.score(ds.X_test, y_test)),
            "loss": float(np.mean(model.losses(ds.X_test, y_test))),
        }
    gain = test["after"]["accuracy"] - test["before"]["accuracy"]
    seconds = time.perf_counter() - t0
    atomic_write_text(
        out / "demo.json",
        json.dumps(
            {"dataset": dataset, "ratio": ratio, "seed": seed, "test": test, "gain": gain},
            indent=2,
        ),
    )
    if print_fn is not None:
        u = result.unlearning
        lines = [
            f"mlu demo: {dataset}, {ds.n_classes} classes, {ds.n_train} training samples, "
            f"{noisy.n_flipped} labels flipped (r = {ratio:.0%}, seed {seed}); "
            f"test set {ds.n_test} samples",
            f"mlu.clean: trained the paper's MLP (standardised features) on {len(train)} "
            f"samples (held out "
            f"{len(result.holdout_index)}), flagged {len(result.suspects)} suspects by "
            f"{result.detector} score (precision {_pct(result.precision)}, recall "
            f"{_pct(result.recall)}), unlearned them"
            + (f" ({u.method}, {u.describe_cost()})" if u is not None else ""),
        ]
        b, a = result.before, result.after
        tb, ta = result.trusted_before, result.trusted_after
        if tb is not None and ta is not None:
            lines.append(
                f"held-out split, given labels: all {b.n} samples {_pct(b.accuracy)} -> "
                f"{_pct(a.accuracy)}; the {tb.n} the detector trusts {_pct(tb.accuracy)} -> "
                f"{_pct(ta.accuracy)} (the test set below has true labels)"
            )
        lines += [
            "",
            f"{'model':<46} {'test acc':>9} {'test loss':>10}",
        ]
        for label, key in (
            ("before: trained on the noisy labels", "before"),
            ("after: suspects unlearned (mlu clean)", "after"),
            ("retrained on the true labels (oracle)", "clean_retrain"),
        ):
            lines.append(
                f"{label:<46} {100 * test[key]['accuracy']:>8.1f}% {test[key]['loss']:>10.4f}"
            )
        lines += [
            "",
            f"test accuracy {100 * gain:+.1f} points; report with the suspects' pictures: "
            f"{out / 'report.html'} (and report.md); done in {seconds:.1f} s",
        ]
        print_fn("\n".join(lines))
    return {"test": test, "gain": gain, "result": result, "seconds": seconds}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"
