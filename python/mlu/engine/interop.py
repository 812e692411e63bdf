"""Conversion between :class:`mlu.MLP` and PyTorch / scikit-learn networks.

- :func:`from_torch` reads a PyTorch ``nn.Sequential`` of ``Linear`` layers and their
  activations (one per hidden layer, each its own); :func:`to_torch` (also ``MLP.to_torch``)
  writes one back. The MLP's logits are the module's outputs, so the module must end with a
  ``Linear`` (no Softmax).
- :func:`from_sklearn` reads a fitted scikit-learn ``MLPClassifier``.

PyTorch is optional: it is imported only when a PyTorch function is called, and missing it
gives an ImportError that says how to install it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._torch import import_torch, torch_sequential
from ._validation import check_model
from .model import MLP

if TYPE_CHECKING:  # only for annotations: importing mlu must not import torch
    import torch

__all__ = ["from_sklearn", "from_torch", "to_torch"]


# ---------------------------------------------------------------------------- PyTorch → mlu
def _flatten_modules(module, torch, prefix: str = "") -> list[tuple[str, Any]]:
    """The leaf modules of (nested) Sequentials in call order, each with its dotted name."""
    out = []
    for name, child in module.named_children():
        qualified = f"{prefix}{name}"
        if isinstance(child, torch.nn.Sequential):
            out += _flatten_modules(child, torch, qualified + ".")
        else:
            out.append((qualified, child))
    return out


def _unwrap(module, torch) -> tuple[Any, bool]:
    """The Sequential to read and whether it sits inside a wrapper module."""
    if isinstance(module, torch.nn.Sequential):
        # a Sequential subclass with its own forward is checked like a wrapper
        return module, type(module).forward is not torch.nn.Sequential.forward
    children = list(module.children())
    own = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
    if len(children) == 1 and isinstance(children[0], torch.nn.Sequential) and not own:
        return children[0], True
    raise ValueError(
        f"from_torch needs an nn.Sequential, or a module whose only child is one; got "
        f"{type(module).__name__} with {len(children)} children "
        f"({', '.join(type(c).__name__ for c in children) or 'none'})"
        + (" and parameters or buffers of its own" if own else "")
    )


def _where(i: int, name: str, layer) -> str:
    return f"layer {i} ({name!r}: {layer!r})"


def _parse_layers(leaves, torch) -> tuple[list, str | tuple[str, ...] | None, list[int]]:
    """Check the layer grammar ``[Flatten] Linear (act Linear)*`` and return its parts.

    Returns the Linear modules, the activation (one name when all hidden layers share it, else
    a tuple of one name per hidden layer; None without hidden layers) and the positions of the
    Linears (for error messages). Dropout and Identity are skipped: they are
    the identity at evaluation time, which is what the converted model computes.
    """
    nn = torch.nn
    acts = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
    linears: list[Any] = []
    positions: list[int] = []
    activations = []  # (position, name, layer, kind), one per hidden layer
    expect_linear = True  # the next layer that computes must be a Linear
    for i, (name, layer) in enumerate(leaves):
        kind = type(layer)
        if isinstance(layer, (nn.Identity, nn.Dropout)):
            continue
        if kind is nn.Flatten:
            if linears:
                raise ValueError(
                    f"{_where(i, name, layer)}: Flatten is supported only before the first Linear"
                )
            if layer.start_dim != 1 or layer.end_dim != -1:
                raise ValueError(
                    f"{_where(i, name, layer)}: only Flatten(start_dim=1, end_dim=-1) is "
                    "supported (it keeps the batch dimension)"
                )
            continue
        if kind is nn.Linear:
            if not expect_linear:
                raise ValueError(
                    f"{_where(i, name, layer)}: two Linear layers without an activation in "
                    "between are not supported (mlu applies the activation after every hidden "
                    "layer)"
                )
            if layer.bias is None:
                raise ValueError(
                    f"{_where(i, name, layer)}: Linear without bias is not supported "
                    "(mlu layers always have a bias)"
                )
            linears.append(layer)
            positions.append(i)
            expect_linear = False
            continue
        if kind in acts:
            if expect_linear:
                what = "the first layer" if not linears else "two activations in a row"
                raise ValueError(
                    f"{_where(i, name, layer)}: an activation is not supported here ({what}); "
                    "expected a Linear"
                )
            activations.append((i, name, layer, acts[kind]))
            expect_linear = True
            continue
        hint = ""
        if isinstance(layer, (nn.Softmax, nn.LogSoftmax)):
            hint = " (mlu's outputs are logits: drop the final Softmax/LogSoftmax)"
        raise ValueError(
            f"{_where(i, name, layer)}: unsupported layer type {kind.__name__}{hint}; supported "
            "are Linear, ReLU, Tanh, Sigmoid, a leading Flatten, and Dropout/Identity (no-ops "
            "at evaluation time)"
        )
    if not linears:
        raise ValueError("the module has no Linear layer")
    if expect_linear:
        i, name, layer, _ = activations[-1]
        raise ValueError(
            f"{_where(i, name, layer)}: an activation after the last Linear is not supported "
            "(the last Linear's outputs are the logits; apply it to the outputs yourself)"
        )
    names = tuple(kind for *_, kind in activations)
    # One name when every hidden layer agrees (the common case, and the model's default form).
    return linears, (names[0] if len(set(names)) == 1 else names) if names else None, positions


def from_torch(module: torch.nn.Module, classes=None, **params) -> MLP:
    """Convert a PyTorch MLP into a fitted :class:`mlu.MLP` with the same outputs.

    Parameters
    ----------
    module : torch.nn.Module
        An ``nn.Sequential`` (nested Sequentials are flattened), or a module whose only child is
        one, of the form ``[Flatten] Linear (act Linear)*`` with ``act`` one of ``ReLU``,
        ``Tanh``, ``Sigmoid`` (each hidden layer may have its own). ``Dropout`` and
        ``Identity`` are accepted and dropped: the model computes the module's evaluation-mode
        function. The last layer must be a ``Linear`` with k >= 2 outputs: its outputs become
        the MLP's logits.
    classes : array-like of shape (k,), optional
        Labels of the k outputs (default ``0..k-1``).
    **params
        Hyper-parameters of the MLP (e.g. ``l2`` for the unlearning objective).

    Returns
    -------
    MLP
        Parameters copied to float64. ``torch_dtype_`` records the module's dtype (e.g.
        ``"float32"``) so that :func:`to_torch` returns that dtype by default. The module is
        not modified.

    Raises
    ------
    ImportError
        PyTorch is not installed.
    TypeError
        ``module`` is not a ``torch.nn.Module``.
    ValueError
        A layer is not supported (the message gives its position and name), a module has
        forward or backward hooks (the converted model could not run them), the layers'
        sizes do not chain, the parameters are not finite or mix dtypes, or a wrapper module's
        forward does not give the outputs of its Sequential.
    """
    torch = import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    _refuse_hooks(module, torch)
    seq, wrapped = _unwrap(module, torch)
    linears, activation, positions = _parse_layers(_flatten_modules(seq, torch), torch)

    dtypes = {p.dtype for lin in linears for p in (lin.weight, lin.bias)}
    if len(dtypes) != 1:
        raise ValueError(f"the Linear layers mix dtypes {sorted(map(str, dtypes))}")
    dtype = dtypes.pop()
    if not dtype.is_floating_point:
        raise ValueError(f"the parameters must be floating point, got {dtype}")

    layers = []
    for lin, pos in zip(linears, positions):
        # detach + copy: the model never shares memory with the module
        W = lin.weight.detach().cpu().to(torch.float64).numpy().copy()
        b = lin.bias.detach().cpu().to(torch.float64).numpy().copy()
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"layer {pos} (Linear) has NaN or inf parameters")
        layers.append((W, b))
    for (W, _), (W_next, _), pos in zip(layers[:-1], layers[1:], positions[1:]):
        if W_next.shape[1] != W.shape[0]:
            raise ValueError(
                f"layer {pos} (Linear) takes {W_next.shape[1]} inputs but the previous Linear "
                f"gives {W.shape[0]}"
            )
    k = layers[-1][0].shape[0]
    if k < 2:
        raise ValueError(
            f"layer {positions[-1]} (the last Linear) has {k} output; mlu is a softmax "
            "classifier and needs k >= 2 outputs (for a single-logit binary model z, use two "
            "outputs [0, z])"
        )
    model = MLP.from_layers(layers, activation=activation or "relu", classes=classes, **params)
    model.torch_dtype_ = str(dtype).removeprefix("torch.")
    if wrapped:
        _check_wrapper_forward(module, model, torch, dtype)
    return model


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _refuse_hooks(module, torch) -> None:
    """Hooks change what a module computes, and the converted model cannot run them."""
    for name, sub in module.named_modules():
        hooks = [attr for attr in _HOOK_DICTS if getattr(sub, attr, None)]
        if hooks:
            where = f"submodule {name!r} ({type(sub).__name__})" if name else "the module"
            raise ValueError(
                f"{where} has {', '.join(h.strip('_').replace('_', ' ') for h in hooks)}; "
                "mlu cannot reproduce what a hook does: remove them (handle.remove()) before "
                "converting"
            )
    registered = torch.nn.modules.module
    for attr in ("_global_forward_hooks", "_global_forward_pre_hooks"):
        if getattr(registered, attr, None):
            raise ValueError(
                f"global module hooks are registered ({attr.strip('_').replace('_', ' ')}); "
                "mlu cannot reproduce what a hook does: remove them before converting"
            )


def _check_wrapper_forward(module, model: MLP, torch, dtype) -> None:
    """A wrapper's forward may do more than call its Sequential: compare on a probe batch."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, model.n_features_in_))
    device = next(module.parameters()).device
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()  # Dropout off, as in the converted model; restored below
        with torch.no_grad():
            out = module(torch.as_tensor(X, dtype=dtype, device=device))
    except Exception as exc:
        raise ValueError(
            f"could not run {type(module).__name__}.forward on a batch of shape {X.shape}: {exc}"
        ) from exc
    finally:
        for m, training in modes.items():
            m.training = training
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (X.shape[0], model.sizes_[-1]):
        raise ValueError(
            f"{type(module).__name__}.forward does not return the outputs of its Sequential "
            "(shape differs); convert the Sequential itself"
        )
    ref = model.logits(X)
    got = out.detach().cpu().to(torch.float64).numpy()
    tol = 1e-10 if dtype == torch.float64 else 1e-2 if dtype.itemsize < 4 else 1e-4
    if not np.allclose(got, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max())):
        raise ValueError(
            f"{type(module).__name__}.forward does not compute its Sequential's outputs "
            "(it does something more); convert the Sequential itself"
        )


# ---------------------------------------------------------------------------- mlu → PyTorch
def to_torch(model: MLP, dtype: torch.dtype | str | None = None) -> torch.nn.Sequential:
    """Write a fitted :class:`mlu.MLP` as ``nn.Sequential(Linear, act, …, Linear)``.

    Parameters
    ----------
    model : MLP
        A fitted model.
    dtype : torch.dtype or str, optional
        Dtype of the module's parameters (``torch.float32`` or ``"float32"``). Default: the
        dtype the model was read in by :func:`from_torch` (``model.torch_dtype_``), else
        ``torch.float64`` (exactly the model's parameters).

    Returns
    -------
    torch.nn.Sequential
        A new module on the CPU whose outputs are the model's logits (``model.logits``). It
        holds copies of the parameters; the input transform of ``MLP(scale=...)`` is folded
        into the first layer (so :func:`from_torch` reads back a model without ``scale``).
        PyTorch's random number generator is not used.
    """
    check_model(model)
    return torch_sequential(model, dtype)


# ---------------------------------------------------------------------------- scikit-learn → mlu
def from_sklearn(clf, **params) -> MLP:
    """Convert a fitted scikit-learn ``MLPClassifier`` into a fitted :class:`mlu.MLP`.

    Predictions and probabilities are the same (to rounding). scikit-learn stores weights as
    (in, out); they are transposed to mlu's (out, in). A binary classifier has one logistic
    output z; since ``sigmoid(z)`` is the softmax of ``[0, z]``, the last layer gets the rows
    ``[0, w]`` and biases ``[0, b]``. ``classes_`` are kept, so predictions are the original
    labels.

    Parameters
    ----------
    clf : sklearn.neural_network.MLPClassifier
        Fitted, single-label, with any of its activations: ``"identity"``, ``"logistic"`` (mlu's
        ``"sigmoid"``), ``"tanh"`` or ``"relu"``.
    **params
        Hyper-parameters of the MLP. ``alpha`` is not carried over: scikit-learn's penalty
        ``alpha/(2n)·‖W‖²`` skips the biases and depends on n, so set ``l2`` yourself.

    Raises
    ------
    TypeError
        ``clf`` is not an ``MLPClassifier``.
    sklearn.exceptions.NotFittedError
        ``clf`` is not fitted.
    ValueError
        A multilabel classifier.
    """
    from sklearn.neural_network import MLPClassifier

    if not isinstance(clf, MLPClassifier):
        raise TypeError(f"clf must be a scikit-learn MLPClassifier, got {type(clf).__name__}")
    check_is_fitted(clf, "coefs_")
    acts = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": "identity"}
    if clf.activation not in acts:
        raise ValueError(
            f"MLPClassifier activation {clf.activation!r} is not supported; mlu supports "
            f"{sorted(acts)}"
        )
    binarizer = getattr(clf, "_label_binarizer", None)
    if getattr(binarizer, "y_type_", None) == "multilabel-indicator":
        raise ValueError("multilabel MLPClassifier is not supported: mlu is a softmax classifier")
    layers = [
        (np.array(W, dtype=np.float64).T.copy(), np.array(b, dtype=np.float64))
        for W, b in zip(clf.coefs_, clf.intercepts_)
    ]
    classes = np.asarray(clf.classes_)
    if clf.out_activation_ == "logistic":
        if len(classes) != 2 or layers[-1][0].shape[0] != 1:
            raise ValueError(
                f"unexpected MLPClassifier: logistic output with {layers[-1][0].shape[0]} units "
                f"for {len(classes)} classes"
            )
        W, b = layers[-1]
        layers[-1] = (np.vstack([np.zeros_like(W), W]), np.concatenate([[0.0], b]))
    elif clf.out_activation_ != "softmax":
        raise ValueError(f"unsupported MLPClassifier output activation {clf.out_activation_!r}")
    if not np.array_equal(np.sort(classes), classes):
        raise ValueError(f"MLPClassifier classes_ are not sorted: {classes}")
    return MLP.from_layers(layers, activation=acts[clf.activation], classes=classes, **params)
