"""Unlearning a forget set from a trained MLP without retraining: influence and Newton updates.

Math (docs/design.md, "Unlearning"): with the objective
``L_D(θ) = (1/n) Σ_i ℓ(f(x_i; θ), y_i) + (λ/2)‖θ‖²`` over the training set D of n samples, a
forget set F ⊂ D and the retained set R = D \\ F,

* ``method="influence"`` (Koh & Liang, 2017):
  ``θ' = θ̂ + (1/n) (H_D + δI)⁻¹ Σ_{z∈F} ∇ℓ(z, θ̂)``;
* ``method="newton"``: ``θ' = θ̂ − (H_R + δI)⁻¹ ∇L_R(θ̂)``, where ``∇L_R`` includes ``λθ``;
  ``steps > 1`` repeats the step from the new point. Every update is checked against L_R by
  a line search (:mod:`mlu._safeguard`).

H is the exact Hessian (``curvature="hessian"``) or the generalized Gauss-Newton matrix
(``"ggn"``), both including ``λI``; δ is the damping. The gradient sum over F is a single
right-hand side, so each call (each Newton step) does one linear solve.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from . import _dask, _linalg
from ._linalg import PINV_RCOND
from ._safeguard import UpdateCheck, checked_update
from ._threads import serial_blas
from ._validation import (
    CURVATURE_CHOICES,
    PARAMS_CHOICES,
    available_memory_bytes,
    check_choice,
    check_damping,
    check_data,
    check_forget,
    check_model,
    check_positive_int,
    encode_labels,
)
from .certified import DENSE_MAX as CERTIFIED_DENSE_MAX
from .certified import Certificate, certified_newton, check_certifiable
from .curvature import Curvature, build_curvature, make_problem
from .exceptions import NotCertifiedWarning, NotPositiveDefiniteError, UpdateShortenedWarning
from .model import MLP

__all__ = [
    "DEFAULTS",
    "DEFAULT_CURVATURE",
    "DEFAULT_DAMPING",
    "DEFAULT_METHOD",
    "DEFAULT_STEPS",
    "DEFAULT_STEP_TOL",
    "DEFAULT_TOL",
    "DENSE_MAX_PARAMS",
    "FACTORED_SOLVERS",
    "Certificate",
    "METHODS",
    "SOLVERS",
    "UnlearningResult",
    "UpdateCheck",
    "UpdateShortenedWarning",
    "check_forget",
    "fits_dense",
    "unlearn",
]

METHODS = ("influence", "newton")
SOLVERS = ("auto", "cholesky", "eigh", "cg", "kfac", "ekfac")
FACTORED_SOLVERS = ("kfac", "ekfac")
"""Solvers that build a Kronecker-factored GGN once at θ̂ (:mod:`mlu.curvature`) and reuse it
for every step: one pass over the data to build, no Hessian-vector products in the solve."""

DEFAULT_METHOD = "newton"
DEFAULT_CURVATURE = "ggn"
DEFAULT_DAMPING = 0.01
DEFAULT_STEPS = 8
DEFAULT_TOL = 1e-6
DEFAULT_STEP_TOL = 1e-3
"""CG's relative residual for one solve (:data:`DEFAULT_TOL`: the influence update, a single
Newton step) and for each of several Newton steps (:data:`DEFAULT_STEP_TOL`), when ``tol`` is
not given. Each of several steps is followed by another from the point it reached, which
corrects its error (an inexact Newton method), so solving each to 1e-6 bought nothing
measurable. benchmarks/results/unlearn_large.md (784-256-10, 6000 Fashion-MNIST samples, the
default pipeline, seeds 0-4, one thread): test accuracy within 0.09 points per seed, 8.7-9.3
instead of 11.1-16.8 retrainings (each against a retraining timed in the same run). The 65 cells of
benchmarks/results/pipeline_table.md (1e-3) against pipeline_tol1e-6.md: mean gain 3.32 against
3.30 points, 15 cells missing a per-seed target against 14 (Fashion-MNIST 0 vs 1, r = 10%,
seed 4: two test samples fewer right).
"""
DEFAULTS = MappingProxyType(
    {
        "method": DEFAULT_METHOD,
        "curvature": DEFAULT_CURVATURE,
        "damping": DEFAULT_DAMPING,
        "steps": DEFAULT_STEPS,
    }
)
"""The one set of unlearning defaults, shared by :func:`unlearn`, the CLI, the experiment
driver and the README: eight checked Newton steps on the retained objective with the
Gauss-Newton curvature and damping δ = 0.01 (absolute; added to H, which already holds
``l2·I``).

Curvature and damping were chosen by benchmarks/unlearn_sweep.py (results in
benchmarks/results/unlearn_sweep.md): the paper's 784-50-2 / 64-50-k ReLU MLPs (SGD, 20
epochs) on Fashion-MNIST 0 vs 6 and 0 vs 1 (500 per class), digits 0 vs 1 (r = 30%) and digits
10 classes (r = 20%), seeds 0-4 judged one by one, forgetting the samples the default detector
flags. Newton/GGN/0.01 met both per-seed targets (never more than 0.2 points below the noisy
model, ≥ 50% of the gap to clean retraining recovered) most often; the previous default
influence/hessian/0.01 met 7 of 20 (8 cells below the noisy model, down to -3.9 points). The
exact Hessian of a trained ReLU net is indefinite (eigenvalues down to -0.12 with 20% flipped
labels), so its Newton step falls back to the GGN anyway (see ``solver="auto"``).

The number of steps was chosen by benchmarks/newton_steps.py (results in
benchmarks/results/newton_steps.md) on all 65 cells of the pipeline table (those data sets at
r = 10-40%, seeds 0-4): cells missing a per-seed target fell from 27 (1 step) and 23 (2 steps)
to 15 (5 steps) and 14 (8 steps) and stayed at 14-16 up to 20 steps; cells more than 0.2
points below the noisy model fell from 12 (2 steps) to 3 (8 steps); with the truly flipped
samples as the forget set, from 13 (2 steps) to 8 (8 steps). The same step curve with δ = 0.1
(results/newton_steps_d0.1.md) missed 16-17 at 4-10 steps and with δ = 0.001 16 at 8-10, so
δ = 0.01 stays. The price is time: each step is one solve (CG to :data:`DEFAULT_STEP_TOL`),
and on these sets the eight steps took 2-3 retrainings (digits) to 4-5 (Fashion-MNIST pairs,
0.9-1.2 s, 2 threads), and 9 (one thread) to 17 (two) on 784-256-10 with 6000 samples
(benchmarks/results/unlearn_large.md, one thread). The model is trained by SGD that stopped
short of a minimum, so later steps also finish optimising L_R; the line-search check
(``safeguard``) keeps every step from raising it, and the loop stops early when no step can
decrease it any more.
"""

DENSE_MAX_PARAMS = 1000
"""``solver="auto"`` assembles and factors H only for p ≤ this (and when three p × p float64
copies take under a quarter of the available memory); beyond, it runs CG on Hessian-vector
products. Assembling H costs about n·r·p² flops (a rank update over r Gauss-Newton rows per
sample, r = 1 for two classes, k otherwise; p Hessian-vector products for networks with two or
more hidden layers) and factoring it p³/3, while CG needed 30-200 products for tol 1e-6 at the
default damping, so CG is the cheaper one for a single right-hand side (measured on digits,
n = 1347, one thread: p = 610 dense 0.66 s vs CG 0.02 s; p = 1510 dense 3.3 s vs CG 0.08 s).
The dense path is kept for small p because it is exact and checks H + δI for near-singularity;
set ``solver="cg"`` to skip it, or ``"cholesky"``/``"eigh"`` to force it.
"""

_DENSE_MEMORY_FRACTION = 0.25
_DEFAULT_MAXITER = 1000  # CG: enough for κ ~ 1e4 at tol 1e-6; each iteration is one H v


@dataclass(frozen=True, repr=False)
class UnlearningResult:
    """The unlearned model and what a user needs to trust it.

    Attributes
    ----------
    model : estimator
        The NEW model (the input model is left untouched).
    method : str
        ``"influence"``, ``"newton"`` or a baseline's name (``"retrain"``, ``"finetune"``,
        ``"gradient_ascent"``).
    solver : str or None
        The solver actually used (``"cholesky"``, ``"eigh"``, ``"cg"``; ``"sgd"`` for
        baselines), after any fallback; Newton steps that used different ones are joined by
        ``"+"`` in order of first use (e.g. ``"cholesky+eigh"``).
    params : str or None
        ``"all"`` or ``"last"`` (the parameters that changed).
    curvature : str or None
        ``"hessian"`` or ``"ggn"``, the one actually used (joined by ``"+"`` like ``solver``
        when Newton steps differed, e.g. ``"ggn+hessian"``).
    damping : float or None
        δ added to the curvature.
    iterations : int or None
        CG iterations (summed over Newton steps), or training epochs / ascent steps for
        baselines; None for direct solves.
    residual : float or None
        Relative residual ``‖(H + δI)x − b‖ / ‖b‖`` of the solve (largest over Newton steps).
    min_eigenvalue : float or None
        Smallest eigenvalue of H (without δ) where an eigendecomposition was computed.
    negative_curvature : bool
        H + δI was found not positive definite (Cholesky failed, CG met a direction of
        non-positive curvature, or eigh found λ_min + δ ≤ 0).
    n_forget : int
        Number of forgotten samples |F|.
    steps : int
        Newton steps taken (1 for influence).
    time : float
        Wall seconds of the whole call.
    notes : tuple of str
        Fallbacks and warnings, in the order they happened.
    checks : tuple of UpdateCheck
        One per update (the influence update, each Newton step) when ``safeguard=True``: the
        retained objective L_R and ‖∇L_R‖ before and after, the predicted and actual change of
        L_R, and the line-search factor ``step`` (1 = the update as computed).
    certificate : Certificate or None
        With ``certify=(ε, δ)``: the gradient-residual bound achieved, the budget it is allowed
        and whether the removal is certified (:class:`mlu.certified.Certificate`).
    """

    model: object
    method: str
    solver: str | None
    params: str | None
    curvature: str | None
    damping: float | None
    iterations: int | None
    residual: float | None
    min_eigenvalue: float | None
    negative_curvature: bool
    n_forget: int
    steps: int
    time: float
    notes: tuple[str, ...] = field(default=())
    checks: tuple[UpdateCheck, ...] = field(default=())
    certificate: Certificate | None = None

    @property
    def shortened(self) -> bool:
        """Whether any update was shortened (or not applied) because it would raise L_R."""
        return any(c.shortened and c.significant for c in self.checks)

    @property
    def objective_before(self) -> float | None:
        """L_R at the trained parameters (None without ``safeguard``)."""
        return self.checks[0].objective_before if self.checks else None

    @property
    def objective_after(self) -> float | None:
        """L_R at the unlearned parameters (None without ``safeguard``)."""
        return self.checks[-1].objective_after if self.checks else None

    @property
    def gradient_residual(self) -> float | None:
        """‖∇L_R‖ at the unlearned parameters (Guo et al., 2020); None without ``safeguard``."""
        return self.checks[-1].grad_norm_after if self.checks else None

    def summary(self) -> str:
        """A short multi-line, human-readable description."""

        def fmt(v) -> str:
            if v is None:
                return "-"
            if isinstance(v, float):
                return f"{v:.3g}"
            return str(v)

        lines = [
            f"UnlearningResult: method={self.method}, forgot {self.n_forget} samples "
            f"in {self.time:.3g} s",
            f"  solver={fmt(self.solver)}, params={fmt(self.params)}, "
            f"curvature={fmt(self.curvature)}, damping={fmt(self.damping)}, steps={self.steps}",
            f"  iterations={fmt(self.iterations)}, residual={fmt(self.residual)}, "
            f"min_eigenvalue={fmt(self.min_eigenvalue)}, "
            f"negative_curvature={self.negative_curvature}",
        ]
        if self.checks:
            first, last = self.checks[0], self.checks[-1]
            lines.append(
                f"  retained objective L_R {first.objective_before:.6g} -> "
                f"{last.objective_after:.6g}, |grad L_R| {first.grad_norm_before:.3g} -> "
                f"{last.grad_norm_after:.3g}, line-search factors "
                + ", ".join(f"{c.step:.3g}" for c in self.checks)
            )
        if self.certificate is not None:
            lines.append(f"  certificate: {self.certificate.describe()}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"UnlearningResult(method={self.method!r}, solver={self.solver!r}, "
            f"params={self.params!r}, curvature={self.curvature!r}, damping={self.damping!r}, "
            f"n_forget={self.n_forget}, steps={self.steps}, iterations={self.iterations}, "
            f"residual={self.residual!r}, min_eigenvalue={self.min_eigenvalue!r}, "
            f"negative_curvature={self.negative_curvature}, time={self.time:.3g}, "
            f"notes={self.notes!r})"
        )


# ---------------------------------------------------------------------------------- validation


# ---------------------------------------------------------------------------------- solving


@dataclass
class _SolveInfo:
    solver: str
    curvature: str
    iterations: int | None = None
    residual: float | None = None
    min_eigenvalue: float | None = None
    negative_curvature: bool = False
    notes: list[str] = field(default_factory=list)


def fits_dense(p: int) -> bool:
    """Whether ``solver="auto"`` assembles H for p parameters (see :data:`DENSE_MAX_PARAMS`)."""
    return (
        p <= DENSE_MAX_PARAMS and 3 * 8 * p * p < _DENSE_MEMORY_FRACTION * available_memory_bytes()
    )


def _solve_eigh(H: np.ndarray, b: np.ndarray, damping: float, info: _SolveInfo) -> np.ndarray:
    """Pseudo-inverse solve through ``eigh``: eigenpairs with ``λ + δ ≤ rcond·max|λ + δ|``
    (all where H + δI is not positive) are left out."""
    x, w, dropped = _linalg.pinv_solve(H, b, damping, PINV_RCOND)
    info.solver = "eigh"
    info.min_eigenvalue = float(w[0])
    if w[0] + damping <= 0:
        info.negative_curvature = True
    if dropped:
        info.notes.append(
            f"eigh: {dropped} of {len(w)} eigenvalues of H + δI were <= {PINV_RCOND:g}·max "
            f"(smallest eigenvalue of H {w[0]:.3g}); their directions were left out (pinv)"
        )
    return x


def _solve_dense_auto(
    model: MLP, X, y, b: np.ndarray, params: str, curvature: str, damping: float
) -> tuple[np.ndarray, _SolveInfo]:
    """Cholesky of H + δI; for the exact Hessian fall back to the GGN when H + δI is
    indefinite or nearly singular; eigh (pseudo-inverse) when even that fails."""
    info = _SolveInfo(solver="cholesky", curvature=curvature)
    H = model.hessian(X, y, params=params, curvature=curvature)
    try:
        L = _linalg.cholesky(H, damping)
        reason = None
        if curvature == "hessian":
            lam = _linalg.smallest_eigenvalue_estimate(L)
            if lam < 0.5 * damping:
                # λ_min(H) < -δ/2: the damped solve would amplify those directions by > 2/δ
                reason = (
                    f"H + δI is nearly singular (smallest eigenvalue ≈ {lam:.3g} < δ/2, "
                    f"damping {damping:g})"
                )
    except NotPositiveDefiniteError:
        L, reason = None, f"H + δI is indefinite (damping {damping:g})"
    if reason is not None and curvature == "hessian":
        info.negative_curvature = True
        info.notes.append(
            f"cholesky: {reason}; fell back to the GGN (positive semi-definite) curvature"
        )
        info.curvature = "ggn"
        H = model.hessian(X, y, params=params, curvature="ggn")
        try:
            L = _linalg.cholesky(H, damping)
        except NotPositiveDefiniteError:
            L = None
    if L is None:  # only for a singular GGN with l2 + δ = 0
        info.notes.append(
            f"cholesky: the {info.curvature} matrix + δI is singular (damping {damping:g}); "
            "fell back to eigh with a pseudo-inverse"
        )
        x = _solve_eigh(H, b, damping, info)
    else:
        x = _linalg.cholesky_solve(L, b)
    info.residual = _linalg.relative_residual(H, damping, x, b)
    return x, info


def _solve(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    b: np.ndarray,
    params: str,
    curvature: str,
    solver: str,
    damping: float,
    tol: float,
    maxiter: int | None,
) -> tuple[np.ndarray, _SolveInfo]:
    """x = (H + δI)⁻¹ b with H the curvature of ``model`` over (X, y); see :func:`unlearn`."""
    p = b.shape[0]
    if solver == "auto" and fits_dense(p):
        return _solve_dense_auto(model, X, y, b, params, curvature, damping)
    info = _SolveInfo(solver=solver, curvature=curvature)
    if solver in ("cholesky", "eigh"):
        H = model.hessian(X, y, params=params, curvature=curvature)
        if solver == "eigh":
            x = _solve_eigh(H, b, damping, info)
        else:
            try:
                L = _linalg.cholesky(H, damping)
            except NotPositiveDefiniteError as exc:
                raise NotPositiveDefiniteError(
                    f"solver='cholesky': H + δI (curvature={curvature!r}, damping={damping:g}) "
                    "is not positive definite. Raise damping, use curvature='ggn', or "
                    "solver='auto' (falls back to the GGN) / 'eigh' (pseudo-inverse)."
                ) from exc
            x = _linalg.cholesky_solve(L, b)
        info.residual = _linalg.relative_residual(H, damping, x, b)
        return x, info

    maxiter = min(10 * p, _DEFAULT_MAXITER) if maxiter is None else maxiter
    op = model.hessian_operator(X, y, params=params, curvature=curvature)
    res = op.cg(b, damping=damping, tol=tol, maxiter=maxiter)
    info.solver = "cg"
    info.iterations = int(res["iterations"])
    info.negative_curvature = bool(res["negative_curvature"])
    if solver == "auto" and curvature == "hessian" and not res["converged"]:
        # Indefinite, or so close to singular that CG stalls: the GGN is the robust choice.
        if res["negative_curvature"]:
            reason = f"met negative curvature of H + δI after {res['iterations']} iterations"
        else:
            reason = (
                f"did not converge in {res['iterations']} iterations "
                f"(relative residual {res['relative_residual']:.3g})"
            )
        info.notes.append(
            f"cg {reason} (damping {damping:g}); fell back to the GGN (positive semi-definite)"
        )
        op = model.hessian_operator(X, y, params=params, curvature="ggn")
        res = op.cg(b, damping=damping, tol=tol, maxiter=maxiter)
        info.curvature = "ggn"
        info.iterations += int(res["iterations"])
    if res["negative_curvature"]:  # after any fallback
        msg = (
            f"cg met a direction of non-positive curvature of H + δI (curvature="
            f"{info.curvature!r}, damping {damping:g}); the partial CG solution is returned. "
            "Raise damping or use curvature='ggn'."
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        info.notes.append(msg)
    elif not res["converged"]:
        msg = (
            f"cg did not reach tol={tol:g} in {res['iterations']} iterations "
            f"(relative residual {res['relative_residual']:.3g}); raise maxiter or damping"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        info.notes.append(msg)
    info.residual = float(res["relative_residual"])
    return np.asarray(res["x"]), info


# ---------------------------------------------------------------------------------- unlearning


def _factored_curvature(
    model: MLP, X, y, params: str, kind: str, damping: float
) -> tuple[Curvature, _SolveInfo]:
    """The ``kind`` ("kfac"/"ekfac") GGN of ``model`` at its θ over (X, y), built once."""
    yk = y if _dask.is_dask(X) else encode_labels(y, model.classes_)
    problem, _ = make_problem(model, X, yk, params)
    curv, _ = build_curvature(problem, kind, damping)
    info = _SolveInfo(solver=kind, curvature="ggn")
    info.notes.append(
        f"{kind} curvature of the GGN at θ̂ over {problem.n} samples built once "
        f"({curv.build_time:.3g} s) and reused by every step"
    )
    return curv, info


def _forget_gradient_sum(model: MLP, X_F: np.ndarray, y_F: np.ndarray, params: str) -> np.ndarray:
    """Σ_{z∈F} ∇ℓ(z, θ̂) as |F| · (mean gradient − l2·θ): one backward pass, never |F| × p."""
    theta = model.theta_ if params == "all" else model.theta_[model.last_layer_slice()]
    return X_F.shape[0] * (model.gradient(X_F, y_F, params=params) - model.l2 * theta)


def _joined(values) -> str:
    """Distinct values in order of first use, joined by '+' (Newton steps may differ)."""
    return "+".join(dict.fromkeys(values))


def unlearn(
    model: MLP,
    X,
    y,
    forget,
    method: str = DEFAULT_METHOD,
    params: str = "all",
    curvature: str = DEFAULT_CURVATURE,
    solver: str = "auto",
    damping: float = DEFAULT_DAMPING,
    steps: int | None = None,
    tol: float | None = None,
    maxiter: int | None = None,
    safeguard: bool = True,
    certify: tuple[float, float] | None = None,
) -> UnlearningResult:
    """Remove the effect of the forget set F from a trained MLP without retraining.

    Parameters
    ----------
    model : mlu.MLP
        The trained model θ̂; never modified.
    X : array-like, shape (n, d)
        The full training set D the model was trained on.
    y : array-like, shape (n,)
        Its (given, possibly noisy) labels.
    forget : array-like of int, shape (m,), or of bool, shape (n,)
        The forget set F: indices into D or a boolean mask. Not empty, no duplicates, and not
        all of D.
    method : {"newton", "influence"}, default "newton"
        ``"influence"``: ``θ' = θ̂ + (1/n)(H_D + δI)⁻¹ Σ_F ∇ℓ(z, θ̂)`` (Koh & Liang).
        ``"newton"``: ``θ' = θ̂ − (H_R + δI)⁻¹ ∇L_R(θ̂)`` on the retained set R; it uses the
        actual gradient, so it also corrects for training that stopped short of the optimum.
    params : {"all", "last"}
        ``"last"``: only the last layer changes (the paper's choice); θ, H and the gradients are
        restricted to it and the other layers stay frozen.
    curvature : {"ggn", "hessian"}, default "ggn"
        Exact Hessian (indefinite for non-convex nets) or the generalized Gauss-Newton matrix
        (positive semi-definite).
    solver : {"auto", "cholesky", "eigh", "cg", "kfac", "ekfac"}
        ``"auto"``: for p ≤ :data:`DENSE_MAX_PARAMS` (1000) assemble H and factor H + δI by
        Cholesky; otherwise CG on Hessian-vector products. With the exact Hessian, when H + δI
        turns out indefinite or nearly singular (Cholesky fails, or inverse iteration on the
        factor finds an eigenvalue below δ/2, or CG meets negative curvature or does not
        converge), ``"auto"`` solves with the GGN instead; a singular GGN (l2 = δ = 0) falls
        back to ``"eigh"``. Every fallback is recorded in ``result.notes`` and reflected in
        ``result.solver`` / ``result.curvature``. The explicit choices never switch:
        ``"cholesky"`` raises :class:`mlu.NotPositiveDefiniteError` on an indefinite matrix,
        ``"eigh"`` solves with the pseudo-inverse (eigenpairs with λ + δ ≤ 1e-10·max|λ + δ|,
        which includes every negative one, are left out) and reports ``min_eigenvalue``,
        ``"cg"`` warns (RuntimeWarning) on negative curvature or non-convergence.
        ``"kfac"``/``"ekfac"`` (GGN only): the Kronecker-factored GGN (eigenvalue-corrected
        for ``"ekfac"``; :mod:`mlu.curvature`) built once at θ̂ — over R for ``"newton"``,
        over D for ``"influence"`` — in one pass over the data and reused by every Newton step,
        so no step needs Hessian-vector products: far cheaper than CG for large networks, and
        an approximation of the exact GGN step (``tol`` and ``maxiter`` are not used).
    damping : float, default :data:`DEFAULT_DAMPING` (0.01)
        δ ≥ 0 added to the curvature (which already includes ``l2·I``); see :data:`DEFAULTS`
        for why these defaults (``method="newton"``, ``curvature="ggn"``, 0.01, 8 steps).
    steps : int, optional
        Newton steps (``method="newton"`` only; default :data:`DEFAULT_STEPS` = 8), each from
        the point the previous one reached.
        Use several steps for large forget sets, where one step is not enough; the loop ends
        early when a step cannot decrease L_R any more.
    tol : float, optional
        Relative residual tolerance of CG. Default :data:`DEFAULT_STEP_TOL` (1e-3) for each
        of several Newton steps, whose successors correct it, and :data:`DEFAULT_TOL` (1e-6)
        for a single solve (``method="influence"``, ``steps=1``).
    maxiter : int, optional
        CG iteration limit per solve (default ``min(10·p, 1000)``).
    safeguard : bool, default True
        Check every update (the influence update, each Newton step) against the retained
        objective ``L_R(θ) = (1/|R|) Σ_R ℓ + (l2/2)‖θ‖²``: an update that would increase it is
        shortened by a backtracking line search along its direction, down to no change at all
        (:func:`mlu._safeguard.checked_update`), with an :class:`UpdateShortenedWarning` and a
        note. ``result.checks`` reports L_R and ‖∇L_R‖ before and after, the predicted and
        actual change and the step factor. ``False`` applies the formulas as they are (as
        :mod:`mlu.reference` does).
    certify : (float, float), optional
        (ε, δ): certified removal (Guo et al., 2020) for a model without hidden layer trained
        by :func:`mlu.certified.fit_certified` (objective perturbation, exact minimum). The
        removal is then one exact Newton step (exact Hessian = GGN for such a model, damping 0,
        the line-search check on) on the retained perturbed objective, and
        ``result.certificate`` reports the data-dependent bound on the gradient residual it
        achieved against the budget σε/√(2 log(1.5/δ)). Over budget, the removal is not
        certified: a :class:`mlu.NotCertifiedWarning` says to retrain. ``damping`` and
        ``curvature`` are not used; ``method`` must be ``"newton"``, ``params`` ``"all"``,
        ``steps`` 1 or None, ``safeguard`` True.

    Returns
    -------
    UnlearningResult
        ``.model`` is a new MLP whose params differ from θ̂ (only in the last-layer slice for
        ``params="last"``); the other fields describe the solve.

    Raises
    ------
    ValueError
        Unknown option, bad forget set, X or y not matching the model; ``certify`` on a model
        with hidden layers (the bound needs a convex loss) or without objective perturbation.
    TypeError
        ``model`` is not a fitted mlu.MLP.
    mlu.NotPositiveDefiniteError
        ``solver="cholesky"`` on an indefinite H + δI.
    mlu.HessianTooLargeError
        ``solver="cholesky"``/``"eigh"`` with a p × p matrix that does not fit in memory.
    """
    start = time.perf_counter()
    check_model(model)
    check_choice(method, "method", METHODS)
    check_choice(params, "params", PARAMS_CHOICES)
    check_choice(curvature, "curvature", CURVATURE_CHOICES)
    check_choice(solver, "solver", SOLVERS)
    if solver in FACTORED_SOLVERS and curvature != "ggn":
        raise ValueError(
            f"solver={solver!r} is a Kronecker-factored form of the GGN: use curvature='ggn'"
        )
    damping = check_damping(damping)
    steps_given = steps
    if steps is None:
        steps = DEFAULT_STEPS if method == "newton" else 1
    steps = check_positive_int(steps, "steps")
    if method == "influence" and steps != 1:
        raise ValueError("steps > 1 is only meaningful for method='newton'")
    if tol is None:
        tol = DEFAULT_STEP_TOL if steps > 1 else DEFAULT_TOL
    if not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if maxiter is not None:
        maxiter = check_positive_int(maxiter, "maxiter")
    # dask: every sum below is a map-reduce over the chunks (model methods dispatch on dask)
    X, y = _dask.checked_pair(model, X, y) if _dask.is_dask(X, y) else check_data(model, X, y)
    mask = check_forget(forget, X.shape[0])
    n_forget = int(mask.sum())
    if certify is not None:
        return _unlearn_certified(
            model, X, y, mask, certify, method, params, steps_given, safeguard, start
        )

    update = _CheckedUpdate(model, X[~mask], y[~mask], params, safeguard)
    # NumPy's vector products between the core's passes: threaded BLAS would stall the
    # core's threads (docs/design.md, "Threads"; F-MNIST pairs 1.6-1.9 s -> 0.9-1.2 s)
    with serial_blas():
        if method == "influence":
            infos = _influence_update(
                update, model, X, y, mask, curvature, solver, damping, tol, maxiter
            )
        else:
            infos = _newton_steps(update, steps, curvature, solver, damping, tol, maxiter)

    new = update.result()
    if not infos:  # θ̂ was exactly stationary on R
        infos.append(_SolveInfo(solver="none" if solver == "auto" else solver, curvature=curvature))
    iterations = [i.iterations for i in infos if i.iterations is not None]
    residuals = [i.residual for i in infos if i.residual is not None]
    min_eigs = [i.min_eigenvalue for i in infos if i.min_eigenvalue is not None]
    return UnlearningResult(
        model=new,
        method=method,
        solver=_joined(i.solver for i in infos),
        params=params,
        curvature=_joined(i.curvature for i in infos),
        damping=damping,
        iterations=sum(iterations) if iterations else None,
        residual=max(residuals) if residuals else None,
        min_eigenvalue=min(min_eigs) if min_eigs else None,
        negative_curvature=any(i.negative_curvature for i in infos),
        n_forget=n_forget,
        steps=update.taken,
        time=time.perf_counter() - start,
        notes=tuple(update.notes),
        checks=tuple(update.checks),
    )


class _CheckedUpdate:
    """The parameters being unlearned, on a copy of the model, and every update to them
    checked against the retained objective L_R (:mod:`mlu._safeguard`).

    Parameters
    ----------
    model : MLP
        The trained model; never modified (the updates go to a deep copy).
    X_R : ndarray, shape (n_R, d)
    y_R : ndarray, shape (n_R,)
        The retained set R.
    params : {"all", "last"}
        Which parameters the updates move.
    safeguard : bool
        Check each update (line search on L_R) or apply it as it is.
    """

    def __init__(
        self, model: MLP, X_R: np.ndarray, y_R: np.ndarray, params: str, safeguard: bool
    ) -> None:
        self.model = copy.deepcopy(model)
        self.model.trace_ = None  # the training record describes θ̂, not the unlearned model
        self.where = slice(None) if params == "all" else model.last_layer_slice()
        self.theta = model.theta_.copy()
        self.X_R, self.y_R, self.params, self.safeguard = X_R, y_R, params, safeguard
        self.notes: list[str] = []
        self.checks: list[UpdateCheck] = []
        self.taken = 0  # updates taken (influence: 1; Newton: the steps applied)

    def retained(self, sub: np.ndarray) -> tuple[float, np.ndarray]:
        """L_R and its gradient (w.r.t. the updated parameters) at θ with θ[where] = sub."""
        full = self.theta.copy()
        full[self.where] = sub
        self.model.theta_ = full
        return self.model.objective(self.X_R, self.y_R), self.model.gradient(
            self.X_R, self.y_R, params=self.params
        )

    def current(self) -> MLP:
        """The copy of the model at the current θ (for a solve at that point)."""
        self.model.theta_ = self.theta
        return self.model

    def apply(
        self,
        direction: np.ndarray,
        g_R: np.ndarray | None,
        f_R: float,
        curv: str,
        label: str,
        factored_step: bool = False,
    ) -> bool:
        """θ[where] += direction, checked against L_R when ``safeguard``; False if not applied.

        The predicted change is the quadratic model's: with the exact curvature one
        Hessian-vector product; for a factored step, which solves C d = −g with the factored
        curvature C, it is g·d + ½ d·Cd = ½ g·d (no pass over the data)."""
        if not self.safeguard:
            self.theta[self.where] += direction
            return True
        assert g_R is not None  # computed whenever safeguard is on
        model = self.current()
        if factored_step:
            predicted = 0.5 * float(g_R @ direction)
        else:
            hd = model.hvp(self.X_R, self.y_R, direction, params=self.params, curvature=curv)
            predicted = float(g_R @ direction + 0.5 * direction @ hd)
        sub, check = checked_update(
            self.theta[self.where], direction, self.retained, predicted, before=(f_R, g_R)
        )
        self.checks.append(check)
        self.theta[self.where] = sub
        if check.shortened and check.significant:
            msg = f"{label}: {check.describe()}"
            # apply <- _influence_update / _newton_steps <- unlearn <- the caller
            warnings.warn(msg, UpdateShortenedWarning, stacklevel=4)
            self.notes.append(msg)
        return check.step > 0.0

    def result(self) -> MLP:
        """The unlearned model (the copy at the final θ)."""
        return self.current()


def _influence_update(
    update: _CheckedUpdate,
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    curvature: str,
    solver: str,
    damping: float,
    tol: float,
    maxiter: int | None,
) -> list[_SolveInfo]:
    """The one-step influence update θ̂ + (1/n)(H_D + δI)⁻¹ Σ_F ∇ℓ, checked; its solve's info."""
    params = update.params
    b = _forget_gradient_sum(model, X[mask], y[mask], params)
    if solver in FACTORED_SOLVERS:
        curv, info = _factored_curvature(model, X, y, params, solver, damping)
        x = curv.solve(b)
    else:
        x, info = _solve(model, X, y, b, params, curvature, solver, damping, tol, maxiter)
    update.notes += info.notes
    if update.safeguard:
        f_R, g_R = update.retained(update.theta[update.where])
    else:
        f_R, g_R = np.nan, None
    update.apply(x / X.shape[0], g_R, f_R, info.curvature, "influence update")
    update.taken = 1
    return [info]


def _newton_steps(
    update: _CheckedUpdate,
    steps: int,
    curvature: str,
    solver: str,
    damping: float,
    tol: float,
    maxiter: int | None,
) -> list[_SolveInfo]:
    """Up to ``steps`` checked Newton steps on L_R; the info of each solve.

    Stops early at an exactly stationary point, when the check finds no decrease, or when a
    step no longer moves θ beyond rounding. With a factored solver the curvature is built once
    at θ̂ and reused for every step (a quasi-Newton iteration)."""
    X_R, y_R, params = update.X_R, update.y_R, update.params
    infos: list[_SolveInfo] = []
    factored = None
    if solver in FACTORED_SOLVERS:
        factored, built = _factored_curvature(update.model, X_R, y_R, params, solver, damping)
        update.notes += built.notes
    for _ in range(steps):
        f_R, g = update.retained(update.theta[update.where])
        if not np.any(g):
            break  # exactly stationary: nothing to do
        if factored is not None:
            x, info = factored.solve(g), _SolveInfo(solver=solver, curvature="ggn")
        else:
            x, info = _solve(
                update.current(), X_R, y_R, g, params, curvature, solver, damping, tol, maxiter
            )
        update.notes += info.notes
        infos.append(info)
        label = f"newton step {update.taken + 1}"
        if not update.apply(-x, g, f_R, info.curvature, label, factored is not None):
            if update.checks and not update.checks[-1].significant:
                update.notes.append(f"{label}: converged to rounding; stopped")
            break
        update.taken += 1
        if update.checks and update.checks[-1].step * np.linalg.norm(x) <= 1e-14 * max(
            1.0, float(np.linalg.norm(update.theta))
        ):
            break  # converged to rounding
    return infos


def _unlearn_certified(
    model: MLP, X, y, mask, certify, method, params, steps, safeguard, start: float
) -> UnlearningResult:
    """``unlearn(..., certify=(ε, δ))``: the exact Newton step and its certificate."""
    epsilon, delta = check_certifiable(model, certify)
    if method != "newton" or params != "all" or steps not in (None, 1) or not safeguard:
        raise ValueError(
            "certify=(ε, δ) is one exact Newton step on all parameters with the update check: "
            f"needs method='newton', params='all', steps=1 and safeguard=True, got "
            f"method={method!r}, params={params!r}, steps={steps!r}, safeguard={safeguard!r}"
        )
    new, cert, check = certified_newton(model, X, y, mask, epsilon, delta)
    notes = []
    if check.shortened and check.significant:
        msg = f"certified newton step: {check.describe()}"
        warnings.warn(msg, UpdateShortenedWarning, stacklevel=3)
        notes.append(msg)
    if not cert.certified:
        msg = cert.describe()
        warnings.warn(msg, NotCertifiedWarning, stacklevel=3)
        notes.append(msg)
    return UnlearningResult(
        model=new,
        method="newton",
        solver="cholesky" if model.n_params <= CERTIFIED_DENSE_MAX else "cg",
        params="all",
        curvature="hessian",
        damping=0.0,
        iterations=None,
        residual=None,
        min_eigenvalue=None,
        negative_curvature=False,
        n_forget=int(mask.sum()),
        steps=1,
        time=time.perf_counter() - start,
        notes=tuple(notes),
        checks=(check,),
        certificate=cert,
    )
