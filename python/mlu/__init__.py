"""mlu: find mislabeled training samples and unlearn them from a trained MLP.

The hot math (forward/backward, per-sample gradients, Hessians, solvers) runs in a C++ core
(Eigen, behind pybind11); this package is the Python face over it.

``import mlu`` stays lean: the experiment driver (``mlu.experiment``, ``mlu.experiments``,
``mlu.ExperimentConfig``, ``mlu.run_experiments``) and the NumPy reference (``mlu.reference``)
load on first use, and matplotlib only when a plot or report is drawn (docs/design.md,
"Module map and layers").
"""

import importlib
from typing import TYPE_CHECKING, Any

# First of all: importing _isa registers the build of the C++ core that this CPU runs as
# mlu._core, which every module below imports. core_isa: "x86-64-v3", "baseline" (or "native").
from ._isa import CORE_ISA as core_isa

# isort: split
# The public modules, by their short names (mlu.datasets, mlu.noise, ...); each lives in the
# folder of its layer (docs/design.md, "Module map and layers").
from . import exceptions, metrics
from ._version import __version__
from .apps.clean import CleanResult, clean
from .data import datasets, noise
from .detection.detect import (
    ConfidentLearningResult,
    confident_learning,
    detect,
    estimate_noise_rate,
    select,
)
from .detection.influence import influence
from .engine.interop import from_sklearn, from_torch
from .engine.model import MLP, HessianOperator, TrainingTrace, get_num_threads, set_num_threads
from .exceptions import (
    HessianTooLargeError,
    NoiseRateWarning,
    NotCertifiedWarning,
    NotPositiveDefiniteError,
    RequestFailedError,
    StoreCorruptError,
    StoreLockedError,
    UnscaledFeaturesWarning,
    UpdateShortenedWarning,
)
from .unlearning import baselines, certified, forgetting
from .unlearning.sisa import SISA
from .unlearning.unlearn import UnlearningResult, unlearn
from .unlearning.unlearner import Unlearner

if TYPE_CHECKING:  # the lazy names below, for type checkers
    from .apps import experiment, experiments
    from .apps.experiments import ExperimentConfig, run_experiments
    from .engine import reference
    from .unlearning.store import DeletionStore

# name -> (module, attribute or None for the module itself), imported on first access.
_LAZY: dict[str, tuple[str, str | None]] = {
    "experiment": ("mlu.apps.experiment", None),
    "experiments": ("mlu.apps.experiments", None),
    "reference": ("mlu.engine.reference", None),
    "ExperimentConfig": ("mlu.apps.experiments", "ExperimentConfig"),
    "run_experiments": ("mlu.apps.experiments", "run_experiments"),
    # sqlite3 only when a store is used
    "DeletionStore": ("mlu.unlearning.store", "DeletionStore"),
}


def __getattr__(name: str) -> Any:
    """Import the experiment driver and the NumPy reference on first use (PEP 562)."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mlu' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "MLP",
    "SISA",
    "CleanResult",
    "clean",
    "UnlearningResult",
    "HessianOperator",
    "HessianTooLargeError",
    "NotPositiveDefiniteError",
    "RequestFailedError",
    "TrainingTrace",
    "datasets",
    "from_sklearn",
    "from_torch",
    "get_num_threads",
    "noise",
    "reference",
    "set_num_threads",
    "baselines",
    "certified",
    "forgetting",
    "NotCertifiedWarning",
    "core_isa",
    "ConfidentLearningResult",
    "NoiseRateWarning",
    "UnscaledFeaturesWarning",
    "UpdateShortenedWarning",
    "confident_learning",
    "detect",
    "estimate_noise_rate",
    "experiment",
    "experiments",
    "exceptions",
    "ExperimentConfig",
    "run_experiments",
    "metrics",
    "select",
    "unlearn",
    "Unlearner",
    "DeletionStore",
    "StoreCorruptError",
    "StoreLockedError",
    "influence",
]
