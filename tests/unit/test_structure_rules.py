"""Graph rules of a whole tree: every valid tree is accepted as one Created event; every tree
broken in exactly one way is refused with the right error, code and ids, emitting nothing."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import events as ev
from domain.errors import (
    DependencyCycle,
    DomainError,
    DuplicateId,
    DuplicateName,
    MultipleRoots,
    NoRoot,
    TaskNotFound,
    TooDeep,
    UnknownReference,
    Unreachable,
)
from domain.graph import MAX_DEPTH
from domain.specs import Dependency, parse_changes, parse_tasks
from domain.status import TaskStatus
from domain.tree import TaskTree, project_tree
from tests.unit.strategies import (
    FAST,
    DepCase,
    TreeCase,
    counter_ids,
    tree_cases,
)

GHOST = "ghost>0"  # keys never contain ">", so these can never name a generated task
FRESH = "fresh>0"


# -- 1. valid trees ------------------------------------------------------------------------
@FAST
@given(tree_cases(max_size=12))
def test_every_valid_tree_is_accepted_as_exactly_one_created_event(case: TreeCase) -> None:
    specs = parse_tasks(case.payload(), new_id=counter_ids())

    generated = [f"gen-{i}" for i in range(len(case.nodes))]
    expected = case.expected_specs(None if case.with_ids else generated)
    assert specs == expected

    tree = TaskTree.create(specs)
    events = tree.collect_events()
    assert len(events) == 1
    created = events[0]
    assert isinstance(created, ev.Created)
    # Tasks without a user_id take the root's (TaskTree.create's documented rule).
    root_position = case.order.index(0)
    owner = expected[root_position].user_id
    inherited = [
        s if s.user_id is not None or owner is None else msgspec.structs.replace(s, user_id=owner)
        for s in expected
    ]
    assert list(created.tasks) == inherited
    assert created.root_id == expected[root_position].id
    assert created.originator_id == tree.id
    assert created.originator_version == 1
    assert tree.collect_events() == []

    assert [t.id for t in sorted(tree.tasks.values(), key=lambda t: t.seq)] == [
        s.id for s in expected
    ]
    assert all(t.status is TaskStatus.PENDING and t.attempts == 0 for t in tree.tasks.values())
    replayed = project_tree(None, events)
    assert replayed is not None
    assert msgspec.to_builtins(replayed.state) == msgspec.to_builtins(tree.state)


@FAST
@given(tree_cases(max_size=6))
def test_the_wrapped_and_single_object_forms_are_accepted(case: TreeCase) -> None:
    plain = parse_tasks(case.payload(), new_id=counter_ids())
    assert parse_tasks({"tasks": case.payload()}, new_id=counter_ids()) == plain
    if len(case.nodes) == 1:
        assert parse_tasks(case.payload()[0], new_id=counter_ids()) == plain


# -- 2. trees broken in exactly one way ------------------------------------------------------
def dependency_closure(case: TreeCase, start: int) -> set[int]:
    """`start` and every node it depends on, directly or not."""
    out, stack = {start}, [start]
    while stack:
        for dep in case.nodes[stack.pop()].deps:
            if dep.target not in out:
                out.add(dep.target)
                stack.append(dep.target)
    return out


def node_descendants(case: TreeCase, top: int) -> set[int]:
    out = {top}
    grew = True
    while grew:
        grew = False
        for i, node in enumerate(case.nodes):
            if node.parent in out and i not in out:
                out.add(i)
                grew = True
    return out


def listed(case: TreeCase, nodes: set[int]) -> list[str]:
    """Keys of `nodes` in the order the payload lists them."""
    return [case.nodes[i].key for i in case.order if i in nodes]


def submit(case: TreeCase) -> tuple[DomainError, dict[str, str]]:
    """Submit a payload that must be refused; return the error and generated-id -> name."""
    before_error: DomainError | None = None
    labels: dict[str, str] = {}
    try:
        specs = parse_tasks(case.payload(), new_id=counter_ids())
    except DomainError as exc:
        before_error = exc
    else:
        if not case.with_ids:
            labels = {s.id: s.name for s in specs}
        try:
            TaskTree.create(specs)
        except DomainError as exc:
            before_error = exc
    assert before_error is not None, "a broken tree was accepted"
    return before_error, labels


def labelled(ids: tuple[str, ...], labels: dict[str, str]) -> list[str]:
    return [labels.get(i, i) for i in ids]


@FAST
@given(tree_cases(max_size=8), st.data())
def test_duplicate_ids_or_names_are_refused(case: TreeCase, data: st.DataObject) -> None:
    twin = data.draw(st.integers(0, len(case.nodes) - 1))
    key = case.nodes[twin].key
    extra = {"name": key, "parent_id": case.nodes[0].key}
    if case.with_ids:
        extra = {"id": key, "name": "twin", "parent_id": case.nodes[0].key}
    case.extra.append(extra)

    error, _ = submit(case)
    expected = DuplicateId if case.with_ids else DuplicateName
    assert type(error) is expected
    assert error.code == ("duplicate_id" if case.with_ids else "duplicate_name")
    assert error.ids == (key,)


@FAST
@given(tree_cases(max_size=8))
def test_a_parent_outside_the_tree_is_an_unknown_reference(case: TreeCase) -> None:
    if case.with_ids:
        case.extra.append({"id": FRESH, "name": "orphan", "parent_id": GHOST})
    else:
        case.extra.append({"name": FRESH, "parent_id": GHOST})

    error, _ = submit(case)
    assert type(error) is UnknownReference
    assert error.code == "unknown_reference"
    # With ids the error names the task and what it referred to; without, the unknown name.
    assert error.ids == ((FRESH, GHOST) if case.with_ids else (GHOST,))


@FAST
@given(tree_cases(max_size=8), st.data())
def test_a_dependency_outside_the_tree_is_an_unknown_reference(
    case: TreeCase, data: st.DataObject
) -> None:
    victim = data.draw(st.integers(0, len(case.nodes) - 1))
    payload = case.payload()
    item = payload[case.order.index(victim)]
    ghost_dep = data.draw(st.sampled_from([GHOST, {"id": GHOST, "required": False}]))
    item["dependencies"] = [*(item.get("dependencies") or []), ghost_dep]

    with pytest.raises(UnknownReference) as caught:
        TaskTree.create(parse_tasks(payload, new_id=counter_ids()))
    assert caught.value.code == "unknown_reference"
    key = case.nodes[victim].key
    assert caught.value.ids == ((key, GHOST) if case.with_ids else (GHOST,))


def assert_cycle(
    error: DomainError,
    edges: dict[str, set[str]],
    closing: tuple[str, str],
    labels: dict[str, str] | None = None,
) -> None:
    """The path reads "a -> b -> a": first equals last, each step is a real dependency."""
    labels = labels or {}
    assert type(error) is DependencyCycle
    assert error.code == "cycle"
    assert error.path is not None
    steps = [labels.get(s, s) for s in error.path.split(" -> ")]
    assert len(steps) >= 2
    assert steps[0] == steps[-1]
    pairs = list(itertools.pairwise(steps))
    for a, b in pairs:
        assert b in edges[a], f"{a!r} does not depend on {b!r} in {error.path!r}"
    # Every cycle of the broken graph uses the one edge that broke it.
    assert closing in pairs
    assert labelled(error.ids, labels) == steps[:-1]
    assert len(set(error.ids)) == len(error.ids)


@FAST
@given(tree_cases(max_size=10), st.data())
def test_a_dependency_cycle_is_refused_with_its_path(case: TreeCase, data: st.DataObject) -> None:
    u = data.draw(st.integers(0, len(case.nodes) - 1), label="u")
    # v is u itself (a self-dependency) or something u already depends on, so v -> u closes
    # a cycle.
    v = data.draw(st.sampled_from(sorted(dependency_closure(case, u))), label="v")
    case.nodes[v].deps.append(DepCase(target=u, required=data.draw(st.booleans()), form="object"))

    error, labels = submit(case)
    nodes = case.nodes
    edges = {n.key: {nodes[d.target].key for d in n.deps} for n in nodes}
    assert_cycle(error, edges, (nodes[v].key, nodes[u].key), labels)


@FAST
@given(tree_cases(max_size=8), st.data())
def test_a_tree_without_a_root_is_refused(case: TreeCase, data: st.DataObject) -> None:
    case.nodes[0].parent = data.draw(st.integers(0, len(case.nodes) - 1))

    error, _ = submit(case)
    assert type(error) is NoRoot
    assert error.code == "no_root"
    assert error.ids == ()


@FAST
@given(tree_cases(min_size=2, max_size=8), st.data())
def test_several_roots_are_refused_naming_every_root(case: TreeCase, data: st.DataObject) -> None:
    detached = data.draw(
        st.lists(st.integers(1, len(case.nodes) - 1), min_size=1, unique=True), label="detached"
    )
    for i in detached:
        case.nodes[i].parent = None

    error, labels = submit(case)
    assert type(error) is MultipleRoots
    assert error.code == "multiple_roots"
    assert labelled(error.ids, labels) == listed(case, {0, *detached})


@FAST
@given(tree_cases(min_size=2, max_size=8), st.data())
def test_tasks_unreachable_from_the_root_are_refused(case: TreeCase, data: st.DataObject) -> None:
    x = data.draw(st.integers(1, len(case.nodes) - 1), label="x")
    lost = node_descendants(case, x)
    # Hanging x under itself or one of its descendants cuts its whole subtree off the root.
    case.nodes[x].parent = data.draw(st.sampled_from(sorted(lost)), label="new parent")

    error, labels = submit(case)
    assert type(error) is Unreachable
    assert error.code == "unreachable"
    assert labelled(error.ids, labels) == listed(case, lost)


def chain(length: int) -> list[dict[str, object]]:
    return [
        {"id": f"t{i}", "name": f"t{i}", **({"parent_id": f"t{i - 1}"} if i else {})}
        for i in range(length)
    ]


def test_parent_nesting_is_bounded() -> None:
    TaskTree.create(parse_tasks(chain(MAX_DEPTH)))
    with pytest.raises(TooDeep) as caught:
        TaskTree.create(parse_tasks(chain(MAX_DEPTH + 1)))
    assert caught.value.code == "too_deep"
    assert caught.value.ids == (f"t{MAX_DEPTH}",)


def test_an_error_is_reported_on_the_first_broken_rule_in_a_fixed_order() -> None:
    # duplicate ids are checked before references, references before cycles.
    both = [
        {"id": "a", "name": "a"},
        {"id": "a", "name": "b", "parent_id": "a"},
        {"id": "c", "name": "c", "parent_id": "zz"},
    ]
    with pytest.raises(DuplicateId):
        TaskTree.create(parse_tasks(both))


# -- commands that would break a rule emit nothing ----------------------------------------
def frozen(tree: TaskTree) -> object:
    return msgspec.to_builtins(tree.state)


@FAST
@given(tree_cases(max_size=8, with_ids=True), st.data())
def test_a_dependency_that_would_close_a_cycle_is_refused_and_emits_nothing(
    case: TreeCase, data: st.DataObject
) -> None:
    tree = TaskTree.create(parse_tasks(case.payload()))
    tree.collect_events()
    u = data.draw(st.integers(0, len(case.nodes) - 1), label="u")
    v = data.draw(st.sampled_from(sorted(dependency_closure(case, u))), label="v")
    u_id, v_id = case.nodes[u].key, case.nodes[v].key
    before = frozen(tree)

    if data.draw(st.booleans(), label="via update_task"):
        current = [{"id": d.id, "required": d.required} for d in tree.tasks[v_id].dependencies]
        changes = parse_changes({"dependencies": [*current, u_id]})
        with pytest.raises(DependencyCycle) as caught:
            tree.update_task(v_id, changes)
    else:
        with pytest.raises(DependencyCycle) as caught:
            tree.add_dependency(v_id, Dependency(u_id))

    edges = {t.id: {d.id for d in t.dependencies} for t in tree.tasks.values()}
    edges[v_id].add(u_id)
    assert_cycle(caught.value, edges, (v_id, u_id))
    assert tree.collect_events() == []
    assert frozen(tree) == before


@FAST
@given(tree_cases(max_size=6, with_ids=True), st.data())
def test_unknown_references_in_commands_are_refused_and_emit_nothing(
    case: TreeCase, data: st.DataObject
) -> None:
    tree = TaskTree.create(parse_tasks(case.payload()))
    tree.collect_events()
    task_id = data.draw(st.sampled_from(sorted(tree.tasks)))
    before = frozen(tree)

    with pytest.raises(UnknownReference) as caught:
        tree.add_dependency(task_id, Dependency(GHOST, data.draw(st.booleans())))
    assert caught.value.ids == (task_id, GHOST)
    with pytest.raises(UnknownReference) as caught:
        tree.update_task(task_id, parse_changes({"dependencies": [GHOST]}))
    assert caught.value.ids == (task_id, GHOST)
    for command in (
        lambda: tree.add_dependency(GHOST, Dependency(task_id)),
        lambda: tree.remove_task(GHOST),
        lambda: tree.cancel(GHOST),
        lambda: tree.start(GHOST, 1, {}),
    ):
        with pytest.raises(TaskNotFound) as missing:
            command()
        assert missing.value.ids == (GHOST,)
        assert missing.value.code == "task_not_found"

    assert tree.collect_events() == []
    assert frozen(tree) == before


def test_a_rejection_without_ids_can_be_told_in_names() -> None:
    payload = [
        {"name": "root"},
        {"name": "load", "parent_id": "root", "dependencies": ["save"]},
        {"name": "save", "parent_id": "root", "dependencies": ["load"]},
    ]
    specs = parse_tasks(payload, new_id=counter_ids())
    with pytest.raises(DependencyCycle) as caught:
        TaskTree.create(specs)
    told = caught.value.relabelled({s.id: s.name for s in specs})
    assert type(told) is DependencyCycle
    assert told.path in {"load -> save -> load", "save -> load -> save"}
    assert set(told.ids) == {"load", "save"}
    data = told.as_dict()
    assert data["code"] == "cycle"
    assert data["path"] == told.path
    assert data["ids"] == list(told.ids)
