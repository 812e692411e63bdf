"""Checks at the Python boundary: every public entry point validates its arrays here, so that
bad input gets a clear exception that names what was wrong instead of a crash in the core."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from sklearn.exceptions import NotFittedError

from ..exceptions import HessianTooLargeError
from ._memory import memory_budget_bytes

PARAMS_CHOICES = ("all", "last")
CURVATURE_CHOICES = ("hessian", "ggn")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
# What makes a model an mlu.MLP for check_model (duck-typed: this module sits below
# mlu.engine.model).
_MLP_METHODS = ("hessian", "hessian_operator", "last_layer_slice", "losses", "from_layers")


def activation_spec(activation, hidden_layers: int) -> str:
    """Check an activation setting and return the core's form of it.

    Parameters
    ----------
    activation : str or sequence of str
        One name for every hidden layer (``"tanh"``), or one per hidden layer from the input
        up: a sequence (``("tanh", "relu")``) or a comma-separated string (``"tanh,relu"``).
    hidden_layers : int
        Number of hidden layers of the network.

    Returns
    -------
    str
        ``"tanh"`` or ``"tanh,relu"``: what the ``_core`` functions take.
    """
    if isinstance(activation, str):
        names = tuple(part.strip() for part in activation.split(","))
    elif isinstance(activation, (tuple, list)) and all(isinstance(a, str) for a in activation):
        names = tuple(activation)
    else:
        raise TypeError(f"activation must be a string or a sequence of strings, got {activation!r}")
    for name in names:
        check_choice(name, "activation", ACTIVATIONS)
    if len(names) != 1 and len(names) != hidden_layers:
        raise ValueError(
            f"activation gives {len(names)} names for {hidden_layers} hidden layers: give one "
            "name for all of them, or one per hidden layer"
        )
    return ",".join(names)


def check_choice(value: str, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def as_real_array(values, name: str) -> np.ndarray:
    """``values`` as a real numeric array: the one coercion rule of every entry point.

    - bool, integer and float arrays (any width, any layout) are accepted;
    - an object array is accepted when every element is a real number (``numbers.Real``, e.g.
      Python or NumPy scalars from a pandas frame) and converted to float64;
    - complex input (complex dtype, or a complex element in an object array) is refused with a
      TypeError, never silently truncated to its real part;
    - anything else (strings, bytes, dates, None, ragged nesting) is refused with a TypeError
      or ValueError naming ``name``.
    """
    try:
        arr = np.asarray(values)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from exc
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype == object:
        for v in arr.flat:
            if isinstance(v, numbers.Complex) and not isinstance(v, numbers.Real):
                raise TypeError(f"{name} must be real, got the complex value {v!r}")
            if not isinstance(v, numbers.Real):
                raise TypeError(
                    f"{name} must hold numbers, got an element {v!r} of type "
                    f"{type(v).__name__} (an argument must be a real number, not a string or "
                    "another object that only looks like a number)"
                )
        return arr.astype(np.float64)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr


def as_features(X, n_features: int | None = None, name: str = "X") -> np.ndarray:
    """Return X as a C-contiguous float64 array of shape (n, d), checking it is finite.

    float32, integer, bool, numeric object and non-contiguous inputs are converted (copied);
    complex and non-numeric inputs are refused (see :func:`as_real_array`).
    """
    arr = as_real_array(X, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {arr.shape}, need at least one sample")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, the model expects {n_features}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})"
        )
    return arr


def as_labels(y, n: int, name: str = "y") -> np.ndarray:
    """Return y as a 1-D array of length n (values unchanged), checking it holds no NaN."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels for {n} samples")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def as_class_ids(y: object, what: str = "y") -> np.ndarray:
    """``y`` as a fresh int64 array, shape (n,); rejects non-integer and negative labels."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of labels, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        pass
    elif arr.dtype.kind == "f":
        # Integer-valued floats (e.g. read from a CSV file) are fine; 1.5 is not.
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{what} contains non-integer labels; labels must be 0..k-1")
    else:
        raise ValueError(f"{what} must hold integer labels, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{what} contains negative labels (min {arr.min()}); must be 0..k-1")
    return np.array(arr, dtype=np.int64)  # always a copy


def encode_labels(y: np.ndarray, classes: np.ndarray, name: str = "y") -> np.ndarray:
    """Map labels onto 0..k-1 by their position in `classes`; unknown labels are an error."""
    idx = np.searchsorted(classes, y)
    idx = np.clip(idx, 0, len(classes) - 1)
    bad = classes[idx] != y
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{first}] = {np.asarray(y[first]).item()!r} is not one of the model's classes "
            f"{classes.tolist()} (label out of range)"
        )
    return idx.astype(np.int64)


def as_vector(v, p: int, name: str = "v") -> np.ndarray:
    """v as a finite float64 vector of shape (p,) (coerced like X, see :func:`as_real_array`)."""
    arr = as_real_array(v, name)
    if arr.ndim != 1 or arr.shape[0] != p:
        raise ValueError(f"{name} must have shape ({p},), got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def available_memory_bytes() -> int:
    """Memory the process can still use: the smaller of MemAvailable, the cgroup's headroom
    and the RLIMIT_AS headroom (see :mod:`mlu.engine._memory`)."""
    return memory_budget_bytes()


#: Share of the budget one operation may take: the rest is for the interpreter, the caller's
#: arrays and the allocator's slack.
SAFE_FRACTION = 0.8


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def check_fits(need: float, what: str, advice: str = "") -> None:
    """Raise MemoryError when ``need`` bytes exceed the safe share of the memory budget.

    The message gives the estimate, what it is for and the budget.
    """
    budget = SAFE_FRACTION * available_memory_bytes()
    if need > budget:
        raise MemoryError(
            f"{what} needs about {_gib(need)}, more than the {_gib(budget)} that can be used "
            f"safely (80% of the memory budget: available memory, cgroup and address-space "
            f"limits)." + (f" {advice}" if advice else "")
        )


def rows_that_fit(n: int, bytes_per_row: float, fixed: float, what: str) -> int:
    """Rows per chunk so that ``fixed + rows * bytes_per_row`` fits the budget (at most n).

    Raises MemoryError when not even one row fits.
    """
    budget = SAFE_FRACTION * available_memory_bytes() - fixed
    rows = int(budget // max(bytes_per_row, 1.0)) if budget > 0 else 0
    if rows < 1:
        check_fits(fixed + bytes_per_row, f"{what} (one sample at a time)")
    return max(1, min(n, rows))


def check_matrix_fits(p: int, copies: float = 1.0, what: str = "the Hessian") -> None:
    """Raise HessianTooLargeError when `copies` p x p float64 matrices would not fit in memory."""
    need = copies * p * p * 8
    avail = available_memory_bytes()
    if need > SAFE_FRACTION * avail:
        raise HessianTooLargeError(
            f"{what} for p = {p} parameters needs {need / 2**30:.1f} GiB "
            f"({copies:g} x p^2 float64), more than the {SAFE_FRACTION * avail / 2**30:.1f} GiB "
            "that can be used safely (80% of the memory budget: available memory, cgroup and "
            "address-space limits). Use params='last', a CG solve on Hessian-vector products "
            "(solver='cg'), or a smaller model."
        )


# ---------------------------------------------------------------------------- hyper-parameters
def check_integer(value, name: str, minimum: int | None = None) -> int:
    """``value`` as an int: Python and NumPy integers only (not bool, not 2.5, not 2.0)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_real(
    value,
    name: str,
    low: float,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``value`` as a finite float in [low, high] (bounds made open by the flags)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    ok = math.isfinite(value) and (value > low if open_low else value >= low)
    ok = ok and (value < high if open_high else value <= high)
    if not ok:
        if math.isinf(high):
            where = f"{'>' if open_low else '>='} {low:g}"
        else:
            where = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{name} must be a finite number {where}, got {value!r}")
    return value


def check_hidden(hidden) -> tuple[int, ...]:
    """Hidden widths as a tuple of positive ints; one int means one hidden layer."""
    if isinstance(hidden, (numbers.Integral,)) and not isinstance(hidden, (bool, np.bool_)):
        hidden = (hidden,)
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
        raise TypeError(f"hidden must be a sequence of layer widths, got {hidden!r}")
    hidden = tuple(check_integer(h, f"hidden[{i}]") for i, h in enumerate(hidden))
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden layer sizes must be positive, got {hidden}")
    return hidden


def _checked_activation(value: Any, hidden: Any) -> Any:
    """An activation setting checked by :func:`activation_spec` (names, and their count
    against ``hidden`` when given); returned as given (a list as a tuple)."""
    if hidden is not None:
        count = len(check_hidden(hidden))
    elif isinstance(value, str):
        count = len(value.split(","))
    else:
        count = len(value) if isinstance(value, (tuple, list)) else 1
    activation_spec(value, count)
    return tuple(value) if isinstance(value, list) else value


def check_hyperparams(params: dict) -> dict:
    """Validate MLP hyper-parameters (``get_params()``) and return them normalised.

    Used by ``fit``, ``from_layers`` and ``load``: a model never holds a value its training
    would refuse (an ``l2`` of NaN or -5, a width of 2.5, an infinite learning rate).
    """
    out = dict(params)
    checks = {
        "hidden": check_hidden,
        "activation": lambda v: _checked_activation(v, out.get("hidden")),
        "l2": lambda v: check_real(v, "l2", 0.0),
        "epochs": lambda v: check_integer(v, "epochs", 0),
        "lr": lambda v: check_real(v, "lr", 0.0, open_low=True),
        "momentum": lambda v: check_real(v, "momentum", 0.0, 1.0, open_high=True),
        "batch_size": lambda v: check_integer(v, "batch_size", 1),
        "seed": lambda v: check_integer(v, "seed", 0),
    }
    for key, check in checks.items():
        if key in out:
            out[key] = check(out[key])
    for key in ("track", "warm_start", "verbose"):
        if key in out and not isinstance(out[key], (bool, np.bool_)):
            raise TypeError(f"{key} must be True or False, got {out[key]!r}")
        if key in out:
            out[key] = bool(out[key])
    return out


def check_model(model: Any) -> Any:
    """Check that ``model`` is a fitted :class:`mlu.MLP` (or a subclass); return it.

    Recognised by the methods every consumer calls, so that this leaf module needs no import
    of :mod:`mlu.engine.model` (which imports it).

    Raises
    ------
    TypeError
        Not an MLP.
    sklearn.exceptions.NotFittedError
        An MLP that was never fitted.
    """
    if not all(callable(getattr(type(model), m, None)) for m in _MLP_METHODS):
        raise TypeError(f"model must be a fitted mlu.MLP, got {type(model).__name__}")
    if not hasattr(model, "theta_") or not hasattr(model, "classes_"):
        raise NotFittedError(
            f"model must be a fitted mlu.MLP (call fit first), got an unfitted "
            f"{type(model).__name__}"
        )
    return model


def check_data(model: Any, X, y) -> tuple[np.ndarray, np.ndarray]:
    """X as float64 (n, d) and y (n,) checked against the model's features and classes."""
    X = as_features(X, model.n_features_in_)
    y = as_labels(y, X.shape[0])
    encode_labels(y, model.classes_)  # raises on labels the model does not know
    return X, y


def check_forget(forget, n: int, allow_all: bool = False) -> np.ndarray:
    """Validate a forget set and return it as a boolean mask of shape (n,).

    Parameters
    ----------
    forget : array-like of int, shape (m,), or of bool, shape (n,)
        Indices into the training set (0 ≤ i < n, no duplicates) or a boolean mask.
    n : int
        Number of training samples.
    allow_all : bool
        Whether F may be the whole data set.

    Returns
    -------
    ndarray of bool, shape (n,)

    Raises
    ------
    ValueError
        Empty forget set, duplicated or out-of-range indices, a mask of the wrong length,
        or (unless ``allow_all``) a forget set that is the whole data.
    TypeError
        Neither integers nor booleans.
    """
    arr = np.asarray(forget)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"forget must be 1-D (indices or a boolean mask), got shape {arr.shape}")
    if arr.dtype == bool:
        if arr.shape[0] != n:
            raise ValueError(
                f"forget is a boolean mask of length {arr.shape[0]}, but there are {n} samples"
            )
        mask = arr.copy()
    else:
        if arr.size == 0:
            raise ValueError("forget is empty: give at least one sample to forget")
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"forget must hold integer indices or booleans, got dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            raise ValueError(
                f"forget index {int(arr[np.flatnonzero(bad)[0]])} is out of range for {n} "
                f"samples (indices must be in 0..{n - 1})"
            )
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"forget has duplicated indices, e.g. {int(uniq[np.argmax(counts > 1)])}"
            )
        mask = np.zeros(n, dtype=bool)
        mask[arr] = True
    if not mask.any():
        raise ValueError("forget is empty: the mask selects no sample")
    if mask.all() and not allow_all:
        raise ValueError(
            f"forget holds all {n} samples: nothing would be left to learn from "
            "(the retained set must not be empty)"
        )
    return mask


def check_damping(damping) -> float:
    """damping δ as a float; it must be a finite number >= 0."""
    try:
        value = float(damping)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"damping must be a number, got {damping!r}") from exc
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
    return value


def check_int(value, name: str, low: int = 1) -> int:
    """``value`` as an int; it must be an integer >= ``low`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_positive_int(value, name: str) -> int:
    """``value`` as an int; it must be an integer >= 1 (not a bool)."""
    return check_int(value, name, low=1)
