"""Curvature of the training objective at θ̂, built once and held in a factored form.

The objective over a retained set R of m samples is
``L_R(θ) = (1/m) Σ_{i∈R} ℓ_i(θ) + (λ/2)‖θ‖²`` (docs/design.md, "Math (contract)"); its
curvature is ``H_R = (1/m) C_R + λI`` where ``C_R`` is a sum of per-sample terms (exact
Hessians or Gauss-Newton terms). Every representation here stores sums over the samples
that are still retained, so that removing samples is a subtraction (a *downdate*), and
solves ``(H_R + δI) x = v`` from its factors (docs/design.md, "Unlearner"):

``"dense"``
    ``C_R`` itself (p × p, the GGN or the exact Hessian), refactored by Cholesky per solve
    state (eigh with a pseudo-inverse where ``H_R + δI`` is indefinite). Exact.
``"woodbury"``
    The exact GGN through the Gram matrix K = B Bᵀ of its Gauss-Newton rows (n·r × n·r,
    r = 1 for two classes, k otherwise): ``(cI + BᵀB/m)⁻¹ = (1/c)(I − Bᵀ(mcI + BBᵀ)⁻¹B)``
    with c = λ + δ. K is eigendecomposed once; removed rows are handled by a Schur
    complement in the Gram space, so nothing is refactored. Exact.
``"kfac"``
    Per layer ``(G/m) ⊗ (A/m)`` (Martens & Grosse 2015), with A the sum of ``ã ãᵀ`` over the
    layer inputs ``ã = [a; 1]`` and G the sum of ``g gᵀ`` over the Gauss-Newton factors g of
    the pre-activations (no sampling); block-diagonal over layers. A downdate subtracts
    the removed samples' sums and re-decomposes the small factors.
``"ekfac"``
    K-FAC's eigenbases ``Q_G ⊗ Q_A`` with the eigenvalues replaced by the GGN's own
    diagonal in that basis (George et al. 2018): ``S[o, j] = Σ_i Σ_ρ (Q_Gᵀ g)_o² (Q_Aᵀ ã)_j²``.
    The basis is the one of the build; a downdate subtracts the removed samples'
    corrections in that basis (exact for this definition; re-decomposing would need the
    corrections of every retained sample again, a pass over the data).

The sums are computed by the C++ core over any set of rows ("contribution of these rows"),
the factoring and solves here. On dask data (docs/design.md, "Dask inputs") the same
contributions run per row chunk on the workers and are tree-summed (:mod:`mlu.engine._dask`);
a downdate gathers only the removed rows. Woodbury's Gram matrix is built there one block per
pair of chunks on the workers and factored on the client (n·r × n·r must fit there), its
products with B are maps over the chunks (docs/design.md, "Dask performance").
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _core
from ..exceptions import NotPositiveDefiniteError
from . import _dask, _linalg
from ._problem import scaled
from ._validation import HessianTooLargeError, activation_spec, available_memory_bytes

if TYPE_CHECKING:
    from .model import MLP

__all__ = [
    "REPRESENTATIONS",
    "Curvature",
    "DenseCurvature",
    "EKFACCurvature",
    "KFACCurvature",
    "Problem",
    "WoodburyCurvature",
    "build_curvature",
    "choose_representation",
    "curvature_from_arrays",
    "estimate_bytes",
    "make_problem",
]

REPRESENTATIONS = ("auto", "dense", "woodbury", "kfac", "ekfac")

_MEMORY_FRACTION = 0.5  # of the available memory a representation may take
_DENSE_AUTO_MAX_P = 2000  # "auto": refactoring (p³/3 flops) per request stays under ~0.5 s
_WOODBURY_AUTO_MAX_ROWS = 8000  # "auto": eigh of the n·r Gram matrix at build
_CHUNK = 4096  # samples per call to the core during a build (progress and bounded memory)
_PINV_RCOND = 1e-10


@dataclass(frozen=True)
class Problem:
    """The optimisation problem the curvature describes.

    Attributes
    ----------
    theta : ndarray, shape (p,)
        θ̂ restricted to the parameters that change (all, or the last layer).
    sizes : tuple of int
        Layer sizes of the (sub)network those parameters form.
    activation : str
    X : ndarray, shape (n, sizes[0])
        Its inputs (the data, or the last hidden layer's outputs for ``params="last"``).
    y : ndarray of int64, shape (n,)
        Labels encoded 0..k-1.
    l2 : float
        λ of the objective.
    source : mlu.engine._dask.RowSource or None
        For dask data: where the rows live (``X`` is then the row-chunked dask array, ``y``
        the encoded labels gathered, and the sums run per chunk on the workers).
    """

    theta: np.ndarray
    sizes: tuple[int, ...]
    activation: str
    X: np.ndarray
    y: np.ndarray
    l2: float
    source: Any = None

    @property
    def p(self) -> int:
        return int(self.theta.shape[0])

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def rows_per_sample(self) -> int:
        """r: Gauss-Newton rows per sample (1 for two classes, k otherwise)."""
        k = self.sizes[-1]
        return 1 if k == 2 else k

    def subset(self, rows) -> Problem:
        """The problem over the given rows only, in memory (for dask data: those rows gathered)."""
        if self.source is not None:
            theta, sizes, act, X, yk = self.source.rows(rows)
            return Problem(theta, tuple(sizes), act, X, yk, self.l2)
        X = np.ascontiguousarray(self.X[rows])
        return Problem(self.theta, self.sizes, self.activation, X, self.y[rows], self.l2)

    def core_args(self, rows=slice(None)) -> tuple[np.ndarray, list[int], str, np.ndarray]:
        if self.source is not None:
            return self.subset(rows).core_args()
        return self.theta, list(self.sizes), self.activation, np.ascontiguousarray(self.X[rows])

    def gradient_sum(self, rows=slice(None)) -> np.ndarray:
        """Σ ∇ℓ_i(θ̂) over the given rows (no λ term), shape (p,)."""
        if self.source is not None:
            if isinstance(rows, slice) and rows == slice(None):
                return _sum_over_chunks(self, _gradient_sum, "gradient sum", 0.0)[0]
            return self.subset(rows).gradient_sum()
        X = np.ascontiguousarray(self.X[rows])
        y = np.ascontiguousarray(self.y[rows])
        if X.shape[0] == 0:
            return np.zeros(self.p)
        g, _ = _core.gradient(self.theta, list(self.sizes), self.activation, X, y, 0.0)
        return X.shape[0] * g

    def per_sample_gradients(self, rows=slice(None)) -> np.ndarray:
        """∇ℓ_i(θ̂) for the given rows, shape (len(rows), p)."""
        if self.source is not None:
            return self.subset(rows).per_sample_gradients()
        X = np.ascontiguousarray(self.X[rows])
        y = np.ascontiguousarray(self.y[rows])
        return _core.per_sample_gradients(self.theta, list(self.sizes), self.activation, X, y)

    def layer_offsets(self) -> list[tuple[int, int, int, int]]:
        """(w_off, b_off, out, in) per layer in θ's layout (W row-major, then b)."""
        out, off = [], 0
        for d_in, d_out in zip(self.sizes[:-1], self.sizes[1:]):
            out.append((off, off + d_out * d_in, d_out, d_in))
            off += d_out * d_in + d_out
        return out


def _progress(total: int, desc: str, work: float):
    """tqdm over ``total`` steps on a terminal when the work (≈ flops) takes over ~1 s."""
    if total <= 1 or work < 2e9 or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _chunks(n: int) -> list[slice]:
    return [slice(s, min(n, s + _CHUNK)) for s in range(0, n, _CHUNK)]


def _sum_over_chunks(problem: Problem, fn, desc: str, work: float, args: tuple = ()):
    """Σ fn(chunk, *args) over sample chunks (lists of arrays summed elementwise), with a
    progress bar; ``chunk`` is the :class:`Problem` over the chunk's rows.

    ``fn`` is a module-level function so that, on dask data, it runs on the workers: every
    row chunk of the dask array is one call there, and the results are tree-summed.
    """
    if problem.source is not None:
        return problem.source.sum(_ChunkCall(fn, args, problem.l2))
    chunks = _chunks(problem.n)
    bar = _progress(len(chunks), desc, work)
    total = None
    try:
        for rows in chunks:
            part = fn(problem.subset(rows), *args)
            total = part if total is None else [a + b for a, b in zip(total, part)]
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return total


@dataclass(frozen=True)
class _ChunkCall:
    """``fn`` on the Problem of one dask chunk (what ``RowSource.sum`` calls)."""

    fn: Any
    args: tuple
    l2: float

    def __call__(self, theta, sizes, activation, X, yk) -> list[np.ndarray]:
        return self.fn(Problem(theta, tuple(sizes), activation, X, yk, self.l2), *self.args)


# Contributions of the rows of a problem (sums over its samples, no λ term).


def _gradient_sum(rows: Problem) -> list[np.ndarray]:
    return [rows.gradient_sum()]


def _dense_sum(rows: Problem, matrix: str) -> list[np.ndarray]:
    if rows.n == 0:
        return [np.zeros((rows.p, rows.p))]
    H = _core.hessian(*rows.core_args(), rows.y, 0.0, matrix)
    H *= rows.n
    return [H]


def _kfac_sum(rows: Problem) -> list[np.ndarray]:
    A, G = _core.kfac_sums(*rows.core_args())
    return list(A) + list(G)


def _ekfac_sum(rows: Problem, QA, QG) -> list[np.ndarray]:
    return list(_core.ekfac_sums(*rows.core_args(), QA, QG))


def estimate_bytes(kind: str, problem: Problem) -> int:
    """Memory the representation ``kind`` holds for ``problem`` (the largest term), bytes."""
    p, n, r = problem.p, problem.n, problem.rows_per_sample
    sizes = problem.sizes
    if kind == "dense":
        return 3 * 8 * p * p  # C, the matrix being factored, its factor
    if kind == "woodbury":
        nr = n * r
        return 8 * (3 * nr * nr + nr * sum(sizes[1:]) + n * sum(sizes[1:-1]))
    if kind in ("kfac", "ekfac"):
        return 8 * sum(
            3 * (a + 1) ** 2 + 3 * b * b + 2 * b * (a + 1) for a, b in zip(sizes[:-1], sizes[1:])
        )
    raise ValueError(f"unknown representation {kind!r}")


def _check_fits(kind: str, problem: Problem) -> None:
    need = estimate_bytes(kind, problem)
    avail = available_memory_bytes()
    if need > _MEMORY_FRACTION * avail:
        raise HessianTooLargeError(
            f"curvature={kind!r} for p = {problem.p} parameters and n = {problem.n} samples "
            f"(r = {problem.rows_per_sample} Gauss-Newton rows each) needs about "
            f"{need / 2**30:.2f} GiB, more than the {_MEMORY_FRACTION * avail / 2**30:.2f} GiB "
            f"({_MEMORY_FRACTION:g} of the available memory) it may use. Use curvature='ekfac' "
            "(memory Σ (d_in² + d_out²) per layer) or params='last'."
        )


def choose_representation(problem: Problem, damping: float | None = None) -> tuple[str, str]:
    """The representation ``curvature="auto"`` picks for ``problem`` (with ``damping`` δ, when
    known), and why."""
    p, n, r = problem.p, problem.n, problem.rows_per_sample
    avail = _MEMORY_FRACTION * available_memory_bytes()
    if p <= _DENSE_AUTO_MAX_P and estimate_bytes("dense", problem) <= avail:
        return "dense", f"p = {p} <= {_DENSE_AUTO_MAX_P}: the exact GGN, factored densely"
    if (
        (damping is None or problem.l2 + damping > 0)  # Woodbury divides by λ + δ
        and n * r < p
        and n * r <= _WOODBURY_AUTO_MAX_ROWS
        and estimate_bytes("woodbury", problem) <= avail
    ):
        return "woodbury", (
            f"n·r = {n}·{r} = {n * r} < p = {p} and <= {_WOODBURY_AUTO_MAX_ROWS}: the exact GGN "
            "through the Gram matrix of its Gauss-Newton rows"
        )
    why = (
        f"p = {p} > {_DENSE_AUTO_MAX_P} and n·r = {n * r} "
        + ("≥ p" if n * r >= p else f"> {_WOODBURY_AUTO_MAX_ROWS}")
        + ": EK-FAC (memory independent of n, any p)"
    )
    return "ekfac", why


class Curvature:
    """Base of the representations: ``H_R + δI`` over the retained samples, and its solves.

    Attributes
    ----------
    kind : str
    matrix : str
        ``"ggn"`` or ``"hessian"`` (dense only).
    m : int
        Number of retained samples the sums run over.
    l2, damping : float
    """

    kind = ""
    matrix = "ggn"
    build_time = 0.0  # seconds, set by build_curvature

    def __init__(self, problem: Problem, damping: float):
        self.problem = problem
        self.l2 = float(problem.l2)
        self.damping = float(damping)
        self.m = problem.n
        self.notes: list[str] = []

    @property
    def shift(self) -> float:
        """c = λ + δ, the multiple of I in ``H_R + δI``."""
        return self.l2 + self.damping

    def solve(self, V: np.ndarray, BV: np.ndarray | None = None) -> np.ndarray:
        """``(H_R + δI)⁻¹ V`` for V of shape (p,) or (p, m).

        ``BV`` (Woodbury only): the image ``B V`` of V under the Gauss-Newton rows when the
        caller has it (see :meth:`WoodburyCurvature.retained_gradient_image`).
        """
        V = np.asarray(V, dtype=np.float64)
        one = V.ndim == 1
        X = self._solve(V[:, None] if one else V, BV)
        return X[:, 0] if one else X

    def _solve(self, V: np.ndarray, BV: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def downdated(self, rows: np.ndarray) -> Curvature:
        """A new representation over the retained samples minus ``rows`` (indices into the
        problem's data); this one is left as it was."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """The state as plain arrays (for the pickle-free ``.npz`` format)."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------ dense


class DenseCurvature(Curvature):
    """``C_R`` (p × p): Cholesky of ``C_R/m + (λ+δ)I``, eigh (pseudo-inverse) where that is
    not positive definite (an indefinite exact Hessian)."""

    kind = "dense"

    def __init__(self, problem: Problem, damping: float, matrix: str = "ggn", C=None, m=None):
        super().__init__(problem, damping)
        self.matrix = matrix
        if C is None:
            _check_fits("dense", problem)
            C = _sum_over_chunks(
                problem,
                _dense_sum,
                "dense curvature",
                problem.n * problem.p * problem.p,
                (matrix,),
            )[0]
        self.C = C
        if m is not None:
            self.m = int(m)
        self._factor()

    def _contribution(self, rows) -> np.ndarray:
        return _dense_sum(self.problem.subset(rows), self.matrix)[0]

    def _factor(self) -> None:
        A = self.C / self.m
        A[np.diag_indices_from(A)] += self.l2
        self._A = A
        try:
            self._L: np.ndarray | None = _linalg.cholesky(A, self.damping)
            self._eig = None
            self.solver = "cholesky"
        except NotPositiveDefiniteError:
            w, U = _linalg.eigh(A)
            self._L = None
            self._eig = (w, U)
            self.solver = "eigh"
            self.notes.append(
                f"dense: H + δI is not positive definite (smallest eigenvalue of H {w[0]:.3g}, "
                f"damping {self.damping:g}); solved with eigh and a pseudo-inverse"
            )

    def _solve(self, V, BV=None):
        if self._L is not None:
            return _linalg.cholesky_solve_many(self._L, V)
        assert self._eig is not None  # no Cholesky factor: the eigendecomposition
        w, U = self._eig
        return _linalg.eig_pinv_solve_many(w, U, V, self.damping, _PINV_RCOND)

    def residual(self, x: np.ndarray, b: np.ndarray) -> float:
        bn = float(np.linalg.norm(b))
        return 0.0 if bn == 0 else float(np.linalg.norm(self._A @ x + self.damping * x - b) / bn)

    def downdated(self, rows):
        C = self.C - self._contribution(rows)
        return DenseCurvature(self.problem, self.damping, self.matrix, C=C, m=self.m - len(rows))

    def arrays(self):
        return {"C": self.C, "m": np.array(self.m), "matrix": np.array(self.matrix)}


# ------------------------------------------------------------------------------------ woodbury


class WoodburyCurvature(Curvature):
    """The exact GGN through the Gram matrix of its Gauss-Newton rows (see the module docs)."""

    kind = "woodbury"
    solver = "woodbury"

    def __init__(self, problem: Problem, damping: float, state=None):
        super().__init__(problem, damping)
        sizes = list(problem.sizes)
        if state is None:
            if problem.l2 + damping <= 0:
                raise ValueError(
                    "curvature='woodbury' needs l2 + damping > 0: the Woodbury identity divides "
                    "by it (the GGN of n·r < p rows is singular). Use damping > 0"
                )
            _check_fits("woodbury", problem)
            gn = None
            G: list[np.ndarray] = []
            hidden: list[np.ndarray] = []
            if (
                problem.source is not None
            ):  # dask: B stays in its chunks (mlu.engine._dask.GramRows)
                gn = problem.source.gram_rows()
                K = gn.gram()
            else:
                X = np.ascontiguousarray(problem.X)
                G, hidden = _core.gn_terms(problem.theta, sizes, problem.activation, X)
                K = _core.woodbury_gram(sizes, X, G, hidden)
            w, V = _linalg.eigh(K)
            alive = np.ones(problem.n, dtype=bool)
            # B Σ_D ∇ℓ and B θ̂: with the Gram matrix they give B ∇L_R(θ̂) for any R
            gD = problem.gradient_sum()
            state = {"G": G, "hidden": hidden, "gn": gn}
            images = self._jvp(state, np.stack([gD, problem.theta]))
            state = {
                **state,
                "K": K,
                "w": w,
                "V": V,
                "alive": alive,
                "images": images,
                "images_removed": np.zeros(K.shape[0]),
            }
        self.G, self.hidden = list(state["G"]), list(state["hidden"])
        self._gn = state.get("gn")  # dask data: B's chunks on the workers, else None
        self.K, self.w = state["K"], state["w"]
        self.V = np.ascontiguousarray(state["V"])  # the core reads it row-major, uncopied
        self.alive = state["alive"]
        self.images, self.images_removed = state["images"], state["images_removed"]
        self.m = int(self.alive.sum())
        r = problem.rows_per_sample
        self._alive_rows = np.repeat(self.alive, r)

    def _gram_solve(self, W: np.ndarray) -> np.ndarray:
        """``(sI + K_RR)⁻¹ W`` on the retained rows (zero on the removed), s = m·c."""
        s = self.m * self.shift
        dead = np.flatnonzero(~self._alive_rows)
        if 3 * len(dead) >= self.K.shape[0]:  # many removed: factor the retained block
            keep = np.flatnonzero(self._alive_rows)
            M = self.K[np.ix_(keep, keep)]
            M[np.diag_indices_from(M)] += s
            L = _linalg.cholesky(M, 0.0)
            Y = np.zeros_like(W)
            Y[keep] = _linalg.cholesky_solve_many(L, W[keep])
            return Y
        # With M = sI + K = V diag(w + s) Vᵀ and F the removed rows,
        # (M_RR)⁻¹ = (M⁻¹)_RR − (M⁻¹)_RF ((M⁻¹)_FF)⁻¹ (M⁻¹)_FR: O((n·r)² + |F|²·n·r) a solve,
        # in the core (its products on the OpenMP threads; NumPy's would be serial here).
        return _core.gram_retained_solve(self.V, self.w, s, dead, np.ascontiguousarray(W))

    def _jvp(self, state: dict, V: np.ndarray) -> np.ndarray:
        """``B Vᵀ`` (n·r, m) for V (m, p), from ``state``'s G and hidden or its dask chunks."""
        if state.get("gn") is not None:
            return state["gn"].jvp(V)
        X = np.ascontiguousarray(self.problem.X)
        sizes = list(self.problem.sizes)
        return _core.gn_jvp(sizes, X, state["G"], state["hidden"], np.ascontiguousarray(V))

    def _solve(self, V, BV=None):
        state = {"G": self.G, "hidden": self.hidden, "gn": self._gn}
        if BV is None:
            BV = self._jvp(state, V.T)
        Z = np.ascontiguousarray(self._gram_solve(BV))
        if self._gn is not None:
            BtZ = self._gn.vjp(Z)
        else:
            X = np.ascontiguousarray(self.problem.X)
            BtZ = _core.gn_vjp(list(self.problem.sizes), X, self.G, self.hidden, Z)
        return (V - BtZ.T) / self.shift

    def _gradient_images(self, rows: np.ndarray) -> np.ndarray | None:
        """B Σ_{rows} ∇ℓ_i(θ̂) from the Gram matrix alone, or None where that is unsafe.

        A sample's gradient lies in the span of its own Gauss-Newton rows,
        ``∇ℓ_i = J_iᵀ(p_i − e_y) = Σ_ρ c_ρ b_{i,ρ}`` (``p − e_y`` is orthogonal to 1, the null
        space of the output curvature), so ``B ∇ℓ_i = K[:, rows of i] c``: O(n·r·|F|·r) with no
        pass over the data. ``c_y = −1/√p_y`` (k > 2); for two classes ``−√(p_1/p_0)`` (y = 0)
        or ``√(p_0/p_1)`` (y = 1). A probability so small that c would amplify rounding
        (|c| > 1e6) returns None: the caller then forms B g by a product over the data.
        """
        prob, r = self.problem, self.problem.rows_per_sample
        sub = prob.subset(rows)  # on dask data: the request's rows, gathered once
        Z = _core.logits(sub.theta, list(sub.sizes), sub.activation, sub.X)
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        y = sub.y
        with np.errstate(divide="ignore", invalid="ignore"):
            if r == 1:
                c = np.where(y == 0, -np.sqrt(P[:, 1] / P[:, 0]), np.sqrt(P[:, 0] / P[:, 1]))
                cols = np.asarray(rows)
            else:
                c = -1.0 / np.sqrt(P[np.arange(len(rows)), y])
                cols = np.asarray(rows) * r + y
        if not np.all(np.isfinite(c)) or np.abs(c).max() > 1e6:
            return None
        return self.K[:, cols] @ c

    def retained_gradient_image(self) -> np.ndarray | None:
        """``B ∇L_R(θ̂)`` over the retained samples from stored images (no pass over the data),
        or None when an image was unsafe (see :meth:`_gradient_images`)."""
        if self.images is None or self.images_removed is None:
            return None
        BgD, Btheta = self.images[:, 0], self.images[:, 1]
        return ((BgD - self.images_removed) / self.m + self.l2 * Btheta)[:, None]

    def downdated(self, rows):
        alive = self.alive.copy()
        alive[rows] = False
        removed = None
        if self.images_removed is not None:
            part = self._gradient_images(rows)
            removed = None if part is None else self.images_removed + part
        state = {
            "G": self.G,
            "hidden": self.hidden,
            "gn": self._gn,
            "K": self.K,
            "w": self.w,
            "V": self.V,
            "alive": alive,
            "images": self.images,
            "images_removed": removed,
        }
        return WoodburyCurvature(self.problem, self.damping, state=state)

    def restored(self) -> WoodburyCurvature:
        """The representation over all of the data again (every row alive; shares the
        stored arrays, nothing is recomputed)."""
        state = {
            "G": self.G,
            "hidden": self.hidden,
            "gn": self._gn,
            "K": self.K,
            "w": self.w,
            "V": self.V,
            "alive": np.ones_like(self.alive),
            "images": self.images,
            "images_removed": np.zeros(self.K.shape[0]),
        }
        return WoodburyCurvature(self.problem, self.damping, state=state)

    def arrays(self):
        out = {"K": self.K, "w": self.w, "V": self.V, "alive": self.alive, "images": self.images}
        if self.images_removed is not None:
            out["images_removed"] = self.images_removed
        out.update({f"G{i}": g for i, g in enumerate(self.G)})
        out.update({f"hidden{i}": h for i, h in enumerate(self.hidden)})
        return out


# ------------------------------------------------------------------------------------ K-FAC


def _pinv_diagonal(den: np.ndarray) -> np.ndarray:
    """1 / den, and 0 where den <= rcond·max(den): the pseudo-inverse of a factored curvature
    that is singular (l2 = δ = 0 and a zero eigenvalue), as the dense path's eigh fallback."""
    keep = den > _PINV_RCOND * max(float(den.max()), 0.0)
    return np.divide(1.0, den, out=np.zeros_like(den), where=keep)


def _eigh_factors(mats: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [_linalg.eigh(M) for M in mats]


class KFACCurvature(Curvature):
    """Per-layer Kronecker factors ``(G/m) ⊗ (A/m)`` (block-diagonal over layers)."""

    kind = "kfac"
    solver = "kfac"

    def __init__(self, problem: Problem, damping: float, state=None):
        super().__init__(problem, damping)
        if state is None:
            _check_fits(self.kind, problem)
            A, G = self._build_sums(problem)
            state = {"A": A, "G": G, "m": problem.n}
        self.A, self.G, self.m = list(state["A"]), list(state["G"]), int(state["m"])
        self._decompose(state)

    def _build_sums(self, problem: Problem):
        L = len(problem.sizes) - 1
        total = _sum_over_chunks(
            problem,
            _kfac_sum,
            f"{self.kind} factors",
            6.0 * problem.n * problem.p * problem.rows_per_sample,
        )
        return total[:L], total[L:]

    def _kfac_contribution(self, rows) -> list[np.ndarray]:
        return _kfac_sum(self.problem.subset(rows))

    def _decompose(self, state) -> None:
        self.eig_A = _eigh_factors(self.A)
        self.eig_G = _eigh_factors(self.G)

    def _denominators(self) -> list[np.ndarray]:
        m = self.m
        return [
            np.outer(np.maximum(wg, 0.0) / m, np.maximum(wa, 0.0) / m) + self.shift
            for (wg, _), (wa, _) in zip(self.eig_G, self.eig_A)
        ]

    def _bases(self):
        return [(QG, QA) for (_, QG), (_, QA) in zip(self.eig_G, self.eig_A)]

    def _solve(self, V, BV=None):
        out = np.empty_like(V)
        for (w_off, b_off, d_out, d_in), (QG, QA), den in zip(
            self.problem.layer_offsets(), self._bases(), self._denominators()
        ):
            # layer block as (columns, out, in + 1) matrices [W | b]
            M = np.concatenate(
                [
                    V[w_off:b_off].T.reshape(-1, d_out, d_in),
                    V[b_off : b_off + d_out].T.reshape(-1, d_out, 1),
                ],
                axis=2,
            )
            M = QG @ (((QG.T @ M @ QA) * _pinv_diagonal(den)) @ QA.T)
            out[w_off:b_off] = M[:, :, :d_in].reshape(-1, d_out * d_in).T
            out[b_off : b_off + d_out] = M[:, :, d_in].T
        return out

    def _downdated_state(self, rows) -> dict:
        L = len(self.problem.sizes) - 1
        part = self._kfac_contribution(rows)
        return {
            "A": [a - b for a, b in zip(self.A, part[:L])],
            "G": [a - b for a, b in zip(self.G, part[L:])],
            "m": self.m - len(rows),
        }

    def downdated(self, rows):
        return KFACCurvature(self.problem, self.damping, state=self._downdated_state(rows))

    def arrays(self):
        out = {"m": np.array(self.m)}
        out.update({f"A{i}": a for i, a in enumerate(self.A)})
        out.update({f"G{i}": g for i, g in enumerate(self.G)})
        return out


class EKFACCurvature(KFACCurvature):
    """K-FAC's eigenbases with the GGN's diagonal in that basis as the eigenvalues."""

    kind = "ekfac"
    solver = "ekfac"

    def _decompose(self, state) -> None:
        if "QA" in state:  # the basis of the build, kept across downdates
            self.QA, self.QG, self.S = list(state["QA"]), list(state["QG"]), list(state["S"])
            return
        self.QA = [Q for _, Q in _eigh_factors(self.A)]
        self.QG = [Q for _, Q in _eigh_factors(self.G)]
        problem = self.problem
        # the second pass (on dask data, a second tree sum): the bases must exist first
        self.S = _sum_over_chunks(
            problem,
            _ekfac_sum,
            "ekfac corrections",
            4.0 * problem.n * problem.p * problem.rows_per_sample,
            (self.QA, self.QG),
        )

    def _ekfac_contribution(self, rows) -> list[np.ndarray]:
        return _ekfac_sum(self.problem.subset(rows), self.QA, self.QG)

    def _bases(self):
        return list(zip(self.QG, self.QA))

    def _denominators(self):
        return [np.maximum(S, 0.0) / self.m + self.shift for S in self.S]

    def downdated(self, rows):
        state = self._downdated_state(rows)
        part = self._ekfac_contribution(rows)
        state.update(QA=self.QA, QG=self.QG, S=[a - b for a, b in zip(self.S, part)])
        return EKFACCurvature(self.problem, self.damping, state=state)

    def arrays(self):
        out = super().arrays()
        out.update({f"QA{i}": q for i, q in enumerate(self.QA)})
        out.update({f"QG{i}": q for i, q in enumerate(self.QG)})
        out.update({f"S{i}": s for i, s in enumerate(self.S)})
        return out


_CLASSES = {
    "dense": DenseCurvature,
    "woodbury": WoodburyCurvature,
    "kfac": KFACCurvature,
    "ekfac": EKFACCurvature,
}


def make_problem(model: MLP, X: np.ndarray, yk: np.ndarray, params: str) -> tuple[Problem, slice]:
    """The problem over the parameters ``params`` selects, and where they sit in θ.

    ``X`` is the training data as the user passes it (numpy, or a row-chunked dask array whose
    rows stay on the workers: :class:`~mlu.engine._dask.RowSource`); ``yk`` its labels encoded
    0..k-1.
    """
    sizes = tuple(int(s) for s in model.sizes_)
    act = activation_spec(model.activation, len(sizes) - 2)
    where = slice(None) if params == "all" else model.last_layer_slice()
    theta, l2 = model.theta_[where].copy(), float(model.l2)
    if _dask.is_dask(X):
        source, yk = _dask.row_source(model, X, yk, params)
        sub, sub_act = (sizes, act) if params == "all" else (sizes[-2:], "relu")
        return Problem(theta, sub, sub_act, source.data.X, yk, l2, source), where
    X = scaled(model, X)  # the network's input: the model's fixed transform (MLP(scale=...))
    if params == "all":
        return Problem(theta, sizes, act, X, yk, l2), where
    F = _core.hidden_features(model.theta_, list(sizes), act, X)
    return Problem(theta, sizes[-2:], "relu", F, yk, l2), where


def build_curvature(
    problem: Problem, kind: str, damping: float, matrix: str = "ggn"
) -> tuple[Curvature, str]:
    """Build the representation ``kind`` (or the one ``"auto"`` picks) over all of
    ``problem``'s samples; returns it and the reason for the choice."""
    if kind == "auto":
        kind, why = choose_representation(problem, damping)
    else:
        why = f"curvature={kind!r} was asked for"
    if matrix != "ggn" and kind != "dense":
        raise ValueError(f"matrix={matrix!r} needs curvature='dense' (the others are GGN forms)")
    start = time.perf_counter()
    if kind == "dense":
        curv = DenseCurvature(problem, damping, matrix)
    else:
        curv = _CLASSES[kind](problem, damping)
    curv.build_time = time.perf_counter() - start
    return curv, why


def _layer_list(arrays: dict, prefix: str) -> list[np.ndarray]:
    out, i = [], 0
    while f"{prefix}{i}" in arrays:
        out.append(arrays[f"{prefix}{i}"])
        i += 1
    return out


def curvature_from_arrays(kind: str, problem: Problem, damping: float, arrays: dict) -> Curvature:
    """The representation saved by :meth:`Curvature.arrays` (no recomputation over the data)."""
    if kind == "dense":
        return DenseCurvature(
            problem, damping, str(arrays["matrix"]), C=arrays["C"], m=int(arrays["m"])
        )
    if kind == "woodbury":
        state = {
            "G": _layer_list(arrays, "G"),
            "hidden": _layer_list(arrays, "hidden"),
            **{key: arrays[key] for key in ("K", "w", "V", "alive", "images")},
            "images_removed": arrays.get("images_removed"),
        }
        return WoodburyCurvature(problem, damping, state=state)
    state = {"A": _layer_list(arrays, "A"), "G": _layer_list(arrays, "G"), "m": int(arrays["m"])}
    if kind == "kfac":
        return KFACCurvature(problem, damping, state=state)
    if kind == "ekfac":
        state.update(
            QA=_layer_list(arrays, "QA"), QG=_layer_list(arrays, "QG"), S=_layer_list(arrays, "S")
        )
        return EKFACCurvature(problem, damping, state=state)
    raise ValueError(f"unknown curvature representation {kind!r}")
