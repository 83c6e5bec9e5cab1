"""The project's import graph, read statically: no circles, and the layering of the house style.

Every import counts, at module level or inside a function: a lazy import dodges a circle
at run time, but the two modules still cannot be understood, tested or moved apart.
Imports under ``if TYPE_CHECKING:`` count too, for the same reason.

Layering (docs: shared/STYLE.md, "Layout and direction of imports"):

    shared                      imports nothing else of the project (nor torch, fastapi)
    device_client, cloud_server import shared; never each other, torch, models or devtune
    models, devtune             may import what is below them
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "device_client", "cloud_server", "models", "devtune")


@dataclass(frozen=True)
class Import:
    source: str  # module that imports, e.g. models.data
    target: str  # what it imports: a project module (models.userdata) or a top-level name (torch)
    where: str  # path:line of the import statement

    @property
    def top(self) -> str:
        return self.target.split(".")[0]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    paths = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    return {_module_name(path): path for path in paths}


def _resolve(name: str) -> str:
    """A project module for a dotted name: itself, or the longest prefix that is a module
    (``import shared.codecs.base.X`` names a module up to ``base``); outside names pass through."""
    known = modules()
    if name.split(".")[0] not in PACKAGES:
        return name
    parts = name.split(".")
    while len(parts) > 1 and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def _imports_of(name: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    where = path.relative_to(ROOT).as_posix()
    found: list[Import] = []
    for node in ast.walk(tree):  # the whole tree: function bodies and TYPE_CHECKING blocks too
        if isinstance(node, ast.Import):
            found += [Import(name, _resolve(alias.name), f"{where}:{node.lineno}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x, from ..y import z
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"  # from pkg import submodule
                target = submodule if submodule in modules() else _resolve(module)
                found.append(Import(name, target, f"{where}:{node.lineno}"))
    return found


@functools.cache
def imports() -> tuple[Import, ...]:
    return tuple(i for name, path in modules().items() for i in _imports_of(name, path))


def graph() -> dict[str, dict[str, str]]:
    """module -> {project module it imports: where the first such import is}."""
    edges: dict[str, dict[str, str]] = {name: {} for name in modules()}
    for i in imports():
        if i.target in edges and i.target != i.source:
            edges[i.source].setdefault(i.target, i.where)
    return edges


def knots(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of ``edges`` with more than one module (Tarjan's algorithm):
    sets of modules that all reach each other through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(components)


def circles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """One concrete circle per knot: the shortest way from its first module back to itself."""
    return [_circle_through(component, edges) for component in knots(edges)]


def _circle_through(component: list[str], edges: dict[str, dict[str, str]]) -> list[str]:
    """The shortest path from the component's first module back to itself, inside the component."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(edges[node]):
                if nxt == start:
                    return paths[node]
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no circle through {start}; the component {component} is wrong")


def describe(circle: list[str], edges: dict[str, dict[str, str]]) -> str:
    steps = [f"{a} -> {b} ({edges[a][b]})" for a, b in zip(circle, [*circle[1:], circle[0]])]
    return " ; ".join(steps)


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_sees_module_level_and_function_level_imports() -> None:
    edges = graph()
    assert "shared.errors" in edges["shared.bundle"]  # module level
    assert "models.tune" in edges["devtune.tuning_cli"]  # inside a function
    assert "models.dataset" in edges["models.userdata"]  # from a package import a name of a module
    assert {"shared.codecs.base", "shared.codecs.rans"} <= set(edges["shared.codecs"])
    assert "torch" in {i.top for i in imports() if i.source == "models.train"}  # outside names kept


def test_a_circle_is_found_and_named() -> None:
    edges = {
        "a": {"b": "a.py:1"}, "b": {"c": "b.py:2", "d": "b.py:3"}, "c": {"a": "c.py:4"},
        "d": {}, "e": {"e2": "e.py:5"}, "e2": {"e": "e2.py:6"},
    }
    found = circles(edges)
    assert found == [["a", "b", "c"], ["e", "e2"]]
    assert describe(found[0], edges) == "a -> b (a.py:1) ; b -> c (b.py:2) ; c -> a (c.py:4)"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle(package: str) -> None:
    edges = graph()
    found = [knot for knot in knots(edges) if any(_in(m, package) for m in knot)]
    named = [f"{describe(_circle_through(knot, edges), edges)} (modules in the knot: {', '.join(knot)})"
             for knot in found]
    assert not found, (
        f"import circle(s) through {package}: " + " || ".join(named)
        + "; move what both sides need into a module of its own that both import"
    )


def _violations(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{i.where} imports {i.target}"
        for i in imports()
        if any(_in(i.source, p) for p in packages) and any(_in(i.target, f) for f in forbidden)
    ]


def test_shared_imports_nothing_else_of_the_project() -> None:
    others = tuple(p for p in PACKAGES if p != "shared")
    bad = _violations(("shared",), (*others, "torch", "fastapi"))
    assert not bad, "shared/ is the contract and must stand alone: " + "; ".join(bad)


@pytest.mark.parametrize("package", ["device_client", "cloud_server"])
def test_the_serving_path_imports_only_shared(package: str) -> None:
    other = "cloud_server" if package == "device_client" else "device_client"
    bad = _violations((package,), (other, "torch", "models", "devtune"))
    assert not bad, f"{package} runs on ONNX Runtime and talks to the other side only through shared/: " + (
        "; ".join(bad)
    )
