"""The arguments of a core call for a fitted MLP: checked data and the selected parameters.

Shared by :mod:`mlu.engine.model` and :mod:`mlu.detect`; it reads only a model's public fitted
attributes (``theta_``, ``sizes_``, ``activation``, ``classes_``, ``n_features_in_``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from ._validation import (
    PARAMS_CHOICES,
    activation_spec,
    as_features,
    as_labels,
    check_choice,
    encode_labels,
)

__all__ = ["checked_Xy", "core_args", "core_problem", "scaled"]


def core_args(model: Any) -> tuple[np.ndarray, list[int], str]:
    """(theta of shape (p,), layer sizes, activation): what every core call starts with.

    The activation is the core's string: one name, or one per hidden layer (``"tanh,relu"``).
    """
    activation = activation_spec(model.activation, len(model.sizes_) - 2)
    return model.theta_, list(model.sizes_), activation


def scaled(model: Any, X: np.ndarray) -> np.ndarray:
    """X as the network sees it: the model's fitted input transform (``MLP(scale=...)``) applied.

    The transform is fixed, so derivatives w.r.t. θ are those of the network on the new X.
    """
    offset = getattr(model, "scale_offset_", None)
    if offset is None:
        return X
    return np.ascontiguousarray((X - offset) * model.scale_factor_)


def checked_Xy(model: Any, X, y) -> tuple[np.ndarray, np.ndarray]:
    """X as float64 (n, d) and y encoded to 0..k-1 (n,), validated against a fitted model."""
    X = as_features(X, model.n_features_in_)
    return X, encode_labels(as_labels(y, X.shape[0]), model.classes_)


def core_problem(
    model: Any, X, y, params: str
) -> tuple[np.ndarray, list[int], str, np.ndarray, np.ndarray]:
    """(theta, sizes, activation, X, y) of the problem that `params` selects.

    For params="last" the frozen layers are applied once and the last layer is a
    multinomial logistic regression on their output features.
    """
    check_choice(params, "params", PARAMS_CHOICES)
    X, yk = checked_Xy(model, X, y)
    X = scaled(model, X)
    if params == "all":
        return (*core_args(model), X, yk)
    F = _core.hidden_features(*core_args(model), X)
    return (model.theta_[model.last_layer_slice()].copy(), list(model.sizes_[-2:]), "relu", F, yk)
