"""Reading a user's own data set and model from files, for ``mlu clean`` and ``mlu run --data``.

Data files (:func:`load_data`):

- ``.npz`` with arrays ``X`` (``(n, d)`` features or ``(n, H, W)`` images) and ``y`` (labels);
- ``.csv`` / ``.parquet`` with one column of labels (``label=NAME``) and numeric feature columns;
- an IDX pair (the MNIST format, gzipped or not): the images file, with the labels file found
  beside it (``images`` → ``labels`` in the name, as in ``train-images-idx3-ubyte``) or given.

Labels may be strings or integers; images are flattened and their shape kept for pictures.
``uint8`` features (pixels) are scaled to [0, 1], as :func:`mlu.datasets.load` does.

Models (:func:`load_model`): an mlu ``.npz`` (:func:`mlu.engine.io.save_model`), or a PyTorch
``nn.Sequential`` saved as a state dict (``torch.save(net.state_dict(), path)``), read with
``torch.load(weights_only=True)``: tensors only, never code.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.model import MLP
from .datasets import Dataset, read_idx

__all__ = [
    "UserData",
    "TorchSource",
    "from_arrays",
    "load_data",
    "load_model",
    "save_torch_state_dict",
    "is_data_file",
    "to_dataset",
]

_TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@dataclass(frozen=True)
class UserData:
    """A labelled data set read from a file.

    Attributes
    ----------
    X : ndarray, shape (n, d)
        Float64 features (images flattened row by row).
    y : ndarray, shape (n,)
        The given labels, as in the file (int or str).
    image_shape : tuple of int or None
        ``(H, W)`` when the samples are images, else None.
    source : str
        What was read, for reports.
    feature_names : tuple of str or None
        Column names of a table.
    flipped : ndarray of bool, shape (n,), or None
        Which labels are known to be wrong, when the file says so (an array ``flipped`` or
        ``y_true`` in a ``.npz``, a column ``true_label`` of a table): lets a report give the
        suspects' precision and recall. Never used to find them.
    """

    X: np.ndarray
    y: np.ndarray
    image_shape: tuple[int, int] | None
    source: str
    feature_names: tuple[str, ...] | None = None
    flipped: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


@dataclass(frozen=True)
class TorchSource:
    """Where a model read from a PyTorch state dict came from, to write the fixed one back.

    Attributes
    ----------
    keys : list of (str, str)
        The (weight, bias) keys of every Linear layer, in order.
    dtype : str
        The tensors' dtype (e.g. ``"float32"``).
    """

    keys: list[tuple[str, str]]
    dtype: str


def _features(X: np.ndarray, what: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Check features, flatten images, scale uint8 pixels: (X float64 (n, d), image shape)."""
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{what}: features must be numeric, got dtype {X.dtype}")
    if X.ndim not in (2, 3):
        raise ValueError(
            f"{what}: features must be (n, d) or images (n, H, W), got shape {X.shape}"
        )
    image_shape = (int(X.shape[1]), int(X.shape[2])) if X.ndim == 3 else None
    scale = 255.0 if X.dtype == np.uint8 else 1.0
    flat = np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=np.float64) / scale
    if flat.shape[0] == 0 or flat.shape[1] == 0:
        raise ValueError(f"{what}: no samples or no features (shape {X.shape})")
    bad = ~np.isfinite(flat)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{what}: features contain NaN or inf ({int(bad.any(axis=1).sum())} row(s); first "
            f"at row {row}, feature {col}); drop or impute them first"
        )
    return flat, image_shape


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{what}: labels must be 1-D, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{what}: {n} samples but {y.shape[0]} labels")
    if y.dtype.kind == "O":
        y = y.astype(str)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise ValueError(f"{what}: float labels must be whole numbers (no NaN)")
        y = y.astype(np.int64)
    if y.dtype.kind not in "biuU":
        raise ValueError(f"{what}: labels must be integers or strings, got dtype {y.dtype}")
    if y.dtype.kind == "U" and (y == "").any():
        raise ValueError(f"{what}: {int((y == '').sum())} empty label(s)")
    if len(np.unique(y)) < 2:
        raise ValueError(f"{what}: need at least two classes, got {np.unique(y).tolist()}")
    return y


def _known_flips(y: np.ndarray, flipped, y_true, what: str) -> np.ndarray | None:
    if flipped is not None and y_true is not None:
        raise ValueError(f"{what}: give 'flipped' or 'y_true', not both")
    if flipped is not None:
        flipped = np.asarray(flipped)
        if flipped.dtype != bool or flipped.shape != y.shape:
            raise ValueError(f"{what}: 'flipped' must be a bool mask of shape {y.shape}")
        return flipped.copy()
    if y_true is not None:
        y_true = np.asarray(y_true)
        if y_true.shape != y.shape:
            raise ValueError(f"{what}: 'y_true' must have shape {y.shape}, got {y_true.shape}")
        return np.asarray(y_true != y)
    return None


def from_arrays(
    X,
    y,
    image_shape: tuple[int, int] | None = None,
    flipped=None,
    source: str = "arrays",
) -> UserData:
    """Check arrays the caller already has, as :func:`load_data` checks a file's.

    Parameters
    ----------
    X : array-like, shape (n, d) or (n, H, W)
        Features or images (``uint8`` is scaled to [0, 1]).
    y : array-like, shape (n,)
        Labels, int or str.
    image_shape : (H, W), optional
        For flat features that are images (``H * W == d``).
    flipped : array-like of bool, shape (n,), optional
        Labels known to be wrong (for reports only).
    source : str
        A description for reports.

    Returns
    -------
    UserData
    """
    X, shape = _features(np.asarray(X), source)
    if image_shape is not None:
        image_shape = (int(image_shape[0]), int(image_shape[1]))
        if image_shape[0] * image_shape[1] != X.shape[1]:
            raise ValueError(
                f"{source}: image_shape {image_shape} does not fit {X.shape[1]} features"
            )
        shape = image_shape
    labels = _labels(np.asarray(y), X.shape[0], source)
    return UserData(X, labels, shape, source, None, _known_flips(labels, flipped, None, source))


def _load_npz(path: Path) -> UserData:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise ValueError(f"{path}: cannot read without unpickling ({exc})") from exc
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise ValueError(
            f"{path}: needs arrays 'X' and 'y'; missing {missing}, has {sorted(arrays)}"
        )
    X, image_shape = _features(arrays["X"], str(path))
    y = _labels(arrays["y"], X.shape[0], str(path))
    flipped = _known_flips(y, arrays.get("flipped"), arrays.get("y_true"), str(path))
    return UserData(X, y, image_shape, str(path), None, flipped)


def _load_table(path: Path, label: str | None, true_label: str | None) -> UserData:
    import pandas as pd

    if label is None:
        raise ValueError(f"{path}: a table needs the name of its label column (--label NAME)")
    frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    if label not in frame.columns:
        raise ValueError(
            f"{path}: no label column {label!r}; the columns are {list(map(str, frame.columns))}"
        )
    y = frame[label]
    if y.isna().any():
        raise ValueError(f"{path}: {int(y.isna().sum())} missing label(s) in column {label!r}")
    y_true = None
    if true_label is not None:
        if true_label not in frame.columns:
            raise ValueError(f"{path}: no column {true_label!r} of true labels")
        y_true = frame[true_label].to_numpy()
        y_true = y_true.astype(str) if y_true.dtype.kind == "O" else y_true
    features = frame.drop(columns=[label] + ([true_label] if true_label is not None else []))
    if features.shape[1] == 0:
        raise ValueError(f"{path}: no feature columns besides {label!r}")
    text = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if text:
        raise ValueError(f"{path}: feature columns must be numeric; not numeric: {text[:5]}")
    values = y.to_numpy()
    labels = values.astype(str) if values.dtype.kind == "O" else values
    X, _ = _features(features.to_numpy(dtype=np.float64), str(path))
    names = tuple(str(c) for c in features.columns)
    y = _labels(labels, X.shape[0], str(path))
    flipped = _known_flips(y, None, y_true, str(path))
    return UserData(X, y, None, str(path), names, flipped)


def _is_idx(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head[:2] == b"\x1f\x8b" or (len(head) == 4 and head[:2] == b"\x00\x00")


def _idx_labels_path(images: Path) -> Path:
    if "images" not in images.name:
        raise ValueError(
            f"{images}: cannot find the labels of an IDX images file whose name lacks "
            "'images'; give the labels file too"
        )
    candidate = images.with_name(images.name.replace("images", "labels"))
    for path in (candidate, candidate.with_name(re.sub(r"idx3", "idx1", candidate.name))):
        if path.exists():
            return path
    raise FileNotFoundError(f"{images}: no labels file beside it (looked for {candidate.name})")


def _load_idx(images: Path, labels: Path | None) -> UserData:
    labels = labels if labels is not None else _idx_labels_path(images)
    X, image_shape = _features(read_idx(images), str(images))
    y = read_idx(labels)
    return UserData(X, _labels(y, X.shape[0], str(labels)), image_shape, f"{images} + {labels}")


def load_data(
    path: str | os.PathLike,
    label: str | None = None,
    labels_path: str | os.PathLike | None = None,
    true_label: str | None = None,
) -> UserData:
    """Read a labelled data set from a file.

    Parameters
    ----------
    path : path
        A ``.npz`` (arrays ``X``, ``y``), ``.csv`` or ``.parquet`` (with ``label``), or an IDX
        images file.
    label : str, optional
        Name of the label column of a table.
    labels_path : path, optional
        The IDX labels file (default: found beside the images file).
    true_label : str, optional
        A table's column of true labels, when known (for the report's precision only; it
        is not a feature).

    Returns
    -------
    UserData

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Unknown format, a missing array or column, non-numeric or non-finite features,
        labels that do not match the samples, or fewer than two classes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix in _TABLE_SUFFIXES:
        return _load_table(path, label, true_label)
    if _is_idx(path):
        return _load_idx(path, Path(labels_path) if labels_path is not None else None)
    raise ValueError(
        f"{path}: unknown data format; expected .npz (X, y), .csv/.parquet with --label, or "
        "an IDX images file"
    )


def _state_dict_layers(state: dict[str, Any], path: Path) -> tuple[list, list, str]:
    """(W, b) float64 layers, their keys and dtype from a Sequential's state dict."""
    import torch

    weights = []
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: not a state dict of tensors (entry {key!r})")
        if key.endswith(".weight"):
            weights.append(key)
    if not weights:
        raise ValueError(f"{path}: the state dict has no '<layer>.weight' entries")
    layers, keys = [], []
    for w_key in weights:
        b_key = w_key[: -len("weight")] + "bias"
        W, b = state[w_key], state.get(b_key)
        if W.ndim != 2 or b is None or b.shape != (W.shape[0],):
            raise ValueError(
                f"{path}: {w_key!r} is not a Linear layer with a bias (mlu models are Linear "
                "layers with biases and activations between them)"
            )
        layers.append(
            (
                W.detach().to(torch.float64).numpy().copy(),
                b.detach().to(torch.float64).numpy().copy(),
            )
        )
        keys.append((w_key, b_key))
    extra = set(state) - {k for pair in keys for k in pair}
    if extra:
        raise ValueError(f"{path}: entries that are not Linear layers: {sorted(extra)[:5]}")
    dtypes = {str(state[k].dtype).removeprefix("torch.") for pair in keys for k in pair}
    if len(dtypes) != 1:
        raise ValueError(f"{path}: the layers mix dtypes {sorted(dtypes)}")
    return layers, keys, dtypes.pop()


def load_model(
    path: str | os.PathLike,
    hidden: tuple[int, ...] | None = None,
    activation: str | tuple[str, ...] = "relu",
    classes=None,
) -> tuple[MLP, TorchSource | None]:
    """Read a trained model: an mlu ``.npz`` or a PyTorch ``nn.Sequential`` state dict.

    Parameters
    ----------
    path : path
        ``.npz`` written by :func:`mlu.engine.io.save_model`, or a ``torch.save``-d state dict of an
        ``nn.Sequential`` of ``Linear`` layers and activations (``.pt``, ``.pth``, ``.bin``).
    hidden : tuple of int, optional
        The hidden widths the state dict must have (checked; read from the weights if None).
    activation : str or tuple of str
        The state dict's activation(s): one for all hidden layers or one per hidden layer
        (a state dict does not record them).
    classes : array-like, shape (k,), optional
        The labels of the state dict's k outputs (default ``0 .. k-1``).

    Returns
    -------
    model : MLP
    source : TorchSource or None
        For a state dict: its keys and dtype, to write the fixed model back with
        :func:`save_torch_state_dict`.

    Raises
    ------
    ValueError
        Not a state dict (e.g. a pickled module, which is refused rather than unpickled),
        layers that do not chain, or hidden widths other than ``hidden``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    if path.suffix.lower() == ".npz":
        from ..engine.io import load_model as load_npz

        return load_npz(path), None
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"{path}: reading a PyTorch state dict needs PyTorch installed") from exc
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it then refuses anyway; the error says it all
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: not a plain state dict
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path}: not a PyTorch state dict of tensors (loading with weights_only=True, which "
            f"never runs pickled code, failed: {first}); save one with "
            "torch.save(model.state_dict(), path)"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(
            f"{path}: expected a state dict (a dict of tensors), got {type(state).__name__}; save "
            "one with torch.save(model.state_dict(), path)"
        )
    layers, keys, dtype = _state_dict_layers(state, path)
    widths = tuple(W.shape[0] for W, _ in layers[:-1])
    if hidden is not None and tuple(hidden) != widths:
        raise ValueError(f"{path}: the state dict has hidden widths {widths}, not {tuple(hidden)}")
    try:
        model = MLP.from_layers(layers, activation=activation, classes=classes)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    model.torch_dtype_ = dtype
    return model, TorchSource(keys, dtype)


def save_torch_state_dict(model: MLP, source: TorchSource, path: str | os.PathLike) -> None:
    """Write ``model``'s layers as a state dict with the keys and dtype of ``source``.

    Parameters
    ----------
    model : MLP
        A model with the layer sizes of the state dict it came from.
    source : TorchSource
        From :func:`load_model`.
    path : path
        Where to ``torch.save`` the state dict.
    """
    import torch

    dtype = getattr(torch, source.dtype)
    state = {}
    for (W, b), (w_key, b_key) in zip(model.layers, source.keys):
        state[w_key] = torch.from_numpy(W).to(dtype)
        state[b_key] = torch.from_numpy(b).to(dtype)
    torch.save(state, Path(path))


def is_data_file(name: str) -> bool:
    """Whether a data set name is a file :func:`load_data` reads (rather than a known name)."""
    path = Path(name)
    return path.suffix.lower() in (".npz", *_TABLE_SUFFIXES) or (path.is_file() and _is_idx(path))


def to_dataset(
    data: UserData,
    classes=None,
    n_per_class: int | None = None,
    test_size: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """A user's data as a train/test :class:`mlu.datasets.Dataset` (for ``mlu run --data``).

    Parameters
    ----------
    data : UserData
    classes : sequence of str or int, optional
        Keep these classes (names as in the file, or positions in the sorted names), relabelled
        ``0 .. k-1`` in the order given. Default: all, in sorted order.
    n_per_class : int, optional
        At most this many training samples per class (seeded choice); default all.
    test_size : float
        Fraction of each class held out as the test set (seeded, stratified).
    seed : int

    Returns
    -------
    Dataset
        Float64 features as read, int64 labels, ``class_names`` the labels as strings.
    """
    from sklearn.model_selection import train_test_split

    uniq = np.unique(data.y)  # natural order: 2 before 10 for integer labels
    labels = np.searchsorted(uniq, data.y)
    names = [str(c) for c in uniq]
    if classes is not None:
        ids = []
        for c in classes:
            if str(c) in names:
                ids.append(names.index(str(c)))
            elif isinstance(c, (int, np.integer)) and 0 <= int(c) < len(names):
                ids.append(int(c))
            else:
                raise ValueError(f"unknown class {c!r}; the file's classes are {names}")
        if len(set(ids)) != len(ids) or not ids:
            raise ValueError(f"classes must be distinct and not empty, got {list(classes)}")
        lookup = np.full(len(names), -1)
        lookup[ids] = np.arange(len(ids))
        keep = np.flatnonzero(lookup[labels] >= 0)
        X, y, names = data.X[keep], lookup[labels[keep]], [names[i] for i in ids]
    else:
        X, y = data.X, labels
    counts = np.bincount(y, minlength=len(names))
    if counts.min() < 2:
        raise ValueError(f"every class needs at least 2 samples to split; counts {counts.tolist()}")
    train, test = train_test_split(
        np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y
    )
    train = np.sort(train)
    if n_per_class is not None:
        rng = np.random.default_rng(seed)
        chosen = [
            rng.choice(idx, size=min(int(n_per_class), idx.size), replace=False)
            for idx in (train[y[train] == c] for c in range(len(names)))
        ]
        train = np.sort(np.concatenate(chosen))
    test = np.sort(test)
    return Dataset(
        np.ascontiguousarray(X[train]),
        y[train].astype(np.int64),
        np.ascontiguousarray(X[test]),
        y[test].astype(np.int64),
        tuple(names),
        data.source,
    )
