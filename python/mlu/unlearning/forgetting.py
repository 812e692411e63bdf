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
    Gaussian noise first, ``θ_F + σ_l ε`` with ``σ_l = noise · rms(W_l)`` for the weights and
    biases of layer l (the calibration of Sekhari et al. 2021 needs a bound on
    ``‖θ_F − θ_retrain‖`` that a non-convex model does not give; the layer's weight scale is
    the practical stand-in), then the fine-tuning above, which repairs what the noise costs.
``"fisher_finetune"``
    As ``"noisy_finetune"`` with the noise shaped by the retained data's diagonal empirical
    Fisher f (per-sample squared gradients over a seeded subsample of at most
    :data:`FISHER_ROWS` retained rows): ``σ_i ∝ (f̄_l / (f_i + 10⁻³ f̄_l))^{1/4}``, scaled so
    that each layer's mean noise variance is that of ``"noisy_finetune"`` (Fisher forgetting,
    Golatkar et al. 2020: more noise where R does not constrain θ).
``"noise"``
    The noise alone (no fine-tuning): for the comparison.

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
    "EPOCHS_SHARE",
    "FISHER_ROWS",
    "MODES",
    "PostUpdate",
    "check_settings",
    "default_epochs",
    "post_update",
    "request_seed",
    "run_mode",
]

MODES = ("exact", "finetune", "noisy_finetune", "fisher_finetune", "noise")
#: Retained rows whose squared gradients give the diagonal Fisher of ``"fisher_finetune"``.
FISHER_ROWS = 256
#: The mode chosen by benchmarks/forgetting_mia.py (docs/design.md, "Forgetting modes"): on the
#: memorising model of issue 23 (seeds 0-2) it closed 70 ± 23% of the membership-inference AUC
#: gap to retraining (the exact update 37 ± 7%) for 0.061 of a retraining per request, at 2.1
#: points of test accuracy below retraining (benchmarks/results/forgetting_mia.md).
DEFAULT_MODE = "noisy_finetune"
#: Passes over the retained set of the default post-update (of :func:`post_update`; a request
#: of :class:`mlu.Unlearner` takes :func:`default_epochs`, at most this).
DEFAULT_EPOCHS = 2.0
#: The default post-update of a request is at most this share of the model's training epochs
#: (:func:`default_epochs`), so that its cost stays a bounded share of a retraining.
EPOCHS_SHARE = 0.1
#: Noise scale relative to each layer's weight RMS.
DEFAULT_NOISE = 3.0
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

    def summary(self) -> str:
        """One line: mode, settings, rows visited and seconds."""
        return (
            f"forgetting mode {self.mode!r}: noise {self.noise:g} x layer weight RMS, "
            f"{self.epochs:g} epochs over the retained set ({self.rows_visited} rows, the last "
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
    model: MLP, noise: float, rng: np.random.Generator, fisher: np.ndarray | None = None
) -> np.ndarray:
    """θ with Gaussian noise on layer l's weights and biases: std ``noise · rms(W_l)``, or
    with ``fisher`` that mean variance redistributed as ``(f̄_l / (f_i + 10⁻³ f̄_l))^{1/2}``."""
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
        theta[pos : pos + size] += sigma * scale * rng.standard_normal(size)
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
    epochs: float = DEFAULT_EPOCHS,
    noise: float = DEFAULT_NOISE,
    lr: float | None = None,
    anneal: float = DEFAULT_ANNEAL,
    seed: int = 0,
) -> PostUpdate:
    """Run a forgetting mode after the exact update of a deletion request.

    Parameters
    ----------
    model : mlu.MLP
        The exact update θ_F for the cumulative forget set, computed from θ̂ (e.g. the model
        :meth:`mlu.Unlearner.forget` returns with ``mode="exact"``; by default ``forget`` runs
        this post-update itself). Never modified.
    X : array-like, shape (n, d)
        The training data D the model was trained on (raw features, as given to ``fit``).
    y : array-like, shape (n,)
        Its labels.
    forgotten : array-like of int, shape (m,), or of bool, shape (n,)
        Every sample forgotten so far (the cumulative forget set F).
    mode : {"exact", "finetune", "noisy_finetune", "fisher_finetune", "noise"}
        See the module docs; default :data:`DEFAULT_MODE`.
    epochs : float, default :data:`DEFAULT_EPOCHS`
        Passes of minibatch SGD over R for the fine-tuning modes (a fraction visits a seeded
        subset). Its cost is ``epochs / E`` of a retraining for E training epochs.
    noise : float, default :data:`DEFAULT_NOISE`
        Noise std relative to each layer's weight RMS (the root mean variance, for
        ``"fisher_finetune"``), for the modes with noise.
    lr : float, optional
        Learning rate of the fine-tuning; default the model's ``lr``.
    anneal : float in [0, 1], default :data:`DEFAULT_ANNEAL`
        Share of the fine-tuning's rows visited at ``lr ·`` :data:`ANNEAL_DECAY` (the end of
        the run, as at the end of a training schedule); 0: all at ``lr``.
    seed : int
        Mixed into the seed derived from F (:func:`request_seed`).

    Returns
    -------
    PostUpdate

    Raises
    ------
    ValueError
        Unknown mode, negative ``epochs`` or ``noise``, a non-positive ``lr``, a bad forget set
        or data that do not match the model.
    """
    start = time.perf_counter()
    check_model(model)
    mode, epochs, noise, lr, anneal = check_settings(mode, epochs, noise, lr, anneal)
    X = as_features(X, model.n_features_in_)
    y = as_labels(y, X.shape[0])
    encode_labels(y, model.classes_)  # a label the model does not know raises here
    mask = check_forget(forgotten, X.shape[0], allow_all=False)
    return run_mode(
        model, X, y, mask, mode, epochs=epochs, noise=noise, lr=lr, anneal=anneal, seed=seed,
        start=start,
    )  # fmt: skip


def default_epochs(model: MLP) -> float:
    """The fine-tuning epochs of a request's default post-update for ``model``.

    ``min(DEFAULT_EPOCHS, EPOCHS_SHARE · E)`` with E the epochs the model was trained for
    (``n_iter_``, else its ``epochs`` setting): 2 epochs for a model trained 20 epochs or more
    (the memorising model of docs/design.md, "Forgetting modes", 40 epochs: 2), 1 for 10
    epochs, 0.3 for 3, so the post-update costs at most a tenth of a retraining.

    Parameters
    ----------
    model : mlu.MLP
        The trained model θ̂.

    Returns
    -------
    float
    """
    trained = int(getattr(model, "n_iter_", 0) or 0) or int(model.epochs)
    return float(min(DEFAULT_EPOCHS, EPOCHS_SHARE * trained))


def check_settings(
    mode: str,
    epochs: float = DEFAULT_EPOCHS,
    noise: float = DEFAULT_NOISE,
    lr: float | None = None,
    anneal: float = DEFAULT_ANNEAL,
) -> tuple[str, float, float, float | None, float]:
    """Check a post-update's settings (as :func:`post_update` takes them).

    Returns
    -------
    tuple
        ``(mode, epochs, noise, lr, anneal)`` as floats (``lr`` None stays None).

    Raises
    ------
    ValueError
        Unknown mode, negative ``epochs`` or ``noise``, a non-positive ``lr`` or ``anneal``
        outside [0, 1].
    """
    check_choice(mode, "mode", MODES)
    epochs = check_real(epochs, "epochs", low=0.0)
    noise = check_real(noise, "noise", low=0.0)
    lr = None if lr is None else check_real(lr, "lr", low=0.0, open_low=True)
    anneal = check_real(anneal, "anneal", low=0.0, high=1.0)
    return mode, epochs, noise, lr, anneal


def run_mode(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    mode: str,
    *,
    epochs: float,
    noise: float,
    lr: float | None,
    anneal: float,
    seed: int = 0,
    start: float | None = None,
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
    mode, epochs, noise, lr, anneal, seed
        As :func:`post_update` takes them, checked.
    start : float, optional
        ``time.perf_counter()`` at the start of the caller's checks (counted in ``time``).

    Returns
    -------
    PostUpdate
    """
    start = time.perf_counter() if start is None else start
    lr = model.lr if lr is None else lr
    derived = request_seed(mask, X.shape[0], seed)
    rng = np.random.default_rng(derived)
    out = copy.deepcopy(model)
    use_noise = mode in ("noisy_finetune", "fisher_finetune", "noise")
    use_tune = mode in ("finetune", "noisy_finetune", "fisher_finetune")
    retained = np.flatnonzero(~mask)
    if use_noise and noise > 0:
        fisher = None
        if mode == "fisher_finetune":
            sub = np.sort(rng.permutation(retained)[:FISHER_ROWS])
            fisher = _fisher(model, X, y, sub)
        out.params = _noised(out, noise, rng, fisher)
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
    )
