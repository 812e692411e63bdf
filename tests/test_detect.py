"""Detectors of mislabeled samples: real separation on flipped digits, exact self-influence
against the NumPy reference, the training trace, confident learning, and clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import mlu
from mlu import reference
from mlu.detection.detect import (
    DETECTORS,
    ConfidentLearningResult,
    confident_learning,
    cross_val_proba,
    detect,
    scores_aum,
    scores_early_loss,
    scores_loss,
    scores_self_influence,
    select,
)
from mlu.engine._validation import HessianTooLargeError
from mlu.metrics.detection import detection_report

FLIP_RATE = 0.3


# Tiny models: one core thread avoids oversubscribing a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def noisy_digits():
    """All 10 digits (1347 x 64) with 30% of the training labels flipped, and a tracked model."""
    ds = mlu.datasets.load("digits")
    noisy = mlu.noise.flip_labels(ds.y_train, rate=FLIP_RATE, seed=0)
    model = mlu.MLP(hidden=(16,), track=True, seed=0).fit(ds.X_train, noisy.labels)
    return ds.X_train, noisy.labels, noisy.flipped, model


@pytest.fixture(scope="module")
def small_problem():
    """A small model on 120 samples, for exact comparisons with the NumPy reference."""
    ds = mlu.datasets.load("digits", classes=(0, 1, 2))
    X, y = ds.X_train[:120], ds.y_train[:120]
    noisy = mlu.noise.flip_labels(y, rate=0.2, seed=1)
    model = mlu.MLP(hidden=(6,), l2=1e-3, epochs=15, seed=3).fit(X, noisy.labels)
    return X, noisy.labels, model


# --------------------------------------------------------------------------- detection quality

# Measured ROC-AUC on this fixture: ~0.99 for every detector; a broken one sits near 0.5.
AUC_CASES = [
    ("loss", {}, 0.95),
    ("margin", {}, 0.95),
    ("aum", {}, 0.95),
    ("aum", {"first_epoch": 2, "last_epoch": 10}, 0.95),
    ("early_loss", {}, 0.95),  # default epoch 6 of 20 (~0.986)
    ("early_loss", {"epoch": 3}, 0.85),
    ("self_influence", {}, 0.95),
    ("self_influence", {"solver": "eigh"}, 0.95),
    ("self_influence", {"params": "all", "curvature": "ggn"}, 0.95),
    ("confident_learning", {}, 0.95),
]


def _needs_its_extra(method: str) -> None:
    """Skip (naming it) when the detector's optional dependency is not installed."""
    if method == "confident_learning":
        pytest.importorskip("cleanlab")


@pytest.mark.parametrize(("method", "options", "floor"), AUC_CASES)
def test_detector_finds_flipped_labels(noisy_digits, method, options, floor):
    _needs_its_extra(method)
    X, y, flipped, model = noisy_digits
    scores = detect(model, X, y, method=method, **options)
    assert scores.shape == (X.shape[0],) and scores.dtype == np.float64
    assert np.isfinite(scores).all()
    assert roc_auc_score(flipped, scores) >= floor


def test_top_fraction_is_mostly_flipped(noisy_digits):
    # The paper's protocol: flag the top 10%; here almost all of them are flipped labels.
    X, y, flipped, model = noisy_digits
    scores = detect(model, X, y)
    report = detection_report(scores, select(scores, fraction=0.1), flipped)
    assert report["n_flagged"] == round(0.1 * len(y))
    assert report["precision"] >= 0.95  # measured 1.0
    assert report["recall"] >= 0.3  # at most 0.1 / 0.29 = 0.34 is possible


def test_automatic_selection_on_loss_scores(noisy_digits):
    X, y, flipped, model = noisy_digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # well separated here: no NoiseRateWarning
        mask = select(detect(model, X, y), method="auto")
    assert abs(mask.mean() - flipped.mean()) <= 0.03
    assert detection_report(detect(model, X, y), mask, flipped)["f1"] >= 0.9  # measured 0.93


def test_detect_dispatches_to_the_registered_functions(noisy_digits):
    X, y, _, model = noisy_digits
    assert set(DETECTORS) == {
        "loss",
        "margin",
        "aum",
        "early_loss",
        "self_influence",
        "confident_learning",
    }
    np.testing.assert_array_equal(detect(model, X, y), scores_loss(model, X, y))
    np.testing.assert_array_equal(
        detect(model, X, y, "early_loss", epoch=4), scores_early_loss(model, X, y, epoch=4)
    )


def test_loss_and_margin_match_the_model(noisy_digits):
    X, y, _, model = noisy_digits
    np.testing.assert_array_equal(detect(model, X, y, "loss"), model.losses(X, y))
    np.testing.assert_array_equal(detect(model, X, y, "margin"), -model.margins(X, y))


# --------------------------------------------------------------------------- the training trace


def test_trace_shape_and_last_row_equals_final_losses(noisy_digits):
    X, y, _, model = noisy_digits
    trace = model.trace_
    assert trace.loss.shape == (model.epochs, X.shape[0])
    assert trace.margin.shape == (model.epochs, X.shape[0])
    np.testing.assert_allclose(trace.loss[-1], model.losses(X, y), rtol=0, atol=1e-12)
    np.testing.assert_allclose(trace.margin[-1], model.margins(X, y), rtol=0, atol=1e-12)


def test_early_loss_and_aum_read_the_trace(noisy_digits):
    X, y, _, model = noisy_digits
    trace = model.trace_
    np.testing.assert_array_equal(scores_early_loss(model, X, y, epoch=1), trace.loss[0])
    np.testing.assert_array_equal(scores_early_loss(model, X, y), trace.loss[5])  # 0.3 * 20
    np.testing.assert_allclose(scores_early_loss(model, X, y, epoch=-1), model.losses(X, y))
    np.testing.assert_allclose(scores_aum(model, X, y), -trace.margin.mean(axis=0))
    np.testing.assert_allclose(
        scores_aum(model, X, y, first_epoch=3, last_epoch=5), -trace.margin[2:5].mean(axis=0)
    )
    np.testing.assert_allclose(
        scores_aum(model, X, y, first_epoch=-1), -model.margins(X, y), atol=1e-12
    )


def test_trace_detectors_need_a_tracked_model(noisy_digits):
    X, y, _, _ = noisy_digits
    untracked = mlu.MLP(hidden=(4,), epochs=2).fit(X, y)
    for method in ("aum", "early_loss"):
        with pytest.raises(ValueError, match=r"MLP\(track=True\)"):
            detect(untracked, X, y, method=method)


def test_trace_must_match_the_data(noisy_digits):
    X, y, _, model = noisy_digits
    with pytest.raises(ValueError, match="covers 1347 samples but X has 100"):
        detect(model, X[:100], y[:100], method="aum")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"epoch": 0}, ValueError, r"epoch must be in 1..20"),
        ({"epoch": 21}, ValueError, r"epoch must be in 1..20"),
        ({"epoch": 2.0}, TypeError, "epoch must be an int"),
    ],
)
def test_bad_epoch(noisy_digits, options, error, match):
    X, y, _, model = noisy_digits
    with pytest.raises(error, match=match):
        detect(model, X, y, method="early_loss", **options)


def test_bad_aum_range(noisy_digits):
    X, y, _, model = noisy_digits
    with pytest.raises(ValueError, match="last_epoch .* is before first_epoch"):
        scores_aum(model, X, y, first_epoch=5, last_epoch=2)


# --------------------------------------------------------------------------- self-influence


@pytest.mark.parametrize("params", ["last", "all"])
@pytest.mark.parametrize("solver", ["cholesky", "eigh"])
def test_self_influence_equals_the_reference(small_problem, params, solver):
    X, y, model = small_problem
    damping = 1e-3  # GGN + (l2 + δ)·I is positive definite: eigh keeps every eigenpair
    expected = reference.self_influence(
        model.layers, "relu", X, y, l2=model.l2, damping=damping, curvature="ggn", params=params
    )
    got = scores_self_influence(
        model, X, y, params=params, curvature="ggn", damping=damping, solver=solver
    )
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=0)


@pytest.mark.parametrize("params", ["last", "all"])
def test_self_influence_with_the_exact_hessian_equals_the_reference(small_problem, params):
    X, y, model = small_problem
    H = reference.hessian(model.layers, "relu", X, y, l2=model.l2, params=params)
    # Enough damping to make H + δI positive definite (the exact Hessian may be indefinite).
    damping = max(0.0, -np.linalg.eigvalsh(H).min()) + 1e-2
    expected = reference.self_influence(
        model.layers, "relu", X, y, l2=model.l2, damping=damping, params=params
    )
    got = detect(model, X, y, "self_influence", params=params, damping=damping)
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=0)


def test_self_influence_eigh_drops_negative_curvature(small_problem):
    X, y, model = small_problem
    H = reference.hessian(model.layers, "relu", X, y, l2=model.l2, params="all")
    w, U = np.linalg.eigh(H)
    assert w.min() < 0  # the exact Hessian of this ReLU net is indefinite
    with pytest.raises(mlu.NotPositiveDefiniteError, match="solver='eigh'"):
        scores_self_influence(model, X, y, params="all", damping=0.0)
    G = reference.per_sample_gradients(model.layers, "relu", X, y)
    keep = w > 1e-10 * w.max()
    expected = ((G @ U[:, keep]) ** 2 / w[keep]).sum(axis=1)  # pseudo-inverse on λ > 0
    got = scores_self_influence(model, X, y, params="all", damping=0.0, solver="eigh")
    np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_self_influence_too_large_hessian_propagates(noisy_digits, monkeypatch):
    import mlu.engine._validation

    X, y, _, model = noisy_digits
    monkeypatch.setattr(mlu.engine._validation, "available_memory_bytes", lambda: 1 << 20)
    with pytest.raises(HessianTooLargeError, match="params='last'"):
        detect(model, X, y, "self_influence", params="all")
    assert issubclass(HessianTooLargeError, MemoryError)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"params": "first"}, "params must be one of"),
        ({"curvature": "fisher"}, "curvature must be one of"),
        ({"solver": "cg"}, "solver must be one of"),
        ({"damping": -1.0}, "damping must be a finite number >= 0"),
        ({"damping": float("nan")}, "damping must be a finite number >= 0"),
    ],
)
def test_self_influence_bad_options(small_problem, options, match):
    X, y, model = small_problem
    with pytest.raises(ValueError, match=match):
        scores_self_influence(model, X, y, **options)


# --------------------------------------------------------------------------- confident learning


def test_confident_learning_result(noisy_digits):
    pytest.importorskip("cleanlab")
    X, y, flipped, model = noisy_digits
    result = confident_learning(model, X, y, n_splits=4, seed=1)
    assert isinstance(result, ConfidentLearningResult)
    n, k = X.shape[0], len(model.classes_)
    assert result.scores.shape == (n,) and result.pred_probs.shape == (n, k)
    np.testing.assert_allclose(result.pred_probs.sum(axis=1), 1.0, atol=1e-12)
    assert result.joint.shape == (k, k) and result.confident_joint.shape == (k, k)
    assert result.confident_joint.sum() == pytest.approx(n, abs=k)  # calibrated to n labels
    assert result.joint.sum() == pytest.approx(1.0)
    assert result.label_issues.dtype == bool and result.label_issues.shape == (n,)
    # Measured: 0.295 for a true rate of 0.291; the issues have F1 0.92.
    assert abs(result.noise_rate - flipped.mean()) <= 0.05
    assert detection_report(result.scores, result.label_issues, flipped)["f1"] >= 0.85
    flagged = select(result.scores, noise_rate=result.noise_rate)
    assert flagged.sum() == round(result.noise_rate * n)


def test_cross_val_proba_is_out_of_sample_and_repeatable(noisy_digits):
    X, y, flipped, model = noisy_digits
    P = cross_val_proba(model, X, y, n_splits=3, seed=0)
    np.testing.assert_array_equal(P, cross_val_proba(model, X, y, n_splits=3, seed=0))
    # A model that saw sample i fits its flipped label; the out-of-fold one mostly does not.
    given = P[np.arange(len(y)), np.searchsorted(model.classes_, y)]
    in_sample = model.predict_proba(X)[np.arange(len(y)), np.searchsorted(model.classes_, y)]
    assert given[flipped].mean() < in_sample[flipped].mean()
    assert model.trace_ is not None  # the fitted model itself is untouched


def test_confident_learning_reuses_given_probabilities(noisy_digits):
    pytest.importorskip("cleanlab")
    X, y, _, model = noisy_digits
    P = cross_val_proba(model, X, y, n_splits=3)
    result = confident_learning(model, X, y, pred_probs=P)
    np.testing.assert_array_equal(result.pred_probs, P)
    with pytest.raises(ValueError, match="pred_probs must have shape"):
        confident_learning(model, X, y, pred_probs=P[:, :3])
    with pytest.raises(ValueError, match="sum to 1"):
        confident_learning(model, X, y, pred_probs=2 * P)


def test_cross_val_needs_enough_samples_per_class():
    X = np.vstack([np.zeros((10, 2)), np.ones((2, 2))])
    y = np.array([0] * 10 + [1] * 2)
    model = mlu.MLP(hidden=(2,), epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="lower n_splits"):
        cross_val_proba(model, X, y, n_splits=3)
    with pytest.raises(ValueError, match="n_splits must be an int >= 2"):
        cross_val_proba(model, X, y, n_splits=1)


@pytest.mark.parametrize("method", list(DETECTORS))
def test_string_labels_work(method):
    _needs_its_extra(method)
    ds = mlu.datasets.load("digits", classes=(0, 1))
    noisy = mlu.noise.flip_labels(ds.y_train, rate=0.2, seed=0)
    labels = np.array(["zero", "one"])[noisy.labels]
    model = mlu.MLP(hidden=(4,), track=True).fit(ds.X_train, labels)
    scores = detect(model, ds.X_train, labels, method=method)
    assert roc_auc_score(noisy.flipped, scores) >= 0.9


# --------------------------------------------------------------------------- input handling


@pytest.mark.parametrize("method", list(DETECTORS))
def test_inputs_are_not_modified(small_problem, method):
    _needs_its_extra(method)
    X, y, _ = small_problem
    model = mlu.MLP(hidden=(4,), epochs=3, track=True).fit(X, y)
    X0, y0, theta0 = X.copy(), y.copy(), model.params
    detect(model, X, y, method=method)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(model.params, theta0)


def test_unknown_method(small_problem):
    X, y, model = small_problem
    with pytest.raises(ValueError, match="method must be one of 'loss'"):
        detect(model, X, y, method="entropy")


def test_unfitted_model(small_problem):
    X, y, _ = small_problem
    with pytest.raises(ValueError, match="fitted mlu.MLP"):
        detect(mlu.MLP(), X, y)


def test_bad_data(small_problem):
    X, y, model = small_problem
    with pytest.raises(ValueError, match="not one of the model's classes"):
        detect(model, X, np.full(len(y), 7))
    with pytest.raises(ValueError, match="labels for"):
        detect(model, X, y[:-1])
    with pytest.raises(ValueError, match="features"):
        detect(model, X[:, :10], y)


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def noisy_fashion():
    """The paper's setting on Fashion-MNIST T-shirt vs trouser, 40% of labels flipped."""
    try:
        ds = mlu.datasets.load("fashion-mnist", classes=(0, 1), n_per_class=1000)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST files not installed")
    noisy = mlu.noise.flip_labels(ds.y_train, rate=0.4, seed=0)
    model = mlu.MLP(track=True, seed=0).fit(ds.X_train, noisy.labels)
    return ds.X_train, noisy.labels, noisy.flipped, model


# Measured (seed 0): loss 0.874, aum 0.988, early_loss@1 0.990, self_influence 0.77.
@pytest.mark.parametrize(
    ("method", "options", "floor"),
    [
        ("loss", {}, 0.75),
        ("aum", {}, 0.95),
        ("early_loss", {"epoch": 1}, 0.95),
        ("self_influence", {}, 0.7),
    ],
)
def test_fashion_high_noise(noisy_fashion, method, options, floor):
    X, y, flipped, model = noisy_fashion
    assert roc_auc_score(flipped, detect(model, X, y, method, **options)) >= floor


# ------------------------------------------------------------------ stale training records


def test_trace_detectors_refuse_unlearned_and_changed_models():
    ds = mlu.datasets.load("digits", classes=(0, 1))
    X, y = ds.X_train[:120], ds.y_train[:120]
    model = mlu.MLP(hidden=(5,), epochs=4, track=True).fit(X, y)
    assert detect(model, X, y, method="aum").shape == (120,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unlearned = mlu.unlearn(model, X, y, [0, 1, 2], method="newton", curvature="ggn").model
    for method in ("aum", "early_loss"):
        with pytest.raises(ValueError, match="mlu.unlearn"):
            detect(unlearned, X, y, method=method)
    changed = mlu.MLP(hidden=(5,), epochs=4, track=True).fit(X, y)
    changed.params = changed.params * 1.01  # e.g. by hand
    with pytest.raises(ValueError, match="stale"):
        detect(changed, X, y, method="aum")


def test_trace_detectors_refuse_converted_models():
    pytest.importorskip("torch")
    from mlu.engine.interop import from_torch

    ds = mlu.datasets.load("digits", classes=(0, 1))
    X, y = ds.X_train[:120], ds.y_train[:120]
    model = mlu.MLP(hidden=(5,), epochs=4, track=True).fit(X, y)
    converted = from_torch(model.to_torch(), classes=model.classes_)
    with pytest.raises(ValueError, match="conversion"):
        detect(converted, X, y, method="aum")
