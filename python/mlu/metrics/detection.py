"""How well a detector finds the mislabeled samples: scores and flags against the true flips.

The paper reports five numbers per detector: ROC-AUC of the scores, and accuracy, precision,
recall and F1 of the flagged set (its top 10%). We add average precision (area under the
precision-recall curve, more telling than ROC-AUC when few labels are flipped) and precision
at k, the precision of the k highest scores with k = the number flagged.

Degenerate cases never raise:

* ROC-AUC and average precision are NaN when they are undefined: ROC-AUC when the true mask
  holds a single class (no flipped, or only flipped samples), average precision when there is
  no flipped sample. NaN means "undefined", not "bad"; average them with ``np.nanmean``.
* Precision, recall and F1 are 0.0 when their denominator is zero (nothing flagged, no flipped
  sample), like scikit-learn's ``zero_division=0``; precision at k is 0.0 for k = 0.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

__all__ = [
    "average_precision",
    "detection_report",
    "precision_at_k",
    "roc_auc",
]


def _as_mask(mask, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D boolean mask (n,), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n} (one per sample)")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be a boolean mask (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def _as_scores(scores, n: int | None = None) -> np.ndarray:
    arr = np.asarray(scores)
    if arr.ndim != 1:
        raise ValueError(f"scores must be 1-D (n,), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"scores has {arr.shape[0]} entries, expected {n} (one per sample)")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"scores must hold numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError("scores contains NaN")
    return arr


def roc_auc(scores, true_mask) -> float:
    """ROC-AUC of the scores for finding the mislabeled samples.

    Parameters
    ----------
    scores : array-like, shape (n,)
        Higher = more suspect.
    true_mask : array-like of bool, shape (n,)
        True where the label was flipped.

    Returns
    -------
    float
        In [0, 1] (0.5 = random); NaN when ``true_mask`` is all True or all False.
    """
    truth = _as_mask(true_mask, "true_mask")
    s = _as_scores(scores, truth.shape[0])
    if truth.all() or not truth.any():
        return float("nan")
    return float(skm.roc_auc_score(truth, s))


def average_precision(scores, true_mask) -> float:
    """Average precision (area under the precision-recall curve) of the scores.

    Parameters
    ----------
    scores : array-like, shape (n,)
    true_mask : array-like of bool, shape (n,)

    Returns
    -------
    float
        In [0, 1] (random scores give about the flipped fraction); NaN when no label is flipped.
    """
    truth = _as_mask(true_mask, "true_mask")
    s = _as_scores(scores, truth.shape[0])
    if not truth.any():
        return float("nan")
    return float(skm.average_precision_score(truth, s))


def precision_at_k(scores, true_mask, k: int) -> float:
    """Fraction of mislabeled samples among the k highest scores.

    Parameters
    ----------
    scores : array-like, shape (n,)
    true_mask : array-like of bool, shape (n,)
    k : int in [0, n]
        Ties at the cut are broken by the lower index (as :func:`mlu.detection.detect.select` does).

    Returns
    -------
    float
        In [0, 1]; 0.0 when ``k = 0``.
    """
    truth = _as_mask(true_mask, "true_mask")
    s = _as_scores(scores, truth.shape[0])
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {k!r}")
    if not 0 <= k <= s.shape[0]:
        raise ValueError(f"k must be in 0..{s.shape[0]}, got {k}")
    if k == 0:
        return 0.0
    top = np.argsort(-s, kind="stable")[:k]
    return float(truth[top].mean())


def detection_report(scores, flagged=None, true_mask=None) -> dict[str, float]:
    """All detection metrics at once, as a flat dict of floats (JSON-serialisable).

    Parameters
    ----------
    scores : array-like, shape (n,)
        Detector scores, higher = more suspect (for the threshold-free metrics).
    flagged : array-like of bool, shape (n,), optional
        The samples flagged (e.g. ``mlu.select(scores, fraction=0.1)``). Without it only the
        threshold-free metrics are reported (``roc_auc``, ``average_precision``, ``n``,
        ``n_true``).
    true_mask : array-like of bool, shape (n,)
        True where the label was flipped (required; a keyword when ``flagged`` is left out:
        ``detection_report(scores, true_mask=flipped)``).

    Returns
    -------
    dict of str -> float
        ``roc_auc``, ``average_precision`` (threshold-free; NaN when undefined, see the module
        docstring); ``accuracy``, ``precision``, ``recall``, ``f1`` of ``flagged`` against
        ``true_mask`` (0.0 on a zero denominator); ``precision_at_k`` with k = number flagged;
        and the counts ``n``, ``n_flagged``, ``n_true``, ``n_true_flagged`` (as floats).
    """
    if true_mask is None:
        raise TypeError("detection_report needs true_mask (True where the label was flipped)")
    truth = _as_mask(true_mask, "true_mask")
    n = truth.shape[0]
    s = _as_scores(scores, n)
    if flagged is None:
        return {
            "roc_auc": roc_auc(s, truth),
            "average_precision": average_precision(s, truth),
            "n": float(n),
            "n_true": float(truth.sum()),
        }
    flags = _as_mask(flagged, "flagged", n)
    k = int(flags.sum())
    return {
        "roc_auc": roc_auc(s, truth),
        "average_precision": average_precision(s, truth),
        "accuracy": float(skm.accuracy_score(truth, flags)),
        "precision": float(skm.precision_score(truth, flags, zero_division=0.0)),
        "recall": float(skm.recall_score(truth, flags, zero_division=0.0)),
        "f1": float(skm.f1_score(truth, flags, zero_division=0.0)),
        "precision_at_k": precision_at_k(s, truth, k),
        "n": float(n),
        "n_flagged": float(k),
        "n_true": float(truth.sum()),
        "n_true_flagged": float((truth & flags).sum()),
    }
