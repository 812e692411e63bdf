"""Your own data and model, end to end: find the mislabeled samples and unlearn them.

:func:`clean` (and ``mlu clean DATA [--model MODEL] --out DIR``) holds out a seeded
validation split, scores the rest with a detector (:func:`mlu.detect`), flags suspects
(:func:`mlu.select`), removes their effect with :func:`mlu.unlearn` at its defaults
(:data:`mlu.defaults.DEFAULTS`), and compares the model before and after on the held-out split.

Without a model it trains one on the searched split with its features standardised inside the
model (``MLP(scale="standard")``, saved with it) and a per-epoch record (``track=True``), and
scores by the detector the pipeline measured best
(:data:`~mlu.detection.detect.DEFAULT_PIPELINE_DETECTOR`,
AUM, flagged where the mean margin is negative; docs/design.md, "Detection"). A model no better
than chance on the held-out split, or scores without spread, stop it with a
:class:`CannotCleanError` instead of a list of suspects.

The held-out split carries the same label noise as the data, so accuracy on all of it
understates a real gain (a model that now predicts a wrong label's true class is counted
wrong). The held-out samples are therefore scored too, by the same detector's statistic
averaged over the models before and after (so that the judgement favours neither), and both
models are also compared on the held-out samples whose labels the detector trusts
(:attr:`CleanResult.trusted_before` / ``trusted_after``; ``"trusted"`` in ``summary.json``).

With ``out`` it writes
``suspects.csv``, the fixed model (``model.npz``; ``model.pt`` too for a PyTorch input),
``report.md`` / ``report.html`` (with pictures of the suspects when the data are images) and
``summary.json`` into a new directory, all at once: on any error nothing is left behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.userdata import TorchSource, UserData, from_arrays, load_data, load_model
from ..detection.detect import DEFAULT_PIPELINE_DETECTOR, DEFAULT_PIPELINE_THRESHOLD, detect, select
from ..engine.model import MLP
from ..unlearning.unlearn import UnlearningResult, unlearn

__all__ = [
    "CannotCleanError",
    "CleanResult",
    "Evaluation",
    "clean",
    "holdout_split",
    "write_outputs",
]

_MIN_PER_SPLIT = 2  # samples per class wanted in each split before stratifying
# A model must beat the best constant guess on the held-out split by this many standard errors
# of a binomial proportion at the guess's accuracy before its suspects are worth reporting.
_CHANCE_SIGMAS = 2.0
# Scores whose range is below this fraction of their magnitude have no spread (all equal).
_SPREAD_RTOL = 1e-9
SCALE_CHOICES = ("standard", "minmax", "none")


class CannotCleanError(RuntimeError):
    """:func:`clean` stopped before listing suspects: the model or its scores cannot tell
    mislabeled samples apart (a model no better than chance, scores without spread). The
    message says what was measured and what to try."""


@dataclass(frozen=True)
class Evaluation:
    """One model on the held-out split (scored against its given labels).

    Attributes
    ----------
    accuracy : float
        NaN when no sample is scored.
    loss : float
        Mean cross-entropy.
    per_class : dict
        Accuracy on the held-out samples of each given class (label as str → float; NaN when
        the class has no held-out sample).
    n : int
        Number of samples scored.
    """

    accuracy: float
    loss: float
    per_class: dict[str, float]
    n: int = 0


@dataclass(frozen=True, repr=False)
class CleanResult:
    """What :func:`clean` found and did.

    Attributes
    ----------
    model : MLP
        The fixed model (the suspects unlearned); the input model is never modified.
    original : MLP
        The input model, or the one :func:`clean` trained when none was given.
    data : UserData
        The data as read (features, given labels, image shape).
    train_index, holdout_index : ndarray of int
        Indices into the data of the samples searched and of the held-out split.
    scores : ndarray, shape (len(train_index),)
        The detector's scores of the searched samples (higher = more suspect).
    threshold : float
        Scores strictly above it are flagged (NaN when nothing is flagged).
    suspects : ndarray of int
        Indices into the data of the flagged samples, most suspect first.
    suggested : ndarray, shape (len(suspects),)
        The fixed model's label for each suspect.
    suspect_scores : ndarray, shape (len(suspects),)
    before, after : Evaluation
        The original and the fixed model on the whole held-out split, against its given
        labels (some of which are wrong: this understates a real gain).
    holdout_scores : ndarray, shape (len(holdout_index),)
        The held-out samples' scores by the detector's statistic, averaged over the models
        before and after (higher = more suspect).
    trusted : ndarray of bool, shape (len(holdout_index),)
        The held-out samples whose given labels the detector trusts (not flagged).
    trusted_before, trusted_after : Evaluation
        The original and the fixed model on the trusted held-out samples only.
    unlearning : UnlearningResult or None
        The solve's diagnostics (None when nothing was flagged).
    detector : str
        The detector that scored the searched samples.
    trained : bool
        True when no model was given and :func:`clean` trained one.
    torch_source : TorchSource or None
        The PyTorch state dict's layout when the model came from one.
    notes : tuple of str
        What was decided on the user's behalf, warnings and fallbacks.
    precision, recall : float or None
        Of the suspects against the labels known to be wrong, when the data say so.
    seconds : dict
        Wall time of each step.
    """

    model: MLP
    original: MLP
    data: UserData
    train_index: np.ndarray
    holdout_index: np.ndarray
    scores: np.ndarray
    threshold: float
    suspects: np.ndarray
    suggested: np.ndarray
    suspect_scores: np.ndarray
    before: Evaluation
    after: Evaluation
    unlearning: UnlearningResult | None
    detector: str
    trained: bool
    torch_source: TorchSource | None
    notes: tuple[str, ...]
    precision: float | None
    recall: float | None
    holdout_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trusted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    trusted_before: Evaluation | None = None
    trusted_after: Evaluation | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cost_fraction(self) -> float | None:
        """The unlearning's wall time as a fraction of the model's training time (None when
        nothing was unlearned or the training time is unknown, e.g. a model from a file)."""
        return getattr(self.unlearning, "cost_fraction", None)

    def cost_text(self) -> str | None:
        """``"unlearning took 0.12 of this model's training time"`` (None when unknown)."""
        fraction = self.cost_fraction
        if fraction is None:
            return None
        if fraction < 1.0:
            return f"unlearning took {fraction:.2g} of this model's training time"
        return (
            f"unlearning took {fraction:.3g}× this model's training time (retraining it would "
            "have been cheaper)"
        )

    @property
    def class_names(self) -> list[str]:
        """The model's classes as strings, in output order."""
        return [str(c) for c in self.model.classes_]

    def suspects_table(self) -> list[dict[str, Any]]:
        """One row per suspect: index, given label, suggested label, score, rank (1 = top)."""
        return [
            {
                "index": int(i),
                "given": str(self.data.y[i]),
                "suggested": str(s),
                "score": float(sc),
                "rank": rank + 1,
            }
            for rank, (i, s, sc) in enumerate(
                zip(self.suspects, self.suggested, self.suspect_scores)
            )
        ]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``summary.json`` holds)."""
        u = self.unlearning
        return {
            "data": self.data.source,
            "n_samples": self.data.n,
            "n_features": int(self.data.X.shape[1]),
            "image_shape": list(self.data.image_shape) if self.data.image_shape else None,
            "classes": self.class_names,
            "n_searched": len(self.train_index),
            "n_holdout": len(self.holdout_index),
            "model": {
                "trained_here": self.trained,
                "sizes": list(self.model.sizes_),
                "activation": self.model.activation
                if isinstance(self.model.activation, str)
                else list(self.model.activation),
                "pytorch": self.torch_source is not None,
            },
            "detector": self.detector,
            "threshold": _finite_or_none(self.threshold),
            "n_suspects": len(self.suspects),
            "precision": self.precision,
            "recall": self.recall,
            "n_known_flipped": None
            if self.data.flipped is None
            else int(self.data.flipped[self.train_index].sum()),
            "before": _evaluation_dict(self.before),
            "after": _evaluation_dict(self.after),
            "trusted": None
            if self.trusted_before is None or self.trusted_after is None
            else {
                "n_holdout_trusted": int(self.trusted.sum()),
                "n_holdout_flagged": int((~self.trusted).sum()),
                "before": _evaluation_dict(self.trusted_before),
                "after": _evaluation_dict(self.trusted_after),
            },
            "cost_fraction": self.cost_fraction,
            "unlearning": None
            if u is None
            else {
                "method": u.method,
                "solver": u.solver,
                "params": u.params,
                "curvature": u.curvature,
                "damping": u.damping,
                "steps": u.steps,
                "iterations": u.iterations,
                "residual": u.residual,
                "min_eigenvalue": u.min_eigenvalue,
                "negative_curvature": u.negative_curvature,
                "n_forget": u.n_forget,
                "time": u.time,
                "notes": list(u.notes),
            },
            "notes": list(self.notes),
            "seconds": self.seconds,
        }

    def __repr__(self) -> str:
        return (
            f"CleanResult({len(self.suspects)} suspects of {len(self.train_index)} samples; "
            f"held-out accuracy {self.before.accuracy:.4f} -> {self.after.accuracy:.4f}, "
            f"loss {self.before.loss:.4f} -> {self.after.loss:.4f})"
        )


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _evaluation_dict(e: Evaluation) -> dict[str, Any]:
    return {
        "n": e.n,
        "accuracy": _finite_or_none(e.accuracy),
        "loss": e.loss,
        "per_class": {k: _finite_or_none(v) for k, v in e.per_class.items()},
    }


def holdout_split(y, holdout: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The split :func:`clean` makes: seeded, stratified when every class has enough samples.

    Parameters
    ----------
    y : array-like, shape (n,)
        Labels.
    holdout : float
        Fraction held out, in (0, 1).
    seed : int

    Returns
    -------
    train, holdout : ndarray of int
        Sorted indices of the searched and the held-out samples.
    """
    y = np.asarray(y)
    from sklearn.model_selection import train_test_split

    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}")
    index = np.arange(y.shape[0])
    _, counts = np.unique(y, return_counts=True)
    n_hold = round(holdout * y.shape[0])
    if n_hold < 1 or y.shape[0] - n_hold < 2:
        raise ValueError(
            f"{y.shape[0]} samples are too few to hold out {holdout:.0%} and still train"
        )
    stratify = y if counts.min() >= _MIN_PER_SPLIT / min(holdout, 1 - holdout) else None
    train, hold = train_test_split(index, test_size=n_hold, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(hold)


def _match_classes(model: MLP, y: np.ndarray, what: str) -> MLP:
    """Make the model's classes those of the data's labels, or say why they cannot be."""
    k = len(model.classes_)
    given = np.unique(y)
    classes = np.asarray(model.classes_)
    if classes.dtype.kind == given.dtype.kind or {classes.dtype.kind, given.dtype.kind} <= set(
        "iu"
    ):
        unknown = np.setdiff1d(given, classes)
        if unknown.size == 0:
            return model
    if what == "pytorch" and len(given) == k:
        # A state dict does not record its classes: the k outputs are the sorted labels.
        fixed = MLP.from_layers(model.layers, activation=model.activation, classes=given)
        fixed.torch_dtype_ = model.torch_dtype_
        return fixed
    raise ValueError(
        f"the model's {k} classes {classes.tolist()[:10]} do not cover the data's labels "
        f"{given.tolist()[:10]}"
        + (f" ({len(given)} labels for {k} outputs)" if len(given) != k else "")
    )


def _evaluate(model: MLP, X: np.ndarray, y: np.ndarray, classes: list[str]) -> Evaluation:
    if y.shape[0] == 0:
        nan = float("nan")
        return Evaluation(nan, nan, {c: nan for c in classes}, 0)
    known = np.isin(y, model.classes_)
    pred = model.predict(X)
    per_class = {}
    for c in classes:
        mask = y.astype(str) == c
        per_class[c] = float(np.mean(pred[mask] == y[mask])) if mask.any() else float("nan")
    losses = model.losses(X[known], y[known]) if known.any() else np.array([np.nan])
    return Evaluation(float(np.mean(pred == y)), float(np.mean(losses)), per_class, len(y))


def _check_better_than_chance(before: Evaluation, y_tr: np.ndarray, y_ho: np.ndarray) -> None:
    """Stop when the model is no better than always answering the most frequent label."""
    labels, counts = np.unique(y_tr, return_counts=True)
    guess = labels[np.argmax(counts)]
    chance = float(np.mean(y_ho == guess))
    margin = _CHANCE_SIGMAS * np.sqrt(max(chance * (1.0 - chance), 1e-12) / len(y_ho))
    if not before.accuracy > chance + margin:
        raise CannotCleanError(
            f"the model is no better than chance on the held-out split: accuracy "
            f"{before.accuracy:.1%} against {chance:.1%} for always answering '{guess}' "
            f"(needed above {chance + margin:.1%}, {_CHANCE_SIGMAS:g} standard errors over "
            f"{len(y_ho)} samples). Its scores cannot tell wrong labels from right ones. If "
            "clean trained it: scale the features (--scale standard), train longer (--epochs) "
            "or wider (--hidden); if it was given: check it was trained on these features, in "
            "this order and scaling"
        )


def _check_spread(scores: np.ndarray, detector: str) -> None:
    """Stop when every sample gets (nearly) the same score: nothing to rank."""
    finite = scores[np.isfinite(scores)]
    spread = float(np.ptp(finite)) if finite.size else 0.0
    size = float(np.max(np.abs(finite))) if finite.size else 0.0
    if finite.size < scores.size or spread <= _SPREAD_RTOL * max(size, 1.0):
        what = "not finite" if finite.size < scores.size else f"all {np.median(finite):.6g}"
        raise CannotCleanError(
            f"the {detector} scores have no spread ({what} to within {_SPREAD_RTOL:g}): "
            "every sample looks the same to the model, so there is nothing to rank. The model "
            "predicts the same for every input: scale the features (--scale standard), train "
            "longer (--epochs), or give a trained model"
        )


def _holdout_scores(
    detector: str, before: MLP, after: MLP, X: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, str]:
    """The detector's statistic on the held-out samples, the mean over the two models.

    The held-out samples have no training record, so AUM (the mean margin over training)
    becomes the mean margin over the models before and after; the loss stays the loss. Any
    other detector is judged by the margin too, and the second value says so.
    """
    known = np.isin(y, before.classes_)
    out = np.full(y.shape[0], np.inf)  # a label the model does not know is never trusted
    if not known.any():
        return out, "margin"
    Xk, yk = X[known], y[known]
    if detector == "loss":
        out[known] = 0.5 * (before.losses(Xk, yk) + after.losses(Xk, yk))
        return out, "loss"
    out[known] = -0.5 * (before.margins(Xk, yk) + after.margins(Xk, yk))
    return out, "margin"


class _Steps:
    """A progress bar over the pipeline's steps, shown only when stderr is a terminal."""

    def __init__(self, total: int, show: bool):
        self.bar = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="mlu clean", unit="step", file=sys.stderr)
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._t
        self._t = now
        if self.bar is not None:
            self.bar.set_postfix_str(name)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def clean(
    data,
    y=None,
    *,
    model=None,
    label: str | None = None,
    true_label: str | None = None,
    hidden: tuple[int, ...] | None = None,
    activation: str | tuple[str, ...] = "relu",
    scale: str | None = "standard",
    epochs: int | None = None,
    detector: str | None = None,
    fraction: float | None = None,
    unlearn_options: dict[str, Any] | None = None,
    holdout: float = 0.2,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> CleanResult:
    """Find the mislabeled samples of a data set and unlearn them from its model.

    Parameters
    ----------
    data : path or array-like
        A data file (see :func:`mlu.data.userdata.load_data`: ``.npz``, ``.csv``/``.parquet`` with
        ``label``, an IDX images file), or features X of shape (n, d) or images (n, H, W)
        with ``y``.
    y : array-like, shape (n,), optional
        Labels (int or str) when ``data`` is an array.
    model : MLP or path, optional
        The trained model: an :class:`mlu.MLP`, an mlu ``.npz``, or a PyTorch state dict of an
        ``nn.Sequential`` (with ``hidden`` / ``activation``). None: an MLP with the paper's
        settings (``mlu.MLP()``'s defaults, with ``scale``, ``epochs``, ``hidden`` and
        ``activation`` when given, and ``track=True``) is trained on the searched split, and
        the notes say so.
    label, true_label : str, optional
        A table's label column, and a column of known-true labels (for precision only).
    hidden, activation
        The layout of a PyTorch state dict (a state dict has no activations), or of the MLP
        trained here (default ``mlu.MLP()``'s: one hidden layer of 50, ReLU).
    scale : {"standard", "minmax", "none"} or None
        Feature scaling inside the MLP trained here (``mlu.MLP(scale=...)``; saved with the
        model). Default ``"standard"``: a table's raw features (values in the thousands) leave
        an unscaled MLP at chance. Ignored for a given model.
    epochs : int, optional
        Training epochs of the MLP trained here (default ``mlu.MLP()``'s, 20).
    detector : str, optional
        Scores for :func:`mlu.detect`. Default:
        :data:`~mlu.detection.detect.DEFAULT_PIPELINE_DETECTOR`
        (``"aum"``), which reads the model's training record; a given model without one
        (``track=True`` on exactly the searched split) is scored by ``"loss"`` instead, and the
        notes say so.
    fraction : float, optional
        Flag the top ``fraction`` of the scores. Default: for ``"aum"`` and ``"margin"`` the
        pipeline's rule, scores above :data:`mlu.detection.detect.DEFAULT_PIPELINE_THRESHOLD` (a
        negative mean margin); for any other detector :func:`mlu.select`'s automatic rule
        (``method="auto"``, an estimate of the noise rate).
    unlearn_options : dict, optional
        Keyword arguments for :func:`mlu.unlearn` (``method``, ``curvature``, ``damping``,
        ``steps``…); what is not given is :data:`mlu.defaults.DEFAULTS`.
    holdout : float
        Fraction of the data held out (seeded, stratified when possible) to compare the
        model before and after; detection and unlearning never see it.
    seed : int
        Seeds the split and, without a model, the training.
    out : path, optional
        Directory to write the outputs to; it must not exist unless ``force``.
    force : bool
        Replace an existing ``out``.
    progress : bool, optional
        Progress bars (default: when stderr is a terminal).
    log : callable, optional
        Receives one-line messages (e.g. ``print``).

    Returns
    -------
    CleanResult

    Raises
    ------
    CannotCleanError
        The model is no better than always answering the most frequent label on the held-out
        split (by two standard errors), or the detector's scores have no spread. ``out`` is
        then left as it was.
    FileExistsError
        ``out`` exists and ``force`` is False (checked before any work).
    FileNotFoundError
        A file does not exist.
    ValueError
        Bad data (missing label column, NaN features, fewer than two classes), a model that
        does not fit the data (input size, classes), a file that is not a state dict where
        one is expected, or a bad option. ``out`` is then left as it was.
    """
    if out is not None and Path(out).exists() and not force:
        raise FileExistsError(f"{out} exists; pass force=True (--force) to replace it")
    if scale is not None and scale not in SCALE_CHOICES:
        raise ValueError(f"scale must be one of {SCALE_CHOICES} or None, got {scale!r}")
    if epochs is not None and (isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    training = {
        "scale": None if scale in (None, "none") else scale,
        "epochs": epochs,
        "hidden": hidden,
        "activation": activation,
    }
    show = sys.stderr.isatty() if progress is None else bool(progress)
    say = log or (lambda _msg: None)
    notes: list[str] = []
    steps = _Steps(6 if out is not None else 5, show)
    try:
        result = _run(
            data, y, model, label, true_label, hidden, activation, training, detector,
            fraction, dict(unlearn_options or {}), holdout, seed, show, notes, steps, say,
        )  # fmt: skip
        if out is not None:
            write_outputs(result, out, force=force)
            steps.done("write")
    finally:
        steps.close()
    return result


def _read(data, y, label, true_label) -> UserData:
    if isinstance(data, (str, os.PathLike)):
        if y is not None:
            raise ValueError("y is given with a data file: the labels come from the file")
        return load_data(data, label=label, true_label=true_label)
    if isinstance(data, UserData):
        return data
    if y is None:
        raise ValueError("data is an array: give its labels y too")
    return from_arrays(data, y)


def _train(training: dict[str, Any], seed: int, show: bool, X, y) -> MLP:
    """The MLP :func:`clean` trains when no model is given (``track=True`` for AUM)."""
    options: dict[str, Any] = {"scale": training["scale"]}
    if training["epochs"] is not None:
        options["epochs"] = int(training["epochs"])
    if training["hidden"] is not None:
        options["hidden"] = tuple(int(h) for h in training["hidden"])
    options["activation"] = training["activation"]
    return MLP(seed=seed, verbose=show, track=True, **options).fit(X, y)


def _run(
    data, y, model, label, true_label, hidden, activation, training, detector, fraction,
    unlearn_options, holdout, seed, show, notes, steps, say,
) -> CleanResult:  # fmt: skip
    ud = _read(data, y, label, true_label)
    train, hold = holdout_split(ud.y, holdout, seed)
    X_tr, X_ho = ud.X[train], ud.X[hold]
    y_tr, y_ho = ud.y[train], ud.y[hold]
    steps.done("read")

    torch_source: TorchSource | None = None
    trained = model is None
    if model is None:
        model = _train(training, seed, show, X_tr, y_tr)
        settings = model.get_params()
        notes.append(
            "no model given: trained an MLP with the paper's settings (hidden "
            f"{list(settings['hidden'])} {settings['activation']}, SGD lr {settings['lr']}, "
            f"momentum {settings['momentum']}, batch {settings['batch_size']}, "
            f"{settings['epochs']} epochs, seed {seed}"
            + (
                f", features scaled inside the model ({settings['scale']})"
                if settings["scale"]
                else ", features unscaled"
            )
            + f") on the {len(train)} searched samples"
        )
        say(notes[-1])
    else:
        what = "mlu"
        if isinstance(model, (str, os.PathLike)):
            model, torch_source = load_model(model, hidden=hidden, activation=activation)
            what = "pytorch" if torch_source is not None else "mlu"
        if not isinstance(model, MLP) or not hasattr(model, "theta_"):
            raise TypeError(f"model must be a fitted mlu.MLP or a file, got {type(model).__name__}")
        if model.n_features_in_ != ud.X.shape[1]:
            raise ValueError(
                f"the model takes {model.n_features_in_} inputs but the data have "
                f"{ud.X.shape[1]} features"
            )
        model = _match_classes(model, ud.y, what)
        notes.append(
            "the model was given: if it was trained on the held-out samples too, both before "
            "and after accuracies there are optimistic by the same kind of bias"
        )
    classes = [str(c) for c in model.classes_]
    if not np.isin(y_tr, model.classes_).all():
        raise ValueError("the searched split has labels the model does not know")
    steps.done("model")

    if detector is None:
        detector = DEFAULT_PIPELINE_DETECTOR
        try:
            scores = detect(model, X_tr, y_tr, method=detector)
        except ValueError as exc:  # no (or a stale, or another data's) training record
            notes.append(
                f"the pipeline's default detector ({detector}) needs the model's training "
                f"record on the searched samples, which this model lacks ({exc}); scored by "
                "the per-sample loss instead"
            )
            say(notes[-1])
            detector = "loss"
            scores = detect(model, X_tr, y_tr, method=detector)
    else:
        scores = detect(model, X_tr, y_tr, method=detector)
    _check_spread(np.asarray(scores, dtype=np.float64), detector)
    before = _evaluate(model, X_ho, y_ho, classes)
    _check_better_than_chance(before, y_tr, y_ho)
    steps.done("detect")
    margin_rule = detector in ("aum", "margin")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if fraction is not None:
            flagged = select(scores, fraction=fraction)
            rule = f"top {fraction:.1%} of the scores"
        elif margin_rule:
            flagged = select(scores, threshold=DEFAULT_PIPELINE_THRESHOLD)
            rule = "the pipeline's threshold (score > 0: the given label's mean margin < 0)"
        else:
            flagged = select(scores, method="auto")
            rule = "automatic threshold (estimated noise rate)"
    notes += [f"select: {w.message}" for w in caught]
    n_flag = int(flagged.sum())
    if n_flag == len(train):
        raise ValueError("every searched sample was flagged: nothing would be left to learn from")
    threshold = float(scores[~flagged].max()) if n_flag else float("nan")
    say(f"detect: {detector} scores, {rule}: {n_flag} suspect(s) of {len(train)}")
    notes.append(f"flagged by {detector} scores, {rule}")

    if n_flag:
        result = unlearn(model, X_tr, y_tr, np.flatnonzero(flagged), **unlearn_options)
        fixed: MLP = result.model  # type: ignore[assignment]  # unlearn of an MLP gives an MLP
        if getattr(model, "torch_dtype_", None):
            fixed.torch_dtype_ = model.torch_dtype_
    else:
        result = None
        fixed = MLP.from_layers(model.layers, activation=model.activation, classes=model.classes_)
        notes.append("nothing was flagged: the fixed model is the input model")
    steps.done("unlearn")

    order = np.flatnonzero(flagged)[np.argsort(-scores[flagged], kind="stable")]
    suspects = train[order]
    suggested = fixed.predict(ud.X[suspects]) if n_flag else ud.y[:0]
    after = _evaluate(fixed, X_ho, y_ho, classes)
    holdout_scores, statistic = _holdout_scores(detector, model, fixed, X_ho, y_ho)
    if statistic == "margin":
        cut = DEFAULT_PIPELINE_THRESHOLD
    else:  # the loss: the searched split's cut, in the same units
        cut = threshold if n_flag else np.inf
    trusted = holdout_scores <= cut
    notes.append(
        f"held-out labels judged by the {statistic} averaged over the models before and after "
        f"(so that the judgement favours neither), flagged above {cut:.4g}: "
        f"{int((~trusted).sum())} of {len(hold)} held-out labels not trusted"
        + (
            f" (the {detector} detector needs a training record, which held-out samples lack)"
            if statistic != detector
            else ""
        )
    )
    trusted_before = _evaluate(model, X_ho[trusted], y_ho[trusted], classes)
    trusted_after = _evaluate(fixed, X_ho[trusted], y_ho[trusted], classes)
    precision = recall = None
    if ud.flipped is not None:
        truth = ud.flipped[train]
        precision = float(truth[flagged].mean()) if n_flag else None
        recall = float(flagged[truth].mean()) if truth.any() else None
    steps.done("evaluate")
    say(
        f"held-out ({len(hold)} samples, given labels): accuracy {before.accuracy:.2%} -> "
        f"{after.accuracy:.2%}, loss {before.loss:.4f} -> {after.loss:.4f}; on the "
        f"{trusted_before.n} whose labels the detector trusts: {trusted_before.accuracy:.2%} "
        f"-> {trusted_after.accuracy:.2%}"
    )
    return CleanResult(
        model=fixed,
        original=model,
        data=ud,
        train_index=train,
        holdout_index=hold,
        scores=scores,
        threshold=threshold,
        suspects=suspects,
        suggested=np.asarray(suggested),
        suspect_scores=scores[order],
        before=before,
        after=after,
        unlearning=result,
        detector=detector,
        trained=trained,
        torch_source=torch_source,
        notes=tuple(notes),
        precision=precision,
        recall=recall,
        holdout_scores=holdout_scores,
        trusted=trusted,
        trusted_before=trusted_before,
        trusted_after=trusted_after,
        seconds=steps.seconds,
    )


def _suspects_csv(result: CleanResult) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["index", "given", "suggested", "score", "rank"])
    writer.writeheader()
    for row in result.suspects_table():
        writer.writerow({**row, "score": repr(row["score"])})
    return buf.getvalue()


def write_outputs(result: CleanResult, out: str | os.PathLike, force: bool = False) -> Path:
    """Write the outputs of :func:`clean` into the directory ``out``, all or nothing.

    Everything is written into a new temporary directory beside ``out``, which then takes
    ``out``'s place; on any error ``out`` is left as it was.

    Parameters
    ----------
    result : CleanResult
    out : path
        The directory; it must not exist unless ``force``.
    force : bool
        Replace an existing directory.

    Returns
    -------
    Path
        ``out``.
    """
    from ..data.userdata import save_torch_state_dict
    from ..engine.io import save_model
    from .cleanreport import render

    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass force=True (--force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        (tmp / "suspects.csv").write_text(_suspects_csv(result), encoding="utf-8")
        save_model(result.model, tmp / "model.npz")
        if result.torch_source is not None:
            save_torch_state_dict(result.model, result.torch_source, tmp / "model.pt")
        files = render(result, tmp)
        summary = result.summary()
        summary["files"] = sorted(
            ["suspects.csv", "model.npz", "summary.json"]
            + (["model.pt"] if result.torch_source is not None else [])
            + [p.name for p in files]
        )
        (tmp / "summary.json").write_text(
            json.dumps(_jsonable(summary), indent=2, allow_nan=False), encoding="utf-8"
        )
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "dir")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return out


def _jsonable(obj):
    """Non-finite floats become null (JSON has no NaN); NumPy scalars become Python ones."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj if obj is None or isinstance(obj, str) else str(obj)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
