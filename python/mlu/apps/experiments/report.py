"""Aggregate experiment rows (mean ± std over seeds) and write the Markdown summary."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .spec import PipelineSpec

__all__ = [
    "aggregate",
    "fmt_pct",
    "mean_std",
    "ordered_unique",
    "pipeline_table",
    "summary",
    "verdicts",
]

#: Gaps to clean retraining smaller than this (accuracy, absolute) count as "no gap".
NO_GAP = 0.002


def _num(v) -> float:
    if v is None or v == "":
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def mean_std(values: Iterable[Any]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of finite values."""
    a = np.array([_num(v) for v in values], dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan"), float("nan"), 0
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return float(a.mean()), std, int(a.size)


def aggregate(
    rows: Iterable[Mapping[str, Any]],
    by: Sequence[str],
    value: str,
    where: Mapping[str, Any] | None = None,
) -> dict[tuple, tuple[float, float, int]]:
    """Mean ± std of ``value`` over the rows sharing the ``by`` columns (i.e. over seeds).

    Parameters
    ----------
    rows : iterable of dict
    by : sequence of str
        Grouping columns, e.g. ``("dataset", "ratio", "method")``.
    value : str
        The column to average.
    where : dict, optional
        Keep only rows whose columns equal these values.

    Returns
    -------
    dict
        ``{group key tuple: (mean, std, n)}`` in first-seen order.
    """
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        if where and any(row.get(k) != v for k, v in where.items()):
            continue
        groups[tuple(row.get(k) for k in by)].append(row.get(value))
    return {k: mean_std(v) for k, v in groups.items()}


def fmt_pct(mean: float, std: float | None = None, digits: int = 1) -> str:
    """``97.3 ± 0.4`` (in percent); ``–`` for NaN."""
    if not math.isfinite(mean):
        return "–"
    if std is None or not math.isfinite(std):
        return f"{100 * mean:.{digits}f}"
    return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}"


def fmt_num(mean: float, std: float | None = None, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "–"
    if seconds < 1:
        return f"{1000 * seconds:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ordered_unique(values: Iterable[Any]) -> list:
    """The distinct values in first-seen order."""
    seen: list = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


# --------------------------------------------------------------------------- experiment 3


def pipeline_table(pipe: Sequence[Mapping[str, Any]], dataset: str, pipeline: str) -> list[dict]:
    """Per ratio: noisy, pipeline, retrain-on-kept and clean-retrain accuracy (mean, std, n).

    Parameters
    ----------
    pipe : rows of ``pipeline.csv``
    dataset : str
    pipeline : str
        The pipeline label (``"detector/threshold/method"``).

    Returns
    -------
    list of dict
        One per ratio with keys ``ratio``, ``noisy``, ``pipeline``, ``kept``, ``clean`` (each a
        ``(mean, std, n)`` tuple), ``precision``, ``recall``, ``n_flagged``, ``n_flipped``,
        ``time``, ``recovered`` (fraction of the clean-minus-noisy gap the pipeline closed,
        from the means; NaN when there is no gap) and ``kept_recovered``.
    """
    rows = [r for r in pipe if r["dataset"] == dataset]
    det, thr, _ = pipeline.split("/", 2)
    kept_label = f"{det}/{thr}/retrain"
    out = []
    for ratio in ordered_unique(r["ratio"] for r in rows):
        at = [r for r in rows if r["ratio"] == ratio]

        def stat(col: str, sel, at=at) -> tuple[float, float, int]:
            return mean_std(r.get(col) for r in at if sel(r))

        noisy = stat("test_acc", lambda r: r["role"] == "noisy")
        clean = stat("test_acc", lambda r: r["role"] == "clean_retrain")
        mine = lambda r: r["role"] == "unlearn" and r["pipeline"] == pipeline  # noqa: E731
        kept_sel = lambda r: r["role"] == "retrain_kept" and r["pipeline"] == kept_label  # noqa: E731
        entry = {
            "ratio": ratio,
            "noisy": noisy,
            "clean": clean,
            "pipeline": stat("test_acc", mine),
            "kept": stat("test_acc", kept_sel),
            "precision": stat("precision", mine),
            "recall": stat("recall", mine),
            "n_flagged": stat("n_flagged", mine),
            "n_flipped": stat("n_flipped", mine),
            "time": stat("time", mine),
            "kept_time": stat("time", kept_sel),
            "clean_time": stat("time", lambda r: r["role"] == "clean_retrain"),
        }
        for key, sel in (
            ("noisy", lambda r: r["role"] == "noisy"),
            ("clean", lambda r: r["role"] == "clean_retrain"),
            ("pipeline", mine),
            ("kept", kept_sel),
        ):
            entry[f"{key}_loss"] = stat("test_loss", sel)
        entry["recovered"] = _recovered(entry["pipeline"][0], noisy[0], clean[0])
        entry["kept_recovered"] = _recovered(entry["kept"][0], noisy[0], clean[0])
        out.append(entry)
    return out


def _recovered(value: float, noisy: float, clean: float) -> float:
    gap = clean - noisy
    if not (math.isfinite(gap) and math.isfinite(value)) or gap < NO_GAP:
        return float("nan")
    return (value - noisy) / gap


def _oracle_recovered(unl, dataset: str, ratio: float, method: str) -> float:
    at = [r for r in unl if r["dataset"] == dataset and r["ratio"] == ratio]
    noisy = mean_std(r["test_acc"] for r in at if r["method"] == "noisy")[0]
    clean = mean_std(r["test_acc"] for r in at if r["method"] == "retrain")[0]
    mine = mean_std(r["test_acc"] for r in at if r["method"] == method)[0]
    return _recovered(mine, noisy, clean)


def verdicts(
    table: Sequence[Mapping[str, Any]],
    unl: Sequence[Mapping[str, Any]] = (),
    dataset: str = "",
    method: str = "newton",
) -> list[str]:
    """One sentence per ratio: did the pipeline beat the noisy model, and close half the gap?

    Where it falls short, the sentence says whether detection or unlearning limits it: the
    same unlearning method given the *true* mislabeled set (experiment 2) and retraining on
    what the detector kept separate the two.
    """
    lines = []
    for e in table:
        r = e["ratio"]
        (pm, ps, _), (nm, ns, _), (cm, cs, _) = e["pipeline"], e["noisy"], e["clean"]
        if not math.isfinite(pm):
            lines.append(f"- r = {r:.0%}: no pipeline result.")
            continue
        delta = 100 * (pm - nm)
        beat = "beat" if pm > nm else ("tied" if pm == nm else "did **not** beat")
        text = (
            f"- r = {r:.0%}: the pipeline {beat} the noisy model "
            f"({fmt_pct(pm, ps)} % vs {fmt_pct(nm, ns)} %, {delta:+.1f} points)"
        )
        rec = e["recovered"]
        if not math.isfinite(rec):
            gap = 100 * (cm - nm)
            text += (
                f"; there was no gap to recover (clean retraining {fmt_pct(cm, cs)} %, "
                f"{gap:+.1f} points over the noisy model)."
            )
        else:
            half = "recovered at least half" if rec >= 0.5 else "did **not** recover half"
            text += (
                f" and {half} of the gap to clean retraining ({fmt_pct(cm, cs)} %): "
                f"{100 * rec:.0f} % of it."
            )
            if rec < 0.5:
                text += " " + _diagnose(e, unl, dataset, method)
        lines.append(text)
    return lines


def _diagnose(e: Mapping[str, Any], unl, dataset: str, method: str) -> str:
    oracle = _oracle_recovered(unl, dataset, e["ratio"], method) if unl else float("nan")
    kept = e["kept_recovered"]
    prec, rec = e["precision"][0], e["recall"][0]
    parts = [
        f"Detection flagged {e['n_flagged'][0]:.0f} of {e['n_flipped'][0]:.0f} truly mislabeled "
        f"with precision {fmt_pct(prec)} % and recall {fmt_pct(rec)} %;"
    ]
    if math.isfinite(oracle):
        parts.append(
            f"{method} unlearning of the *true* mislabeled set recovers {100 * oracle:.0f} %"
        )
    if math.isfinite(kept):
        parts.append(f"and retraining on what the detector kept recovers {100 * kept:.0f} %,")
    if math.isfinite(oracle) and oracle >= 0.5 and (not math.isfinite(kept) or kept < 0.5):
        parts.append("so detection is the limit.")
    elif math.isfinite(oracle) and oracle < 0.5 and math.isfinite(kept) and kept >= 0.5:
        parts.append("so unlearning is the limit.")
    elif math.isfinite(oracle) and oracle < 0.5:
        parts.append("so both detection and unlearning limit it.")
    else:
        parts.append("so the unlearning of an imperfect flagged set is the limit.")
    return " ".join(parts)


# --------------------------------------------------------------------------- the summary


def summary(
    cfg,
    det: Sequence[Mapping[str, Any]],
    unl: Sequence[Mapping[str, Any]],
    pipe: Sequence[Mapping[str, Any]],
    wall_time: float | None = None,
) -> str:
    """The Markdown summary of a sweep (``summary.md``).

    Parameters
    ----------
    cfg : mlu.experiment.ExperimentConfig
    det, unl, pipe : rows of the three CSVs
    wall_time : float, optional
        Seconds the run took (shown when given).

    Returns
    -------
    str
    """
    seeds = len(cfg.seeds)
    main = cfg.pipelines[0] if cfg.pipelines else None
    lines = [
        "# mlu: detecting and unlearning mislabeled training data",
        "",
        f"Model: MLP hidden {list(cfg.hidden)} {cfg.activation}, SGD lr {cfg.lr}, momentum "
        f"{cfg.momentum}, batch {cfg.batch_size}, {cfg.epochs} epochs, l2 {cfg.l2}. "
        f"Noise: {cfg.noise_mode} label flips. "
        f"Accuracies are test accuracy in %, mean ± std (ddof=1) over {seeds} seed(s) "
        f"{list(cfg.seeds)}.",
        "",
    ]
    if main:
        lines += [
            f"**The pipeline** is `{main}` (detector / threshold / unlearning method; "
            f"unlearning defaults: params={cfg.params}, curvature={cfg.curvature}, "
            f"damping={cfg.damping}, steps={cfg.steps}). 'Clean retrain' trains the same model "
            "from scratch on the training set without the truly mislabeled samples; "
            "'retrain on kept' trains it on what the detector did not flag.",
            "",
        ]
    if wall_time is not None:
        lines += [f"Wall time of this run: {fmt_time(wall_time)}.", ""]
    for dataset in ordered_unique(r["dataset"] for r in [*unl, *pipe, *det]):
        lines += [f"## {dataset}", ""]
        if main:
            lines += _pipeline_section(cfg, pipe, unl, dataset, main)
        lines += _detection_section(cfg, det, dataset)
        lines += _unlearning_section(unl, dataset)
    return "\n".join(lines).rstrip() + "\n"


def _pipeline_section(cfg, pipe, unl, dataset, main) -> list[str]:

    table = pipeline_table(pipe, dataset, main)
    others = [p for p in cfg.pipelines[1:]]
    header = ["r", "noisy", "pipeline", "retrain on kept", "clean retrain"]
    header += [f"`{p}`" for p in others]
    header += ["flagged / flipped", "precision", "recall", "gap recovered", "time (pipeline)"]
    rows = []
    for e in table:
        row = [
            f"{e['ratio']:.0%}",
            fmt_pct(*e["noisy"][:2]),
            fmt_pct(*e["pipeline"][:2]),
            fmt_pct(*e["kept"][:2]),
            fmt_pct(*e["clean"][:2]),
        ]
        for p in others:
            o = pipeline_table(pipe, dataset, p)
            match = [x for x in o if x["ratio"] == e["ratio"]]
            row.append(fmt_pct(*match[0]["pipeline"][:2]) if match else "–")
        rec = e["recovered"]
        row += [
            f"{e['n_flagged'][0]:.0f} / {e['n_flipped'][0]:.0f}",
            fmt_pct(e["precision"][0]),
            fmt_pct(e["recall"][0]),
            "no gap" if not math.isfinite(rec) else f"{100 * rec:.0f} %",
            fmt_time(e["time"][0]),
        ]
        rows.append(row)
    method = PipelineSpec.parse(main).method.label
    loss_rows = [
        [f"{e['ratio']:.0%}"]
        + [fmt_num(*e[f"{k}_loss"][:2]) for k in ("noisy", "pipeline", "kept", "clean")]
        for e in table
    ]
    out = [
        f"### Pipeline: `{main}` (experiment 3)",
        "",
        "Test accuracy (%):",
        "",
        _table(header, rows),
        "",
        "Test cross-entropy (lower is better; it moves even where accuracy saturates):",
        "",
        _table(["r", "noisy", "pipeline", "retrain on kept", "clean retrain"], loss_rows),
        "",
        f"Time: retrain on clean {fmt_time(np.nanmean([e['clean_time'][0] for e in table]))} "
        "on average.",
        "",
    ]
    out += verdicts(table, unl, dataset, method)
    beat = [e for e in table if math.isfinite(e["pipeline"][0])]
    n_beat = sum(e["pipeline"][0] > e["noisy"][0] for e in beat)
    n_half = sum((not math.isfinite(e["recovered"])) or e["recovered"] >= 0.5 for e in beat)
    out += [
        "",
        f"In short: the pipeline beat the noisy model at {n_beat} of {len(beat)} ratios and "
        f"recovered at least half of the gap (or there was none) at {n_half} of {len(beat)}.",
        "",
    ]
    return out


def _detection_section(cfg, det, dataset) -> list[str]:
    rows = [r for r in det if r["dataset"] == dataset]
    if not rows:
        return []
    detectors = ordered_unique(r["detector"] for r in rows)
    ratios = ordered_unique(r["ratio"] for r in rows)
    out = ["### Detection (experiment 1)", ""]
    for metric, thr, title in (
        ("roc_auc", "top", "ROC-AUC"),
        ("f1", "top", f"F1 at the top {cfg.top_fraction:.0%}"),
        ("f1", "auto", "F1 at the automatic threshold"),
    ):
        agg = aggregate(rows, ("ratio", "detector"), metric, where={"threshold": thr})
        body = [
            [f"{r:.0%}"] + [fmt_num(*agg.get((r, d), (float("nan"), 0, 0))[:2]) for d in detectors]
            for r in ratios
        ]
        out += [f"{title}:", "", _table(["r", *detectors], body), ""]
    return out


def _unlearning_section(unl, dataset) -> list[str]:
    rows = [r for r in unl if r["dataset"] == dataset]
    if not rows:
        return []
    methods = ordered_unique(r["method"] for r in rows)
    ratios = ordered_unique(r["ratio"] for r in rows)
    agg = aggregate(rows, ("ratio", "method"), "test_acc")
    body = [
        [f"{r:.0%}"] + [fmt_pct(*agg.get((r, m), (float("nan"), 0, 0))[:2]) for m in methods]
        for r in ratios
    ]
    out = [
        "### Unlearning the known mislabeled samples (experiment 2)",
        "",
        "Test accuracy (%):",
        "",
        _table(["r", *[f"`{m}`" for m in methods]], body),
        "",
    ]
    extra = []
    for col, title, pct in (
        ("forget_acc", "accuracy on the forget set (given labels)", True),
        ("retain_acc", "accuracy on the retained set", True),
        ("mia_auc", "membership-inference AUC (forget vs test)", False),
        ("time", "time", False),
    ):
        a = aggregate(rows, ("method",), col)
        if not any(math.isfinite(v[0]) for v in a.values()):
            continue
        cells = []
        for m in methods:
            mean, std, _ = a.get((m,), (float("nan"), 0, 0))
            cells.append(
                fmt_time(mean) if col == "time" else fmt_pct(mean) if pct else fmt_num(mean)
            )
        extra.append([title, *cells])
    if extra:
        out += [
            "Averaged over all ratios:",
            "",
            _table(["", *[f"`{m}`" for m in methods]], extra),
            "",
        ]
    return out
