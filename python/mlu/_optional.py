"""Optional dependencies: matplotlib (plots), cleanlab (confident learning), tqdm (progress).

They are extras of the package (``pip install "mlu[plot]"``, ``mlu[cleanlab]``,
``mlu[progress]``, or ``mlu[all]``), imported only where used: a missing one fails there
with an :class:`ImportError` that names the extra, except tqdm, whose absence only means
no progress bar.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["EXTRAS", "import_optional", "progress_bar"]

# Top-level module -> the extra that installs it.
EXTRAS = {"matplotlib": "plot", "cleanlab": "cleanlab", "tqdm": "progress"}


def import_optional(name: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it.

    Parameters
    ----------
    name : str
        The module, e.g. ``"matplotlib.pyplot"`` or ``"cleanlab.filter"``; its top-level
        package must be a key of :data:`EXTRAS`.
    purpose : str
        What needs it, for the message, e.g. ``"mlu.confident_learning"``.

    Returns
    -------
    module

    Raises
    ------
    ImportError
        If the package is not installed: the message names the extra to install.
    """
    top = name.partition(".")[0]
    extra = EXTRAS[top]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only the package itself missing is ours to explain; a broken install of one of its
        # own dependencies is re-raised as it is.
        if exc.name is None or exc.name.partition(".")[0] != top:
            raise
        raise ImportError(
            f"{purpose} needs {top}, an optional dependency of mlu: "
            f'pip install "mlu[{extra}]" (or "mlu[all]")'
        ) from exc


def progress_bar(**kwargs: Any) -> Any | None:
    """A ``tqdm.auto.tqdm(**kwargs)`` bar, or None when tqdm is not installed.

    Parameters
    ----------
    **kwargs
        Passed to tqdm (``iterable``, ``total``, ``desc``, ``unit``, ...).

    Returns
    -------
    tqdm or None
        None: run without a bar (tqdm is optional; its absence is silently fine).
    """
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(**kwargs)
