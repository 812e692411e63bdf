"""Tests of mlu.metrics.forgetting_report (against hand computations) and of the forgetting
modes of mlu.forgetting (determinism, path independence, what each mode changes)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import mlu
from mlu.metrics import ForgettingReport, forgetting_report, loss_auc
from mlu.unlearning import forgetting
from mlu.unlearning.forgetting import (
    MODES,
    check_settings,
    default_epochs,
    full_epochs,
    post_update,
    request_seed,
    scaled_settings,
)


class Fixed:
    """A classifier returning given probabilities: row i for the sample whose feature is i."""

    def __init__(self, proba, classes=(0, 1)):
        self.P = np.asarray(proba, dtype=float)
        self.classes_ = np.asarray(classes)

    def predict_proba(self, X):
        return self.P[np.asarray(X)[:, 0].astype(int)]

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def pairwise_auc(member, outsider) -> float:
    """P(member loss < outsider loss) + ½ P(tie), by explicit pairs."""
    total = 0.0
    for a in member:
        for b in outsider:
            total += 1.0 if a < b else 0.5 if a == b else 0.0
    return total / (len(member) * len(outsider))


def binary_model(losses, labels) -> Fixed:
    """Two-class probabilities giving sample i loss ``losses[i]`` for label ``labels[i]``."""
    P = np.empty((len(losses), 2))
    for i, (loss, c) in enumerate(zip(losses, labels)):
        P[i, c] = math.exp(-loss)
        P[i, 1 - c] = 1.0 - math.exp(-loss)
    return Fixed(P)


# forgotten samples are rows 0-2, unseen rows 3-6 of every Fixed model below
Y_F = np.array([0, 1, 1])
Y_U = np.array([0, 0, 1, 1])
X_F = np.arange(3.0)[:, None]
X_U = np.arange(3.0, 7.0)[:, None]
LABELS = np.r_[Y_F, Y_U]


def test_loss_auc_matches_pairs_with_a_tie():
    member, outsider = [0.1, 0.5, 0.9], [0.3, 0.5, 1.2, 2.0]
    assert loss_auc(member, outsider) == pytest.approx(8.5 / 12, abs=1e-15)
    assert loss_auc(member, outsider) == pytest.approx(pairwise_auc(member, outsider))
    assert loss_auc([1.0], [1.0]) == 0.5


def test_report_against_hand_computation():
    losses = [0.1, 0.5, 0.9, 0.3, 0.5, 1.2, 2.0]
    model = binary_model(losses, LABELS)
    rep = forgetting_report(model, X_F, Y_F, X_U, Y_U)
    lf, lu = np.array(losses[:3]), np.array(losses[3:])
    assert rep.mia_auc == pytest.approx(pairwise_auc(lf, lu), abs=1e-12)
    assert rep.forget_loss == pytest.approx(lf.mean(), abs=1e-12)
    assert rep.unseen_loss == pytest.approx(lu.mean(), abs=1e-12)
    assert rep.loss_shift == pytest.approx(0.5 - 1.0, abs=1e-12)
    # calibrated: class 0 unseen mean (0.3 + 0.5)/2 = 0.4, class 1 (1.2 + 2.0)/2 = 1.6
    cf = [0.1 - 0.4, 0.5 - 1.6, 0.9 - 1.6]
    cu = [0.3 - 0.4, 0.5 - 0.4, 1.2 - 1.6, 2.0 - 1.6]
    assert rep.mia_auc_calibrated == pytest.approx(pairwise_auc(cf, cu), abs=1e-12)
    assert rep.mia_auc_calibrated == pytest.approx(11 / 12, abs=1e-12)
    assert rep.reference_mia_auc is None and rep.gap_closed is None
    assert set(rep.as_dict()) == {
        "n_forget",
        "n_unseen",
        "mia_auc",
        "mia_auc_calibrated",
        "forget_loss",
        "unseen_loss",
        "loss_shift",
    }
    assert "AUC 0.708" in rep.summary()


def test_report_gap_closed_against_hand_computation():
    unseen = [0.3, 0.5, 1.2, 2.0]
    original = binary_model([0.01, 0.02, 0.03, *unseen], LABELS)  # every member below: AUC 1
    model = binary_model([0.1, 0.5, 0.9, *unseen], LABELS)  # 8.5/12
    reference = binary_model([3.0, 3.0, 3.0, *unseen], LABELS)  # every member above: AUC 0
    rep = forgetting_report(model, X_F, Y_F, X_U, Y_U, reference=reference, original=original)
    assert isinstance(rep, ForgettingReport)
    assert rep.original_mia_auc == 1.0 and rep.reference_mia_auc == 0.0
    assert rep.gap_closed == pytest.approx((1.0 - 8.5 / 12) / (1.0 - 0.0), abs=1e-12)
    assert rep.reference_loss_shift == pytest.approx(3.0 - 1.0, abs=1e-12)
    assert rep.forget_loss_vs_reference == pytest.approx(0.5 - 3.0, abs=1e-12)
    # calibrated: original members at 0.01-0.4, 0.02-1.6, 0.03-1.6 vs unseen -0.1, 0.1, -0.4, 0.4
    o_cf, cu = [0.01 - 0.4, 0.02 - 1.6, 0.03 - 1.6], [-0.1, 0.1, -0.4, 0.4]
    r_cf = [3.0 - 0.4, 3.0 - 1.6, 3.0 - 1.6]
    o, r = pairwise_auc(o_cf, cu), pairwise_auc(r_cf, cu)
    assert rep.original_mia_auc_calibrated == pytest.approx(o, abs=1e-12)
    assert rep.gap_closed_calibrated == pytest.approx((o - 11 / 12) / (o - r), abs=1e-12)
    assert "gap to the reference closed: 29%" in rep.summary()


def test_report_gap_is_none_when_original_and_reference_tie():
    model = binary_model([0.1, 0.5, 0.9, 0.3, 0.5, 1.2, 2.0], LABELS)
    rep = forgetting_report(model, X_F, Y_F, X_U, Y_U, reference=model, original=model)
    assert rep.gap_closed is None and rep.gap_closed_calibrated is None
    assert rep.forget_loss_vs_reference == 0.0
    assert "gap_closed" not in rep.as_dict()


def test_report_refuses_bad_input():
    model = binary_model([0.1, 0.5, 0.9, 0.3, 0.5, 1.2, 2.0], LABELS)
    with pytest.raises(ValueError, match="no unseen sample"):
        forgetting_report(model, X_F, Y_F, X_U[2:], Y_U[2:])  # class 0 has no unseen sample
    with pytest.raises(ValueError, match="empty"):
        loss_auc([], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        loss_auc([np.nan], [1.0])
    with pytest.raises(ValueError, match="not one of the model's classes"):
        forgetting_report(model, X_F, np.array([0, 1, 7]), X_U, Y_U)


@pytest.fixture(scope="module")
def problem():
    ds = mlu.datasets.load("digits")
    X, y = ds.X_train[:400], ds.y_train[:400]
    model = mlu.MLP(hidden=(16,), epochs=15, seed=0).fit(X, y)
    return X, y, model, ds.X_test, ds.y_test


def test_report_on_a_real_model_sees_its_training_samples(problem):
    X, y, model, Xt, yt = problem
    rep = forgetting_report(model, X[:100], y[:100], Xt, yt)
    assert rep.mia_auc > 0.5 and rep.mia_auc_calibrated > 0.5  # trained on: lower loss
    assert rep.loss_shift < 0
    assert rep.mia_auc == pytest.approx(
        mlu.metrics.membership_inference_auc(model, X[:100], y[:100], Xt, yt), abs=1e-15
    )


def test_exact_mode_is_the_model(problem):
    X, y, model, _, _ = problem
    out = post_update(model, X, y, [1, 2, 3], "exact")
    assert out.model is not model
    np.testing.assert_array_equal(out.model.params, model.params)
    assert out.epochs == 0.0 and out.noise == 0.0 and out.rows_visited == 0


@pytest.mark.parametrize("mode", [m for m in MODES if m != "exact"])
def test_modes_are_deterministic_and_leave_the_input(problem, mode):
    X, y, model, _, _ = problem
    before = copy.deepcopy(model)
    X0, y0 = X.copy(), y.copy()
    a = post_update(model, X, y, [5, 1, 9], mode, epochs=0.5)
    mask = np.zeros(len(y), dtype=bool)
    mask[[1, 5, 9]] = True
    b = post_update(model, X, y, mask, mode, epochs=0.5)  # same set, other form and order
    np.testing.assert_array_equal(a.model.params, b.model.params)
    assert a.seed == b.seed == request_seed([1, 5, 9], len(y))
    assert not np.array_equal(a.model.params, model.params)
    np.testing.assert_array_equal(model.params, before.params)
    assert model.get_params() == before.get_params()
    assert a.model.get_params() == model.get_params()  # fine-tuning settings not left behind
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    assert mode in a.summary()


def test_finetune_uses_only_the_retained_rows(problem):
    X, y, model, _, _ = problem
    forget = np.arange(0, 40)
    a = post_update(model, X, y, forget, "noisy_finetune", epochs=1.5)
    X2 = X.copy()
    X2[forget] = 0.5  # the forgotten rows' contents play no part
    b = post_update(model, X2, y, forget, "noisy_finetune", epochs=1.5)
    np.testing.assert_array_equal(a.model.params, b.model.params)
    assert a.rows_visited == round(1.5 * 360)
    c = post_update(model, X, y, np.arange(1, 41), "noisy_finetune", epochs=1.5)
    assert c.seed != a.seed
    assert not np.array_equal(a.model.params, c.model.params)


def test_finetune_keeps_every_hyper_parameter():
    ds = mlu.datasets.load("digits")
    X, y = ds.X_train[:200], ds.y_train[:200]
    model = mlu.MLP(hidden=(8,), epochs=3, track=True, lr=0.05, seed=4).fit(X, y)
    out = post_update(model, X, y, [0, 1], "noisy_finetune", epochs=0.5, lr=0.01)
    assert out.model.get_params() == model.get_params()
    assert out.rows_visited == 99


def test_anneal_slows_the_end_of_the_finetuning(problem):
    X, y, model, _, _ = problem
    plain = post_update(model, X, y, [3, 4], "finetune", epochs=1.0, anneal=0.0)
    tail = post_update(model, X, y, [3, 4], "finetune", epochs=1.0, anneal=0.5)
    assert plain.rows_visited == tail.rows_visited == 398
    assert tail.anneal == 0.5 and "the last 50% at lr x 0.2" in tail.summary()
    step_plain = np.linalg.norm(plain.model.params - model.params)
    step_tail = np.linalg.norm(tail.model.params - model.params)
    assert step_tail < step_plain  # half of the rows at a fifth of the rate: a shorter path
    with pytest.raises(ValueError, match="anneal"):
        post_update(model, X, y, [3, 4], "finetune", anneal=1.5)


def test_noise_zero_is_finetune_and_seed_changes_the_bits(problem):
    X, y, model, _, _ = problem
    a = post_update(model, X, y, [3, 4], "noisy_finetune", epochs=1.0, noise=0.0, shrink=1.0)
    b = post_update(model, X, y, [3, 4], "finetune", epochs=1.0)
    np.testing.assert_array_equal(a.model.params, b.model.params)
    c = post_update(model, X, y, [3, 4], "finetune", epochs=1.0, seed=1)
    assert c.seed != b.seed
    assert not np.array_equal(c.model.params, b.model.params)


def test_noise_has_the_layer_scale(problem):
    X, y, model, _, _ = problem
    out = post_update(model, X, y, [0], "noise", noise=0.5, shrink=1.0)
    (W1, b1), (W2, _) = model.layers
    (V1, c1), (V2, _) = out.model.layers
    rms1 = float(np.sqrt(np.mean(W1**2)))
    diff1 = np.r_[(V1 - W1).ravel(), c1 - b1]  # 16 * 64 + 16 = 1040 draws
    assert np.std(diff1) == pytest.approx(0.5 * rms1, rel=0.1)
    assert np.std(V2 - W2) == pytest.approx(0.5 * float(np.sqrt(np.mean(W2**2))), rel=0.2)


def test_finetune_repairs_the_noise(problem):
    X, y, model, _, _ = problem
    forget = np.arange(40)
    keep = np.arange(40, 400)
    noisy = post_update(model, X, y, forget, "noise", noise=1.0).model
    tuned = post_update(model, X, y, forget, "noisy_finetune", noise=1.0, epochs=2).model
    assert tuned.objective(X[keep], y[keep]) < 0.8 * noisy.objective(X[keep], y[keep])


def test_post_update_refuses_bad_input(problem):
    X, y, model, _, _ = problem
    with pytest.raises(ValueError, match="mode"):
        post_update(model, X, y, [1], "retrain")
    with pytest.raises(ValueError, match="epochs"):
        post_update(model, X, y, [1], "finetune", epochs=-1)
    with pytest.raises(ValueError, match="noise"):
        post_update(model, X, y, [1], "noise", noise=math.inf)
    with pytest.raises(ValueError, match="lr"):
        post_update(model, X, y, [1], "finetune", lr=0.0)
    with pytest.raises(ValueError):
        post_update(model, X, y, np.arange(len(y)), "finetune")  # nothing retained
    with pytest.raises(ValueError):
        post_update(model, X, y, [len(y)], "finetune")  # out of range
    with pytest.raises(ValueError):
        post_update(model, X[:, :10], y, [1], "finetune")  # wrong features
    with pytest.raises(TypeError):
        post_update(model, X, y, [1], "finetune", epochs="2")


def test_fisher_noise_keeps_the_layer_variance_and_avoids_what_r_constrains(problem):
    X, y, model, _, _ = problem
    forget = np.arange(40)
    out = post_update(model, X, y, forget, "fisher_finetune", epochs=0.0, noise=0.5, shrink=1.0)
    assert out.rows_visited == 0
    (W1, b1), _ = model.layers
    (V1, c1), _ = out.model.layers
    rms1 = float(np.sqrt(np.mean(W1**2)))
    diff1 = np.r_[(V1 - W1).ravel(), c1 - b1]
    assert np.sqrt(np.mean(diff1**2)) == pytest.approx(0.5 * rms1, rel=0.15)
    # pixels that are zero in every retained image have zero Fisher: the most noise
    keep = np.setdiff1d(np.arange(len(y)), forget)
    dead = np.flatnonzero(np.all(X[keep] == 0, axis=0))
    live = np.flatnonzero(np.any(X[keep] != 0, axis=0))
    assert dead.size > 0
    d = V1 - W1
    assert np.sqrt(np.mean(d[:, dead] ** 2)) > 1.5 * np.sqrt(np.mean(d[:, live] ** 2))


def test_post_update_after_sequential_requests_equals_after_one_joint_request(problem):
    X, y, model, _, _ = problem
    a = mlu.Unlearner(model, X, y, curvature="dense")
    a.forget([3, 17], mode="exact")
    a.forget([42, 8], mode="exact")
    b = mlu.Unlearner(model, X, y, curvature="dense")
    b.forget([3, 17, 42, 8], mode="exact")
    np.testing.assert_allclose(a.model.params, b.model.params, rtol=0, atol=1e-10)
    F_a = np.concatenate(a.removed)
    out_a = post_update(a.model, X, y, F_a)
    out_b = post_update(b.model, X, y, np.concatenate(b.removed))
    assert out_a.seed == out_b.seed
    np.testing.assert_allclose(out_a.model.params, out_b.model.params, rtol=0, atol=1e-8)
    again = post_update(a.model, X, y, F_a)  # replay: the same bits
    np.testing.assert_array_equal(again.model.params, out_a.model.params)


def test_the_post_updated_model_keeps_its_training_record(problem):
    # the fine-tuning's fit would reset the epoch count and the seconds of the training
    X, y, model, _, _ = problem
    out = post_update(model, X, y, [3, 17], "finetune", epochs=1.0).model
    assert out.n_iter_ == model.n_iter_ == 15 and out.fit_time_ == model.fit_time_
    assert out.loss_curve_ == model.loss_curve_ and out.get_params() == model.get_params()
    assert not np.array_equal(out.params, model.params)


def test_default_epochs_and_settings():
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = np.arange(30) % 2
    # min(3, 0.075 E): 3 epochs at full strength for E = 40, 0.75 for 10, 0.225 for 3
    for epochs, expected in ((80, 3.0), (40, 3.0), (10, 0.75), (3, 0.225)):
        model = mlu.MLP(hidden=(2,), epochs=epochs, seed=0).fit(X, y)
        assert full_epochs(model) == pytest.approx(expected, abs=1e-15)
        assert default_epochs(model) is None  # each request's own, from scaled_settings
    assert forgetting.DEFAULT_EPOCHS is None and forgetting.DEFAULT_NOISE is None
    assert forgetting.DEFAULT_SHRINK is None
    assert check_settings("finetune", 1, 0, None, 0.5) == ("finetune", 1.0, 0.0, None, 0.5)
    assert check_settings("finetune", None, None) == ("finetune", None, None, None, 0.25)
    assert check_settings("noise", 1, 1, shrink=0.5, full=True)[-1] == 0.5
    with pytest.raises(ValueError, match="lr"):
        check_settings("finetune", 1, 0, 0.0, 0.5)
    with pytest.raises(ValueError, match="shrink"):
        check_settings("noise", 1, 1, shrink=1.5)


def test_scaled_settings_by_hand():
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = np.arange(30) % 2
    model = mlu.MLP(hidden=(2,), epochs=40, seed=0).fit(X, y)
    # t = min(1, |F| / (0.1 n)); shrink 1 - 0.7 t, noise t, epochs 3 t² (E = 40)
    cases = ((300, 3000, 1.0), (600, 3000, 1.0), (75, 3000, 0.25), (600, 60000, 0.1))
    for n_forgotten, n, t in cases:
        got = scaled_settings(model, n_forgotten, n)
        assert got["strength"] == pytest.approx(t, abs=1e-15)
        assert got["shrink"] == pytest.approx(1 - 0.7 * t, abs=1e-15)
        assert got["noise"] == pytest.approx(t, abs=1e-15)
        assert got["epochs"] == pytest.approx(3.0 * t * t, abs=1e-15)
        assert got["amplitude"] == pytest.approx(t, abs=1e-15)  # r = 1 for 40 epochs
    # 10 epochs: 0.75 epochs at full strength, r = 0.75 / 3; 1% of 60000: t = 0.1
    ten = mlu.MLP(hidden=(2,), epochs=10, seed=0).fit(X, y)
    got = scaled_settings(ten, 600, 60000)
    assert got["epochs"] == pytest.approx(0.75 * 0.01, abs=1e-15)
    assert got["amplitude"] == pytest.approx(0.025, abs=1e-15)
    assert got["shrink"] == pytest.approx(1 - 0.7 * 0.025, abs=1e-15)
    assert got["noise"] == pytest.approx(0.025, abs=1e-15)


def test_the_default_post_update_is_shrink_noise_then_finetune_by_hand(problem):
    """post_update's defaults are scaled_settings' for F: shrink · θ_F plus noise · rms(W_l)
    (one seeded draw per layer, in order), then the fine-tuning from there with the same
    generator."""
    X, y, model, _, _ = problem
    forget = np.arange(20)  # 20 of 400: t = 0.5; 15 epochs: repair 1.125 epochs, r = 0.375
    got = post_update(model, X, y, forget)
    want = scaled_settings(model, 20, len(y))
    a = 0.5 * 1.125 / 3
    assert want["shrink"] == pytest.approx(1 - 0.7 * a, abs=1e-15)
    assert want["noise"] == pytest.approx(a, abs=1e-15)
    assert want["epochs"] == pytest.approx(1.125 * 0.25, abs=1e-15)
    assert (got.mode, got.shrink, got.noise, got.epochs) == (
        "noisy_finetune", want["shrink"], want["noise"], want["epochs"]
    )  # fmt: skip
    assert f"shrink {want['shrink']:.4g}, noise {want['noise']:.4g}" in got.summary()
    rng = np.random.default_rng(got.seed)
    theta = model.theta_.copy()
    pos = 0
    for fan_in, fan_out in zip(model.sizes_[:-1], model.sizes_[1:]):
        size = fan_out * fan_in + fan_out
        W = model.theta_[pos : pos + fan_out * fan_in]
        sigma = want["noise"] * float(np.sqrt(np.mean(W * W)))
        theta[pos : pos + size] = want["shrink"] * theta[pos : pos + size] + sigma * (
            rng.standard_normal(size)
        )
        pos += size
    noised = post_update(model, X, y, forget, "noise")  # the same draws, no fine-tuning
    np.testing.assert_allclose(noised.model.theta_, theta, rtol=0, atol=1e-15)
    tuned = copy.deepcopy(model)
    tuned.params = theta
    retained = np.setdiff1d(np.arange(len(y)), forget)
    visited = forgetting._finetune(
        tuned, X, y, retained, want["epochs"], model.lr, 0.25, rng, got.seed
    )
    assert visited == got.rows_visited == round(want["epochs"] * len(retained))
    np.testing.assert_array_equal(tuned.theta_, got.model.theta_)
