"""Plots of a sweep (matplotlib, Agg backend: no display needed).

Every function draws one PNG and returns its path; files are written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..._files import atomic_path
from ..._optional import import_optional
from .report import aggregate, fmt_pct, mean_std, ordered_unique
from .spec import PAPER_PIPELINE

# matplotlib is an extra: a missing one fails here, naming it.
matplotlib = import_optional("matplotlib", "the plots of mlu run and mlu demo")
matplotlib.use("Agg")  # headless: never open a window, never need a display
plt = import_optional("matplotlib.pyplot", "the plots of mlu run and mlu demo")

__all__ = [
    "plot_accuracy",
    "plot_all",
    "plot_demo",
    "plot_detection",
    "plot_pipeline",
    "plot_score_histograms",
    "plot_times",
]

_COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _save(fig, path: str | os.PathLike) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


# --------------------------------------------------------------------------- histograms


def _draw_histogram(
    ax,
    scores: np.ndarray,
    flipped: np.ndarray,
    thresholds: Mapping[str, Any],
    title: str,
    top_label: str = "top 10%",
) -> None:
    """Scores of clean vs mislabeled samples, with the thresholds as vertical lines."""
    s = np.asarray(scores, dtype=float)
    positive = s[s > 0]
    # Losses span many decades: histogram log10 of them (cheaper to draw than a log axis).
    log = s.min() >= 0 and positive.size > 0 and s.max() / max(positive.min(), 1e-12) > 1e3
    if log:
        floor = max(float(np.percentile(positive, 0.5)), 1e-12)
        s = np.log10(np.maximum(s, floor))
        ax.set_xlabel("log10 score", fontsize=8)
    else:
        ax.set_xlabel("score", fontsize=8)
    bins = np.linspace(float(s.min()), float(s.max()) + 1e-12, 40)
    # stepfilled: one polygon per group instead of one patch per bin (much faster to draw)
    ax.hist(
        s[~flipped], bins=bins, alpha=0.6, color=_COLORS[0], label="clean", histtype="stepfilled"
    )
    ax.hist(
        s[flipped],
        bins=bins,
        alpha=0.6,
        color=_COLORS[3],
        label="mislabeled",
        histtype="stepfilled",
    )
    styles = {"top": ("k", "--", top_label), "auto": ("g", ":", "auto"), "zero": ("m", "-.", "0")}
    for kind, value in thresholds.items():
        if value is None or kind not in styles:
            continue
        color, ls, label = styles[kind]
        x = float(value)
        if log:
            x = float(np.log10(max(x, 10 ** bins[0])))
        ax.axvline(x, color=color, linestyle=ls, linewidth=1.2, label=f"threshold ({label})")
    ax.set_title(title, fontsize=9)
    ax.set_yscale("log")
    ax.tick_params(labelsize=7)


def _auc(scores: np.ndarray, flipped: np.ndarray) -> float:
    if flipped.all() or not flipped.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(flipped, scores))


def plot_score_histograms(
    cells: Sequence[Mapping[str, Any]],
    dataset: str,
    ratios: Sequence[float],
    path: str | os.PathLike,
    detectors: Sequence[str] | None = None,
    top_fraction: float = 0.1,
) -> Path | None:
    """The paper's figure: scores of mislabeled vs clean samples with the thresholds.

    One row per flip ratio (the first seed's cell), one column per detector.

    Returns
    -------
    Path or None
        None when no cell of ``dataset`` at these ratios holds scores.
    """
    chosen = []
    for r in ratios:
        at = [c for c in cells if c["dataset"] == dataset and math.isclose(c["ratio"], r)]
        if at and at[0].get("scores"):
            chosen.append(at[0])
    if not chosen:
        return None
    detectors = list(detectors or chosen[0]["scores"].keys())
    fig, axes = plt.subplots(
        len(chosen),
        len(detectors),
        figsize=(2.8 * len(detectors), 2.3 * len(chosen)),
        squeeze=False,
    )
    for i, cell in enumerate(chosen):
        n = (
            cell["detection"][0]["n_train"]
            if cell["detection"]
            else len(next(iter(cell["scores"].values())))
        )
        flipped = np.zeros(n, dtype=bool)
        flipped[np.asarray(cell["flipped"], dtype=int)] = True
        for j, det in enumerate(detectors):
            ax = axes[i, j]
            if det not in cell["scores"]:
                ax.set_axis_off()
                continue
            s = np.asarray(cell["scores"][det], dtype=float)
            auc = _auc(s, flipped)
            title = f"{det}, r={cell['ratio']:.0%}" + (f", AUC {auc:.3f}" if auc == auc else "")
            _draw_histogram(
                ax, s, flipped, cell["thresholds"].get(det, {}), title, f"top {top_fraction:.0%}"
            )
            if j == 0:
                ax.set_ylabel("samples", fontsize=8)
    # One legend for the figure, with every threshold line that any panel draws.
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="upper right", fontsize=8, ncol=len(handles))
    fig.suptitle(
        f"{dataset}: detector scores of clean vs mislabeled training samples", fontsize=11, x=0.3
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(fig, path)


# --------------------------------------------------------------------------- vs ratio


def _errorbar_lines(
    ax, rows, series_col: str, value: str, where=None, series=None, styles=None
) -> None:
    agg = aggregate(rows, (series_col, "ratio"), value, where=where)
    names = series or ordered_unique(k[0] for k in agg)
    for i, name in enumerate(names):
        pts = sorted((k[1], v) for k, v in agg.items() if k[0] == name and v[2] > 0)
        if not pts:
            continue
        # Stagger the series a little so that overlapping error bars stay visible.
        shift = 0.25 * (i - (len(names) - 1) / 2)
        x = [100 * p[0] + shift for p in pts]
        y = [p[1][0] for p in pts]
        e = [p[1][1] for p in pts]
        style = dict(marker="o", markersize=4, capsize=3, linewidth=1.4, color=_COLORS[i % 10])
        style.update((styles or {}).get(name, {}))
        ax.errorbar(x, y, yerr=e, label=str(name), **style)


def plot_detection(
    det: Sequence[Mapping[str, Any]],
    dataset: str,
    path: str | os.PathLike,
    top_fraction: float = 0.1,
) -> Path | None:
    """Detection ROC-AUC, and F1 at the top fraction and at the automatic threshold, vs r."""
    rows = [r for r in det if r["dataset"] == dataset]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = (
        ("roc_auc", "top", "ROC-AUC"),
        ("f1", "top", f"F1 at top {top_fraction:.0%}"),
        ("f1", "auto", "F1 at the automatic threshold"),
    )
    for ax, (metric, thr, title) in zip(axes, panels):
        _errorbar_lines(ax, rows, "detector", metric, where={"threshold": thr})
        ax.set_title(title)
        ax.set_xlabel("flip ratio r (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score (mean ± std over seeds)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{dataset}: detection quality vs flip ratio")
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy(
    unl: Sequence[Mapping[str, Any]], dataset: str, path: str | os.PathLike
) -> Path | None:
    """Experiment 2: test accuracy vs r per method (oracle forget set), with error bars."""
    rows = [r for r in unl if r["dataset"] == dataset]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    styles = {
        "noisy": dict(color="k", linestyle="--"),
        "retrain": dict(color="0.4", linestyle=":"),
    }
    _errorbar_lines(ax, rows, "method", "test_acc", styles=styles)
    ax.set_xlabel("flip ratio r (%)")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title(f"{dataset}: unlearning the known mislabeled samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_pipeline(
    pipe: Sequence[Mapping[str, Any]],
    dataset: str,
    path: str | os.PathLike,
    main: str | None = None,
    paper: str | None = None,
) -> Path | None:
    """Experiment 3: test accuracy vs r of the pipelines against noisy and clean retraining.

    Left: the main pipeline, retraining on what its detector kept, the paper's pipeline, the
    noisy model and clean retraining. Right: every pipeline's unlearned model.
    """
    rows = [dict(r) for r in pipe if r["dataset"] == dataset]
    if not rows:
        return None
    for r in rows:
        r["series"] = {"noisy": "noisy model", "clean_retrain": "retrain on clean"}.get(
            r["role"], r["pipeline"]
        )
    pipelines = ordered_unique(r["pipeline"] for r in rows if r["role"] == "unlearn")
    main = main or (pipelines[0] if pipelines else None)
    base = ["noisy model", "retrain on clean"]
    styles = {
        "noisy model": dict(color="k", linestyle="--"),
        "retrain on clean": dict(color="0.4", linestyle=":"),
    }
    left = list(base)
    if main:
        det, thr, _ = main.split("/", 2)
        left += [main, f"{det}/{thr}/retrain"]
    if paper and paper in pipelines and paper not in left:
        left.append(paper)
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), sharey=True)
    _errorbar_lines(axes[0], rows, "series", "test_acc", series=left, styles=styles)
    _errorbar_lines(axes[1], rows, "series", "test_acc", series=base + pipelines, styles=styles)
    axes[0].set_title(f"the pipeline ({main})" if main else "pipeline")
    axes[1].set_title("every pipeline (detector/threshold/method)")
    for ax in axes:
        ax.set_xlabel("flip ratio r (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("test accuracy (mean ± std over seeds)")
    fig.suptitle(f"{dataset}: detect, then unlearn")
    fig.tight_layout()
    return _save(fig, path)


def plot_times(
    unl: Sequence[Mapping[str, Any]],
    pipe: Sequence[Mapping[str, Any]],
    dataset: str,
    path: str | os.PathLike,
) -> Path | None:
    """Mean wall time per method (experiment 2) and per pipeline (experiment 3), log scale."""
    rows = [r for r in unl if r["dataset"] == dataset and r["method"] != "noisy"]
    prow = [r for r in pipe if r["dataset"] == dataset and r["role"] not in ("noisy",)]
    if not rows and not prow:
        return None
    labels, means, stds, colors = [], [], [], []
    for m in ordered_unique(r["method"] for r in rows):
        mean, std, _ = mean_std(r["time"] for r in rows if r["method"] == m)
        labels.append(m)
        means.append(mean)
        stds.append(std)
        colors.append(_COLORS[0])
    for p in ordered_unique(r["pipeline"] for r in prow if r["pipeline"]):
        mean, std, _ = mean_std(r["time"] for r in prow if r["pipeline"] == p)
        labels.append(f"pipeline {p}")
        means.append(mean)
        stds.append(std)
        colors.append(_COLORS[1])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5))
    y = np.arange(len(labels))
    ax.barh(y, np.maximum(means, 1e-4), xerr=stds, color=colors, capsize=2)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds (mean ± std over all cells)")
    ax.set_title(f"{dataset}: time to unlearn (pipelines: detection + unlearning)", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, path)


def plot_all(cfg, cells, det, unl, pipe, outdir: str | os.PathLike) -> dict[str, Path]:
    """Every plot of a sweep into ``outdir``; returns ``{name: path}``."""

    outdir = Path(outdir)
    files: dict[str, Path] = {}
    for dataset in cfg.datasets:
        tag = _safe(dataset)
        ratios = [
            r
            for r in cfg.histogram_ratios
            if any(math.isclose(r, c["ratio"]) for c in cells if c["dataset"] == dataset)
        ]
        if not ratios:  # none of the chosen ratios ran: show the largest one that did
            ran = sorted({c["ratio"] for c in cells if c["dataset"] == dataset})
            ratios = ran[-1:]
        made = {
            f"{tag}_histograms": plot_score_histograms(
                cells,
                dataset,
                ratios,
                outdir / f"{tag}_score_histograms.png",
                detectors=cfg.detectors,
                top_fraction=cfg.top_fraction,
            ),
            f"{tag}_detection": plot_detection(
                det, dataset, outdir / f"{tag}_detection.png", cfg.top_fraction
            ),
            f"{tag}_unlearning": plot_accuracy(unl, dataset, outdir / f"{tag}_unlearning.png"),
            f"{tag}_pipeline": plot_pipeline(
                pipe,
                dataset,
                outdir / f"{tag}_pipeline.png",
                main=cfg.pipelines[0] if cfg.pipelines else None,
                paper=PAPER_PIPELINE,
            ),
            f"{tag}_times": plot_times(unl, pipe, dataset, outdir / f"{tag}_times.png"),
        }
        files.update({k: v for k, v in made.items() if v is not None})
    return files


# --------------------------------------------------------------------------- the demo


def plot_demo(
    cell: Mapping[str, Any],
    detector: str,
    bars: Sequence[tuple[str, float, float]],
    path: str | os.PathLike,
    top_fraction: float = 0.1,
) -> Path:
    """The demo's figure: the detector's score histogram, and test loss and accuracy per model.

    Parameters
    ----------
    cell : a cell from :func:`mlu.experiment.run_cell`
    detector : str
        The pipeline's detector.
    bars : sequence of (label, test accuracy, test loss)
    path : output PNG
    top_fraction : float
        The fixed threshold's fraction (for the legend).
    """
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1.3, 1]})
    n = cell["detection"][0]["n_train"]
    flipped = np.zeros(n, dtype=bool)
    flipped[np.asarray(cell["flipped"], dtype=int)] = True
    s = np.asarray(cell["scores"][detector], dtype=float)
    _draw_histogram(
        a1,
        s,
        flipped,
        cell["thresholds"].get(detector, {}),
        f"{cell['dataset']}, r={cell['ratio']:.0%}: {detector} scores, AUC {_auc(s, flipped):.3f}",
        f"top {top_fraction:.0%}",
    )
    a1.set_ylabel("training samples")
    a1.legend(fontsize=8)
    labels = [b[0] for b in bars]
    losses = [b[2] for b in bars]
    colors = ["0.5", _COLORS[1], _COLORS[2], _COLORS[0], _COLORS[4]]
    colors = (colors * (len(bars) // len(colors) + 1))[: len(bars)]
    y = np.arange(len(bars))
    a2.barh(y, losses, color=colors)
    for yi, (_, acc, loss) in zip(y, bars):
        a2.text(loss, yi, f" {loss:.3f}  (accuracy {fmt_pct(acc)}%)", va="center", fontsize=9)
    a2.set_yticks(y, labels, fontsize=9)
    a2.invert_yaxis()
    a2.set_xlim(0, max(losses) * 1.9 if losses else 1.0)
    a2.set_xlabel("test cross-entropy (lower is better)")
    a2.set_title("test loss and accuracy")
    fig.tight_layout()
    return _save(fig, path)
