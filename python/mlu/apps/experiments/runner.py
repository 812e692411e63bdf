"""One cell of the sweep: train on the noisy labels, then run the three experiments on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ...data import noise
from ...engine.model import MLP
from .cell import CellContext, unlearn_with
from .detection import run_detection
from .pipeline import run_pipeline
from .spec import CELL_FORMAT, ExperimentConfig, MethodSpec
from .unlearning import run_unlearning

__all__ = ["run_cell"]


def run_cell(
    cfg: ExperimentConfig,
    ds,
    dataset: str,
    ratio: float,
    seed: int,
    status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the three experiments on one ``(dataset, ratio, seed)``.

    Parameters
    ----------
    cfg : ExperimentConfig
    ds : mlu.datasets.Dataset
        The loaded data set (see :func:`load_dataset`).
    dataset : str
        Its name (the cell key).
    ratio : float
        Flip ratio r.
    seed : int
        Seed of the flips and of the model.
    status : callable, optional
        Called with a short stage name as the cell progresses (progress bars).

    Returns
    -------
    dict
        JSON-ready: ``detection``, ``unlearning`` and ``pipeline`` (lists of row dicts), and
        ``scores`` (per detector, rounded) with ``flipped`` (indices) and ``thresholds`` for
        the histograms.
    """
    status = status or (lambda s: None)
    t_cell = time.perf_counter()
    noisy = noise.flip_labels(
        ds.y_train, rate=ratio, seed=seed, mode=cfg.noise_mode, num_classes=ds.n_classes
    )
    y, flipped = noisy.labels, noisy.flipped
    classes = np.arange(ds.n_classes)
    status("train")
    t0 = time.perf_counter()
    model = MLP(track=True, **cfg.model_params(seed)).fit(ds.X_train, y, classes=classes)
    train_time = time.perf_counter() - t0
    ctx = CellContext(cfg, ds, dataset, ratio, seed, y, flipped, model, status)
    base = {
        "dataset": dataset,
        "ratio": ratio,
        "seed": seed,
        "n_train": int(len(y)),
        "n_test": int(len(ds.y_test)),
        "n_flipped": int(flipped.sum()),
        "observed_ratio": float(noisy.rate),
    }

    # The clean reference: retrain on the truly clean data (the oracle's retained set).
    status("retrain on clean")
    clean_model, clean_time, _ = unlearn_with(ctx, MethodSpec("retrain"), flipped)
    if clean_model is model and flipped.any():
        raise AssertionError("retrain returned the noisy model")
    if not flipped.any():
        clean_time = 0.0

    score_cache: dict[str, tuple[np.ndarray, float]] = {}
    detection_rows, thresholds = run_detection(ctx, base, score_cache)
    unlearning_rows, noisy_eval = run_unlearning(ctx, base, clean_model, clean_time)
    pipeline_rows = run_pipeline(
        ctx, base, score_cache, clean_model, clean_time, noisy_eval["test_acc"]
    )

    return {
        "format": CELL_FORMAT,
        "dataset": dataset,
        "ratio": ratio,
        "seed": seed,
        "train_time": train_time,
        "cell_time": time.perf_counter() - t_cell,
        "detection": detection_rows,
        "unlearning": unlearning_rows,
        "pipeline": pipeline_rows,
        "flipped": np.flatnonzero(flipped).tolist(),
        "scores": {d: [float(f"{v:.5g}") for v in s] for d, (s, _) in score_cache.items()},
        "thresholds": thresholds,
    }
