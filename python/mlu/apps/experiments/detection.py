"""Experiment 1 of a cell: every detector scores the training set, at every threshold."""

from __future__ import annotations

from typing import Any

import numpy as np

from .cell import CellContext, detect_scores, detection_metrics, select_flagged, threshold_value
from .spec import ZERO_DETECTORS

__all__ = ["run_detection"]


def run_detection(
    ctx: CellContext, base: dict[str, Any], score_cache: dict[str, tuple[np.ndarray, float]]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float | None]]]:
    """Score with each of ``ctx.cfg.detectors`` and measure each threshold kind.

    Parameters
    ----------
    ctx : CellContext
    base : dict
        The cell's key columns, copied into every row.
    score_cache : dict
        Detector name -> (scores of shape (n,), seconds); filled here, reused by the pipeline.

    Returns
    -------
    rows : list of dict
        One row per detector x threshold kind.
    thresholds : dict
        Detector -> threshold kind -> the score at which flagging starts (for histograms).
    """
    rows: list[dict[str, Any]] = []
    thresholds: dict[str, dict[str, float | None]] = {}
    for det in ctx.cfg.detectors:
        ctx.status(f"detect {det}")
        scores, dt = detect_scores(ctx, det, score_cache)
        thresholds[det] = {}
        kinds = ("top", "auto", "zero") if det in ZERO_DETECTORS else ("top", "auto")
        for kind in kinds:
            flagged, note = select_flagged(ctx, scores, kind)
            thresholds[det][kind] = 0.0 if kind == "zero" else threshold_value(scores, flagged)
            rows.append(
                {
                    **base,
                    "detector": det,
                    "threshold": kind,
                    "flag_fraction": float(flagged.mean()),
                    "detect_time": dt,
                    **detection_metrics(scores, flagged, ctx.flipped),
                    "threshold_warning": note,
                }
            )
    return rows, thresholds
