"""Experiment 2 of a cell: unlearn the truly flipped samples by every method and baseline."""

from __future__ import annotations

from typing import Any

from .cell import CellContext, evaluate, unlearn_with
from .spec import ROLE_NOISY, MethodSpec

__all__ = ["run_unlearning"]


def run_unlearning(
    ctx: CellContext, base: dict[str, Any], clean_model: Any, clean_time: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Unlearn ``ctx.flipped`` with each of ``ctx.cfg.methods`` and ``ctx.cfg.baselines``.

    Parameters
    ----------
    ctx : CellContext
    base : dict
        The cell's key columns, copied into every row.
    clean_model : MLP
        Retrained on the truly clean data: the reference every method is compared with.
    clean_time : float
        Seconds that retraining took.

    Returns
    -------
    rows : list of dict
        The noisy model's row, then one row per method.
    noisy_eval : dict
        The noisy model's evaluation (reused by the pipeline).
    """
    flipped = ctx.flipped
    noisy_eval = evaluate(ctx, ctx.model, flipped, reference=clean_model, reference_time=clean_time)
    rows = [{**base, "method": ROLE_NOISY, "time": 0.0, **noisy_eval}]
    for label in ctx.cfg.methods + ctx.cfg.baselines:
        spec = MethodSpec.parse(label)
        ctx.status(f"oracle {label}")
        if spec.name == "retrain" and not spec.options:
            new, secs, diag = clean_model, clean_time, {}
        else:
            new, secs, diag = unlearn_with(ctx, spec, flipped)
        row = {**base, "method": label, "time": secs}
        row.update(
            evaluate(
                ctx,
                new,
                flipped,
                reference=clean_model,
                unlearn_time=secs,
                reference_time=clean_time,
            )
        )
        row.update({f"diag_{k}": v for k, v in diag.items()})
        rows.append(row)
    return rows, noisy_eval
