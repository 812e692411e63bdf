"""Unscaled features: the warning, MLP(scale=...), and its round trips (issue 12)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mlu
from mlu.exceptions import UnscaledFeaturesWarning


@pytest.fixture(scope="module")
def raw():
    ds = mlu.datasets.load("digits", classes=(3, 8))
    return 16.0 * ds.X_train, ds.y_train, 16.0 * ds.X_test, ds.y_test  # pixel values 0..16


def test_unscaled_features_warn(raw):
    X, y, _, _ = raw
    with pytest.warns(UnscaledFeaturesWarning, match="scale='standard'"):
        mlu.MLP(hidden=(5,), epochs=1).fit(50 * X, y)  # values up to 800
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mlu.MLP(hidden=(5,), epochs=1).fit(X / 16, y)  # in [0, 1]
        mlu.MLP(hidden=(5,), epochs=1, scale="standard").fit(50 * X, y)


@pytest.mark.parametrize("scale", ["standard", "minmax"])
def test_scale_is_the_network_on_transformed_inputs(raw, scale):
    X, y, Xt, yt = raw
    X = 50 * X  # up to 800: the unscaled model does not learn
    model = mlu.MLP(hidden=(6,), epochs=5, scale=scale, seed=0).fit(X, y)
    if scale == "standard":
        offset, spread = X.mean(axis=0), X.std(axis=0)
    else:
        offset, spread = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
    factor = np.where(spread > 0, 1 / np.where(spread > 0, spread, 1), 1.0)
    np.testing.assert_allclose(model.scale_offset_, offset, rtol=1e-12)
    np.testing.assert_allclose(model.scale_factor_, factor, rtol=1e-12)
    Z = (X - offset) * factor
    # the same SGD on the transformed data gives the same parameters
    plain = mlu.MLP(hidden=(6,), epochs=5, seed=0).fit(Z, y)
    np.testing.assert_allclose(model.params, plain.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.logits(X), plain.logits(Z), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.losses(X, y), plain.losses(Z, y), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.gradient(X, y), plain.gradient(Z, y), rtol=1e-8, atol=1e-12)
    v = np.random.default_rng(0).standard_normal(model.n_params)
    np.testing.assert_allclose(model.hvp(X, y, v), plain.hvp(Z, y, v), rtol=1e-8, atol=1e-12)
    assert model.score(50 * Xt, yt) > 0.85
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = mlu.unlearn(model, X, y, [0, 1, 2], method="newton", curvature="ggn").model
        b = mlu.unlearn(plain, Z, y, [0, 1, 2], method="newton", curvature="ggn").model
    np.testing.assert_allclose(a.params, b.params, rtol=1e-7, atol=1e-10)


def test_scale_survives_save_load_and_torch(raw, tmp_path):
    X, y, Xt, _ = raw
    model = mlu.MLP(hidden=(4,), epochs=2, scale="standard").fit(X, y)
    model.save(tmp_path / "m.npz")
    back = mlu.MLP.load(tmp_path / "m.npz")
    assert back.scale == "standard"
    np.testing.assert_array_equal(back.logits(Xt), model.logits(Xt))
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        out = model.to_torch()(torch.from_numpy(Xt)).numpy()
    np.testing.assert_allclose(out, model.logits(Xt), rtol=1e-10, atol=1e-10)


def test_bad_scale():
    with pytest.raises(ValueError, match="scale must be one of"):
        mlu.MLP(scale="log").fit(np.eye(3), [0, 1, 0])


def test_stale_training_record_is_not_saved(raw, tmp_path):
    X, y, _, _ = raw
    model = mlu.MLP(hidden=(4,), epochs=2, track=True, scale="minmax").fit(X, y)
    model.save(tmp_path / "fresh.npz")
    fresh = mlu.MLP.load(tmp_path / "fresh.npz")
    np.testing.assert_array_equal(fresh.trace_.margin, model.trace_.margin)
    np.testing.assert_array_equal(
        mlu.detect(fresh, X, y, method="aum"), mlu.detect(model, X, y, method="aum")
    )
    model.params = model.params + 0.01  # the record no longer describes the model
    model.save(tmp_path / "stale.npz")
    assert mlu.MLP.load(tmp_path / "stale.npz").trace_ is None
