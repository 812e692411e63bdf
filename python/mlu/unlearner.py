"""Deletion requests served from curvature built once: :class:`Unlearner`.

A trained model receives deletion requests F1, F2, ... over its life. The Unlearner builds the
curvature of the training objective at θ̂ once (:mod:`mlu.curvature`), keeps the gradient sum
over the data at θ̂, and serves each request from those stored quantities: its cost depends on
|F| and p (and, for the Woodbury form, on the n·r Gram space), never on a pass over the data.

Each request k removes F_k from the retained set. With R_k = D minus everything removed so far
(m_k samples), ``method="newton"`` sets (docs/design.md, "Unlearner")

    θ_k = θ̂ − (H_{R_k} + δI)⁻¹ ∇L_{R_k}(θ̂),  ∇L_{R_k}(θ̂) = (1/m_k)(Σ_D ∇ℓ − Σ_{removed} ∇ℓ) + λθ̂,

always from θ̂ with the cumulative removed set and the downdated curvature. So requests F1 then
F2 give exactly the model of one request F1 ∪ F2 (to rounding, for the exact representations),
and the first request is ``mlu.unlearn(method="newton", curvature="ggn", steps=1)``.
``method="influence"`` takes the first-order step of Koh & Liang from the current model,
``θ_k = θ_{k−1} + (1/m_{k−1})(H_{R_{k−1}} + δI)⁻¹ Σ_{F_k} ∇ℓ(θ̂)`` (the first request is
``mlu.unlearn(method="influence", curvature="ggn")``); it is not additive over requests.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
import warnings
from typing import Any

import numpy as np

from . import _core, _dask
from ._files import atomic_path
from ._problem import scaled
from ._safeguard import UpdateCheck, checked_update
from ._threads import serial_blas
from ._validation import (
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
from .curvature import (
    REPRESENTATIONS,
    Curvature,
    WoodburyCurvature,
    build_curvature,
    curvature_from_arrays,
    make_problem,
)
from .exceptions import UpdateShortenedWarning
from .io import load_model, save_model
from .model import MLP
from .unlearn import DEFAULT_DAMPING, METHODS, UnlearningResult

__all__ = ["FORMAT_TAG", "Unlearner"]

FORMAT_TAG = "mlu-unlearner"
FORMAT_VERSION = 1
CHECK_ROWS = 1024
"""Size of the fixed seeded subsample of the data on which each update's retained objective
is checked (its retained rows): one forward pass over at most this many rows per request, so
the check does not grow with n."""

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
        How the curvature is held (see :mod:`mlu.curvature`). ``"auto"`` picks dense for
        p <= 2000, Woodbury for n·r < p (the exact GGN), EK-FAC otherwise, each only where its
        memory fits; :attr:`choice` says what and why.
    damping : float, default :data:`mlu.unlearn.DEFAULT_DAMPING`
        δ added to the curvature (which includes λI).
    params : {"all", "last"}
        Parameters that change.
    matrix : {"ggn", "hessian"}
        For ``curvature="dense"``: the GGN or the exact Hessian (eigh with a pseudo-inverse
        where H + δI is indefinite). The other representations are GGN forms.

    Attributes
    ----------
    model : mlu.MLP
        The current model (a new object after every request).
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
            self.removed: list[np.ndarray] = []
            self._alive = np.ones(X.shape[0], dtype=bool)
        else:
            self.__dict__.update(_state)
        self._check_rows = np.sort(np.random.default_rng(0).permutation(X.shape[0])[:CHECK_ROWS])
        self._check_X = scaled(
            model,
            np.ascontiguousarray(
                X[self._check_rows].compute() if _dask.is_dask(X) else X[self._check_rows],
                dtype=np.float64,
            ),
        )
        self._check_y = yk[self._check_rows]
        # (Σ loss, Σ ∇loss) of the current model on the retained check rows: the next request's
        # L_R before its update comes from these minus its own rows, saving a pass per request
        self._check_sums: tuple[float, np.ndarray] | None = None

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
        before = np.unique(self._yk[self._alive])
        after = np.unique(self._yk[alive])
        lost = np.setdiff1d(before, after)
        if len(lost):
            raise ValueError(
                f"the request would remove the last sample of class "
                f"{self.model.classes_[lost[0]]!r}: a class would be left empty"
            )
        return arr.astype(np.int64)

    def _subsample_objective(self, alive: np.ndarray):
        """θ ↦ (L_R(θ), ∇L_R(θ)) on the retained rows of the fixed check subsample."""
        keep = alive[self._check_rows]
        X, y = np.ascontiguousarray(self._check_X[keep]), self._check_y[keep]
        sizes, act, l2 = list(self.model.sizes_), _act(self.model), float(self.model.l2)

        def objective_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            g, mean_loss = _core.gradient(theta, sizes, act, X, y, l2)  # g includes λθ
            return float(mean_loss + 0.5 * l2 * theta @ theta), g

        return objective_and_grad, int(keep.sum())

    def _subsample_before(self, alive: np.ndarray, theta: np.ndarray):
        """(L_R(θ), ∇L_R(θ)) on the check rows retained in ``alive``, from the stored sums of
        the current model minus the rows this request removes; None when not stored."""
        count = int(alive[self._check_rows].sum())
        if self._check_sums is None or count == 0:
            return None
        loss_sum, grad_sum = self._check_sums
        gone = self._alive[self._check_rows] & ~alive[self._check_rows]
        if gone.any():
            g, mean_loss = _core.gradient(
                theta,
                list(self.model.sizes_),
                _act(self.model),
                np.ascontiguousarray(self._check_X[gone]),
                self._check_y[gone],
                0.0,
            )
            loss_sum, grad_sum = loss_sum - mean_loss * gone.sum(), grad_sum - g * gone.sum()
        l2 = float(self.model.l2)
        return (
            float(loss_sum / count + 0.5 * l2 * theta @ theta),
            grad_sum / count + l2 * theta,
        )

    def _sums_at(self, theta, check, seen, before, count):
        """(Σ loss, Σ ∇loss) over ``count`` check rows at the accepted θ, from what the check
        evaluated (None when it is not among them)."""
        l2 = float(self.model.l2)
        found = [(v, g) for t, v, g in seen if np.array_equal(t, theta)]
        if not found and check.step == 0.0:
            found = [before] if before is not None else [(v, g) for _, v, g in seen[:1]]
        if not found or count == 0:
            return None
        value, grad = found[-1]
        return (value - 0.5 * l2 * theta @ theta) * count, (grad - l2 * theta) * count

    def forget(
        self, indices, method: str = "newton", *, safeguard: bool = True
    ) -> UnlearningResult:
        """Remove the samples ``indices`` (into the data the Unlearner was built on).

        Parameters
        ----------
        indices : array-like of int, shape (m,)
            Not empty, no duplicates, none removed before; the request may not leave the data
            or a class empty.
        method : {"newton", "influence"}
            See the module docs: ``"newton"`` recomputes from θ̂ with everything removed so far
            (requests are additive); ``"influence"`` takes a first-order step from the current
            model.
        safeguard : bool, default True
            Check the update against the retained objective L_R on a fixed seeded subsample of
            R (at most :data:`CHECK_ROWS` rows) and shorten it by a line search where it would
            raise L_R (:func:`mlu._safeguard.checked_update`; an UpdateShortenedWarning says
            so). A shortened request is no longer additive (F1 then F2 ≠ F1 ∪ F2). False:
            the plain formula.

        Returns
        -------
        UnlearningResult
            ``.model`` is a new MLP (also stored as :attr:`model`; earlier ones untouched).

        Raises
        ------
        ValueError, TypeError
            A bad request; the Unlearner is left unchanged.
        """
        start = time.perf_counter()
        check_choice(method, "method", METHODS)
        rows = self._check_request(indices)
        # small NumPy products between core calls: threaded BLAS would slow the core (_threads)
        with serial_blas():
            return self._forget(rows, method, safeguard, start)

    def _forget(
        self, rows: np.ndarray, method: str, safeguard: bool, start: float
    ) -> UnlearningResult:
        """The request ``rows`` (checked by :meth:`_check_request`); see :meth:`forget`."""
        problem, curv = self._problem, self._curv
        g_F = problem.gradient_sum(rows)
        new_curv = curv.downdated(rows)
        notes = list(new_curv.notes)
        theta_before = self.model.theta_
        if method == "newton":
            m = new_curv.m
            b = (self._grad_sum - self._removed_grad - g_F) / m + problem.l2 * problem.theta
            image = (
                new_curv.retained_gradient_image()
                if isinstance(new_curv, WoodburyCurvature)
                else None
            )
            x = new_curv.solve(b, BV=image)
            theta = self._theta_hat.copy()
            theta[self._where] = problem.theta - x
            used = new_curv
        else:
            b = g_F
            x = curv.solve(b) / curv.m
            theta = theta_before.copy()
            theta[self._where] += x
            used = curv
        residual = (
            used.residual(x if method == "newton" else x * curv.m, b)
            if hasattr(used, "residual")
            else None
        )
        alive = self._alive.copy()
        alive[rows] = False
        # Safeguard (mlu._safeguard): L_R must not rise along the update. Checked on a fixed
        # seeded subsample of R (at most CHECK_ROWS rows): a full pass per request would make
        # its cost grow with n.
        checks: tuple[UpdateCheck, ...] = ()
        check_sums = None
        if safeguard:
            objective, rows_checked = self._subsample_objective(alive)
            seen: list[tuple[np.ndarray, float, np.ndarray]] = []

            def remembered(t: np.ndarray) -> tuple[float, np.ndarray]:
                value, grad = objective(t)
                seen.append((t.copy(), value, grad))
                return value, grad

            before = self._subsample_before(alive, theta_before)
            theta, check = checked_update(
                theta_before, theta - theta_before, remembered, before=before
            )
            check_sums = self._sums_at(theta, check, seen, before, rows_checked)
            checks = (check,)
            notes.append(
                f"safeguard on a fixed subsample of {rows_checked} retained rows: "
                f"{check.describe()}"
            )
            if check.shortened and check.significant:
                msg = f"Unlearner.forget: {check.describe()}"
                warnings.warn(msg, UpdateShortenedWarning, stacklevel=3)  # the caller of forget
        notes.insert(0, f"curvature {self.choice}")
        new = copy.deepcopy(self._base_model)
        new.theta_ = theta
        # commit: everything above left self unchanged
        self._curv = new_curv
        self._removed_grad = self._removed_grad + g_F
        self._alive = alive
        self._check_sums = check_sums
        self.removed = self.removed + [rows]
        self.model = new
        return UnlearningResult(
            model=new,
            method=method,
            solver=getattr(used, "solver", used.kind),
            params=self.params,
            curvature=used.matrix,
            damping=self.damping,
            iterations=None,
            residual=residual,
            min_eigenvalue=None,
            negative_curvature=getattr(used, "solver", "") == "eigh",
            checks=checks,
            n_forget=len(rows),
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
        # Any: numpy's stub of savez(**arrays) would have "allow_pickle" be a bool.
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
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

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
        return self

    def __repr__(self) -> str:
        return (
            f"Unlearner(curvature={self.curvature!r}, params={self.params!r}, "
            f"damping={self.damping!r}, n={self._X.shape[0]}, retained={self.n_retained}, "
            f"requests={len(self.removed)})"
        )


_ = Curvature  # re-exported type for annotations of users
