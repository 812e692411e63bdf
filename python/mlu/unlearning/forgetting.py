"""Forgetting modes: what runs after the exact (Newton) update of a deletion request so that the
forgotten samples stop looking like training members.

A Newton or influence update is first order in the removed samples' gradients, and a sample the
model has memorised has a gradient near zero: the update barely moves it, and a loss-threshold
membership-inference attack still tells it from unseen data (issue 23; docs/design.md,
"Forgetting modes"). The modes here start from the exact update ``θ_F`` for the *cumulative*
forget set F (computed from θ̂) and use only the retained set R = D \\ F:

``"exact"``
    ``θ_F`` itself.
``"finetune"``
    ``epochs`` passes of the model's own minibatch SGD over R from ``θ_F`` (fractional: a
    seeded subset of R), the last ``anneal`` share of them at a fifth of the learning rate, as
    the strongest entries of the NeurIPS 2023 unlearning competition do.
``"noisy_finetune"``
    Shrink and perturb first (Ash & Adams 2020), ``shrink · θ_F + σ_l ε`` with
    ``σ_l = noise · rms(W_l)`` for the weights and biases of layer l (the calibration of
    Sekhari et al. 2021 needs a bound on ``‖θ_F − θ_retrain‖`` that a non-convex model does not
    give; the layer's weight scale is the practical stand-in), then the fine-tuning above,
    which repairs what the perturbation costs.
``"fisher_finetune"``
    As ``"noisy_finetune"`` with the noise shaped by the retained data's diagonal empirical
    Fisher f (per-sample squared gradients over a seeded subsample of at most
    :data:`FISHER_ROWS` retained rows): ``σ_i ∝ (f̄_l / (f_i + 10⁻³ f̄_l))^{1/4}``, scaled so
    that each layer's mean noise variance is that of ``"noisy_finetune"`` (Fisher forgetting,
    Golatkar et al. 2020: more noise where R does not constrain θ).
``"noise"``
    The shrink and noise alone (no fine-tuning): for the comparison.

Default settings (:func:`scaled_settings`, docs/design.md "Forgetting modes"): the strength
``t = min(1, |F| / (FULL_STRENGTH_SHARE · n))`` of the cumulative forget set F sets
``epochs = min(FULL_EPOCHS, EPOCHS_SHARE · E) · t²`` for a model trained E epochs (the
repair in proportion to the perturbation's damage, quadratic in its size) and, with
``a = t · min(FULL_EPOCHS, EPOCHS_SHARE · E) / FULL_EPOCHS`` (the perturbation in proportion
to the deletion's sensitivity, ∝ |F|/n, as Sekhari et al. calibrate it, and to the repair a
model's training allows), ``shrink = 1 − (1 − FULL_SHRINK) a`` and ``noise = FULL_NOISE ·
a``: a post-update costs at most ``EPOCHS_SHARE · t²`` of a retraining, the measured
full-strength settings where 10% of the data are forgotten from a model trained 40 epochs,
and little for a small deletion from a large data set.

Every mode is a deterministic function of ``(θ_F, R, seed)``: its randomness (noise, subset,
minibatch order) is seeded from a hash of the sorted cumulative forget set, n and ``seed``
(:func:`request_seed`), so replaying the requests gives the same bits and the result does not
depend on how F was split into requests, provided ``θ_F`` does not.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine._validation import (
    as_features,
    as_labels,
    check_choice,
    check_forget,
    check_model,
    check_real,
    encode_labels,
)
from ..engine.model import MLP

__all__ = [
    "ANNEAL_DECAY",
    "DEFAULT_ANNEAL",
    "DEFAULT_EPOCHS",
    "DEFAULT_MODE",
    "DEFAULT_NOISE",
    "DEFAULT_SHRINK",
    "EPOCHS_SHARE",
    "FISHER_ROWS",
    "FULL_EPOCHS",
    "FULL_NOISE",
    "FULL_SHRINK",
    "FULL_STRENGTH_SHARE",
    "MODES",
    "PostUpdate",
    "check_settings",
    "default_epochs",
    "full_epochs",
    "post_update",
    "request_seed",
    "run_mode",
    "scaled_settings",
]

MODES = ("exact", "finetune", "noisy_finetune", "fisher_finetune", "noise")
#: Retained rows whose squared gradients give the diagonal Fisher of ``"fisher_finetune"``.
FISHER_ROWS = 256
#: The mode chosen by benchmarks/forgetting_mia.py (docs/design.md, "Forgetting modes"), with
#: the settings of :func:`scaled_settings`: on the memorising model of issue 23 (seeds 0-2)
#: the default request closed 86.5 ± 10.7% of the membership-inference AUC gap to retraining
#: at 0.8 points of test accuracy below retraining, for 0.063 of a retraining per request
#: (benchmarks/results/forgetting_mia_default.md).
DEFAULT_MODE = "noisy_finetune"
#: The forgotten share of the data at which the default settings reach full strength.
FULL_STRENGTH_SHARE = 0.1
#: Fine-tuning passes at full strength, as a share of the model's training epochs (3 of 40): a
#: post-update costs at most this share of a retraining.
EPOCHS_SHARE = 0.075
#: At most this many fine-tuning passes at full strength (:func:`full_epochs`).
FULL_EPOCHS = 3.0
#: Noise std at full strength, relative to each layer's weight RMS.
FULL_NOISE = 1.0
#: Factor on θ_F at full strength (shrink and perturb).
FULL_SHRINK = 0.3
#: The default ``epochs``, ``noise`` and ``shrink`` settings: None, each request's own from
#: :func:`scaled_settings` (a caller that resolves the settings once, such as
#: :class:`mlu.DeletionStore`, records None and so serves the same default).
DEFAULT_EPOCHS: float | None = None
DEFAULT_NOISE: float | None = None
DEFAULT_SHRINK: float | None = None
#: Share of the fine-tuning run at the learning rate times :data:`ANNEAL_DECAY`.
DEFAULT_ANNEAL = 0.25
#: Learning-rate factor of the annealed end of the fine-tuning.
ANNEAL_DECAY = 0.2
#: Attributes of a fitted model that record its training (epochs, seconds, loss curve, trace):
#: the fine-tuning's ``fit`` would overwrite them; the post-updated model keeps the training's.
_TRAINING_RECORD = ("n_iter_", "fit_time_", "loss_curve_", "trace_")


@dataclass(frozen=True)
class PostUpdate:
    """The result of :func:`post_update`.

    Attributes
    ----------
    model : mlu.MLP
        The new model (the input model is never modified).
    mode : str
        The mode that ran.
    seed : int
        The seed derived from the forget set (:func:`request_seed`).
    epochs : float
        Passes over the retained set (0 for ``"exact"`` and ``"noise"``).
    noise : float
        Noise scale relative to the layers' weight RMS (0 without noise).
    shrink : float
        Factor on θ_F before the noise (1 without noise).
    anneal : float
        Share of the fine-tuning at the reduced learning rate (0 without fine-tuning).
    rows_visited : int
        Retained rows the fine-tuning visited (``epochs · |R|``, rounded).
    time : float
        Wall seconds.
    """

    model: MLP
    mode: str
    seed: int
    epochs: float
    noise: float
    anneal: float
    rows_visited: int
    time: float
    shrink: float = 1.0

    def summary(self) -> str:
        """One line: mode, settings, rows visited and seconds."""
        return (
            f"forgetting mode {self.mode!r}: shrink {self.shrink:.4g}, noise {self.noise:.4g} x "
            "layer weight RMS, "
            f"{self.epochs:.4g} epochs over the retained set ({self.rows_visited} rows, the last "
            f"{100 * self.anneal:g}% at lr x {ANNEAL_DECAY:g}), "
            f"seed {self.seed}, {self.time:.3f} s"
        )


def request_seed(forgotten, n: int, seed: int = 0) -> int:
    """A seed in [0, 2³¹) determined by the sorted forget set, n and ``seed``.

    Parameters
    ----------
    forgotten : array-like of int, shape (m,), or of bool, shape (n,)
        The cumulative forget set (order and the split into requests do not matter).
    n : int
        Number of training samples.
    seed : int
        A user seed mixed in.

    Returns
    -------
    int
    """
    mask = check_forget(forgotten, int(n), allow_all=False)
    digest = hashlib.sha256()
    digest.update(np.array([int(n), int(seed)], dtype=np.int64).tobytes())
    digest.update(np.flatnonzero(mask).astype(np.int64).tobytes())
    return int.from_bytes(digest.digest()[:8], "little") % (2**31)


def _fisher(model: MLP, X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Diagonal empirical Fisher ``Σ_i (∇ℓ_i)²`` over ``rows``, shape (p,), in blocks."""
    f = np.zeros(model.n_params)
    for start in range(0, rows.shape[0], 128):
        G = model.gradients(X[rows[start : start + 128]], y[rows[start : start + 128]])
        f += np.einsum("ij,ij->j", G, G)
    return f


def _noised(
    model: MLP,
    noise: float,
    rng: np.random.Generator,
    fisher: np.ndarray | None = None,
    shrink: float = 1.0,
) -> np.ndarray:
    """``shrink · θ`` plus Gaussian noise on layer l's weights and biases: std
    ``noise · rms(W_l)`` (of θ's W_l), or with ``fisher`` that mean variance redistributed as
    ``(f̄_l / (f_i + 10⁻³ f̄_l))^{1/2}``."""
    theta = model.theta_.copy()
    pos = 0
    for fan_in, fan_out in zip(model.sizes_[:-1], model.sizes_[1:]):
        size = fan_out * fan_in + fan_out
        W = theta[pos : pos + fan_out * fan_in]
        sigma = noise * float(np.sqrt(np.mean(W * W)))
        scale = np.ones(size)
        if fisher is not None:
            f = fisher[pos : pos + size]
            mean = float(f.mean())
            if mean > 0:
                scale = np.sqrt(np.sqrt(mean / (f + 1e-3 * mean)))
                scale /= np.sqrt(np.mean(scale * scale))
        theta[pos : pos + size] = shrink * theta[pos : pos + size] + sigma * scale * (
            rng.standard_normal(size)
        )
        pos += size
    return theta


def _finetune(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    retained: np.ndarray,
    epochs: float,
    lr: float,
    anneal: float,
    rng: np.random.Generator,
    seed: int,
) -> int:
    """Minibatch SGD (the model's settings) over ``round(epochs · |R|)`` retained rows, the last
    ``anneal`` share of them at ``lr · ANNEAL_DECAY``, in passes of at most |R| rows each (a
    seeded permutation of R, the last pass of a phase a prefix of one); the momentum carries
    over. Modifies ``model`` in place and returns the rows visited."""
    total = int(round(epochs * retained.shape[0]))
    tail = int(round(anneal * total))
    model.set_params(warm_start=True, epochs=1, seed=seed, track=False, verbose=False)
    first = True
    for count, rate in ((total - tail, lr), (tail, lr * ANNEAL_DECAY)):
        model.set_params(lr=rate)
        done = 0
        while done < count:
            rows = np.sort(rng.permutation(retained)[: min(retained.shape[0], count - done)])
            if first:
                model.fit(X[rows], y[rows], classes=model.classes_)  # velocity starts at zero
                first = False
            else:
                model.partial_fit(X[rows], y[rows])  # velocity carries over
            done += rows.shape[0]
    return total


def post_update(
    model: MLP,
    X,
    y,
    forgotten,
    mode: str = DEFAULT_MODE,
    *,
    epochs: float | None = None,
    noise: float | None = None,
    lr: float | None = None,
    anneal: float = DEFAULT_ANNEAL,
    seed: int = 0,
    shrink: float | None = None,
) -> PostUpdate:
    """Run a forgetting mode after the exact update of a deletion request.

    Parameters
    ----------
    model : mlu.MLP
        The exact update θ_F for the cumulative forget set, computed from θ̂ (e.g. the model
        :meth:`mlu.Unlearner.forget` returns with ``mode="exact"``; by default ``forget`` runs
        this post-update itself, with these defaults). Never modified.
    X : array-like, shape (n, d)
        The training data D the model was trained on (raw features, as given to ``fit``).
    y : array-like, shape (n,)
        Its labels.
    forgotten : array-like of int, shape (m,), or of bool, shape (n,)
        Every sample forgotten so far (the cumulative forget set F).
    mode : {"exact", "finetune", "noisy_finetune", "fisher_finetune", "noise"}
        See the module docs; default :data:`DEFAULT_MODE`.
    epochs : float, optional
        Passes of minibatch SGD over R for the fine-tuning modes (a fraction visits a seeded
        subset). Its cost is ``epochs / E`` of a retraining for E training epochs. Default
        :func:`scaled_settings`' (``full_epochs(model) · t²``).
    noise : float, optional
        Noise std relative to each layer's weight RMS (the root mean variance, for
        ``"fisher_finetune"``), for the modes with noise. Default :func:`scaled_settings`'
        (``FULL_NOISE · t``).
    lr : float, optional
        Learning rate of the fine-tuning; default the model's ``lr``.
    anneal : float in [0, 1], default :data:`DEFAULT_ANNEAL`
        Share of the fine-tuning's rows visited at ``lr ·`` :data:`ANNEAL_DECAY` (the end of
        the run, as at the end of a training schedule); 0: all at ``lr``.
    seed : int
        Mixed into the seed derived from F (:func:`request_seed`).
    shrink : float in [0, 1], optional
        Factor on θ_F before the noise, for the modes with noise (1: none). Default
        :func:`scaled_settings`' (``1 − (1 − FULL_SHRINK) t``).

    Returns
    -------
    PostUpdate

    Raises
    ------
    ValueError
        Unknown mode, negative ``epochs`` or ``noise``, a non-positive ``lr``, ``shrink`` or
        ``anneal`` outside [0, 1], a bad forget set or data that do not match the model.
    """
    start = time.perf_counter()
    check_model(model)
    mode, epochs, noise, lr, anneal, shrink = check_settings(
        mode, epochs, noise, lr, anneal, shrink=shrink, full=True
    )
    X = as_features(X, model.n_features_in_)
    y = as_labels(y, X.shape[0])
    encode_labels(y, model.classes_)  # a label the model does not know raises here
    mask = check_forget(forgotten, X.shape[0], allow_all=False)
    return run_mode(
        model, X, y, mask, mode, epochs=epochs, noise=noise, lr=lr, anneal=anneal, seed=seed,
        start=start, shrink=shrink,
    )  # fmt: skip


def default_epochs(model: MLP) -> float | None:
    """The default ``epochs`` setting of a request for ``model``: :data:`DEFAULT_EPOCHS`,
    None, i.e. each request's own from :func:`scaled_settings` (``full_epochs(model) · t²``).
    For callers that resolve the settings once and record them (:class:`mlu.DeletionStore`).

    Parameters
    ----------
    model : mlu.MLP
        The trained model θ̂.

    Returns
    -------
    float or None
    """
    check_model(model)
    return DEFAULT_EPOCHS


def full_epochs(model: MLP) -> float:
    """The fine-tuning epochs of the default post-update at full strength for ``model``.

    ``min(FULL_EPOCHS, EPOCHS_SHARE · E)`` with E the epochs the model was trained for
    (``n_iter_``, else its ``epochs`` setting): 3 epochs for a model trained 40 epochs or
    more (the memorising model of docs/design.md, "Forgetting modes"), 0.75 for 10 epochs,
    0.225 for 3; :func:`scaled_settings` multiplies it by t².

    Parameters
    ----------
    model : mlu.MLP
        The trained model θ̂.

    Returns
    -------
    float
    """
    trained = int(getattr(model, "n_iter_", 0) or 0) or int(model.epochs)
    return float(min(FULL_EPOCHS, EPOCHS_SHARE * trained))


def scaled_settings(model: MLP, n_forgotten: int, n: int) -> dict[str, float]:
    """The default post-update settings for a cumulative forget set of ``n_forgotten`` of
    ``n`` samples (docs/design.md, "Forgetting modes").

    With the strength ``t = min(1, n_forgotten / (FULL_STRENGTH_SHARE · n))`` and the
    repair budget ``r = full_epochs(model) / FULL_EPOCHS`` (1 for a model trained 40 epochs
    or more), the perturbation's amplitude ``a = t · r``: ``shrink = 1 − (1 − FULL_SHRINK) a``,
    ``noise = FULL_NOISE · a`` and ``epochs = full_epochs(model) · t²``. The full perturbation
    was measured repairable by 3 epochs; a model trained shorter gets a shorter repair and a
    perturbation smaller in proportion. At 10% forgotten (t = 1) on a model trained 40
    epochs: shrink 0.3, noise 1, 3 epochs; at 1% of 60000 samples on a model trained 10
    epochs (t = 0.1, r = 0.25): shrink 0.9825, noise 0.025, 0.0075 epochs (450 rows).

    Parameters
    ----------
    model : mlu.MLP
        The trained model θ̂ (or θ_F: its training record is θ̂'s).
    n_forgotten : int
        |F|, the samples forgotten so far.
    n : int
        The training samples.

    Returns
    -------
    dict
        ``strength`` t, ``amplitude`` a, ``shrink``, ``noise`` and ``epochs`` (floats).
    """
    t = min(1.0, float(n_forgotten) / (FULL_STRENGTH_SHARE * float(n)))
    repair = full_epochs(model)
    a = t * repair / FULL_EPOCHS
    return {
        "strength": t,
        "amplitude": a,
        "shrink": 1.0 - (1.0 - FULL_SHRINK) * a,
        "noise": FULL_NOISE * a,
        "epochs": repair * t * t,
    }


def check_settings(
    mode: str,
    epochs: float | None = DEFAULT_EPOCHS,
    noise: float | None = DEFAULT_NOISE,
    lr: float | None = None,
    anneal: float = DEFAULT_ANNEAL,
    *,
    shrink: float | None = None,
    full: bool = False,
) -> Any:
    """Check a post-update's settings (as :func:`post_update` takes them).

    ``epochs``, ``noise`` and ``shrink`` may be None (:func:`scaled_settings` per request).

    Returns
    -------
    tuple
        ``(mode, epochs, noise, lr, anneal)`` as floats (None stays None), and ``shrink``
        last when ``full``.

    Raises
    ------
    ValueError
        Unknown mode, negative ``epochs`` or ``noise``, a non-positive ``lr``, or ``anneal``
        or ``shrink`` outside [0, 1].
    """
    check_choice(mode, "mode", MODES)
    epochs = None if epochs is None else check_real(epochs, "epochs", low=0.0)
    noise = None if noise is None else check_real(noise, "noise", low=0.0)
    lr = None if lr is None else check_real(lr, "lr", low=0.0, open_low=True)
    anneal = check_real(anneal, "anneal", low=0.0, high=1.0)
    shrink = None if shrink is None else check_real(shrink, "shrink", low=0.0, high=1.0)
    if full:
        return mode, epochs, noise, lr, anneal, shrink
    return mode, epochs, noise, lr, anneal


def run_mode(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    mode: str,
    *,
    epochs: float | None,
    noise: float | None,
    lr: float | None,
    anneal: float,
    seed: int = 0,
    start: float | None = None,
    shrink: float | None = None,
) -> PostUpdate:
    """:func:`post_update` on inputs already checked (by :func:`check_settings` and as
    :func:`post_update` checks them): for callers that hold the checked data, such as
    :class:`mlu.Unlearner`, so that X is not checked again on every request.

    Parameters
    ----------
    model : mlu.MLP
        The exact update θ_F (never modified).
    X : ndarray of float64, shape (n, d)
        The training data, C-contiguous and finite.
    y : ndarray, shape (n,)
        Its labels, all known to the model.
    mask : ndarray of bool, shape (n,)
        The cumulative forget set F (True: forgotten); not every row.
    mode, epochs, noise, lr, anneal, seed, shrink
        As :func:`post_update` takes them, checked (None: :func:`scaled_settings`' value for
        F).
    start : float, optional
        ``time.perf_counter()`` at the start of the caller's checks (counted in ``time``).

    Returns
    -------
    PostUpdate
    """
    start = time.perf_counter() if start is None else start
    lr = model.lr if lr is None else lr
    scaled = scaled_settings(model, int(mask.sum()), X.shape[0])
    epochs = scaled["epochs"] if epochs is None else epochs
    noise = scaled["noise"] if noise is None else noise
    shrink = scaled["shrink"] if shrink is None else shrink
    derived = request_seed(mask, X.shape[0], seed)
    rng = np.random.default_rng(derived)
    out = copy.deepcopy(model)
    use_noise = mode in ("noisy_finetune", "fisher_finetune", "noise")
    use_tune = mode in ("finetune", "noisy_finetune", "fisher_finetune")
    retained = np.flatnonzero(~mask)
    if use_noise and (noise > 0 or shrink != 1.0):
        fisher = None
        if mode == "fisher_finetune":
            sub = np.sort(rng.permutation(retained)[:FISHER_ROWS])
            fisher = _fisher(model, X, y, sub)
        out.params = _noised(out, noise, rng, fisher, shrink)
    visited = 0
    if use_tune:
        visited = _finetune(out, X, y, retained, epochs, lr, anneal, rng, derived)
        out.set_params(**model.get_params(deep=False))  # the fine-tuning's settings undone
        for name in _TRAINING_RECORD:  # the model's training record stays the training's
            if hasattr(model, name):
                setattr(out, name, copy.deepcopy(getattr(model, name)))
    return PostUpdate(
        model=out,
        mode=mode,
        seed=derived,
        epochs=float(epochs) if use_tune else 0.0,
        noise=float(noise) if use_noise else 0.0,
        anneal=float(anneal) if use_tune else 0.0,
        rows_visited=visited,
        time=time.perf_counter() - start,
        shrink=float(shrink) if use_noise else 1.0,
    )
