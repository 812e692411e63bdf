"""Load the fastest build of the C++ core that this CPU runs, as ``mlu._core``.

The core is compiled once per instruction set from the same sources (CMakeLists.txt):
``_core_baseline`` runs on any CPU of the architecture, ``_core_x86_64_v3`` needs AVX2, FMA,
BMI1/2, F16C, LZCNT and MOVBE (Haswell, Zen and later) and runs the dense kernels about twice
as fast. At import, the tiny ``_cpu`` extension (itself built for the baseline) asks the CPU
by ``cpuid`` which level it runs, and the best build present is registered under the name
``mlu._core``, so ``from mlu import _core`` works everywhere. A wheel built on one machine thus
never crashes with an illegal instruction on an older one, as ``-march=native`` would.

The environment variable ``MLU_ISA`` (``baseline``, ``x86-64-v3``, ``native``) forces a build,
e.g. ``MLU_ISA=baseline`` to test the portable path on a new CPU. Forcing a build the CPU cannot
run is allowed (with a warning) and crashes the process at the first wide instruction.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from types import ModuleType

__all__ = ["CORE_ISA", "ENV_VAR", "available", "choose", "load_core", "supported"]

ENV_VAR = "MLU_ISA"

# Fastest first. "native" exists only when built with -DMLU_NATIVE=ON (for this machine).
_PREFERENCE = ("native", "x86-64-v3", "baseline")
_MIN_X86_64_LEVEL = {"x86-64-v3": 3}


def _module_name(isa: str) -> str:
    return f"{__package__}._core_{isa.replace('-', '_')}"


def available() -> list[str]:
    """The instruction sets the core was built for in this installation, fastest first.

    Returns
    -------
    list of str
        A subset of ``["native", "x86-64-v3", "baseline"]``.
    """
    return [isa for isa in _PREFERENCE if importlib.util.find_spec(_module_name(isa)) is not None]


def supported(isa: str) -> bool:
    """Whether this CPU (and OS) runs code built for ``isa``.

    Parameters
    ----------
    isa : str
        ``"baseline"``, ``"x86-64-v3"`` or ``"native"`` (built here, for here: assumed yes).

    Returns
    -------
    bool
    """
    level = _MIN_X86_64_LEVEL.get(isa)
    if level is None:
        return True
    from . import _cpu

    return int(_cpu.x86_64_level()) >= level


def choose() -> str:
    """The build to load: ``$MLU_ISA`` if set, else the fastest one this CPU runs.

    Returns
    -------
    str
        One of :func:`available`.

    Raises
    ------
    ImportError
        If no build of the core is present, or ``$MLU_ISA`` names one that is not.
    """
    built = available()
    if not built:
        raise ImportError(
            "mlu's C++ core is not built: `pip install .`, or `tools/dev-build` for a "
            "source tree used through PYTHONPATH"
        )
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced in ("", "auto"):
        return next(isa for isa in built if supported(isa))
    if forced not in built:
        raise ImportError(
            f"{ENV_VAR}={forced!r}: this installation has a core built for {built}; "
            "unset the variable to choose by the CPU"
        )
    if not supported(forced):
        warnings.warn(
            f"{ENV_VAR}={forced!r} forces a build this CPU cannot run: expect a crash "
            "(illegal instruction)",
            RuntimeWarning,
            stacklevel=2,
        )
    return forced


def load_core() -> str:
    """Import the chosen build and register it as ``mlu._core``; idempotent.

    Returns
    -------
    str
        The instruction set of the loaded build (its own ``isa`` attribute).
    """
    name = f"{__package__}._core"
    core: ModuleType | None = sys.modules.get(name)
    if core is None:
        core = importlib.import_module(_module_name(choose()))
        sys.modules[name] = core
        # As the import system does for a submodule: mlu._core is an attribute of mlu too.
        setattr(sys.modules[__package__], "_core", core)  # noqa: B010 (typed ModuleType: no attr)
    return str(core.isa)


# Importing this module loads the core (mlu/__init__.py imports it before anything else).
CORE_ISA: str = load_core()
