"""The ``mlu`` command: ``mlu demo``, ``mlu run`` and ``mlu report``.

``mlu demo``
    Trains on digits 0 vs 1 with 20 % flipped labels, detects, unlearns and prints a short
    table (seconds; bundled data, no network); plots go to ``./mlu-demo``.
``mlu run [--config FILE] [options]``
    The paper's three experiments over flip ratios × seeds (see :mod:`mlu.experiment`),
    resumable; options override the config file, which overrides the defaults.
``mlu report DIR``
    Rebuild the CSVs, plots and ``summary.md`` of DIR from its stored cells.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .unlearn import DEFAULTS

__all__ = ["build_parser", "main"]

# (option, config key, argparse keyword arguments). Every option defaults to None, so that
# only what the user typed overrides the config file.
_RUN_OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "--dataset",
        "datasets",
        dict(
            nargs="+",
            metavar="NAME",
            help="data set(s): fashion-mnist, mnist, kmnist, digits (default fashion-mnist)",
        ),
    ),
    (
        "--classes",
        "classes",
        dict(
            nargs="+", metavar="C", help="classes to keep, ids or names (default 0 1); 'all' = all"
        ),
    ),
    (
        "--n-per-class",
        "n_per_class",
        dict(metavar="N", help="training samples per class (default 1000; 'all' = all)"),
    ),
    ("--data-root", "data_root", dict(metavar="DIR", help="directory of the IDX files")),
    (
        "--data-seed",
        "data_seed",
        dict(type=int, metavar="S", help="seed of the training subset / digits split"),
    ),
    (
        "--hidden",
        "hidden",
        dict(type=int, nargs="*", metavar="H", help="hidden layer widths (default 50)"),
    ),
    ("--activation", "activation", dict(choices=("relu", "tanh", "sigmoid"))),
    ("--l2", "l2", dict(type=float, help="L2 coefficient of the objective (default 0)")),
    ("--epochs", "epochs", dict(type=int, help="training epochs (default 20)")),
    ("--lr", "lr", dict(type=float, help="SGD learning rate (default 0.01)")),
    ("--momentum", "momentum", dict(type=float, help="SGD momentum (default 0.9)")),
    ("--batch-size", "batch_size", dict(type=int, help="minibatch size (default 32)")),
    (
        "--ratios",
        "ratios",
        dict(
            nargs="+",
            metavar="R",
            help="flip ratios as fractions or percents: 0.1 or 10%% "
            "(default 1%% 5%% 10%% 20%% 30%% 40%% 50%%)",
        ),
    ),
    (
        "--noise-mode",
        "noise_mode",
        dict(choices=("random", "per_class"), help="label-flip model (default random)"),
    ),
    ("--seeds", "seeds", dict(type=int, nargs="+", metavar="S", help="seeds (default 0 1 2)")),
    (
        "--detectors",
        "detectors",
        dict(nargs="+", metavar="D", help="detectors of experiment 1 (default all six)"),
    ),
    (
        "--top-fraction",
        "top_fraction",
        dict(type=float, metavar="F", help="fixed threshold: flag the top F (default 0.1)"),
    ),
    (
        "--methods",
        "methods",
        dict(
            nargs="*",
            metavar="M",
            help="unlearning methods of experiment 2, e.g. newton "
            "influence:params=last newton:steps=3",
        ),
    ),
    (
        "--baselines",
        "baselines",
        dict(nargs="*", metavar="B", help="baselines: finetune retrain gradient_ascent sisa"),
    ),
    (
        "--pipelines",
        "pipelines",
        dict(
            nargs="+",
            metavar="P",
            help="pipelines of experiment 3 as detector/threshold/method, threshold = top, "
            "topN, auto, zero or oracle; the first is judged in the summary (default "
            "aum/zero/newton aum/zero/finetune aum/auto/newton early_loss/auto/newton "
            "loss/top/influence:damping=0.01,params=last)",
        ),
    ),
    ("--params", "params", dict(choices=("all", "last"), help="default parameters to update")),
    (
        "--curvature",
        "curvature",
        dict(
            choices=("hessian", "ggn"),
            help=f"default curvature (default {DEFAULTS['curvature']})",
        ),
    ),
    (
        "--damping",
        "damping",
        dict(type=float, help=f"default damping (default {DEFAULTS['damping']:g})"),
    ),
    (
        "--steps",
        "steps",
        dict(type=int, help=f"default Newton steps (default {DEFAULTS['steps']})"),
    ),
    ("--solver", "solver", dict(choices=("auto", "cholesky", "eigh", "cg"))),
    ("--finetune-epochs", "finetune_epochs", dict(type=int)),
    ("--sisa-shards", "sisa_shards", dict(type=int)),
    ("--sisa-slices", "sisa_slices", dict(type=int)),
    (
        "--histogram-ratios",
        "histogram_ratios",
        dict(nargs="+", metavar="R", help="ratios whose score histograms are drawn"),
    ),
    ("--out", "out", dict(metavar="DIR", help="output directory (default mlu-results)")),
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mlu`` command."""
    parser = argparse.ArgumentParser(
        prog="mlu",
        description="Find mislabeled training samples of an MLP and unlearn them.",
    )
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="{demo,run,report}")

    demo = sub.add_parser(
        "demo",
        help="detect and unlearn flipped labels on digits 0 vs 1 (seconds, offline)",
        description="Train on digits 0 vs 1 with flipped labels, detect them, unlearn them "
        "and compare with the noisy model and with retraining.",
    )
    demo.add_argument(
        "--out",
        default="mlu-demo",
        metavar="DIR",
        help="directory for the plots and tables (default ./mlu-demo)",
    )
    demo.add_argument(
        "--ratio", default="20%", metavar="R", help="flip ratio, fraction or percent (default 20%%)"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--dataset", default="digits")
    demo.add_argument("--classes", nargs="+", default=["0", "1"], metavar="C")
    demo.add_argument(
        "--detector",
        default=None,
        help="detector of the pipeline (default: the library's default pipeline)",
    )
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default 20)")
    demo.add_argument("--hidden", type=int, nargs="*", default=None, metavar="H")

    run = sub.add_parser(
        "run",
        help="the paper's three experiments over flip ratios and seeds",
        description="Run (or resume) the sweep. Settings: defaults < --config file < options.",
    )
    run.add_argument("--config", metavar="FILE", help="JSON or TOML file with the same keys")
    for flag, key, kwargs in _RUN_OPTIONS:
        run.add_argument(flag, dest=key, default=None, **kwargs)
    run.add_argument(
        "--fresh",
        action="store_true",
        help="recompute every cell instead of resuming from <out>/cells",
    )
    run.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as JSON and exit",
    )

    rep = sub.add_parser("report", help="rebuild tables, plots and summary.md of a run directory")
    rep.add_argument("dir", metavar="DIR", help="output directory of an earlier `mlu run`")
    rep.add_argument("--no-plots", action="store_true")
    return parser


def _none_or(value, convert):
    if value is None or (isinstance(value, str) and value.lower() in ("all", "none")):
        return None
    return convert(value)


def resolve_config(args: argparse.Namespace):
    """Defaults < config file < command-line options -> ExperimentConfig."""
    from .experiments import ExperimentConfig, load_config_file

    data: dict[str, Any] = {}
    if args.config:
        data.update(load_config_file(args.config))
        if "dataset" in data and "datasets" not in data:
            data["datasets"] = data.pop("dataset")
    for _, key, _ in _RUN_OPTIONS:
        value = getattr(args, key, None)
        if value is None:
            continue
        if key == "classes":
            value = None if [v.lower() for v in value] == ["all"] else value
        elif key == "n_per_class":
            value = _none_or(value, int)
        data[key] = value
    return ExperimentConfig.from_dict(data)


def _print_versions() -> None:
    from .experiments import versions

    for k, v in versions().items():
        print(f"{k}: {v}")


def _cmd_run(args: argparse.Namespace) -> int:
    from .experiments import run_experiments
    from .experiments.report import fmt_pct, fmt_time, pipeline_table

    cfg = resolve_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    result = run_experiments(
        cfg,
        progress=not args.no_progress,
        plots=not args.no_plots,
        resume=not args.fresh,
        log=lambda s: print(s, file=sys.stderr),
    )
    print(
        f"{result.computed} cell(s) computed, {result.reused} reused, "
        f"wall time {fmt_time(result.wall_time)}"
    )
    for dataset in cfg.datasets:
        main_pipeline = cfg.pipelines[0]
        print(f"\n{dataset}: pipeline {main_pipeline} (test accuracy %, mean ± std)")
        print(
            f"{'r':>5}  {'noisy':>13}  {'pipeline':>13}  {'retrain kept':>13}  "
            f"{'clean retrain':>13}  recovered"
        )
        for e in pipeline_table(result.pipeline, dataset, main_pipeline):
            rec = e["recovered"]
            print(
                f"{e['ratio']:>5.0%}  {fmt_pct(*e['noisy'][:2]):>13}  "
                f"{fmt_pct(*e['pipeline'][:2]):>13}  {fmt_pct(*e['kept'][:2]):>13}  "
                f"{fmt_pct(*e['clean'][:2]):>13}  "
                f"{'no gap' if rec != rec else f'{100 * rec:.0f} %'}"
            )
    print(
        f"\nwrote {result.out}/: detection.csv, unlearning.csv, pipeline.csv, config.json, "
        "summary.md, plots/, cells/"
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .experiments import ExperimentConfig, load_cells, write_outputs

    out = Path(args.dir)
    meta = json.loads((out / "config.json").read_text(encoding="utf-8"))
    cfg = ExperimentConfig.from_dict({**meta["config"], "out": str(out)})
    cells = load_cells(cfg)
    if not cells:
        print(f"no finished cells in {out / 'cells'} for this configuration", file=sys.stderr)
        return 1
    files = write_outputs(cfg, cells, plots=not args.no_plots, wall_time=meta.get("wall_time"))
    print(
        f"rebuilt from {len(cells)} cell(s): " + ", ".join(sorted(p.name for p in files.values()))
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlu`` console script (and ``python -m mlu``).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 on a failed run, 2 on a usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        _print_versions()
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "demo":
            from .experiments import run_demo

            run_demo(
                out=args.out,
                ratio=args.ratio,
                seed=args.seed,
                dataset=args.dataset,
                classes=args.classes,
                detector=args.detector,
                epochs=args.epochs,
                hidden=args.hidden,
            )
            return 0
        if args.command == "run":
            return _cmd_run(args)
        return _cmd_report(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mlu {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nmlu {args.command}: interrupted; finished cells are kept, run again to resume",
            file=sys.stderr,
        )
        return 130
