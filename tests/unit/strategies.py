"""Hypothesis strategies shared by the unit tests: task arrays, built trees, driven trees.

A generated tree is first an abstract `TreeCase` (nodes with keys, parent links and
dependencies on earlier nodes in a topological order), then rendered as the JSON-like payload
a caller submits, with or without ids, in a shuffled order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from domain import events as ev
from domain.specs import PRIORITY_DEFAULT, PRIORITY_MAX, Dependency, TaskSpec, parse_tasks
from domain.status import TERMINAL, TaskStatus
from domain.tree import TaskTree

# Modest example counts and no deadline: the suite must stay fast and never depend on timing.
FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
THOROUGH = settings(FAST, max_examples=200)


def counter_ids(prefix: str = "gen-") -> Callable[[], str]:
    """A deterministic `new_id` for parse_tasks/plan_copy: gen-0, gen-1, ..."""
    numbers: Iterator[int] = itertools.count()
    return lambda: f"{prefix}{next(numbers)}"


# -- JSON values ------------------------------------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
# Params are opaque to the domain; a few fixed shapes keep generation cheap.
param_objects = st.sampled_from(
    [None, {}, {"executor_id": "echo"}, {"timeout_s": 1.5, "retry": {"max_attempts": 2}}]
)

# Ids and names: anything non-blank, but never containing ">" so a cycle path "a -> b" splits
# unambiguously.
_text_chars = st.characters(exclude_categories=("Cs",), exclude_characters=">\x00")
keys = st.text(_text_chars, min_size=1, max_size=10).filter(lambda s: s.strip() != "")
priorities = st.one_of(st.none(), st.integers(min_value=0, max_value=4), st.just(PRIORITY_MAX))
user_ids = st.one_of(st.none(), st.sampled_from(["alice", "bob"]))


# -- the abstract tree -------------------------------------------------------------------------
@dataclass
class DepCase:
    target: int  # index of the node depended on (always an earlier node)
    required: bool
    form: str  # "bare" | "object" | "object_default"


@dataclass
class NodeCase:
    key: str  # the id (with ids) and the name (without ids)
    name: str
    parent: int | None
    deps: list[DepCase]
    priority: int | None
    user_id: str | None
    inputs: dict[str, Any] | None
    params: dict[str, Any] | None
    empty_as: str  # how an empty optional field is written: "omit" | "null" | "empty"


@dataclass
class TreeCase:
    """A valid tree in topological order (parents and dependencies come first) plus the
    order in which its tasks are listed in the payload."""

    nodes: list[NodeCase]
    order: list[int]
    with_ids: bool
    extra: list[dict[str, Any]] = field(default_factory=list)

    def ref(self, index: int) -> str:
        return self.nodes[index].key

    def task_dict(self, index: int) -> dict[str, Any]:
        node = self.nodes[index]
        item: dict[str, Any] = {"name": node.key if not self.with_ids else node.name}
        if self.with_ids:
            item["id"] = node.key
        if node.parent is not None:
            item["parent_id"] = self.ref(node.parent)
        elif node.empty_as == "null":
            item["parent_id"] = None
        if node.priority is not None:
            item["priority"] = node.priority
        if node.user_id is not None:
            item["user_id"] = node.user_id
        deps: list[Any] = []
        for dep in node.deps:
            ref = self.ref(dep.target)
            if dep.form == "bare":
                deps.append(ref)
            elif dep.form == "object_default":
                deps.append({"id": ref})
            else:
                deps.append({"id": ref, "required": dep.required})
        if deps or node.empty_as == "empty":
            item["dependencies"] = deps
        elif node.empty_as == "null":
            item["dependencies"] = None
        for name in ("inputs", "params"):
            value = getattr(node, name)
            if value is not None:
                item[name] = value
            elif node.empty_as == "null":
                item[name] = None
            elif node.empty_as == "empty":
                item[name] = {}
        return item

    def payload(self) -> list[dict[str, Any]]:
        """The task array as a caller submits it, in the listed (shuffled) order."""
        return [self.task_dict(i) for i in self.order] + list(self.extra)

    def listed_ids(self, generated: list[str] | None = None) -> list[str]:
        """Ids of the listed tasks in listed order (`generated` when the case has no ids)."""
        if self.with_ids:
            return [self.nodes[i].key for i in self.order]
        assert generated is not None
        return generated

    def expected_specs(self, generated: list[str] | None = None) -> list[TaskSpec]:
        """The specs parse_tasks must return (before the root's user_id is inherited)."""
        ids = self.listed_ids(generated)
        id_of = {node_index: ids[pos] for pos, node_index in enumerate(self.order)}
        specs = []
        for i in self.order:
            node = self.nodes[i]
            specs.append(
                TaskSpec(
                    id=id_of[i],
                    name=node.name if self.with_ids else node.key,
                    parent_id=None if node.parent is None else id_of[node.parent],
                    user_id=node.user_id,
                    priority=PRIORITY_DEFAULT if node.priority is None else node.priority,
                    dependencies=tuple(Dependency(id_of[d.target], d.required) for d in node.deps),
                    inputs=node.inputs or {},
                    params=node.params or {},
                )
            )
        return specs


@st.composite
def dep_cases(draw: st.DrawFn, earlier: int) -> list[DepCase]:
    targets = draw(st.lists(st.integers(0, earlier - 1), unique=True, max_size=min(3, earlier)))
    out = []
    for target in targets:
        required = draw(st.booleans())
        forms = ["bare", "object", "object_default"] if required else ["object"]
        out.append(DepCase(target, required, draw(st.sampled_from(forms))))
    return out


@st.composite
def tree_cases(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 10, with_ids: bool | None = None
) -> TreeCase:
    """A valid tree: one root (node 0), parents and dependencies on earlier nodes only."""
    n = draw(st.integers(min_size, max_size))
    ids_mode = draw(st.booleans()) if with_ids is None else with_ids
    node_keys = draw(st.lists(keys, min_size=n, max_size=n, unique=True))
    nodes = []
    for i in range(n):
        parent = None if i == 0 else draw(st.integers(0, i - 1))
        deps = draw(dep_cases(i)) if i else []
        nodes.append(
            NodeCase(
                key=node_keys[i],
                # With ids, names need not be unique.
                name=draw(st.sampled_from(["step", "fetch"]) | keys) if ids_mode else "",
                parent=parent,
                deps=deps,
                priority=draw(priorities),
                user_id=draw(user_ids),
                inputs=draw(st.none() | json_objects),
                params=draw(param_objects),
                empty_as=draw(st.sampled_from(["omit", "null", "empty"])),
            )
        )
    order = draw(st.permutations(range(n)))
    return TreeCase(nodes=nodes, order=list(order), with_ids=ids_mode)


# -- trees driven to a random reachable state ---------------------------------------------------
@dataclass
class Driven:
    """A tree moved by valid commands to some state, and every event it emitted."""

    tree: TaskTree
    events: list[ev.TreeEvent]


def ids_by_seq(tree: TaskTree, keep: Callable[[Any], bool] = lambda t: True) -> list[str]:
    return [t.id for t in sorted(tree.tasks.values(), key=lambda t: t.seq) if keep(t)]


@st.composite
def driven_trees(draw: st.DrawFn, min_size: int = 1, max_size: int = 8) -> Driven:
    """A fresh tree, then up to 25 valid moves: run, start, complete, fail, retry, cancel."""
    case = draw(tree_cases(min_size=min_size, max_size=max_size, with_ids=True))
    tree = TaskTree.create(parse_tasks(case.payload()))
    events = tree.collect_events()
    for _ in range(draw(st.integers(0, 25))):
        move = draw(
            st.sampled_from(["run", "start", "start", "complete", "complete", "fail", "cancel"])
        )
        ready = [t.id for t in tree.ready_tasks()]
        running = ids_by_seq(tree, lambda t: t.status is TaskStatus.IN_PROGRESS)
        live = ids_by_seq(tree, lambda t: t.status not in TERMINAL)
        if move == "run":
            tree.request_run()
        elif move == "start" and ready:
            task = tree.tasks[draw(st.sampled_from(ready))]
            tree.start(task.id, task.attempts + 1, dict(task.inputs))
        elif move == "complete" and running:
            tree.complete(draw(st.sampled_from(running)), draw(json_values))
        elif move == "fail" and running:
            tree.fail(draw(st.sampled_from(running)), "RuntimeError: boom")
        elif move == "cancel" and live:
            tree.cancel(draw(st.sampled_from(live)))
        events.extend(tree.collect_events())
    return Driven(tree, events)
