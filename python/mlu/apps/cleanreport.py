"""The report of :func:`mlu.clean`: ``report.md`` and a self-contained ``report.html``.

The report shows rather than tells: a grid of the top suspects as images (given → suggested
label) when the data are images, the score histogram with the threshold, before/after accuracy
and loss on the held-out split (all of it, and the samples whose labels the detector trusts),
the per-class changes, the unlearning diagnostics and its cost against the model's training. The
figures are PNG files beside ``report.md`` and inlined (base64) in ``report.html``, which
therefore opens anywhere as one file.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never open a window, never need a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# The report reads a mlu.apps.clean.CleanResult; it does not import mlu.apps.clean (which
# imports this).
CleanResult = Any

__all__ = ["render", "score_histogram_png", "suspects_grid_png"]

_GRID_COLUMNS = 8
_GRID_MAX = 32  # suspects drawn in the grid
_TABLE_MAX = 50  # suspects listed in the report's table
_CLEAN_COLOR, _FLIP_COLOR, _LINE_COLOR = "#4c72b0", "#dd8452", "#c44e52"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    return buf.getvalue()


def score_histogram_png(result: CleanResult) -> bytes:
    """The searched samples' scores with the threshold; known flips stacked when given.

    Parameters
    ----------
    result : mlu.apps.clean.CleanResult

    Returns
    -------
    bytes
        A PNG image.
    """
    s = np.asarray(result.scores, dtype=np.float64)
    log = s.min() > 0 and s.max() / s.min() > 1e3  # losses span decades: log-spaced bins
    bins: int | list[float] = 10  # all scores equal: any bins will do
    if s.max() > s.min():
        edges = np.geomspace(s.min(), s.max(), 50) if log else np.linspace(s.min(), s.max(), 50)
        bins = edges.tolist()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    flipped = result.data.flipped
    if flipped is not None:
        truth = flipped[result.train_index]
        ax.hist(
            [s[~truth], s[truth]],
            bins=bins,
            stacked=True,
            color=[_CLEAN_COLOR, _FLIP_COLOR],
            label=["label correct", "label known wrong"],
        )
    else:
        ax.hist(s, bins=bins, color=_CLEAN_COLOR, label="searched samples")
    if np.isfinite(result.threshold):
        ax.axvline(
            result.threshold,
            color=_LINE_COLOR,
            linestyle="--",
            label=f"threshold: {len(result.suspects)} flagged",
        )
    if log:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{result.detector} score (higher = more suspect)")
    ax.set_ylabel("samples")
    ax.set_title("Anomaly scores of the searched samples")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def suspects_grid_png(result: CleanResult, max_images: int = _GRID_MAX) -> bytes | None:
    """The top suspects as images titled ``given → suggested``; None when not images.

    Parameters
    ----------
    result : mlu.apps.clean.CleanResult
    max_images : int
        At most this many, most suspect first.

    Returns
    -------
    bytes or None
        A PNG image.
    """
    shape = result.data.image_shape
    n = min(len(result.suspects), max_images)
    if shape is None or n == 0:
        return None
    cols = min(_GRID_COLUMNS, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.45 * cols, 1.65 * rows), squeeze=False)
    flipped = result.data.flipped
    for ax in axes.ravel():
        ax.axis("off")
    for rank in range(n):
        i = int(result.suspects[rank])
        ax = axes.ravel()[rank]
        ax.imshow(result.data.X[i].reshape(shape), cmap="gray_r", interpolation="nearest")
        color = "black"
        if flipped is not None:
            color = "#2a7a2a" if flipped[i] else _LINE_COLOR  # a real flip, or a false alarm
        ax.set_title(
            f"#{rank + 1}: {result.data.y[i]} → {result.suggested[rank]}", fontsize=8, color=color
        )
    title = "Top suspects: given label → suggested label"
    if flipped is not None:
        title += " (green: known wrong, red: label was right)"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _pct(x: float | None) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 4) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


_WHY_TRUSTED = (
    "The held-out labels carry the same noise as the data, so on all of them a model that "
    "now predicts a wrongly labeled sample's true class is counted wrong: that accuracy "
    "understates a real gain, and the accuracy on the trusted labels is the closer estimate."
)


def _points(after: float, before: float) -> str:
    if not (np.isfinite(after) and np.isfinite(before)):
        return "–"
    return f"{100 * (after - before):+.1f} points"


def _holdout_rows(result: CleanResult) -> list[list[str]]:
    b, a = result.before, result.after
    rows = [
        [f"all {b.n} held-out samples (given labels)", "before (input model)", _pct(b.accuracy),
         _num(b.loss)],
        ["", "after (suspects unlearned)", _pct(a.accuracy), _num(a.loss)],
        ["", "change", _points(a.accuracy, b.accuracy), f"{a.loss - b.loss:+.4f}"],
    ]  # fmt: skip
    tb, ta = result.trusted_before, result.trusted_after
    if tb is not None and ta is not None:
        rows += [
            [f"the {tb.n} whose labels the detector trusts", "before (input model)",
             _pct(tb.accuracy), _num(tb.loss)],
            ["", "after (suspects unlearned)", _pct(ta.accuracy), _num(ta.loss)],
            ["", "change", _points(ta.accuracy, tb.accuracy),
             f"{ta.loss - tb.loss:+.4f}" if tb.n else "–"],
        ]  # fmt: skip
    return rows


def _cost(result: CleanResult) -> str | None:
    """'unlearning took 0.12 of this model's training time' (None when unknown)."""
    text = getattr(result, "cost_text", None)
    return text() if callable(text) else None


def _tables(result: CleanResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table of the report."""
    b, a = result.before, result.after
    tables = [
        (
            f"Held-out split ({len(result.holdout_index)} samples)",
            ["samples", "model", "accuracy", "mean loss"],
            _holdout_rows(result),
        ),
        (
            "Per-class accuracy on the held-out split",
            ["class", "before", "after", "change"],
            [
                [
                    c,
                    _pct(b.per_class[c]),
                    _pct(a.per_class[c]),
                    "–"
                    if not np.isfinite(b.per_class[c])
                    else f"{100 * (a.per_class[c] - b.per_class[c]):+.1f}",
                ]
                for c in b.per_class
            ],
        ),
    ]
    u = result.unlearning
    if u is not None:
        rows = [
            ["method", u.method],
            ["forgot", f"{u.n_forget} samples"],
            ["solver", str(u.solver)],
            ["parameters", str(u.params)],
            ["curvature", str(u.curvature)],
            ["damping", f"{u.damping:g}" if u.damping is not None else "–"],
            ["steps", str(u.steps)],
            ["CG iterations", "–" if u.iterations is None else str(u.iterations)],
            ["relative residual", "–" if u.residual is None else f"{u.residual:.2e}"],
            [
                "smallest eigenvalue",
                "–" if u.min_eigenvalue is None else f"{u.min_eigenvalue:.3g}",
            ],
            ["negative curvature met", "yes" if u.negative_curvature else "no"],
            ["time", f"{u.time:.3f} s"],
            ["cost", _cost(result) or "– (the model's training time is unknown)"],
        ] + [["note", note] for note in u.notes]
        tables.append(("Unlearning diagnostics", ["", ""], rows))
    shown = result.suspects_table()[:_TABLE_MAX]
    tables.append(
        (
            f"Suspects (top {len(shown)} of {len(result.suspects)}; all in suspects.csv)",
            ["rank", "index", "given", "suggested", "score"],
            [
                [str(r["rank"]), str(r["index"]), r["given"], r["suggested"], f"{r['score']:.4g}"]
                for r in shown
            ],
        )
    )
    return tables


def _headline(result: CleanResult) -> list[str]:
    n = len(result.train_index)
    lines = [
        f"Data: {result.data.source}: {result.data.n} samples, "
        f"{result.data.X.shape[1]} features, {len(result.class_names)} classes"
        + (
            f", images {result.data.image_shape[0]}×{result.data.image_shape[1]}"
            if result.data.image_shape
            else ""
        ),  # fmt: skip
        f"Searched {n} samples, held out {len(result.holdout_index)}. Model: MLP "
        f"{' → '.join(map(str, result.model.sizes_))}"
        + (" (trained here)" if result.trained else " (given)"),
        f"Flagged {len(result.suspects)} suspect(s) ({len(result.suspects) / n:.1%}) by the "
        f"{result.detector} score.",
    ]
    if result.precision is not None or result.recall is not None:
        known = int(result.data.flipped[result.train_index].sum())
        lines.append(
            f"Against the {known} labels known to be wrong: precision "
            f"{_pct(result.precision)}, recall {_pct(result.recall)}."
        )
    lines.append(
        f"Held-out accuracy on all {result.before.n} held-out samples (given labels, some of "
        f"them wrong): {_pct(result.before.accuracy)} → {_pct(result.after.accuracy)}, loss "
        f"{_num(result.before.loss)} → {_num(result.after.loss)}."
    )
    tb, ta = getattr(result, "trusted_before", None), getattr(result, "trusted_after", None)
    if tb is not None and ta is not None:
        lines.append(
            f"On the {tb.n} held-out samples whose labels the detector trusts: accuracy "
            f"{_pct(tb.accuracy)} → {_pct(ta.accuracy)}. {_WHY_TRUSTED}"
        )
    cost = _cost(result)
    if cost is not None:
        lines.append(cost[0].upper() + cost[1:] + ".")
    return lines


def _markdown(result: CleanResult, figures: dict[str, str]) -> str:
    out = ["# mlu clean: report", ""]
    out += [f"- {line}" for line in _headline(result)] + [""]
    if "suspects" in figures:
        out += ["## Top suspects", "", f"![top suspects]({figures['suspects']})", ""]
    out += ["## Scores", "", f"![score histogram]({figures['scores']})", ""]
    for title, header, rows in _tables(result):
        out += [f"## {title}", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        out.append("")
    if result.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222;
       background: #fff; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; }
.headline li { margin: 0.2rem 0; }
"""


def _html(result: CleanResult, images: dict[str, bytes]) -> str:
    esc = html.escape

    def img(name: str, alt: str) -> str:
        data = base64.b64encode(images[name]).decode("ascii")
        return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>mlu clean: report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>mlu clean: report</h1>",
        '<ul class="headline">' + "".join(f"<li>{esc(x)}</li>" for x in _headline(result)),
        "</ul>",
    ]
    if "suspects" in images:
        parts += ["<h2>Top suspects</h2>", img("suspects", "top suspects")]
    parts += ["<h2>Scores</h2>", img("scores", "score histogram")]
    for title, header, rows in _tables(result):
        parts.append(f"<h2>{esc(title)}</h2><table>")
        if any(header):
            parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    if result.notes:
        parts += ["<h2>Notes</h2><ul>"] + [f"<li>{esc(n)}</li>" for n in result.notes] + ["</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def render(result: CleanResult, directory: str | Path) -> list[Path]:
    """Write ``report.md``, ``report.html`` and the figures' PNGs into ``directory``.

    Parameters
    ----------
    result : mlu.apps.clean.CleanResult
    directory : path
        An existing directory.

    Returns
    -------
    list of Path
        The files written.
    """
    directory = Path(directory)
    images = {"scores": score_histogram_png(result)}
    grid = suspects_grid_png(result)
    if grid is not None:
        images["suspects"] = grid
    names = {key: f"{key}.png" for key in images}
    written = []
    for key, data in images.items():
        (directory / names[key]).write_bytes(data)
        written.append(directory / names[key])
    (directory / "report.md").write_text(_markdown(result, names), encoding="utf-8")
    (directory / "report.html").write_text(_html(result, images), encoding="utf-8")
    return written + [directory / "report.md", directory / "report.html"]
