"""Label-noise models: flip training labels in a controlled, reproducible way.

Three modes, all through :func:`flip_labels`:

``"random"``
    The paper's formula: every label flips independently with probability ``rate``
    to a class drawn uniformly from the *other* classes (for two classes, ``1 - y``).
    In distribution this equals ``"matrix"`` with ``symmetric_matrix(k, rate)``.
``"per_class"``
    What the paper's code did: exactly ``floor(rate * n_c)`` samples of each class
    ``c``, chosen at random, flip to a uniformly drawn other class.
``"matrix"``
    Class-conditional noise from a row-stochastic transition matrix
    ``T[i, j] = P(noisy label j | true label i)``; see :func:`symmetric_matrix` and
    :func:`pair_matrix`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..engine._validation import as_class_ids

__all__ = [
    "MODES",
    "NoisyLabels",
    "check_transition_matrix",
    "flip_labels",
    "pair_matrix",
    "symmetric_matrix",
    "transition_matrix",
]

MODES = ("random", "per_class", "matrix")

_ROW_SUM_TOL = 1e-8
# floor(rate * n) must not lose a sample to rounding, e.g. 0.29 * 100 = 28.999999999999996.
_FLOOR_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    """Noisy labels together with the ground truth they came from.

    Attributes
    ----------
    labels : ndarray of int64, shape (n,)
        The noisy labels (a new array).
    flipped : ndarray of bool, shape (n,)
        True exactly where ``labels != true_labels``.
    true_labels : ndarray of int64, shape (n,)
        A copy of the input labels.
    rate : float
        Observed fraction of flipped labels, ``flipped.mean()`` (0.0 when n = 0).
    """

    labels: np.ndarray
    flipped: np.ndarray
    true_labels: np.ndarray
    rate: float

    @property
    def n_flipped(self) -> int:
        """Number of flipped labels."""
        return int(np.count_nonzero(self.flipped))

    @property
    def flipped_indices(self) -> np.ndarray:
        """Indices of the flipped samples, ascending, shape (n_flipped,)."""
        return np.flatnonzero(self.flipped)

    def __repr__(self) -> str:
        return (
            f"NoisyLabels(n={self.labels.size}, n_flipped={self.n_flipped}, rate={self.rate:.4g})"
        )


# --------------------------------------------------------------------------- validation


def _check_num_classes(num_classes: object, y: np.ndarray, what: str = "y") -> int:
    if num_classes is None:
        if y.size == 0:
            raise ValueError("num_classes is required when there are no labels")
        k = int(y.max()) + 1
    else:
        if isinstance(num_classes, (bool, np.bool_)) or not isinstance(
            num_classes, (int, np.integer)
        ):
            raise ValueError(f"num_classes must be an int, got {num_classes!r}")
        k = int(num_classes)
        if y.size and y.max() >= k:
            raise ValueError(
                f"{what} contains label {y.max()} but num_classes={k} (labels must be 0..{k - 1})"
            )
    if k < 2:
        raise ValueError(f"need at least 2 classes to flip labels, got num_classes={k}")
    return k


def _check_classes(classes: object, y: np.ndarray) -> np.ndarray:
    """The label set as sorted distinct int64, shape (k,), holding every label of y."""
    cls = as_class_ids(np.atleast_1d(np.asarray(classes)), "classes")
    if np.unique(cls).size != cls.size:
        raise ValueError(f"classes must be distinct labels, got {cls.tolist()}")
    cls = np.sort(cls)
    missing = np.setdiff1d(y, cls)
    if missing.size:
        raise ValueError(
            f"y contains label {int(missing[0])}, which is not in classes={cls.tolist()}"
        )
    if cls.size < 2:
        raise ValueError(f"need at least 2 classes to flip labels, got classes={cls.tolist()}")
    return cls


def _label_set(num_classes: object, classes: object, y: np.ndarray) -> np.ndarray:
    """The classes a label may flip to: ``classes``, ``0..num_classes-1`` or those in y."""
    if classes is not None:
        if num_classes is not None:
            raise ValueError("give num_classes or classes, not both")
        return _check_classes(classes, y)
    if num_classes is not None:
        return np.arange(_check_num_classes(num_classes, y), dtype=np.int64)
    present = np.unique(y)
    if present.size == 0:
        raise ValueError("num_classes is required when there are no labels (or pass classes=)")
    if present.size < 2:
        raise ValueError(
            f"need at least 2 classes to flip labels, but y holds only {present.tolist()}: a "
            "flipped label would be invented; pass classes= (or num_classes=) to name the set"
        )
    return present


def _check_rate(rate: object) -> float:
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.number)):
        raise ValueError(f"rate must be a number in [0, 1], got {rate!r}")
    r = float(rate)
    if not 0.0 <= r <= 1.0:  # also catches NaN
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    return r


def check_transition_matrix(matrix: object, num_classes: int | None = None) -> np.ndarray:
    """Validate a row-stochastic transition matrix.

    Parameters
    ----------
    matrix : array-like, shape (k, k)
        ``matrix[i, j] = P(noisy j | true i)``.
    num_classes : int, optional
        If given, ``k`` must equal it.

    Returns
    -------
    ndarray of float64, shape (k, k)
        A copy of the matrix.

    Raises
    ------
    ValueError
        Not square, k < 2, wrong k, non-finite or negative entries, or a row whose
        sum differs from 1 by more than 1e-8.
    """
    T = np.array(matrix, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] != T.shape[1]:
        raise ValueError(f"transition matrix must be square (k, k), got shape {T.shape}")
    k = T.shape[0]
    if k < 2:
        raise ValueError(f"transition matrix must be at least 2x2, got {k}x{k}")
    if num_classes is not None and k != num_classes:
        raise ValueError(f"transition matrix is {k}x{k} but num_classes={num_classes}")
    if not np.all(np.isfinite(T)):
        raise ValueError("transition matrix contains NaN or infinite entries")
    if np.any(T < 0):
        raise ValueError(f"transition matrix has negative entries (min {T.min():.3g})")
    sums = T.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOL)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"transition matrix rows must sum to 1; row {i} sums to {float(sums[i])!r}"
            f" ({bad.size} bad row(s))"
        )
    return T


# --------------------------------------------------------------------------- flipping


def _flip_to_other(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    # Adding an offset in 1..k-1 modulo k gives each other class with probability 1/(k-1).
    return (y + rng.integers(1, k, size=y.shape[0])) % k


def flip_labels(
    y: np.ndarray,
    rate: float | None = None,
    seed: int | np.random.Generator | None = 0,
    mode: str = "random",
    num_classes: int | None = None,
    matrix: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> NoisyLabels:
    """Corrupt labels with synthetic label noise.

    Parameters
    ----------
    y : array-like of int, shape (n,)
        True labels (non-negative integers). Never modified.
    rate : float in [0, 1], optional
        Flip probability (``"random"``) or per-class fraction (``"per_class"``).
        Required for those modes; must be None for ``"matrix"``, where the matrix
        alone sets the noise.
    seed : int, Generator or None, default 0
        Passed to :func:`numpy.random.default_rng`; the same seed gives the same flips.
    mode : {"random", "per_class", "matrix"}, default "random"
        ``"random"``: each label flips independently with probability ``rate`` to a
        uniformly drawn other class (two classes: ``1 - y``); ``rate=1`` flips all.
        ``"per_class"``: exactly ``floor(rate * n_c)`` random samples of each class
        ``c`` flip to a uniformly drawn other class.
        ``"matrix"``: the noisy label of a sample of class ``i`` is drawn from row
        ``i`` of ``matrix`` (it may equal ``i``, which then counts as not flipped).
    num_classes : int, optional
        The label set is ``0 .. num_classes-1``. Default: the labels present in y (a
        flipped label is never one that y does not hold, e.g. labels {3, 8} flip to each
        other); in matrix mode, ``0 .. k-1`` for a k x k matrix.
    matrix : array-like, shape (k, k), optional
        Row-stochastic ``T[i, j] = P(noisy j | true i)``; only for ``mode="matrix"``.
        Rows and columns follow the sorted label set.
    classes : array-like of int, shape (k,), optional
        The label set, when it holds labels that y lacks (e.g. a subsample); exclusive
        with ``num_classes``.

    Returns
    -------
    NoisyLabels
        ``labels`` (n,) int64, ``flipped`` (n,) bool, ``true_labels`` (n,) int64,
        ``rate`` (observed fraction flipped).

    Raises
    ------
    ValueError
        Unknown mode; rate outside [0, 1] or NaN, or missing/given when it must not
        be; non-integer, negative or out-of-range labels; fewer than 2 classes; an
        invalid matrix (see :func:`check_transition_matrix`).

    Examples
    --------
    >>> import numpy as np
    >>> noisy = flip_labels(np.array([0, 1, 0, 1]), rate=1.0)
    >>> noisy.labels.tolist(), noisy.n_flipped
    ([1, 0, 1, 0], 4)
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    true = as_class_ids(y)
    if mode == "matrix":
        if matrix is None:
            raise ValueError("mode='matrix' needs matrix= (a row-stochastic k x k array)")
        if rate is not None:
            raise ValueError(
                "rate must be None in mode='matrix' (the matrix sets the noise); "
                "build one with symmetric_matrix(k, rate) or pair_matrix(k, rate)"
            )
        T = check_transition_matrix(matrix)
        if num_classes is not None and num_classes != T.shape[0]:
            raise ValueError(
                f"transition matrix is {len(T)}x{len(T)} but num_classes={num_classes}"
            )
        if classes is None:
            labels = np.arange(_check_num_classes(T.shape[0], true), dtype=np.int64)
        else:
            labels = _label_set(None, classes, true)
            if labels.size != T.shape[0]:
                raise ValueError(
                    f"transition matrix is {len(T)}x{len(T)} but there are {labels.size} classes"
                )
    else:
        if matrix is not None:
            raise ValueError(f"matrix is only used with mode='matrix', not mode={mode!r}")
        if rate is None:
            raise ValueError(f"mode={mode!r} needs a rate in [0, 1]")
        r = _check_rate(rate)
        labels = _label_set(num_classes, classes, true)

    # Flip class indices 0..k-1 and map back, so that only labels of the set can appear.
    k = labels.size
    codes = np.searchsorted(labels, true)
    rng = np.random.default_rng(seed)
    noisy = codes.copy()
    if mode == "random":
        # random() is in [0, 1): rate 0 selects nothing, rate 1 selects everything.
        idx = np.flatnonzero(rng.random(true.shape[0]) < r)
        noisy[idx] = _flip_to_other(codes[idx], k, rng)
    elif mode == "per_class":
        chosen = []
        for c in range(k):
            members = np.flatnonzero(codes == c)
            m = math.floor(r * members.size + _FLOOR_EPS)
            chosen.append(rng.choice(members, size=m, replace=False))
        idx = np.sort(np.concatenate(chosen))
        noisy[idx] = _flip_to_other(codes[idx], k, rng)
    else:
        for c in range(k):
            members = np.flatnonzero(codes == c)
            if members.size:
                # Normalise away the (<= 1e-8) slack that validation allowed.
                noisy[members] = rng.choice(k, size=members.size, p=T[c] / T[c].sum())

    noisy = labels[noisy]
    flipped = noisy != true
    observed = float(flipped.mean()) if flipped.size else 0.0
    return NoisyLabels(labels=noisy, flipped=flipped, true_labels=true, rate=observed)


# --------------------------------------------------------------------------- matrices


def transition_matrix(
    true: np.ndarray, noisy: np.ndarray, num_classes: int | None = None
) -> np.ndarray:
    """Empirical transition matrix between true and noisy labels.

    Parameters
    ----------
    true : array-like of int, shape (n,)
        True labels.
    noisy : array-like of int, shape (n,)
        Observed (noisy) labels.
    num_classes : int, optional
        k; default ``max(true, noisy) + 1``.

    Returns
    -------
    ndarray of float64, shape (k, k)
        ``M[i, j]`` = fraction of samples of true class ``i`` labelled ``j``; each row
        sums to 1. Rows of classes absent from ``true`` are NaN (no estimate).
    """
    t = as_class_ids(true, "true")
    s = as_class_ids(noisy, "noisy")
    if t.shape != s.shape:
        raise ValueError(f"true and noisy differ in length: {t.shape[0]} vs {s.shape[0]}")
    if num_classes is None:
        both = np.concatenate([t, s])
        num_classes = int(both.max()) + 1 if both.size else 0
    k = _check_num_classes(num_classes, np.concatenate([t, s]), "true/noisy")
    counts = np.bincount(t * k + s, minlength=k * k).reshape(k, k).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / totals


def symmetric_matrix(k: int, rate: float) -> np.ndarray:
    """Uniform ("symmetric") noise: keep with ``1 - rate``, else any other class equally.

    Parameters
    ----------
    k : int
        Number of classes, >= 2.
    rate : float in [0, 1]
        Probability that a label changes.

    Returns
    -------
    ndarray of float64, shape (k, k)
        ``T[i, i] = 1 - rate`` and ``T[i, j] = rate / (k - 1)`` for ``j != i``.
    """
    k = _check_k(k)
    r = _check_rate(rate)
    T = np.full((k, k), r / (k - 1))
    np.fill_diagonal(T, 1.0 - r)
    return T


def pair_matrix(k: int, rate: float) -> np.ndarray:
    """Pair ("flip to the next class") noise.

    Parameters
    ----------
    k : int
        Number of classes, >= 2.
    rate : float in [0, 1]
        Probability that a label changes.

    Returns
    -------
    ndarray of float64, shape (k, k)
        ``T[i, i] = 1 - rate`` and ``T[i, (i + 1) % k] = rate``; zero elsewhere.
    """
    k = _check_k(k)
    r = _check_rate(rate)
    T = np.zeros((k, k))
    i = np.arange(k)
    T[i, i] = 1.0 - r
    T[i, (i + 1) % k] = r
    return T


def _check_k(k: object) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an int >= 2, got {k!r}")
    return int(k)
