"""Experiment driver: the paper's three experiments over flip ratios × seeds, resumable.

One *cell* is one ``(dataset, flip ratio, seed)``: a model is trained on the noisy labels and
all three experiments run on it, since they share that model:

1. **detection** — every detector scores the training set; ROC-AUC, AP and the thresholded
   metrics against the truly flipped samples, at the top ``top_fraction`` (the paper's 10%),
   at the automatic threshold of :func:`mlu.select` (a Gaussian mixture) and, for the
   margin detectors, at 0 (flag samples whose (mean) margin is negative);
2. **oracle unlearning** — the truly flipped samples are unlearned by the influence methods
   and the baselines (fine-tune, retrain, gradient ascent, SISA);
3. **pipeline** — detect, then unlearn what was flagged, against retraining on what the
   detector kept, the noisy model and retraining on the truly clean data.

Each finished cell is written at once to ``<out>/cells/<dataset>_r<percent>_s<seed>.json``
(atomically), so an interrupted sweep resumes where it stopped; cells whose settings differ
from the current configuration (see :meth:`ExperimentConfig.fingerprint`) are recomputed.
The tidy CSVs (one row per dataset × ratio × seed × method), ``config.json``, the plots and
``summary.md`` are rebuilt from the stored cells.

The default pipeline, :data:`DEFAULT_PIPELINE` = ``"aum/zero/newton"``, was chosen by
measurement on Fashion-MNIST and digits 0 vs 1: the area under the margin (mean margin over
the training epochs) ranks flipped labels best at high noise (ROC-AUC 0.98 at r = 40% on
Fashion-MNIST, against 0.91 for the final loss), and flagging the samples with a negative mean
margin estimates the number of flips far better than a Gaussian mixture when few labels are
flipped (at r = 1% the mixture flagged 180-800 of 2000 samples for ~20 flips); Newton with
the GGN with :data:`mlu.defaults.DEFAULTS` is the unlearning (see :class:`ExperimentConfig`).

Modules, each importing only those above it: :mod:`~mlu.experiments.spec` (the configuration),
:mod:`~mlu.experiments.store` (files), :mod:`~mlu.experiments.report` and
:mod:`~mlu.experiments.plots` (tables and figures from stored cells),
:mod:`~mlu.experiments.cell` (what one cell's experiments share),
:mod:`~mlu.experiments.detection`, :mod:`~mlu.experiments.unlearning` and
:mod:`~mlu.experiments.pipeline` (the three experiments), :mod:`~mlu.experiments.runner`
(one cell), :mod:`~mlu.experiments.sweep` (all cells) and :mod:`~mlu.experiments.demo`.
"""

from .cell import load_dataset
from .demo import run_demo
from .runner import run_cell
from .spec import (
    BASELINES,
    DEFAULT_PIPELINE,
    DETECTORS,
    PAPER_PIPELINE,
    UNLEARN_METHODS,
    ExperimentConfig,
    MethodSpec,
    PipelineSpec,
    load_config_file,
    parse_ratio,
)
from .store import CellStore, versions
from .sweep import RunResult, load_cells, run_experiments, write_outputs

__all__ = [
    "BASELINES",
    "DEFAULT_PIPELINE",
    "DETECTORS",
    "PAPER_PIPELINE",
    "UNLEARN_METHODS",
    "CellStore",
    "ExperimentConfig",
    "MethodSpec",
    "PipelineSpec",
    "RunResult",
    "load_cells",
    "load_config_file",
    "load_dataset",
    "parse_ratio",
    "run_cell",
    "run_demo",
    "run_experiments",
    "versions",
    "write_outputs",
]
