"""What ``import mlu`` costs, and what loading the experiment driver and the NumPy reference lazily
saves (issue 26).

    OMP_NUM_THREADS=1 python studies/import_time/import_time.py [--runs 15]

Each run is a fresh interpreter. ``lean``: ``import mlu`` as shipped (the experiment driver, the
reference and matplotlib load on first use). ``eager``: ``import mlu`` and then the lazy modules
(``import mlu.apps.experiment, mlu.apps.experiments, mlu.engine.reference``: an import
statement, which ``-X importtime`` reports, where the lazy attribute's
``importlib.import_module`` is not), which is what ``import mlu`` loaded before they became
lazy. The two kinds alternate, so that load from other processes on a shared machine falls on
both alike; the table gives the median and the fastest wall time of each and of ``-X
importtime``'s cumulative microseconds for the lazy modules. Writes ``import_time.{json,md}``
beside this script, with the command, the commit and the machine in the header.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAZY = ("mlu.apps.experiments", "mlu.apps.experiment", "mlu.engine.reference")
WATCH = (*LAZY, "mlu", "sklearn", "matplotlib")
CODE = {
    "lean": "import time; t = time.perf_counter(); import mlu; print(time.perf_counter() - t)",
    "eager": (
        "import time; t = time.perf_counter(); import mlu; "
        "import mlu.apps.experiment, mlu.apps.experiments, mlu.engine.reference; "
        "print(time.perf_counter() - t)"
    ),
}


def one(kind: str) -> tuple[float, dict[str, int]]:
    """Wall seconds of the imports, and -X importtime's cumulative µs of each lazy module."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CODE[kind]],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    cumulative = {}
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] in WATCH:
            cumulative[parts[2]] = int(parts[1])
    return float(proc.stdout.strip().splitlines()[-1]), cumulative


def commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty.strip() else "")  # fmt: skip


def dgemm_peak(n: int = 1000) -> float:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n))
    a @ a
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    wall: dict[str, list[float]] = {"lean": [], "eager": []}
    lazy_us: list[int] = []
    lean_us: dict[str, list[int]] = {"mlu": [], "sklearn": []}
    leaked = 0
    for _ in range(args.runs):
        for kind in ("lean", "eager"):
            seconds, cumulative = one(kind)
            wall[kind].append(seconds)
            if kind == "eager":
                lazy_us.append(
                    sum(
                        cumulative.get(m, 0)
                        for m in ("mlu.apps.experiment", "mlu.engine.reference")
                    )
                )
            else:
                leaked += any(m in cumulative for m in (*LAZY, "matplotlib"))
                for m in lean_us:
                    lean_us[m].append(cumulative.get(m, 0))
    header = {
        "command": "python studies/import_time/import_time.py --runs " + str(args.runs),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": commit(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "platform": platform.platform(),
            "cores": os.cpu_count(),
            "dgemm_peak_gflops": round(dgemm_peak(), 1),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(),
        },
    }
    summary = {
        kind: {"median_s": statistics.median(t), "min_s": min(t)} for kind, t in wall.items()
    }
    summary["lazy_modules_importtime_ms"] = {
        "median": statistics.median(lazy_us) / 1e3,
        "min": min(lazy_us) / 1e3,
    }
    summary["lean_runs_that_loaded_a_lazy_module"] = leaked
    for m, us in lean_us.items():
        summary[f"lean_importtime_ms_{m}"] = {
            "median": statistics.median(us) / 1e3,
            "min": min(us) / 1e3,
        }
    (HERE / "import_time.json").write_text(
        json.dumps(
            {**header, "summary": summary, "wall_s": wall, "lazy_us": lazy_us, "lean_us": lean_us},
            indent=1,
        )
        + "\n"
    )
    m = header["machine"]
    lines = [
        "# import mlu: lean (lazy driver and reference) vs eager",
        "",
        f"`{header['command']}` · {header['date']} · commit {header['commit']} · "
        f"{m['cores']} cores, dgemm peak {m['dgemm_peak_gflops']} GFLOP/s (1000×1000, this run) "
        f"· Python {m['python']} · OMP_NUM_THREADS={m['omp_num_threads']}",
        "",
        "| | median | fastest |",
        "|---|---:|---:|",
        f"| `import mlu` (lean, as shipped) | {summary['lean']['median_s']:.3f} s | "
        f"{summary['lean']['min_s']:.3f} s |",
        f"| `import mlu` + `mlu.experiments`, `mlu.reference` (eager, as before) | "
        f"{summary['eager']['median_s']:.3f} s | {summary['eager']['min_s']:.3f} s |",
        f"| `-X importtime` cumulative of `mlu.experiment` + `mlu.reference` | "
        f"{summary['lazy_modules_importtime_ms']['median']:.0f} ms | "
        f"{summary['lazy_modules_importtime_ms']['min']:.0f} ms |",
        f"| `-X importtime` cumulative of `mlu` (lean) | "
        f"{summary['lean_importtime_ms_mlu']['median']:.0f} ms | "
        f"{summary['lean_importtime_ms_mlu']['min']:.0f} ms |",
        f"| of which `sklearn` | {summary['lean_importtime_ms_sklearn']['median']:.0f} ms | "
        f"{summary['lean_importtime_ms_sklearn']['min']:.0f} ms |",
        "",
        f"{args.runs} fresh interpreters of each kind, alternating; lean runs that loaded a "
        f"lazy module or matplotlib anyway: {leaked}. Load average before the run: "
        f"{header['load_average']}.",
    ]
    (HERE / "import_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
