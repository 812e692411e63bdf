"""Writing a fitted MLP as a PyTorch module; torch is imported only when asked for.

Below :mod:`~mlu.engine.model` (``MLP.to_torch``) and :mod:`~mlu.engine.interop` (``to_torch``),
importing
neither.
"""

from __future__ import annotations

from typing import Any

from ._validation import activation_spec

_TORCH_HINT = "PyTorch is needed for this: pip install mlu[torch] (or pip install torch)"

__all__ = ["import_torch", "torch_sequential"]


def import_torch() -> Any:
    """The torch module, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_TORCH_HINT) from exc
    return torch


def torch_sequential(model: Any, dtype: Any = None) -> Any:
    """``nn.Sequential(Linear, act, …, Linear)`` holding copies of a fitted model's layers.

    See :func:`mlu.engine.interop.to_torch` for the parameters; the model is not checked here.
    """
    torch = import_torch()
    if dtype is None:
        dtype = getattr(model, "torch_dtype_", None) or torch.float64
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype name (e.g. 'float32')")
        dtype = resolved
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    acts = {
        "relu": torch.nn.ReLU,
        "tanh": torch.nn.Tanh,
        "sigmoid": torch.nn.Sigmoid,
        "identity": torch.nn.Identity,
    }
    modules = []
    layers = model.layers
    # One name per hidden layer (a model may give one for all of them).
    names = activation_spec(model.activation, len(layers) - 1).split(",")
    names = names * (len(layers) - 1) if len(names) == 1 else names
    offset = getattr(model, "scale_offset_", None)
    if offset is not None:
        # The input transform (x − o) ⊙ s folds into the first layer: W' = W diag(s), b' = b − W' o
        W, b = layers[0]
        W = W * model.scale_factor_
        layers[0] = (W, b - W @ offset)
    for i, (W, b) in enumerate(layers):
        # skip_init: no default initialisation, so torch's global RNG is left untouched
        lin = torch.nn.utils.skip_init(
            torch.nn.Linear, W.shape[1], W.shape[0], dtype=dtype, device="cpu"
        )
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        modules.append(lin)
        if i < len(layers) - 1:
            modules.append(acts[names[i]]())
    return torch.nn.Sequential(*modules)
