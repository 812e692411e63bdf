"""What every experiment of one cell shares: its context, evaluation, detection and unlearning."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...detection.detect import detect, select
from ...engine.model import MLP
from ...metrics.detection import detection_report
from ...metrics.unlearning import evaluate_unlearning
from ...unlearning import baselines
from ...unlearning.sisa import SISA
from ...unlearning.unlearn import unlearn
from .spec import UNLEARN_METHODS, ExperimentConfig, MethodSpec, top_fraction_of

__all__ = [
    "CellContext",
    "accuracy",
    "detect_scores",
    "detection_metrics",
    "evaluate",
    "flatten",
    "load_dataset",
    "per_class",
    "result_diagnostics",
    "select_flagged",
    "threshold_value",
    "unlearn_with",
]


def load_dataset(cfg: ExperimentConfig, name: str):
    """Load ``name`` with the config's classes, capping ``n_per_class`` at what exists."""
    from ...data import datasets, userdata

    if userdata.is_data_file(name):
        data = userdata.load_data(name, label=cfg.data_label)
        return userdata.to_dataset(
            data, classes=cfg.classes, n_per_class=cfg.n_per_class, seed=cfg.data_seed
        )
    kwargs: dict[str, Any] = dict(classes=cfg.classes, seed=cfg.data_seed)
    if cfg.data_root is not None and name != "digits":
        kwargs["root"] = cfg.data_root
    n = cfg.n_per_class
    if n is not None:
        full = datasets.load(name, **kwargs)
        smallest = int(np.bincount(full.y_train, minlength=full.n_classes).min())
        if n >= smallest:
            # digits 0/1 has ~135 training samples per class, not the paper's 1000.
            return full
        return datasets.load(name, n_per_class=int(n), **kwargs)
    return datasets.load(name, **kwargs)


def accuracy(model, X, y) -> float:
    return float(np.mean(model.predict(X) == y)) if len(y) else float("nan")


def per_class(model, X, y, class_names: Sequence[str]) -> dict[str, float]:
    """Test accuracy per class (keyed by class name) and the mean test cross-entropy.

    The loss shows a model's improvement even where accuracy saturates (digits 0 vs 1).
    """
    P = model.predict_proba(X)
    pred = np.argmax(P, axis=1)
    out = {}
    for c, name in enumerate(class_names):
        m = y == c
        out[f"test_acc_{name}"] = float(np.mean(pred[m] == c)) if m.any() else float("nan")
    out["test_loss"] = float(-np.mean(np.log(np.maximum(P[np.arange(len(y)), y], 1e-300))))
    return out


def flatten(prefix: str, obj, out: dict) -> None:
    """Scalars of a (nested) dict into ``out`` as ``prefix_key``; arrays and the rest dropped."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            flatten(f"{prefix}_{k}" if prefix else str(k), v, out)
    elif isinstance(obj, (bool, np.bool_)):
        out[prefix] = bool(obj)
    elif isinstance(obj, (int, float, np.integer, np.floating)):
        out[prefix] = float(obj) if isinstance(obj, (float, np.floating)) else int(obj)
    elif isinstance(obj, str):
        out[prefix] = obj
    elif isinstance(obj, (tuple, list)) and all(isinstance(v, str) for v in obj):
        if obj:  # e.g. the solver's notes
            out[prefix] = "; ".join(obj)


def result_diagnostics(result) -> dict[str, Any]:
    """Solver diagnostics of an UnlearningResult (whatever scalars it carries)."""
    out: dict[str, Any] = {}
    if dataclasses.is_dataclass(result):
        items = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    else:
        items = dict(getattr(result, "__dict__", {}))
    for key, value in items.items():
        if key in ("model", "time"):
            continue
        flatten(key, value, out)
    return out


@dataclass
class CellContext:
    """What every method of one cell needs."""

    cfg: ExperimentConfig
    ds: Any
    dataset: str
    ratio: float
    seed: int
    y: np.ndarray  # noisy labels
    flipped: np.ndarray  # bool mask of truly flipped samples
    model: Any  # trained on the noisy labels
    status: Callable[[str], None]


def evaluate(
    ctx: CellContext,
    model,
    forget: np.ndarray,
    reference=None,
    unlearn_time: float | None = None,
    reference_time: float | None = None,
) -> dict[str, Any]:
    """Test accuracy (mean and per class), forget/retain accuracy, MIA AUC, agreement."""
    ds = ctx.ds
    row: dict[str, Any] = {
        "test_acc": accuracy(model, ds.X_test, ds.y_test),
        **per_class(model, ds.X_test, ds.y_test, ds.class_names),
    }
    if not forget.any():
        return row
    try:
        extra = evaluate_unlearning(
            model,
            ds.X_train,
            ctx.y,
            forget,
            ds.X_test,
            ds.y_test,
            y_true=ds.y_train,
            reference=reference,
            unlearn_time=unlearn_time,
            reference_time=reference_time,
        )
    except Exception as exc:  # a metric failing must not lose the cell's other results
        warnings.warn(f"evaluate_unlearning failed: {exc!r}", stacklevel=2)
        extra = {}
    # Per-class accuracy is already there, keyed by class name.
    extra = {k: v for k, v in extra.items() if k not in row and not k.startswith("test_acc_")}
    flat: dict[str, Any] = {}
    flatten("", extra, flat)
    row.update(flat)
    return row


def unlearn_with(ctx: CellContext, spec: MethodSpec, forget: np.ndarray, X=None, y=None):
    """Run one unlearning method or baseline; returns (model, seconds, diagnostics)."""
    cfg = ctx.cfg
    X = ctx.ds.X_train if X is None else X
    y = ctx.y if y is None else y
    if not forget.any():
        return ctx.model, 0.0, {"note": "nothing to forget"}
    opts = dict(spec.options)
    if spec.name in UNLEARN_METHODS:
        result = unlearn(ctx.model, X, y, forget, method=spec.name, **cfg.unlearn_options(spec))
        return result.model, float(result.time), result_diagnostics(result)
    if spec.name == "sisa":
        t0 = time.perf_counter()
        ens = SISA(
            MLP(**cfg.model_params(ctx.seed)),
            n_shards=int(opts.pop("n_shards", cfg.sisa_shards)),
            n_slices=int(opts.pop("n_slices", cfg.sisa_slices)),
            seed=ctx.seed,
            **opts,
        )
        ens.fit(X, y)
        fit_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        ens.unlearn(np.flatnonzero(forget))
        secs = time.perf_counter() - t0
        return (
            ens,
            secs,
            {
                "fit_time": fit_time,
                "retrained_slices": int(getattr(ens, "last_retrained_slices_", -1)),
            },
        )
    if spec.name == "finetune":
        opts.setdefault("epochs", cfg.finetune_epochs)
    fn = getattr(baselines, spec.name)
    result = fn(ctx.model, X, y, forget, **opts)
    return result.model, float(result.time), result_diagnostics(result)


def select_flagged(ctx: CellContext, scores: np.ndarray, kind: str) -> tuple[np.ndarray, str]:
    """Flag samples by the threshold ``kind``; returns (mask, warning text or "")."""
    top = top_fraction_of(kind, ctx.cfg.top_fraction)
    if top is not None:
        return select(scores, fraction=top), ""
    if kind == "oracle":
        return select(scores, count=int(ctx.flipped.sum())), ""
    if kind == "zero":
        return select(scores, threshold=0.0), ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = select(scores, method="auto", seed=ctx.seed)
    # An unreliable noise-rate estimate is a result to record, not a warning to print.
    return mask, "; ".join(str(w.message) for w in caught)


def threshold_value(scores: np.ndarray, flagged: np.ndarray) -> float | None:
    """The score at which flagging starts (lowest flagged score), None if none flagged."""
    return float(scores[flagged].min()) if flagged.any() else None


def detect_scores(ctx: CellContext, detector: str, cache: dict) -> tuple[np.ndarray, float]:
    if detector not in cache:
        opts = dict(ctx.cfg.detector_options.get(detector, {}))
        if detector == "confident_learning":
            opts.setdefault("seed", ctx.seed)
        t0 = time.perf_counter()
        scores = np.asarray(detect(ctx.model, ctx.ds.X_train, ctx.y, method=detector, **opts))
        cache[detector] = (scores, time.perf_counter() - t0)
    return cache[detector]


def detection_metrics(scores, flagged, true_mask) -> dict[str, Any]:
    if true_mask.all() or not true_mask.any():
        # AUC is undefined with one class; keep the thresholded counts only.
        return {"n_flagged": int(flagged.sum())}
    rep = detection_report(scores, flagged, true_mask)
    out: dict[str, Any] = {"n_flagged": int(flagged.sum())}
    flatten("", dict(rep), out)
    return out
