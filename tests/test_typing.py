"""The typed face: py.typed ships, and _core.pyi describes the compiled core name for name.

mypy's stubtest does this more thoroughly but takes minutes; this reads the signatures
pybind11 writes into every docstring and compares names and parameter names with the stub.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import mlu
from mlu import _core

PACKAGE = Path(mlu.__file__).parent
STUB = PACKAGE / "_core.pyi"


def _split_top_level(text: str) -> list[str]:
    """Split a parameter list at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:])
    return [p.strip() for p in parts]


def _runtime_params(obj: object) -> list[str]:
    """Parameter names from pybind11's signature line, ``name(a: T, b: U) -> R``."""
    first = (obj.__doc__ or "").lstrip().splitlines()[0]
    inside = first[first.index("(") + 1 : first.rindex(")")]
    names = [p.split(":")[0].split("=")[0].strip() for p in _split_top_level(inside)]
    return [n for n in names if n != "self"]


def _stub_params(fn: ast.FunctionDef) -> list[str]:
    return [a.arg for a in fn.args.posonlyargs + fn.args.args if a.arg != "self"]


def _stub() -> tuple[dict[str, ast.FunctionDef], dict[str, ast.ClassDef]]:
    tree = ast.parse(STUB.read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    return functions, classes


def _runtime_public() -> set[str]:
    return {
        name
        for name, value in vars(_core).items()
        if not name.startswith("_") and (callable(value) or inspect.isclass(value))
    }


def test_package_is_marked_typed():
    assert (PACKAGE / "py.typed").is_file()
    assert STUB.is_file()


def test_stub_names_are_the_modules():
    functions, classes = _stub()
    assert set(functions) | set(classes) == _runtime_public()


@pytest.mark.parametrize("name", sorted(_stub()[0]))
def test_stub_function_parameters(name):
    functions, _ = _stub()
    assert _stub_params(functions[name]) == _runtime_params(getattr(_core, name))


def test_stub_hessian_operator_methods():
    _, classes = _stub()
    stub_cls = classes["HessianOperator"]
    methods = {n.name: n for n in stub_cls.body if isinstance(n, ast.FunctionDef)}
    runtime = {
        name
        for name, value in vars(_core.HessianOperator).items()
        if not name.startswith("_") or name == "__init__"
    }
    assert set(methods) == runtime
    for name, fn in methods.items():
        value = getattr(_core.HessianOperator, name)
        if isinstance(value, property):
            assert any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list), (
                name
            )
            continue
        assert _stub_params(fn) == _runtime_params(value), name


def test_stub_exception_is_a_linalg_error():
    _, classes = _stub()
    assert "NotPositiveDefiniteError" in classes
    assert issubclass(_core.NotPositiveDefiniteError, np.linalg.LinAlgError)
