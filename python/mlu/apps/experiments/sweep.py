"""The sweep: every (dataset, ratio, seed) cell of a configuration, resumable, and its outputs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._files import atomic_write_text
from ..._optional import progress_bar
from . import report
from .cell import load_dataset
from .runner import run_cell
from .spec import ExperimentConfig
from .store import CellStore, atomic_write_json, versions, write_csv

__all__ = ["RunResult", "load_cells", "run_experiments", "write_config", "write_outputs"]


@dataclass
class RunResult:
    """What :func:`run_experiments` produced.

    Attributes
    ----------
    out : Path
        The output directory.
    detection, unlearning, pipeline : list of dict
        The rows of the three CSVs.
    cells : list of dict
        Every cell of the sweep (loaded or computed).
    computed, reused : int
        How many cells were computed in this run and how many were loaded from the store.
    files : dict of str -> Path
        The files written.
    wall_time : float
        Seconds this call took.
    """

    out: Path
    detection: list[dict]
    unlearning: list[dict]
    pipeline: list[dict]
    cells: list[dict]
    computed: int
    reused: int
    files: dict[str, Path]
    wall_time: float


def _sweep(cfg: ExperimentConfig) -> list[tuple[str, float, int]]:
    return [(d, r, s) for d in cfg.datasets for r in cfg.ratios for s in cfg.seeds]


def run_experiments(
    cfg: ExperimentConfig,
    progress: bool = True,
    on_cell: Callable[[dict], None] | None = None,
    plots: bool = True,
    log: Callable[[str], None] | None = None,
    resume: bool = True,
) -> RunResult:
    """Run (or resume) the sweep of ``cfg`` and write every output into ``cfg.out``.

    Parameters
    ----------
    cfg : ExperimentConfig
    progress : bool
        Show a tqdm progress bar over the cells.
    on_cell : callable, optional
        Called with each cell *computed* in this run (not with reused ones), after it is
        stored.
    plots : bool
        Draw the PNG plots (matplotlib).
    log : callable, optional
        Receives one-line messages (default: silent).
    resume : bool
        Reuse the finished cells in ``<out>/cells`` (False recomputes and overwrites them).

    Returns
    -------
    RunResult
    """
    t_start = time.perf_counter()
    log = log or (lambda s: None)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    store = CellStore(out / "cells", cfg.fingerprint())
    sweep = _sweep(cfg)
    cells: dict[tuple[str, float, int], dict] = {}
    todo = []
    for key in sweep:
        cell = store.load(*key) if resume else None
        if cell is None:
            todo.append(key)
        else:
            cells[key] = cell
    reused = len(cells)
    if reused:
        log(f"resuming: {reused} of {len(sweep)} cells already done in {store.root}")
    write_config(cfg, out, started=True)

    datasets_cache: dict[str, Any] = {}
    bar = None
    if progress and todo:  # tqdm is optional: without it, bar stays None (no bar)
        bar = progress_bar(
            total=len(sweep), initial=reused, unit="cell", desc="mlu run", leave=True
        )
    computed = 0
    try:
        for key in todo:
            dataset, ratio, seed = key
            if dataset not in datasets_cache:
                if bar is not None:
                    bar.set_postfix_str(f"loading {dataset}")
                datasets_cache[dataset] = load_dataset(cfg, dataset)
            prefix = f"{dataset} r={ratio:.0%} s={seed}"

            def status(stage: str, prefix=prefix) -> None:
                if bar is not None:
                    bar.set_postfix_str(f"{prefix}: {stage}", refresh=True)

            cell = run_cell(cfg, datasets_cache[dataset], dataset, ratio, seed, status=status)
            store.save(cell)
            cells[key] = cell
            computed += 1
            if on_cell is not None:
                on_cell(cell)
            if bar is not None:
                bar.update(1)
            # Keep the CSVs current so an interrupted sweep still leaves usable tables.
            _write_tables(out, [cells[k] for k in sweep if k in cells])
    finally:
        if bar is not None:
            bar.close()

    ordered = [cells[k] for k in sweep]
    files = write_outputs(cfg, ordered, plots=plots, wall_time=time.perf_counter() - t_start)
    det, unl, pipe = _rows(ordered)
    return RunResult(
        out=out,
        detection=det,
        unlearning=unl,
        pipeline=pipe,
        cells=ordered,
        computed=computed,
        reused=reused,
        files=files,
        wall_time=time.perf_counter() - t_start,
    )


def _rows(cells: Iterable[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    det, unl, pipe = [], [], []
    for c in cells:
        det += c["detection"]
        unl += c["unlearning"]
        pipe += c["pipeline"]
    return det, unl, pipe


def _write_tables(out: Path, cells: list[dict]) -> dict[str, Path]:
    det, unl, pipe = _rows(cells)
    files = {
        "detection_csv": out / "detection.csv",
        "unlearning_csv": out / "unlearning.csv",
        "pipeline_csv": out / "pipeline.csv",
    }
    write_csv(files["detection_csv"], det)
    write_csv(files["unlearning_csv"], unl)
    write_csv(files["pipeline_csv"], pipe)
    return files


def write_config(cfg: ExperimentConfig, out: Path, started: bool = False, **extra: Any) -> Path:
    """``config.json``: the full configuration, its fingerprint and the versions."""
    path = out / "config.json"
    data = {
        "config": cfg.to_dict(),
        "fingerprint": cfg.fingerprint(),
        "versions": versions(),
        "command": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    if started:
        data["status"] = "running"
    atomic_write_json(path, data)
    return path


def write_outputs(
    cfg: ExperimentConfig, cells: list[dict], plots: bool = True, wall_time: float | None = None
) -> dict[str, Path]:
    """Write the CSVs, ``config.json``, the plots and ``summary.md`` from finished cells."""
    out = Path(cfg.out)
    files = _write_tables(out, cells)
    det, unl, pipe = _rows(cells)
    compute = sum(float(c.get("cell_time", 0.0)) for c in cells)
    files["config_json"] = write_config(
        cfg,
        out,
        status="done",
        wall_time=wall_time,
        cell_compute_time=compute,
        n_cells=len(cells),
    )
    if plots:
        from . import plots as plotting  # matplotlib only when plots are asked for

        files.update(plotting.plot_all(cfg, cells, det, unl, pipe, out / "plots"))
    files["summary_md"] = out / "summary.md"
    atomic_write_text(files["summary_md"], report.summary(cfg, det, unl, pipe, wall_time))
    return files


def load_cells(cfg: ExperimentConfig) -> list[dict]:
    """The stored cells of ``cfg``'s sweep (missing ones skipped)."""
    store = CellStore(Path(cfg.out) / "cells", cfg.fingerprint())
    return [c for key in _sweep(cfg) if (c := store.load(*key)) is not None]


# --------------------------------------------------------------------------- the demo
