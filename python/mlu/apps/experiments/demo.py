"""``mlu demo``: one cell on the bundled digits, a printed table and a figure, in seconds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .report import ordered_unique
from .spec import (
    PAPER_PIPELINE,
    ROLE_CLEAN,
    ROLE_KEPT,
    ROLE_NOISY,
    ROLE_PIPELINE,
    ExperimentConfig,
    PipelineSpec,
    describe_threshold,
    parse_ratio,
)
from .sweep import RunResult, run_experiments

__all__ = ["run_demo"]


def run_demo(
    out: str | os.PathLike = "mlu-demo",
    ratio: float | str = 0.2,
    seed: int = 0,
    dataset: str = "digits",
    classes: Sequence[int | str] | None = (0, 1),
    detector: str | None = None,
    epochs: int | None = None,
    hidden: Sequence[int] | None = None,
    print_fn: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Flip labels, train, detect, unlearn, and compare; print a table and write plots.

    One cell of the sweep with the default pipeline (and the paper's, for contrast), on the
    bundled digits 0 vs 1 by default: no files, no network, a few seconds.

    Parameters
    ----------
    out : path
        Output directory: ``demo.png`` (score histogram + accuracies), the usual CSVs,
        plots and ``summary.md``.
    ratio : float or str
        Flip ratio (``0.2`` or ``"20%"``).
    seed : int
    dataset, classes : the data (default digits 0 vs 1)
    detector : str, optional
        Detector of the pipeline (default: that of the default pipeline).
    epochs, hidden : optional overrides of the paper's training settings.
    print_fn : callable or None
        Where the table goes (None: silent).

    Returns
    -------
    dict
        ``table`` (list of (label, test accuracy, test loss, seconds)), ``detection`` (the pipeline
        detector's row at the automatic threshold), ``cell``, ``files`` and ``wall_time``.
    """
    t0 = time.perf_counter()
    # matplotlib only here; a missing one fails before the work, not after it
    from . import plots

    default = ExperimentConfig()
    main = PipelineSpec.parse(default.pipelines[0])
    if detector is not None:
        main = PipelineSpec(detector, main.threshold, main.method)
    paper = PipelineSpec.parse(PAPER_PIPELINE)
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["epochs"] = epochs
    if hidden is not None:
        changes["hidden"] = tuple(hidden)
    r = parse_ratio(ratio)
    cfg = ExperimentConfig(
        datasets=(dataset,),
        classes=None if classes is None else tuple(classes),
        n_per_class=None if dataset == "digits" else default.n_per_class,
        ratios=(r,),
        seeds=(int(seed),),
        detectors=tuple(ordered_unique([main.detector, paper.detector])),
        methods=(main.method.label,),
        baselines=("retrain",),
        pipelines=(main.label, paper.label),
        histogram_ratios=(r,),
        out=str(out),
        **changes,
    )
    result = run_experiments(cfg, progress=False, plots=True, resume=False)
    cell = result.cells[0]
    pipe = {(row["role"], row["pipeline"]): row for row in cell["pipeline"]}
    noisy = pipe[(ROLE_NOISY, "")]
    clean = pipe[(ROLE_CLEAN, "")]
    mine = pipe[(ROLE_PIPELINE, main.label)]
    kept = pipe[(ROLE_KEPT, f"{main.detector}/{main.threshold}/retrain")]
    theirs = pipe[(ROLE_PIPELINE, paper.label)]
    table = [
        ("noisy model (trained on the flipped labels)", noisy, cell["train_time"]),
        (
            f"pipeline: detect ({main.detector}) + unlearn ({main.method.name})",
            mine,
            mine["time"],
        ),
        ("retrain on what the detector kept", kept, kept["unlearn_time"]),
        ("retrain on the truly clean data (oracle)", clean, clean["time"]),
        (
            f"paper's pipeline: {paper.detector}, top {cfg.top_fraction:.0%}, {paper.method.name}",
            theirs,
            theirs["time"],
        ),
    ]
    det_row = next(
        row
        for row in cell["detection"]
        if row["detector"] == main.detector and row["threshold"] == main.threshold
    )
    bars = [
        (name, row["test_acc"], row["test_loss"])
        for name, row in (
            ("noisy", noisy),
            ("pipeline", mine),
            ("retrain on kept", kept),
            ("retrain on clean", clean),
            ("paper's pipeline", theirs),
        )
    ]
    files = dict(result.files)
    files["demo_png"] = plots.plot_demo(
        cell, main.detector, bars, Path(out) / "demo.png", cfg.top_fraction
    )
    wall = time.perf_counter() - t0
    if print_fn is not None:
        n_train = det_row["n_train"]
        lines = [
            f"mlu demo: {dataset} {' vs '.join(map(str, classes or ['all']))}, {n_train} "
            f"training samples, {cell['detection'][0]['n_flipped']} labels flipped "
            f"(r = {r:.0%}, seed {seed}); test set {_n_test(result)} samples",
            f"detection: {main.detector} scores, "
            f"{describe_threshold(main.threshold, cfg.top_fraction)}: ROC-AUC "
            f"{det_row.get('roc_auc', float('nan')):.3f}, flagged {int(det_row['n_flagged'])} "
            f"(precision {det_row.get('precision', float('nan')):.1%}, recall "
            f"{det_row.get('recall', float('nan')):.1%})",
            "",
            f"{'model':<48} {'test acc':>9} {'test loss':>10} {'time':>9}",
        ]
        for label, row, secs in table:
            lines.append(
                f"{label:<48} {100 * row['test_acc']:>8.1f}% {row['test_loss']:>10.4f} "
                f"{secs:>8.3f}s"
            )
        lines.append(
            f"(paper's pipeline: {paper.label}; time = training, or detection + unlearning)"
        )
        lines += [
            "",
            f"plots and tables in {Path(out)}/ (figure: {files['demo_png']}); done in {wall:.1f} s",
        ]
        print_fn("\n".join(lines))
    summary = [(label, row["test_acc"], row["test_loss"], secs) for label, row, secs in table]
    return {"table": summary, "detection": det_row, "cell": cell, "files": files, "wall_time": wall}


def _n_test(result: RunResult) -> str:
    row = result.unlearning[0] if result.unlearning else {}
    return str(row.get("n_test", "?"))
