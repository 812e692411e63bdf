"""Experiment driver: the paper's three experiments over flip ratios × seeds, resumable.

One *cell* is one ``(dataset, flip ratio, seed)``: a model is trained on the noisy labels and
all three experiments run on it, since they share that model:

1. **detection** — every detector scores the training set; ROC-AUC, AP and the thresholded
   metrics against the truly flipped samples, at the top ``top_fraction`` (the paper's 10%),
   at the automatic threshold of :func:`mlu.detect.select` (a Gaussian mixture) and, for the
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
the GGN, damping 0.1 and two steps is the unlearning (see :class:`ExperimentConfig`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_write_text

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

DETECTORS = ("loss", "margin", "aum", "early_loss", "self_influence", "confident_learning")
UNLEARN_METHODS = ("influence", "newton")
BASELINES = ("finetune", "retrain", "gradient_ascent", "sisa")
THRESHOLD_KINDS = ("top", "auto", "zero", "oracle")
#: Detectors whose scores are negated margins: 0 is their natural decision boundary.
ZERO_DETECTORS = ("margin", "aum")
NOISE_MODES = ("random", "per_class")

#: The pipeline we recommend: AUM scores, flag every sample whose mean margin over training
#: is negative, Newton unlearning (GGN, damping 0.1, two steps; see ExperimentConfig).
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
    (the top N percent), ``"auto"`` (:func:`mlu.detect.select` with ``method="auto"``: a
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
        _check_threshold(threshold, 0.1)
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
    return f"top {_check_threshold(kind, top_fraction):.0%}"


def _check_threshold(kind: str, top_fraction: float) -> float | None:
    """The top fraction a threshold names (None for 'auto', 'zero' and 'oracle')."""
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
        :func:`mlu.userdata.load_data` reads: ``.npz``, ``.csv``, ``.parquet``, IDX; it is split
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
        Per-detector keyword arguments for :func:`mlu.detect.detect`, e.g.
        ``{"early_loss": {"epoch": 2}}``.
    methods : tuple of str
        Influence-based unlearning methods of experiment 2 (method specs, see
        :class:`MethodSpec`), e.g. ``"newton"``, ``"influence:params=last"``.
    baselines : tuple of str
        Baselines of experiment 2: ``"finetune"``, ``"retrain"``, ``"gradient_ascent"``,
        ``"sisa"``.
    params, curvature, damping, steps, solver
        Defaults of :func:`mlu.unlearn.unlearn` for every method (a method spec may override
        them). ``curvature="ggn"``: the exact Hessian of a ReLU net trained on noisy labels is
        far from positive definite (eigenvalues down to about -1 on the retained set).
        ``damping=0.1`` rather than the library's 0.01: at high noise one undamped-enough
        Newton step can overshoot (Fashion-MNIST 0/1, r = 40%, seed 2: test accuracy 75.8%
        with 0.01, 94.4% with 0.1, noisy model 81.3%) while at low noise 0.1 costs nothing
        measurable. ``steps=2``: the second step comes with a backtracking line search on the
        retained objective, which tames the same overshoot (oracle forget set, same case: one
        step 86.6%, two steps 97.6%) at twice the (sub-second) cost.
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
    curvature: str = "ggn"
    damping: float = 0.1
    steps: int = 2
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
        """Keyword arguments for :func:`mlu.unlearn.unlearn` (config defaults + the spec's)."""
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
        try:
            import tomllib
        except ModuleNotFoundError:  # Python < 3.11
            import tomli as tomllib  # type: ignore[no-redef]
        data = tomllib.loads(text)
    elif path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file must end in .json or .toml, got {path.name!r}")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be an object/table of settings")
    return data


# --------------------------------------------------------------------------- files


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _sanitize(obj):
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    text = json.dumps(_sanitize(json.loads(json.dumps(data, default=_json_default))), indent=1)
    atomic_write_text(path, text + "\n")


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write rows (dicts) as CSV with the union of their keys, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def _csv_value(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def versions() -> dict[str, str]:
    """Versions of mlu, Python, NumPy, the platform (and torch if importable)."""
    import mlu

    out = {
        "mlu": getattr(mlu, "__version__", "unknown"),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    for mod in ("scipy", "sklearn", "cleanlab", "matplotlib"):
        with contextlib.suppress(Exception):
            out[mod] = __import__(mod).__version__
    try:
        import torch

        out["torch"] = torch.__version__
    except Exception:  # not installed, or broken: either way not part of the run
        out["torch"] = None
    with contextlib.suppress(Exception):
        out["threads"] = str(mlu.get_num_threads())
    return out


def _cell_name(dataset: str, ratio: float, seed: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset)
    return f"{safe}_r{ratio * 100:g}_s{seed}"


class CellStore:
    """One JSON file per finished cell in a directory; written atomically.

    Parameters
    ----------
    root : path
        The ``cells`` directory (created on the first save).
    fingerprint : str
        The configuration's :meth:`ExperimentConfig.fingerprint`; a stored cell with another
        fingerprint counts as missing.
    """

    def __init__(self, root: str | os.PathLike, fingerprint: str):
        self.root = Path(root)
        self.fingerprint = fingerprint

    def path(self, dataset: str, ratio: float, seed: int) -> Path:
        return self.root / f"{_cell_name(dataset, ratio, seed)}.json"

    def load(self, dataset: str, ratio: float, seed: int) -> dict | None:
        """The stored cell, or None if absent, unreadable or computed with other settings."""
        p = self.path(dataset, ratio, seed)
        try:
            cell = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if cell.get("fingerprint") != self.fingerprint:
            return None
        return cell

    def save(self, cell: dict) -> Path:
        p = self.path(cell["dataset"], cell["ratio"], cell["seed"])
        atomic_write_json(p, {**cell, "fingerprint": self.fingerprint})
        return p


# --------------------------------------------------------------------------- data


def load_dataset(cfg: ExperimentConfig, name: str):
    """Load ``name`` with the config's classes, capping ``n_per_class`` at what exists."""
    from . import datasets, userdata

    if userdata.is_data_file(name):
        data = userdata.load_data(name, label=cfg.data_label)
        return userdata.to_dataset(
            data, classes=cfg.classes, n_per_class=cfg.n_per_class, seed=cfg.data_seed
        )
    kwargs = dict(classes=cfg.classes, seed=cfg.data_seed)
    if cfg.data_root is not None and name != "digits":
        kwargs["root"] = cfg.data_root
    n = cfg.n_per_class
    if n is not None:
        full = datasets.load(name, **kwargs)
        smallest = int(np.bincount(full.y_train, minlength=full.n_classes).min())
        if n >= smallest:
            # digits 0/1 has ~135 training samples per class, not the paper's 1000.
            return full
        return datasets.load(name, n_per_class=int(n), **kwargs)
    return datasets.load(name, **kwargs)


# --------------------------------------------------------------------------- one cell


def _module(name: str):
    """``mlu.<name>`` as a module: ``mlu.detect`` and ``mlu.unlearn`` name functions."""
    import importlib

    return importlib.import_module(f"mlu.{name}")


def _accuracy(model, X, y) -> float:
    return float(np.mean(model.predict(X) == y)) if len(y) else float("nan")


def _per_class(model, X, y, class_names: Sequence[str]) -> dict[str, float]:
    """Test accuracy per class (keyed by class name) and the mean test cross-entropy.

    The loss shows a model's improvement even where accuracy saturates (digits 0 vs 1).
    """
    P = model.predict_proba(X)
    pred = np.argmax(P, axis=1)
    out = {}
    for c, name in enumerate(class_names):
        m = y == c
        out[f"test_acc_{name}"] = float(np.mean(pred[m] == c)) if m.any() else float("nan")
    out["test_loss"] = float(-np.mean(np.log(np.maximum(P[np.arange(len(y)), y], 1e-300))))
    return out


def _flatten(prefix: str, obj, out: dict) -> None:
    """Scalars of a (nested) dict into ``out`` as ``prefix_key``; arrays and the rest dropped."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _flatten(f"{prefix}_{k}" if prefix else str(k), v, out)
    elif isinstance(obj, (bool, np.bool_)):
        out[prefix] = bool(obj)
    elif isinstance(obj, (int, float, np.integer, np.floating)):
        out[prefix] = float(obj) if isinstance(obj, (float, np.floating)) else int(obj)
    elif isinstance(obj, str):
        out[prefix] = obj
    elif isinstance(obj, (tuple, list)) and all(isinstance(v, str) for v in obj):
        if obj:  # e.g. the solver's notes
            out[prefix] = "; ".join(obj)


def _result_diagnostics(result) -> dict[str, Any]:
    """Solver diagnostics of an UnlearningResult (whatever scalars it carries)."""
    out: dict[str, Any] = {}
    if dataclasses.is_dataclass(result):
        items = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    else:
        items = dict(getattr(result, "__dict__", {}))
    for key, value in items.items():
        if key in ("model", "time"):
            continue
        _flatten(key, value, out)
    return out


@dataclass
class _Context:
    """What every method of one cell needs."""

    cfg: ExperimentConfig
    ds: Any
    dataset: str
    ratio: float
    seed: int
    y: np.ndarray  # noisy labels
    flipped: np.ndarray  # bool mask of truly flipped samples
    model: Any  # trained on the noisy labels
    status: Callable[[str], None]


def _evaluate(
    ctx: _Context,
    model,
    forget: np.ndarray,
    reference=None,
    unlearn_time: float | None = None,
    reference_time: float | None = None,
) -> dict[str, Any]:
    """Test accuracy (mean and per class), forget/retain accuracy, MIA AUC, agreement."""
    ds = ctx.ds
    row: dict[str, Any] = {
        "test_acc": _accuracy(model, ds.X_test, ds.y_test),
        **_per_class(model, ds.X_test, ds.y_test, ds.class_names),
    }
    if not forget.any():
        return row
    metrics = _module("metrics.unlearning")
    try:
        extra = metrics.evaluate_unlearning(
            model,
            ds.X_train,
            ctx.y,
            forget,
            ds.X_test,
            ds.y_test,
            y_true=ds.y_train,
            reference=reference,
            unlearn_time=unlearn_time,
            reference_time=reference_time,
        )
    except Exception as exc:  # a metric failing must not lose the cell's other results
        warnings.warn(f"evaluate_unlearning failed: {exc!r}", stacklevel=2)
        extra = {}
    # Per-class accuracy is already there, keyed by class name.
    extra = {k: v for k, v in extra.items() if k not in row and not k.startswith("test_acc_")}
    flat: dict[str, Any] = {}
    _flatten("", extra, flat)
    row.update(flat)
    return row


def _unlearn(ctx: _Context, spec: MethodSpec, forget: np.ndarray, X=None, y=None):
    """Run one unlearning method or baseline; returns (model, seconds, diagnostics)."""
    cfg = ctx.cfg
    X = ctx.ds.X_train if X is None else X
    y = ctx.y if y is None else y
    if not forget.any():
        return ctx.model, 0.0, {"note": "nothing to forget"}
    opts = dict(spec.options)
    if spec.name in UNLEARN_METHODS:
        unlearn = _module("unlearn")
        result = unlearn.unlearn(
            ctx.model, X, y, forget, method=spec.name, **cfg.unlearn_options(spec)
        )
        return result.model, float(result.time), _result_diagnostics(result)
    if spec.name == "sisa":
        sisa = _module("sisa")
        from .model import MLP

        t0 = time.perf_counter()
        ens = sisa.SISA(
            MLP(**cfg.model_params(ctx.seed)),
            n_shards=int(opts.pop("n_shards", cfg.sisa_shards)),
            n_slices=int(opts.pop("n_slices", cfg.sisa_slices)),
            seed=ctx.seed,
            **opts,
        )
        ens.fit(X, y)
        fit_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        ens.unlearn(np.flatnonzero(forget))
        secs = time.perf_counter() - t0
        return (
            ens,
            secs,
            {
                "fit_time": fit_time,
                "retrained_slices": int(getattr(ens, "last_retrained_slices_", -1)),
            },
        )
    baselines = _module("baselines")
    if spec.name == "finetune":
        opts.setdefault("epochs", cfg.finetune_epochs)
    fn = getattr(baselines, spec.name)
    result = fn(ctx.model, X, y, forget, **opts)
    return result.model, float(result.time), _result_diagnostics(result)


def _select(ctx: _Context, scores: np.ndarray, kind: str) -> tuple[np.ndarray, str]:
    """Flag samples by the threshold ``kind``; returns (mask, warning text or "")."""
    detect = _module("detect")
    top = _check_threshold(kind, ctx.cfg.top_fraction)
    if top is not None:
        return detect.select(scores, fraction=top), ""
    if kind == "oracle":
        return detect.select(scores, count=int(ctx.flipped.sum())), ""
    if kind == "zero":
        return detect.select(scores, threshold=0.0), ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = detect.select(scores, method="auto", seed=ctx.seed)
    # An unreliable noise-rate estimate is a result to record, not a warning to print.
    return mask, "; ".join(str(w.message) for w in caught)


def _threshold_value(scores: np.ndarray, flagged: np.ndarray) -> float | None:
    """The score at which flagging starts (lowest flagged score), None if none flagged."""
    return float(scores[flagged].min()) if flagged.any() else None


def _detect_scores(ctx: _Context, detector: str, cache: dict) -> tuple[np.ndarray, float]:
    if detector not in cache:
        detect = _module("detect")
        opts = dict(ctx.cfg.detector_options.get(detector, {}))
        if detector == "confident_learning":
            opts.setdefault("seed", ctx.seed)
        t0 = time.perf_counter()
        scores = np.asarray(
            detect.detect(ctx.model, ctx.ds.X_train, ctx.y, method=detector, **opts)
        )
        cache[detector] = (scores, time.perf_counter() - t0)
    return cache[detector]


def _detection_metrics(scores, flagged, true_mask) -> dict[str, Any]:
    dm = _module("metrics.detection")
    if true_mask.all() or not true_mask.any():
        # AUC is undefined with one class; keep the thresholded counts only.
        return {"n_flagged": int(flagged.sum())}
    rep = dm.detection_report(scores, flagged, true_mask)
    out: dict[str, Any] = {"n_flagged": int(flagged.sum())}
    _flatten("", dict(rep), out)
    return out


def run_cell(
    cfg: ExperimentConfig,
    ds,
    dataset: str,
    ratio: float,
    seed: int,
    status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the three experiments on one ``(dataset, ratio, seed)``.

    Parameters
    ----------
    cfg : ExperimentConfig
    ds : mlu.datasets.Dataset
        The loaded data set (see :func:`load_dataset`).
    dataset : str
        Its name (the cell key).
    ratio : float
        Flip ratio r.
    seed : int
        Seed of the flips and of the model.
    status : callable, optional
        Called with a short stage name as the cell progresses (progress bars).

    Returns
    -------
    dict
        JSON-ready: ``detection``, ``unlearning`` and ``pipeline`` (lists of row dicts), and
        ``scores`` (per detector, rounded) with ``flipped`` (indices) and ``thresholds`` for
        the histograms.
    """
    from . import noise
    from .model import MLP

    status = status or (lambda s: None)
    # Import up front so that no method's timing includes a first import.
    for name in (
        "detect",
        "unlearn",
        "baselines",
        "sisa",
        "metrics.detection",
        "metrics.unlearning",
    ):
        _module(name)
    t_cell = time.perf_counter()
    noisy = noise.flip_labels(
        ds.y_train, rate=ratio, seed=seed, mode=cfg.noise_mode, num_classes=ds.n_classes
    )
    y, flipped = noisy.labels, noisy.flipped
    classes = np.arange(ds.n_classes)
    status("train")
    t0 = time.perf_counter()
    model = MLP(track=True, **cfg.model_params(seed)).fit(ds.X_train, y, classes=classes)
    train_time = time.perf_counter() - t0
    ctx = _Context(cfg, ds, dataset, ratio, seed, y, flipped, model, status)
    base = {
        "dataset": dataset,
        "ratio": ratio,
        "seed": seed,
        "n_train": int(len(y)),
        "n_test": int(len(ds.y_test)),
        "n_flipped": int(flipped.sum()),
        "observed_ratio": float(noisy.rate),
    }

    # The clean reference: retrain on the truly clean data (the oracle's retained set).
    status("retrain on clean")
    clean_model, clean_time, _ = _unlearn(ctx, MethodSpec("retrain"), flipped)
    if clean_model is model and flipped.any():
        raise AssertionError("retrain returned the noisy model")
    if not flipped.any():
        clean_time = 0.0

    # ---- experiment 1: detection
    score_cache: dict[str, tuple[np.ndarray, float]] = {}
    detection_rows, thresholds = [], {}
    for det in cfg.detectors:
        status(f"detect {det}")
        scores, dt = _detect_scores(ctx, det, score_cache)
        thresholds[det] = {}
        kinds = ("top", "auto", "zero") if det in ZERO_DETECTORS else ("top", "auto")
        for kind in kinds:
            flagged, note = _select(ctx, scores, kind)
            thresholds[det][kind] = 0.0 if kind == "zero" else _threshold_value(scores, flagged)
            row = {
                **base,
                "detector": det,
                "threshold": kind,
                "flag_fraction": float(flagged.mean()),
                "detect_time": dt,
                **_detection_metrics(scores, flagged, flipped),
                "threshold_warning": note,
            }
            detection_rows.append(row)

    # ---- experiment 2: unlearning the known mislabeled samples
    unlearning_rows = []
    noisy_eval = _evaluate(ctx, model, flipped, reference=clean_model, reference_time=clean_time)
    unlearning_rows.append({**base, "method": ROLE_NOISY, "time": 0.0, **noisy_eval})
    for label in cfg.methods + cfg.baselines:
        spec = MethodSpec.parse(label)
        status(f"oracle {label}")
        if spec.name == "retrain" and not spec.options:
            new, secs, diag = clean_model, clean_time, {}
        else:
            new, secs, diag = _unlearn(ctx, spec, flipped)
        row = {**base, "method": label, "time": secs}
        row.update(
            _evaluate(
                ctx,
                new,
                flipped,
                reference=clean_model,
                unlearn_time=secs,
                reference_time=clean_time,
            )
        )
        row.update({f"diag_{k}": v for k, v in diag.items()})
        unlearning_rows.append(row)

    # ---- experiment 3: the pipeline
    pipeline_rows = []
    common = {**base, "pipeline": "", "detector": "", "threshold": "", "method": ""}
    pipeline_rows.append(
        {
            **common,
            "role": ROLE_NOISY,
            "time": 0.0,
            "test_acc": noisy_eval["test_acc"],
            **_per_class(model, ds.X_test, ds.y_test, ds.class_names),
        }
    )
    pipeline_rows.append(
        {
            **common,
            "role": ROLE_CLEAN,
            "method": "retrain",
            "time": clean_time,
            "test_acc": _accuracy(clean_model, ds.X_test, ds.y_test),
            **_per_class(clean_model, ds.X_test, ds.y_test, ds.class_names),
        }
    )
    kept_done: set[tuple[str, str]] = set()
    for label in cfg.pipelines:
        spec = PipelineSpec.parse(label)
        status(f"pipeline {label}")
        scores, dt = _detect_scores(ctx, spec.detector, score_cache)
        flagged, note = _select(ctx, scores, spec.threshold)
        tp = int((flagged & flipped).sum())
        info = {
            **base,
            "pipeline": label,
            "detector": spec.detector,
            "threshold": spec.threshold,
            "n_flagged": int(flagged.sum()),
            "true_positives": tp,
            "precision": tp / flagged.sum() if flagged.any() else float("nan"),
            "recall": tp / flipped.sum() if flipped.any() else float("nan"),
            "detect_time": dt,
            "threshold_warning": note,
        }
        new, secs, diag = _unlearn(ctx, spec.method, flagged)
        pipeline_rows.append(
            {
                **info,
                "role": ROLE_PIPELINE,
                "method": spec.method.label,
                "unlearn_time": secs,
                "time": dt + secs,
                "test_acc": _accuracy(new, ds.X_test, ds.y_test),
                **_per_class(new, ds.X_test, ds.y_test, ds.class_names),
                **{f"diag_{k}": v for k, v in diag.items()},
            }
        )
        if (spec.detector, spec.threshold) not in kept_done:
            kept_done.add((spec.detector, spec.threshold))
            kept, secs, _ = _unlearn(ctx, MethodSpec("retrain"), flagged)
            pipeline_rows.append(
                {
                    **info,
                    "pipeline": f"{spec.detector}/{spec.threshold}/retrain",
                    "role": ROLE_KEPT,
                    "method": "retrain",
                    "unlearn_time": secs,
                    "time": dt + secs,
                    "test_acc": _accuracy(kept, ds.X_test, ds.y_test),
                    **_per_class(kept, ds.X_test, ds.y_test, ds.class_names),
                }
            )

    return {
        "format": CELL_FORMAT,
        "dataset": dataset,
        "ratio": ratio,
        "seed": seed,
        "train_time": train_time,
        "cell_time": time.perf_counter() - t_cell,
        "detection": detection_rows,
        "unlearning": unlearning_rows,
        "pipeline": pipeline_rows,
        "flipped": np.flatnonzero(flipped).tolist(),
        "scores": {d: [float(f"{v:.5g}") for v in s] for d, (s, _) in score_cache.items()},
        "thresholds": thresholds,
    }


# --------------------------------------------------------------------------- the sweep


@dataclass
class RunResult:
    """What :func:`run_experiments` produced.

    Attributes
    ----------
    out : Path
        The output directory.
    detection, unlearning, pipeline : list of dict
        The rows of the three CSVs.
    cells : list of dict
        Every cell of the sweep (loaded or computed).
    computed, reused : int
        How many cells were computed in this run and how many were loaded from the store.
    files : dict of str -> Path
        The files written.
    wall_time : float
        Seconds this call took.
    """

    out: Path
    detection: list[dict]
    unlearning: list[dict]
    pipeline: list[dict]
    cells: list[dict]
    computed: int
    reused: int
    files: dict[str, Path]
    wall_time: float


def _sweep(cfg: ExperimentConfig) -> list[tuple[str, float, int]]:
    return [(d, r, s) for d in cfg.datasets for r in cfg.ratios for s in cfg.seeds]


def run_experiments(
    cfg: ExperimentConfig,
    progress: bool = True,
    on_cell: Callable[[dict], None] | None = None,
    plots: bool = True,
    log: Callable[[str], None] | None = None,
    resume: bool = True,
) -> RunResult:
    """Run (or resume) the sweep of ``cfg`` and write every output into ``cfg.out``.

    Parameters
    ----------
    cfg : ExperimentConfig
    progress : bool
        Show a tqdm progress bar over the cells.
    on_cell : callable, optional
        Called with each cell *computed* in this run (not with reused ones), after it is
        stored.
    plots : bool
        Draw the PNG plots (matplotlib).
    log : callable, optional
        Receives one-line messages (default: silent).
    resume : bool
        Reuse the finished cells in ``<out>/cells`` (False recomputes and overwrites them).

    Returns
    -------
    RunResult
    """
    t_start = time.perf_counter()
    log = log or (lambda s: None)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    store = CellStore(out / "cells", cfg.fingerprint())
    sweep = _sweep(cfg)
    cells: dict[tuple[str, float, int], dict] = {}
    todo = []
    for key in sweep:
        cell = store.load(*key) if resume else None
        if cell is None:
            todo.append(key)
        else:
            cells[key] = cell
    reused = len(cells)
    if reused:
        log(f"resuming: {reused} of {len(sweep)} cells already done in {store.root}")
    write_config(cfg, out, started=True)

    datasets_cache: dict[str, Any] = {}
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(sweep), initial=reused, unit="cell", desc="mlu run", leave=True)
    computed = 0
    try:
        for key in todo:
            dataset, ratio, seed = key
            if dataset not in datasets_cache:
                if bar is not None:
                    bar.set_postfix_str(f"loading {dataset}")
                datasets_cache[dataset] = load_dataset(cfg, dataset)
            prefix = f"{dataset} r={ratio:.0%} s={seed}"

            def status(stage: str, prefix=prefix) -> None:
                if bar is not None:
                    bar.set_postfix_str(f"{prefix}: {stage}", refresh=True)

            cell = run_cell(cfg, datasets_cache[dataset], dataset, ratio, seed, status=status)
            store.save(cell)
            cells[key] = cell
            computed += 1
            if on_cell is not None:
                on_cell(cell)
            if bar is not None:
                bar.update(1)
            # Keep the CSVs current so an interrupted sweep still leaves usable tables.
            _write_tables(out, [cells[k] for k in sweep if k in cells])
    finally:
        if bar is not None:
            bar.close()

    ordered = [cells[k] for k in sweep]
    files = write_outputs(cfg, ordered, plots=plots, wall_time=time.perf_counter() - t_start)
    det, unl, pipe = _rows(ordered)
    return RunResult(
        out=out,
        detection=det,
        unlearning=unl,
        pipeline=pipe,
        cells=ordered,
        computed=computed,
        reused=reused,
        files=files,
        wall_time=time.perf_counter() - t_start,
    )


def _rows(cells: Iterable[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    det, unl, pipe = [], [], []
    for c in cells:
        det += c["detection"]
        unl += c["unlearning"]
        pipe += c["pipeline"]
    return det, unl, pipe


def _write_tables(out: Path, cells: list[dict]) -> dict[str, Path]:
    det, unl, pipe = _rows(cells)
    files = {
        "detection_csv": out / "detection.csv",
        "unlearning_csv": out / "unlearning.csv",
        "pipeline_csv": out / "pipeline.csv",
    }
    write_csv(files["detection_csv"], det)
    write_csv(files["unlearning_csv"], unl)
    write_csv(files["pipeline_csv"], pipe)
    return files


def write_config(cfg: ExperimentConfig, out: Path, started: bool = False, **extra: Any) -> Path:
    """``config.json``: the full configuration, its fingerprint and the versions."""
    path = out / "config.json"
    data = {
        "config": cfg.to_dict(),
        "fingerprint": cfg.fingerprint(),
        "versions": versions(),
        "command": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    if started:
        data["status"] = "running"
    atomic_write_json(path, data)
    return path


def write_outputs(
    cfg: ExperimentConfig, cells: list[dict], plots: bool = True, wall_time: float | None = None
) -> dict[str, Path]:
    """Write the CSVs, ``config.json``, the plots and ``summary.md`` from finished cells."""
    from . import report

    out = Path(cfg.out)
    files = _write_tables(out, cells)
    det, unl, pipe = _rows(cells)
    compute = sum(float(c.get("cell_time", 0.0)) for c in cells)
    files["config_json"] = write_config(
        cfg,
        out,
        status="done",
        wall_time=wall_time,
        cell_compute_time=compute,
        n_cells=len(cells),
    )
    if plots:
        from . import plots as plotting

        files.update(plotting.plot_all(cfg, cells, det, unl, pipe, out / "plots"))
    files["summary_md"] = out / "summary.md"
    atomic_write_text(files["summary_md"], report.summary(cfg, det, unl, pipe, wall_time))
    return files


def load_cells(cfg: ExperimentConfig) -> list[dict]:
    """The stored cells of ``cfg``'s sweep (missing ones skipped)."""
    store = CellStore(Path(cfg.out) / "cells", cfg.fingerprint())
    return [c for key in _sweep(cfg) if (c := store.load(*key)) is not None]


# --------------------------------------------------------------------------- the demo


def run_demo(
    out: str | os.PathLike = "mlu-demo",
    ratio: float | str = 0.2,
    seed: int = 0,
    dataset: str = "digits",
    classes: Sequence[int | str] | None = (0, 1),
    detector: str | None = None,
    epochs: int | None = None,
    hidden: Sequence[int] | None = None,
    print_fn: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Flip labels, train, detect, unlearn, and compare; print a table and write plots.

    One cell of the sweep with the default pipeline (and the paper's, for contrast), on the
    bundled digits 0 vs 1 by default: no files, no network, a few seconds.

    Parameters
    ----------
    out : path
        Output directory: ``demo.png`` (score histogram + accuracies), the usual CSVs,
        plots and ``summary.md``.
    ratio : float or str
        Flip ratio (``0.2`` or ``"20%"``).
    seed : int
    dataset, classes : the data (default digits 0 vs 1)
    detector : str, optional
        Detector of the pipeline (default: that of the default pipeline).
    epochs, hidden : optional overrides of the paper's training settings.
    print_fn : callable or None
        Where the table goes (None: silent).

    Returns
    -------
    dict
        ``table`` (list of (label, test accuracy, test loss, seconds)), ``detection`` (the pipeline
        detector's row at the automatic threshold), ``cell``, ``files`` and ``wall_time``.
    """
    t0 = time.perf_counter()
    default = ExperimentConfig()
    main = PipelineSpec.parse(default.pipelines[0])
    if detector is not None:
        main = PipelineSpec(detector, main.threshold, main.method)
    paper = PipelineSpec.parse(PAPER_PIPELINE)
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["epochs"] = epochs
    if hidden is not None:
        changes["hidden"] = tuple(hidden)
    r = parse_ratio(ratio)
    cfg = ExperimentConfig(
        datasets=(dataset,),
        classes=classes,
        n_per_class=None if dataset == "digits" else default.n_per_class,
        ratios=(r,),
        seeds=(int(seed),),
        detectors=tuple(_ordered_unique([main.detector, paper.detector])),
        methods=(main.method.label,),
        baselines=("retrain",),
        pipelines=(main.label, paper.label),
        histogram_ratios=(r,),
        out=str(out),
        **changes,
    )
    result = run_experiments(cfg, progress=False, plots=True, resume=False)
    cell = result.cells[0]
    pipe = {(row["role"], row["pipeline"]): row for row in cell["pipeline"]}
    noisy = pipe[(ROLE_NOISY, "")]
    clean = pipe[(ROLE_CLEAN, "")]
    mine = pipe[(ROLE_PIPELINE, main.label)]
    kept = pipe[(ROLE_KEPT, f"{main.detector}/{main.threshold}/retrain")]
    theirs = pipe[(ROLE_PIPELINE, paper.label)]
    table = [
        ("noisy model (trained on the flipped labels)", noisy, cell["train_time"]),
        (
            f"pipeline: detect ({main.detector}) + unlearn ({main.method.name})",
            mine,
            mine["time"],
        ),
        ("retrain on what the detector kept", kept, kept["unlearn_time"]),
        ("retrain on the truly clean data (oracle)", clean, clean["time"]),
        (
            f"paper's pipeline: {paper.detector}, top {cfg.top_fraction:.0%}, {paper.method.name}",
            theirs,
            theirs["time"],
        ),
    ]
    det_row = next(
        row
        for row in cell["detection"]
        if row["detector"] == main.detector and row["threshold"] == main.threshold
    )
    from . import plots

    bars = [
        (name, row["test_acc"], row["test_loss"])
        for name, row in (
            ("noisy", noisy),
            ("pipeline", mine),
            ("retrain on kept", kept),
            ("retrain on clean", clean),
            ("paper's pipeline", theirs),
        )
    ]
    files = dict(result.files)
    files["demo_png"] = plots.plot_demo(
        cell, main.detector, bars, Path(out) / "demo.png", cfg.top_fraction
    )
    wall = time.perf_counter() - t0
    if print_fn is not None:
        n_train = det_row["n_train"]
        lines = [
            f"mlu demo: {dataset} {' vs '.join(map(str, classes or ['all']))}, {n_train} "
            f"training samples, {cell['detection'][0]['n_flipped']} labels flipped "
            f"(r = {r:.0%}, seed {seed}); test set {_n_test(result)} samples",
            f"detection: {main.detector} scores, "
            f"{describe_threshold(main.threshold, cfg.top_fraction)}: ROC-AUC "
            f"{det_row.get('roc_auc', float('nan')):.3f}, flagged {int(det_row['n_flagged'])} "
            f"(precision {det_row.get('precision', float('nan')):.1%}, recall "
            f"{det_row.get('recall', float('nan')):.1%})",
            "",
            f"{'model':<48} {'test acc':>9} {'test loss':>10} {'time':>9}",
        ]
        for label, row, secs in table:
            lines.append(
                f"{label:<48} {100 * row['test_acc']:>8.1f}% {row['test_loss']:>10.4f} "
                f"{secs:>8.3f}s"
            )
        lines.append(
            f"(paper's pipeline: {paper.label}; time = training, or detection + unlearning)"
        )
        lines += [
            "",
            f"plots and tables in {Path(out)}/ (figure: {files['demo_png']}); done in {wall:.1f} s",
        ]
        print_fn("\n".join(lines))
    summary = [(label, row["test_acc"], row["test_loss"], secs) for label, row, secs in table]
    return {"table": summary, "detection": det_row, "cell": cell, "files": files, "wall_time": wall}


def _n_test(result: RunResult) -> str:
    row = result.unlearning[0] if result.unlearning else {}
    return str(row.get("n_test", "?"))


def _ordered_unique(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for i in items:
        if i not in out:
            out.append(i)
    return out
