"""The package's version: written once, in pyproject.toml (a module of its own, so that any
module can read it without a cycle).

An installed mlu reads it from its metadata (:mod:`importlib.metadata`); a source tree used
through ``PYTHONPATH`` (``tools/dev-build``) has no metadata, or would find that of another
installed copy, so there it is read from the tree's own pyproject.toml.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

__all__ = ["__version__", "version"]

_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"  # <root>/python/mlu/


def _from_source_tree() -> str | None:
    try:
        text = _PYPROJECT.read_text(encoding="utf-8")
    except OSError:
        return None
    # The [project] table's name and version (tomllib is Python >= 3.11 only).
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if project is None or not re.search(r'^name\s*=\s*"mlu"\s*$', project.group(1), re.M):
        return None
    found = re.search(r'^version\s*=\s*"([^"]+)"\s*$', project.group(1), re.M)
    return found.group(1) if found else None


def version() -> str:
    """The version of this copy of mlu.

    Returns
    -------
    str
        From the source tree's pyproject.toml if this copy lives in one, else from the
        installed metadata, else ``"0+unknown"``.
    """
    found = _from_source_tree()
    if found is not None:
        return found
    try:
        return metadata.version("mlu")
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__: str = version()
