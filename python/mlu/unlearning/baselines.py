"""Baselines for unlearning a forget set F, each returning an ``UnlearningResult``.

* :func:`retrain`: train from scratch on the retained set R = D \\ F (the gold standard).
* :func:`finetune`: continue training the trained model on R for a few epochs.
* :func:`gradient_ascent`: a few guarded gradient-ascent steps on the loss of F.

Like :func:`mlu.unlearn`, every baseline leaves the input model untouched and returns a new one.
"""

from __future__ import annotations

import copy
import time

import numpy as np
from sklearn.base import clone

from ..engine._validation import check_data, check_forget, check_int, check_model
from ..engine.model import MLP
from .unlearn import UnlearningResult

__all__ = ["finetune", "gradient_ascent", "retrain"]


def _epochs(value, name: str, allow_zero: bool = False) -> int:
    return check_int(value, name, low=0 if allow_zero else 1)


def _lr(value, name: str = "lr") -> float:
    try:
        lr = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return lr


def _result(model: MLP, method: str, iterations: int, n_forget: int, start: float, notes=()):
    return UnlearningResult(
        model=model,
        method=method,
        solver="sgd",
        params="all",
        curvature=None,
        damping=None,
        iterations=iterations,
        residual=None,
        min_eigenvalue=None,
        negative_curvature=False,
        n_forget=n_forget,
        steps=1,
        time=time.perf_counter() - start,
        notes=tuple(notes),
    )


def retrain(
    model: MLP, X, y, forget, epochs: int | None = None, seed: int | None = None
) -> UnlearningResult:
    """Train a fresh model with the same hyper-parameters on the retained set R only.

    Parameters
    ----------
    model : mlu.MLP
        The trained model; only its hyper-parameters and classes are used.
    X : array-like, shape (n, d)
        The full training set D.
    y : array-like, shape (n,)
    forget : array-like of int, shape (m,), or of bool, shape (n,)
        The forget set F (indices or a mask), as in :func:`mlu.unlearn`.
    epochs : int, optional
        Training epochs (default: the model's own ``epochs``).
    seed : int, optional
        Initialisation and shuffling seed (default: the model's own ``seed``).

    Returns
    -------
    UnlearningResult
        ``method="retrain"``, ``iterations`` = epochs, ``time`` = training wall time.
    """
    start = time.perf_counter()
    check_model(model)
    X, y = check_data(model, X, y)
    mask = check_forget(forget, X.shape[0])
    overrides: dict = {"warm_start": False}
    if epochs is not None:
        overrides["epochs"] = _epochs(epochs, "epochs", allow_zero=True)
    if seed is not None:
        overrides["seed"] = int(seed)
    new = clone(model).set_params(**overrides)
    # classes fixed to the model's, so a class missing from R keeps its output unit
    new.fit(X[~mask], y[~mask], classes=model.classes_)
    return _result(new, "retrain", int(new.epochs), int(mask.sum()), start)


def finetune(
    model: MLP, X, y, forget, epochs: int = 2, lr: float | None = None
) -> UnlearningResult:
    """Continue training the trained model on the retained set R for a few epochs.

    The model's SGD settings are kept (``lr`` may be overridden); the momentum buffer starts at
    zero, as it does for a fresh ``fit`` with ``warm_start=True``.

    Parameters
    ----------
    model : mlu.MLP
    X : array-like, shape (n, d)
    y : array-like, shape (n,)
    forget : array-like of int, shape (m,), or of bool, shape (n,)
    epochs : int
        Epochs of training on R.
    lr : float, optional
        Learning rate (default: the model's).

    Returns
    -------
    UnlearningResult
        ``method="finetune"``, ``iterations`` = epochs.
    """
    start = time.perf_counter()
    check_model(model)
    epochs = _epochs(epochs, "epochs")
    X, y = check_data(model, X, y)
    mask = check_forget(forget, X.shape[0])
    new = copy.deepcopy(model)
    overrides: dict = {"warm_start": True, "epochs": epochs}
    if lr is not None:
        overrides["lr"] = _lr(lr)
    new.set_params(**overrides)
    new.fit(X[~mask], y[~mask], classes=model.classes_)
    # The returned model should behave like the input on a later plain fit().
    new.set_params(warm_start=model.warm_start, epochs=model.epochs, lr=model.lr)
    return _result(new, "finetune", epochs, int(mask.sum()), start)


def gradient_ascent(
    model: MLP,
    X,
    y,
    forget,
    epochs: int = 1,
    lr: float | None = None,
    batch_size: int | None = None,
    max_step: float = 0.1,
    loss_cap: float | None = None,
) -> UnlearningResult:
    """Minibatch gradient ascent on the loss of the forget set F (a few guarded steps).

    Each step is ``θ ← θ + lr · ∇[(1/|B|) Σ_{i∈B} ℓ_i]`` over a minibatch B of F (no l2 term:
    it would pull against the ascent). Ascent on a loss has no optimum, so two guards keep it
    from exploding:

    * every step is clipped to a norm of at most ``max_step · ‖θ‖`` (a relative trust region);
    * ascent stops as soon as the mean loss over F reaches ``loss_cap`` (default ``ln k``,
      the loss of a uniform prediction: F is then fitted no better than chance, and going
      further only teaches the model the opposite labels).

    Parameters
    ----------
    model : mlu.MLP
    X : array-like, shape (n, d)
    y : array-like, shape (n,)
    forget : array-like of int, shape (m,), or of bool, shape (n,)
    epochs : int
        Passes over F.
    lr : float, optional
        Step size (default: the model's ``lr``).
    batch_size : int, optional
        Minibatch size (default: the model's ``batch_size``).
    max_step : float
        Largest step norm relative to ``‖θ‖``.
    loss_cap : float, optional
        Mean forget-set loss at which to stop (default ``ln k``).

    Returns
    -------
    UnlearningResult
        ``method="gradient_ascent"``, ``iterations`` = ascent steps taken; ``notes`` say
        which guard stopped or clipped it.
    """
    start = time.perf_counter()
    check_model(model)
    epochs = _epochs(epochs, "epochs")
    lr = _lr(model.lr if lr is None else lr)
    batch_size = _epochs(model.batch_size if batch_size is None else batch_size, "batch_size")
    max_step = _lr(max_step, "max_step")
    k = len(model.classes_)
    loss_cap = float(np.log(k)) if loss_cap is None else _lr(loss_cap, "loss_cap")
    X, y = check_data(model, X, y)
    mask = check_forget(forget, X.shape[0])
    X_F, y_F = X[mask], y[mask]
    new = copy.deepcopy(model)
    rng = np.random.default_rng(int(model.seed))
    notes: list[str] = []
    n_steps = clipped = 0
    stopped = False
    for _ in range(epochs):
        order = rng.permutation(X_F.shape[0])
        for begin in range(0, len(order), batch_size):
            if float(new.losses(X_F, y_F).mean()) >= loss_cap:
                stopped = True
                break
            batch = order[begin : begin + batch_size]
            theta = new.theta_
            step = lr * (new.gradient(X_F[batch], y_F[batch]) - new.l2 * theta)
            limit = max_step * max(float(np.linalg.norm(theta)), 1.0)
            norm = float(np.linalg.norm(step))
            if norm > limit:
                step *= limit / norm
                clipped += 1
            new.theta_ = theta + step
            n_steps += 1
        if stopped:
            break
    if stopped:
        notes.append(f"stopped after {n_steps} steps: mean forget loss reached {loss_cap:.3g}")
    if clipped:
        notes.append(f"{clipped} of {n_steps} steps clipped to {max_step:g}·‖θ‖")
    return _result(new, "gradient_ascent", n_steps, int(mask.sum()), start, notes)
