"""Saving and loading models: exact round trips, and refusal of corrupt, foreign or unsafe files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

import mlu
from mlu.engine.io import FORMAT_TAG, FORMAT_VERSION, load_model, save_model

NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.data[:300] / 16.0, data.target[:300]


@pytest.fixture(scope="module")
def trained(digits):
    X, y = digits
    return mlu.MLP(hidden=(12, 6), activation="tanh", l2=1e-4, epochs=4, track=True).fit(
        X, NAMES[y]
    )


def assert_same_model(a: mlu.MLP, b: mlu.MLP, X: np.ndarray) -> None:
    assert type(b) is mlu.MLP
    assert a.get_params() == b.get_params()
    assert a.sizes_ == b.sizes_ and a.n_features_in_ == b.n_features_in_
    assert a.theta_.dtype == b.theta_.dtype and a.theta_.tobytes() == b.theta_.tobytes()
    assert a.classes_.dtype == b.classes_.dtype
    np.testing.assert_array_equal(a.classes_, b.classes_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.predict_proba(X).tobytes() == b.predict_proba(X).tobytes()
    for attr in ("torch_dtype_", "loss_curve_"):
        assert getattr(a, attr, None) == getattr(b, attr, None)


def test_round_trip_is_bit_for_bit(tmp_path, digits, trained):
    X, _ = digits
    path = tmp_path / "model.npz"
    trained.save(path)
    loaded = mlu.MLP.load(path)
    assert_same_model(trained, loaded, X)
    assert loaded.hidden == (12, 6) and loaded.activation == "tanh" and loaded.track is True
    np.testing.assert_array_equal(loaded.trace_.loss, trained.trace_.loss)
    np.testing.assert_array_equal(loaded.trace_.margin, trained.trace_.margin)
    # the loaded model is a working model: it computes the same losses and can be refitted
    np.testing.assert_array_equal(
        loaded.losses(X, trained.predict(X)), trained.losses(X, trained.predict(X))
    )


def test_round_trip_of_int_classes_layers_and_torch_dtype(tmp_path, digits):
    X, y = digits
    keep = np.isin(y, (3, 7))
    model = mlu.MLP(hidden=(), epochs=3).fit(X[keep], y[keep])
    save_model(model, tmp_path / "a.npz")
    loaded = load_model(tmp_path / "a.npz")
    assert_same_model(model, loaded, X)
    assert loaded.trace_ is None and list(loaded.classes_) == [3, 7]

    rng = np.random.default_rng(0)
    built = mlu.MLP.from_layers(
        [(rng.normal(size=(5, 64)), rng.normal(size=5)), (rng.normal(size=(3, 5)), np.zeros(3))],
        activation="sigmoid",
        classes=[-1.5, 0.0, 2.5],
    )
    built.torch_dtype_ = "float32"  # what from_torch records
    save_model(built, str(tmp_path / "b.npz"))  # str paths too
    loaded = load_model(str(tmp_path / "b.npz"))
    assert_same_model(built, loaded, X)
    assert loaded.torch_dtype_ == "float32"
    assert not hasattr(loaded, "loss_curve_")


@pytest.mark.parametrize("activation", [("tanh", "relu"), "sigmoid,identity"])
def test_round_trip_of_mixed_activations(tmp_path, digits, activation):
    X, y = digits
    model = mlu.MLP(hidden=(8, 6), activation=activation, epochs=2).fit(X, y)
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.activation == activation
    np.testing.assert_array_equal(loaded.params, model.params)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_round_trip_keeps_feature_names(tmp_path, digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    frame = pd.DataFrame(X[:, :5], columns=[f"px{i}" for i in range(5)])
    model = mlu.MLP(hidden=(3,), epochs=2).fit(frame, y)
    model.save(tmp_path / "m.npz")
    loaded = mlu.MLP.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_file_is_a_plain_documented_npz(tmp_path, trained):
    path = tmp_path / "model.mlu"  # any name: nothing is appended
    trained.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.mlu"]  # no temporary file left
    with np.load(path, allow_pickle=False) as data:
        assert str(data["format"]) == FORMAT_TAG and int(data["version"]) == FORMAT_VERSION
        assert data["sizes"].tolist() == [64, 12, 6, 10]
        assert str(data["activation"]) == "tanh"
        assert data["classes"].dtype.kind == "U"
        np.testing.assert_array_equal(data["params"], trained.params)
        assert json.loads(str(data["hyperparams"]))["hidden"] == [12, 6]
    trained.save(path)  # overwriting is fine
    assert mlu.MLP.load(path).get_params() == trained.get_params()


def test_saving_needs_a_fitted_mlp(tmp_path):
    with pytest.raises(NotFittedError):
        mlu.MLP().save(tmp_path / "x.npz")
    with pytest.raises(TypeError, match="mlu.MLP"):
        save_model("not a model", tmp_path / "x.npz")
    assert not list(tmp_path.iterdir())


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        mlu.MLP.load(tmp_path / "absent.npz")


# ---------------------------------------------------------------------------- unsafe files
class Evil:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_the_evil_payload_works(tmp_path):
    # control: unpickling the payload does run code, so the tests below mean something
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Evil(marker)))
    assert marker.exists()


def test_a_pickle_renamed_npz_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(ValueError, match=r"model\.npz.*not an mlu model file"):
        mlu.MLP.load(path)
    assert not marker.exists()


def test_an_npz_with_a_pickled_object_array_is_refused_without_running_it(tmp_path, trained):
    marker = tmp_path / "ran"
    path = tmp_path / "model.npz"
    trained.save(path)
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["classes"] = np.array([Evil(marker)] * 10, dtype=object)
    np.savez(path, **arrays)  # np.savez pickles object arrays
    with pytest.raises(ValueError, match=r"model\.npz.*(corrupt|unsafe)"):
        mlu.MLP.load(path)
    assert not marker.exists()
    np.savez(path, payload=np.array([Evil(marker)], dtype=object))  # foreign and unsafe
    with pytest.raises(ValueError, match=r"model\.npz"):
        mlu.MLP.load(path)
    assert not marker.exists()


# ---------------------------------------------------------------------------- corrupt files
def edited(tmp_path: Path, model: mlu.MLP, **changes) -> Path:
    """A saved model with arrays replaced (value) or removed (None)."""
    path = tmp_path / "model.npz"
    model.save(path)
    arrays = dict(np.load(path, allow_pickle=False))
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    return bad


def hyper(model: mlu.MLP, **changes) -> np.ndarray:
    return np.array(json.dumps({**model.get_params(), **changes}))


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"format": np.array("something.else")}, "format tag 'mlu.MLP' expected"),
        ({"format": None}, "format tag"),
        ({"version": np.array(2)}, "unsupported mlu file format version 2"),
        ({"version": np.array(1.0)}, "'version' must be an integer"),
        ({"params": None}, r"missing arrays \['params'\]"),
        ({"hyperparams": None, "classes": None}, r"missing arrays \['classes', 'hyperparams'\]"),
        ({"params": np.zeros(7)}, r"'params' must be float64 of shape \(\d+,\)"),
        ({"params": np.zeros(1000, dtype=np.float32)}, "'params' must be float64"),
        ({"sizes": np.array([64, 12, 10])}, "'params' must be float64 of shape"),
        ({"sizes": np.array([64, 0, 6, 10])}, "'sizes' must be"),
        ({"activation": np.array("gelu")}, "unknown activation 'gelu'"),
        ({"classes": np.array(["a", "b"])}, "'classes' must hold 10 labels"),
        ({"classes": np.array(list("aacdefghij"))}, "distinct and sorted"),
        ({"hyperparams": np.array("{not json")}, "not valid JSON"),
        ({"hyperparams": np.array("[1, 2]")}, "must be a JSON object"),
        ({"extra": np.zeros(3)}, r"unexpected arrays \['extra'\]"),
        ({"torch_dtype": np.array(["float32", "x"])}, "'torch_dtype' must be a unicode scalar"),
        ({"trace_margin": None}, "must come together"),
        ({"loss_curve": np.zeros((2, 2))}, "'loss_curve' must be 1-D"),
    ],
)
def test_corrupt_files_are_refused_naming_the_file(tmp_path, trained, changes, match):
    path = edited(tmp_path, trained, **changes)
    with pytest.raises(ValueError, match=match) as info:
        mlu.MLP.load(path)
    assert str(path) in str(info.value)


def test_bad_hyper_parameters_and_values(tmp_path, trained):
    for changes, match in [
        ({"hyperparams": hyper(trained, warp=9)}, r"unknown hyper-parameters \['warp'\]"),
        ({"hyperparams": hyper(trained, activation="relu")}, "activation differs"),
    ]:
        with pytest.raises(ValueError, match=match):
            mlu.MLP.load(edited(tmp_path, trained, **changes))
    theta = trained.params
    for value in (np.nan, np.inf):
        theta[3] = value
        with pytest.raises(ValueError, match="'params' contains NaN or inf"):
            mlu.MLP.load(edited(tmp_path, trained, params=theta))


def test_truncated_empty_and_foreign_files(tmp_path, trained):
    good = tmp_path / "good.npz"
    trained.save(good)
    data = good.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "header-only.npz": data[:30],
        "empty.npz": b"",
        "text.npz": b"hello, this is not a model\n",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}.*not an mlu model file"):
            mlu.MLP.load(path)
    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match=r"array\.npy.*single \.npy array"):
        mlu.MLP.load(npy)
    corrupt = bytearray(data)
    start = data.index(b"params.npy")  # flip bytes inside a member: the zip CRC fails
    corrupt[start + 200 : start + 260] = bytes(60)
    path = tmp_path / "crc.npz"
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match=r"crc\.npz"):
        mlu.MLP.load(path)


def test_write_npz_is_what_np_load_reads(tmp_path):
    from mlu.engine._npz import write_npz

    rng = np.random.default_rng(0)
    arrays = {
        "matrix": rng.normal(size=(300, 7)),
        "fortran": np.asfortranarray(rng.normal(size=(5, 3))),
        "strided": np.arange(40, dtype=np.int32)[::3],
        "scalar": np.array(2.5),
        "text": np.array("mlu.Unlearner"),
        "empty": np.zeros((0, 4)),
        "big_endian": np.arange(6, dtype=">f8"),
    }
    path = tmp_path / "a.npz"
    with open(path, "wb") as fh:
        write_npz(fh, arrays, step=64)  # many slices per array
    with np.load(path, allow_pickle=False) as got:
        assert sorted(got.files) == sorted(arrays)
        for name, want in arrays.items():
            assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
            np.testing.assert_array_equal(got[name], want)
    with pytest.raises(ValueError, match="without pickle"), open(tmp_path / "b.npz", "wb") as fh:
        write_npz(fh, {"objects": np.array([None, 1], dtype=object)})
