"""Type stub of the C++ core ``mlu._core`` (cpp/bindings/*.cpp); private: use the mlu package.

Array arguments take anything NumPy converts (the bindings cast to C- or Fortran-ordered
float64 / int64, copying when needed); results are new float64 arrays. ``sizes`` is the layer
sizes (d, h1, ..., k), ``activation`` "relu" or "tanh", ``curvature`` "hessian" or "ggn".
Keep in step with the bindings: tests/test_typing.py compares this stub with the module.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]

isa: str
"""The instruction set this build of the core was compiled for ("baseline", "x86-64-v3", ...)."""
openmp: bool
"""Whether this build runs its loops in parallel with OpenMP."""

class NotPositiveDefiniteError(np.linalg.LinAlgError): ...
class CoreMemoryError(MemoryError): ...

# module.cpp
def get_num_threads() -> int:
    """Number of threads the core's parallel loops use."""

def set_num_threads(n: int) -> None:
    """Set the number of threads of the core's parallel loops (and Eigen's)."""

# model.cpp
def num_params(sizes: Sequence[int]) -> int:
    """Number of parameters p of an MLP with layer sizes (d, h1, ..., k)."""

def logits(theta: npt.ArrayLike, sizes: Sequence[int], activation: str, X: npt.ArrayLike) -> _F64:
    """Logits, shape (n, k)."""

def hidden_features(
    theta: npt.ArrayLike, sizes: Sequence[int], activation: str, X: npt.ArrayLike
) -> _F64:
    """Input of the last layer (the features params='last' works on), shape (n, h_last)."""

def losses(
    theta: npt.ArrayLike, sizes: Sequence[int], activation: str, X: npt.ArrayLike, y: npt.ArrayLike
) -> _F64:
    """Per-sample cross-entropy losses, shape (n,)."""

def gradient(
    theta: npt.ArrayLike,
    sizes: Sequence[int],
    activation: str,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    l2: float,
) -> tuple[_F64, float]:
    """Gradient of the mean loss plus (l2/2)|theta|^2, shape (p,), and the mean loss (without
    the l2 term)."""

def per_sample_gradients(
    theta: npt.ArrayLike, sizes: Sequence[int], activation: str, X: npt.ArrayLike, y: npt.ArrayLike
) -> _F64:
    """Per-sample loss gradients (no l2 term), shape (n, p)."""

# curvature.cpp
def hessian(
    theta: npt.ArrayLike,
    sizes: Sequence[int],
    activation: str,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    l2: float,
    curvature: str,
) -> _F64:
    """Exact Hessian or GGN of the mean loss plus (l2/2)|theta|^2, shape (p, p)."""

class HessianOperator:
    """Curvature-vector products at fixed (theta, X, y); the forward pass is cached."""

    def __init__(
        self,
        theta: npt.ArrayLike,
        sizes: Sequence[int],
        activation: str,
        X: npt.ArrayLike,
        y: npt.ArrayLike,
        l2: float,
        curvature: str,
    ) -> None: ...
    @property
    def size(self) -> int:
        """Dimension p."""

    def matvec(self, v: npt.ArrayLike) -> _F64:
        """H v, shape (p,)."""

    def cg(
        self,
        b: npt.ArrayLike,
        damping: float,
        tol: float,
        maxiter: int,
        true_residual: bool = True,
    ) -> dict[str, Any]:
        """Solve (H + damping I) x = b by conjugate gradients (true_residual: the reported
        residual from one more product, else the recursively updated one).

        Returns a dict: x (shape (p,)), iterations (int), relative_residual (float),
        converged (bool), negative_curvature (bool).
        """

# solvers.cpp
def cholesky(H: npt.ArrayLike, damping: float) -> _F64:
    """Lower Cholesky factor L of H + damping I (Fortran order); raises NotPositiveDefiniteError."""

def cholesky_solve(L: npt.ArrayLike, B: npt.ArrayLike) -> _F64:
    """Solve L L^T X = B, shape of B."""

def eigh(H: npt.ArrayLike) -> tuple[_F64, _F64]:
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix."""

def eig_pinv_solve(
    w: npt.ArrayLike, U: npt.ArrayLike, B: npt.ArrayLike, damping: float, rcond: float
) -> tuple[_F64, int]:
    """Thresholded pseudo-inverse solve (U diag(w + damping) U^T)^+ B.

    Returns (X, number of eigenvalues dropped).
    """

def cg(
    matvec: Callable[[_F64], npt.ArrayLike],
    b: npt.ArrayLike,
    damping: float,
    tol: float,
    maxiter: int,
    true_residual: bool = True,
    x0: npt.ArrayLike | None = None,
    precondition: Callable[[_F64], npt.ArrayLike] | None = None,
    stop_every: int = 0,
    stop: Callable[[_F64], bool] | None = None,
) -> dict[str, Any]:
    """Solve (A + damping I) x = b by (preconditioned) conjugate gradients, A v = matvec(v),
    from x0 (or zero), z = precondition(r) ~ (A + damping I)^-1 r; every stop_every iterations
    stop early when stop(x) is true (the loop of HessianOperator.cg, docs/design.md "Solvers").

    Returns a dict: x (shape (p,)), iterations, relative_residual, converged,
    negative_curvature, stopped.
    """

# influence.cpp
def self_influence(
    theta: npt.ArrayLike,
    sizes: Sequence[int],
    activation: str,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    M: npt.ArrayLike,
    form: str,
) -> _F64:
    """Self-influence g_i^T A g_i per sample, shape (n,).

    A is given by a Cholesky factor (form "cholesky") or a projection (form "projection").
    """

# train.cpp
def permutation(n: int, seed: int) -> npt.NDArray[np.int64]:
    """The platform-independent shuffle of range(n) that sgd_epoch uses."""

def sgd_epoch(
    theta: npt.ArrayLike,
    velocity: npt.ArrayLike,
    sizes: Sequence[int],
    activation: str,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    seed: int,
    lr: float,
    momentum: float,
    batch_size: int,
    l2: float,
) -> tuple[_F64, _F64, float]:
    """One epoch of minibatch SGD with momentum; returns new (theta, velocity, mean loss).

    Inputs unchanged.
    """

# unlearner.cpp
def kfac_sums(
    theta: npt.ArrayLike, sizes: Sequence[int], activation: str, X: npt.ArrayLike
) -> tuple[list[_F64], list[_F64]]:
    """K-FAC sums over the rows of X: lists A and G, per layer. Not normalised.

    A: sum of [a;1][a;1]^T, (in+1) square; G: sum of the Gauss-Newton pre-activation factors
    g g^T, out square.
    """

def ekfac_sums(
    theta: npt.ArrayLike,
    sizes: Sequence[int],
    activation: str,
    X: npt.ArrayLike,
    QA: Sequence[npt.ArrayLike],
    QG: Sequence[npt.ArrayLike],
) -> list[_F64]:
    """EK-FAC corrections over the rows of X in the eigenbases QA, QG. Not normalised.

    Per layer the (out, in+1) sums of (QG^T g)^2 (QA^T [a;1])^2 over samples and Gauss-Newton
    rows.
    """

def gn_terms(
    theta: npt.ArrayLike, sizes: Sequence[int], activation: str, X: npt.ArrayLike
) -> tuple[list[_F64], list[_F64]]:
    """Factors of the Gauss-Newton rows: lists G and hidden.

    G per layer, (n*r, out), row i*r+rho; hidden per hidden layer, (n, out).
    """

def woodbury_gram(
    sizes: Sequence[int],
    X: npt.ArrayLike,
    G: Sequence[npt.ArrayLike],
    hidden: Sequence[npt.ArrayLike],
) -> _F64:
    """Gram matrix B B^T of the Gauss-Newton rows, shape (n*r, n*r)."""

def gn_jvp(
    sizes: Sequence[int],
    X: npt.ArrayLike,
    G: Sequence[npt.ArrayLike],
    hidden: Sequence[npt.ArrayLike],
    V: npt.ArrayLike,
) -> _F64:
    """B V^T for V of shape (m, p): shape (n*r, m)."""

def gn_vjp(
    sizes: Sequence[int],
    X: npt.ArrayLike,
    G: Sequence[npt.ArrayLike],
    hidden: Sequence[npt.ArrayLike],
    Z: npt.ArrayLike,
) -> _F64:
    """B^T Z for Z of shape (n*r, m): shape (m, p)."""

def gram_retained_solve(
    V: npt.ArrayLike,
    w: npt.ArrayLike,
    s: float,
    removed: npt.ArrayLike,
    W: npt.ArrayLike,
) -> _F64:
    """(s I + K_RR)^{-1} W on the retained rows (zero on the removed ones) from
    K = V diag(w) V^T, shape (N, m)."""

# cpu.cpp (also the body of the baseline-only mlu._cpu module)
def x86_64_level() -> int:
    """The x86-64 micro-architecture level this CPU (and OS) runs, by cpuid: 1 = x86-64,
    2 = x86-64-v2, 3 = x86-64-v3 (AVX2, FMA, ...) or higher; 0 on other architectures."""

def cpu_features() -> dict[str, bool]:
    """The cpuid features that decide x86_64_level, by name (empty on other architectures)."""
