"""Graph rules of a tree: unique ids, known references, no cycle, one root, all reachable."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from domain.errors import (
    DependencyCycle,
    DuplicateId,
    MultipleRoots,
    NoRoot,
    TooDeep,
    UnknownReference,
    Unreachable,
)
from domain.specs import Dependency

MAX_DEPTH = 256


class Node(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def parent_id(self) -> str | None: ...
    @property
    def dependencies(self) -> tuple[Dependency, ...]: ...


def children_index(nodes: Iterable[Node]) -> dict[str, list[str]]:
    """parent id -> child ids, in creation order."""
    index: dict[str, list[str]] = {}
    for node in nodes:
        if node.parent_id is not None:
            index.setdefault(node.parent_id, []).append(node.id)
    return index


def dependents_index(nodes: Iterable[Node]) -> dict[str, list[str]]:
    """dependency id -> ids of the tasks that depend on it, in creation order."""
    index: dict[str, list[str]] = {}
    for node in nodes:
        for dep in node.dependencies:
            index.setdefault(dep.id, []).append(node.id)
    return index


def subtree(children: Mapping[str, list[str]], top: str) -> list[str]:
    """`top` and all its descendants through parent_id, top first."""
    out = [top]
    i = 0
    while i < len(out):
        out.extend(children.get(out[i], ()))
        i += 1
    return out


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return a dependency cycle as a path [a, b, a] (a depends on b ...), or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    for start in edges:
        if colour[start] != white:
            continue
        colour[start] = grey
        path = [start]
        iters = [iter(edges[start])]
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                iters.pop()
                continue
            state = colour.get(nxt, black)
            if state == grey:
                return [*path[path.index(nxt) :], nxt]
            if state == white:
                colour[nxt] = grey
                path.append(nxt)
                iters.append(iter(edges[nxt]))
    return None


def check_acyclic(nodes: Iterable[Node]) -> None:
    edges = {n.id: [d.id for d in n.dependencies] for n in nodes}
    cycle = find_cycle(edges)
    if cycle is not None:
        path = " -> ".join(cycle)
        shown = path if len(cycle) <= 21 else " -> ".join([*cycle[:10], "...", *cycle[-10:]])
        raise DependencyCycle(f"dependency cycle: {shown}", ids=cycle[:-1], path=path)


def check_references(nodes: Sequence[Node], known: set[str]) -> None:
    missing: list[str] = []
    lines: list[str] = []
    for n in nodes:
        if n.parent_id is not None and n.parent_id not in known:
            missing += [n.id, n.parent_id]
            lines.append(f"{n.id!r} has unknown parent_id {n.parent_id!r}")
        for d in n.dependencies:
            if d.id not in known:
                missing += [n.id, d.id]
                lines.append(f"{n.id!r} depends on unknown {d.id!r}")
    if lines:
        more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
        raise UnknownReference(
            "references outside the tree: " + "; ".join(lines[:3]) + more,
            ids=dict.fromkeys(missing),
        )


def validate_structure(nodes: Sequence[Node]) -> str:
    """Check every graph rule of a whole tree and return its root id."""
    seen: set[str] = set()
    repeated = [n.id for n in nodes if n.id in seen or seen.add(n.id)]  # type: ignore[func-returns-value]
    if repeated:
        ids = list(dict.fromkeys(repeated))
        raise DuplicateId(f"task ids repeated in the tree: {', '.join(ids)}", ids=ids)
    check_references(nodes, seen)
    check_acyclic(nodes)
    roots = [n.id for n in nodes if n.parent_id is None]
    if not roots:
        raise NoRoot("the tree has no root: every task has a parent_id")
    if len(roots) > 1:
        raise MultipleRoots(
            f"a tree has exactly one root (a task without parent_id); found {len(roots)}",
            ids=roots,
        )
    children = children_index(nodes)
    reached = set(subtree(children, roots[0]))
    if len(reached) != len(nodes):
        lost = [n.id for n in nodes if n.id not in reached]
        raise Unreachable(
            f"tasks not reachable from the root {roots[0]!r} through parent_id: "
            + ", ".join(lost[:10])
            + (" ..." if len(lost) > 10 else ""),
            ids=lost,
        )
    check_depth(children, roots[0])
    return roots[0]


def check_depth(children: Mapping[str, list[str]], root: str) -> None:
    """Parent nesting is bounded so a tree can always be returned as nested JSON."""
    level, depth = [root], 1
    while level:
        if depth > MAX_DEPTH:
            raise TooDeep(
                f"tasks nest deeper than {MAX_DEPTH} levels through parent_id "
                f"(e.g. {level[0]!r}); use dependencies for long chains",
                ids=level[:10],
            )
        level = [c for p in level for c in children.get(p, ())]
        depth += 1
