"""The build of the C++ core chosen by the CPU (mlu/_isa.py), its results, and the version."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import make_problem

import mlu
from mlu import _core, _cpu, _isa
from mlu import reference as ref
from mlu.apps.cli import main

PACKAGE_PARENT = Path(mlu.__file__).resolve().parents[1]

V2_FLAGS = {"pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm"}
V3_FLAGS = {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"}  # abm: LZCNT


def run_python(code: str, isa: str | None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter on this mlu, with MLU_ISA=isa (None: unset)."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT), "OMP_NUM_THREADS": "1"}
    env.pop(_isa.ENV_VAR, None)
    if isa is not None:
        env[_isa.ENV_VAR] = isa
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_chosen_build_is_registered_as_mlu_core():
    assert sys.modules["mlu._core"] is _core
    assert _core.isa == mlu.core_isa
    assert mlu.core_isa in _isa.available()
    assert "native" in _isa.available() or "baseline" in _isa.available()


def test_fastest_build_this_cpu_runs_is_chosen():
    built = _isa.available()
    forced = os.environ.get(_isa.ENV_VAR, "").strip().lower()
    if forced not in ("", "auto"):
        expected = forced
    elif "native" in built:
        expected = "native"
    elif "x86-64-v3" in built and _cpu.x86_64_level() >= 3:
        expected = "x86-64-v3"
    else:
        expected = "baseline"
    assert mlu.core_isa == expected


def test_cpuid_level_agrees_with_the_kernel():
    """cpuid against /proc/cpuinfo (on real hardware: qemu-user shows the host's file)."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        assert _cpu.x86_64_level() == 0 and _cpu.cpu_features() == {}
        return
    if not cpuinfo.exists():  # macOS, Windows: nothing independent to compare with
        assert _cpu.x86_64_level() >= 1
        return
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    expected = 1 + (V2_FLAGS <= flags) + (V2_FLAGS <= flags and V3_FLAGS <= flags)
    assert _cpu.x86_64_level() == expected
    features = _cpu.cpu_features()
    assert features["avx2"] == ("avx2" in flags) and features["sse4_2"] == ("sse4_2" in flags)


CHILD = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import make_problem
import mlu

model, X, y = make_problem((7, 5), "tanh", 3, n=200, d=9, seed=3)
v = np.random.default_rng(4).normal(size=model.params.size)
fit = mlu.MLP(hidden=(6,), epochs=2, seed=1, batch_size=16).fit(X, y)
np.savez({out!r}, isa=mlu.core_isa, gradient=model.gradient(X, y),
         gradients=model.gradients(X, y), hessian=model.hessian(X, y),
         hvp=model.hvp(X, y, v), trained=fit.params)
"""


@pytest.mark.parametrize("isa", ["baseline", "x86-64-v3"])
def test_every_build_matches_the_reference(isa, tmp_path):
    """Each build (in its own process: one core per process) against mlu.reference."""
    if isa not in _isa.available():
        # Built by default on x86-64; absent only with MLU_NATIVE (one build) or elsewhere.
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        assert "native" in _isa.available() or (isa == "x86-64-v3" and not x86)
        return
    if not _isa.supported(isa):
        return  # this CPU cannot run it (tools/check-portable shows it would crash)
    out = tmp_path / f"{isa}.npz"
    tests_dir = str(Path(__file__).resolve().parent)
    proc = run_python(CHILD.format(tests=tests_dir, out=str(out)), isa)
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    assert str(got["isa"]) == isa
    model, X, y = make_problem((7, 5), "tanh", 3, n=200, d=9, seed=3)
    L, act, l2 = model.layers, model.activation, model.l2
    v = np.random.default_rng(4).normal(size=model.params.size)

    def rel(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    assert rel(got["gradient"], ref.gradient(L, act, X, y, l2=l2)) < 1e-12
    assert rel(got["gradients"], ref.per_sample_gradients(L, act, X, y)) < 1e-12
    assert rel(got["hessian"], ref.hessian(L, act, X, y, l2=l2)) < 1e-11
    assert rel(got["hvp"], ref.hvp(L, act, X, y, v, l2=l2)) < 1e-12
    # Training: this process's build and the forced one follow the same trajectory.
    fit = mlu.MLP(hidden=(6,), epochs=2, seed=1, batch_size=16).fit(X, y)
    assert rel(got["trained"], fit.params) < 1e-10


def test_forcing_a_build_that_is_not_there_fails_clearly():
    proc = run_python("import mlu", "avx9000")
    assert proc.returncode != 0
    assert "MLU_ISA='avx9000'" in proc.stderr and "baseline" in proc.stderr


def test_cli_version_names_the_core(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert f"mlu: {mlu.__version__}" in out
    assert f"core: {mlu.core_isa}, " in out and "built for: " in out


def test_version_is_the_one_in_pyproject():
    pyproject = PACKAGE_PARENT.parent / "pyproject.toml"
    if pyproject.exists():  # a source tree on PYTHONPATH
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib
        expected = tomllib.loads(pyproject.read_text())["project"]["version"]
    else:
        try:  # installed
            expected = metadata.version("mlu")
        except metadata.PackageNotFoundError:  # a copy of the package without its metadata
            expected = "0+unknown"
    assert mlu.__version__ == expected
