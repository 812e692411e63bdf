"""Dense solves with the damped curvature ``H + δI``: Cholesky, eigh and the pseudo-inverse.

The one place where :mod:`mlu.unlearn` (the update's solve) and :mod:`mlu.detect` (the
self-influence quadratic form) factor a p x p matrix; the factorisations run in the C++ core
(docs/design.md, "Solvers").
"""

from __future__ import annotations

import numpy as np

from .. import _core

__all__ = [
    "PINV_RCOND",
    "cholesky",
    "cholesky_solve",
    "cholesky_solve_many",
    "eig_pinv_solve_many",
    "eigh",
    "pinv_factor",
    "pinv_solve",
    "relative_residual",
    "smallest_eigenvalue_estimate",
]

PINV_RCOND = 1e-10  # eigenvalues of H + δI at or below rcond·max|·| (incl. negative) are dropped
_INVERSE_ITERATIONS = 20  # enough to expose an eigenvalue near zero, well separated


def cholesky(H: np.ndarray, damping: float) -> np.ndarray:
    """Lower factor L of ``H + δI = L Lᵀ``, shape (p, p).

    Raises
    ------
    NotPositiveDefiniteError
        H + δI is not positive definite.
    """
    return _core.cholesky(H, damping)


def cholesky_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x of shape (p,) with ``L Lᵀ x = b`` for b of shape (p,)."""
    return _core.cholesky_solve(L, b[:, None])[:, 0]


def cholesky_solve_many(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """X of shape (p, k) with ``L Lᵀ X = B`` for B of shape (p, k)."""
    return _core.cholesky_solve(L, np.ascontiguousarray(B))


def eigh(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending, shape (p,)) and eigenvectors (columns, shape (p, p)) of the
    symmetric A (A is not modified).

    LAPACK's divide-and-conquer (``np.linalg.eigh``), not the C++ core's QR iteration: on the
    2000 x 2000 Gram matrix of the Woodbury form it took 20 s against 88 s (one thread, loaded
    machine), and the curvature forms need the full basis.
    """
    return np.linalg.eigh(A)


def eig_pinv_solve_many(
    w: np.ndarray, U: np.ndarray, B: np.ndarray, damping: float, rcond: float = PINV_RCOND
) -> np.ndarray:
    """``X = (U diag(w) Uᵀ + δI)⁺ B`` for B of shape (p, k), from eigenpairs (w, U); eigenpairs
    with ``w + δ ≤ rcond·max|w + δ|`` are dropped (see :func:`pinv_solve`)."""
    X, _ = _core.eig_pinv_solve(w, U, np.ascontiguousarray(B), damping, rcond)
    return X


def smallest_eigenvalue_estimate(L: np.ndarray) -> float:
    """Upper estimate of λ_min(A) for A = L Lᵀ by inverse iteration (a few O(p²) solves).

    Inverse iteration converges fastest exactly in the case it has to catch: one or a few
    eigenvalues near zero, well separated from the rest. The Rayleigh quotient it returns is
    never below λ_min, so a small value is proof that A is nearly singular.
    """
    v = np.random.default_rng(0).standard_normal(L.shape[0])
    v /= np.linalg.norm(v)
    for _ in range(_INVERSE_ITERATIONS):
        w = cholesky_solve(L, v)
        v = w / np.linalg.norm(w)
    Ltv = L.T @ v
    return float(Ltv @ Ltv)


def pinv_solve(
    H: np.ndarray, b: np.ndarray, damping: float, rcond: float = PINV_RCOND
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pseudo-inverse solve ``x = (H + δI)⁺ b`` through ``eigh``.

    Eigenpairs with ``λ + δ ≤ rcond·max|λ + δ|`` (all where H + δI is not positive) are left
    out. Returns x of shape (p,), the eigenvalues of H (ascending, shape (p,)) and how many
    eigenpairs were dropped.
    """
    w, U = _core.eigh(H)
    x, dropped = _core.eig_pinv_solve(w, U, b[:, None], damping, rcond)
    return x[:, 0], w, int(dropped)


def pinv_factor(H: np.ndarray, damping: float, rcond: float) -> np.ndarray:
    """M of shape (p, r) with ``M Mᵀ = (H + δI)⁺``, from the eigenpairs that are kept.

    Eigenpairs with ``λ + δ ≤ rcond·max(λ + δ)`` are dropped. H is not modified.

    Raises
    ------
    ValueError
        H + δI has no positive eigenvalue.
    """
    w, U = _core.eigh(H)
    shifted = w + damping
    keep = shifted > rcond * max(float(shifted.max()), 0.0)
    if not keep.any():
        raise ValueError("H + damping·I has no positive eigenvalue: raise damping")
    return U[:, keep] / np.sqrt(shifted[keep])


def relative_residual(H: np.ndarray, damping: float, x: np.ndarray, b: np.ndarray) -> float:
    """``‖(H + δI)x − b‖ / ‖b‖`` (0 for b = 0)."""
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0.0:
        return 0.0
    return float(np.linalg.norm(H @ x + damping * x - b) / bnorm)
