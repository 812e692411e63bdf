"""Benchmark cases shared by ``test_benchmarks.py`` (pytest-benchmark) and ``report.py``.

Every case is an (operation, size) pair with up to three implementations of the same float64
math on the same data and the same number of threads:

* ``mlu``   -- the C++ core, through the public ``mlu.MLP`` methods (and ``mlu.unlearn``);
* ``numpy`` -- ``mlu.reference``, the pure-NumPy specification (OpenBLAS);
* ``torch`` -- PyTorch (``torch.func`` for per-sample gradients and Hessian-vector products).

``implementation(op, problem, impl)`` returns a zero-argument callable (all set-up done
outside it) or raises :class:`Skip` with the reason the combination is not run. ``verify``
runs every implementation of a case once and asserts they agree before anything is timed.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import time
from typing import Callable

THREADS = 2
# Before NumPy / torch load their BLAS and OpenMP runtimes; configure_threads() re-applies the
# limit at run time (threadpoolctl) in case they were imported earlier.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import mlu  # noqa: E402
from mlu import _core  # noqa: E402
from mlu import reference as ref  # noqa: E402

IMPLS = ("mlu", "numpy", "torch")
IMPL_NAMES = {"mlu": "mlu (C++)", "numpy": "NumPy reference", "torch": "PyTorch"}
ACT = "relu"
L2 = 1e-3  # model.l2: the objective's L2 term, part of every Hessian below
DAMPING = 0.01  # δ of the solves (mlu.unlearn's default, Koh & Liang's choice)
CG_TOL = 1e-6
FORGET_FRACTION = 0.1
EPOCHS_RETRAIN = 20  # the paper's training length
SEED = 0
RTOL = 1e-8  # agreement required between implementations (norm-wise relative difference)


class Skip(Exception):
    """This implementation is not run for this case; the message says why."""


_threads_limiter = None


def configure_threads() -> None:
    """Pin NumPy's BLAS, the C++ core and torch to THREADS threads."""
    global _threads_limiter
    _threads_limiter = threadpool_limits(THREADS)  # kept alive: the limit stays in force
    mlu.set_num_threads(THREADS)
    import torch

    torch.set_num_threads(THREADS)


# ---------------------------------------------------------------------------------- sizes


@dataclasses.dataclass(frozen=True)
class Size:
    key: str
    hidden: int
    k: int
    n: int
    epochs: int  # training epochs for the benchmarked model (a trained model's curvature)
    d: int = 784

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.d, self.hidden, self.k)

    @property
    def p(self) -> int:
        return ref.num_params(self.sizes)

    @property
    def label(self) -> str:
        return f"{self.d}-{self.hidden}-{self.k}, n={self.n}"


SIZES = {
    "paper": Size("paper", 50, 2, 2000, epochs=20),  # the paper's network and data size
    "large": Size("large", 50, 2, 12000, epochs=5),  # same network, 6x the data
    "narrow": Size("narrow", 8, 2, 12000, epochs=5),  # p = 6298: a full Hessian that fits
    "multiclass": Size("multiclass", 128, 10, 60000, epochs=2),  # p = 101770
}
# Small problem for the global agreement check that runs before any benchmark: every op and
# implementation, including those skipped at full size (k = 3 exercises the multi-class paths).
TINY = Size("tiny", 8, 3, 300, epochs=3, d=98)


@functools.cache
def load_data(size: Size) -> tuple[np.ndarray, np.ndarray, str]:
    """Fashion-MNIST (real data; no downloads) or, when absent, random data of the shape."""
    classes = (0, 6) if size.k == 2 else tuple(range(size.k))  # T-shirt/top vs shirt: hard pair
    try:
        ds = mlu.datasets.load("fashion-mnist", classes=classes)
        X, y = ds.X_train, ds.y_train
        if len(X) < size.n:
            raise FileNotFoundError
        idx = np.sort(np.random.default_rng(SEED).choice(len(X), size.n, replace=False))
        X, y = X[idx], y[idx]
        if size.d != X.shape[1]:  # the tiny problem: 28x28 -> 98 features (every 8th pixel)
            X = X[:, :: X.shape[1] // size.d][:, : size.d]
        source = "Fashion-MNIST"
    except (FileNotFoundError, OSError):
        rng = np.random.default_rng(SEED)
        X = rng.uniform(size=(size.n, size.d))
        y = np.argmax(X @ rng.normal(size=(size.d, size.k)), axis=1)
        source = "random"
    return np.ascontiguousarray(X, dtype=np.float64), y.astype(np.int64), source


class Problem:
    """Data, a trained model and the derived inputs every implementation shares."""

    def __init__(self, size: Size):
        self.size = size
        self.X, self.y, self.source = load_data(size)
        self.n = len(self.X)
        self.model = self.new_model(epochs=size.epochs).fit(self.X, self.y)
        rng = np.random.default_rng(SEED + 1)
        self.v = rng.normal(size=size.p)
        self.forget = np.sort(rng.choice(self.n, int(FORGET_FRACTION * self.n), replace=False))
        keep = np.ones(self.n, bool)
        keep[self.forget] = False
        self.keep = keep

    def new_model(self, epochs: int) -> mlu.MLP:
        return mlu.MLP(
            hidden=(self.size.hidden,),
            activation=ACT,
            l2=L2,
            epochs=epochs,
            lr=0.01,
            momentum=0.9,
            batch_size=32,
            seed=SEED,
        )

    @functools.cached_property
    def layers(self):
        return self.model.layers

    @functools.cached_property
    def theta(self) -> np.ndarray:
        return self.model.params

    @functools.cached_property
    def cg_rhs(self) -> np.ndarray:
        """b of the influence solve: the mean gradient of the forget set (l2 term removed)."""
        XF, yF = self.X[self.forget], self.y[self.forget]
        return self.model.gradient(XF, yF) - L2 * self.theta

    @functools.cached_property
    def hessian(self) -> np.ndarray:
        """GGN + l2 I from the core: the input of the Cholesky and self-influence cases.

        The GGN rather than the exact Hessian: at these trained ReLU nets the exact H + δI
        (δ = 0.01) has negative eigenvalues, so it has no Cholesky factor.
        """
        return self.model.hessian(self.X, self.y, curvature="ggn")

    @functools.cached_property
    def init_theta(self) -> np.ndarray:
        """θ0 of a fresh fit (seeded): what one training epoch starts from."""
        return self.new_model(epochs=0).fit(self.X, self.y).params

    @functools.cached_property
    def epoch_order(self) -> np.ndarray:
        """The permutation MLP.fit visits in epoch 0 (so all three train on the same batches)."""
        from mlu.engine.model import _epoch_seed

        return np.asarray(_core.permutation(self.n, _epoch_seed(SEED, 0)))

    @functools.cached_property
    def torch(self) -> TorchProblem:
        return TorchProblem(self)


@functools.cache
def problem(key: str) -> Problem:
    return Problem(TINY if key == "tiny" else SIZES[key])


# ---------------------------------------------------------------------------------- torch


class TorchProblem:
    """The same model and data as torch tensors, and its torch.func transforms."""

    def __init__(self, pb: Problem):
        import torch
        import torch.nn.functional as F
        from torch.func import grad, jvp, vjp, vmap

        self.torch, self.F = torch, F
        self.pb = pb
        self.X = torch.from_numpy(pb.X)
        self.y = torch.from_numpy(pb.y)
        self.shapes = [
            (o, i) if j % 2 == 0 else (o,)
            for i, o in zip(pb.size.sizes[:-1], pb.size.sizes[1:])
            for j in (0, 1)
        ]
        self.params = self.split(torch.from_numpy(pb.theta))
        self.p = pb.size.p
        n = pb.n

        def logits(params, X):
            h = X
            for l in range(len(params) // 2):
                h = F.linear(h, params[2 * l], params[2 * l + 1])
                if l < len(params) // 2 - 1:
                    h = torch.relu(h)
            return h

        def objective(params):
            reg = sum((t * t).sum() for t in params)
            return F.cross_entropy(logits(params, self.X), self.y) + 0.5 * L2 * reg

        def sample_loss(params, x, y):
            return F.cross_entropy(logits(params, x[None]), y[None])

        grad_objective = grad(objective)

        def hvp(v):  # forward-over-reverse: the jvp of the gradient along v
            return jvp(grad_objective, (self.params,), (v,))[1]

        logits_of = lambda params: logits(params, self.X)  # noqa: E731

        def ggn_vp(v):  # J^T H_out J v / n + l2 v: jvp of the logits, then vjp back
            z, vjp_fn = vjp(logits_of, self.params)
            Jv = jvp(logits_of, (self.params,), (v,))[1]
            P = torch.softmax(z, dim=1)
            u = (P * Jv - P * (P * Jv).sum(dim=1, keepdim=True)) / n
            return tuple(g + L2 * t for g, t in zip(vjp_fn(u)[0], v))

        self.logits, self.hvp, self.ggn_vp = logits, hvp, ggn_vp
        self.per_sample_grad = vmap(grad(sample_loss), in_dims=(None, 0, 0))
        self.hvp_flat = lambda v: self.flat(hvp(self.split(v)))
        self.n = n

    def split(self, flat):
        """Flat θ-layout vector -> tuple of parameter-shaped views (W1, b1, W2, b2)."""
        out, pos = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            out.append(flat[pos : pos + size].view(shape))
            pos += size
        return tuple(out)

    def flat(self, parts):
        return self.torch.cat([t.reshape(-1) for t in parts])

    def losses(self):
        with self.torch.no_grad():
            return self.F.cross_entropy(self.logits(self.params, self.X), self.y, reduction="none")

    def gradients(self):
        g = self.per_sample_grad(self.params, self.X, self.y)
        return self.torch.cat([t.reshape(self.n, -1) for t in g], dim=1)

    def hessian(self, chunk: int = 256):
        """Columns H e_j by a vmap of the HVP over the basis vectors, `chunk` at a time."""
        from torch.func import vmap

        eye = self.torch.eye(self.p, dtype=self.torch.float64)
        return vmap(self.hvp_flat, chunk_size=chunk)(eye)

    def cg(self, b, damping, tol, maxiter):
        """CG on the GGN, products from torch.func (see ggn_vp)."""
        return cg_loop(
            lambda d: self.flat(self.ggn_vp(self.split(d))),
            b,
            damping,
            tol,
            maxiter,
            dot=lambda a, c: float(a @ c),
            zeros=self.torch.zeros_like,
        )

    def net(self):
        """nn.Sequential with the problem's architecture (parameters set by the caller)."""
        nn = self.torch.nn
        s = self.pb.size.sizes
        layers = []
        for l in range(len(s) - 1):
            layers.append(nn.Linear(s[l], s[l + 1], dtype=self.torch.float64))
            if l < len(s) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def train(self, theta0, order, epochs: int, X=None, y=None):
        """Plain torch training: SGD(momentum 0.9, weight decay = l2) at batch 32, float64."""
        torch = self.torch
        X = self.X if X is None else X
        y = self.y if y is None else y
        net = self.net()
        with torch.no_grad():
            for prm, val in zip(net.parameters(), self.split(torch.from_numpy(theta0))):
                prm.copy_(val)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=L2)
        n = X.shape[0]
        for _ in range(epochs):
            perm = torch.from_numpy(order) if order is not None else torch.randperm(n)
            for s in range(0, n, 32):
                idx = perm[s : s + 32]
                opt.zero_grad(set_to_none=True)
                loss = self.F.cross_entropy(net(X[idx]), y[idx])
                loss.backward()
                opt.step()
        return torch.cat([prm.detach().reshape(-1) for prm in net.parameters()]).numpy()


def cg_loop(apply, b, damping, tol, maxiter, dot=None, zeros=None):
    """Plain conjugate gradients on (H + δI) x = b: the NumPy and PyTorch peers' loop (the one
    mlu runs is cpp/solvers.hpp's), timed against mlu's."""
    dot = dot or (lambda a, c: float(a @ c))
    x = zeros(b) if zeros else np.zeros_like(b)
    r = b.clone() if hasattr(b, "clone") else b.copy()
    d = r.clone() if hasattr(r, "clone") else r.copy()
    rr = dot(r, r)
    bnorm = rr**0.5
    it = 0
    while it < maxiter:
        Ad = apply(d) + damping * d
        curv = dot(d, Ad)
        it += 1
        if not curv > 0:
            break
        alpha = rr / curv
        x = x + alpha * d
        r = r - alpha * Ad
        rr_new = dot(r, r)
        if rr_new**0.5 <= tol * bnorm:
            break
        d = r + (rr_new / rr) * d
        rr = rr_new
    return x, it


# ---------------------------------------------------------------------------------- operations


@dataclasses.dataclass(frozen=True)
class Op:
    key: str
    title: str
    sizes: tuple[str, ...]
    skips: dict  # (size, impl) or (size, "*") -> reason
    flops: Callable[[Problem], float] | None = None  # of the mlu implementation (GEMM-bound)
    flop_formula: str = ""
    compare: str = "rel"  # how outputs are compared, see verify()
    note: str = ""


def _hidden(pb):
    s = pb.size
    return s.d, s.hidden, s.k, pb.n


def _flops_forward(pb):
    d, h, k, n = _hidden(pb)
    return 2.0 * n * (d * h + h * k)


def _flops_hvp(pb):
    d, h, k, n = _hidden(pb)
    return 2.0 * n * (3 * d * h + 5 * h * k)


def _flops_epoch(pb):
    d, h, k, n = _hidden(pb)
    return 2.0 * n * (2 * d * h + 3 * h * k)


def _flops_cholesky(pb):
    return pb.size.p**3 / 3.0


def _flops_hessian(pb):
    return float(hessian_flops(pb))


def _flops_self_influence(pb):
    return pb.size.p**3 / 3.0 + float(pb.n) * pb.size.p**2


_GRAD_SKIP = "n x p float64 = 49 GB does not fit in memory"
OPS = {
    "losses": Op(
        "losses",
        "per-sample losses",
        ("paper", "large", "narrow", "multiclass"),
        {},
        _flops_forward,
        "2n(dh+hk) (forward)",
    ),
    "gradients": Op(
        "gradients",
        "per-sample gradients (n x p)",
        ("paper", "large", "narrow", "multiclass"),
        {("multiclass", "*"): _GRAD_SKIP},
    ),
    "hvp": Op(
        "hvp",
        "Hessian-vector product (one-shot)",
        ("paper", "large", "narrow", "multiclass"),
        {},
        _flops_hvp,
        "2n(3dh+5hk) (forward, tangent, R-backward)",
    ),
    "hvp_op": Op(
        "hvp_op",
        "HVP, reused operator (mlu) vs one-shot",
        ("paper", "large", "narrow", "multiclass"),
        {},
        lambda pb: 2.0 * pb.n * (2 * pb.size.d * pb.size.hidden),
        "4ndh (tangent + R-backward; forward cached)",
        note="mlu: hessian_operator() built once (not timed), then matvec; NumPy and "
        "PyTorch have no reusable operator: their one-shot HVP",
    ),
    "cg": Op(
        "cg",
        f"CG solve (GGN+δI)x=b to {CG_TOL:g}",
        ("paper", "large", "narrow", "multiclass"),
        {},
        None,
        compare="cg",
        note="GGN: the exact H + δI has negative curvature here; mlu builds its operator "
        "inside the timing; NumPy/torch: the same CG loop in Python over their "
        "GGN-vector products",
    ),
    "hessian": Op(
        "hessian",
        "exact Hessian assembly (p x p)",
        ("paper", "narrow", "multiclass"),
        {
            ("paper", "*"): "p x p = 12 GB, too large to benchmark safely on this shared "
            "24 GiB machine (NumPy/PyTorch: p = 39352 HVP columns, hours)",
            ("multiclass", "*"): "p x p = 83 GB does not fit in memory",
            ("narrow", "numpy"): "reference.hessian is p = 6298 HVP columns in Python: "
            "6298 x 45 ms = 5 min (measured on 40 columns)",
        },
        _flops_hessian,
        "Σ_{q≤q'} n_qq'(d+1)² + 2nk(h+1)h(d+1) + 2n(k(h+1))² executed (n_qq': samples with "
        "both units active), see hessian_flops()",
    ),
    "cholesky": Op(
        "cholesky",
        "Cholesky of GGN + δI (p x p)",
        ("narrow",),
        {},
        _flops_cholesky,
        "p^3/3",
        note="the GGN: the exact H + δI is indefinite at these trained nets",
    ),
    "self_influence": Op(
        "self_influence",
        "self-influence of all n samples (H given)",
        ("narrow",),
        {},
        _flops_self_influence,
        "p^3/3 + n p^2",
        note="H (the GGN) is assembled once outside the timing; "
        "mlu: Cholesky + one triangular solve per gradient block; NumPy: "
        "reference.self_influence's solve (LU); torch: Cholesky + "
        "solve_triangular",
    ),
    "epoch": Op(
        "epoch",
        "one training epoch, batch 32",
        ("paper", "large", "narrow", "multiclass"),
        {},
        _flops_epoch,
        "2n(2dh+3hk) (forward + weight gradients)",
    ),
    "unlearn_last": Op(
        "unlearn_last",
        "mlu.unlearn, influence, params='last' (10% forget)",
        ("paper", "large"),
        {("*", "torch"): "no PyTorch unlearning implementation; see the retrain row"},
        compare="unlearn",
    ),
    "unlearn_all": Op(
        "unlearn_all",
        "mlu.unlearn, influence, params='all' (auto -> CG)",
        ("paper", "large"),
        {
            ("*", "numpy"): "reference.influence_update needs the p x p Hessian (p = 39352)",
            ("*", "torch"): "no PyTorch unlearning implementation; see the retrain row",
        },
        compare="unlearn",
    ),
    "retrain": Op(
        "retrain",
        f"retrain from scratch on the 90% retained ({EPOCHS_RETRAIN} epochs)",
        ("paper", "large"),
        {},
        compare="none",
    ),
}


def skip_reason(op: Op, size: str, impl: str) -> str | None:
    for key in ((size, impl), (size, "*"), ("*", impl)):
        if key in op.skips:
            return op.skips[key]
    return None


def hessian_flops(pb: Problem) -> int:
    """Flops the core executes to assemble the Hessian of a 1-hidden-layer net (k = 2).

    The first-layer block is a sum over samples of (u_i u_iᵀ) ⊗ (x̃_i x̃_iᵀ), x̃ = [x; 1],
    assembled per pair of hidden units (q ≤ q') as a symmetric rank update over only the
    samples where both units are active (ReLU): Σ_{q≤q'} n_qq' (d+1)². The rest (the W2/b2
    rows, the cross terms) are two GEMMs of 2 n k h (h+1)(d+1) flops in total.
    """
    d, h, k, n = _hidden(pb)
    A = pb.X @ pb.layers[0][0].T + pb.layers[0][1]
    active = (A > 0).astype(np.float64)
    pairs = active.T @ active  # n_qq' = samples where both units are active
    first = float(np.tril(pairs).sum()) * (d + 1) ** 2
    rest = 2.0 * n * k * (h + 1) * h * (d + 1) + 2.0 * n * (k * (h + 1)) ** 2
    return int(first + rest)


# ---------------------------------------------------------------------------------- implementations


def _unlearn_module():
    try:
        return importlib.import_module("mlu.unlearning.unlearn")
    except ImportError as exc:  # being written by another engineer
        raise Skip(f"mlu.unlearn is not importable yet ({exc})") from exc


def implementation(op: str, pb: Problem, impl: str) -> Callable[[], object]:
    """Zero-argument callable computing `op` on `pb` with `impl`; raises Skip if not run."""
    if pb.size.key != "tiny":
        reason = skip_reason(OPS[op], pb.size.key, impl)
        if reason:
            raise Skip(reason)
    return globals()[f"_{op}_{impl}"](pb)


# per-sample losses
def _losses_mlu(pb):
    return lambda: pb.model.losses(pb.X, pb.y)


def _losses_numpy(pb):
    return lambda: ref.losses(pb.layers, ACT, pb.X, pb.y)


def _losses_torch(pb):
    t = pb.torch
    return lambda: t.losses().numpy()


# per-sample gradients
def _gradients_mlu(pb):
    return lambda: pb.model.gradients(pb.X, pb.y)


def _gradients_numpy(pb):
    return lambda: ref.per_sample_gradients(pb.layers, ACT, pb.X, pb.y)


def _gradients_torch(pb):
    t = pb.torch
    return lambda: t.gradients().numpy()


# one Hessian-vector product
def _hvp_mlu(pb):
    return lambda: pb.model.hvp(pb.X, pb.y, pb.v)


def _hvp_numpy(pb):
    return lambda: ref.hvp(pb.layers, ACT, pb.X, pb.y, pb.v, l2=L2)


def _hvp_torch(pb):
    t = pb.torch
    v = t.torch.from_numpy(pb.v)
    return lambda: t.hvp_flat(v).numpy()


def _hvp_op_mlu(pb):
    op = pb.model.hessian_operator(pb.X, pb.y)
    return lambda: op.matvec(pb.v)


_hvp_op_numpy = _hvp_numpy
_hvp_op_torch = _hvp_torch


# CG solve on the GGN (the exact Hessian of these trained ReLU nets meets negative curvature
# even with δ = 0.1): returns (x, iterations)
def _cg_mlu(pb):
    def run():
        op = pb.model.hessian_operator(pb.X, pb.y, curvature="ggn")
        res = op.cg(pb.cg_rhs, damping=DAMPING, tol=CG_TOL, maxiter=2000)
        return np.asarray(res["x"]), int(res["iterations"])

    return run


def _cg_numpy(pb):
    def run():
        return cg_loop(
            lambda d: ref.hvp(pb.layers, ACT, pb.X, pb.y, d, l2=L2, curvature="ggn"),
            pb.cg_rhs,
            DAMPING,
            CG_TOL,
            2000,
        )

    return run


def _cg_torch(pb):
    t = pb.torch
    b = t.torch.from_numpy(pb.cg_rhs)

    def run():
        x, it = t.cg(b, DAMPING, CG_TOL, 2000)
        return x.numpy(), it

    return run


# full Hessian
def _hessian_mlu(pb):
    return lambda: pb.model.hessian(pb.X, pb.y)


def _hessian_numpy(pb):
    return lambda: ref.hessian(pb.layers, ACT, pb.X, pb.y, l2=L2)


def _hessian_torch(pb):
    t = pb.torch
    return lambda: t.hessian().numpy()


# Cholesky of H + δI (H from the core, same matrix for all three)
def _cholesky_mlu(pb):
    H = pb.hessian
    return lambda: _core.cholesky(H, DAMPING)


def _cholesky_numpy(pb):
    H = pb.hessian
    return lambda: np.linalg.cholesky(H + DAMPING * np.eye(len(H)))


def _cholesky_torch(pb):
    torch = pb.torch.torch
    H = torch.from_numpy(pb.hessian)
    return lambda: torch.linalg.cholesky(H + DAMPING * torch.eye(len(H), dtype=H.dtype)).numpy()


# self-influence of every training sample, H given
def _self_influence_mlu(pb):
    H = pb.hessian
    theta, sizes = pb.model.params, list(pb.model.sizes_)

    def run():
        L = _core.cholesky(H, DAMPING)
        return _core.self_influence(theta, sizes, ACT, pb.X, pb.y, L, "cholesky")

    return run


def _self_influence_numpy(pb):
    H = pb.hessian

    def run():  # reference.self_influence after its Hessian: solve (H + δI) Z = Gᵀ, sum g·z
        G = ref.per_sample_gradients(pb.layers, ACT, pb.X, pb.y)
        Z = np.linalg.solve(H + DAMPING * np.eye(len(H)), G.T)
        return np.einsum("nm,mn->n", G, Z)

    return run


def _self_influence_torch(pb):
    t = pb.torch
    torch = t.torch
    H = torch.from_numpy(pb.hessian)

    def run():
        G = t.gradients()
        L = torch.linalg.cholesky(H + DAMPING * torch.eye(len(H), dtype=H.dtype))
        Z = torch.linalg.solve_triangular(L, G.T, upper=False)
        return (Z * Z).sum(0).numpy()

    return run


# one epoch of SGD at batch 32 from the same θ0 over the same permutation
def _epoch_mlu(pb):
    return lambda: pb.new_model(epochs=1).fit(pb.X, pb.y).params


def _epoch_numpy(pb):
    layers0 = ref.unflatten(pb.init_theta, pb.size.sizes)
    order = pb.epoch_order

    def run():
        layers, _ = ref.sgd_epoch(layers0, ACT, pb.X, pb.y, 0.01, 0.9, 32, L2, None, order)
        return ref.flatten(layers)

    return run


def _epoch_torch(pb):
    t, theta0, order = pb.torch, pb.init_theta, pb.epoch_order
    return lambda: t.train(theta0, order, epochs=1)


# unlearning (influence, 10% forget set)
def _unlearn(pb, params):
    unlearn = _unlearn_module().unlearn

    def run():
        res = unlearn(
            pb.model,
            pb.X,
            pb.y,
            pb.forget,
            method="influence",
            params=params,
            damping=DAMPING,
            tol=CG_TOL,
            safeguard=False,  # the formula as the reference applies it; the check is not timed
        )
        return res

    return run


def _unlearn_last_mlu(pb):
    return _unlearn(pb, "last")


def _unlearn_all_mlu(pb):
    return _unlearn(pb, "all")


def _unlearn_numpy(pb, params):
    def run():
        return ref.influence_update(
            pb.layers, ACT, pb.X, pb.y, pb.forget, l2=L2, damping=DAMPING, params=params
        )

    return run


def _unlearn_last_numpy(pb):
    return _unlearn_numpy(pb, "last")


def _unlearn_all_numpy(pb):
    return _unlearn_numpy(pb, "all")


def _unlearn_last_torch(pb):
    raise Skip(OPS["unlearn_last"].skips[("*", "torch")])


_unlearn_all_torch = _unlearn_last_torch


# retraining from scratch on the retained set
def _retrain_mlu(pb):
    XR, yR = pb.X[pb.keep], pb.y[pb.keep]
    return lambda: pb.new_model(epochs=EPOCHS_RETRAIN).fit(XR, yR).params


def _retrain_numpy(pb):
    XR, yR = pb.X[pb.keep], pb.y[pb.keep]
    layers0 = ref.unflatten(pb.init_theta, pb.size.sizes)
    rng = np.random.default_rng(SEED)

    def run():
        layers, vel = layers0, None
        for _ in range(EPOCHS_RETRAIN):
            layers, vel = ref.sgd_epoch(
                layers, ACT, XR, yR, 0.01, 0.9, 32, L2, vel, rng.permutation(len(XR))
            )
        return ref.flatten(layers)

    return run


def _retrain_torch(pb):
    t = pb.torch
    XR, yR = t.X[pb.keep], t.y[pb.keep]
    return lambda: t.train(pb.init_theta, None, EPOCHS_RETRAIN, XR, yR)


# ---------------------------------------------------------------------------------- checking


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@dataclasses.dataclass
class Checked:
    """Outcome of running every implementation of a case once (the check doubles as warm-up)."""

    runners: dict  # impl -> callable
    skipped: dict  # impl -> reason
    first_time: dict  # impl -> seconds of the checked call
    info: dict  # extra facts for the report (CG iterations, unlearn solver, ...)


def verify(op_key: str, pb: Problem) -> Checked:
    """Run each implementation once and assert that they agree (before anything is timed)."""
    op = OPS[op_key]
    runners, skipped, outs, times, info = {}, {}, {}, {}, {}
    for impl in IMPLS:
        try:
            fn = implementation(op_key, pb, impl)
        except Skip as exc:
            skipped[impl] = str(exc)
            continue
        t0 = time.perf_counter()
        outs[impl] = fn()
        times[impl] = time.perf_counter() - t0
        runners[impl] = fn
    base = "mlu" if "mlu" in outs else next(iter(outs), None)
    where = f"{op_key} at {pb.size.label}"
    if op.compare == "rel":
        for impl, out in outs.items():
            err = rel_diff(out, outs[base])
            assert err <= RTOL, f"{where}: {impl} differs from {base} by {err:.2e} (> {RTOL:g})"
    elif op.compare == "cg":
        # What CG iterates with, the GGN-vector products, agree to RTOL. The solutions are
        # only defined to the CG tolerance (rounding differences grow over the iterations),
        # so each must meet it under one common operator, and they agree to that level.
        products = ggn_products(pb, pb.v)
        for impl in outs:
            err = rel_diff(products[impl], products["mlu"])
            assert err <= RTOL, f"{where}: {impl} GGN-vector product differs by {err:.2e}"
        op_mlu = pb.model.hessian_operator(pb.X, pb.y, curvature="ggn")
        for impl, (x, it) in outs.items():
            info[f"iterations_{impl}"] = it
            resid = rel_diff(op_mlu.matvec(x) + DAMPING * x, pb.cg_rhs)
            info[f"residual_{impl}"] = resid
            assert resid <= 2 * CG_TOL, f"{where}: {impl} CG residual {resid:.2e}"
            err = rel_diff(x, outs[base][0])
            assert err <= 1e-4, f"{where}: {impl} CG solution differs by {err:.2e}"
    elif op.compare == "unlearn":
        res = outs.get("mlu")
        if res is not None:
            info.update(
                solver=res.solver,
                curvature=res.curvature,
                iterations=res.iterations,
                residual=res.residual,
                notes=list(res.notes),
            )
            if res.solver in ("cholesky", "cg"):
                assert res.residual <= 2 * CG_TOL, f"{where}: {res!r}"
            if "numpy" in outs and res.solver in ("cholesky", "cg"):
                # The reference with the curvature mlu ended up using (auto may fall back to
                # the GGN); an eigh pseudo-inverse has no reference counterpart.
                expected = outs["numpy"]
                if res.curvature != "hessian":
                    expected = ref.influence_update(
                        pb.layers,
                        ACT,
                        pb.X,
                        pb.y,
                        pb.forget,
                        l2=L2,
                        damping=DAMPING,
                        curvature=res.curvature,
                        params=res.params,
                    )
                err = rel_diff(res.model.params, expected)
                tol = RTOL if res.solver == "cholesky" else CG_TOL
                assert err <= tol, f"{where}: mlu.unlearn differs from reference by {err:.2e}"
                info["vs_reference"] = err
    # "none": retraining runs differ by their shuffling; nothing to compare
    return Checked(runners, skipped, times, info)


def ggn_products(pb: Problem, v: np.ndarray) -> dict:
    """(GGN + l2 I) v from each implementation (the products the CG cases iterate with)."""
    t = pb.torch
    return {
        "mlu": pb.model.hvp(pb.X, pb.y, v, curvature="ggn"),
        "numpy": ref.hvp(pb.layers, ACT, pb.X, pb.y, v, l2=L2, curvature="ggn"),
        "torch": t.flat(t.ggn_vp(t.split(t.torch.from_numpy(v)))).numpy(),
    }


@functools.cache
def verified(op_key: str, size_key: str) -> Checked:
    return verify(op_key, problem(size_key))


def verify_tiny() -> list[str]:
    """Agreement of every op and implementation on the tiny problem (runs in seconds)."""
    pb = problem("tiny")
    done = []
    for key in OPS:
        if key == "retrain":
            continue
        c = verify(key, pb)
        done.append(f"{key}: {', '.join(sorted(c.runners))}")
    return done


# ---------------------------------------------------------------------------------- peak


def dgemm_peak(size: int = 2000, repeats: int = 10) -> float:
    """GFLOP/s of numpy.dot of two size x size float64 matrices (THREADS threads), best of N."""
    rng = np.random.default_rng(0)
    A, B = rng.random((size, size)), rng.random((size, size))
    A @ B
    best = min(_timed(lambda: A @ B) for _ in range(repeats))
    return 2.0 * size**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def all_cases():
    """(op, size, impl) in the order they are benchmarked."""
    for op_key, op in OPS.items():
        for size in op.sizes:
            for impl in IMPLS:
                yield op_key, size, impl
