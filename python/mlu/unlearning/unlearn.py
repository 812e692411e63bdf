"""Unlearning a forget set from a trained MLP without retraining: influence and Newton updates.

Math (docs/design.md, "Unlearning"): with the objective
``L_D(θ) = (1/n) Σ_i ℓ(f(x_i; θ), y_i) + (λ/2)‖θ‖²`` over the training set D of n samples, a
forget set F ⊂ D and the retained set R = D \\ F,

* ``method="influence"`` (Koh & Liang, 2017):
  ``θ' = θ̂ + (1/n) (H_D + δI)⁻¹ Σ_{z∈F} ∇ℓ(z, θ̂)``;
* ``method="newton"``: ``θ' = θ̂ − (H_R + δI)⁻¹ ∇L_R(θ̂)``, where ``∇L_R`` includes ``λθ``;
  ``steps > 1`` repeats the step from the new point; a ``polish`` of SGD epochs on R may
  follow. Every update is checked against L_R by a line search (:mod:`mlu.engine._safeguard`).

H is the exact Hessian (``curvature="hessian"``) or the generalized Gauss-Newton matrix
(``"ggn"``), both including ``λI``; δ is the damping. The defaults
(:data:`mlu.defaults.DEFAULTS`) are one truncated Newton step and a short polish, the measured
best at a fifth of a retraining (docs/design.md, "The default unlearning").

The data are checked, encoded and scaled once per call (:class:`_Retained`); every objective,
gradient, curvature product and SGD epoch below runs on those arrays.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from ..defaults import (
    DEFAULT_CG_MIN,
    DEFAULT_CG_MULTICLASS,
    DEFAULT_CG_PER_EPOCH,
    DEFAULT_CURVATURE,
    DEFAULT_DAMPING,
    DEFAULT_METHOD,
    DEFAULT_POLISH,
    DEFAULT_POLISH_LR,
    DEFAULT_POLISH_SHARE,
    DEFAULT_STEP_TOL,
    DEFAULT_STEPS,
    DEFAULT_TOL,
    DEFAULTS,
    FACTORED_SOLVERS,
    METHODS,
    PCG_PRECONDITIONER,
    SOLVERS,
)
from ..engine import _dask, _linalg
from ..engine._linalg import PINV_RCOND
from ..engine._safeguard import UpdateCheck, checked_update
from ..engine._threads import serial_blas
from ..engine._validation import (
    CURVATURE_CHOICES,
    PARAMS_CHOICES,
    available_memory_bytes,
    check_choice,
    check_damping,
    check_data,
    check_forget,
    check_matrix_fits,
    check_model,
    check_positive_int,
    encode_labels,
)
from ..engine.curvature import Curvature, Problem, build_curvature, make_problem
from ..engine.model import MLP, HessianOperator
from ..exceptions import NotCertifiedWarning, NotPositiveDefiniteError, UpdateShortenedWarning
from .certified import DENSE_MAX as CERTIFIED_DENSE_MAX
from .certified import Certificate, certified_newton, check_certifiable
from .result import UnlearningResult

# The defaults of before mlu.defaults existed stay importable from here; the rest live there.
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
_FULL_MAXITER = 1000  # CG to tol: enough for κ ~ 1e4 at tol 1e-6; each iteration is one H v


# ---------------------------------------------------------------------------------- the problem


class _Retained:
    """The retained objective L_R over data checked once, and its derivatives at any θ.

    NumPy data are encoded, scaled and (for ``params="last"``) passed through the frozen
    layers once, into a :class:`mlu.engine.curvature.Problem`; every call below is one core call on
    those arrays. Dask data stay in their chunks and go through the model's dask methods.

    Parameters
    ----------
    model : MLP
        The working copy of the model (its θ is set for the dask path).
    X : ndarray or dask array, shape (m, d)
        Checked features of the rows (R, or D for the influence curvature).
    y : ndarray or dask array, shape (m,)
        Their labels (the model's classes).
    params : {"all", "last"}
    """

    def __init__(self, model: MLP, X, y, params: str) -> None:
        self.model, self.params = model, params
        self.dask = _dask.is_dask(X)
        self.where = slice(None) if params == "all" else model.last_layer_slice()
        self.n = int(X.shape[0])
        if self.dask:
            self.X, self.y = X, y
            self.problem: Problem | None = None
        else:
            yk = encode_labels(np.asarray(y), model.classes_)
            self.problem, _ = make_problem(model, X, yk, params)
        frozen = np.delete(model.theta_, np.arange(model.theta_.shape[0])[self.where])
        self._frozen_sq = float(frozen @ frozen)  # ‖θ‖² of the layers that stay fixed

    def _at(self, sub: np.ndarray) -> MLP:
        """The working model with its selected parameters set to ``sub`` (dask path)."""
        full = self.model.theta_.copy()
        full[self.where] = sub
        self.model.theta_ = full
        return self.model

    def value_and_grad(self, sub: np.ndarray) -> tuple[float, np.ndarray]:
        """L_R and its gradient w.r.t. the selected parameters, shape (p,): one pass."""
        pr = self.problem
        if pr is None:
            model = self._at(sub)
            return model.objective(self.X, self.y), model.gradient(self.X, self.y, self.params)
        # the core's value is the mean loss; L_R adds (λ/2)‖θ‖² over all of θ, frozen layers too
        g, loss = _core.gradient(sub, list(pr.sizes), pr.activation, pr.X, pr.y, pr.l2)
        return float(loss) + 0.5 * pr.l2 * (float(sub @ sub) + self._frozen_sq), np.asarray(g)

    def operator(self, sub: np.ndarray, curvature: str):
        """v ↦ (H_R + λI) v at ``sub`` (forward pass cached), with ``.cg``."""
        pr = self.problem
        if pr is None:
            return self._at(sub).hessian_operator(self.X, self.y, self.params, curvature)
        core = _core.HessianOperator(
            sub, list(pr.sizes), pr.activation, pr.X, pr.y, pr.l2, curvature
        )
        return HessianOperator(core, self.params, curvature)

    def cg(
        self,
        sub: np.ndarray,
        curvature: str,
        b: np.ndarray,
        damping: float,
        tol: float,
        maxiter: int,
        exact_residual: bool = True,
        precondition: Curvature | None = None,
    ) -> dict:
        """CG on (H_R + λI + δI) x = b at ``sub`` (:meth:`mlu.HessianOperator.cg`'s dict);
        ``exact_residual=False`` reports CG's recursive residual, saving one product. With
        ``precondition``, its ``solve`` preconditions the same loop (``_core.cg``)."""
        op = self.operator(sub, curvature)
        if precondition is None:
            return op.cg(b, damping=damping, tol=tol, maxiter=maxiter, true_residual=exact_residual)
        return _core.cg(
            op.matvec, b, damping, tol, maxiter, exact_residual, precondition=precondition.solve
        )

    def hessian(self, sub: np.ndarray, curvature: str) -> np.ndarray:
        """H_R + λI at ``sub``, shape (p, p)."""
        pr = self.problem
        if pr is None:
            return self._at(sub).hessian(self.X, self.y, self.params, curvature)
        check_matrix_fits(sub.shape[0], copies=1.2)
        return _core.hessian(sub, list(pr.sizes), pr.activation, pr.X, pr.y, pr.l2, curvature)

    def gradient_sum(self, rows: np.ndarray) -> np.ndarray:
        """Σ ∇ℓ(z, θ̂) over ``rows`` (no λ term), shape (p,): one backward pass."""
        if self.problem is not None:
            return self.problem.gradient_sum(rows)
        model = self.model
        theta = model.theta_[self.where]
        X_F, y_F = self.X[rows], self.y[rows]
        return len(rows) * (model.gradient(X_F, y_F, params=self.params) - model.l2 * theta)

    def factored(self, sub: np.ndarray, kind: str, damping: float) -> Curvature:
        """The ``kind`` ("kfac"/"ekfac") GGN at ``sub`` over these rows, built once."""
        if self.problem is not None:
            problem = dataclasses.replace(self.problem, theta=sub)
        else:
            problem, _ = make_problem(self._at(sub), self.X, self.y, self.params)
        return build_curvature(problem, kind, damping)[0]

    def sgd_steps(self, sub: np.ndarray, steps: int, seed: int, lr: float) -> np.ndarray:
        """``steps`` minibatch steps of the model's SGD (its momentum, starting at zero, batch
        size and λ) from ``sub``, over ``steps · batch_size`` rows drawn as seeded passes over
        these samples (one core epoch over those rows). Dask data: only those rows are
        gathered, so the result is the NumPy one bit for bit."""
        model = self.model
        hyper = model.get_params(deep=False)
        batch = int(hyper["batch_size"])
        rng = np.random.default_rng(seed)
        need = int(steps) * batch
        order = np.concatenate([rng.permutation(self.n) for _ in range(-(-need // self.n))])
        order = order[:need]
        if self.problem is not None:
            pr = self.problem
            X, y = np.ascontiguousarray(pr.X[order]), pr.y[order]
        else:
            unique, back = np.unique(order, return_inverse=True)
            X_u = np.asarray(self.X[unique].compute(), dtype=np.float64)
            y_u = encode_labels(np.asarray(self.y[unique]), model.classes_)
            pr, _ = make_problem(model, X_u, y_u, self.params)  # scaled (and features) once
            X, y = np.ascontiguousarray(pr.X[back]), pr.y[back]
        velocity = np.zeros_like(sub)
        args = (seed, lr, float(hyper["momentum"]), batch, float(model.l2))
        theta, _, _ = _core.sgd_epoch(sub, velocity, list(pr.sizes), pr.activation, X, y, *args)
        return np.asarray(theta)


# ---------------------------------------------------------------------------------- solving


@dataclass(frozen=True)
class _Options:
    """How each linear system (H + δI) x = b is solved; see :func:`unlearn`."""

    curvature: str
    solver: str
    damping: float
    tol: float
    maxiter: int | None
    truncated: bool  # CG stops at maxiter by design (the default step): no warning


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
    ret: _Retained, sub: np.ndarray, b: np.ndarray, curvature: str, damping: float
) -> tuple[np.ndarray, _SolveInfo]:
    """Cholesky of H + δI; for the exact Hessian fall back to the GGN when H + δI is
    indefinite or nearly singular; eigh (pseudo-inverse) when even that fails."""
    info = _SolveInfo(solver="cholesky", curvature=curvature)
    H = ret.hessian(sub, curvature)
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
        H = ret.hessian(sub, "ggn")
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
    ret: _Retained,
    sub: np.ndarray,
    b: np.ndarray,
    opt: _Options,
    pre: Curvature | None = None,
) -> tuple[np.ndarray, _SolveInfo]:
    """x = (H + δI)⁻¹ b with H the curvature of L over ``ret``'s rows at ``sub``; ``pre``:
    the preconditioner of ``solver="pcg"`` when the caller built it (else built here)."""
    p = b.shape[0]
    curvature, solver, damping = opt.curvature, opt.solver, opt.damping
    if solver == "auto" and fits_dense(p):
        return _solve_dense_auto(ret, sub, b, curvature, damping)
    info = _SolveInfo(solver=solver, curvature=curvature)
    if solver in ("cholesky", "eigh"):
        H = ret.hessian(sub, curvature)
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

    maxiter = min(10 * p, _FULL_MAXITER) if opt.maxiter is None else opt.maxiter
    if solver == "pcg" and pre is None:
        pre = ret.factored(sub, PCG_PRECONDITIONER, damping)
    if solver != "pcg":
        pre = None
    res = ret.cg(
        sub, curvature, b, damping, opt.tol, maxiter, exact_residual=not opt.truncated,
        precondition=pre,
    )  # fmt: skip
    info.solver = "pcg" if pre is not None else "cg"
    info.iterations = int(res["iterations"])
    info.negative_curvature = bool(res["negative_curvature"])
    stalled = not res["converged"] and not opt.truncated  # a truncated CG stops by design
    if solver == "auto" and curvature == "hessian" and (res["negative_curvature"] or stalled):
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
        res = ret.cg(sub, "ggn", b, damping, opt.tol, maxiter, exact_residual=not opt.truncated)
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
        if opt.truncated:
            info.notes.append(
                f"cg truncated at {res['iterations']} iterations by design (relative "
                f"residual {res['relative_residual']:.3g}; a truncated Newton step)"
            )
        else:
            msg = (
                f"cg did not reach tol={opt.tol:g} in {res['iterations']} iterations "
                f"(relative residual {res['relative_residual']:.3g}); raise maxiter or damping"
            )
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            info.notes.append(msg)
    info.residual = float(res["relative_residual"])
    return np.asarray(res["x"]), info


# ---------------------------------------------------------------------------------- updating


class _CheckedUpdate:
    """The parameters being unlearned, on a copy of the model, and every update to them
    checked against the retained objective L_R (:mod:`mlu.engine._safeguard`).

    Parameters
    ----------
    model : MLP
        The trained model; never modified (the updates go to a deep copy).
    X_R : ndarray or dask array, shape (n_R, d)
    y_R : ndarray or dask array, shape (n_R,)
        The retained set R, checked.
    params : {"all", "last"}
        Which parameters the updates move.
    safeguard : bool
        Check each update (line search on L_R) or apply it as it is.
    """

    def __init__(self, model: MLP, X_R, y_R, params: str, safeguard: bool) -> None:
        self.model = copy.deepcopy(model)
        self.model.trace_ = None  # the training record describes θ̂, not the unlearned model
        self.retained = _Retained(self.model, X_R, y_R, params)
        self.where = self.retained.where
        self.theta = model.theta_.copy()
        self.params, self.safeguard = params, safeguard
        self.notes: list[str] = []
        self.checks: list[UpdateCheck] = []
        self.taken = 0  # updates taken (influence: 1; Newton: the steps applied)
        self._at_theta: tuple[float, np.ndarray] | None = None  # (L_R, ∇L_R) at self.theta

    def sub(self) -> np.ndarray:
        """The updated parameters at the current θ (a copy)."""
        return self.theta[self.where].copy()

    def value_and_grad(self) -> tuple[float, np.ndarray]:
        """L_R and ∇L_R at the current θ (remembered from the last check: no second pass)."""
        if self._at_theta is None:
            self._at_theta = self.retained.value_and_grad(self.sub())
        return self._at_theta

    def apply(self, direction: np.ndarray, predicted: float, label: str, warn: bool = True) -> bool:
        """θ[where] += direction, checked against L_R when ``safeguard``; False if not applied.

        ``predicted`` is the change of L_R the update's own model predicts for the full step;
        ``warn=False`` records a shortened step in the notes without a warning (the polish,
        whose full step is an SGD epoch rather than a model's minimiser)."""
        if not self.safeguard:
            self.theta[self.where] += direction
            self._at_theta = None
            return True
        seen: dict[bytes, tuple[float, np.ndarray]] = {}

        def objective(sub: np.ndarray) -> tuple[float, np.ndarray]:
            value = self.retained.value_and_grad(sub)
            seen[sub.tobytes()] = value
            return value

        sub, check = checked_update(
            self.sub(), direction, objective, predicted, before=self.value_and_grad()
        )
        self.checks.append(check)
        if check.step > 0.0:
            self.theta[self.where] = sub
            self._at_theta = seen.get(sub.tobytes())
        if check.shortened and check.significant:
            msg = f"{label}: {check.describe()}"
            if warn:
                # apply <- _influence_update / _newton_steps <- unlearn <- the caller
                warnings.warn(msg, UpdateShortenedWarning, stacklevel=4)
            self.notes.append(msg)
        return check.step > 0.0

    def result(self) -> MLP:
        """The unlearned model (the copy at the final θ)."""
        self.model.theta_ = self.theta
        return self.model


def _newton_predicted(g: np.ndarray, x: np.ndarray, damping: float) -> float:
    """L_R's change predicted for the step −x by the quadratic model with the curvature H that
    solved (H + δI) x = g: ``−gᵀx + ½ xᵀHx = −½ gᵀx − ½ δ‖x‖²``, since a CG iterate started at
    zero (and a direct solve) has ``xᵀ(H + δI)x = xᵀg`` (Galerkin condition): no extra
    product."""
    return float(-0.5 * (g @ x) - 0.5 * damping * (x @ x))


def _influence_update(
    update: _CheckedUpdate, X, y, mask: np.ndarray, opt: _Options
) -> list[_SolveInfo]:
    """The one-step influence update θ̂ + (1/n)(H_D + δI)⁻¹ Σ_F ∇ℓ, checked; its solve's info."""
    everything = _Retained(update.model, X, y, update.params)  # H_D: over all of D
    sub = update.sub()
    b = everything.gradient_sum(np.flatnonzero(mask))
    if opt.solver in FACTORED_SOLVERS:
        x = everything.factored(sub, opt.solver, opt.damping).solve(b)
        info = _SolveInfo(solver=opt.solver, curvature="ggn")
        info.notes.append(f"{opt.solver} curvature of the GGN at θ̂ over D built once")
    else:
        x, info = _solve(everything, sub, b, opt)
    update.notes += info.notes
    d = x / everything.n
    predicted = float("nan")
    if update.safeguard:  # the quadratic model of L_R along d: one product with H_R
        _, g_R = update.value_and_grad()
        hd = update.retained.operator(sub, info.curvature).matvec(d)
        predicted = float(g_R @ d + 0.5 * d @ hd)
    update.apply(d, predicted, "influence update")
    update.taken = 1
    return [info]


def _newton_steps(update: _CheckedUpdate, steps: int, opt: _Options) -> list[_SolveInfo]:
    """Up to ``steps`` checked Newton steps on L_R; the info of each solve.

    Stops early at an exactly stationary point, when the check finds no decrease, or when a
    step no longer moves θ beyond rounding. With a factored solver the curvature is built once
    at θ̂ and reused for every step (a quasi-Newton iteration)."""
    infos: list[_SolveInfo] = []
    factored = pre = None
    if opt.solver in FACTORED_SOLVERS:
        factored = update.retained.factored(update.sub(), opt.solver, opt.damping)
        update.notes.append(
            f"{opt.solver} curvature of the GGN at θ̂ over {update.retained.n} samples built once "
            f"({factored.build_time:.3g} s) and reused by every step"
        )
    elif opt.solver == "pcg":  # the preconditioner, built once for every step's CG
        pre = update.retained.factored(update.sub(), PCG_PRECONDITIONER, opt.damping)
        update.notes.append(
            f"CG preconditioned by the {PCG_PRECONDITIONER} GGN at θ̂ over "
            f"{update.retained.n} samples, built once ({pre.build_time:.3g} s)"
        )
    for _ in range(steps):
        f_R, g = update.value_and_grad()
        if not np.any(g):
            break  # exactly stationary: nothing to do
        if factored is not None:
            x, info = factored.solve(g), _SolveInfo(solver=opt.solver, curvature="ggn")
            predicted = 0.5 * float(g @ -x)  # C x = g: g·d + ½ dᵀCd = ½ g·d
        else:
            x, info = _solve(update.retained, update.sub(), g, opt, pre)
            predicted = _newton_predicted(g, x, opt.damping)
        update.notes += info.notes
        infos.append(info)
        label = f"newton step {update.taken + 1}"
        if not update.apply(-x, predicted, label):
            if update.checks and not update.checks[-1].significant:
                update.notes.append(f"{label}: converged to rounding; stopped")
            break
        update.taken += 1
        if update.checks and update.checks[-1].step * np.linalg.norm(x) <= 1e-14 * max(
            1.0, float(np.linalg.norm(update.theta))
        ):
            break  # converged to rounding
    return infos


def _polish_seed(model: MLP) -> int:
    """The polish's shuffling seed: fixed by the model's seed and epochs (repeatable)."""
    seed = int(model.get_params(deep=False)["seed"])
    epochs = int(getattr(model, "n_iter_", 0) or 0)
    return int(np.random.SeedSequence([seed, epochs, 0x706F6C]).generate_state(1)[0] >> 1)


def _default_cg_iterations(model: MLP) -> int:
    """The truncated Newton step's CG budget (:data:`mlu.defaults.DEFAULT_CG_PER_EPOCH`)."""
    epochs = int(model.get_params(deep=False)["epochs"])
    extra = DEFAULT_CG_MULTICLASS if len(model.classes_) > 2 else 0
    return max(DEFAULT_CG_MIN, int(DEFAULT_CG_PER_EPOCH * epochs + 0.5) + extra)


def _default_polish(model: MLP, n: int) -> int:
    """:data:`DEFAULT_POLISH` SGD steps, at most :data:`DEFAULT_POLISH_SHARE` of the steps of a
    retraining on the n retained samples (at least one)."""
    hyper = model.get_params(deep=False)
    trained = int(hyper["epochs"]) * -(-n // int(hyper["batch_size"]))
    return max(1, min(DEFAULT_POLISH, int(DEFAULT_POLISH_SHARE * trained)))


def _polish(update: _CheckedUpdate, model: MLP, steps: int) -> int:
    """``steps`` minibatch steps of the model's SGD on R at :data:`DEFAULT_POLISH_LR` of its
    learning rate, from the Newton step's result, checked against L_R like every update; the
    steps applied (0 when the check refused them)."""
    retained = update.retained
    lr = DEFAULT_POLISH_LR * float(model.get_params(deep=False)["lr"])
    start = update.sub()
    direction = retained.sgd_steps(start, steps, _polish_seed(model), lr) - start
    _, g = update.value_and_grad()
    # first-order prediction: an SGD run has no quadratic model of its own
    label = f"polish ({steps} SGD steps on R)"
    return steps if update.apply(direction, float(g @ direction), label, warn=False) else 0


# ---------------------------------------------------------------------------------- unlearning


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
    polish: float | None = None,
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
    solver : {"auto", "cholesky", "eigh", "cg", "pcg", "kfac", "ekfac", "woodbury"}
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
        for ``"ekfac"``; :mod:`mlu.engine.curvature`) built once at θ̂ — over R for ``"newton"``,
        over D for ``"influence"`` — in one pass over the data and reused by every Newton step,
        so no step needs Hessian-vector products: far cheaper than CG for large networks, and
        an approximation of the exact GGN step (``tol`` and ``maxiter`` are not used).
        ``"woodbury"`` (GGN only): the exact GGN held as ``λ'I + BᵀB`` and solved in its
        n·k-dimensional Gram space, built once at θ̂ like K-FAC (the Unlearner's Woodbury form;
        needs l2 + δ > 0). ``"pcg"``: CG as ``"cg"``, preconditioned by the
        :data:`~mlu.defaults.PCG_PRECONDITIONER` (EK-FAC) GGN built once at θ̂ and reused by
        every step (docs/design.md, "Solvers"); on the models of
        studies/pcg_preconditioner it needed more products than plain CG, so ``"auto"``
        never picks it.
    damping : float, default :data:`DEFAULT_DAMPING` (0.01)
        δ ≥ 0 added to the curvature (which already includes ``l2·I``); see
        :data:`mlu.defaults.DEFAULTS` for why these defaults.
    steps : int, optional
        Newton steps (``method="newton"`` only; default :data:`DEFAULT_STEPS` = 1), each from
        the point the previous one reached; the loop ends early when a step cannot decrease
        L_R any more.
    tol : float, optional
        Relative residual tolerance of CG. Not given: the Newton steps are truncated Newton
        steps (CG stops at ``maxiter`` by design, relative residual :data:`DEFAULT_STEP_TOL`
        at most) and the influence update solves to :data:`DEFAULT_TOL` (1e-6). Given: every
        solve runs CG to ``tol`` (``maxiter`` default ``min(10·p, 1000)``) and warns
        (RuntimeWarning) when it does not get there.
    maxiter : int, optional
        CG iteration limit per solve. Default for the truncated Newton steps
        (``method="newton"`` without ``tol``): :data:`DEFAULT_CG_PER_EPOCH` (0.1) per epoch the
        model was trained for, rounded, one more for more than two classes, at least
        :data:`DEFAULT_CG_MIN` (2 for the paper's two-class 20-epoch models, 3 with 10
        classes); else ``min(10·p, 1000)``.
    safeguard : bool, default True
        Check every update (the influence update, each Newton step) against the retained
        objective ``L_R(θ) = (1/|R|) Σ_R ℓ + (l2/2)‖θ‖²``: an update that would increase it is
        shortened by a backtracking line search along its direction, down to no change at all
        (:func:`~mlu.engine._safeguard.checked_update`), with an :class:`UpdateShortenedWarning`
        and a
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
        ``steps`` 1 or None, ``safeguard`` True, ``polish`` 0 or None (not polished).
    polish : int, optional
        SGD steps on R after the Newton step(s): minibatches of the model's batch size, with
        its momentum (starting at zero) at :data:`mlu.defaults.DEFAULT_POLISH_LR` (1/2) of its
        learning rate, shuffled with a seed fixed by the model's (repeatable). Checked like
        every update: a polish that would raise L_R is shortened (a note, no warning: an SGD
        run is not a minimiser's step). Default for ``method="newton"``:
        :data:`DEFAULT_POLISH` (32) steps, at most :data:`DEFAULT_POLISH_SHARE` (5%) of the
        steps of a retraining on R; 0 for ``"influence"``. ``polish=0`` gives the plain
        Newton step(s).

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
        raise ValueError(f"solver={solver!r} is a form of the GGN: use curvature='ggn'")
    damping = check_damping(damping)
    steps_given, polish_given = steps, polish
    steps = check_positive_int(1 if steps is None else steps, "steps")
    if method == "influence" and steps != 1:
        raise ValueError("steps > 1 is only meaningful for method='newton'")
    truncated = method == "newton" and tol is None
    if tol is None:
        tol = DEFAULT_STEP_TOL if method == "newton" else DEFAULT_TOL
    if not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if maxiter is not None:
        maxiter = check_positive_int(maxiter, "maxiter")
    elif truncated:  # a share of the training's cost (mlu.defaults.DEFAULT_CG_PER_EPOCH)
        maxiter = _default_cg_iterations(model)
    if polish is not None:
        if isinstance(polish, (bool, np.bool_)) or not isinstance(polish, (int, np.integer)):
            raise ValueError(f"polish must be an int >= 0 (SGD steps), got {polish!r}")
        if polish < 0:
            raise ValueError(f"polish must be an int >= 0 (SGD steps), got {polish!r}")
        if polish and method != "newton":
            raise ValueError("polish is a finish of the Newton steps: use method='newton'")
    # Checked, encoded and scaled once; everything below runs on these arrays.
    X, y = _dask.checked_pair(model, X, y) if _dask.is_dask(X, y) else check_data(model, X, y)
    mask = check_forget(forget, X.shape[0])
    n_forget = int(mask.sum())
    if certify is not None:
        if polish_given:
            raise ValueError("certify=(ε, δ) is one exact Newton step: polish must be 0 or None")
        return _unlearn_certified(
            model, X, y, mask, certify, method, params, steps_given, safeguard, start
        )

    update = _CheckedUpdate(model, X[~mask], y[~mask], params, safeguard)
    opt = _Options(curvature, solver, damping, float(tol), maxiter, truncated)
    if polish is None:
        polish = _default_polish(model, update.retained.n) if method == "newton" else 0
    # NumPy's vector products between the core's passes: threaded BLAS would stall the
    # core's threads (docs/design.md, "Threads")
    with serial_blas():
        if method == "influence":
            infos = _influence_update(update, X, y, mask, opt)
        else:
            infos = _newton_steps(update, steps, opt)
        polished = _polish(update, model, int(polish)) if polish > 0 else 0

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
        polish=polished,
    )


def _joined(values) -> str:
    """Distinct values in order of first use, joined by '+' (Newton steps may differ)."""
    return "+".join(dict.fromkeys(values))


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
