"""Deletion requests served from curvature built once: :class:`Unlearner`.

A trained model receives deletion requests F1, F2, ... over its life. The Unlearner builds the
curvature of the training objective at θ̂ once (:mod:`mlu.engine.curvature`), keeps the gradient sum
over the data at θ̂, and serves each request from those stored quantities: its cost depends on
|F| and p (and, for the Woodbury form, on the n·r Gram space), never on a pass over the data.

Every request is computed from θ̂ with everything removed so far (the cumulative forget set F,
R = D minus F, m = |R|), its check included (docs/design.md, "Unlearner"), so requests F1
then F2 give the model of one request F1 ∪ F2 (to rounding) and the same sequence gives the
same bits. ``target="tilted"`` takes the Newton step of the objective θ̂ minimises with F's
losses taken out, ``θ̂ + (1/m)(H_R + δI)⁻¹ Σ_F ∇ℓ(θ̂)``; ``target="retained"`` the Newton step
on L_R, ``θ̂ − (H_R + δI)⁻¹ ∇L_R(θ̂)`` (= ``mlu.unlearn(method="newton", steps=1)``);
``"auto"`` (default) the tilted step, or the retained one where the tilted fails its check.
The check: the target objective may not rise along the full step; a K-FAC/EK-FAC step that
fails is solved again with the damping raised (:data:`DAMPING_LADDER`), then refined by CG on
the GGN of (a seeded subsample of) R; a step that still fails raises
:class:`RequestFailedError` and changes nothing.

By default a forgetting mode (:mod:`mlu.forgetting`, docs/design.md "Forgetting modes") then
runs on that exact update: shrink and noise, then a short fine-tuning on the retained data,
scaled with the share of the data forgotten and seeded by the cumulative forget set, so that
memorised samples stop looking like members; ``mode="exact"`` gives the exact update alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core
from .._files import atomic_path
from ..engine import _dask
from ..engine._npz import write_npz
from ..engine._safeguard import ROUNDING_TOLERANCE, UpdateCheck
from ..engine._threads import serial_blas
from ..engine._validation import (
    PARAMS_CHOICES,
    activation_spec,
    as_features,
    as_labels,
    check_choice,
    check_damping,
    check_forget,
    check_model,
    encode_labels,
)
from ..engine.curvature import (
    REPRESENTATIONS,
    Curvature,
    WoodburyCurvature,
    build_curvature,
    curvature_from_arrays,
    make_problem,
)
from ..engine.io import load_model, save_model
from ..engine.model import MLP
from ..exceptions import RequestFailedError
from . import forgetting
from .forgetting import DEFAULT_ANNEAL, DEFAULT_MODE, MODES, PostUpdate
from .unlearn import DEFAULT_DAMPING, METHODS, UnlearningResult

__all__ = [
    "CHECK_ROWS",
    "DAMPING_LADDER",
    "DEFAULT_TARGET",
    "FORMAT_TAG",
    "TARGETS",
    "RequestFailedError",
    "Unlearner",
]

FORMAT_TAG = "mlu-unlearner"
FORMAT_VERSION = 1
CHECK_ROWS = 256
"""Size of the fixed seeded subsample S of the data on which the second-order part of each
update's check is estimated (its retained rows): one gradient pass over at most this many rows
per request, so the check does not grow with n (docs/design.md, "Unlearner")."""
TARGETS = ("auto", "tilted", "retained")
DEFAULT_TARGET = "auto"
"""The target of ``forget`` (docs/design.md, "Unlearner": measured against ``"retained"``)."""
REFINE_TOL = 1e-6
"""Relative residual at which the CG refinement of a failed factored step stops."""
REFINE_MAXITER = 10
"""At most this many CG iterations refine a failed factored step, after the damping ladder: a
bound on what a failing request costs (docs/design.md, "Unlearner": a refinement run to
convergence had failed too, at 0.69 of a retraining)."""
DAMPING_LADDER = (10.0, 100.0, 1000.0)
"""Factors of the damping with which a factored step that fails its check is solved again,
before any refinement: a factored solve and a check each (docs/design.md, "Unlearner")."""
REFINE_ROWS = 2048
"""A refinement's GGN products run on at most this many retained rows (a fixed seeded
subsample of R; all of R when it is smaller): the mean GGN of the subsample estimates that of
R, and the check (on its own rows) decides (docs/design.md, "Unlearner")."""
REFINE_CHECK_EVERY = 1
"""The refinement checks its iterate every this many iterations and stops once it holds (a
check is one gradient over at most CHECK_ROWS rows, an iteration a GGN product over R: on all
of Fashion-MNIST with 784-256-10 one iteration sufficed where every 5 cost five)."""


def _num(value: float, digits: int = 3) -> str:
    """``value`` in ``digits`` significant digits, or words when it is not finite."""
    return f"{value:.{digits}g}" if np.isfinite(value) else "not finite (overflow)"


def _describe(check: UpdateCheck, name: str) -> str:
    """The check in one line, for the objective ``name`` (never "nan")."""
    return (
        f"{name} {_num(check.objective_before, 6)} -> {_num(check.objective_after, 6)} (change "
        f"{_num(check.actual_change)}, predicted {_num(check.predicted_change)}); "
        f"|grad {name}| {_num(check.grad_norm_before)} -> {_num(check.grad_norm_after)}"
    )


@dataclass(frozen=True)
class _Update:
    """A request's exact update, computed but not yet committed (see Unlearner._forget)."""

    rows: np.ndarray
    theta: np.ndarray
    curv: Curvature
    removed_grad: np.ndarray
    alive: np.ndarray
    method: str
    solver: str
    matrix: str
    iterations: int | None
    residual: float | None
    checks: tuple[UpdateCheck, ...]
    notes: list[str]


_MATRICES = ("ggn", "hessian")


def _act(model: MLP) -> str:
    """The model's activation(s) as the core takes them (``"tanh,relu"`` for mixed layers)."""
    return activation_spec(model.activation, len(model.sizes_) - 2)


def _data_hash(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(X.shape).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y).astype(str).tobytes() if y.dtype == object else y.tobytes())
    return h.hexdigest()


def _model_bytes(model: MLP) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        save_model(model, path)
        with open(path, "rb") as fh:
            return np.frombuffer(fh.read(), dtype=np.uint8)


def _model_from_bytes(raw: np.ndarray) -> MLP:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        with open(path, "wb") as fh:
            fh.write(raw.tobytes())
        return load_model(path)


class Unlearner:
    """Serve deletion requests on a trained MLP from curvature built once at θ̂.

    Parameters
    ----------
    model : mlu.MLP
        The trained model θ̂ (never modified).
    X : array-like, shape (n, d)
        The data it was trained on.
    y : array-like, shape (n,)
        Its labels.
    curvature : {"auto", "dense", "woodbury", "kfac", "ekfac"}
        How the curvature is held (see :mod:`mlu.engine.curvature`). ``"auto"`` picks dense for
        p <= 2000, Woodbury for n·r < p (the exact GGN), EK-FAC otherwise, each only where its
        memory fits; :attr:`choice` says what and why.
    damping : float, default :data:`mlu.unlearning.unlearn.DEFAULT_DAMPING`
        δ added to the curvature (which includes λI).
    params : {"all", "last"}
        Parameters that change.
    matrix : {"ggn", "hessian"}
        For ``curvature="dense"``: the GGN or the exact Hessian (eigh with a pseudo-inverse
        where H + δI is indefinite). The other representations are GGN forms.

    Attributes
    ----------
    model : mlu.MLP
        The current model (a new object after every request): the last request's
        post-updated model (its exact update for ``mode="exact"``). The state the next
        request starts from is the exact update's (docs/design.md, "Forgetting modes").
    removed : list of ndarray
        The indices removed (sorted), request by request.
    choice : str
        The representation used and why.
    build_time : float
        Seconds to build the curvature.
    """

    def __init__(
        self,
        model: MLP,
        X,
        y,
        *,
        curvature: str = "auto",
        damping: float = DEFAULT_DAMPING,
        params: str = "all",
        matrix: str = "ggn",
        _state: dict | None = None,
    ):
        check_model(model)
        check_choice(curvature, "curvature", REPRESENTATIONS)
        check_choice(params, "params", PARAMS_CHOICES)
        check_choice(matrix, "matrix", _MATRICES)
        damping = check_damping(damping)
        if _dask.is_dask(X, y):
            # labels gathered (n integers), features left in their chunks; no hash (save refuses)
            self._problem, self._where = make_problem(model, X, y, params)
            X, y = self._problem.X, self._problem.y
            yk, self._hash = y, None
        else:
            X = as_features(X, model.n_features_in_)
            y = as_labels(y, X.shape[0])
            yk = encode_labels(y, model.classes_)
            self._hash = _data_hash(X, y)
            self._problem, self._where = make_problem(model, X, yk, params)
        self._X, self._y, self._yk = X, y, yk
        self.params = params
        self.damping = damping
        self._theta_hat = model.theta_.copy()
        if _state is None:
            self._base_model = copy.deepcopy(model)
            self.model = copy.deepcopy(model)
            self._curv, why = build_curvature(self._problem, curvature, damping, matrix)
            self.choice = f"{self._curv.kind}: {why}"
            self.build_time = float(self._curv.build_time)
            self._grad_sum = self._problem.gradient_sum()
            self._removed_grad = np.zeros(self._problem.p)
            # the curvature over all of D (method="influence"); the downdates leave it as it is
            self._build_curv: Curvature | None = self._curv
            self.removed: list[np.ndarray] = []
            self._alive = np.ones(X.shape[0], dtype=bool)
        else:
            self.__dict__.update(_state)
        self._init_check()
        # a fixed seeded order of D: a refinement's products run on its first REFINE_ROWS
        # retained rows (_refine_rows), a function of F alone
        self._refine_order = np.random.default_rng(1).permutation(self._problem.n)

    def _init_check(self) -> None:
        """The fixed seeded check rows S (at most :data:`CHECK_ROWS` of D) and what the check
        needs of θ̂ on them: ℓ_i(θ̂) per row and Σ_S ∇ℓ_i(θ̂) (one pass over S, at the build)."""
        n = self._problem.n
        if self._problem.source is not None:  # dask: from a few chunks, not one row of each
            rows = self._problem.source.sample_rows(CHECK_ROWS, seed=0)
        else:
            rows = np.sort(np.random.default_rng(0).permutation(n)[:CHECK_ROWS])
        self._check_rows = rows
        self._check_prob = self._problem.subset(rows)  # in memory (gathered from dask)
        theta, sizes, act, X = self._check_prob.core_args()
        y = np.ascontiguousarray(self._check_prob.y)
        self._check_loss0 = _core.losses(theta, sizes, act, X, y)
        g, _ = _core.gradient(theta, sizes, act, X, y, 0.0)
        self._check_grad0 = g * len(rows)

    # ------------------------------------------------------------------ properties
    @property
    def curvature(self) -> str:
        """The representation in use."""
        return self._curv.kind

    @property
    def n_retained(self) -> int:
        return int(self._alive.sum())

    # ------------------------------------------------------------------ requests
    def _check_request(self, indices) -> np.ndarray:
        arr = np.asarray(indices)
        if arr.dtype == bool:  # a request names samples; a mask of D would be ambiguous here
            raise TypeError("indices must be integers into the training data, not a boolean mask")
        # empty, not integer, not 1-D, out of range, duplicated: the check every entry point uses
        arr = np.flatnonzero(check_forget(arr, self._X.shape[0], allow_all=True))
        gone = ~self._alive[arr]
        if gone.any():
            i = int(arr[np.flatnonzero(gone)[0]])
            k = next(j for j, req in enumerate(self.removed) if i in req)
            raise ValueError(f"index {i} was already removed (request {k})")
        alive = self._alive.copy()
        alive[arr] = False
        if not alive.any():
            raise ValueError("the request would remove every remaining sample")
        k = len(self.model.classes_)
        left = np.bincount(self._yk[self._alive], minlength=k)  # O(n), no sort
        lost = np.flatnonzero((left > 0) & (left == np.bincount(self._yk[arr], minlength=k)))
        if len(lost):
            raise ValueError(
                f"the request would remove the last sample of class "
                f"{self.model.classes_[lost[0]]!r}: a class would be left empty"
            )
        return arr.astype(np.int64)

    # ------------------------------------------------------------------ the check
    def _check(
        self,
        alive: np.ndarray,
        b: np.ndarray,
        d: np.ndarray,
        rhs: np.ndarray,
        damping: float | None = None,
    ) -> UpdateCheck:
        """The change of the request's target objective J along ``d`` from θ̂, estimated on
        the retained check rows (docs/design.md, "Unlearner", the check).

        J is L_R (``target="retained"``) or the tilted L̃_R (``"tilted"``); ``b = ∇J(θ̂)``
        exactly, from the stored sums. J(θ̂ + d) − J(θ̂) = bᵀd + (λ/2)‖d‖² + (1/m) Σ_R r_i(d)
        with ``r_i(d) = ℓ_i(θ̂+d) − ℓ_i(θ̂) − ∇ℓ_i(θ̂)ᵀd`` the second-order remainder of each
        retained loss: only its mean is estimated on the retained check rows S_R (one gradient
        pass over them at θ̂ + d), the first-order part is exact. Exact when S = D. ``rhs``
        is the right-hand side the solve had, (H + δI) d = rhs with δ ``damping`` (default the
        Unlearner's), for the predicted change.
        """
        damping = self.damping if damping is None else damping
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing step fails in words
            return self._check_unguarded(alive, b, d, rhs, damping)

    def _check_unguarded(
        self, alive: np.ndarray, b: np.ndarray, d: np.ndarray, rhs: np.ndarray, damping: float
    ) -> UpdateCheck:
        prob = self._check_prob
        keep = alive[self._check_rows]
        count = int(keep.sum())
        theta_hat = self._problem.theta
        l2 = self._problem.l2
        lin = float(b @ d)
        predicted = lin + 0.5 * (float(rhs @ d) - damping * float(d @ d))
        if count == 0:  # no check row retained: the first-order and λ parts only
            change, grad = lin + 0.5 * l2 * float(d @ d), b + l2 * d
            level = 0.5 * l2 * float(theta_hat @ theta_hat)
        else:
            _, sizes, act, X = prob.core_args()
            y = prob.y
            gone = ~keep
            grad0 = self._check_grad0
            if gone.any():  # Σ_{S∩removed} ∇ℓ(θ̂), from θ̂ and the cumulative removed set
                g_gone, _ = _core.gradient(
                    theta_hat, sizes, act, np.ascontiguousarray(X[gone]), y[gone], 0.0
                )
                grad0 = grad0 - g_gone * int(gone.sum())
                Xk, yk = np.ascontiguousarray(X[keep]), y[keep]
            else:
                Xk, yk = X, y
            g1, loss1 = _core.gradient(theta_hat + d, sizes, act, Xk, yk, 0.0)
            loss0 = float(self._check_loss0[keep].mean())
            remainder = float(loss1) - loss0 - float(grad0 @ d) / count
            change = lin + 0.5 * l2 * float(d @ d) + remainder
            grad = b + l2 * d + g1 - grad0 / count
            level = loss0 + 0.5 * l2 * float(theta_hat @ theta_hat)
        return UpdateCheck(
            objective_before=level,
            objective_after=level + change,
            grad_norm_before=float(np.linalg.norm(b)),
            grad_norm_after=float(np.linalg.norm(grad)),
            predicted_change=predicted,
            full_change=change,
            actual_change=change,
            step=1.0,
            evaluations=1,
        )

    @staticmethod
    def _holds(check: UpdateCheck) -> bool:
        """The target objective did not rise along the full step (beyond rounding)."""
        scale = ROUNDING_TOLERANCE * max(1.0, abs(check.objective_before))
        return bool(check.full_change <= scale)

    def _refine_rows(self, alive: np.ndarray) -> np.ndarray:
        """The rows of a refinement's GGN products: the first :data:`REFINE_ROWS` retained
        rows in a fixed seeded order of D (all of R when |R| <= REFINE_ROWS), sorted; a
        function of the cumulative forget set alone, so the refinement is path-independent."""
        order = self._refine_order
        return np.sort(order[alive[order]][:REFINE_ROWS])

    def _refine(
        self,
        alive: np.ndarray,
        curv: Curvature,
        rhs: np.ndarray,
        x0: np.ndarray,
        holds: Callable[[np.ndarray], bool],
    ) -> tuple[np.ndarray, int, float, float]:
        """Solve ``(H_R + δI) x = rhs`` by conjugate gradients, with H_R the mean GGN of the
        retained rows :meth:`_refine_rows` gives (R itself when it has at most
        :data:`REFINE_ROWS` rows), preconditioned by the factored ``curv`` and started from
        its solution ``x0``; stop at a relative residual of :data:`REFINE_TOL`, after
        :data:`REFINE_MAXITER` iterations, or at the first iterate of every
        :data:`REFINE_CHECK_EVERY` whose check ``holds``.

        Returns x, the iterations, the relative residual and the seconds it took.
        """
        start = time.perf_counter()
        if self._problem.source is not None:
            raise NotImplementedError("refinement needs the data in memory (not dask)")
        prob = self._problem
        rows = self._refine_rows(alive)
        op = _core.HessianOperator(
            prob.theta, list(prob.sizes), prob.activation, np.ascontiguousarray(prob.X[rows]),
            np.ascontiguousarray(prob.y[rows]), 0.0, "ggn",
        )  # fmt: skip
        shift = prob.l2 + self.damping

        def apply(v: np.ndarray) -> np.ndarray:  # the mean GGN of the rows, + (λ + δ) v
            return np.asarray(op.matvec(v)) + shift * v

        # the core's one CG loop (docs/design.md, "Solvers"), from x0, preconditioned by curv
        res = _core.cg(
            apply, rhs, 0.0, REFINE_TOL, REFINE_MAXITER, true_residual=False, x0=x0,
            precondition=curv.solve, stop_every=REFINE_CHECK_EVERY, stop=holds,
        )  # fmt: skip
        x, iterations, residual = res["x"], int(res["iterations"]), float(res["relative_residual"])
        return x, iterations, residual, time.perf_counter() - start

    # ------------------------------------------------------------------ requests
    def forget(
        self,
        indices,
        method: str = "newton",
        *,
        safeguard: bool = True,
        target: str = DEFAULT_TARGET,
        mode: str | None = None,
        epochs: float | None = None,
        noise: float | None = None,
        anneal: float = DEFAULT_ANNEAL,
        shrink: float | None = None,
    ) -> UnlearningResult:
        """Remove the samples ``indices`` (into the data the Unlearner was built on).

        Every request is computed from θ̂ with everything removed so far (the cumulative
        forget set F, R = D minus F, m = |R|), check included: the exact update θ_F. By
        default a forgetting mode then runs on θ_F (:func:`mlu.forgetting.post_update`,
        :data:`~mlu.forgetting.DEFAULT_MODE`: shrink and noise, then a short fine-tuning on R,
        scaled with |F| / n by :func:`mlu.forgetting.scaled_settings`), because
        the exact update alone leaves memorised samples looking like members
        (docs/design.md, "Forgetting modes"). The Unlearner keeps θ_F as its state and the
        post-update is seeded by F, so requests F1 then F2 give the model of one request
        F1 ∪ F2 with the same mode, and the same sequence gives the same bits.

        Parameters
        ----------
        indices : array-like of int, shape (k,)
            Not empty, no duplicates, none removed before; the request may not leave the data
            or a class empty.
        method : {"newton", "influence"}
            ``"newton"``: the Newton step of ``target`` with the retained curvature H_R.
            ``"influence"``: Koh & Liang's ``θ̂ + (1/n)(H_D + δI)⁻¹ Σ_F ∇ℓ(θ̂)`` with the
            curvature of the build (checked against the tilted objective).
        safeguard : bool, default True
            Check the update: the target objective must not rise along it, estimated on a
            fixed seeded subsample of R (at most :data:`CHECK_ROWS` rows) for its
            second-order part and exact for the rest. A K-FAC/EK-FAC step that fails is
            solved again with the damping times 10, 100, 1000 (the first that holds is
            applied; the notes say which), then refined by preconditioned CG on the GGN of
            at most :data:`REFINE_ROWS` retained rows; a step that still fails raises
            :class:`RequestFailedError`. False: the plain formula.
        target : {"auto", "tilted", "retained"}
            ``"tilted"``: the Newton step of the objective θ̂ minimises,
            ``L_D − ∇L_D(θ̂)ᵀθ``, with F's losses taken out,
            ``θ̂ + (1/m)(H_R + δI)⁻¹ Σ_F ∇ℓ(θ̂)``. ``"retained"``: the Newton step on L_R,
            ``θ̂ − (H_R + δI)⁻¹ ∇L_R(θ̂)``, which also carries the rest of training's
            gradient at θ̂ (``mlu.unlearn(method="newton", steps=1)``). ``"auto"``
            (default): the tilted step, else the retained one, each tried as it is before
            either is refined (docs/design.md, "Unlearner", for the measurement).
        mode : {"exact", "finetune", "noisy_finetune", "fisher_finetune", "noise"}, optional
            The forgetting mode run after the exact update (:mod:`mlu.forgetting`).
            ``"exact"``: the exact update θ_F alone (no post-update). Default (None):
            :data:`~mlu.forgetting.DEFAULT_MODE` on in-memory data; on dask data
            ``"exact"``, with a note saying so (the post-update needs X in memory; any other
            mode named there raises ValueError).
        epochs : float, optional
            Passes over R of the fine-tuning. Default (None), like ``noise`` and ``shrink``:
            :func:`mlu.forgetting.scaled_settings` for the cumulative F, ``E_f · t²`` with
            the strength ``t = min(1, 10 |F| / n)`` and ``E_f = min(3, 0.075 · training
            epochs)``, so the post-update costs at most 0.075 t² of a retraining.
        noise : float, optional
            Noise std relative to each layer's weight RMS (modes with noise); default
            ``a = t · E_f / 3``.
        anneal : float in [0, 1], default :data:`~mlu.forgetting.DEFAULT_ANNEAL`
            Share of the fine-tuning at the reduced learning rate.
        shrink : float in [0, 1], optional
            Factor on θ_F before the noise (modes with noise); default ``1 − 0.7 a``.

        Returns
        -------
        UnlearningResult
            ``.model`` is a new MLP (also stored as :attr:`model`; earlier ones untouched):
            the post-updated model, or θ_F for ``mode="exact"``. ``.iterations`` is the
            refinement's CG iterations (None when not refined); ``.notes`` say what the check
            saw, what a refinement cost and what the post-update did; ``.time`` includes the
            post-update.

        Raises
        ------
        ValueError, TypeError
            A bad request or setting (a mode other than ``"exact"`` on dask data); the
            Unlearner is left unchanged.
        RequestFailedError
            The update fails its check (after refinement, for a factored curvature); the
            Unlearner is left unchanged (as it is when the post-update raises).
        """
        start = time.perf_counter()
        check_choice(method, "method", METHODS)
        check_choice(target, "target", TARGETS)
        settings = self._forgetting_settings(mode, epochs, noise, anneal, shrink)
        rows = self._check_request(indices)
        # small NumPy products between core calls: threaded BLAS would slow the core (_threads)
        with serial_blas():
            return self._forget(rows, method, target, safeguard, start, settings)

    def _forgetting_settings(
        self,
        mode: str | None,
        epochs: float | None,
        noise: float | None,
        anneal: float,
        shrink: float | None = None,
    ) -> dict[str, Any]:
        """The checked post-update settings of a request: ``mode``, ``epochs``, ``noise``,
        ``anneal``, ``shrink`` (None: :func:`mlu.forgetting.scaled_settings` for the request's
        cumulative F) and ``note`` (why the mode is exact on dask data, else None)."""
        dask = self._problem.source is not None
        note = None
        if mode is None:
            mode = "exact" if dask else DEFAULT_MODE
            if dask:
                note = (
                    "forgetting mode 'exact' (the default on dask data: a post-update needs the "
                    "data in memory)"
                )
        check_choice(mode, "mode", MODES)
        if dask and mode != "exact":
            raise ValueError(
                f"mode={mode!r} needs the training data in memory (it fine-tunes on the "
                "retained rows); on dask data only mode='exact' is served"
            )
        mode, epochs, noise, _, anneal, shrink = forgetting.check_settings(
            mode, epochs, noise, None, anneal, shrink=shrink, full=True
        )
        return {
            "mode": mode,
            "epochs": epochs,
            "noise": noise,
            "anneal": anneal,
            "shrink": shrink,
            "note": note,
        }

    def _forget(
        self,
        rows: np.ndarray,
        method: str,
        target: str,
        safeguard: bool,
        start: float,
        settings: dict[str, Any] | None = None,
    ) -> UnlearningResult:
        """The request ``rows`` (checked by :meth:`_check_request`): the exact update, the
        post-update (``settings`` of :meth:`_forgetting_settings`; None: exact), then the
        commit. Nothing changes ``self`` before the commit, so a raise leaves it as it was."""
        update = self._exact_update(rows, method, target, safeguard)
        post = None
        note = None if settings is None else settings["note"]
        if settings is not None and settings["mode"] != "exact":
            exact = copy.deepcopy(self._base_model)
            exact.theta_ = update.theta
            post = forgetting.run_mode(
                exact, self._X, self._y, ~update.alive, settings["mode"],
                epochs=settings["epochs"], noise=settings["noise"], lr=None,
                anneal=settings["anneal"], shrink=settings.get("shrink"),
            )  # fmt: skip
        return self._commit(update, start, post, note)

    def _exact_update(self, rows: np.ndarray, method: str, target: str, safeguard: bool) -> _Update:
        """The update of the cumulative forget set (this request's ``rows`` included), from θ̂,
        with its check; ``self`` is not touched. Raises RequestFailedError.

        ``target="auto"`` takes the tilted update and, when it fails its check, the retained
        one: both from θ̂ and the cumulative set, so the choice is path-independent too."""
        g_F = self._problem.gradient_sum(rows)
        removed_grad = self._removed_grad + g_F
        new_curv = self._curv.downdated(rows)
        alive = self._alive.copy()
        alive[rows] = False
        targets = ("tilted", "retained") if target == "auto" and method == "newton" else (target,)
        factored = self._curv.kind in ("kfac", "ekfac") and method == "newton"
        failures: list[str] = []
        # every target as it is first; then (K-FAC/EK-FAC) the first target with the damping
        # raised rung by rung (one factored solve and one check each), then every target
        # refined by CG: the cheapest attempts first (docs/design.md, "Unlearner")
        attempts = [(name, 1.0, False) for name in targets]
        if factored:
            attempts += [(targets[0], boost, False) for boost in DAMPING_LADDER]
            attempts += [(name, 1.0, True) for name in targets]
        for name, boost, refine in attempts:
            try:
                return self._target_update(
                    rows, removed_grad, new_curv, alive, method, name, safeguard, refine,
                    failures, boost,
                )  # fmt: skip
            except RequestFailedError as exc:
                failures.append(str(exc))
        raise RequestFailedError(" ".join(failures))

    def _target_update(
        self,
        rows: np.ndarray,
        removed_grad: np.ndarray,
        new_curv: Curvature,
        alive: np.ndarray,
        method: str,
        target: str,
        safeguard: bool,
        refine: bool,
        failures: list[str],
        boost: float = 1.0,
    ) -> _Update:
        """The update of one ``target``, refined by CG when ``refine``, solved with the damping
        times ``boost`` (see :meth:`_exact_update`); raises RequestFailedError when its check
        fails."""
        problem = self._problem
        notes = [f"curvature {self.choice}", *new_curv.notes, *failures]
        m = new_curv.m
        wood = new_curv if isinstance(new_curv, WoodburyCurvature) else None
        images = wood.images_removed if wood is not None else None  # B Σ_removed ∇ℓ, or None
        image = None  # B rhs, when the stored images give it (Woodbury)
        if method == "influence":
            used = self._build_curv
            if used is None:
                raise NotImplementedError(
                    "method='influence' needs the curvature of the build, which this file "
                    "(an Unlearner saved by an older version) does not hold"
                )
            rhs = removed_grad / used.m
            if images is not None:
                image = images / used.m
            b = -removed_grad / m  # checked against the tilted objective
            what = "influence"
        else:
            used = new_curv
            if boost != 1.0:  # a factored solve with δ·boost; the state keeps δ (new_curv)
                used = copy.copy(new_curv)
                used.damping = self.damping * boost
            if target == "tilted":
                b = -removed_grad / m
                if images is not None:
                    image = images / m
            else:
                b = (self._grad_sum - removed_grad) / m + problem.l2 * problem.theta
                retained = wood.retained_gradient_image() if wood is not None else None
                if retained is not None:
                    image = -retained[:, 0]
            rhs = -b
            what = f"newton, target {target!r}"
            if boost != 1.0:
                what += f", damping {used.damping:g} ({boost:g} x the Unlearner's)"
        notes.append(f"update: {what}")
        x = used.solve(rhs, BV=None if image is None else image[:, None])
        with np.errstate(over="ignore", invalid="ignore"):  # a huge step fails its check
            residual = used.residual(x, rhs) if hasattr(used, "residual") else None
        iterations = None
        checks: tuple[UpdateCheck, ...] = ()
        if safeguard:
            J = "L_R" if target == "retained" and method == "newton" else "tilted L_R"
            check = self._check(alive, b, x, rhs, used.damping)
            rows_checked = int(alive[self._check_rows].sum())
            where = f"on {rows_checked} retained check rows (of {m})"
            refined = ""
            if refine and problem.source is None:
                first = check

                def holds(x_trial: np.ndarray) -> bool:
                    return self._holds(self._check(alive, b, x_trial, rhs))

                x, iterations, residual, seconds = self._refine(alive, used, rhs, x, holds)
                check = self._check(alive, b, x, rhs)
                refined = (
                    f"the {used.kind} step failed its check ({_describe(first, J)}); refined by "
                    f"CG on the GGN of {min(REFINE_ROWS, m)} retained rows (of {m}) "
                    f"preconditioned by {used.kind}: {iterations} "
                    f"iterations, relative residual {residual:.3g}, {seconds:.3g} s"
                )
                notes.append(refined)
            if not self._holds(check):
                raise RequestFailedError(
                    f"Unlearner.forget ({what}, curvature {used.kind}"
                    + (", refined" if refined else "")
                    + f"): the update would raise its target objective {where}: "
                    f"{_describe(check, J)}."
                    + (f" ({refined}.)" if refined else "")
                    + " Nothing was changed."
                )
            checks = (check,)
            notes.append(f"check {where}: {_describe(check, J)}")
        theta = self._theta_hat.copy()
        theta[self._where] = problem.theta + x
        return _Update(
            rows=rows,
            theta=theta,
            curv=new_curv,
            removed_grad=removed_grad,
            alive=alive,
            method=method,
            solver=getattr(used, "solver", used.kind),
            matrix=used.matrix,
            iterations=iterations,
            residual=residual,
            checks=checks,
            notes=notes,
        )

    def _commit(
        self,
        update: _Update,
        start: float,
        post: PostUpdate | None = None,
        note: str | None = None,
    ) -> UnlearningResult:
        """Store ``update`` as the current state (nothing above changed ``self``): the exact
        θ_F stays the state (every request starts from θ̂ and F), :attr:`model` is ``post``'s
        model when a forgetting mode ran."""
        if post is not None:
            new = post.model
            notes = [*update.notes, post.summary()]
        else:
            new = copy.deepcopy(self._base_model)
            new.theta_ = update.theta
            notes = [*update.notes, *([note] if note else [])]
        self._curv = update.curv
        self._removed_grad = update.removed_grad
        self._alive = update.alive
        self.removed = self.removed + [update.rows]
        self.model = new
        return UnlearningResult(
            model=new,
            method=update.method,
            solver=update.solver,
            params=self.params,
            curvature=update.matrix,
            damping=self.damping,
            iterations=update.iterations,
            residual=update.residual,
            min_eigenvalue=None,
            negative_curvature=update.solver == "eigh",
            checks=update.checks,
            n_forget=len(update.rows),
            steps=1,
            time=time.perf_counter() - start,
            notes=tuple(notes),
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the Unlearner to ``path`` as a pickle-free ``.npz`` (replaced atomically)."""
        if self._hash is None:
            raise NotImplementedError(
                "Unlearner.save does not take an Unlearner built on dask data (its data hash "
                "would be a full pass over the chunks); build it again from the data"
            )
        meta = {
            "curvature": self._curv.kind,
            "params": self.params,
            "damping": self.damping,
            "choice": self.choice,
            "build_time": self.build_time,
            "data_hash": self._hash,
        }
        arrays: dict[str, Any] = {
            "format": np.array(FORMAT_TAG),
            "version": np.array(FORMAT_VERSION, dtype=np.int64),
            "meta": np.array(json.dumps(meta)),
            "base_model": _model_bytes(self._base_model),
            "model": _model_bytes(self.model),
            "grad_sum": self._grad_sum,
            "removed_grad": self._removed_grad,
            "removed_flat": np.concatenate(self.removed) if self.removed else np.zeros(0, np.int64),
            "removed_sizes": np.array([len(r) for r in self.removed], dtype=np.int64),
        }
        arrays.update({f"curv_{k}": np.asarray(v) for k, v in self._curv.arrays().items()})
        if self._build_curv is not None and self.removed and self._curv.kind != "woodbury":
            # the build's curvature (method="influence"); Woodbury's is the current one with
            # every row alive, rebuilt on load
            build = self._build_curv.arrays().items()
            arrays.update({f"curv0_{k}": np.asarray(v) for k, v in build})
        # "r+b": the temporary file is new and empty; truncating it on open ("wb") would make
        # ext4 flush all of it at close, stalling a deletion store's concurrent commits
        with atomic_path(path) as tmp, open(tmp, "r+b") as fh:
            write_npz(fh, arrays)

    @classmethod
    def load(cls, path, X, y) -> Unlearner:
        """Read an Unlearner written by :meth:`save`; X and y must be the data it was built on.

        Raises
        ------
        ValueError
            Not an Unlearner file, or X / y differ from the data of the build (hash mismatch).
        """
        try:
            data = np.load(path, allow_pickle=False)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except Exception as exc:
            raise ValueError(f"{path}: not an mlu Unlearner file ({exc})") from exc
        with data:
            if "format" not in data.files or str(data["format"]) != FORMAT_TAG:
                raise ValueError(
                    f"{path}: not an mlu Unlearner file (format tag {FORMAT_TAG!r} missing)"
                )
            if int(data["version"]) != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: unsupported Unlearner format version {int(data['version'])}"
                )
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays["meta"]))
        base = _model_from_bytes(arrays["base_model"])
        Xc = as_features(X, base.n_features_in_)
        yc = as_labels(y, Xc.shape[0])
        if _data_hash(Xc, yc) != meta["data_hash"]:
            raise ValueError(
                f"{path}: X and y differ from the data the curvature was built on (hash mismatch); "
                "build a new Unlearner for these data"
            )
        self = cls.__new__(cls)
        sizes = arrays["removed_sizes"]
        removed = (
            list(np.split(arrays["removed_flat"], np.cumsum(sizes)[:-1])) if len(sizes) else []
        )
        alive = np.ones(Xc.shape[0], dtype=bool)
        for req in removed:
            alive[req] = False
        state = {
            "_base_model": base,
            "model": _model_from_bytes(arrays["model"]),
            "choice": meta["choice"],
            "build_time": float(meta["build_time"]),
            "_grad_sum": arrays["grad_sum"],
            "_removed_grad": arrays["removed_grad"],
            "removed": removed,
            "_alive": alive,
        }
        Unlearner.__init__(
            self,
            base,
            Xc,
            yc,
            curvature=meta["curvature"],
            damping=meta["damping"],
            params=meta["params"],
            _state=state,
        )
        curv_arrays = {k[5:]: v for k, v in arrays.items() if k.startswith("curv_")}
        self._curv = curvature_from_arrays(
            meta["curvature"], self._problem, self.damping, curv_arrays
        )
        build_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("curv0_")}
        if not removed:
            self._build_curv = self._curv
        elif isinstance(self._curv, WoodburyCurvature):
            self._build_curv = self._curv.restored()
        elif build_arrays:
            self._build_curv = curvature_from_arrays(
                meta["curvature"], self._problem, self.damping, build_arrays
            )
        else:
            self._build_curv = None
        return self

    def __repr__(self) -> str:
        return (
            f"Unlearner(curvature={self.curvature!r}, params={self.params!r}, "
            f"damping={self.damping!r}, n={self._X.shape[0]}, retained={self.n_retained}, "
            f"requests={len(self.removed)})"
        )


_ = Curvature  # re-exported type for annotations of users
