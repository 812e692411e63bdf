"""The package's layering, read from its source with ``ast``.

Every import of a module of ``mlu`` (at module level and inside functions) is an edge of the
import graph; the graph must have no cycle, so that each module can be read, tested and replaced
on top of the ones below it (docs/design.md, "Module map"). No module may use another module's
private (``_underscore``) names; private modules such as ``_core``, ``_validation``, ``_linalg``
and ``_files`` are the package's own and may be imported anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "mlu"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        out[_module_name(path)] = (path, ast.parse(path.read_text(), filename=str(path)))
    return out


MODULES = _modules()
# Compiled private modules (the C++ core) have no source to parse but are modules all the same;
# mlu._core is the name under which mlu/_isa.py registers the build of the core
# (_core_baseline, _core_x86_64_v3) that this CPU runs.
# Compiled modules are known by their type stubs too, so that a source tree that is not built
# (CI reads the checkout, the built package lives in site-packages) has the same graph.
EXTENSIONS = {
    "mlu." + path.name.split(".")[0]
    for path in PACKAGE.iterdir()
    if path.suffix in (".so", ".pyd", ".pyi")
} | {"mlu._core"}


def _is_package(name: str) -> bool:
    return MODULES[name][0].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module name an ``ImportFrom`` reads from."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(importer: str, tree: ast.Module) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import of an mlu module in `tree`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "mlu" or alias.name.startswith("mlu."):
                    out.append((alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(importer, node)
            if source != "mlu" and not source.startswith("mlu."):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in MODULES or sub in EXTENSIONS:  # ``from . import detect`` is a module
                    out.append((sub, None, node.lineno))
                else:
                    out.append((source, alias.name, node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, (_, tree) in MODULES.items():
        for target, _, _ in _imports(name, tree):
            # Importing mlu.a.b runs mlu.a first, except where the importer is inside mlu.a
            # (then mlu.a is already running); importing a package's own names is an edge.
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                mod = ".".join(parts[:i])
                ancestor = name.startswith(mod + ".") and i < len(parts)
                if mod in MODULES and mod != name and not ancestor:
                    graph[name].add(mod)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _own_names(tree: ast.Module) -> set[str]:
    """Names a module defines itself: functions, classes, assignments, attributes of self."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


# Private names some module of the package defines: reading one from elsewhere crosses a boundary.
PACKAGE_PRIVATE = {n for _, tree in MODULES.values() for n in _own_names(tree) if _is_private(n)}


def _private_uses(name: str, tree: ast.Module) -> list[str]:
    problems = []
    for target, imported, line in _imports(name, tree):
        if imported is not None and _is_private(imported):
            problems.append(f"{name}:{line} imports {imported} from {target}")
    own = _own_names(tree)
    for node in ast.walk(tree):
        # obj._name reads a private attribute; fine only for names this module defines itself.
        if (
            isinstance(node, ast.Attribute)
            and _is_private(node.attr)
            and node.attr in PACKAGE_PRIVATE
            and node.attr not in own
        ):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Name) and base.id == "_core":
                continue
            problems.append(f"{name}:{node.lineno} reads private attribute .{node.attr}")
    return problems


def test_every_module_is_parsed():
    # The walk must see the whole package, not a stray copy.
    assert {"mlu", "mlu.engine.model", "mlu.unlearning.unlearn", "mlu.detection.detect"} <= set(
        MODULES
    )
    assert len(MODULES) >= 20


def test_import_graph_has_no_cycle():
    graph = _graph()
    assert graph["mlu.unlearning.unlearn"] >= {"mlu.engine.model"}
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph) or [])


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


UNLEARNING_STACK = {
    "mlu.unlearning.unlearn",
    "mlu.unlearning.unlearner",
    "mlu.unlearning.baselines",
    "mlu.unlearning.sisa",
    "mlu.apps.clean",
}


@pytest.mark.parametrize(
    "name", ["mlu.detection.detect", "mlu.detection.influence", "mlu.defaults"]
)
def test_detection_and_the_leaves_sit_below_the_unlearning_stack(name):
    # docs/design.md, "Module map": detection needs only the defaults, never the unlearning
    assert not _reachable(_graph(), name) & UNLEARNING_STACK


def test_defaults_and_result_types_are_leaves():
    # the defaults import nothing of mlu, so every layer may read them; the result types at
    # most the check's record (a leaf of the engine itself)
    graph = _graph()
    assert _reachable(graph, "mlu.defaults") == set()
    leaf = {"mlu.engine", "mlu.engine._safeguard", "mlu.exceptions", "mlu._core"}
    assert _reachable(graph, "mlu.unlearning.result") <= leaf | {"mlu.unlearning"}


# docs/design.md, "Module map and layers": each folder is a layer and imports only the layers
# below it; the top level holds the package's face (__init__, __main__) and a few leaves.
LAYERS = ["engine", "detection", "data", "unlearning", "metrics", "apps"]
BELOW = {
    "engine": set(),
    "detection": {"engine"},
    "data": {"engine"},
    "unlearning": {"engine"},
    "metrics": {"engine"},
    "apps": {"engine", "detection", "data", "unlearning", "metrics"},
}
TOP_LEAVES = {"_isa", "_version", "_optional", "_files", "exceptions", "defaults"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_lives_in_a_layer_folder_or_is_a_top_leaf():
    top = {name.split(".")[1] for name in MODULES if name.count(".") == 1 and not _layer(name)}
    assert top <= TOP_LEAVES | {"__main__"}, top - TOP_LEAVES


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_the_layers_below(layer):
    graph = _graph()
    wrong = {
        f"{name} -> {target}"
        for name in MODULES
        if _layer(name) == layer
        for target in graph[name]
        if _layer(target) not in (None, layer, *BELOW[layer])
    }
    assert not wrong, sorted(wrong)
    # the top-level leaves import no layer at all
    for name in MODULES:
        if name.count(".") == 1 and name.split(".")[1] in TOP_LEAVES:
            assert not {t for t in graph[name] if _layer(t)}, name


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_importing_the_package_from_inside_is_an_edge(monkeypatch):
    # ``import mlu`` (or ``from .. import x``) in a submodule runs mlu/__init__, which imports
    # that submodule again: a cycle.
    tree = ast.parse("def f():\n    import mlu\n")
    monkeypatch.setitem(MODULES, "mlu.data.noise", (MODULES["mlu.data.noise"][0], tree))
    assert "mlu" in _graph()["mlu.data.noise"]
    assert _find_cycle(_graph()) is not None


def test_relative_imports_resolve():
    tree = ast.parse("from ..unlearn import x\nfrom . import detection\nfrom .spec import y\n")
    nodes = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert _resolve("mlu.metrics.unlearning", nodes[0]) == "mlu.unlearn"
    assert _resolve("mlu.metrics", nodes[1]) == "mlu.metrics"
    assert _resolve("mlu.metrics.detection", nodes[2]) == "mlu.metrics.spec"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_names_of_other_modules(name):
    assert _private_uses(name, MODULES[name][1]) == []


def test_private_use_is_detected():
    tree = ast.parse("from .report import _ordered\ndef f(m):\n    return m._set_architecture(1)\n")
    problems = _private_uses("mlu.apps.experiments.plots", tree)
    assert len(problems) == 2


def test_a_layer_importing_upward_is_found(monkeypatch):
    tree = ast.parse("from ..unlearning import unlearn\n")
    path = MODULES["mlu.engine.io"][0]
    monkeypatch.setitem(MODULES, "mlu.engine.io", (path, tree))
    with pytest.raises(AssertionError, match="mlu.engine.io -> mlu.unlearning"):
        test_layers_import_only_the_layers_below("engine")
