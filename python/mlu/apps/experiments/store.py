"""Files of a sweep: the cell store (one JSON file per cell), CSV and JSON writers, versions.

Every write is atomic (:mod:`mlu._files`), so an interrupted sweep never leaves a torn file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..._files import atomic_write_text
from ..._version import __version__

__all__ = ["CellStore", "atomic_write_json", "versions", "write_csv"]


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _sanitize(obj):
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    text = json.dumps(_sanitize(json.loads(json.dumps(data, default=_json_default))), indent=1)
    atomic_write_text(path, text + "\n")


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write rows (dicts) as CSV with the union of their keys, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def _csv_value(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def versions() -> dict[str, str]:
    """Versions of mlu, Python, NumPy, the platform (and torch if importable)."""
    from ...engine.model import get_num_threads

    out = {
        "mlu": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    for mod in ("scipy", "sklearn", "cleanlab", "matplotlib"):
        with contextlib.suppress(Exception):
            out[mod] = __import__(mod).__version__
    try:
        import torch

        out["torch"] = torch.__version__
    except Exception:  # not installed, or broken: either way not part of the run
        out["torch"] = None
    with contextlib.suppress(Exception):
        out["threads"] = str(get_num_threads())
    return out


def _cell_name(dataset: str, ratio: float, seed: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset)
    return f"{safe}_r{ratio * 100:g}_s{seed}"


class CellStore:
    """One JSON file per finished cell in a directory; written atomically.

    Parameters
    ----------
    root : path
        The ``cells`` directory (created on the first save).
    fingerprint : str
        The configuration's :meth:`ExperimentConfig.fingerprint`; a stored cell with another
        fingerprint counts as missing.
    """

    def __init__(self, root: str | os.PathLike, fingerprint: str):
        self.root = Path(root)
        self.fingerprint = fingerprint

    def path(self, dataset: str, ratio: float, seed: int) -> Path:
        return self.root / f"{_cell_name(dataset, ratio, seed)}.json"

    def load(self, dataset: str, ratio: float, seed: int) -> dict | None:
        """The stored cell, or None if absent, unreadable or computed with other settings."""
        p = self.path(dataset, ratio, seed)
        try:
            cell = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if cell.get("fingerprint") != self.fingerprint:
            return None
        return cell

    def save(self, cell: dict) -> Path:
        p = self.path(cell["dataset"], cell["ratio"], cell["seed"])
        atomic_write_json(p, {**cell, "fingerprint": self.fingerprint})
        return p
