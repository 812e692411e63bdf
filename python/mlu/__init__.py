"""mlu: find mislabeled training samples and unlearn them from a trained MLP.

The hot math (forward/backward, per-sample gradients, Hessians, solvers) runs in a C++ core
(Eigen, behind pybind11); this package is the Python face over it.
"""

# First of all: importing _isa registers the build of the C++ core that this CPU runs as
# mlu._core, which every module below imports. core_isa: "x86-64-v3", "baseline" (or "native").
from ._isa import CORE_ISA as core_isa

# isort: split
from . import baselines, datasets, exceptions, experiment, experiments, metrics, noise, reference
from ._version import __version__
from .clean import CleanResult, clean
from .detect import (
    ConfidentLearningResult,
    confident_learning,
    detect,
    estimate_noise_rate,
    select,
)
from .exceptions import (
    HessianTooLargeError,
    NoiseRateWarning,
    NotPositiveDefiniteError,
    UnscaledFeaturesWarning,
    UpdateShortenedWarning,
)
from .experiments import ExperimentConfig, run_experiments
from .influence import influence
from .interop import from_sklearn, from_torch
from .model import MLP, HessianOperator, TrainingTrace, get_num_threads, set_num_threads
from .sisa import SISA
from .unlearn import UnlearningResult, unlearn
from .unlearner import Unlearner

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
    "TrainingTrace",
    "datasets",
    "from_sklearn",
    "from_torch",
    "get_num_threads",
    "noise",
    "reference",
    "set_num_threads",
    "baselines",
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
    "influence",
]
