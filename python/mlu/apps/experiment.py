"""Deprecated path of :mod:`mlu.experiments`, kept because ``mlu.experiment`` is released API.

It re-exports the public names and nothing else; new code imports :mod:`mlu.experiments`.
"""

from .experiments import (
    BASELINES,
    DEFAULT_PIPELINE,
    DETECTORS,
    PAPER_PIPELINE,
    UNLEARN_METHODS,
    CellStore,
    ExperimentConfig,
    MethodSpec,
    PipelineSpec,
    RunResult,
    load_cells,
    load_config_file,
    load_dataset,
    parse_ratio,
    run_cell,
    run_demo,
    run_experiments,
    versions,
    write_outputs,
)

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
