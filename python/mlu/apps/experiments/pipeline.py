"""Experiment 3 of a cell: detect, then unlearn what was flagged, against retraining."""

from __future__ import annotations

from typing import Any

import numpy as np

from .cell import CellContext, accuracy, detect_scores, per_class, select_flagged, unlearn_with
from .spec import ROLE_CLEAN, ROLE_KEPT, ROLE_NOISY, ROLE_PIPELINE, MethodSpec, PipelineSpec

__all__ = ["run_pipeline"]


def run_pipeline(
    ctx: CellContext,
    base: dict[str, Any],
    score_cache: dict[str, tuple[np.ndarray, float]],
    clean_model: Any,
    clean_time: float,
    noisy_acc: float,
) -> list[dict[str, Any]]:
    """Run each of ``ctx.cfg.pipelines`` and retrain on what each detector kept.

    Parameters
    ----------
    ctx : CellContext
    base : dict
        The cell's key columns, copied into every row.
    score_cache : dict
        Detector name -> (scores of shape (n,), seconds), shared with the detection experiment.
    clean_model : MLP
        Retrained on the truly clean data.
    clean_time : float
        Seconds that retraining took.
    noisy_acc : float
        Test accuracy of the noisy model.

    Returns
    -------
    list of dict
        Rows with ``role`` noisy, clean_retrain, then unlearn and retrain_kept per pipeline.
    """
    ds, flipped = ctx.ds, ctx.flipped
    rows: list[dict[str, Any]] = []
    common = {**base, "pipeline": "", "detector": "", "threshold": "", "method": ""}
    rows.append(
        {
            **common,
            "role": ROLE_NOISY,
            "time": 0.0,
            "test_acc": noisy_acc,
            **per_class(ctx.model, ds.X_test, ds.y_test, ds.class_names),
        }
    )
    rows.append(
        {
            **common,
            "role": ROLE_CLEAN,
            "method": "retrain",
            "time": clean_time,
            "test_acc": accuracy(clean_model, ds.X_test, ds.y_test),
            **per_class(clean_model, ds.X_test, ds.y_test, ds.class_names),
        }
    )
    kept_done: set[tuple[str, str]] = set()
    for label in ctx.cfg.pipelines:
        spec = PipelineSpec.parse(label)
        ctx.status(f"pipeline {label}")
        scores, dt = detect_scores(ctx, spec.detector, score_cache)
        flagged, note = select_flagged(ctx, scores, spec.threshold)
        tp = int((flagged & flipped).sum())
        info = {
            **base,
            "pipeline": label,
            "detector": spec.detector,
            "threshold": spec.threshold,
            "n_flagged": int(flagged.sum()),
            "true_positives": tp,
            "precision": tp / flagged.sum() if flagged.any() else float("nan"),
            "recall": tp / flipped.sum() if flipped.any() else float("nan"),
            "detect_time": dt,
            "threshold_warning": note,
        }
        new, secs, diag = unlearn_with(ctx, spec.method, flagged)
        rows.append(
            {
                **info,
                "role": ROLE_PIPELINE,
                "method": spec.method.label,
                "unlearn_time": secs,
                "time": dt + secs,
                "test_acc": accuracy(new, ds.X_test, ds.y_test),
                **per_class(new, ds.X_test, ds.y_test, ds.class_names),
                **{f"diag_{k}": v for k, v in diag.items()},
            }
        )
        if (spec.detector, spec.threshold) not in kept_done:
            kept_done.add((spec.detector, spec.threshold))
            kept, secs, _ = unlearn_with(ctx, MethodSpec("retrain"), flagged)
            rows.append(
                {
                    **info,
                    "pipeline": f"{spec.detector}/{spec.threshold}/retrain",
                    "role": ROLE_KEPT,
                    "method": "retrain",
                    "unlearn_time": secs,
                    "time": dt + secs,
                    "test_acc": accuracy(kept, ds.X_test, ds.y_test),
                    **per_class(kept, ds.X_test, ds.y_test, ds.class_names),
                }
            )
    return rows
