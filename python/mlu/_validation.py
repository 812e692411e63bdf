"""Checks at the Python boundary: every public entry point validates its arrays here, so that
bad input gets a clear exception that names what was wrong instead of a crash in the core."""

from __future__ import annotations

import os

import numpy as np

PARAMS_CHOICES = ("all", "last")
CURVATURE_CHOICES = ("hessian", "ggn")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")


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
        raise TypeError(
            f"activation must be a string or a sequence of strings, got {activation!r}"
        )
    for name in names:
        check_choice(name, "activation", ACTIVATIONS)
    if len(names) != 1 and len(names) != hidden_layers:
        raise ValueError(
            f"activation gives {len(names)} names for {hidden_layers} hidden layers: give one "
            "name for all of them, or one per hidden layer"
        )
    return ",".join(names)


class HessianTooLargeError(MemoryError):
    """The p x p matrix asked for would not fit in memory."""


def check_choice(value: str, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def as_features(X, n_features: int | None = None, name: str = "X") -> np.ndarray:
    """Return X as a C-contiguous float64 array of shape (n, d), checking it is finite.

    float32, integer and non-contiguous inputs are converted (copied), never rejected.
    """
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
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
    arr = np.asarray(v)
    if arr.ndim != 1 or arr.shape[0] != p:
        raise ValueError(f"{name} must have shape ({p},), got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def available_memory_bytes() -> int:
    """Memory the process can still use (MemAvailable), falling back to physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_matrix_fits(p: int, copies: float = 1.0, what: str = "the Hessian") -> None:
    """Raise HessianTooLargeError when `copies` p x p float64 matrices would not fit in memory."""
    need = copies * p * p * 8
    avail = available_memory_bytes()
    if need > 0.8 * avail:
        raise HessianTooLargeError(
            f"{what} for p = {p} parameters needs {need / 2**30:.1f} GiB "
            f"({copies:g} x p^2 float64), more than the {0.8 * avail / 2**30:.1f} GiB that can be "
            "used safely. Use params='last', a CG solve on Hessian-vector products "
            "(solver='cg'), or a smaller model."
        )
