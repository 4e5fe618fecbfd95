"""The optimizer's rooms import one another in one direction only.

Every module under ``optimizer/`` is parsed with ``ast`` (no import runs); every ``import`` /
``from ... import`` at any depth — module level, inside functions, under ``TYPE_CHECKING`` —
becomes an arrow between the rooms: a sub-package (``optimizer/surrogate/``) or a top module
(``optimizer/cli.py``). The graph must have no cycle, and every arrow must point down the declared
layer order ``LAYERS`` (a room may import rooms of lower layers only, never one of its own layer).
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "optimizer"

#: Lowest first. A room may import only rooms of strictly lower layers.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "seeds", "threads"),
    ("smc",),
    ("features",),
    ("priors",),
    ("das",),
    ("surrogate",),
    ("workers",),
    ("campaign",),
    ("demo",),
    ("service",),
    ("cli", "api"),
)


def _room(parts: tuple[str, ...]) -> str | None:
    """The room of a dotted name inside ``optimizer`` (``("surrogate", "gp")`` → "surrogate")."""
    if not parts:
        return None  # ``import optimizer`` itself
    return parts[0].removesuffix(".py")


def imported_names(source: str, package: tuple[str, ...]) -> set[tuple[str, ...]]:
    """Every ``optimizer.*`` dotted name imported anywhere in ``source`` (a module of
    ``package``, e.g. ``("optimizer", "surrogate")``), relative imports resolved."""
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [tuple(a.name.split(".")) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            mod = base + (tuple(node.module.split(".")) if node.module else ())
            # ``from optimizer import cli`` names the room in the alias, not in the module
            names = [mod + (a.name,) for a in node.names] if len(mod) == 1 else [mod]
        else:
            continue
        found.update(n for n in names if n and n[0] == "optimizer")
    return found


def room_graph() -> dict[str, set[str]]:
    """Arrows between rooms: ``graph[a]`` is the set of rooms that room ``a`` imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _room(path.relative_to(PACKAGE).parts)
        if src == "__init__":
            continue
        graph[src]  # a room that imports no other room is still a node
        package = path.relative_to(PACKAGE.parent).parts[:-1]
        for name in imported_names(path.read_text(), package):
            dst = _room(name[1:])
            if dst is not None and dst != src:
                graph[src].add(dst)
    return dict(graph)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or None (depth-first search, colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) is None and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_imports_are_found_at_any_depth_and_relative_ones_resolved() -> None:
    source = """
import optimizer.smc.particles as p
from typing import TYPE_CHECKING
from optimizer import cli
from . import gp
from ..features import maps
if TYPE_CHECKING:
    from optimizer.priors.registry import BUNDLED
def f():
    import optimizer.seeds
    def g():
        from optimizer.campaign.errors import X
"""
    names = imported_names(source, ("optimizer", "surrogate"))
    assert names == {("optimizer", "smc", "particles"), ("optimizer", "cli"),
                     ("optimizer", "surrogate"), ("optimizer", "features"),
                     ("optimizer", "priors", "registry"), ("optimizer", "seeds"),
                     ("optimizer", "campaign", "errors")}
    graph = room_graph()
    assert "features" in graph["surrogate"]  # module level
    assert "priors" in graph["workers"]  # only inside functions (components.load_prior_bundle)


def test_no_import_cycle_between_rooms() -> None:
    cycle = find_cycle(room_graph())
    assert cycle is None, "import cycle between optimizer rooms: " + " -> ".join(cycle or [])


def test_every_arrow_points_down_the_layer_order() -> None:
    rank = {room: i for i, layer in enumerate(LAYERS) for room in layer}
    graph = room_graph()
    unknown = sorted(set(graph) - set(rank))
    assert not unknown, f"rooms {unknown} have no layer; add them to LAYERS in {__file__}"
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                    if rank[b] >= rank[a])
    assert not upward, "imports that point up or sideways in the layer order: " + ", ".join(upward)


def test_find_cycle_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
