"""Data sets for the experiments: scikit-learn's digits and the MNIST-format image sets.

Every loader returns a :class:`Dataset` with float64 features in ``[0, 1]`` (images
flattened row by row, C-contiguous) and int64 labels ``0 .. k-1``.

``"digits"`` is bundled with scikit-learn and always works offline. ``"mnist"``,
``"fashion-mnist"`` and ``"kmnist"`` are read from their four IDX files, which are
looked up on disk (see :func:`load`) or fetched through torchvision with
``download=True``.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..engine._validation import as_class_ids

__all__ = [
    "Dataset",
    "IdxSpec",
    "REGISTRY",
    "available",
    "default_search_paths",
    "from_arrays",
    "load",
    "read_idx",
]

PathLike = Union[str, "os.PathLike[str]"]

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims (n, rows, cols)
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim (n,)

# IDX type code (third magic byte) -> big-endian dtype
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The four files of an MNIST-format set, in the names every distributor uses.
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_DIGITS_TEST_SIZE = 0.25


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split with its class names.

    The dataclass is frozen (attributes cannot be reassigned); the arrays themselves
    are ordinary writeable NumPy arrays owned by this object.

    Attributes
    ----------
    X_train : ndarray of float64, shape (n_train, n_features)
        Training features, C-contiguous.
    y_train : ndarray of int64, shape (n_train,)
        Training labels in ``0 .. n_classes-1``.
    X_test : ndarray of float64, shape (n_test, n_features)
        Test features, C-contiguous; ``n_test`` may be 0.
    y_test : ndarray of int64, shape (n_test,)
        Test labels in ``0 .. n_classes-1``.
    class_names : tuple of str, length n_classes
        ``class_names[j]`` is the name of label ``j``.
    name : str
        Name of the source data set (``"digits"``, ``"mnist"``, ..., or ``"arrays"``).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    name: str

    @property
    def n_features(self) -> int:
        """Number of features per sample (784 for 28x28 images)."""
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(self.X_test.shape[0])

    def __repr__(self) -> str:
        # The default repr would print the whole arrays.
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"n_features={self.n_features}, class_names={self.class_names!r})"
        )


@dataclass(frozen=True)
class IdxSpec:
    """How to find one MNIST-format data set.

    Attributes
    ----------
    torchvision_class : str
        Name of the ``torchvision.datasets`` class; it is also the folder torchvision
        creates under its root (``<root>/<torchvision_class>/raw/``).
    class_names : tuple of str
        Names of labels ``0 .. 9``.
    system_dirs : tuple of str
        Extra directories (e.g. from an OS package) searched when ``root`` is None.
    system_hint : str
        How to install it from the OS, or "" if there is no package.
    """

    torchvision_class: str
    class_names: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    system_hint: str = ""


#: MNIST-format data sets known to :func:`load`, one line each.
REGISTRY: dict[str, IdxSpec] = {
    "mnist": IdxSpec("MNIST", tuple(str(d) for d in range(10))),
    "fashion-mnist": IdxSpec(
        "FashionMNIST",
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        system_hint="apt-get install dataset-fashion-mnist",
    ),
    "kmnist": IdxSpec("KMNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
}

_DIGITS_CLASS_NAMES = tuple(str(d) for d in range(10))


def available() -> tuple[str, ...]:
    """Names accepted by :func:`load`.

    Returns
    -------
    tuple of str
        ``"digits"`` followed by the keys of :data:`REGISTRY`.
    """
    return ("digits", *REGISTRY)


# --------------------------------------------------------------------------- IDX reading


def read_idx(path: PathLike, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array.

    Parameters
    ----------
    path : str or path-like
        The file; gzip compression is detected from its first bytes, not its name.
    magic : int, optional
        Expected 32-bit magic number, e.g. ``0x00000803`` for uint8 images of shape
        ``(n, rows, cols)`` or ``0x00000801`` for uint8 labels of shape ``(n,)``.

    Returns
    -------
    ndarray, shape given by the header
        In native byte order (uint8 for MNIST-format files).

    Raises
    ------
    ValueError
        If the file is not valid IDX, has the wrong magic number, or its size does
        not match its header (e.g. truncated); the message names the file.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX file ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if magic is not None and found != magic:
        raise ValueError(
            f"{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x}; "
            "not an IDX file of the expected kind"
        )
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file (magic number 0x{found:08x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: {what}: {len(raw)} bytes, but its header {shape} needs {expected}"
        )
    # frombuffer is zero-copy over the bytes object (read-only); astype gives a
    # writeable native-order copy.
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------- locating files


def default_search_paths(name: str) -> list[Path]:
    """Directories searched for ``name`` when ``root`` is None, in order.

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY`.

    Returns
    -------
    list of Path
        ``$MLU_DATA/<name>`` and ``$MLU_DATA`` (if the variable is set),
        ``~/.cache/mlu/<name>``, then the OS package's directory if there is one.
        Each is searched both flat and in torchvision's layout.
    """
    spec = _spec(name)
    paths: list[Path] = []
    env = os.environ.get("MLU_DATA")
    if env:
        paths += [Path(env) / name, Path(env)]
    paths.append(_cache_root(name))
    paths += [Path(d) for d in spec.system_dirs]
    return paths


def _cache_root(name: str) -> Path:
    env = os.environ.get("MLU_DATA")
    return Path(env) / name if env else Path.home() / ".cache" / "mlu" / name


def _spec(name: str) -> IdxSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown data set {name!r}; choose one of {', '.join(available())}"
        ) from None


def _candidate_dirs(roots: Sequence[Path], spec: IdxSpec) -> list[Path]:
    # Each root may hold the files flat or in the layout torchvision leaves.
    dirs: list[Path] = []
    for r in roots:
        dirs += [r, r / spec.torchvision_class / "raw"]
    return dirs


def _find_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (uncompressed preferred), or None."""
    found = {}
    for key, stem in _IDX_FILES.items():
        for candidate in (directory / stem, directory / (stem + ".gz")):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _not_found(name: str, spec: IdxSpec, searched: Sequence[Path]) -> FileNotFoundError:
    files = ", ".join(f"{s}[.gz]" for s in _IDX_FILES.values())
    ways = []
    if spec.system_hint:
        ways.append(f"install the OS package ({spec.system_hint})")
    ways += [
        "pass download=True (needs torchvision: pip install mlu[torch])",
        f"put the four IDX files ({files}) in a directory and pass it as root, "
        f"or put them in {_cache_root(name)} to be found without root",
    ]
    where = "\n  ".join(str(p) for p in searched)
    how = "\n  ".join(ways)
    return FileNotFoundError(
        f"data set {name!r} not found; looked in:\n  {where}\nTo get it:\n  {how}"
    )


def _download(name: str, spec: IdxSpec, root: Path) -> None:
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:
        raise ImportError(
            f"download=True for {name!r} needs torchvision; install it with "
            "`pip install mlu[torch]` (or `pip install torchvision`), or put the IDX "
            "files in root yourself"
        ) from exc
    root.mkdir(parents=True, exist_ok=True)
    # One construction fetches all four files; train=False keeps the load it does
    # afterwards small. We then read the raw files it leaves in <root>/<class>/raw.
    getattr(tvd, spec.torchvision_class)(root=str(root), train=False, download=True)


# --------------------------------------------------------------------------- selection


def _resolve_classes(
    classes: Sequence[int | str] | None, class_names: tuple[str, ...]
) -> list[int]:
    k = len(class_names)
    if classes is None or (isinstance(classes, str) and classes.lower() == "all"):
        return list(range(k))
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise ValueError(f"classes must be a sequence of class ids or names, got {classes!r}")
    items = list(classes)  # also accepts NumPy arrays and ranges
    ids: list[int] = []
    for c in items:
        if isinstance(c, str):
            if c not in class_names:
                raise ValueError(f"unknown class name {c!r}; names are {class_names}")
            ids.append(class_names.index(c))
        elif isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)):
            if not 0 <= c < k:
                raise ValueError(f"class id {c} out of range: this data set has classes 0..{k - 1}")
            ids.append(int(c))
        else:
            raise ValueError(f"class ids must be int or str, got {c!r}")
    if not ids:
        raise ValueError("classes is empty; pick at least one class")
    if len(set(ids)) != len(ids):
        raise ValueError(f"classes contains duplicates: {tuple(items)!r}")
    return ids


def _select_classes(y: np.ndarray, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of samples whose label is in ``ids`` and their new labels (order of ``ids``)."""
    lookup = np.full(max(int(y.max(initial=0)), max(ids)) + 1, -1, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    new = lookup[y]
    keep = np.flatnonzero(new >= 0)
    return keep, new[keep]


def _balanced_subset(
    y: np.ndarray, names: tuple[str, ...], n_per_class: int, seed: int
) -> np.ndarray:
    """Sorted indices of ``n_per_class`` random samples of each class."""
    if isinstance(n_per_class, (bool, np.bool_)) or not isinstance(n_per_class, (int, np.integer)):
        raise ValueError(f"n_per_class must be a positive int, got {n_per_class!r}")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c, class_name in enumerate(names):
        idx = np.flatnonzero(y == c)
        if idx.size < n_per_class:
            raise ValueError(
                f"n_per_class={n_per_class} but class {class_name!r} has only {idx.size} "
                "training samples"
            )
        chosen.append(rng.choice(idx, size=n_per_class, replace=False))
    # Sorting keeps the source order, so the subset does not depend on class order.
    return np.sort(np.concatenate(chosen))


def _to_features(images: np.ndarray, scale: float) -> np.ndarray:
    # np.array always copies, so the in-place scaling never touches the caller's data.
    X = np.array(images.reshape(images.shape[0], -1), dtype=np.float64, order="C")
    X /= scale
    return X


# --------------------------------------------------------------------------- loading


def load(
    name: str,
    classes: Sequence[int | str] | str | None = None,
    root: PathLike | None = None,
    download: bool = False,
    n_per_class: int | None = None,
    test_size: float | int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load a data set as float64 features in [0, 1] and int64 labels.

    Parameters
    ----------
    name : {"digits", "mnist", "fashion-mnist", "kmnist"}
        ``"digits"`` is scikit-learn's bundled 8x8 digits (1797 samples, 64 features,
        values 0..16 divided by 16); it needs no files and no network. The others are
        MNIST-format 28x28 sets (784 features, pixel values divided by 255).
    classes : sequence of int or str, optional
        Keep only these classes (in train and test), relabelled ``0 .. k-1`` in the
        order given: ``classes=(0, 1)`` is the paper's binary task, ``(1, 0)`` swaps
        the labels. Names from ``class_names`` are accepted too. Default (or ``"all"``,
        as on the command line): all classes.
    root : str or path-like, optional
        Directory holding the four IDX files (``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
        ``t10k-labels-idx1-ubyte``, each optionally ``.gz``), either flat in ``root``
        or as torchvision leaves them in ``root/<MNIST|FashionMNIST|KMNIST>/raw/``.
        If None, :func:`default_search_paths` is searched: ``$MLU_DATA/<name>``,
        ``$MLU_DATA``, ``~/.cache/mlu/<name>`` and, for fashion-mnist, Debian's
        ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
        Ignored for ``"digits"``.
    download : bool, default False
        If the files are not found, fetch them with torchvision into ``root`` (or
        ``$MLU_DATA/<name>``, else ``~/.cache/mlu/<name>``). Needs the optional
        extra ``pip install mlu[torch]``.
    n_per_class : int, optional
        Keep a balanced random subset of the *training* set with this many samples
        per (selected) class, drawn without replacement with ``seed`` and kept in the
        source order (the paper used 1000). The test set is never subsampled.
    test_size : float or int, optional
        Test fraction (or count) for ``"digits"``, which is split stratified by class
        with ``seed``; default 0.25. The MNIST-format sets always use their official
        train/test split, so ``test_size`` is ignored for them (with a warning).
    seed : int, default 0
        Seed of the digits split and of the ``n_per_class`` subset.

    Returns
    -------
    Dataset
        ``X_train`` of shape (n_train, n_features), ``y_train`` of shape (n_train,),
        ``X_test`` of shape (n_test, n_features), ``y_test`` of shape (n_test,).

    Raises
    ------
    ValueError
        Unknown name, bad ``classes`` or ``n_per_class``, or a corrupt IDX file
        (the message names the file).
    FileNotFoundError
        The files were not found; the message lists every place searched and how to
        get the data.
    ImportError
        ``download=True`` was needed but torchvision is not installed.
    """
    if name == "digits":
        return _load_digits(classes, n_per_class, test_size, seed)
    spec = _spec(name)
    if test_size is not None:
        warnings.warn(
            f"test_size is ignored for {name!r}: its official train/test split is used",
            stacklevel=2,
        )
    ids = _resolve_classes(classes, spec.class_names)

    roots = [Path(root).expanduser()] if root is not None else default_search_paths(name)
    searched = _candidate_dirs(roots, spec)
    files = next((f for d in searched if (f := _find_files(d)) is not None), None)
    if files is None and download:
        target = Path(root).expanduser() if root is not None else _cache_root(name)
        _download(name, spec, target)
        files = _find_files(target / spec.torchvision_class / "raw") or _find_files(target)
    if files is None:
        raise _not_found(name, spec, searched)

    parts = {}
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], IMAGES_MAGIC)
        labels = read_idx(files[f"{split}_labels"], LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{files[f'{split}_images']} has {images.shape[0]} images but "
                f"{files[f'{split}_labels']} has {labels.shape[0]} labels"
            )
        if labels.size and labels.max() >= len(spec.class_names):
            raise ValueError(
                f"{files[f'{split}_labels']}: label {labels.max()} out of range for "
                f"{name!r} ({len(spec.class_names)} classes)"
            )
        parts[split] = (images, labels.astype(np.int64))

    (tr_img, tr_lab), (te_img, te_lab) = parts["train"], parts["test"]
    # Select on the uint8 images first so only the kept samples become float64.
    keep, y_train = _select_classes(tr_lab, ids)
    if n_per_class is not None:
        sub = _balanced_subset(y_train, tuple(spec.class_names[i] for i in ids), n_per_class, seed)
        keep, y_train = keep[sub], y_train[sub]
    keep_te, y_test = _select_classes(te_lab, ids)
    return Dataset(
        X_train=_to_features(tr_img[keep], 255.0),
        y_train=y_train,
        X_test=_to_features(te_img[keep_te], 255.0),
        y_test=y_test,
        class_names=tuple(spec.class_names[i] for i in ids),
        name=name,
    )


def _load_digits(
    classes: Sequence[int | str] | None,
    n_per_class: int | None,
    test_size: float | int | None,
    seed: int,
) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    ids = _resolve_classes(classes, _DIGITS_CLASS_NAMES)
    keep, y = _select_classes(bunch.target.astype(np.int64), ids)
    X = bunch.data[keep]
    X_tr, X_te, y_tr, y_te = train_test_split(
        X,
        y,
        test_size=_DIGITS_TEST_SIZE if test_size is None else test_size,
        random_state=seed,
        stratify=y,
    )
    if n_per_class is not None:
        sub = _balanced_subset(y_tr, tuple(_DIGITS_CLASS_NAMES[i] for i in ids), n_per_class, seed)
        X_tr, y_tr = X_tr[sub], y_tr[sub]
    return Dataset(
        X_train=_to_features(X_tr, 16.0),
        y_train=np.ascontiguousarray(y_tr, dtype=np.int64),
        X_test=_to_features(X_te, 16.0),
        y_test=np.ascontiguousarray(y_te, dtype=np.int64),
        class_names=tuple(_DIGITS_CLASS_NAMES[i] for i in ids),
        name="digits",
    )


# --------------------------------------------------------------------------- user arrays


def _check_features(X: object, what: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {X.dtype}")
    X = np.array(X, dtype=np.float64, order="C")  # always a copy: the Dataset owns it
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return X


def from_arrays(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    name: str = "arrays",
) -> Dataset:
    """Validate arrays the user already has and wrap them in a :class:`Dataset`.

    Features are copied to C-contiguous float64 but not rescaled.

    Parameters
    ----------
    X_train : array-like, shape (n_train, n_features)
        Finite numeric features.
    y_train : array-like of int, shape (n_train,)
        Labels in ``0 .. k-1`` (integer-valued floats are accepted).
    X_test : array-like, shape (n_test, n_features), optional
        Test features; give both ``X_test`` and ``y_test`` or neither. Without them
        the test set is empty: shape (0, n_features) and (0,).
    y_test : array-like of int, shape (n_test,), optional
        Test labels.
    class_names : sequence of str, optional
        One name per class; must cover every label. Default ``"0" .. "k-1"`` with
        ``k = max label + 1``.
    name : str, default "arrays"
        Stored as ``Dataset.name``.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Wrong dimensions, mismatched lengths or feature counts, non-finite features,
        non-integer or negative labels, or labels not covered by ``class_names``.
    """
    Xtr = _check_features(X_train, "X_train")
    ytr = as_class_ids(y_train, "y_train")
    if ytr.size == 0:
        raise ValueError("the training set is empty")
    if Xtr.shape[0] != ytr.shape[0]:
        raise ValueError(f"X_train has {Xtr.shape[0]} rows but y_train has {ytr.shape[0]} labels")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if X_test is None:
        Xte = np.empty((0, Xtr.shape[1]), dtype=np.float64)
        yte = np.empty(0, dtype=np.int64)
    else:
        Xte = _check_features(X_test, "X_test")
        yte = as_class_ids(y_test, "y_test")
        if Xte.shape[0] != yte.shape[0]:
            raise ValueError(f"X_test has {Xte.shape[0]} rows but y_test has {yte.shape[0]} labels")
        if Xte.shape[1] != Xtr.shape[1]:
            raise ValueError(f"X_test has {Xte.shape[1]} features but X_train has {Xtr.shape[1]}")
    top = int(max(ytr.max(initial=-1), yte.max(initial=-1)))
    if class_names is None:
        names = tuple(str(c) for c in range(top + 1))
    else:
        if isinstance(class_names, str):
            raise ValueError("class_names must be a sequence of str, not a single str")
        names = tuple(str(c) for c in class_names)
        if top >= len(names):
            raise ValueError(f"label {top} has no name: class_names has only {len(names)} entries")
    return Dataset(Xtr, ytr, Xte, yte, names, name)
