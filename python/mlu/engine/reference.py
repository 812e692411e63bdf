"""Pure-NumPy reference of the MLP math: the specification the C++ core is tested against.

Everything here is written to read like the formulas in docs/design.md ("Math") and is
vectorised over samples (loops run over layers or over Hessian columns, never over samples), so
that it also serves as a fair baseline in benchmarks.

Model
-----
An MLP is a list of layers ``[(W_1, b_1), ..., (W_L, b_L)]`` with ``W_l`` of shape
``(out_l, in_l)`` (as in PyTorch's ``Linear``) and ``b_l`` of shape ``(out_l,)``. With
``a_0 = x``::

    z_l = W_l a_{l-1} + b_l,        a_l = σ(z_l)   for l < L,        f(x; θ) = z_L  (k logits)

so σ is applied after every layer except the last; each hidden layer may have its own σ
(``activation="tanh,relu"``). ``L = 1`` (no hidden layer) is multinomial
logistic regression. In matrix form over n samples (rows), ``Z_l = A_{l-1} W_lᵀ + b_l``.

Objective over a data set of n samples, with ℓ the softmax cross-entropy::

    L(θ) = (1/n) Σ_i ℓ(f(x_i; θ), y_i) + (λ/2) ‖θ‖²,      λ = ``l2``, over ALL weights and biases.

Flat parameter layout: ``θ = [vec(W_1), b_1, vec(W_2), b_2, ...]`` with ``vec`` row-major.

Conventions the C++ core must match
-----------------------------------
* ReLU'(0) = 0 (the derivative is the indicator ``z > 0``); ReLU'' = 0.
* ``softmax`` / ``log_softmax`` subtract the row maximum; per-sample losses are
  ``logsumexp(z) - z_y`` computed that way; the sigmoid is ``scipy.special.expit``.
* ``per_sample_gradients`` are the gradients of ℓ_i alone, WITHOUT the l2 term;
  ``gradient`` is their mean plus ``l2 * θ``.
* ``hvp``/``hessian`` are for the objective, so they include ``l2 * I``; damping δ is added only
  where it is an explicit argument (``self_influence``, ``influence_update``, ``newton_update``).
* ``params="last"`` restricts θ, gradients and H to ``(W_L, b_L)`` with the other layers frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, NamedTuple

import numpy as np
from scipy.special import expit

Layer = tuple[np.ndarray, np.ndarray]
Layers = list[Layer]

_CURVATURES = ("hessian", "ggn")
_PARAMS = ("all", "last")


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


class _Activation(NamedTuple):
    """An elementwise activation σ with its first and second derivatives, all functions of z."""

    f: Callable[[np.ndarray], np.ndarray]
    d1: Callable[[np.ndarray], np.ndarray]
    d2: Callable[[np.ndarray], np.ndarray]


def _tanh_d1(z: np.ndarray) -> np.ndarray:
    t = np.tanh(z)
    return 1.0 - t * t


def _tanh_d2(z: np.ndarray) -> np.ndarray:
    t = np.tanh(z)
    return -2.0 * t * (1.0 - t * t)


def _sigmoid_d1(z: np.ndarray) -> np.ndarray:
    s = expit(z)
    return s * (1.0 - s)


def _sigmoid_d2(z: np.ndarray) -> np.ndarray:
    s = expit(z)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


_ACTIVATIONS: dict[str, _Activation] = {
    "relu": _Activation(
        f=lambda z: np.maximum(z, 0.0),
        d1=lambda z: (z > 0).astype(z.dtype),  # ReLU'(0) = 0
        d2=np.zeros_like,
    ),
    "tanh": _Activation(f=np.tanh, d1=_tanh_d1, d2=_tanh_d2),
    "sigmoid": _Activation(f=expit, d1=_sigmoid_d1, d2=_sigmoid_d2),
    "identity": _Activation(f=lambda z: z, d1=np.ones_like, d2=np.zeros_like),
}


def activation_names(activation: str | Sequence[str], hidden_layers: int) -> tuple[str, ...]:
    """One activation name per hidden layer.

    Parameters
    ----------
    activation : str or sequence of str
        One name for every hidden layer (``"tanh"``), or one per hidden layer from the input
        up, as a sequence (``("tanh", "relu")``) or a comma-separated string (``"tanh,relu"``).
    hidden_layers : int
        Number of hidden layers, ``L - 1``.

    Returns
    -------
    tuple of str, length ``hidden_layers``
    """
    names = tuple(activation.split(",")) if isinstance(activation, str) else tuple(activation)
    for name in names:
        if name not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    if len(names) == 1:
        return names * hidden_layers
    if len(names) != hidden_layers:
        raise ValueError(
            f"got {len(names)} activations for {hidden_layers} hidden layers: "
            "give one, or one per hidden layer"
        )
    return names


def _activations(activation: str | Sequence[str], layers: Layers) -> list[_Activation]:
    """σ of every hidden layer: ``acts[l]`` follows ``layers[l]`` (l < L - 1)."""
    return [_ACTIVATIONS[name] for name in activation_names(activation, len(layers) - 1)]


def _check_choice(value: str, argname: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{argname} must be one of {list(allowed)}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Parameter layout
# --------------------------------------------------------------------------------------------


def layer_sizes(layers: Layers) -> tuple[int, ...]:
    """Layer widths of an MLP.

    Parameters
    ----------
    layers : list of (W, b)
        ``W_l`` of shape ``(out_l, in_l)``, ``b_l`` of shape ``(out_l,)``.

    Returns
    -------
    tuple of int
        ``(d, h_1, ..., h_{L-1}, k)``, length ``L + 1``.
    """
    return (layers[0][0].shape[1], *(W.shape[0] for W, _ in layers))


def num_params(sizes: Sequence[int]) -> int:
    """Number of parameters p = Σ_l (in_l + 1) · out_l for layer widths ``sizes = (d, ..., k)``."""
    return sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def last_layer_slice(sizes: Sequence[int]) -> slice:
    """Slice of the flat θ (length p) holding ``(W_L, b_L)``, of length ``(h_{L-1} + 1) · k``."""
    p = num_params(sizes)
    p_last = (sizes[-2] + 1) * sizes[-1]
    return slice(p - p_last, p)


def flatten(layers: Layers) -> np.ndarray:
    """Concatenate the parameters into θ = [vec(W_1), b_1, vec(W_2), b_2, ...] (row-major vec).

    Parameters
    ----------
    layers : list of (W, b)
        ``W_l`` of shape ``(out_l, in_l)``, ``b_l`` of shape ``(out_l,)``.

    Returns
    -------
    ndarray, shape (p,)
    """
    return np.concatenate([part for W, b in layers for part in (np.ravel(W), np.ravel(b))])


def unflatten(theta: np.ndarray, sizes: Sequence[int]) -> Layers:
    """Inverse of :func:`flatten`.

    Parameters
    ----------
    theta : ndarray, shape (p,)
    sizes : sequence of int
        Layer widths ``(d, h_1, ..., k)`` with ``num_params(sizes) == p``.

    Returns
    -------
    list of (W, b)
        ``W_l`` of shape ``(sizes[l+1], sizes[l])``, ``b_l`` of shape ``(sizes[l+1],)``;
        copies, so later changes to ``theta`` do not alias them.
    """
    theta = np.asarray(theta)
    layers: Layers = []
    start = 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W = theta[start : start + n_out * n_in].reshape(n_out, n_in).copy()
        start += n_out * n_in
        b = theta[start : start + n_out].copy()
        start += n_out
        layers.append((W, b))
    return layers


# --------------------------------------------------------------------------------------------
# Forward pass, softmax, losses
# --------------------------------------------------------------------------------------------


def _forward_pass(
    layers: Layers, acts: Sequence[_Activation], X: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forward pass keeping what backprop needs.

    Returns
    -------
    inputs : list of ndarray
        ``inputs[l] = A_{l}`` is the input of layer ``l + 1`` (0-based: of ``layers[l]``),
        shape ``(n, in_l)``; ``inputs[0] = X``.
    pre : list of ndarray
        ``pre[l] = Z_{l+1} = inputs[l] W_{l+1}ᵀ + b_{l+1}``, shape ``(n, out_l)``;
        ``pre[-1]`` are the logits.
    """
    inputs = [X]
    pre: list[np.ndarray] = []
    for l, (W, b) in enumerate(layers):
        Z = inputs[l] @ W.T + b
        pre.append(Z)
        if l < len(layers) - 1:
            inputs.append(acts[l].f(Z))
    return inputs, pre


def forward(layers: Layers, activation: str | Sequence[str], X: np.ndarray) -> np.ndarray:
    """Logits of the MLP.

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
        Hidden activation(s), applied after every layer except the last: one name
        (``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"identity"``) or one per hidden layer
        (see :func:`activation_names`).
    X : ndarray, shape (n, d)

    Returns
    -------
    ndarray, shape (n, k)
    """
    _, pre = _forward_pass(layers, _activations(activation, layers), X)
    return pre[-1]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax ``z - max(z) - log Σ exp(z - max(z))``; shape (n, k) -> (n, k)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax ``exp(z - max(z)) / Σ exp(z - max(z))``; shape (n, k) -> (n, k)."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _one_hot(y: np.ndarray, k: int, dtype: np.dtype) -> np.ndarray:
    """One-hot matrix Y of shape (n, k) for integer labels y of shape (n,)."""
    Y = np.zeros((len(y), k), dtype=dtype)
    Y[np.arange(len(y)), y] = 1.0
    return Y


def losses(
    layers: Layers, activation: str | Sequence[str], X: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Per-sample softmax cross-entropy ``ℓ_i = logsumexp(z_i) - z_{i, y_i}``.

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
        Labels in ``0 .. k-1``.

    Returns
    -------
    ndarray, shape (n,)
    """
    y = np.asarray(y)
    logp = log_softmax(forward(layers, activation, X))
    return -logp[np.arange(len(y)), y]


def objective(
    layers: Layers, activation: str | Sequence[str], X: np.ndarray, y: np.ndarray, l2: float = 0.0
) -> float:
    """``L(θ) = (1/n) Σ_i ℓ_i + (l2/2) ‖θ‖²``.

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
    l2 : float
        λ, applied to all weights and biases.

    Returns
    -------
    float
    """
    theta = flatten(layers)
    return float(losses(layers, activation, X, y).mean() + 0.5 * l2 * theta @ theta)


# --------------------------------------------------------------------------------------------
# Backpropagation
# --------------------------------------------------------------------------------------------


def _backprop(
    layers: Layers, acts: Sequence[_Activation], pre: list[np.ndarray], delta_out: np.ndarray
) -> list[np.ndarray]:
    """Propagate an output error back through the layers.

    ``δ_L = delta_out`` and ``δ_{l-1} = (δ_l W_l) ⊙ σ'(Z_{l-1})``.

    Parameters
    ----------
    delta_out : ndarray, shape (..., n, k)
        Any leading axes are carried along (used for per-class Jacobians).

    Returns
    -------
    list of ndarray
        ``deltas[l]`` of shape ``(..., n, out_l)`` for ``layers[l]``.
    """
    deltas = [delta_out]
    for l in range(len(layers) - 1, 0, -1):
        W, _ = layers[l]
        deltas.insert(0, (deltas[0] @ W) * acts[l - 1].d1(pre[l - 1]))
    return deltas


def _summed_param_grads(deltas: list[np.ndarray], inputs: list[np.ndarray]) -> np.ndarray:
    """Flat ``[vec(δ_lᵀ A_{l-1}), Σ_i δ_l]`` over layers: shape (p,). Sums over samples."""
    return flatten([(delta.T @ A, delta.sum(axis=0)) for delta, A in zip(deltas, inputs)])


def _per_sample_param_grads(deltas: list[np.ndarray], inputs: list[np.ndarray]) -> np.ndarray:
    """Per-sample flat ``[vec(δ_{l,i} a_{l-1,i}ᵀ), δ_{l,i}]``: (..., n, out) -> (..., n, p)."""
    parts = []
    for delta, A in zip(deltas, inputs):
        outer = np.einsum("...no,ni->...noi", delta, A)
        parts += [outer.reshape(*outer.shape[:-2], -1), delta]
    return np.concatenate(parts, axis=-1)


def _restrict(vector: np.ndarray, layers: Layers, params: str) -> np.ndarray:
    """Keep the last-layer part (last axis) when ``params == "last"``."""
    _check_choice(params, "params", _PARAMS)
    if params == "all":
        return vector
    return vector[..., last_layer_slice(layer_sizes(layers))]


def gradient(
    layers: Layers,
    activation: str | Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    l2: float = 0.0,
    params: str = "all",
) -> np.ndarray:
    """Gradient of the objective: ``(1/n) Σ_i ∇ℓ_i + l2 · θ``.

    Backprop: ``δ_L = (P - Y)/n`` with ``P = softmax(Z_L)``, ``Y`` one-hot;
    ``∇W_l = δ_lᵀ A_{l-1}``, ``∇b_l = Σ_i δ_{l,i}``, ``δ_{l-1} = (δ_l W_l) ⊙ σ'(Z_{l-1})``.

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
    l2 : float
    params : {"all", "last"}
        ``"last"``: only the part for ``(W_L, b_L)`` (with ``l2 · θ_last``).

    Returns
    -------
    ndarray, shape (p,) or (p_last,)
    """
    acts = _activations(activation, layers)
    inputs, pre = _forward_pass(layers, acts, X)
    P = softmax(pre[-1])
    n, k = P.shape
    deltas = _backprop(layers, acts, pre, (P - _one_hot(np.asarray(y), k, P.dtype)) / n)
    grad = _summed_param_grads(deltas, inputs) + l2 * flatten(layers)
    return _restrict(grad, layers, params)


def per_sample_gradients(
    layers: Layers,
    activation: str | Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    params: str = "all",
) -> np.ndarray:
    """Gradients ``∇_θ ℓ(f(x_i; θ), y_i)`` of each sample's loss alone.

    They do NOT include the l2 term: ``gradient(..., l2) == G.mean(0) + l2 * θ``.

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
    params : {"all", "last"}

    Returns
    -------
    ndarray, shape (n, p) or (n, p_last)
    """
    acts = _activations(activation, layers)
    inputs, pre = _forward_pass(layers, acts, X)
    P = softmax(pre[-1])
    deltas = _backprop(layers, acts, pre, P - _one_hot(np.asarray(y), P.shape[1], P.dtype))
    return _restrict(_per_sample_param_grads(deltas, inputs), layers, params)


def output_jacobians(layers: Layers, activation: str | Sequence[str], X: np.ndarray) -> np.ndarray:
    """Per-sample Jacobians ``J_i = ∂ f(x_i; θ) / ∂θ`` of the logits.

    Backprop with the unit output error ``e_c`` for every class c at once.

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)

    Returns
    -------
    ndarray, shape (n, k, p)
        ``J[i, c, j] = ∂ z_{L, i c} / ∂θ_j``.
    """
    acts = _activations(activation, layers)
    inputs, pre = _forward_pass(layers, acts, X)
    n, k = pre[-1].shape
    unit_errors = np.broadcast_to(np.eye(k, dtype=pre[-1].dtype)[:, None, :], (k, n, k))
    deltas = _backprop(layers, acts, pre, unit_errors)  # deltas[l]: (k, n, out_l)
    return _per_sample_param_grads(deltas, inputs).transpose(1, 0, 2)


# --------------------------------------------------------------------------------------------
# Curvature: Hessian- and GGN-vector products (Pearlmutter's R-operator), assembled matrices
# --------------------------------------------------------------------------------------------


def _softmax_hessian_times(P: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Row-wise ``H_out,i u_i`` with ``H_out,i = diag(p_i) - p_i p_iᵀ``; (n, k), (n, k) -> (n, k).

    ``H_out,i`` is the Hessian of the cross-entropy with respect to the logits of sample i.
    """
    return P * U - P * (P * U).sum(axis=1, keepdims=True)


def _tangent_pass(
    layers: Layers,
    acts: Sequence[_Activation],
    inputs: list[np.ndarray],
    pre: list[np.ndarray],
    direction: Layers,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forward-mode directional derivatives R{·} along ``direction = [(V_l, c_l)]``.

    ``R{A_0} = 0``, ``R{Z_l} = R{A_{l-1}} W_lᵀ + A_{l-1} V_lᵀ + c_l``,
    ``R{A_l} = σ'(Z_l) ⊙ R{Z_l}``. ``R{Z_L} = J v`` (per sample).

    Returns
    -------
    R_inputs, R_pre : lists of ndarray
        Same shapes as ``inputs`` and ``pre`` of :func:`_forward_pass`.
    """
    R_inputs = [np.zeros_like(inputs[0], dtype=pre[0].dtype)]
    R_pre: list[np.ndarray] = []
    for l, ((W, _), (V, c)) in enumerate(zip(layers, direction)):
        RZ = R_inputs[l] @ W.T + inputs[l] @ V.T + c
        R_pre.append(RZ)
        if l < len(layers) - 1:
            R_inputs.append(acts[l].d1(pre[l]) * RZ)
    return R_inputs, R_pre


def _hessian_vector(
    layers: Layers,
    acts: Sequence[_Activation],
    inputs: list[np.ndarray],
    pre: list[np.ndarray],
    Y: np.ndarray,
    direction: Layers,
) -> np.ndarray:
    """Exact ``∇²[(1/n) Σ_i ℓ_i] v`` by Pearlmutter's R-operator; shape (p,). No l2 term.

    Apply R{·} (derivative along v) to every line of backprop:

    * ``R{δ_L} = H_out R{Z_L} / n``,
    * ``R{∇W_l} = R{δ_l}ᵀ A_{l-1} + δ_lᵀ R{A_{l-1}}``,  ``R{∇b_l} = Σ_i R{δ_l}``,
    * ``R{δ_{l-1}} = (R{δ_l} W_l + δ_l V_l) ⊙ σ'(Z_{l-1}) + (δ_l W_l) ⊙ σ''(Z_{l-1}) ⊙ R{Z_{l-1}}``.

    The terms in δ_l (``δ_lᵀ R{A_{l-1}}``, ``δ_l V_l`` and the σ'' term) are what the exact
    Hessian has beyond the Gauss-Newton part; the first two are present for ReLU nets too.
    """
    R_inputs, R_pre = _tangent_pass(layers, acts, inputs, pre, direction)
    n = Y.shape[0]
    P = softmax(pre[-1])
    delta = (P - Y) / n
    R_delta = _softmax_hessian_times(P, R_pre[-1]) / n
    R_grads: Layers = []  # filled from the last layer to the first
    for l in range(len(layers) - 1, -1, -1):
        W, _ = layers[l]
        V, _ = direction[l]
        R_grads.insert(0, (R_delta.T @ inputs[l] + delta.T @ R_inputs[l], R_delta.sum(axis=0)))
        if l > 0:
            d1, d2 = acts[l - 1].d1(pre[l - 1]), acts[l - 1].d2(pre[l - 1])
            back = delta @ W
            R_delta = (R_delta @ W + delta @ V) * d1 + back * d2 * R_pre[l - 1]
            delta = back * d1
    return flatten(R_grads)


def _ggn_vector(
    layers: Layers,
    acts: Sequence[_Activation],
    inputs: list[np.ndarray],
    pre: list[np.ndarray],
    direction: Layers,
) -> np.ndarray:
    """``G v = (1/n) Σ_i J_iᵀ H_out,i J_i v``; shape (p,). No l2 term.

    ``J v`` is the tangent ``R{Z_L}``; ``Jᵀ u`` is ordinary backprop of the output error u.
    """
    _, R_pre = _tangent_pass(layers, acts, inputs, pre, direction)
    P = softmax(pre[-1])
    u = _softmax_hessian_times(P, R_pre[-1]) / P.shape[0]
    return _summed_param_grads(_backprop(layers, acts, pre, u), inputs)


def _curvature_columns(
    layers: Layers,
    activation: str | Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    vectors: np.ndarray,
    l2: float,
    curvature: str,
    params: str,
) -> np.ndarray:
    """``(H + l2 I) v`` for each row v of ``vectors`` (m, p or p_last), sharing one forward pass.

    Returns
    -------
    ndarray, shape (m, p) or (m, p_last)
    """
    _check_choice(curvature, "curvature", _CURVATURES)
    _check_choice(params, "params", _PARAMS)
    acts = _activations(activation, layers)
    sizes = layer_sizes(layers)
    inputs, pre = _forward_pass(layers, acts, X)
    Y = _one_hot(np.asarray(y), sizes[-1], pre[-1].dtype)
    out = np.empty(vectors.shape, dtype=np.result_type(vectors, pre[-1]))
    for j, v in enumerate(vectors):
        if params == "last":  # other layers frozen: embed v as a direction in the last layer only
            v_full = np.zeros(num_params(sizes), dtype=out.dtype)
            v_full[last_layer_slice(sizes)] = v
        else:
            v_full = v
        direction = unflatten(v_full, sizes)
        if curvature == "hessian":
            Hv = _hessian_vector(layers, acts, inputs, pre, Y, direction)
        else:
            Hv = _ggn_vector(layers, acts, inputs, pre, direction)
        out[j] = _restrict(Hv, layers, params) + l2 * v
    return out


def hvp(
    layers: Layers,
    activation: str | Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    v: np.ndarray,
    l2: float = 0.0,
    curvature: str = "hessian",
    params: str = "all",
) -> np.ndarray:
    """Curvature-vector product ``H v`` for the objective (so ``H`` includes ``l2 · I``).

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
    v : ndarray, shape (p,) or (p_last,)
    l2 : float
    curvature : {"hessian", "ggn"}
        ``"hessian"``: the exact Hessian, by Pearlmutter's R-operator (forward tangent pass, then
        the backward pass of the directional derivative), including the cross-layer terms.
        ``"ggn"``: the generalized Gauss-Newton matrix ``(1/n) Σ_i J_iᵀ H_out,i J_i + l2 I``
        with ``H_out,i = diag(p_i) - p_i p_iᵀ``.
    params : {"all", "last"}
        ``"last"``: ``v`` lives in the last layer and ``H`` is the last-layer block (other
        layers frozen).

    Returns
    -------
    ndarray, same shape as ``v``
    """
    v = np.asarray(v)
    return _curvature_columns(layers, activation, X, y, v[None, :], l2, curvature, params)[0]


def hessian(
    layers: Layers,
    activation: str | Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    l2: float = 0.0,
    curvature: str = "hessian",
    params: str = "all",
) -> np.ndarray:
    """Assembled curvature matrix of the objective (including ``l2 · I``).

    ``curvature="hessian"``: column j is ``hvp(e_j)`` (exact R-operator products; not
    symmetrised — it is symmetric to rounding by itself). ``curvature="ggn"``: built
    independently of :func:`hvp` from the explicit per-sample Jacobians,
    ``(1/n) Σ_i J_iᵀ (diag(p_i) - p_i p_iᵀ) J_i + l2 I``.

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
    l2 : float
    curvature : {"hessian", "ggn"}
    params : {"all", "last"}
        ``"last"``: the last-layer block ``(p_last, p_last)``.

    Returns
    -------
    ndarray, shape (p, p) or (p_last, p_last)
    """
    _check_choice(curvature, "curvature", _CURVATURES)
    _check_choice(params, "params", _PARAMS)
    sizes = layer_sizes(layers)
    m = num_params(sizes) if params == "all" else num_params(sizes[-2:])
    if curvature == "hessian":
        columns = _curvature_columns(layers, activation, X, y, np.eye(m), l2, curvature, params)
        return columns.T  # row j holds H e_j, i.e. column j
    J = _restrict(output_jacobians(layers, activation, X), layers, params)  # (n, k, m)
    n, k, _ = J.shape
    P = softmax(forward(layers, activation, X))
    H_out = np.einsum("nc,cd->ncd", P, np.eye(k)) - np.einsum("nc,nd->ncd", P, P)  # (n, k, k)
    HJ = H_out @ J  # (n, k, m)
    return np.einsum("nkp,nkq->pq", J, HJ) / n + l2 * np.eye(m)


# --------------------------------------------------------------------------------------------
# Influence and unlearning
# --------------------------------------------------------------------------------------------


def _damped_solve(H: np.ndarray, damping: float, rhs: np.ndarray) -> np.ndarray:
    """``(H + δ I)⁻¹ rhs`` via ``numpy.linalg.solve``; rhs of shape (m,) or (m, r)."""
    return np.linalg.solve(H + damping * np.eye(H.shape[0]), rhs)


def _forget_mask(forget: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of shape (n,) from integer indices or a boolean mask of the forget set."""
    mask = np.zeros(n, dtype=bool)
    mask[np.asarray(forget)] = True
    return mask


def self_influence(
    layers: Layers,
    activation: str | Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    l2: float = 0.0,
    damping: float = 0.0,
    curvature: str = "hessian",
    params: str = "all",
) -> np.ndarray:
    """Self-influence ``s_i = ∇ℓ_iᵀ (H + δ I)⁻¹ ∇ℓ_i``.

    ``H`` is the curvature of the objective over ``(X, y)`` (with ``l2 · I``); ``∇ℓ_i`` are the
    per-sample gradients (without l2).

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
    l2, damping : float
    curvature : {"hessian", "ggn"}
    params : {"all", "last"}

    Returns
    -------
    ndarray, shape (n,)
    """
    H = hessian(layers, activation, X, y, l2=l2, curvature=curvature, params=params)
    G = per_sample_gradients(layers, activation, X, y, params=params)  # (n, m)
    H_inv_G = _damped_solve(H, damping, G.T)  # (m, n)
    return np.einsum("nm,mn->n", G, H_inv_G)


def influence_update(
    layers: Layers,
    activation: str | Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    forget: np.ndarray,
    l2: float = 0.0,
    damping: float = 0.0,
    curvature: str = "hessian",
    params: str = "all",
) -> np.ndarray:
    """Koh & Liang influence unlearning: ``θ' = θ̂ + (1/n) (H_D + δ I)⁻¹ Σ_{z∈F} ∇ℓ(z, θ̂)``.

    Parameters
    ----------
    layers : list of (W, b)
        The trained model θ̂.
    activation : str or sequence of str
    X : ndarray, shape (n, d)
        The full training set D.
    y : ndarray of int, shape (n,)
    forget : ndarray
        Forget set F: integer indices into D, or a boolean mask of shape (n,).
    l2, damping : float
    curvature : {"hessian", "ggn"}
        Curvature ``H_D`` of the objective over D (with ``l2 · I``).
    params : {"all", "last"}
        ``"last"``: only the last-layer slice of θ changes.

    Returns
    -------
    ndarray, shape (p,)
        The full updated θ'.
    """
    sizes = layer_sizes(layers)
    n = len(X)
    mask = _forget_mask(forget, n)
    H = hessian(layers, activation, X, y, l2=l2, curvature=curvature, params=params)
    forget_grad_sum = per_sample_gradients(
        layers, activation, X[mask], np.asarray(y)[mask], params=params
    ).sum(axis=0)
    step = _damped_solve(H, damping, forget_grad_sum) / n
    theta = flatten(layers).astype(np.result_type(step, float), copy=True)
    theta[slice(None) if params == "all" else last_layer_slice(sizes)] += step
    return theta


def newton_update(
    layers: Layers,
    activation: str | Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    forget: np.ndarray,
    l2: float = 0.0,
    damping: float = 0.0,
    curvature: str = "hessian",
    params: str = "all",
) -> np.ndarray:
    """One Newton step on the retained objective: ``θ' = θ̂ - (H_R + δ I)⁻¹ ∇L_R(θ̂)``.

    ``R = D \\ F``; ``L_R`` is the mean loss over R plus ``(l2/2) ‖θ‖²`` and ``H_R`` its
    curvature.

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
    forget : ndarray
        Integer indices into D, or a boolean mask of shape (n,).
    l2, damping : float
    curvature : {"hessian", "ggn"}
    params : {"all", "last"}
        ``"last"``: only the last-layer slice of θ changes.

    Returns
    -------
    ndarray, shape (p,)
    """
    sizes = layer_sizes(layers)
    keep = ~_forget_mask(forget, len(X))
    X_R, y_R = X[keep], np.asarray(y)[keep]
    H_R = hessian(layers, activation, X_R, y_R, l2=l2, curvature=curvature, params=params)
    grad_R = gradient(layers, activation, X_R, y_R, l2=l2, params=params)
    step = _damped_solve(H_R, damping, grad_R)
    theta = flatten(layers).astype(np.result_type(step, float), copy=True)
    theta[slice(None) if params == "all" else last_layer_slice(sizes)] -= step
    return theta


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def sgd_epoch(
    layers: Layers,
    activation: str | Sequence[str],
    X: np.ndarray,
    y: np.ndarray,
    lr: float,
    momentum: float,
    batch_size: int,
    l2: float,
    velocity: np.ndarray | None,
    order: np.ndarray,
) -> tuple[Layers, np.ndarray]:
    """One epoch of minibatch SGD with PyTorch-style momentum (dampening 0, no Nesterov).

    For each minibatch B (consecutive chunks of ``order``, the last one possibly smaller)::

        g   = (1/|B|) Σ_{i∈B} ∇ℓ_i + l2 · θ
        buf = momentum · buf + g
        θ   = θ - lr · buf

    Parameters
    ----------
    layers : list of (W, b)
    activation : str or sequence of str
    X : ndarray, shape (n, d)
    y : ndarray of int, shape (n,)
    lr, momentum : float
    batch_size : int
    l2 : float
    velocity : ndarray, shape (p,), or None
        Momentum buffer from the previous epoch; None (or zeros) at the start of training,
        which matches PyTorch initialising the buffer with the first gradient.
    order : ndarray of int, shape (n,)
        The permutation in which samples are visited.

    Returns
    -------
    layers_new : list of (W, b)
    velocity_new : ndarray, shape (p,)
    """
    sizes = layer_sizes(layers)
    theta = flatten(layers).astype(float, copy=True)
    buf = np.zeros_like(theta) if velocity is None else np.array(velocity, dtype=float)
    y = np.asarray(y)
    order = np.asarray(order)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        g = gradient(unflatten(theta, sizes), activation, X[batch], y[batch], l2=l2)
        buf = momentum * buf + g
        theta = theta - lr * buf
    return unflatten(theta, sizes), buf
