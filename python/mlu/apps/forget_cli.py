"""``mlu forget``: serve deletion requests from a :class:`mlu.DeletionStore` directory.

::

    mlu forget init DIR --model M --data D [--label NAME] [--curvature C] [--damping F]
                    [--mode MODE] [--epochs E] [--noise S] [--shrink F]
    mlu forget DIR --rows 3,17 [--id ID]        # or --rows-file F (indices, any separators)
    mlu forget DIR --log [--json]
    mlu forget DIR --verify
    mlu forget DIR --export model.npz|model.pt

``init`` records where the data came from (absolute path, label column), and the other
commands read it from there unless ``--data`` says otherwise; the store refuses data whose
hash differs. Errors are one line on stderr and exit status 1; a store is written whole or
not at all (docs/design.md, "Deletion store").
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import (
    RequestFailedError,
    StoreCorruptError,
    StoreLockedError,
    UpdateShortenedWarning,
)
from ..unlearning.forgetting import DEFAULT_MODE, MODES
from ..unlearning.store import DeletionStore

__all__ = ["add_forget_parser", "run_forget"]

_CURVATURES = ("auto", "dense", "woodbury", "kfac", "ekfac")


def add_forget_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``forget`` subcommand to ``subparsers`` (of :func:`mlu.apps.cli.build_parser`).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser (its handler is :func:`run_forget`).
    """
    fp = subparsers.add_parser(
        "forget",
        help="serve deletion requests from a crash-safe store with a request log",
        description="`mlu forget init DIR --model M --data D` builds a store; then "
        "`mlu forget DIR --rows 3,17` removes samples (logged, atomic, idempotent with --id), "
        "`--log` lists the requests, `--verify` replays them from the trained model and "
        "compares bit for bit, `--export` writes the current model.",
    )
    fp.add_argument("target", metavar="init|DIR", help="`init` (then DIR), or a store directory")
    fp.add_argument("dir", nargs="?", metavar="DIR", help="with init: the new store directory")
    fp.add_argument("--model", metavar="M", help="init: the trained model (.npz of mlu, or .pt)")
    fp.add_argument(
        "--data",
        metavar="D",
        help="the training data (.npz with X and y, .csv/.parquet with --label, IDX); "
        "after init: default the file recorded by init",
    )
    fp.add_argument("--label", metavar="NAME", help="label column of a CSV/Parquet file")
    fp.add_argument("--labels-file", metavar="FILE", help="IDX labels file")
    fp.add_argument("--hidden", type=int, nargs="*", metavar="H", help="init: a .pt's widths")
    fp.add_argument(
        "--activation", default="relu", metavar="ACT", help="init: a .pt's activation(s)"
    )
    fp.add_argument(
        "--curvature", choices=_CURVATURES, default="auto", help="init: Unlearner curvature"
    )
    fp.add_argument("--damping", type=float, default=None, help="init: damping δ")
    fp.add_argument("--params", choices=("all", "last"), default="all", help="init: parameters")
    fp.add_argument("--matrix", choices=("ggn", "hessian"), default="ggn", help="init: dense")
    fp.add_argument(
        "--mode",
        choices=MODES,
        default=DEFAULT_MODE,
        help="init: forgetting mode run after each request's exact update (recorded; 'exact': "
        "the exact update alone)",
    )
    fp.add_argument(
        "--epochs", type=float, default=None, help="init: fine-tuning epochs of the mode"
    )
    fp.add_argument("--noise", type=float, default=None, help="init: noise scale of the mode")
    fp.add_argument(
        "--shrink", type=float, default=None, help="init: factor on the weights before the noise"
    )
    fp.add_argument("--rows", metavar="I,J,...", help="remove these rows (0-based indices)")
    fp.add_argument("--rows-file", metavar="F", help="remove the rows listed in F")
    fp.add_argument("--id", metavar="ID", help="the request's id (a retry with it is a no-op)")
    fp.add_argument("--log", action="store_true", help="list the requests")
    fp.add_argument("--json", action="store_true", help="with --log: a JSON list of records")
    fp.add_argument("--verify", action="store_true", help="replay the log and compare")
    fp.add_argument("--export", metavar="FILE", help="write the current model (.npz or .pt)")
    fp.add_argument(
        "--lock-timeout", type=float, default=10.0, metavar="S", help="wait for a writer"
    )
    return fp


def _parse_rows(text: str, what: str) -> list[int]:
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts:
        raise ValueError(f"{what}: no row indices given")
    try:
        return [int(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not p.lstrip("-").isdigit())
        raise ValueError(f"{what}: expected integer row indices, got {bad!r}") from None


def _load_data(args: argparse.Namespace, source: dict[str, Any] | None):
    from ..data.userdata import load_data

    if args.data is not None:
        path, label, labels = args.data, args.label, args.labels_file
    elif source is not None and source.get("path"):
        path, label, labels = source["path"], source.get("label"), source.get("labels_file")
    else:
        raise ValueError("this store does not record its data file: give --data")
    data = load_data(path, label=label, labels_path=labels)
    return data.X, data.y


def _init(args: argparse.Namespace) -> int:
    from ..data.userdata import load_model

    if args.dir is None:
        raise ValueError("init needs a directory: mlu forget init DIR --model M --data D")
    if args.model is None or args.data is None:
        raise ValueError("init needs --model and --data")
    X, y = _load_data(args, None)
    model, torch_source = load_model(
        args.model,
        hidden=tuple(args.hidden) if args.hidden is not None else None,
        activation=args.activation,
        classes=np.unique(y) if Path(args.model).suffix.lower() != ".npz" else None,
    )
    options: dict[str, Any] = {
        "curvature": args.curvature,
        "params": args.params,
        "matrix": args.matrix,
        "mode": args.mode,
    }
    if args.damping is not None:
        options["damping"] = args.damping
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if args.noise is not None:
        options["noise"] = args.noise
    if args.shrink is not None:
        options["shrink"] = args.shrink
    source = {
        "path": str(Path(args.data).resolve()),
        "label": args.label,
        "labels_file": str(Path(args.labels_file).resolve()) if args.labels_file else None,
    }
    _ = torch_source  # a .pt model is converted; --export model.pt writes the same layout
    with DeletionStore.create(
        args.dir, model, X, y, data_source=source, lock_timeout=args.lock_timeout, **options
    ) as store:
        print(
            f"created {args.dir}: {len(y)} samples, {store.options['curvature']} curvature, "
            f"damping {store.options['damping']:g}, forgetting mode {store.options['mode']!r}"
        )
    return 0


def _request(store_dir: str, args: argparse.Namespace) -> int:
    if args.rows is not None and args.rows_file is not None:
        raise ValueError("give --rows or --rows-file, not both")
    if args.rows is not None:
        rows = _parse_rows(args.rows, "--rows")
    else:
        rows = _parse_rows(Path(args.rows_file).read_text(encoding="utf-8"), args.rows_file)
    with DeletionStore.open(store_dir, lock_timeout=args.lock_timeout) as ro:
        source = ro.data_source
    X, y = _load_data(args, source)
    with DeletionStore.open(store_dir, X, y, lock_timeout=args.lock_timeout) as store:
        if store.recovered:
            print(f"mlu forget: {store.recovered}", file=sys.stderr)
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UpdateShortenedWarning)
            rec = store.forget(rows, request_id=args.id)
        for w in caught:
            print(f"mlu forget: warning: {w.message}", file=sys.stderr)
    if rec["applied"]:
        print(
            f"request {rec['id']} (#{rec['seq']}): removed {len(rec['rows'])} row(s) in "
            f"{rec['cost']:.3f} s; model {rec['model_after'][:12]}"
        )
    else:
        print(f"request {rec['id']} was already applied (#{rec['seq']}); nothing changed")
    return 0


def _print_log(store: DeletionStore, as_json: bool) -> None:
    records = store.log()
    if as_json:
        print(json.dumps(records, indent=2))
        return
    if not records:
        print("no requests")
        return
    print(
        f"{'#':>4}  {'id':<32}  {'time (UTC)':<19}  {'rows':>5}  {'cost':>8}  L_R before -> after"
    )
    for r in records:
        c = r["check"] or {}
        lr = (
            f"{c['objective_before']:.6g} -> {c['objective_after']:.6g}"
            if c.get("objective_before") is not None and c.get("objective_after") is not None
            else "-"
        )
        print(
            f"{r['seq']:>4}  {r['id']:<32.32}  {r['time'][:19]:<19}  {len(r['rows']):>5}  "
            f"{r['cost'] * 1e3:>6.1f}ms  {lr}"
        )


def _store_command(store_dir: str, args: argparse.Namespace) -> int:
    actions = [
        name
        for name, given in (
            ("--rows", args.rows is not None or args.rows_file is not None),
            ("--log", args.log),
            ("--verify", args.verify),
            ("--export", args.export is not None),
        )
        if given
    ]
    if len(actions) != 1:
        raise ValueError(
            "give one of --rows/--rows-file, --log, --verify, --export"
            + (f" (got {', '.join(actions)})" if actions else "")
        )
    if args.json and not args.log:
        raise ValueError("--json goes with --log")
    if args.id is not None and actions != ["--rows"]:
        raise ValueError("--id goes with --rows or --rows-file")
    if actions == ["--rows"]:
        return _request(store_dir, args)
    if args.verify:
        with DeletionStore.open(store_dir, lock_timeout=args.lock_timeout) as ro:
            source = ro.data_source
        X, y = _load_data(args, source)
        with DeletionStore.open(store_dir, X, y, lock_timeout=args.lock_timeout) as store:
            result = store.verify()
        print(result.describe())
        return 0 if result.ok else 1
    with DeletionStore.open(store_dir, lock_timeout=args.lock_timeout) as store:
        if store.recovered:
            print(f"mlu forget: {store.recovered}", file=sys.stderr)
        if args.log:
            _print_log(store, args.json)
        else:
            path = store.export(args.export)
            print(f"wrote {path} (model after {store.n_requests} request(s))")
    return 0


def run_forget(args: argparse.Namespace) -> int:
    """Run ``mlu forget`` with parsed ``args``; errors are one line on stderr, exit status 1.

    Parameters
    ----------
    args : argparse.Namespace
        From the parser of :func:`add_forget_parser`.

    Returns
    -------
    int
        0 on success, 1 on an error (or a failed ``--verify``).
    """
    try:
        if args.target == "init":
            return _init(args)
        if args.dir is not None:
            raise ValueError(f"unexpected argument {args.dir!r} (only `init` takes two)")
        return _store_command(args.target, args)
    except (
        ValueError,
        TypeError,
        OSError,
        ImportError,
        MemoryError,
        RequestFailedError,
        StoreCorruptError,
        StoreLockedError,
        sqlite3.Error,
    ) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
            message = f"{exc.strerror}: {str(exc.filename)!r}"
        print(f"mlu forget: error: {message}", file=sys.stderr)
        return 1
