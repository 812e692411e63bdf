"""The ``mlu`` command: ``mlu demo``, ``mlu run`` and ``mlu report``.

``mlu demo``
    Flips 30 % of the digits' training labels, runs ``mlu clean`` (train, detect, unlearn) and
    prints the test accuracy before and after next to retraining on the true labels (seconds;
    bundled data, no network); the report goes to ``./mlu-demo`` (see :mod:`mlu.apps.demo`).
    ``--sweep``: one cell of the paper's sweep instead.
``mlu run [--config FILE] [options]``
    The paper's three experiments over flip ratios × seeds (see :mod:`mlu.experiment`),
    resumable; options override the config file, which overrides the defaults.
``mlu report DIR``
    Rebuild the CSVs, plots and ``summary.md`` of DIR from its stored cells.
``mlu clean DATA [--model MODEL] --out DIR``
    Your own data (and model): find the mislabeled samples, unlearn them, and write
    ``suspects.csv``, the fixed model, ``report.md``/``report.html`` and ``summary.json``
    (see :func:`mlu.apps.clean.clean`). Exit status 1, and no outputs, when the model is no better
    than chance or its scores have no spread (:class:`mlu.apps.clean.CannotCleanError`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._files import remove_stale_temp_files
from ..unlearning.unlearn import DEFAULTS

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
        "--label",
        "data_label",
        dict(metavar="NAME", help="label column of a --data CSV/Parquet file"),
    ),
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
    sub = parser.add_subparsers(dest="command", metavar="{demo,run,report,clean,forget}")

    demo = sub.add_parser(
        "demo",
        help="flipped labels found and unlearned on digits, 10 classes (seconds, offline)",
        description="Flip 30%% of the digits' training labels, run `mlu clean` (train, detect, "
        "unlearn), and compare the test accuracy before and after with retraining on the true "
        "labels; the report with the suspects' pictures goes to --out.",
    )
    demo.add_argument(
        "--out",
        default="mlu-demo",
        metavar="DIR",
        help="directory for the report (default ./mlu-demo; an earlier report there is replaced)",
    )
    demo.add_argument(
        "--ratio", default="30%", metavar="R", help="flip ratio, fraction or percent (default 30%%)"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--dataset", default="digits", help="digits (bundled) or fashion-mnist (if installed)"
    )
    demo.add_argument(
        "--classes", nargs="+", default=None, metavar="C", help="classes to keep (default all)"
    )
    demo.add_argument("--n-per-class", type=int, default=None, metavar="N")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument(
        "--sweep",
        action="store_true",
        help="instead: one cell of the paper's sweep (pipelines, baselines, plots)",
    )
    demo.add_argument("--detector", default=None, help="--sweep: detector of the pipeline")
    demo.add_argument("--epochs", type=int, default=None, help="--sweep: training epochs")
    demo.add_argument("--hidden", type=int, nargs="*", default=None, metavar="H")

    run = sub.add_parser(
        "run",
        help="the paper's three experiments over flip ratios and seeds",
        description="Run (or resume) the sweep. Settings: defaults < --config file < options.",
    )
    run.add_argument("--config", metavar="FILE", help="JSON or TOML file with the same keys")
    run.add_argument(
        "--data",
        nargs="+",
        metavar="FILE",
        help="your own data set(s) instead of (or besides) --dataset: .npz with X and y, "
        ".csv/.parquet with --label, or an IDX images file; split 80/20 into train and test; "
        "all classes unless --classes",
    )
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
    _add_clean_parser(sub)
    from .forget_cli import add_forget_parser

    add_forget_parser(sub)  # mlu forget: its own module
    return parser


def _add_clean_parser(sub) -> None:
    cl = sub.add_parser(
        "clean",
        help="find and unlearn the mislabeled samples of your own data (and model)",
        description="Hold out a seeded validation split, score and flag suspects, unlearn "
        "them from the model, compare before and after, and write suspects.csv, the fixed "
        "model, report.md, report.html and summary.json into DIR.",
    )
    cl.add_argument(
        "data",
        metavar="DATA",
        help=".npz with X and y, .csv/.parquet with --label, or an IDX images file",
    )
    cl.add_argument(
        "--model",
        metavar="MODEL",
        help="an mlu .npz, or a PyTorch nn.Sequential state dict (.pt) with --hidden/"
        "--activation; default: train one with the paper's settings",
    )
    cl.add_argument("--out", required=True, metavar="DIR", help="output directory (new)")
    cl.add_argument("--force", action="store_true", help="replace DIR if it exists")
    cl.add_argument("--label", metavar="NAME", help="label column of a CSV/Parquet file")
    cl.add_argument(
        "--true-label",
        metavar="NAME",
        help="column of known-true labels, to report the suspects' precision (not a feature)",
    )
    cl.add_argument(
        "--labels-file", metavar="FILE", help="IDX labels file (default: beside the images)"
    )
    cl.add_argument(
        "--hidden",
        type=int,
        nargs="*",
        metavar="H",
        help="hidden widths of a state dict, or of the MLP trained here (default 50)",
    )
    cl.add_argument(
        "--activation",
        default="relu",
        metavar="ACT",
        help="a state dict's activation(s): relu, tanh, sigmoid, identity, or one per hidden "
        "layer as tanh,relu (default relu)",
    )
    cl.add_argument(
        "--scale",
        default="standard",
        choices=("standard", "minmax", "none"),
        help="feature scaling inside the MLP trained here, saved with it (default standard)",
    )
    cl.add_argument(
        "--epochs", type=int, default=None, metavar="N", help="epochs of the MLP trained here"
    )
    cl.add_argument(
        "--detector",
        default=None,
        help="anomaly score for mlu.detect (default aum, the pipeline's measured best; loss "
        "for a given model without a training record)",
    )
    cl.add_argument(
        "--fraction",
        type=float,
        metavar="F",
        help="flag the top F of the scores (default: automatic threshold)",
    )
    cl.add_argument(
        "--holdout", type=float, default=0.2, metavar="F", help="held-out fraction (default 0.2)"
    )
    cl.add_argument("--seed", type=int, default=0, help="seed of the split and training")
    cl.add_argument("--no-progress", action="store_true", help="no progress bars")


def _ratio(text: str) -> float:
    """``0.3`` or ``30%`` -> 0.3."""
    text = str(text).strip()
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(
            f"ratio must be a fraction or a percent (0.3 or 30%), got {text!r}"
        ) from None


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.sweep:
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
    from .demo import demo

    classes = args.classes
    if classes is not None:
        classes = [int(c) if c.lstrip("-").isdigit() else c for c in classes]
    demo(
        out=args.out,
        dataset=args.dataset,
        ratio=_ratio(args.ratio),
        seed=args.seed,
        classes=classes,
        n_per_class=args.n_per_class,
        progress=False if args.no_progress else None,
    )
    return 0


def _cmd_clean(args: argparse.Namespace) -> int:
    from ..data.userdata import load_data
    from .clean import clean

    data = load_data(args.data, label=args.label, labels_path=args.labels_file,
                     true_label=args.true_label)  # fmt: skip
    result = clean(
        data,
        model=args.model,
        hidden=tuple(args.hidden) if args.hidden is not None else None,
        activation=args.activation,
        scale=args.scale,
        epochs=args.epochs,
        detector=args.detector,
        fraction=args.fraction,
        holdout=args.holdout,
        seed=args.seed,
        out=args.out,
        force=args.force,
        progress=False if args.no_progress else None,
        log=lambda s: print(s, file=sys.stderr),
    )
    b, a = result.before, result.after
    print(
        f"{len(result.suspects)} suspect(s) of {len(result.train_index)} samples"
        + (
            f" (precision {result.precision:.1%} against the known flips)"
            if result.precision is not None
            else ""
        )
    )
    print(
        f"held-out split, all {b.n} samples (given labels, some wrong): accuracy "
        f"{100 * b.accuracy:.1f}% -> {100 * a.accuracy:.1f}%, loss {b.loss:.4f} -> {a.loss:.4f}"
    )
    tb, ta = result.trusted_before, result.trusted_after
    if tb is not None and ta is not None and tb.n:
        print(
            f"held-out split, the {tb.n} samples whose labels the detector trusts: accuracy "
            f"{100 * tb.accuracy:.1f}% -> {100 * ta.accuracy:.1f}% (the closer estimate: wrong "
            "labels count a corrected prediction as an error)"
        )
    if result.cost_text() is not None:
        print(result.cost_text())
    print(f"wrote {args.out}/: " + ", ".join(sorted(p.name for p in Path(args.out).iterdir())))
    return 0


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
    if getattr(args, "data", None):
        named = tuple(args.datasets) if args.datasets is not None else ()
        data["datasets"] = named + tuple(args.data)
        if "classes" not in data:
            data["classes"] = None  # a file's own classes, not the paper's 0 vs 1
    return ExperimentConfig.from_dict(data)


def _print_versions() -> None:
    from .. import _core, _isa
    from .experiments import versions

    for k, v in versions().items():
        print(f"{k}: {v}")
    # Which build of the C++ core this CPU got (mlu.core_isa), and which the install has.
    threads = "OpenMP" if _core.openmp else "serial (no OpenMP)"
    print(f"core: {_core.isa}, {threads}; built for: {', '.join(_isa.available())}")


def _cmd_run(args: argparse.Namespace) -> int:
    from .experiments import run_experiments
    from .experiments.report import fmt_pct, fmt_time, pipeline_table

    cfg = resolve_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if not args.fresh:
        # A run killed mid-write leaves .NAME.XXXXXXXX.tmp files: clean them before resuming.
        for path in remove_stale_temp_files(cfg.out):
            print(f"removed a leftover temporary file: {path}", file=sys.stderr)
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


def _describe_os_error(exc: OSError) -> str:
    """One line: what failed and on which file ("Permission denied: 'out/x.csv'")."""
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        what += f": {str(exc.filename)!r}"
    return what


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
            return _cmd_demo(args)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "forget":
            from .forget_cli import run_forget

            return run_forget(args)
        if args.command == "clean":
            return _cmd_clean(args)
        return _cmd_report(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"mlu {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from .clean import CannotCleanError

        if not isinstance(exc, CannotCleanError):
            raise
        print(f"mlu {args.command}: stopped: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an unwritable output directory, a full disk, ...
        print(f"mlu {args.command}: error: {_describe_os_error(exc)}", file=sys.stderr)
        return 1
    except MemoryError as exc:
        print(f"mlu {args.command}: error: out of memory: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\nmlu {args.command}: interrupted; finished cells are kept, run again to resume",
            file=sys.stderr,
        )
        return 130
