"""Tests for mlu.datasets: the IDX reader, file lookup, class selection, subsets, digits."""

from __future__ import annotations

import gzip
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mlu import datasets
from mlu.data.datasets import Dataset, from_arrays, load, read_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
ROWS, COLS = 4, 3  # tiny images keep the fixtures fast; the reader takes any size


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 0x0000 08 <ndim>, big-endian dims, data."""
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_arrays(n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, ROWS, COLS), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, size=(n_test, ROWS, COLS), dtype=np.uint8),
        "test_labels": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    arrays["train_images"][0, 0, 0] = 255  # pin the maximum so scaling is checkable
    return arrays


def write_set(directory: Path, arrays: dict[str, np.ndarray], gz: bool) -> dict[str, Path]:
    return {key: write_idx(directory / NAMES[key], arr, gz) for key, arr in arrays.items()}


@pytest.fixture(autouse=True)
def _isolate_default_paths(tmp_path_factory, monkeypatch):
    # Keep the user's ~/.cache/mlu and $MLU_DATA out of every test.
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("MLU_DATA", raising=False)


# --------------------------------------------------------------------------- IDX files


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_load_mnist_from_idx_files(tmp_path, gz, layout):
    arrays = make_arrays()
    directory = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    write_set(directory, arrays, gz)

    ds = load("mnist", root=tmp_path)

    assert isinstance(ds, Dataset)
    assert ds.name == "mnist"
    assert ds.X_train.shape == (60, ROWS * COLS) and ds.X_test.shape == (20, ROWS * COLS)
    assert ds.y_train.shape == (60,) and ds.y_test.shape == (20,)
    assert ds.n_features == 12 and ds.n_classes == 10 and ds.n_train == 60 and ds.n_test == 20
    for X in (ds.X_train, ds.X_test):
        assert X.dtype == np.float64 and X.flags.c_contiguous
        assert X.min() >= 0.0 and X.max() <= 1.0
    assert ds.X_train.max() == 1.0
    np.testing.assert_array_equal(ds.X_train, arrays["train_images"].reshape(60, -1) / 255.0)
    np.testing.assert_array_equal(ds.X_test, arrays["test_images"].reshape(20, -1) / 255.0)
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, np.arange(60) % 10)
    np.testing.assert_array_equal(ds.y_test, (np.arange(20) * 3) % 10)
    assert ds.class_names == tuple(str(d) for d in range(10))


def test_read_idx_roundtrip_and_magic(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", images, gz=True)
    out = read_idx(path, datasets.IMAGES_MAGIC)
    np.testing.assert_array_equal(out, images)
    assert out.dtype == np.uint8 and out.flags.writeable
    with pytest.raises(ValueError, match="wrong magic number 0x00000803, expected 0x00000801"):
        read_idx(path, datasets.LABELS_MAGIC)


def test_uncompressed_file_preferred_when_both_exist(tmp_path):
    # torchvision leaves both the .gz and the extracted file; either gives the same data.
    arrays = make_arrays()
    write_set(tmp_path, arrays, gz=True)
    write_set(tmp_path, arrays, gz=False)
    (tmp_path / (NAMES["train_images"] + ".gz")).write_bytes(b"garbage, must not be read")
    ds = load("mnist", root=tmp_path)
    assert ds.n_train == 60


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_file_is_a_value_error_naming_it(tmp_path, gz):
    paths = write_set(tmp_path, make_arrays(), gz)
    bad = paths["train_images"]
    if gz:
        bad.write_bytes(gzip.compress(idx_bytes(make_arrays()["train_images"])[:-7]))
    else:
        bad.write_bytes(bad.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated") as info:
        load("mnist", root=tmp_path)
    assert bad.name in str(info.value)


def test_truncated_gzip_stream_is_a_value_error_naming_it(tmp_path):
    paths = write_set(tmp_path, make_arrays(), gz=True)
    bad = paths["test_labels"]
    bad.write_bytes(bad.read_bytes()[:20])
    with pytest.raises(ValueError, match="gzip") as info:
        load("mnist", root=tmp_path)
    assert bad.name in str(info.value)


def test_wrong_magic_is_a_value_error_naming_the_file(tmp_path):
    arrays = make_arrays()
    paths = write_set(tmp_path, arrays, gz=False)
    # Swap the labels file for an images file: valid IDX, wrong kind.
    paths["train_labels"].write_bytes(idx_bytes(arrays["train_images"]))
    with pytest.raises(ValueError, match="wrong magic") as info:
        load("mnist", root=tmp_path)
    assert NAMES["train_labels"] in str(info.value)


def test_not_idx_at_all_is_a_value_error(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(ValueError, match="junk"):
        read_idx(path)


def test_mismatched_image_and_label_counts(tmp_path):
    arrays = make_arrays()
    arrays["test_labels"] = arrays["test_labels"][:-1]
    write_set(tmp_path, arrays, gz=False)
    with pytest.raises(ValueError, match="20 images but .* has 19 labels"):
        load("mnist", root=tmp_path)


def test_label_out_of_range_in_file(tmp_path):
    arrays = make_arrays()
    arrays["train_labels"][3] = 10
    write_set(tmp_path, arrays, gz=False)
    with pytest.raises(ValueError, match="label 10 out of range"):
        load("mnist", root=tmp_path)


def test_absent_set_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load("mnist", root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "download=True" in msg and "train-images-idx3-ubyte" in msg


def test_absent_fashion_mentions_apt_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load("fashion-mnist", root=tmp_path)


def test_incomplete_set_is_not_found(tmp_path):
    paths = write_set(tmp_path, make_arrays(), gz=True)
    paths["test_labels"].unlink()
    with pytest.raises(FileNotFoundError):
        load("mnist", root=tmp_path)


def test_default_paths_mlu_data_and_cache(tmp_path, monkeypatch):
    arrays = make_arrays()
    home = Path.home()  # the isolated HOME set by the autouse fixture
    write_set(home / ".cache" / "mlu" / "kmnist" / "KMNIST" / "raw", arrays, gz=True)
    ds = load("kmnist")
    assert ds.n_train == 60 and ds.class_names[:3] == ("o", "ki", "su")

    monkeypatch.setenv("MLU_DATA", str(tmp_path))
    write_set(tmp_path / "mnist", make_arrays(n_train=30), gz=False)
    assert load("mnist").n_train == 30
    assert datasets.default_search_paths("mnist")[:2] == [tmp_path / "mnist", tmp_path]
    with pytest.raises(FileNotFoundError) as info:
        load("kmnist")  # $MLU_DATA also moves the cache, so the HOME copy is not seen
    assert str(tmp_path / "kmnist") in str(info.value)


def test_download_without_torchvision_is_a_clear_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(ImportError, match=r"pip install mlu\[torch\]"):
        load("mnist", root=tmp_path, download=True)


def test_download_skipped_when_files_present(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    write_set(tmp_path / "MNIST" / "raw", make_arrays(), gz=True)
    assert load("mnist", root=tmp_path, download=True).n_train == 60


def test_test_size_ignored_with_warning_for_idx_sets(tmp_path):
    write_set(tmp_path, make_arrays(), gz=False)
    with pytest.warns(UserWarning, match="official train/test split"):
        ds = load("mnist", root=tmp_path, test_size=0.5)
    assert (ds.n_train, ds.n_test) == (60, 20)


# --------------------------------------------------------------------------- classes, subsets


def test_classes_filter_and_relabel_in_given_order(tmp_path):
    arrays = make_arrays()
    write_set(tmp_path, arrays, gz=True)
    ds = load("mnist", classes=(3, 1), root=tmp_path)
    assert ds.class_names == ("3", "1") and ds.n_classes == 2
    y_src = arrays["train_labels"]
    keep = np.flatnonzero((y_src == 3) | (y_src == 1))
    np.testing.assert_array_equal(ds.y_train, np.where(y_src[keep] == 3, 0, 1))
    np.testing.assert_array_equal(ds.X_train, arrays["train_images"][keep].reshape(-1, 12) / 255)
    assert ds.n_train == 12 and set(ds.y_train.tolist()) == {0, 1}
    te = arrays["test_labels"]
    assert ds.n_test == int(np.sum((te == 3) | (te == 1)))
    assert set(ds.y_test.tolist()) <= {0, 1}


def test_classes_by_name(tmp_path):
    write_set(tmp_path / "FashionMNIST" / "raw", make_arrays(), gz=True)
    ds = load("fashion-mnist", classes=("Trouser", "T-shirt/top"), root=tmp_path)
    assert ds.class_names == ("Trouser", "T-shirt/top")
    assert ds.n_train == 12


@pytest.mark.parametrize(
    ("classes", "match"),
    [
        ((0, 10), "out of range"),
        ((-1, 2), "out of range"),
        ((1, 1), "duplicates"),
        ((), "empty"),
        ((0.5, 1), "must be int or str"),
        ("01", "sequence"),
        (("Trousers",), "unknown class name"),
    ],
)
def test_bad_classes_rejected(classes, match):
    with pytest.raises(ValueError, match=match):
        load("digits", classes=classes)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown data set 'cifar10'.*digits, mnist"):
        load("cifar10")


def test_n_per_class_from_idx(tmp_path):
    arrays = make_arrays(n_train=100)
    write_set(tmp_path, arrays, gz=False)
    ds = load("mnist", classes=(0, 1), n_per_class=4, root=tmp_path, seed=3)
    assert ds.n_train == 8
    np.testing.assert_array_equal(np.bincount(ds.y_train), [4, 4])
    assert ds.n_test == 4  # the test set is not subsampled (classes 0 and 1 of 20)
    with pytest.raises(ValueError, match="class '0' has only 10"):
        load("mnist", classes=(0, 1), n_per_class=11, root=tmp_path)
    with pytest.raises(ValueError, match="n_per_class must be >= 1"):
        load("mnist", n_per_class=0, root=tmp_path)


# --------------------------------------------------------------------------- digits


def test_digits_default_split():
    ds = load("digits")
    assert ds.n_train + ds.n_test == 1797
    assert (ds.n_train, ds.n_test) == (1347, 450)
    assert ds.n_features == 64 and ds.n_classes == 10 and ds.name == "digits"
    assert ds.X_train.dtype == np.float64 and ds.X_train.flags.c_contiguous
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0
    assert ds.y_train.dtype == np.int64
    # Stratified: every class's test share is within one sample of 25%.
    full = np.bincount(np.concatenate([ds.y_train, ds.y_test]))
    np.testing.assert_array_equal(full, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert np.all(np.abs(np.bincount(ds.y_test) - 0.25 * full) <= 1)


def test_digits_is_seeded():
    a, b, c = load("digits", seed=0), load("digits", seed=0), load("digits", seed=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)


def test_digits_binary_and_test_size():
    ds = load("digits", classes=(0, 1), test_size=0.5)
    assert ds.class_names == ("0", "1")
    assert ds.n_train + ds.n_test == 178 + 182
    assert ds.n_test == 180
    assert set(np.unique(ds.y_train).tolist()) == {0, 1}
    same = load("digits", classes=np.array([0, 1]), test_size=0.5)
    np.testing.assert_array_equal(same.X_train, ds.X_train)


def test_digits_n_per_class():
    ds = load("digits", classes=(7, 2, 5), n_per_class=50, seed=4)
    assert ds.n_train == 150 and ds.class_names == ("7", "2", "5")
    np.testing.assert_array_equal(np.bincount(ds.y_train), [50, 50, 50])
    assert ds.n_test == 135  # ceil(0.25 * (179 + 177 + 182)), not subsampled
    with pytest.raises(ValueError, match="only"):
        load("digits", n_per_class=1000)


# --------------------------------------------------------------------------- from_arrays


def test_from_arrays_wraps_and_copies():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 2, 1, 2])
    ds = from_arrays(X, y, X[:2], y[:2], class_names=("a", "b", "c"))
    assert ds.X_train.dtype == np.float64 and ds.X_train.flags.c_contiguous
    assert ds.y_train.dtype == np.int64
    assert ds.class_names == ("a", "b", "c") and ds.n_classes == 3 and ds.name == "arrays"
    np.testing.assert_array_equal(ds.X_test, X[:2])
    X[0, 0] = 99.0
    assert ds.X_train[0, 0] == 0.0  # owns a copy


def test_from_arrays_defaults():
    ds = from_arrays(np.ones((3, 2)), [0, 1, 3])
    assert ds.class_names == ("0", "1", "2", "3")
    assert ds.X_test.shape == (0, 2) and ds.y_test.shape == (0,)
    assert "n_train=3" in repr(ds)
    with pytest.raises(AttributeError):
        ds.name = "other"  # frozen


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"X_train": np.ones(3), "y_train": [0, 1, 0]}, "2-D"),
        ({"X_train": np.ones((3, 2)), "y_train": [0, 1]}, "3 rows but y_train has 2"),
        ({"X_train": np.ones((3, 2)), "y_train": [0, 1.5, 0]}, "integer"),
        ({"X_train": np.ones((3, 2)), "y_train": [0, -1, 0]}, "negative"),
        ({"X_train": np.ones((3, 2)), "y_train": [[0, 1, 0]]}, "1-D"),
        ({"X_train": [[np.nan, 1.0]], "y_train": [0]}, "NaN"),
        ({"X_train": np.ones((3, 2)), "y_train": [0, 1, 2], "class_names": ("a", "b")}, "no name"),
        ({"X_train": np.ones((1, 2)), "y_train": [0], "X_test": np.ones((1, 2))}, "both"),
        (
            {"X_train": np.ones((1, 2)), "y_train": [0], "X_test": np.ones((1, 3)), "y_test": [0]},
            "3 features but X_train has 2",
        ),
    ],
)
def test_from_arrays_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        from_arrays(**kwargs)


# --------------------------------------------------------------------------- real Fashion-MNIST

needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"{FASHION_DIR} absent (apt-get install dataset-fashion-mnist)",
)


@needs_fashion
def test_real_fashion_mnist():
    ds = load("fashion-mnist")
    assert (ds.n_train, ds.n_test, ds.n_features, ds.n_classes) == (60000, 10000, 784, 10)
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0
    assert ds.X_test.min() >= 0.0 and ds.X_test.max() <= 1.0
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


@needs_fashion
def test_real_fashion_idx_reader():
    # Speed is measured in benchmarks/, not here; the values against a plain decode.
    path = FASHION_DIR / "train-images-idx3-ubyte.gz"
    images = read_idx(path, datasets.IMAGES_MAGIC)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    raw = gzip.decompress(path.read_bytes())
    expected = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(60000, 28, 28)
    np.testing.assert_array_equal(images, expected)


@needs_fashion
def test_real_fashion_binary_subset_is_seeded():
    a = load("fashion-mnist", classes=(0, 1), n_per_class=1000, seed=0)
    assert a.n_train == 2000 and a.X_train.shape == (2000, 784)
    np.testing.assert_array_equal(np.bincount(a.y_train), [1000, 1000])
    assert set(np.unique(a.y_train).tolist()) == {0, 1}
    assert a.class_names == ("T-shirt/top", "Trouser")
    assert a.n_test == 2000  # test set: all of classes 0 and 1
    b = load("fashion-mnist", classes=(0, 1), n_per_class=1000, seed=0)
    c = load("fashion-mnist", classes=(0, 1), n_per_class=1000, seed=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.X_train, c.X_train)
    np.testing.assert_array_equal(a.X_test, c.X_test)  # the test set does not depend on seed


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    # A stand-in for torchvision.datasets that "downloads" by writing the raw files
    # where torchvision leaves them, so the glue is tested without a network.
    calls = []

    class FakeMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            write_set(Path(root) / "MNIST" / "raw", make_arrays(), gz=True)

    fake = types.ModuleType("torchvision.datasets")
    fake.MNIST = FakeMNIST
    parent = types.ModuleType("torchvision")
    parent.datasets = fake
    monkeypatch.setitem(sys.modules, "torchvision", parent)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake)

    ds = load("mnist", root=tmp_path / "new", download=True)
    assert calls == [(str(tmp_path / "new"), False, True)]
    assert ds.n_train == 60 and ds.n_test == 20
    ds = load("mnist", download=True)  # root None: into ~/.cache/mlu/mnist
    assert calls[-1][0] == str(Path.home() / ".cache" / "mlu" / "mnist")
    assert load("mnist").n_train == 60  # found there afterwards without download


def test_files_agree_with_torchvision_reader(tmp_path):
    # Pins our IDX reader and layout against torchvision's own (skipped without it).
    tv = pytest.importorskip("torchvision.datasets")
    arrays = make_arrays()
    write_set(tmp_path / "MNIST" / "raw", arrays, gz=False)
    ours = load("mnist", root=tmp_path)
    theirs = tv.MNIST(str(tmp_path), train=True, download=False)
    np.testing.assert_array_equal(ours.X_train * 255, theirs.data.numpy().reshape(60, -1))
    np.testing.assert_array_equal(ours.y_train, theirs.targets.numpy())


def test_classes_all_as_on_the_command_line():
    every = load("digits")
    spelled = load("digits", classes="all")
    np.testing.assert_array_equal(spelled.y_train, every.y_train)
    np.testing.assert_array_equal(spelled.X_train, every.X_train)
    assert len(spelled.class_names) == 10
