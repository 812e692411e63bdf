"""Specifications of an experiment sweep: method and pipeline specs, the configuration.

The leaf of :mod:`mlu.experiments`: it imports nothing of the package, so the runner, the
store, the report and the plots can all read it (docs/design.md, "Module map").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...unlearning.unlearn import DEFAULT_CURVATURE, DEFAULT_DAMPING, DEFAULT_STEPS

__all__ = [
    "BASELINES",
    "CELL_FORMAT",
    "DEFAULT_PIPELINE",
    "DETECTORS",
    "PAPER_PIPELINE",
    "UNLEARN_METHODS",
    "ExperimentConfig",
    "MethodSpec",
    "PipelineSpec",
    "describe_threshold",
    "load_config_file",
    "parse_ratio",
    "top_fraction_of",
]

DETECTORS = ("loss", "margin", "aum", "early_loss", "self_influence", "confident_learning")
UNLEARN_METHODS = ("influence", "newton")
BASELINES = ("finetune", "retrain", "gradient_ascent", "sisa")
THRESHOLD_KINDS = ("top", "auto", "zero", "oracle")
#: Detectors whose scores are negated margins: 0 is their natural decision boundary.
ZERO_DETECTORS = ("margin", "aum")
NOISE_MODES = ("random", "per_class")

#: The pipeline we recommend: AUM scores, flag every sample whose mean margin over training
#: is negative, unlearning with mlu.unlearn's defaults (mlu.defaults.DEFAULTS).
DEFAULT_PIPELINE = "aum/zero/newton"
#: The DEIM2024 paper's pipeline: final loss, top 10%, influence update of the last layer.
PAPER_PIPELINE = "loss/top/influence:damping=0.01,params=last"

#: Columns of the three CSVs that identify a row; the rest are measurements.
KEY_COLUMNS = ("dataset", "ratio", "seed")
CELL_FORMAT = 2  # bump when the cell JSON layout changes: old cells are then recomputed

# Rows of experiment 3 that are not a detector/method combination.
ROLE_NOISY = "noisy"
ROLE_CLEAN = "clean_retrain"
ROLE_PIPELINE = "unlearn"
ROLE_KEPT = "retrain_kept"


# --------------------------------------------------------------------------- method specs


def _parse_value(text: str) -> Any:
    """'3' -> 3, '0.01' -> 0.01, 'true' -> True, anything else stays a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class MethodSpec:
    """An unlearning method and the options that override the config's defaults.

    Written ``name`` or ``name:key=value,key=value``, e.g. ``"newton:steps=2,params=last"``.

    Attributes
    ----------
    name : str
        One of :data:`UNLEARN_METHODS` or :data:`BASELINES`.
    options : tuple of (str, value)
        Keyword arguments for the method (sorted by key).
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        name, _, rest = str(text).strip().partition(":")
        name = name.strip()
        if name not in UNLEARN_METHODS + BASELINES:
            raise ValueError(
                f"unknown unlearning method {name!r} in {text!r}; choose from "
                f"{', '.join(UNLEARN_METHODS + BASELINES)}"
            )
        opts = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"bad option {item!r} in {text!r}: expected key=value")
            opts[key.strip()] = _parse_value(value.strip())
        return cls(name, tuple(sorted(opts.items())))

    @property
    def label(self) -> str:
        """The canonical text form (what the CSVs show)."""
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.options)

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class PipelineSpec:
    """Detector, threshold and unlearning method of one pipeline: ``"early_loss/auto/newton"``.

    The threshold is ``"top"`` (the config's ``top_fraction``, the paper's 10%), ``"topN"``
    (the top N percent), ``"auto"`` (:func:`mlu.detection.detect.select` with ``method="auto"``: a
    two-component Gaussian mixture on the scores), ``"zero"`` (flag scores above 0: for the
    negated-margin detectors ``"margin"`` and ``"aum"`` these are the samples whose (mean)
    margin is negative, i.e. that the model, averaged over training, puts in another class)
    or ``"oracle"`` (as many as are truly flipped: isolates the ranking from the threshold).
    """

    detector: str
    threshold: str
    method: MethodSpec

    @classmethod
    def parse(cls, text: str) -> PipelineSpec:
        parts = str(text).strip().split("/")
        if len(parts) != 3:
            raise ValueError(f"pipeline {text!r} must be 'detector/threshold/method'")
        detector, threshold, method = (p.strip() for p in parts)
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r} in pipeline {text!r}")
        top_fraction_of(threshold, 0.1)
        return cls(detector, threshold, MethodSpec.parse(method))

    @property
    def label(self) -> str:
        return f"{self.detector}/{self.threshold}/{self.method.label}"

    def __str__(self) -> str:
        return self.label


def describe_threshold(kind: str, top_fraction: float = 0.1) -> str:
    """A threshold kind in words, for tables."""
    if kind == "auto":
        return "automatic threshold (Gaussian mixture)"
    if kind == "zero":
        return "automatic threshold (score > 0: mean margin < 0)"
    if kind == "oracle":
        return "as many as truly flipped (oracle count)"
    return f"top {top_fraction_of(kind, top_fraction):.0%}"


def top_fraction_of(kind: str, top_fraction: float) -> float | None:
    """The top fraction a threshold names (None for 'auto', 'zero' and 'oracle').

    Raises ValueError for a threshold kind that is none of those.
    """
    if kind in ("auto", "zero", "oracle"):
        return None
    if kind == "top":
        return top_fraction
    if kind.startswith("top"):
        try:
            pct = float(kind[3:])
        except ValueError:
            pct = -1.0
        if 0 <= pct <= 100:
            return pct / 100.0
    raise ValueError(
        f"threshold must be 'top', 'topN' (percent), 'auto', 'zero' or 'oracle', got {kind!r}"
    )


# --------------------------------------------------------------------------- configuration


def _tuple(value, kind=None) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        value = [value]
    return tuple(kind(v) if kind else v for v in value)


def parse_ratio(value) -> float:
    """A flip ratio as a fraction: ``0.2`` or ``"0.2"`` or ``"20%"``."""
    if isinstance(value, str):
        text = value.strip()
        r = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    else:
        r = float(value)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"flip ratio must be in [0, 1] (or 0%..100%), got {value!r}")
    return r


def _class_id(value):
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


@dataclass
class ExperimentConfig:
    """Everything a sweep depends on. Defaults are the paper's settings.

    Every field is also a key of the JSON/TOML config file and a ``mlu run`` option.

    Attributes
    ----------
    datasets : tuple of str
        Data sets for :func:`mlu.datasets.load` (``"fashion-mnist"``, ``"mnist"``, ``"digits"``…).
    classes : tuple of int or str, or None
        Classes to keep (the paper: 0 vs 1); None = all.
    n_per_class : int or None
        Training samples per class (the paper: 1000); capped at what a class has (digits has
        ~135 per class in its training split); None = all.
    data_seed : int
        Seed of the training subset and of the digits train/test split (fixed over seeds, so
        every seed sees the same data and only the noise and initialisation vary).
    data_root : str or None
        Directory of the IDX files (default: :func:`mlu.datasets.default_search_paths`).
    data_label : str or None
        Label column of the CSV/Parquet files among ``datasets`` (a data set may be a file
        :func:`~mlu.data.userdata.load_data` reads: ``.npz``, ``.csv``, ``.parquet``, IDX; it is
        split
        into train and test, 20% test, seeded by ``data_seed``).
    hidden, activation, l2, epochs, lr, momentum, batch_size
        The MLP (the paper: 50 ReLU units, SGD lr 0.01, momentum 0.9, batch 32, 20 epochs).
    ratios : tuple of float
        Flip ratios r in [0, 1].
    noise_mode : {"random", "per_class"}
        See :func:`mlu.noise.flip_labels`.
    seeds : tuple of int
        Each seed sets the flips and the initialisation/shuffling; results are mean ± std.
    detectors : tuple of str
        Detectors of experiment 1 (see :data:`DETECTORS`).
    top_fraction : float
        The paper's threshold: flag the top 10%.
    detector_options : dict
        Per-detector keyword arguments for :func:`mlu.detection.detect.detect`, e.g.
        ``{"early_loss": {"epoch": 2}}``.
    methods : tuple of str
        Influence-based unlearning methods of experiment 2 (method specs, see
        :class:`MethodSpec`), e.g. ``"newton"``, ``"influence:params=last"``.
    baselines : tuple of str
        Baselines of experiment 2: ``"finetune"``, ``"retrain"``, ``"gradient_ascent"``,
        ``"sisa"``.
    params, curvature, damping, steps, solver
        Defaults of :func:`mlu.unlearn` for every method (a method spec may override
        them). ``curvature="ggn"``: the exact Hessian of a ReLU net trained on noisy labels is
        far from positive definite (eigenvalues down to about -1 on the retained set).
        The defaults are :data:`mlu.defaults.DEFAULTS` (GGN, damping 0.01, one truncated Newton
        step and a short SGD polish), the measured best of studies/default_unlearning/; the
        experiment driver, the CLI and :func:`mlu.unlearn` share them.
    finetune_epochs : int
        Epochs of the fine-tune-on-retained baseline.
    sisa_shards, sisa_slices : int
        SISA's partition.
    pipelines : tuple of str
        Pipelines of experiment 3 as ``"detector/threshold/method"``; the first is *the*
        pipeline the summary judges.
    histogram_ratios : tuple of float
        Flip ratios whose score histograms are drawn (first seed).
    out : str
        Output directory.
    """

    datasets: tuple[str, ...] = ("fashion-mnist",)
    classes: tuple[int | str, ...] | None = (0, 1)
    n_per_class: int | None = 1000
    data_seed: int = 0
    data_root: str | None = None
    data_label: str | None = None
    hidden: tuple[int, ...] = (50,)
    activation: str = "relu"
    l2: float = 0.0
    epochs: int = 20
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 32
    ratios: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
    noise_mode: str = "random"
    seeds: tuple[int, ...] = (0, 1, 2)
    detectors: tuple[str, ...] = DETECTORS
    top_fraction: float = 0.1
    detector_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: tuple[str, ...] = ("influence", "influence:params=last", "newton")
    baselines: tuple[str, ...] = BASELINES
    params: str = "all"
    curvature: str = DEFAULT_CURVATURE
    damping: float = DEFAULT_DAMPING
    steps: int = DEFAULT_STEPS
    solver: str = "auto"
    finetune_epochs: int = 5
    sisa_shards: int = 5
    sisa_slices: int = 3
    pipelines: tuple[str, ...] = (
        DEFAULT_PIPELINE,
        "aum/zero/finetune",
        "aum/auto/newton",
        "early_loss/auto/newton",
        PAPER_PIPELINE,
    )
    histogram_ratios: tuple[float, ...] = (0.1, 0.3, 0.5)
    out: str = "mlu-results"

    def __post_init__(self) -> None:
        self.normalize()

    # -- validation ------------------------------------------------------------------
    def normalize(self) -> ExperimentConfig:
        """Coerce lists to tuples, check every value; returns self.

        Raises
        ------
        ValueError
            A value is out of range or names an unknown detector/method.
        """
        self.datasets = _tuple(self.datasets, str)
        if not self.datasets:
            raise ValueError("datasets is empty")
        if self.classes is not None:
            self.classes = _tuple(self.classes, _class_id)
        self.hidden = _tuple(self.hidden, int)
        self.ratios = tuple(parse_ratio(r) for r in _tuple(self.ratios))
        self.histogram_ratios = tuple(parse_ratio(r) for r in _tuple(self.histogram_ratios))
        self.seeds = _tuple(self.seeds, int)
        self.detectors = _tuple(self.detectors, str)
        self.methods = tuple(MethodSpec.parse(m).label for m in _tuple(self.methods))
        self.baselines = tuple(MethodSpec.parse(b).label for b in _tuple(self.baselines))
        self.pipelines = tuple(PipelineSpec.parse(p).label for p in _tuple(self.pipelines))
        if not self.ratios or not self.seeds:
            raise ValueError("ratios and seeds must not be empty")
        if len(set(self.ratios)) != len(self.ratios) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("ratios and seeds must not repeat")
        for d in self.detectors:
            if d not in DETECTORS:
                raise ValueError(f"unknown detector {d!r}; choose from {', '.join(DETECTORS)}")
        for m in self.methods:
            if MethodSpec.parse(m).name not in UNLEARN_METHODS:
                raise ValueError(
                    f"{m!r} is a baseline, not an unlearning method: list it in baselines"
                )
        for b in self.baselines:
            if MethodSpec.parse(b).name not in BASELINES:
                raise ValueError(f"{b!r} is not a baseline ({', '.join(BASELINES)})")
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        if not 0.0 < float(self.top_fraction) <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if self.n_per_class is not None and int(self.n_per_class) < 1:
            raise ValueError(f"n_per_class must be >= 1 or None, got {self.n_per_class}")
        for name in ("epochs", "batch_size", "steps", "sisa_shards", "sisa_slices"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.finetune_epochs) < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if not isinstance(self.detector_options, Mapping):
            raise ValueError("detector_options must map a detector name to a dict of options")
        for d, opts in self.detector_options.items():
            if d not in DETECTORS or not isinstance(opts, Mapping):
                raise ValueError(f"detector_options: bad entry {d!r}: {opts!r}")
        self.detector_options = {d: dict(o) for d, o in self.detector_options.items()}
        return self

    # -- conversion ------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Build from a mapping with the field names as keys (``dataset`` = ``datasets``).

        Raises
        ------
        ValueError
            An unknown key (the message lists the valid ones) or a bad value.
        """
        data = dict(data)
        if "dataset" in data:
            if "datasets" in data:
                raise ValueError("give either 'dataset' or 'datasets', not both")
            data["datasets"] = data.pop("dataset")
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"unknown config key(s) {', '.join(unknown)}; valid keys: "
                f"{', '.join(cls.field_names())}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        return json.loads(json.dumps(out))

    def replace(self, **changes) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)

    # -- derived ---------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Hash of the settings that shape one cell's results.

        Leaves out what only selects *which* cells run (datasets, ratios, seeds) or where and
        how results are shown, so extending a sweep reuses the cells already computed.
        """
        d = self.to_dict()
        for key in ("datasets", "ratios", "seeds", "histogram_ratios", "out"):
            d.pop(key)
        d["cell_format"] = CELL_FORMAT
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def model_params(self, seed: int) -> dict[str, Any]:
        return dict(
            hidden=self.hidden,
            activation=self.activation,
            l2=float(self.l2),
            epochs=int(self.epochs),
            lr=float(self.lr),
            momentum=float(self.momentum),
            batch_size=int(self.batch_size),
            seed=int(seed),
        )

    def unlearn_options(self, spec: MethodSpec) -> dict[str, Any]:
        """Keyword arguments for :func:`mlu.unlearn` (config defaults + the spec's)."""
        opts: dict[str, Any] = dict(
            params=self.params,
            curvature=self.curvature,
            damping=float(self.damping),
        )
        if spec.name == "newton":  # the influence update is a single step by definition
            opts["steps"] = int(self.steps)
        if self.solver != "auto":
            opts["solver"] = self.solver
        opts.update(dict(spec.options))
        return opts


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``) config file into a dict.

    Raises
    ------
    ValueError
        Unsupported extension or a top level that is not a table/object.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib
        data = tomllib.loads(text)
    elif path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file must end in .json or .toml, got {path.name!r}")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be an object/table of settings")
    return data


# --------------------------------------------------------------------------- files
