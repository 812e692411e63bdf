"""mlu.MLP as a scikit-learn estimator, and conversion from scikit-learn's MLPClassifier."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_predict, cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import mlu
from mlu.engine.interop import from_sklearn

# Every check of scikit-learn's suite applies and passes, so none is declared an expected
# failure. (check_array_api_input is skipped by scikit-learn itself unless SCIPY_ARRAY_API is
# set; MLP does not claim array-API support: its math runs in the C++ core on NumPy arrays.)
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks(
    [mlu.MLP(hidden=(5,), epochs=5)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
# Some checks feed raw-scale features (root mean square ~100) to test the API, not the fit:
# the warning is right there (it is asserted in test_scale.py), not a failure of the check.
@pytest.mark.filterwarnings("ignore::mlu.exceptions.UnscaledFeaturesWarning")
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.data[:600] / 16.0, data.target[:600]


@pytest.fixture(scope="module")
def binary():
    return make_classification(n_samples=200, n_features=6, n_informative=4, random_state=0)


# ---------------------------------------------------------------------------- estimator API
def test_get_set_params_and_clone(digits):
    X, y = digits
    model = mlu.MLP(hidden=(7,), epochs=3, lr=0.05, seed=3).fit(X, y)
    params = model.get_params()
    assert params["hidden"] == (7,) and params["lr"] == 0.05 and params["seed"] == 3
    copy = clone(model)
    assert copy.get_params() == params
    assert not hasattr(copy, "theta_")  # clone is unfitted
    np.testing.assert_array_equal(copy.fit(X, y).params, model.params)  # seeded: same fit
    assert model.set_params(hidden=(3, 3), activation="tanh") is model
    assert model.get_params()["hidden"] == (3, 3)
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(nope=1)


def test_decision_function_follows_sklearn(digits, binary):
    X, y = binary
    model = mlu.MLP(hidden=(5,), epochs=5).fit(X, y)
    Z = model.logits(X)
    assert Z.shape == (200, 2)
    np.testing.assert_array_equal(model.decision_function(X), Z[:, 1] - Z[:, 0])
    np.testing.assert_array_equal(model.predict(X), (model.decision_function(X) > 0).astype(int))
    X, y = digits
    model = mlu.MLP(hidden=(5,), epochs=2).fit(X, y)
    np.testing.assert_array_equal(model.decision_function(X), model.logits(X))


def test_cross_val_predict(digits):
    X, y = digits
    model = mlu.MLP(hidden=(16,), epochs=10, lr=0.05)
    pred = cross_val_predict(model, X, y, cv=3)
    assert pred.shape == y.shape and (pred == y).mean() > 0.8
    proba = cross_val_predict(model, X, y, cv=3, method="predict_proba")
    assert proba.shape == (len(y), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_roc_auc_scoring_on_a_binary_problem(binary):
    # the roc_auc scorer calls decision_function, which must be (n,) for two classes
    X, y = binary
    scores = cross_val_score(mlu.MLP(hidden=(8,), epochs=20), X, y, cv=3, scoring="roc_auc")
    assert np.isfinite(scores).all() and scores.mean() > 0.8


def test_pipeline_with_standard_scaler(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), mlu.MLP(hidden=(16,), epochs=30))
    assert pipe.fit(X[:400], y[:400]) is pipe
    assert pipe.score(X[400:], y[400:]) > 0.8
    assert pipe.predict_proba(X[400:]).shape == (200, 10)
    # parameters reachable through the pipeline
    pipe.set_params(mlp__hidden=(4,))
    assert pipe.get_params()["mlp__hidden"] == (4,)


# numpy < 1.24 warns when scikit-learn stores the grid's tuples of different lengths.
@pytest.mark.filterwarnings("ignore:Creating an ndarray from ragged nested sequences")
def test_grid_search_over_hidden(digits):
    X, y = digits
    pipe = Pipeline([("scale", StandardScaler()), ("mlp", mlu.MLP(epochs=5))])
    grid = {"mlp__hidden": [(2,), (24,)]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert search.best_params_ == {"mlp__hidden": (24,)}  # 2 hidden units cannot do 10 digits
    assert search.best_estimator_.named_steps["mlp"].sizes_ == (64, 24, 10)
    plain = GridSearchCV(mlu.MLP(epochs=5), {"hidden": [(), (8,)]}, cv=2).fit(X, y)
    assert plain.best_params_["hidden"] in [(), (8,)]


def test_string_labels(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "n8", "n9"])
    model = mlu.MLP(hidden=(16,), epochs=10).fit(X, names[y])
    assert set(model.classes_) == set(names)
    assert model.score(X, names[y]) > 0.8
    assert model.predict(X[:5]).dtype.kind == "U"


def test_sklearn_style_input_errors(binary):
    X, y = binary
    model = mlu.MLP(hidden=(3,), epochs=1)
    with pytest.raises(ValueError, match="Reshape your data"):
        model.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="Unknown label type"):
        model.fit(X, y + 0.5)
    with pytest.raises(ValueError, match="1 class"):
        model.fit(X, np.zeros_like(y))
    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but MLP is expecting 6"):
        model.predict(X[:, :5])


# ---------------------------------------------------------------------------- from_sklearn
def fit_sklearn(X, y, **kwargs) -> MLPClassifier:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(max_iter=60, random_state=0, **kwargs).fit(X, y)


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("hidden", [(8,), (6, 5)])
@pytest.mark.parametrize("labels", ["binary", "binary-str", "multi", "multi-str"])
def test_from_sklearn_matches_predictions_and_probabilities(digits, activation, hidden, labels):
    X, y = digits
    if labels.startswith("binary"):
        X, y = X[y < 2], y[y < 2]
    if labels.endswith("str"):
        y = np.array(["cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay", "kea", "loon"])[y]
    clf = fit_sklearn(X, y, hidden_layer_sizes=hidden, activation=activation)
    model = from_sklearn(clf)
    k = len(clf.classes_)
    assert model.sizes_ == (64, *hidden, k)
    assert model.activation == {"logistic": "sigmoid"}.get(activation, activation)
    np.testing.assert_array_equal(model.classes_, clf.classes_)
    np.testing.assert_allclose(model.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(model.predict(X), clf.predict(X))
    # the source stays as it was
    proba = clf.predict_proba(X)
    model.params = model.params * 0
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


def test_from_sklearn_keeps_hyper_parameters_given(digits):
    X, y = digits
    model = from_sklearn(fit_sklearn(X, y, hidden_layer_sizes=(4,)), l2=1e-3)
    assert model.l2 == 1e-3 and model.hidden == (4,)


def test_from_sklearn_refusals(digits):
    X, y = digits
    with pytest.raises(TypeError, match="MLPClassifier"):
        from_sklearn(mlu.MLP())
    with pytest.raises(NotFittedError):
        from_sklearn(MLPClassifier())
    Y = np.stack([y % 2, y > 4], axis=1).astype(int)  # two labels per sample
    with pytest.raises(ValueError, match="multilabel"):
        from_sklearn(fit_sklearn(X, Y, hidden_layer_sizes=(4,)))


def test_estimator_parameters_are_keyword_only():
    # A positional hyper-parameter would silently bind to the wrong one when parameters are added.
    with pytest.raises(TypeError, match="positional"):
        mlu.MLP((8,))
    with pytest.raises(TypeError, match="positional"):
        mlu.SISA(mlu.MLP(hidden=(8,)), 2)
    model = mlu.MLP(hidden=(8,), epochs=3)
    assert model.get_params()["hidden"] == (8,)
    assert mlu.SISA(model, n_shards=2).get_params()["n_shards"] == 2
