"""The ``.npz`` model format (documented in :mod:`mlu.io`): writing and checked reading.

It sits below :mod:`mlu.model` (which offers ``MLP.save``/``MLP.load``) and :mod:`mlu.io`, and
imports neither: the model class is passed in.
"""

from __future__ import annotations

import json
import os
from typing import Any, BinaryIO

import numpy as np

from ._files import atomic_path
from ._validation import ACTIVATIONS, check_model

__all__ = ["FORMAT_TAG", "FORMAT_VERSION", "load_model", "save_model"]

FORMAT_TAG = "mlu.MLP"
FORMAT_VERSION = 1
_REQUIRED = ("format", "version", "sizes", "activation", "classes", "params", "hyperparams")
_OPTIONAL = (
    "torch_dtype",
    "loss_curve",
    "trace_loss",
    "trace_margin",
    "feature_names",
    "scale_offset",
    "scale_factor",
)


def _json_default(value: Any) -> Any:
    # NumPy scalars and arrays in hyper-parameters (e.g. hidden=np.array([50])) become JSON
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"hyper-parameter value {value!r} cannot be stored in JSON")


def _label_array(values, what: str) -> np.ndarray:
    """Labels as an array that needs no pickle: numbers, bools, str or bytes."""
    arr = np.asarray(values)
    if arr.dtype == object:
        if all(isinstance(v, str) for v in arr.ravel()):
            arr = arr.astype(str)
        else:
            raise ValueError(
                f"cannot save {what} of mixed or non-string object type without pickle: "
                f"{arr.tolist()!r}"
            )
    if arr.dtype.kind not in "biufUS":
        raise ValueError(f"cannot save {what} of dtype {arr.dtype}")
    return arr


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write a fitted model to ``path`` in the documented ``.npz`` format (see module docs).

    The file is written under exactly the given name (no ``.npz`` is appended) and replaced
    atomically, so an existing file is never left half-written.

    Raises
    ------
    TypeError
        ``model`` is not an :class:`mlu.MLP`.
    sklearn.exceptions.NotFittedError
        The model is not fitted.
    ValueError
        A hyper-parameter or the classes cannot be stored without pickle.
    """
    check_model(model)
    try:
        hyper = json.dumps(model.get_params(deep=False), default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot save the hyper-parameters as JSON: {exc}") from exc
    # Any: numpy's stub of savez(**arrays) would have "allow_pickle" be a bool.
    arrays: dict[str, Any] = {
        "format": np.array(FORMAT_TAG),
        "version": np.array(FORMAT_VERSION, dtype=np.int64),
        "sizes": np.array(model.sizes_, dtype=np.int64),
        "activation": np.array(str(model.activation)),
        "classes": _label_array(model.classes_, "classes_"),
        "params": np.ascontiguousarray(model.theta_, dtype=np.float64),
        "hyperparams": np.array(hyper),
    }
    if getattr(model, "torch_dtype_", None):
        arrays["torch_dtype"] = np.array(str(model.torch_dtype_))
    if getattr(model, "loss_curve_", None) is not None:
        arrays["loss_curve"] = np.asarray(model.loss_curve_, dtype=np.float64).reshape(-1)
    trace = getattr(model, "trace_", None)
    if trace is not None and trace.describes(model.theta_):  # a stale record is not written
        arrays["trace_loss"] = np.asarray(trace.loss, dtype=np.float64)
        arrays["trace_margin"] = np.asarray(trace.margin, dtype=np.float64)
    if getattr(model, "scale_offset_", None) is not None:
        arrays["scale_offset"] = np.asarray(model.scale_offset_, dtype=np.float64)
        arrays["scale_factor"] = np.asarray(model.scale_factor_, dtype=np.float64)
    if getattr(model, "feature_names_in_", None) is not None:
        arrays["feature_names"] = _label_array(model.feature_names_in_, "feature_names_in_")

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _read_arrays(path) -> dict[str, np.ndarray]:
    """The archive's arrays, read with pickle disabled, once its format tag has been checked."""
    # Our own handle: np.load leaves the file it opened unclosed when the zip is corrupt.
    with open(path, "rb") as fh:
        return _read_open_arrays(path, fh)


def _read_open_arrays(path, fh: BinaryIO) -> dict[str, np.ndarray]:
    try:
        data = np.load(fh, allow_pickle=False)
    except Exception as exc:  # a pickle, a truncated or foreign file: all refused the same way
        why = (
            "it holds pickled Python objects, which mlu never loads"
            if "pickle" in str(exc).lower()
            else f"cannot read it as .npz: {exc}"
        )
        raise ValueError(f"{path}: not an mlu model file ({why})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path}: not an mlu model file (a single .npy array, not an .npz archive)"
        )
    try:
        with data:
            # the tag first, so that a foreign archive is not read in full
            tag = data["format"] if "format" in data.files else None
            if tag is None or tag.dtype.kind != "U" or tag.ndim != 0 or tag.item() != FORMAT_TAG:
                raise _ForeignFile(None if tag is None else tag.tolist())
            return {key: data[key] for key in data.files}
    except _ForeignFile as exc:
        raise ValueError(
            f"{path}: not an mlu model file (format tag {FORMAT_TAG!r} expected, "
            f"found {exc.args[0]!r})"
        ) from None
    except Exception as exc:  # a corrupt member, an object array (needs pickle), ...
        raise ValueError(f"{path}: corrupt or unsafe mlu model file: {exc}") from exc


class _ForeignFile(Exception):
    pass


def _scalar_str(arrays: dict[str, np.ndarray], key: str, path) -> str:
    value = arrays[key]
    if value.dtype.kind != "U" or value.ndim != 0:
        raise ValueError(
            f"{path}: {key!r} must be a unicode scalar, got {value.dtype} {value.shape}"
        )
    return str(value.item())


def load_model(path: str | os.PathLike, cls: type[Any], trace_type: type) -> Any:
    """Read a model written by :func:`save_model`; pickle is never loaded.

    ``cls`` is the model class (:class:`mlu.MLP`) and ``trace_type`` that of its ``trace_``
    (:class:`mlu.TrainingTrace`), passed in so that this module does not import the model.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a valid mlu model file (the message names the file and the problem).
    """
    arrays = _read_arrays(path)
    missing = [key for key in _REQUIRED if key not in arrays]
    if missing:
        raise ValueError(f"{path}: corrupt mlu model file, missing arrays {missing}")
    unknown = sorted(set(arrays) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(f"{path}: unexpected arrays {unknown} in an mlu model file")
    version = arrays["version"]
    if version.dtype.kind not in "iu" or version.ndim != 0:
        raise ValueError(f"{path}: 'version' must be an integer scalar")
    if int(version) != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported mlu file format version {int(version)} (this mlu reads "
            f"version {FORMAT_VERSION})"
        )

    sizes = arrays["sizes"]
    if sizes.dtype.kind not in "iu" or sizes.ndim != 1 or len(sizes) < 2 or (sizes < 1).any():
        raise ValueError(f"{path}: 'sizes' must be >= 2 positive integers, got {sizes.tolist()}")
    sizes_t = tuple(int(s) for s in sizes)
    activation = _scalar_str(arrays, "activation", path)
    if activation not in ACTIVATIONS:
        raise ValueError(f"{path}: unknown activation {activation!r}")

    classes = arrays["classes"]
    if classes.dtype.kind not in "biufUS" or classes.shape != (sizes_t[-1],):
        raise ValueError(
            f"{path}: 'classes' must hold {sizes_t[-1]} labels, got {classes.dtype} {classes.shape}"
        )
    if len(np.unique(classes)) != len(classes) or not np.array_equal(np.sort(classes), classes):
        raise ValueError(f"{path}: 'classes' must be distinct and sorted, got {classes.tolist()}")

    params = arrays["params"]
    p = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes_t[:-1], sizes_t[1:]))
    if params.dtype != np.float64 or params.shape != (p,):
        raise ValueError(
            f"{path}: 'params' must be float64 of shape ({p},) for sizes {sizes_t}, got "
            f"{params.dtype} {params.shape}"
        )
    if not np.isfinite(params).all():
        raise ValueError(f"{path}: 'params' contains NaN or inf")

    try:
        hyper = json.loads(_scalar_str(arrays, "hyperparams", path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: 'hyperparams' is not valid JSON: {exc}") from exc
    if not isinstance(hyper, dict):
        raise ValueError(f"{path}: 'hyperparams' must be a JSON object")
    allowed = set(cls().get_params(deep=False))
    if set(hyper) - allowed:
        raise ValueError(f"{path}: unknown hyper-parameters {sorted(set(hyper) - allowed)}")
    if isinstance(hyper.get("hidden"), list):
        hyper["hidden"] = tuple(hyper["hidden"])
    if hyper.get("activation", activation) != activation:
        raise ValueError(f"{path}: 'hyperparams' activation differs from 'activation'")
    hyper["activation"] = activation

    try:
        model = cls.from_params(sizes_t, params, classes=classes, **hyper)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc

    if "torch_dtype" in arrays:
        model.torch_dtype_ = _scalar_str(arrays, "torch_dtype", path)
    if "loss_curve" in arrays:
        curve = arrays["loss_curve"]
        if curve.dtype != np.float64 or curve.ndim != 1:
            raise ValueError(f"{path}: 'loss_curve' must be 1-D float64")
        model.loss_curve_ = curve.tolist()
    if ("trace_loss" in arrays) != ("trace_margin" in arrays):
        raise ValueError(f"{path}: 'trace_loss' and 'trace_margin' must come together")
    if "trace_loss" in arrays:
        loss, margin = arrays["trace_loss"], arrays["trace_margin"]
        if loss.dtype != np.float64 or loss.ndim != 2 or margin.shape != loss.shape:
            raise ValueError(f"{path}: 'trace_loss'/'trace_margin' must be 2-D float64, same shape")
        # saved together with θ, so it describes the loaded parameters
        model.trace_ = trace_type(loss, margin.astype(np.float64), model.theta_.copy())
    elif "loss_curve" in arrays:
        model.trace_ = None  # fitted without track=True
    if ("scale_offset" in arrays) != ("scale_factor" in arrays):
        raise ValueError(f"{path}: 'scale_offset' and 'scale_factor' must come together")
    if "scale_offset" in arrays:
        offset, factor = arrays["scale_offset"], arrays["scale_factor"]
        for key, arr in (("scale_offset", offset), ("scale_factor", factor)):
            if arr.dtype != np.float64 or arr.shape != (sizes_t[0],) or not np.isfinite(arr).all():
                raise ValueError(f"{path}: {key!r} must be {sizes_t[0]} finite float64 values")
        model.scale_offset_, model.scale_factor_ = offset.copy(), factor.copy()
    if "feature_names" in arrays:
        names = arrays["feature_names"]
        if names.dtype.kind != "U" or names.shape != (sizes_t[0],):
            raise ValueError(f"{path}: 'feature_names' must be {sizes_t[0]} strings")
        model.feature_names_in_ = names.astype(object)
    return model
