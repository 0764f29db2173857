"""The shape of the code (../shared/STYLE.md): layers that only point down, no import circle between
modules, no module over ~500 lines. ``make test`` also runs import-linter's layers contract
(pyproject.toml); this walks the same graph (grimp, import-linter's engine) for what it does not check."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Top to bottom: each may import only those after it.
LAYERS = [
    *("portal", "reports", "bookings", "notifications", "consoles", "allocations"),
    *("inventory", "identity", "tenancy", "core", "audit"),
]
MOST_LINES = 520  # "~500": a module past this is split by topic


def _product(module: str) -> bool:
    parts = module.split(".")
    return "tests" not in parts and "migrations" not in parts


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*LAYERS, cache_dir=None)


def _imports(graph) -> dict[str, set[str]]:
    modules = {m for m in graph.modules if _product(m)}
    return {m: {i for i in graph.find_modules_directly_imported_by(m) if i in modules} for m in modules}


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other round a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_circle_finder_finds_a_circle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_import_each_other_round_a_circle(graph):
    """Imports inside functions count too: a late import still ties the two modules together."""
    assert strongly_connected(_imports(graph)) == []


def test_imports_only_point_down_the_layers(graph):
    upward = []
    for module, imported in _imports(graph).items():
        mine = LAYERS.index(module.split(".")[0])
        for other in imported:
            if LAYERS.index(other.split(".")[0]) < mine:
                upward.append(f"{module} -> {other}")
    assert upward == []


def test_no_module_is_over_about_500_lines():
    long = []
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts:
                continue
            lines = len(path.read_text().splitlines())
            if lines > MOST_LINES:
                long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert long == []
