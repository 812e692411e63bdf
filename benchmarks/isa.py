"""The builds of the C++ core against each other: is the dispatched build as fast as -march=native?

    python benchmarks/isa.py                                  # every build of this install
    python benchmarks/isa.py --core native=/path/to/_core.so  # plus a build from elsewhere
    python benchmarks/isa.py --ops epoch,hvp --sizes paper --rounds 3

A process holds one build of the core, so each build runs in its own child process, on the
same data and cases as benchmarks/suite.py (mlu's public calls). The children run in turns,
``--rounds`` times, so that load from other processes falls on every build alike; the table
gives the best time of each build and its ratio to the first build. One thread by default
(``--threads``): the instruction set, not the scheduling, is what differs between builds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (op, size) pairs of suite.OPS: training, curvature, solves and per-sample gradients.
DEFAULT_CASES = (
    "epoch:paper",
    "gradients:paper",
    "hvp:paper",
    "hvp_op:paper",
    "cg:paper",
    "hessian:narrow",
    "cholesky:narrow",
    "self_influence:narrow",
)


def child(core_file: str | None, label: str, cases: list[str], repeats: int) -> dict:
    """Time `cases` with one build of the core; runs in a child process."""
    if core_file:  # a build from elsewhere (e.g. main's -march=native _core): load it as ours
        spec = importlib.util.spec_from_file_location("mlu._core", core_file)
        assert spec is not None and spec.loader is not None
        core = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(core)
        if not hasattr(core, "isa"):
            core.isa = label  # builds from before the dispatch do not say what they are
        sys.modules["mlu._core"] = core
    sys.path.insert(0, str(HERE))
    import suite  # imports mlu: after the core is chosen
    from threadpoolctl import threadpool_limits

    import mlu

    threads = int(os.environ["MLU_BENCH_THREADS"])
    limiter = threadpool_limits(threads)  # noqa: F841  (kept alive: the limit stays in force)
    mlu.set_num_threads(threads)
    out = {"isa": mlu.core_isa, "times": {}}
    for case in cases:
        op, size = case.split(":")
        fn = suite.implementation(op, suite.problem(size), "mlu")
        fn()  # warm-up (and the lazily built inputs)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        out["times"][case] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--core", action="append", default=[], metavar="LABEL=FILE", help="another build"
    )
    parser.add_argument("--builds", default=None, help="builds of this install (default all)")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help="op:size,...")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child", nargs=2, metavar=("LABEL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = args.cases.split(",")
    if args.child:
        label, core_file = args.child
        print(json.dumps(child(core_file or None, label, cases, args.repeats)))
        return

    from mlu import _isa

    builds = [(isa, "") for isa in (args.builds.split(",") if args.builds else _isa.available())]
    builds += [tuple(spec.split("=", 1)) for spec in args.core]
    best: dict[str, dict[str, float]] = {}
    for r in range(args.rounds):
        for label, core_file in builds:
            env = {**os.environ, "MLU_BENCH_THREADS": str(args.threads)}
            env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(args.threads)
            if not core_file:
                env[_isa.ENV_VAR] = label
            cmd = [sys.executable, __file__, "--child", label, core_file, "--cases", args.cases]
            cmd += ["--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"{label}: child failed\n{proc.stderr}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"round {r + 1}: {label} ({got['isa']}) done", file=sys.stderr)
            for case, t in got["times"].items():
                row = best.setdefault(case, {})
                row[label] = min(row.get(label, float("inf")), t)
    labels = [label for label, _ in builds]
    print(f"| case | {' | '.join(labels)} | " + " | ".join(f"{x}/{labels[0]}" for x in labels[1:]))
    print("|---" * (2 * len(labels)) + "|")
    for case in cases:
        row = best[case]
        times = " | ".join(f"{row[x] * 1e3:.1f} ms" for x in labels)
        ratios = " | ".join(f"{row[x] / row[labels[0]]:.2f}" for x in labels[1:])
        print(f"| {case} | {times} | {ratios} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "best": best}, indent=1))


if __name__ == "__main__":
    main()
