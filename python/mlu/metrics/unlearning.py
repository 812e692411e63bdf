"""Metrics of unlearning: what the model still knows about the forget set F, how well it does on
the retained set and on test data, and how close it is to a model retrained without F.

Every function takes fitted classifiers with ``predict`` / ``predict_proba`` and ``classes_``
(an :class:`mlu.MLP`, a :class:`mlu.SISA` ensemble, a scikit-learn classifier); only
:func:`parameter_distance` needs flat parameters (``.params``). :func:`evaluate_unlearning`
bundles them into one flat dict of floats, one row of an experiment's CSV.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from ..engine._validation import as_features, as_labels, check_forget

__all__ = [
    "accuracy",
    "evaluate_unlearning",
    "forget_retain_accuracy",
    "membership_inference_auc",
    "parameter_distance",
    "per_class_accuracy",
    "prediction_agreement",
    "sample_losses",
    "speedup",
]


def _Xy(X, y, name: str = "X") -> tuple[np.ndarray, np.ndarray]:
    X = as_features(X, name=name)
    return X, as_labels(y, X.shape[0], name="y" if name == "X" else f"y for {name}")


def accuracy(model, X, y) -> float:
    """Fraction of samples whose predicted label equals y.

    Parameters
    ----------
    model : fitted classifier
    X : array-like, shape (n, d)
    y : array-like, shape (n,)

    Returns
    -------
    float in [0, 1]
    """
    X, y = _Xy(X, y)
    return float(np.mean(model.predict(X) == y))


def per_class_accuracy(model, X, y) -> dict:
    """Accuracy on the samples of each class (recall per class; the paper's per-class figure).

    Parameters
    ----------
    model : fitted classifier
    X : array-like, shape (n, d)
    y : array-like, shape (n,)

    Returns
    -------
    dict
        ``{label: accuracy}`` for every label present in y, in sorted order (labels as Python
        scalars).
    """
    X, y = _Xy(X, y)
    pred = model.predict(X)
    return {c.item(): float(np.mean(pred[y == c] == c)) for c in np.unique(y)}


def sample_losses(model, X, y) -> np.ndarray:
    """Per-sample cross-entropy ``-log p(y_i | x_i)`` from ``predict_proba``, shape (n,).

    Works for any classifier with ``predict_proba`` and ``classes_``; probabilities are
    clipped at 1e-300 so a confident mistake gives a large finite loss.
    """
    X, y = _Xy(X, y)
    classes = np.asarray(model.classes_)
    col = np.searchsorted(classes, y)
    col = np.clip(col, 0, len(classes) - 1)
    if np.any(classes[col] != y):
        bad = y[np.flatnonzero(classes[col] != y)[0]]
        raise ValueError(f"label {bad!r} is not one of the model's classes {classes.tolist()}")
    P = model.predict_proba(X)
    return -np.log(np.maximum(P[np.arange(len(y)), col], 1e-300))


def forget_retain_accuracy(model, X, y, forget, y_true=None) -> dict:
    """Accuracy on the forget set F (given and, if known, true labels) and on the retained set.

    Parameters
    ----------
    model : fitted classifier
    X : array-like, shape (n, d)
        The training set.
    y : array-like, shape (n,)
        The labels the model was trained with (possibly noisy).
    forget : array-like of int, shape (m,), or of bool, shape (n,)
    y_true : array-like, shape (n,), optional
        The clean labels, when known (label-noise experiments).

    Returns
    -------
    dict
        ``forget_acc`` (against y on F), ``retain_acc`` (against y on R = D \\ F; absent when
        F is all of D) and, with ``y_true``, ``forget_acc_true`` and ``retain_acc_true``.
    """
    X, y = _Xy(X, y)
    mask = check_forget(forget, X.shape[0], allow_all=True)
    pred = model.predict(X)
    out = {"forget_acc": float(np.mean(pred[mask] == y[mask]))}
    if (~mask).any():
        out["retain_acc"] = float(np.mean(pred[~mask] == y[~mask]))
    if y_true is not None:
        yt = as_labels(y_true, X.shape[0], name="y_true")
        out["forget_acc_true"] = float(np.mean(pred[mask] == yt[mask]))
        if (~mask).any():
            out["retain_acc_true"] = float(np.mean(pred[~mask] == yt[~mask]))
    return out


def membership_inference_auc(model, X_forget, y_forget, X_test, y_test) -> float:
    """ROC-AUC of a loss-threshold membership-inference attack (Yeom et al., 2018).

    The attacker calls a sample a training member when its loss is low. The AUC is that of
    telling the forget samples (positives) from held-out test samples (negatives) by their
    negated loss. ~0.5: the forget set looks like unseen data (nothing remembered); → 1: it is
    still recognisable as trained on. Values below 0.5 mean the forget samples now have *higher*
    loss than unseen data (typical for mislabeled samples once they are unlearned, since the
    model then disagrees with their wrong labels).

    Parameters
    ----------
    model : fitted classifier with ``predict_proba``
    X_forget : array-like, shape (m, d)
    y_forget : array-like, shape (m,)
        The labels the forget samples were trained with.
    X_test : array-like, shape (t, d)
    y_test : array-like, shape (t,)

    Returns
    -------
    float in [0, 1]
    """
    member = sample_losses(model, X_forget, y_forget)
    outsider = sample_losses(model, X_test, y_test)
    labels = np.r_[np.ones(len(member)), np.zeros(len(outsider))]
    return float(roc_auc_score(labels, -np.r_[member, outsider]))


def prediction_agreement(model, reference, X) -> float:
    """Fraction of samples on which the two models predict the same label; X shape (n, d)."""
    X = as_features(X)
    return float(np.mean(model.predict(X) == reference.predict(X)))


def parameter_distance(model, reference) -> float:
    """Relative L2 distance ``‖θ − θ_ref‖ / ‖θ_ref‖`` of the flat parameters (shape (p,) each).

    Raises
    ------
    ValueError
        The models have different numbers of parameters.
    TypeError
        A model has no ``params``.
    """
    for name, m in (("model", model), ("reference", reference)):
        if not hasattr(m, "params"):
            raise TypeError(f"{name} ({type(m).__name__}) has no flat .params to compare")
    a, b = np.asarray(model.params, float), np.asarray(reference.params, float)
    if a.shape != b.shape:
        raise ValueError(f"models have different parameter counts: {a.shape} vs {b.shape}")
    denom = float(np.linalg.norm(b))
    diff = float(np.linalg.norm(a - b))
    return diff / denom if denom > 0 else diff


def speedup(unlearn_time: float, reference_time: float) -> float:
    """How many times faster unlearning was than the reference (retraining): ref / unlearn."""
    u, r = float(unlearn_time), float(reference_time)
    if not (np.isfinite(u) and np.isfinite(r)) or u < 0 or r < 0:
        raise ValueError(f"times must be finite and >= 0, got {unlearn_time!r}, {reference_time!r}")
    return r / u if u > 0 else float("inf")


def evaluate_unlearning(
    model,
    X,
    y,
    forget,
    X_test,
    y_test,
    y_true=None,
    reference=None,
    unlearn_time: float | None = None,
    reference_time: float | None = None,
) -> dict:
    """All unlearning metrics of one model as a flat dict of floats (one CSV row).

    Parameters
    ----------
    model : fitted classifier
        The unlearned model (``result.model`` of :func:`mlu.unlearn` or a baseline).
    X : array-like, shape (n, d)
        The training set D.
    y : array-like, shape (n,)
        The labels it was trained with (possibly noisy).
    forget : array-like of int, shape (m,), or of bool, shape (n,)
        The forget set F.
    X_test : array-like, shape (t, d)
    y_test : array-like, shape (t,)
    y_true : array-like, shape (n,), optional
        Clean training labels, when known.
    reference : fitted classifier, optional
        A model retrained without F, to compare against.
    unlearn_time, reference_time : float, optional
        Wall seconds of the unlearning and of the reference (retraining).

    Returns
    -------
    dict of str to float
        Always: ``n_forget``, ``n_retain``, ``forget_acc``, ``retain_acc`` (if R is not
        empty), ``test_acc``, ``test_acc_class_<label>`` for each test label, ``mia_auc``.
        With ``y_true``: ``forget_acc_true``, ``retain_acc_true``. With ``reference``:
        ``agreement`` (test predictions), ``reference_test_acc``, ``param_distance`` (if
        both models have ``.params`` of the same size). With times: ``unlearn_time``,
        ``reference_time`` and, with both, ``speedup``. Keys that cannot be computed are left
        out rather than filled with NaN.
    """
    X, y = _Xy(X, y)
    X_test, y_test = _Xy(X_test, y_test, name="X_test")
    mask = check_forget(forget, X.shape[0], allow_all=True)
    out: dict[str, float] = {
        "n_forget": float(mask.sum()),
        "n_retain": float((~mask).sum()),
    }
    out.update(forget_retain_accuracy(model, X, y, mask, y_true=y_true))
    out["test_acc"] = accuracy(model, X_test, y_test)
    for label, acc in per_class_accuracy(model, X_test, y_test).items():
        out[f"test_acc_class_{label}"] = acc
    out["mia_auc"] = membership_inference_auc(model, X[mask], y[mask], X_test, y_test)
    if reference is not None:
        out["agreement"] = prediction_agreement(model, reference, X_test)
        out["reference_test_acc"] = accuracy(reference, X_test, y_test)
        a, b = getattr(model, "params", None), getattr(reference, "params", None)
        if a is not None and b is not None and np.shape(a) == np.shape(b):
            out["param_distance"] = parameter_distance(model, reference)
    if unlearn_time is not None:
        out["unlearn_time"] = float(unlearn_time)
    if reference_time is not None:
        out["reference_time"] = float(reference_time)
    if unlearn_time is not None and reference_time is not None:
        out["speedup"] = speedup(unlearn_time, reference_time)
    return {k: float(v) for k, v in out.items()}
