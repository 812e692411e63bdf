"""What an unlearning call returns: the new model and what a user needs to trust it.

A leaf module (it imports only the check's record), shared by :func:`mlu.unlearn`,
:class:`mlu.Unlearner`, :mod:`mlu.certified` and the baselines (docs/design.md, "Module map").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine._safeguard import UpdateCheck

__all__ = ["Certificate", "UnlearningResult"]


@dataclass(frozen=True)
class Certificate:
    """What a certified removal (``mlu.unlearn(..., certify=(ε, δ))``) achieved.

    All residuals are in the sum form of Guo et al. (|R| times the gradient of the mean
    objective), the units of the budget.

    Attributes
    ----------
    epsilon, delta : float
        The (ε, δ) asked for.
    sigma : float
        σ of the model's objective perturbation.
    budget : float
        ε' = σ ε / √(2 log(1.5/δ)): the gradient residual the certificate allows.
    bound : float
        The data-dependent bound γ ‖X̃_R‖₂ ‖Δ‖₂ max_i‖x̃_i‖ ‖X̃_R Δ_Wᵀ‖_F of this removal.
    solve_residual : float
        ‖∇L_b(θ*; R) + H_R Δ‖, the linear solve's own error, added to the bound.
    gradient_residual : float
        The measured ‖∇L_b(θ⁻; R)‖ (never above ``bound + solve_residual`` for a full step).
    certified : bool
        ``bound + solve_residual <= budget`` and the Newton step was applied in full.
    """

    epsilon: float
    delta: float
    sigma: float
    budget: float
    bound: float
    solve_residual: float
    gradient_residual: float
    certified: bool

    def describe(self) -> str:
        """One plain sentence: certified or not, with the numbers."""
        spent = self.bound + self.solve_residual
        head = (
            f"({self.epsilon:g}, {self.delta:g})-certified removal"
            if self.certified
            else f"NOT ({self.epsilon:g}, {self.delta:g})-certified: retrain from scratch to "
            "remove these samples with a guarantee"
        )
        return (
            f"{head}; gradient-residual bound {spent:.3g} (measured {self.gradient_residual:.3g})"
            f" against the budget σε/c = {self.budget:.3g} (σ = {self.sigma:g})"
        )


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
    polish : int
        SGD steps on the retained set applied after the Newton step(s) (0: none, or refused by
        the check; see :data:`mlu.defaults.DEFAULT_POLISH`).
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
    polish: int = 0

    @property
    def shortened(self) -> bool:
        """Whether any update was shortened (or not applied) because it would raise L_R."""
        return any(c.shortened and c.significant for c in self.checks)

    @property
    def training_time(self) -> float | None:
        """Seconds of training of the model this one descends from (``model.fit_time_``);
        None when unknown (a model built from parameters, or from another library)."""
        seconds = getattr(self.model, "fit_time_", None)
        return float(seconds) if seconds is not None else None

    @property
    def cost_fraction(self) -> float | None:
        """:attr:`time` as a fraction of :attr:`training_time` (0.12: the call took 0.12 of
        this model's training time); None when the training time is unknown or zero."""
        seconds = self.training_time
        return self.time / seconds if seconds else None

    def describe_cost(self) -> str:
        """The cost in words: ``"0.12 s, 0.12 of this model's training time (1.0 s)"``."""
        text = f"{self.time:.3g} s"
        if self.cost_fraction is not None:
            text += (
                f", {self.cost_fraction:.2g} of this model's training time "
                f"({self.training_time:.3g} s)"
            )
        return text

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
            f"in {self.describe_cost()}",
            f"  solver={fmt(self.solver)}, params={fmt(self.params)}, "
            f"curvature={fmt(self.curvature)}, damping={fmt(self.damping)}, steps={self.steps}"
            + (f", polish={self.polish} SGD steps" if self.polish else ""),
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
