"""Saving and loading :class:`mlu.MLP` models as portable NumPy ``.npz`` files.

The file is a plain ``.npz`` archive (readable by ``np.load(path, allow_pickle=False)`` in any
language with an npz reader); no array holds Python objects, so loading never unpickles and
never runs code. Arrays (format version 1):

================  ===========================  =================================================
key               dtype, shape                 content
================  ===========================  =================================================
``format``        unicode, ()                  the tag ``"mlu.MLP"``
``version``       int64, ()                    ``1``
``sizes``         int64, (L+1,)                layer widths ``(d, *hidden, k)``
``activation``    unicode, ()                  ``"relu"``, ``"tanh"`` or ``"sigmoid"``
``classes``       int/uint/float/bool/unicode  the k labels (sorted), ``classes_``
                  or bytes, (k,)
``params``        float64, (p,)                flat θ: W1 (row-major, (out, in)), b1, W2, b2, …
``hyperparams``   unicode, ()                  JSON object of ``get_params()``
``torch_dtype``   unicode, () — optional       e.g. ``"float32"`` (``torch_dtype_``)
``loss_curve``    float64, (epochs,) — opt.    ``loss_curve_``
``fit_time``      float64, () — optional       ``fit_time_`` (seconds of training)
``trace_loss``,   float64, (epochs, n) — opt.  ``trace_`` (models fitted with ``track=True``)
``trace_margin``
``feature_names`` unicode, (d,) — optional     ``feature_names_in_``
``scale_offset``, float64, (d,) — optional     the input transform of ``MLP(scale=...)``
``scale_factor``
================  ===========================  =================================================

Any file that does not match this (not an npz archive, a pickle, an object array, a missing
key, another tag or version, inconsistent shapes, non-finite parameters) is refused with a
ValueError that names the file.
"""

from __future__ import annotations

import os

from ._npz import FORMAT_TAG, FORMAT_VERSION
from ._npz import load_model as _read_model
from ._npz import save_model as _write_model
from .model import MLP, TrainingTrace

__all__ = ["FORMAT_TAG", "FORMAT_VERSION", "load_model", "save_model"]


def save_model(model: MLP, path: str | os.PathLike) -> None:
    """Write a fitted model to ``path`` in the documented ``.npz`` format (see module docs).

    The file is written under exactly the given name (no ``.npz`` is appended) and replaced
    atomically, so an existing file is never left half-written. Same as ``model.save(path)``.

    Raises
    ------
    TypeError
        ``model`` is not an :class:`mlu.MLP`.
    sklearn.exceptions.NotFittedError
        The model is not fitted.
    ValueError
        A hyper-parameter or the classes cannot be stored without pickle.
    """
    _write_model(model, path)


def load_model(path: str | os.PathLike) -> MLP:
    """Read a model written by :func:`save_model`; pickle is never loaded.

    Same as ``MLP.load(path)``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a valid mlu model file (the message names the file and the problem).
    """
    return _read_model(path, MLP, TrainingTrace)
