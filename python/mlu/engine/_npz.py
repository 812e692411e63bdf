"""The ``.npz`` model format (documented in :mod:`mlu.engine.io`): writing and checked reading.

It sits below :mod:`~mlu.engine.model` (which offers ``MLP.save``/``MLP.load``) and
:mod:`~mlu.engine.io`, and
imports neither: the model class is passed in.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from typing import Any

import numpy as np

from .._files import atomic_path
from ._validation import activation_spec, check_fits, check_hyperparams, check_model

__all__ = ["FORMAT_TAG", "FORMAT_VERSION", "load_model", "save_model", "write_npz"]

FORMAT_TAG = "mlu.MLP"
FORMAT_VERSION = 1
_REQUIRED = ("format", "version", "sizes", "activation", "classes", "params", "hyperparams")
_OPTIONAL = (
    "torch_dtype",
    "loss_curve",
    "fit_time",
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


def write_npz(fh: Any, arrays: dict[str, Any], step: int = 1 << 20) -> None:
    """Write ``arrays`` to the open binary file ``fh`` as an uncompressed ``.npz``.

    The same file as ``np.savez(fh, **arrays)`` (``np.load`` reads it), but each array's bytes
    go out in slices of ``step`` bytes taken from the array itself. ``np.savez`` copies 16 MiB
    buffers while holding the GIL, which stalls every other Python thread for milliseconds at
    a time; a slice is written with the GIL released. A deletion store writes its checkpoints
    this way beside the requests it serves (benchmarks/store_overhead.py).

    Parameters
    ----------
    fh : binary file object, open for writing
    arrays : dict of str to array_like
        Entries ``name.npy``; no object arrays (the file must load without pickle).
    step : int, default 1 MiB
        Bytes per slice.
    """
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            arr = np.asarray(value)
            if arr.dtype.hasobject:
                raise ValueError(f"cannot save {name!r} of dtype {arr.dtype} without pickle")
            if not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr)
            raw = arr.reshape(-1).view(np.uint8)
            with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                header = np.lib.format.header_data_from_array_1_0(arr)
                try:
                    np.lib.format.write_array_header_1_0(out, header)
                except ValueError:  # a header too long for format 1.0
                    np.lib.format.write_array_header_2_0(out, header)
                for start in range(0, raw.size, step):
                    out.write(raw[start : start + step].data)


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
        "activation": np.array(activation_spec(model.activation, len(model.sizes_) - 2)),
        "classes": _label_array(model.classes_, "classes_"),
        "params": np.ascontiguousarray(model.theta_, dtype=np.float64),
        "hyperparams": np.array(hyper),
    }
    if getattr(model, "torch_dtype_", None):
        arrays["torch_dtype"] = np.array(str(model.torch_dtype_))
    if getattr(model, "loss_curve_", None) is not None:
        arrays["loss_curve"] = np.asarray(model.loss_curve_, dtype=np.float64).reshape(-1)
    if getattr(model, "fit_time_", None) is not None:
        arrays["fit_time"] = np.array(float(model.fit_time_), dtype=np.float64)
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


# Members other than the per-parameter and per-sample arrays are small: a label, a tag, JSON.
_SMALL_MEMBER_BYTES = 1 << 20
_PER_LABEL_BYTES = 4096  # classes and feature names: a generous bound per string


def _refuse(path, why: str) -> ValueError:
    return ValueError(f"{path}: not an mlu model file ({why})")


def _kind_of_file(path) -> str:
    """What the file starts with: "zip", "npy", "pickle" or "other"."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:  # pickle protocol 2..5
        return "pickle"
    return "other"


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path):
    """(shape, fortran, dtype) of a member's .npy header, read without inflating its data."""
    key = info.filename[: -len(".npy")]
    with zf.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as exc:
            raise _refuse(path, f"member {key!r} has no valid .npy header: {exc}") from exc
        header_len = fh.tell()
    if dtype.hasobject:
        raise ValueError(
            f"{path}: unsafe mlu model file: {key!r} holds pickled Python objects, which mlu "
            "never loads"
        )
    nbytes = dtype.itemsize * math.prod(int(n) for n in shape)
    if info.file_size != header_len + nbytes:
        raise _refuse(
            path,
            f"member {key!r} declares {info.file_size} bytes but its header describes "
            f"{header_len + nbytes} ({dtype} {tuple(shape)})",
        )
    return tuple(int(n) for n in shape), fortran, dtype


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with zf.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _read_arrays(path) -> dict[str, np.ndarray]:
    """The archive's arrays, read with pickle disabled, each only after its header is checked.

    Order: the file kind, the member names, the format tag, the layer sizes; then every member's
    declared size and .npy header against the architecture and the total against the memory
    budget; only then is any large array inflated. A deflate bomb is refused from its headers.
    """
    kind = _kind_of_file(path)  # FileNotFoundError, IsADirectoryError, PermissionError pass
    if kind == "npy":
        raise _refuse(path, "a single .npy array, not an .npz archive")
    if kind == "pickle":
        raise _refuse(path, "it holds pickled Python objects, which mlu never loads")
    if kind != "zip":
        raise _refuse(path, "not a zip archive (.npz); is it a model saved by MLP.save?")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _refuse(path, f"cannot read it as .npz: {exc}") from exc
    try:
        with zf:
            return _read_checked(zf, path)
    except (ValueError, MemoryError):
        raise
    except Exception as exc:  # a corrupt member (bad CRC, truncated deflate stream), ...
        raise ValueError(f"{path}: corrupt or unsafe mlu model file: {exc}") from exc


def _read_checked(zf: zipfile.ZipFile, path) -> dict[str, np.ndarray]:
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename
        key = name[: -len(".npy")] if name.endswith(".npy") else None
        if key is None or key in infos:
            raise ValueError(
                f"{path}: unexpected or duplicate member {name!r} in an mlu model file"
            )
        infos[key] = info
    if "format" not in infos:
        raise ValueError(
            f"{path}: not an mlu model file (format tag {FORMAT_TAG!r} expected, found None)"
        )
    unknown = sorted(set(infos) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(f"{path}: unexpected arrays {unknown} in an mlu model file")
    missing = [key for key in _REQUIRED if key not in infos]
    if missing:
        raise ValueError(f"{path}: corrupt mlu model file, missing arrays {missing}")
    small = {"format", "version", "sizes", "activation", "hyperparams", "torch_dtype", "fit_time"}
    for key in small & set(infos):
        if infos[key].file_size > _SMALL_MEMBER_BYTES:
            raise ValueError(
                f"{path}: member {key!r} declares {infos[key].file_size} bytes; at most "
                f"{_SMALL_MEMBER_BYTES} expected"
            )
    # The tag first, so that a foreign archive is not read in full.
    _member_header(zf, infos["format"], path)
    tag = _read_member(zf, infos["format"])
    if tag.dtype.kind != "U" or tag.ndim != 0 or tag.item() != FORMAT_TAG:
        raise ValueError(
            f"{path}: not an mlu model file (format tag {FORMAT_TAG!r} expected, "
            f"found {tag.tolist()!r})"
        )
    arrays = {"format": tag}
    for key in ("version", "sizes"):
        _member_header(zf, infos[key], path)
        arrays[key] = _read_member(zf, infos[key])
    sizes = arrays["sizes"]
    if sizes.dtype.kind not in "iu" or sizes.ndim != 1 or len(sizes) < 2 or (sizes < 1).any():
        raise ValueError(f"{path}: 'sizes' must be >= 2 positive integers, got {sizes.tolist()}")
    sizes_t = tuple(int(s) for s in sizes)
    d, k = sizes_t[0], sizes_t[-1]
    p = sum((a + 1) * b for a, b in zip(sizes_t[:-1], sizes_t[1:]))
    # Shapes the architecture fixes (None: any length), checked before reading.
    expected: dict[str, tuple] = {
        "classes": (k,),
        "feature_names": (d,),
        "scale_offset": (d,),
        "scale_factor": (d,),
    }
    shapes = {}
    total = 0
    for key, info in infos.items():
        if key in arrays:
            continue
        shape, _, dtype = _member_header(zf, info, path)
        if key == "params" and (dtype != np.float64 or shape != (p,)):
            raise ValueError(
                f"{path}: 'params' must be float64 of shape ({p},) for sizes {sizes_t}, got "
                f"{dtype} {shape}"
            )
        if key == "classes" and shape != (k,):
            raise ValueError(f"{path}: 'classes' must hold {k} labels, got {dtype} {shape}")
        want = expected.get(key)
        if want is not None and shape != want:
            raise ValueError(
                f"{path}: {key!r} has shape {shape}, the architecture {sizes_t} needs {want}"
            )
        if key in ("classes", "feature_names") and dtype.itemsize > _PER_LABEL_BYTES:
            raise ValueError(f"{path}: {key!r} has labels of {dtype.itemsize} bytes each")
        if key in ("loss_curve", "trace_loss", "trace_margin") and dtype != np.float64:
            raise ValueError(f"{path}: {key!r} must be float64, got {dtype}")
        shapes[key] = shape
        total += info.file_size
    if "loss_curve" in shapes and len(shapes["loss_curve"]) != 1:
        raise ValueError(f"{path}: 'loss_curve' must be 1-D float64")
    for key in ("trace_loss", "trace_margin"):
        if key in shapes and len(shapes[key]) != 2:
            raise ValueError(f"{path}: 'trace_loss'/'trace_margin' must be 2-D float64, same shape")
    check_fits(
        2.0 * total,  # the inflated arrays and the model's copies of them
        f"{path}: reading the model file (its arrays declare {total:,} bytes)",
    )
    for key, info in infos.items():
        if key not in arrays:
            arrays[key] = _read_member(zf, info)
    return arrays


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
    try:
        activation = activation_spec(activation, len(sizes_t) - 2)
    except ValueError as exc:
        raise ValueError(f"{path}: unknown activation {activation!r} ({exc})") from exc

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
    given = hyper.get("activation", activation)
    if isinstance(given, list):  # a tuple of names comes back from JSON as a list
        given = tuple(given)
    try:
        same = activation_spec(given, len(sizes_t) - 2) == activation
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(f"{path}: 'hyperparams' activation differs from 'activation'")
    # The activation was checked per layer above (activation_spec); the rest as the
    # constructor checks them.
    others = {k: v for k, v in hyper.items() if k != "activation"}
    try:
        others = check_hyperparams(others)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid hyper-parameter: {exc}") from exc
    hyper = {**others, "activation": given}
    if "hidden" in hyper and hyper["hidden"] != sizes_t[1:-1]:
        raise ValueError(
            f"{path}: 'hyperparams' hidden {hyper['hidden']} differs from 'sizes' {sizes_t}"
        )

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
    if "fit_time" in arrays:
        seconds = arrays["fit_time"]
        if seconds.dtype != np.float64 or seconds.shape != () or not seconds >= 0:
            raise ValueError(f"{path}: 'fit_time' must be one non-negative float64")
        model.fit_time_ = float(seconds)
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
