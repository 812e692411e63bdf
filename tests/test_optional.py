"""Optional dependencies (mlu/_optional.py): a missing one names the extra that installs it."""

from __future__ import annotations

import sys
import types

import pytest

from mlu import _optional


@pytest.mark.parametrize(
    "module,extra", [("matplotlib.pyplot", "plot"), ("cleanlab.filter", "cleanlab")]
)
def test_missing_dependency_names_its_extra(monkeypatch, module, extra):
    top = module.partition(".")[0]
    for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, top, None)  # import of `top` now fails as if absent
    with pytest.raises(ImportError, match=rf'the demo needs {top}.*pip install "mlu\[{extra}\]"'):
        _optional.import_optional(module, "the demo")


def test_present_dependency_is_imported(monkeypatch):
    fake = types.ModuleType("tqdm")
    monkeypatch.setitem(sys.modules, "tqdm", fake)
    assert _optional.import_optional("tqdm", "x") is fake


def test_without_tqdm_there_is_no_bar(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert _optional.progress_bar(total=3) is None
