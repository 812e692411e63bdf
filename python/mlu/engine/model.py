"""The multilayer perceptron: a scikit-learn classifier whose math runs in the C++ core.

Parameters follow docs/design.md ("Model and parameter layout"): layers ``(W, b)`` with ``W``
of shape ``(out, in)`` as in PyTorch's ``Linear``; the flat vector ``θ`` is ``W1``
(row-major), ``b1``, ``W2``, ``b2``, … The objective is
``(1/n) Σ_i ℓ(f(x_i; θ), y_i) + (l2/2)‖θ‖²`` with softmax cross-entropy ℓ.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, cast

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_X_y

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # older scikit-learn: the same check as a method

    def validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


from .. import _core
from .._optional import progress_bar
from ..exceptions import UnscaledFeaturesWarning
from . import _dask
from ._npz import load_model, save_model
from ._problem import checked_Xy, core_args, core_problem, scaled
from ._torch import torch_sequential
from ._validation import (
    CURVATURE_CHOICES,
    activation_spec,
    as_features,
    as_labels,
    as_real_array,
    as_vector,
    check_choice,
    check_fits,
    check_hyperparams,
    check_matrix_fits,
    encode_labels,
    rows_that_fit,
)

Layer = tuple[np.ndarray, np.ndarray]

SCALE_CHOICES = (None, "standard", "minmax")
#: fit warns (scale=None) when a feature's root mean square exceeds this: pixel values in 0..255,
#: raw counts or amounts train poorly with the default learning rate (measured: 0..255 pixels
#: gave 50% accuracy on Fashion-MNIST 0 vs 1, the same pixels / 255 gave 99%).
UNSCALED_RMS = 10.0


@dataclass(frozen=True)
class TrainingTrace:
    """Per-sample training dynamics recorded after every epoch (``MLP(track=True)``).

    Attributes
    ----------
    loss : ndarray, shape (epochs, n)
        Cross-entropy of each training sample at the end of each epoch.
    margin : ndarray, shape (epochs, n)
        Logit of the given label minus the largest other logit (negative = misclassified).
    theta : ndarray, shape (p,), or None
        The parameters at the end of the recorded training: the record describes a model only
        while its parameters are these (detectors check it; None skips the check).
    """

    loss: np.ndarray
    margin: np.ndarray
    theta: np.ndarray | None = None

    def describes(self, theta: np.ndarray) -> bool:
        """Whether this record was made by training that ended at ``theta``."""
        return self.theta is None or (
            self.theta.shape == theta.shape and np.array_equal(self.theta, theta)
        )


class HessianOperator:
    """``v ↦ (H + l2·I) v`` on a fixed data set, with the forward pass cached in the core.

    Build it with :meth:`MLP.hessian_operator`; reuse it for many products (a CG solve).
    """

    def __init__(self, core_op, params: str, curvature: str):
        self._op = core_op
        self.params = params
        self.curvature = curvature

    @property
    def size(self) -> int:
        """Number of parameters p the operator acts on."""
        return int(self._op.size)

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """Return ``H v`` for v of shape (p,)."""
        return self._op.matvec(as_vector(v, self.size))

    def cg(
        self,
        b: np.ndarray,
        damping: float = 0.0,
        tol: float = 1e-6,
        maxiter: int | None = None,
        true_residual: bool = True,
    ):
        """Solve ``(H + damping·I) x = b`` by conjugate gradients.

        Returns a dict with ``x`` (p,), ``iterations``, ``relative_residual`` (the true residual
        of the returned x, from one more product; with ``true_residual=False`` the recursively
        updated one, which a truncated solve of a few products reports instead), ``converged``
        and ``negative_curvature`` (a direction with ``dᵀ(H + δI)d ≤ 0`` was met: H + δI is not
        positive definite; raise damping or use GGN).
        """
        maxiter = 10 * self.size if maxiter is None else int(maxiter)
        b = as_vector(b, self.size, "b")
        return self._op.cg(b, float(damping), float(tol), maxiter, bool(true_residual))


def _num_params(sizes: Sequence[int]) -> int:
    """p of layer sizes (d, h1, ..., k), in Python integers (no overflow)."""
    return sum((int(a) + 1) * int(b) for a, b in zip(sizes[:-1], sizes[1:]))


def _pass_bytes_per_row(sizes: Sequence[int]) -> float:
    """Bytes per sample of a chunked pass in the core: activations, errors, a gradient row."""
    return 3.0 * 8.0 * float(sum(sizes))


def _check_model_fits(sizes: Sequence[int], what: str) -> int:
    """p of ``sizes``, after checking that the model's parameters fit the memory budget.

    Training holds theta, its velocity and the copies the core returns (about six p-vectors).
    """
    p = _num_params(sizes)
    check_fits(
        6.0 * 8.0 * p,
        f"{what}: a model with layer sizes {tuple(sizes)} (p = {p:,} parameters)",
        "Use smaller hidden layers.",
    )
    return p


def _torch_default_init(sizes: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """PyTorch's ``nn.Linear`` default: W and b uniform in ±1/sqrt(fan_in)."""
    parts = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        parts.append(rng.uniform(-bound, bound, size=fan_out * fan_in))
        parts.append(rng.uniform(-bound, bound, size=fan_out))
    return np.concatenate(parts)


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _dask_twin(method: _Method) -> _Method:
    """Send ``method(self, X, y, ...)`` to the function of the same name in
    :mod:`mlu.engine._dask` when X or y is a dask array (docs/design.md, "Dask inputs"): the
    one place where the estimator decides between its NumPy path and the chunks of a cluster."""
    twin = getattr(_dask, method.__name__)

    @functools.wraps(method)
    def dispatch(self, X, y, *args, **kwargs):
        if _dask.is_dask(X, y):
            return twin(self, X, y, *args, **kwargs)
        return method(self, X, y, *args, **kwargs)

    return cast(_Method, dispatch)


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0])


class MLP(ClassifierMixin, BaseEstimator):
    """Multilayer perceptron classifier trained by minibatch SGD with momentum.

    The defaults are the paper's training setup (hidden 50, ReLU, SGD lr 0.01, momentum 0.9,
    batch 32, 20 epochs). Sizes and classes are inferred from the data in :meth:`fit`.

    All parameters are keyword-only (``MLP(hidden=(50,))``), as in scikit-learn.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers; ``()`` gives multinomial logistic regression.
    activation : str or tuple of str
        Hidden-layer activation, ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"identity"``: one
        for every hidden layer, or one per hidden layer from the input up (``("tanh", "relu")``,
        or the same as ``"tanh,relu"``).
    l2 : float
        L2 coefficient λ of the objective ``mean loss + (λ/2)‖θ‖²`` (all parameters).
    epochs, lr, momentum, batch_size : training settings (PyTorch-style momentum).
    seed : int
        Seeds the initialisation and the per-epoch shuffling: fits are bit-for-bit repeatable.
    track : bool
        Record per-sample loss and margin after every epoch in ``trace_`` (one forward pass
        per epoch); needed by the ``"aum"`` and ``"early_loss"`` detectors.
    warm_start : bool
        Continue from the current parameters instead of re-initialising (fine-tuning).
    verbose : bool
        Show a progress bar over epochs.
    scale : {None, "standard", "minmax"}
        A fixed input transform ``x ↦ (x − offset_) ⊙ factor_`` learnt in :meth:`fit` (mean and
        1/std, or min and 1/(max − min); constant features keep factor 1) and applied by every
        method (prediction, losses, derivatives, detection, unlearning) before the network.
        The parameters θ and all derivatives are those of the network on transformed inputs,
        so unlearning is unchanged. ``None`` (default) uses X as given and warns
        (:class:`UnscaledFeaturesWarning`) when features look unscaled; scaling inside the
        model or ``sklearn.pipeline.make_pipeline(StandardScaler(), mlu.MLP())`` fixes it
        (the model then sees only transformed data, so pass the transformed X to
        ``mlu.detect``/``mlu.unlearn``).

    Attributes
    ----------
    classes_ : ndarray, shape (k,)
    n_features_in_ : int
    sizes_ : tuple of int, (d, *hidden, k)
    theta_ : ndarray, shape (p,)   flat parameters (use :attr:`params` / :attr:`layers`)
    loss_curve_ : list of float    mean minibatch loss of every epoch
    fit_time_ : float or None      wall seconds of the training epochs (summed over
                                   ``partial_fit`` calls; the ``track`` passes excluded): what
                                   an unlearning's cost is stated against
                                   (:attr:`mlu.unlearning.unlearn.UnlearningResult.cost_fraction`)
    trace_ : TrainingTrace or None
    scale_offset_, scale_factor_ : ndarray, shape (d,), or None   the input transform (scale)
    """

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (50,),
        activation: str | tuple[str, ...] = "relu",
        l2: float = 0.0,
        epochs: int = 20,
        lr: float = 0.01,
        momentum: float = 0.9,
        batch_size: int = 32,
        seed: int = 0,
        track: bool = False,
        warm_start: bool = False,
        verbose: bool = False,
        scale: str | None = None,
    ):
        self.hidden = hidden
        self.activation = activation
        self.l2 = l2
        self.epochs = epochs
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.seed = seed
        self.track = track
        self.warm_start = warm_start
        self.verbose = verbose
        self.scale = scale

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_layers(
        cls,
        layers: Sequence[Layer],
        activation: str | Sequence[str] = "relu",
        classes=None,
        **params,
    ) -> MLP:
        """Build a fitted model from given layers ``[(W1, b1), …]``, W shaped (out, in).

        ``classes`` defaults to ``0..k-1``; other keyword arguments are hyper-parameters.
        """
        if len(layers) == 0:
            raise ValueError("layers is empty: need at least one (W, b) pair")
        sizes = [int(np.shape(layers[0][0])[1])] if np.ndim(layers[0][0]) == 2 else None
        if sizes is None:
            raise ValueError("each W must be 2-D (out, in)")
        parts = []
        for i, (W, b) in enumerate(layers):
            W = as_real_array(W, f"layer {i} W").astype(np.float64)
            b = as_real_array(b, f"layer {i} b").astype(np.float64)
            if W.ndim != 2 or b.shape != (W.shape[0],):
                raise ValueError(
                    f"layer {i}: W must be (out, in) and b (out,), got {W.shape}, {b.shape}"
                )
            if W.shape[1] != sizes[-1]:
                raise ValueError(
                    f"layer {i}: W has {W.shape[1]} inputs, previous layer gives {sizes[-1]}"
                )
            sizes.append(W.shape[0])
            parts += [W.ravel(), b]
        params = {"hidden": tuple(sizes[1:-1]), "activation": activation, **params}
        return cls.from_params(tuple(sizes), np.concatenate(parts), classes=classes, **params)

    @classmethod
    def from_params(cls, sizes: Sequence[int], params, classes=None, **hyperparams) -> MLP:
        """Build a fitted model from layer widths ``(d, *hidden, k)`` and a flat θ of shape (p,).

        θ is laid out as :attr:`params` (W1 row-major (out, in), b1, W2, b2, …); ``classes``
        defaults to ``0..k-1``; the keyword arguments are hyper-parameters.
        """
        model = cls(**hyperparams)
        model.set_params(**check_hyperparams(model.get_params(deep=False)))
        model._set_architecture(tuple(int(s) for s in sizes), classes)
        model.params = params
        return model

    def _set_architecture(self, sizes: tuple[int, ...], classes) -> None:
        activation_spec(self.activation, len(sizes) - 2)
        if sizes[-1] < 2:
            raise ValueError(f"a softmax classifier needs k >= 2 outputs, got {sizes[-1]}")
        self.sizes_ = tuple(int(s) for s in sizes)
        self.n_features_in_ = self.sizes_[0]
        classes = np.arange(sizes[-1]) if classes is None else np.asarray(classes)
        if classes.shape != (sizes[-1],) or len(np.unique(classes)) != sizes[-1]:
            raise ValueError(f"classes must be {sizes[-1]} distinct labels, got {classes}")
        self.classes_ = np.sort(classes)
        self.theta_ = np.zeros(_check_model_fits(self.sizes_, "the model"))
        self.scale_offset_: np.ndarray | None = None
        self.scale_factor_: np.ndarray | None = None

    # ------------------------------------------------------------------ parameters
    @property
    def params(self) -> np.ndarray:
        """Flat θ, shape (p,): a copy (assign to set)."""
        check_is_fitted(self, "theta_")
        return self.theta_.copy()

    @params.setter
    def params(self, theta) -> None:
        check_is_fitted(self, "theta_")
        self.theta_ = as_vector(theta, self.theta_.shape[0], "params").copy()

    @property
    def layers(self) -> list[Layer]:
        """``[(W1, b1), …]`` with W of shape (out, in): copies."""
        check_is_fitted(self, "theta_")
        out, pos = [], 0
        for fan_in, fan_out in zip(self.sizes_[:-1], self.sizes_[1:]):
            W = self.theta_[pos : pos + fan_out * fan_in].reshape(fan_out, fan_in).copy()
            pos += fan_out * fan_in
            out.append((W, self.theta_[pos : pos + fan_out].copy()))
            pos += fan_out
        return out

    @property
    def n_params(self) -> int:
        check_is_fitted(self, "theta_")
        return int(self.theta_.shape[0])

    def last_layer_slice(self) -> slice:
        """Where (W_L, b_L) sit in θ."""
        d, k = self.sizes_[-2], self.sizes_[-1]
        return slice(self.n_params - k * d - k, self.n_params)

    # ------------------------------------------------------------------ interop and files
    def to_torch(self, dtype=None):
        """This model as a ``torch.nn.Sequential`` (see :func:`mlu.engine.interop.to_torch`)."""
        check_is_fitted(self, "theta_")
        return torch_sequential(self, dtype)

    def save(self, path) -> None:
        """Write the model to a portable ``.npz`` file (the format of :mod:`mlu.engine.io`)."""
        save_model(self, path)

    @classmethod
    def load(cls, path) -> MLP:
        """Read a model written by :meth:`save` (no pickle is ever loaded)."""
        return load_model(path, cls, TrainingTrace)

    # ------------------------------------------------------------------ training
    def fit(self, X, y, classes=None) -> MLP:
        """Train on X (n, d) and labels y (n,); returns self.

        ``classes`` fixes the label set (default: the labels seen in y), so that models trained
        on subsets share one output layout.

        X may be a ``dask.array`` chunked by rows (y then a NumPy or dask label vector), or a
        dask DataFrame with y naming its label column: minibatches are then streamed one row
        chunk at a time (see :func:`mlu.engine._dask.sgd_epoch` for the order; a single chunk gives
        bit for bit the NumPy fit), so X never has to fit in memory.

        The model changes only on success: if fit raises (bad input or hyper-parameters,
        divergence, MemoryError, KeyboardInterrupt), every fitted attribute is as it was before
        the call.
        """
        return self._train(X, y, classes, None, resume=False)

    def partial_fit(self, X, y, classes=None) -> MLP:
        """One more training epoch over X (n, d) and y (n,), continuing where training stopped.

        The parameters, the momentum buffer ``velocity_`` and the epoch count ``n_iter_``
        carry over, and call t shuffles with the seed of epoch t: ``E`` calls on the same data
        equal ``fit`` with ``epochs=E`` bit for bit. The first call on an unfitted model
        initialises it as ``fit`` does; later calls take the labels as one of ``classes_``
        (give ``classes`` on the first call when its y lacks some). X may be a dask array.
        """
        return self._train(X, y, classes, 1, resume=True)

    def _train(self, X, y, classes, n_epochs: int | None, resume: bool) -> MLP:
        """fit (``n_epochs=None``: the ``epochs`` hyper-parameter) or partial_fit; the model
        changes only on success."""
        before = dict(self.__dict__)
        try:
            return self._train_unguarded(X, y, classes, n_epochs, resume)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _train_unguarded(self, X, y, classes, n_epochs: int | None, resume: bool) -> MLP:
        hyper = check_hyperparams(self.get_params(deep=False))
        n_epochs = hyper["epochs"] if n_epochs is None else n_epochs
        streamed = _dask.is_dask(X, y)  # minibatches streamed one row chunk at a time
        resume = resume and hasattr(self, "theta_")
        if streamed:
            X, y = _dask.training_data(X, y, self.n_features_in_ if resume else None)
        else:
            X = self._check_X(X, reset=not resume)  # partial_fit: the features of the first fit
            X, y = check_X_y(X, y, dtype=np.float64, order="C", estimator=self)  # y=None, column y
        check_classification_targets(y)  # a continuous or multilabel y
        y = as_labels(y, X.shape[0])
        if classes is None:
            classes = self.classes_ if resume else np.unique(y)
        classes = np.unique(np.asarray(classes))
        if len(classes) < 2:
            raise ValueError(
                f"need at least two classes to train a classifier, got {len(classes)} class: "
                f"{classes}"
            )
        if streamed and self.track:
            raise ValueError("track=True is not supported when X is a dask array")
        hidden = hyper["hidden"]
        sizes = (X.shape[1], *hidden, len(classes))
        if resume and self.sizes_ != sizes:
            raise ValueError(
                f"partial_fit: the data give layer sizes {sizes}, the model has {self.sizes_}"
            )
        p = _check_model_fits(sizes, "fit")
        check_fits(
            6.0 * 8.0 * p
            + min(int(hyper["batch_size"]), X.shape[0])
            * (_core.get_num_threads() * 8.0 * X.shape[1] + _pass_bytes_per_row(sizes))
            + (X.shape[0] * _pass_bytes_per_row(sizes) if self.track else 0.0),
            f"fit of a model with layer sizes {sizes} (p = {p:,}) on n = {X.shape[0]} samples",
            "Use smaller hidden layers" + (" or track=False." if self.track else "."),
        )
        warm = (self.warm_start or resume) and hasattr(self, "theta_") and self.sizes_ == sizes
        if warm and not np.array_equal(self.classes_, classes):
            raise ValueError("warm_start: the classes differ from those the model was trained on")
        theta = self.theta_.copy() if warm else None
        velocity = getattr(self, "velocity_", None) if warm and resume else None
        velocity = None if velocity is None else velocity.copy()
        first = int(getattr(self, "n_iter_", 0)) if resume else 0
        curve = list(getattr(self, "loss_curve_", [])) if resume else []
        fit_time = (getattr(self, "fit_time_", None) or 0.0) if resume else 0.0
        previous = getattr(self, "trace_", None) if resume else None
        yk = encode_labels(y, classes)  # before the model changes: a bad label leaves it as it was
        if warm:
            scaler = (self.scale_offset_, self.scale_factor_)
        else:
            scaler = (
                _dask.fit_scale(X, self.scale, SCALE_CHOICES, UNSCALED_RMS)
                if streamed
                else _fit_scale(X, self.scale)
            )
        self._set_architecture(sizes, classes)
        self.scale_offset_, self.scale_factor_ = scaler
        X = _dask.scaled(self, X) if streamed else scaled(self, X)
        if theta is None:
            theta = _torch_default_init(sizes, np.random.default_rng(self.seed))
        if velocity is None:
            velocity = np.zeros_like(theta)
        self.loss_curve_ = curve
        trace_loss, trace_margin = [], []
        if previous is not None and previous.loss.shape[1] == X.shape[0]:
            trace_loss, trace_margin = list(previous.loss), list(previous.margin)
        epochs = range(first, first + n_epochs)
        if self.verbose:
            bar = progress_bar(iterable=epochs, desc="training", unit="epoch")
            if bar is not None:  # tqdm is optional: without it, no bar
                epochs = bar
        for epoch in epochs:
            tic = time.perf_counter()
            theta, velocity, loss = (_dask.sgd_epoch if streamed else _core.sgd_epoch)(
                theta,
                velocity,
                list(sizes),
                self._activation_spec(),
                X,
                yk,
                _epoch_seed(hyper["seed"], epoch),
                hyper["lr"],
                hyper["momentum"],
                hyper["batch_size"],
                hyper["l2"],
            )
            fit_time += time.perf_counter() - tic
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch} (loss {loss}); lower lr"
                )
            self.loss_curve_.append(float(loss))
            if self.track:
                Z = _core.logits(theta, list(sizes), self._activation_spec(), X)
                trace_loss.append(_losses_from_logits(Z, yk))
                trace_margin.append(_margins_from_logits(Z, yk))
        self.theta_ = theta
        self.velocity_ = velocity
        self.n_iter_ = first + n_epochs
        self.fit_time_ = fit_time
        self.trace_ = (
            TrainingTrace(
                np.array(trace_loss).reshape(-1, X.shape[0]),
                np.array(trace_margin).reshape(-1, X.shape[0]),
                theta.copy(),
            )
            if self.track
            else None
        )
        return self

    # ------------------------------------------------------------------ prediction
    def _checked_Xy(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "theta_")
        return checked_Xy(self, X, y)

    def _activation_spec(self) -> str:
        """The activation(s) as the core takes them: ``"relu"`` or ``"tanh,relu"``."""
        return activation_spec(self.activation, len(self.sizes_) - 2)

    def _check_X(self, X, reset: bool) -> np.ndarray:
        """X for fit (reset=True) and for the scikit-learn prediction methods.

        mlu's messages (as_features) where it has one; scikit-learn's where its tools look for
        a specific one: sparse input, 1-D X, complex data in fit, zero features, a feature
        count or feature names that differ from fit.
        """
        if not reset:
            check_is_fitted(self, "theta_")
        if scipy.sparse.issparse(X):
            validate_data(self, X, reset=reset)  # raises scikit-learn's "sparse data" TypeError
        arr = np.asarray(X)
        if arr.ndim == 1:
            raise ValueError(
                f"X must be 2-D (n_samples, n_features), got shape {arr.shape}. Reshape your "
                "data: X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for one sample"
            )
        if reset and np.iscomplexobj(arr):
            raise ValueError(f"Complex data not supported: X must be real, got {arr.dtype}")
        # numbers stored as objects (e.g. from pandas) are fine, strings are not: the one rule
        arr = as_real_array(arr, "X")
        as_features(arr)  # dtype, shape, emptiness, NaN/inf
        # feature count and names (recorded in fit), from the caller's X
        X = validate_data(self, X, reset=reset, dtype=np.float64, order="C")
        return as_features(X)

    def _chunks(self, n: int, what: str, out_per_row: float = 0.0) -> list[slice]:
        """Row slices of [0, n) whose core pass fits the memory budget (one slice if n fits)."""
        per_row = _pass_bytes_per_row(self.sizes_) + out_per_row
        rows = rows_that_fit(n, per_row, 2.0 * 8.0 * self.theta_.shape[0], what)
        return [slice(s, min(n, s + rows)) for s in range(0, n, rows)]

    def _logits(self, X: np.ndarray) -> np.ndarray:
        parts = [
            _core.logits(*core_args(self), X[c])
            for c in self._chunks(X.shape[0], "logits", 8.0 * self.sizes_[-1])
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def logits(self, X) -> np.ndarray:
        """Logits (the network's outputs), shape (n, k), columns in the order of ``classes_``.

        Large inputs are processed in chunks of rows that fit the memory budget.
        """
        X = self._check_X(X, reset=False)
        return self._logits(scaled(self, X))

    def decision_function(self, X) -> np.ndarray:
        """Confidence scores in scikit-learn's convention.

        Shape (n, k), the logits, for k > 2 classes; shape (n,), ``z_1 - z_0`` (the log-odds of
        ``classes_[1]``, positive means ``classes_[1]``), for two classes, as scikit-learn's
        scorers and meta-estimators expect. :meth:`logits` gives (n, k) in every case.
        """
        Z = self.logits(X)
        return Z[:, 1] - Z[:, 0] if Z.shape[1] == 2 else Z

    def predict_proba(self, X) -> np.ndarray:
        """Softmax probabilities, shape (n, k), columns in the order of ``classes_``."""
        Z = self.logits(X)
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        return P

    def predict(self, X) -> np.ndarray:
        """Predicted labels, shape (n,)."""
        Z = self.logits(X)
        return self.classes_[np.argmax(Z, axis=1)]

    # ------------------------------------------------------------------ losses and derivatives
    @_dask_twin
    def losses(self, X, y) -> np.ndarray:
        """Per-sample cross-entropy ℓ(f(x_i; θ), y_i), shape (n,)."""
        X, yk = self._checked_Xy(X, y)
        X = scaled(self, X)
        parts = [
            _core.losses(*core_args(self), X[c], yk[c])
            for c in self._chunks(X.shape[0], "losses", 8.0)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @_dask_twin
    def margins(self, X, y) -> np.ndarray:
        """Logit of the given label minus the largest other logit, shape (n,)."""
        X, yk = self._checked_Xy(X, y)
        return _margins_from_logits(self._logits(scaled(self, X)), yk)

    @_dask_twin
    def objective(self, X, y) -> float:
        """Mean loss plus (l2/2)‖θ‖²."""
        return float(self.losses(X, y).mean() + 0.5 * self.l2 * self.theta_ @ self.theta_)

    @_dask_twin
    def gradient(self, X, y, params: str = "all") -> np.ndarray:
        """Gradient of the objective (mean loss gradient + l2·θ), shape (p,) or (p_last,)."""
        g, _ = _core.gradient(*core_problem(self, X, y, params), float(self.l2))
        return g

    @_dask_twin
    def gradients(self, X, y, params: str = "all") -> np.ndarray:
        """Per-sample gradients of ℓ_i (without the l2 term), shape (n, p) or (n, p_last)."""
        theta, sizes, act, X, yk = core_problem(self, X, y, params)
        n, p = X.shape[0], theta.shape[0]
        check_fits(
            8.0 * n * p + n * _pass_bytes_per_row(sizes) / max(1, n // 256),
            f"the n x p per-sample gradients (n = {n:,}, p = {p:,}, float64)",
            "Use params='last' or fewer samples per call.",
        )
        return _core.per_sample_gradients(theta, sizes, act, X, yk)

    @_dask_twin
    def hessian_operator(
        self, X, y, params: str = "all", curvature: str = "hessian"
    ) -> HessianOperator | _dask.DaskHessianOperator:
        """The operator v ↦ (H + l2·I) v over (X, y), forward pass cached (for many products)."""
        check_choice(curvature, "curvature", CURVATURE_CHOICES)
        theta, sizes, act, X, yk = core_problem(self, X, y, params)
        # The operator caches the forward pass and the errors of all n samples; a CG solve
        # adds a handful of p-vectors.
        check_fits(
            2.0 * X.shape[0] * _pass_bytes_per_row(sizes) + 8.0 * 8.0 * theta.shape[0],
            f"the Hessian-vector-product operator (n = {X.shape[0]:,}, layer sizes {tuple(sizes)})",
            "Use fewer samples or params='last'.",
        )
        op = _core.HessianOperator(theta, sizes, act, X, yk, float(self.l2), curvature)
        return HessianOperator(op, params, curvature)

    @_dask_twin
    def hvp(self, X, y, v, params: str = "all", curvature: str = "hessian") -> np.ndarray:
        """Hessian-vector product (H + l2·I) v, shape (p,) (or (p_last,) for params="last").

        ``curvature="hessian"`` is the exact Hessian (R-operator, with the cross-layer terms of
        ReLU nets); ``"ggn"`` the generalized Gauss-Newton matrix.
        """
        return self.hessian_operator(X, y, params, curvature).matvec(v)

    @_dask_twin
    def hessian(self, X, y, params: str = "all", curvature: str = "hessian") -> np.ndarray:
        """The symmetric matrix H + l2·I of the objective over (X, y), shape (p, p).

        Raises HessianTooLargeError (a MemoryError) when p x p float64 would not fit in memory.
        """
        check_choice(curvature, "curvature", CURVATURE_CHOICES)
        theta, sizes, act, X, yk = core_problem(self, X, y, params)
        check_matrix_fits(theta.shape[0], copies=1.2)
        return _core.hessian(theta, sizes, act, X, yk, float(self.l2), curvature)


def _fit_scale(X: np.ndarray, scale) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(offset, factor) of the input transform ``scale`` fitted on X, or warn if X looks raw."""
    if scale not in SCALE_CHOICES:
        raise ValueError(f"scale must be one of {SCALE_CHOICES}, got {scale!r}")
    if scale is None:
        rms = np.sqrt(np.mean(X * X, axis=0))
        if rms.max() > UNSCALED_RMS:
            j = int(np.argmax(rms))
            warnings.warn(
                f"features look unscaled: feature {j} has root mean square {rms[j]:.3g} "
                f"(values in [{X[:, j].min():.3g}, {X[:, j].max():.3g}]); SGD with the default "
                "learning rate may not train. Use mlu.MLP(scale='standard') (or 'minmax'), "
                "or a scikit-learn Pipeline with StandardScaler",
                UnscaledFeaturesWarning,
                stacklevel=3,
            )
        return None, None
    if scale == "standard":
        offset, spread = X.mean(axis=0), X.std(axis=0)
    else:
        offset, spread = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
    factor = np.ones_like(spread)
    nonzero = spread > 0  # a constant feature stays as it is (shifted to 0)
    factor[nonzero] = 1.0 / spread[nonzero]
    return offset, factor


def _losses_from_logits(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    zmax = Z.max(axis=1)
    lse = zmax + np.log(np.exp(Z - zmax[:, None]).sum(axis=1))
    return lse - Z[np.arange(len(y)), y]


def _margins_from_logits(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = np.arange(len(y))
    given = Z[rows, y]
    other = Z.copy()
    other[rows, y] = -np.inf
    return given - other.max(axis=1)


def set_num_threads(n: int) -> None:
    """Threads used by the C++ core (default: all cores)."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return int(_core.get_num_threads())
