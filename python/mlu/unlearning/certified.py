"""Certified removal for models without hidden layer (Guo, Goldstein, Hannun, van der Maaten 2020).

Math (docs/design.md, "Certified removal"). A model with no hidden layer is multinomial logistic
regression, whose L2-regularised loss is strictly convex. :func:`fit_certified` trains it to the
exact minimum of the *perturbed* objective (in the sum form of the paper, n samples)::

    L_b(θ; D) = Σ_{i∈D} ℓ(θ; x_i, y_i) + (λ n / 2) ‖θ‖² + bᵀθ,      b ~ N(0, σ² I_p),

that is ``(1/n) L_b`` = the library's mean objective plus ``bᵀθ / n``. Removing a set F is one
exact Newton step on the retained perturbed objective ``L_b(θ; R)``,
``θ⁻ = θ* + Δ`` with ``Δ = −H_R⁻¹ ∇L_b(θ*; R)``, and the gradient residual it leaves obeys the
data-dependent bound (the paper's Corollary for linear models, written for k softmax outputs)::

    ‖∇L_b(θ⁻; R)‖ ≤ γ ‖X̃_R‖₂ · ‖Δ‖₂ max_i ‖x̃_i‖ · ‖X̃_R Δ_Wᵀ‖_F  (+ the linear solve's residual)

with ``x̃ = (x, 1)`` (the bias), ``Δ_W`` the (k, d+1) matrix of Δ and γ = 1/√2 the Lipschitz
constant of the softmax cross-entropy's Hessian in the logits (:data:`GAMMA_SOFTMAX`). When that
bound is at most the budget ``ε' = σ ε / c`` with ``c = √(2 log(1.5/δ))``, the released model is
(ε, δ)-indistinguishable from one trained on R alone (the paper's Theorem): the removal is
certified. :func:`certified_newton` computes the step and the certificate; ``mlu.unlearn(...,
certify=(ε, δ))`` is its public face.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ..engine import _linalg
from ..engine._problem import scaled
from ..engine._safeguard import UpdateCheck, checked_update
from ..engine.model import MLP
from .result import Certificate

__all__ = [
    "DENSE_MAX",
    "GAMMA_SOFTMAX",
    "Certificate",
    "Perturbation",
    "certified_newton",
    "check_certifiable",
    "fit_certified",
    "noise_budget",
    "removal_bound",
]

GAMMA_SOFTMAX = 1.0 / math.sqrt(2.0)
"""γ: ‖∇²ℓ(z) − ∇²ℓ(z')‖₂ ≤ γ ‖z − z'‖₂ for the softmax cross-entropy ℓ of the logits z, any k.

The derivative of ∇²ℓ = diag(p) − ppᵀ along a unit v is a symmetric matrix whose quadratic form
at a unit a is the third central moment E[(V − EV)(A − EA)²] of V = v_J, A = a_J with J ~ p; it
is at most range(v) · Var(A) ≤ √2 · (√2)²/4 = 1/√2 (docs/design.md, "Certified removal"). The
paper's γ = 1/4 is for a single logistic output; mlu's models always have k ≥ 2 softmax outputs.
"""

DENSE_MAX = 4000
"""The certified step assembles the exact H (p x p) up to this p, and runs CG beyond."""


@dataclass(frozen=True)
class Perturbation:
    """The objective perturbation a certified model was trained with (``model.perturbation_``).

    Attributes
    ----------
    b : ndarray, shape (p,)
        The random linear term, b ~ N(0, σ² I_p), in the sum form ``L + bᵀθ``.
    sigma : float
        Its standard deviation σ.
    training_residual : float
        ‖∇L_b(θ̂; D)‖ in the sum form at the trained parameters (how exactly training reached the
        minimum).
    """

    b: np.ndarray
    sigma: float
    training_residual: float


def noise_budget(sigma: float, epsilon: float, delta: float) -> float:
    """ε' = σ ε / √(2 log(1.5/δ)): the gradient residual a σ-perturbation allows at (ε, δ)."""
    return float(sigma) * float(epsilon) / math.sqrt(2.0 * math.log(1.5 / float(delta)))


def _perturbed(model: MLP, X: np.ndarray, y: np.ndarray, b: np.ndarray):
    """θ -> (mean objective + bᵀθ/n, its gradient) over (X, y); sets ``model.theta_``."""
    n = X.shape[0]

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        model.theta_ = np.array(theta, dtype=np.float64)
        value = model.objective(X, y) + float(b @ model.theta_) / n
        return value, model.gradient(X, y) + b / n

    return fun


def _newton_direction(model: MLP, X, y, g: np.ndarray) -> np.ndarray:
    """−H⁻¹ g with the exact Hessian of the (convex) mean objective over (X, y), λ included."""
    if g.shape[0] <= DENSE_MAX:
        H = model.hessian(X, y, curvature="hessian")
        return -_linalg.cholesky_solve(_linalg.cholesky(H, 0.0), g)
    res = model.hessian_operator(X, y, curvature="hessian").cg(g, tol=1e-13, maxiter=10 * g.size)
    return -np.asarray(res["x"])


def fit_certified(
    X,
    y,
    *,
    sigma: float = 1.0,
    l2: float = 1e-2,
    seed: int = 0,
    classes=None,
    scale: str | None = None,
    gtol: float = 1e-10,
    maxiter: int = 1000,
) -> MLP:
    """Train a model without hidden layer to the exact minimum of the perturbed objective.

    Minimises ``(1/n) Σ ℓ + (λ/2)‖θ‖² + bᵀθ/n`` with b ~ N(0, σ² I) (Guo et al., 2020, their
    Algorithm 1) by L-BFGS, then polishes with exact Newton steps until the gradient norm of
    that mean objective is at most ``gtol``.

    Parameters
    ----------
    X : array-like, shape (n, d)
    y : array-like, shape (n,)
    sigma : float, default 1.0
        Standard deviation σ > 0 of b. Larger σ allows a larger gradient residual
        (:func:`noise_budget`), so more removals stay certified, at some cost in accuracy.
    l2 : float, default 0.01
        λ > 0 (strong convexity is what the certificate needs).
    seed : int
        Seeds b (and the unused initialisation).
    classes, scale
        As in :meth:`mlu.MLP.fit` and :class:`mlu.MLP`.
    gtol : float
        Target ‖∇‖ of the mean perturbed objective.
    maxiter : int
        L-BFGS iteration limit.

    Returns
    -------
    MLP
        ``hidden=()``, fitted, with ``perturbation_`` (:class:`Perturbation`) recorded.

    Raises
    ------
    ValueError
        σ or λ not a positive finite number, bad X or y (as :meth:`mlu.MLP.fit`).
    RuntimeError
        The minimum was not reached to ``gtol`` (the certificate would not hold).
    """
    for value, name in ((sigma, "sigma"), (l2, "l2"), (gtol, "gtol")):
        if not (
            isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0
        ):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    model = MLP(hidden=(), l2=float(l2), seed=seed, scale=scale, epochs=0).fit(X, y, classes)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n = X.shape[0]
    b = np.random.default_rng([int(seed), 2020]).normal(0.0, float(sigma), model.n_params)
    fun = _perturbed(model, X, y, b)
    res = minimize(
        fun,
        model.theta_.copy(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": int(maxiter), "gtol": gtol, "ftol": 0.0},
    )
    theta = np.asarray(res.x, dtype=np.float64)
    _, g = fun(theta)
    for _ in range(20):  # Newton polish: quadratic convergence near the minimum
        if np.linalg.norm(g) <= gtol:
            break
        theta = theta + _newton_direction(model, X, y, g)
        _, g = fun(theta)
    grad_norm = float(np.linalg.norm(g))
    if not grad_norm <= gtol:
        raise RuntimeError(
            f"fit_certified: the perturbed objective's gradient norm is {grad_norm:.3g} > gtol "
            f"{gtol:g} after L-BFGS and Newton polishing; the certificate needs the exact minimum "
            "(raise l2 or gtol)"
        )
    model.theta_ = theta
    model.perturbation_ = Perturbation(b=b, sigma=float(sigma), training_residual=n * grad_norm)
    return model


def check_certifiable(model: MLP, certify) -> tuple[float, float]:
    """(ε, δ) from ``certify``, after checking the model can carry a certificate.

    Raises
    ------
    ValueError
        A model with hidden layers (non-convex loss), without an objective perturbation, with
        λ = 0, or (ε, δ) not ε > 0, 0 < δ < 1.
    """
    try:
        epsilon, delta = (float(v) for v in certify)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"certify must be a pair (epsilon, delta), got {certify!r}") from exc
    if not (math.isfinite(epsilon) and epsilon > 0 and 0 < delta < 1):
        raise ValueError(
            f"certify=(epsilon, delta) needs epsilon > 0 and 0 < delta < 1, got {certify!r}"
        )
    if len(model.sizes_) != 2:
        raise ValueError(
            f"certify=(ε, δ) needs a model without hidden layer (hidden=()), got hidden="
            f"{tuple(model.sizes_[1:-1])}: the certified-removal bound of Guo et al. (2020) needs "
            "a convex loss, and a network with hidden layers has a non-convex one"
        )
    if getattr(model, "perturbation_", None) is None:
        raise ValueError(
            "certify=(ε, δ) needs a model trained with objective perturbation to the exact "
            "minimum: train it with mlu.certified.fit_certified (the perturbation is not saved "
            "to files)"
        )
    if not model.l2 > 0:
        raise ValueError("certify=(ε, δ) needs l2 > 0 (a strongly convex objective)")
    return epsilon, delta


def certified_newton(
    model: MLP, X: np.ndarray, y: np.ndarray, mask: np.ndarray, epsilon: float, delta: float
) -> tuple[MLP, Certificate, UpdateCheck]:
    """The certified removal of ``mask`` from a :func:`fit_certified` model.

    Parameters
    ----------
    model : MLP
        Checked by :func:`check_certifiable`; never modified.
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
        The checked training data.
    mask : ndarray of bool, shape (n,)
        The forget set.
    epsilon, delta : float

    Returns
    -------
    new : MLP
        The model after the exact Newton step on the retained perturbed objective (checked by
        the line search of :func:`mlu.engine._safeguard.checked_update`), carrying the perturbation.
    certificate : Certificate
    check : UpdateCheck
        The line-search check of the step, in the mean form.
    """
    pert: Perturbation = model.perturbation_
    new = copy.deepcopy(model)
    new.trace_ = None
    X_R, y_R = X[~mask], y[~mask]
    n_R = X_R.shape[0]
    fun = _perturbed(new, X_R, y_R, pert.b)
    theta0 = model.theta_.copy()
    f0, g0 = fun(theta0)
    direction = _newton_direction(new, X_R, y_R, g0)
    new.theta_ = theta0
    hd = new.hvp(X_R, y_R, direction, curvature="hessian")
    solve_residual = n_R * float(np.linalg.norm(g0 + hd))
    predicted = float(g0 @ direction + 0.5 * direction @ hd)
    theta, check = checked_update(theta0, direction, fun, predicted, before=(f0, g0))
    new.theta_ = theta
    bound = removal_bound(new, X_R, direction)
    budget = noise_budget(pert.sigma, epsilon, delta)
    certificate = Certificate(
        epsilon=epsilon,
        delta=delta,
        sigma=pert.sigma,
        budget=budget,
        bound=bound,
        solve_residual=solve_residual,
        gradient_residual=n_R * check.grad_norm_after,
        certified=bool(check.step == 1.0 and bound + solve_residual <= budget),
    )
    return new, certificate, check


def removal_bound(model: MLP, X_R: np.ndarray, direction: np.ndarray) -> float:
    """γ ‖X̃_R‖₂ · ‖Δ‖₂ max_i ‖x̃_i‖ · ‖X̃_R Δ_Wᵀ‖_F for a model without hidden layer.

    Parameters
    ----------
    model : MLP
        A fitted model with ``sizes_ == (d, k)`` (its input transform is applied to X_R).
    X_R : ndarray, shape (m, d)
        The retained samples.
    direction : ndarray, shape (p,)
        The Newton update Δ, laid out as θ: W (k, d) row-major, then the k biases.
    """
    d, k = model.sizes_
    Xt = np.hstack([scaled(model, X_R), np.ones((X_R.shape[0], 1))])
    D = np.hstack([direction[: k * d].reshape(k, d), direction[k * d :, None]])  # (k, d+1)
    spectral = float(np.linalg.norm(Xt, 2))
    row_max = float(np.sqrt((Xt * Xt).sum(axis=1).max()))
    logit_change = float(np.linalg.norm(Xt @ D.T))
    return GAMMA_SOFTMAX * spectral * float(np.linalg.norm(direction)) * row_max * logit_change
