"""Copy planning: the new tree re-runs the chosen tasks and is always self-sufficient."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import events as ev
from domain.copying import CopyMode, CopyPlan, plan_as_tasks, plan_copy, rerun_set
from domain.errors import InvalidSpec, TaskNotFound
from domain.specs import parse_tasks
from domain.status import TaskStatus
from domain.tree import TaskTree
from tests.unit.oracles import descendants, transitive_dependents
from tests.unit.strategies import FAST, Driven, counter_ids, driven_trees


def expected_rerun(
    tree: TaskTree, task_id: str, mode: CopyMode, custom: list[str], children: bool
) -> set[str]:
    """ADR 0004: minimal = the task, its subtree and everything downstream of them;
    full = every task; custom = the listed ids (plus their subtrees with children)."""
    if mode is CopyMode.FULL:
        return set(tree.tasks)
    if mode is CopyMode.CUSTOM:
        out = set(custom)
        if children:
            for i in custom:
                out |= descendants(tree.tasks, i)
        return out
    below = descendants(tree.tasks, task_id)
    return below | transitive_dependents(tree.tasks, below)


def expected_closure(tree: TaskTree, rerun: set[str]) -> tuple[set[str], set[str]]:
    """Fixed point: parents of every copied task, dependencies of every re-run task; an
    added task is carried if it completed, else re-run too. Returns (re-run, carried)."""
    rerun, carried = set(rerun), set()
    changed = True
    while changed:
        changed = False
        for task_id in sorted(rerun | carried):
            task = tree.tasks[task_id]
            needed = [task.parent_id] if task.parent_id is not None else []
            if task_id in rerun:
                needed += [d.id for d in task.dependencies]
            for n in needed:
                if n in rerun or n in carried:
                    continue
                (carried if tree.tasks[n].status is TaskStatus.COMPLETED else rerun).add(n)
                changed = True
    return rerun, carried


copy_modes = st.sampled_from(list(CopyMode))


@st.composite
def copy_requests(draw: st.DrawFn) -> tuple[Driven, str, CopyMode, list[str], bool]:
    driven = draw(driven_trees())
    ids = sorted(driven.tree.tasks)
    task_id = draw(st.sampled_from(ids), label="task_id")
    mode = draw(copy_modes, label="mode")
    custom = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4), label="custom_task_ids")
    children = draw(st.booleans(), label="children")
    return driven, task_id, mode, custom, children


def run_to_the_end(tree: TaskTree) -> None:
    """Start and complete ready tasks until none is left."""
    tree.request_run()
    while ready := tree.ready_tasks():
        for task in ready:
            tree.start(task.id, task.attempts + 1, {})
            tree.complete(task.id, {"again": task.id})


@FAST
@given(copy_requests())
def test_every_copy_is_a_valid_self_sufficient_tree(
    request: tuple[Driven, str, CopyMode, list[str], bool],
) -> None:
    driven, task_id, mode, custom, children = request
    source = driven.tree
    before = msgspec.to_builtins(source.state)

    plan = plan_copy(source, task_id, mode, custom, children, new_id=counter_ids("copy-"))

    # Planning is a pure read of the source.
    assert msgspec.to_builtins(source.state) == before
    assert source.collect_events() == []

    initial = expected_rerun(source, task_id, mode, custom, children)
    assert rerun_set(source, task_id, mode, custom, children) == initial
    want_rerun, want_carried = expected_closure(source, initial)
    kept = set(plan.source_ids)
    carried_sources = {plan.source_ids[plan_index(plan, c.task_id)] for c in plan.carried}
    assert kept == want_rerun | want_carried
    assert carried_sources == want_carried
    # Carried: exactly the copied tasks that completed in the source and were not chosen.
    completed = {i for i, t in source.tasks.items() if t.status is TaskStatus.COMPLETED}
    assert carried_sources == (kept - initial) & completed
    assert initial <= kept
    if mode is CopyMode.MINIMAL:
        below = descendants(source.tasks, task_id)
        assert below | transitive_dependents(source.tasks, below) <= kept - carried_sources

    # One spec per copied task, new ids, original_task_id pointing back, same definition.
    assert len(plan.specs) == len(plan.source_ids) == len(kept)
    new_of = {src: spec.id for src, spec in zip(plan.source_ids, plan.specs, strict=True)}
    assert not set(new_of.values()) & set(source.tasks)
    assert len(set(new_of.values())) == len(plan.specs)
    for src, spec in zip(plan.source_ids, plan.specs, strict=True):
        old = source.tasks[src]
        assert spec.original_task_id == src
        assert (spec.name, spec.priority, spec.user_id) == (old.name, old.priority, old.user_id)
        assert (spec.inputs, spec.params, spec.schemas) == (old.inputs, old.params, old.schemas)
        assert spec.parent_id == (None if old.parent_id is None else new_of[old.parent_id])
        expected_deps = [(new_of[d.id], d.required) for d in old.dependencies if d.id in kept]
        assert [(d.id, d.required) for d in spec.dependencies] == expected_deps
        if src not in carried_sources:
            # Every dependency of a re-run task is in the copy.
            assert all(d.id in kept for d in old.dependencies)
    seqs = [source.tasks[i].seq for i in plan.source_ids]
    assert seqs == sorted(seqs)

    for carried in plan.carried:
        old = source.tasks[plan.source_ids[plan_index(plan, carried.task_id)]]
        assert carried.result == old.result
        assert carried.completed_at == old.completed_at

    # The copy is a valid tree, keeps the source root and can run to an end on its own.
    copy = TaskTree.create(plan.specs, carried=plan.carried, source_tree_id=source.id)
    (created,) = copy.collect_events()
    assert isinstance(created, ev.Created)
    assert created.source_tree_id == source.id
    assert copy.tasks[copy.root_id].original_task_id == source.root_id
    assert plan.root_id == copy.root_id
    for spec in plan.specs:
        status = copy.tasks[spec.id].status
        done = spec.original_task_id in carried_sources
        assert status is (TaskStatus.COMPLETED if done else TaskStatus.PENDING)
    run_to_the_end(copy)
    assert copy.status.value == "completed"

    dry = plan_as_tasks(plan)
    assert [item["id"] for item in dry] == [s.id for s in plan.specs]
    assert [item["original_task_id"] for item in dry] == list(plan.source_ids)
    assert {item["id"] for item in dry if item["status"] == "completed"} == {
        c.task_id for c in plan.carried
    }


def plan_index(plan: CopyPlan, new_id: str) -> int:
    return next(k for k, s in enumerate(plan.specs) if s.id == new_id)


# -- worked examples ----------------------------------------------------------------------
def ran_tree() -> TaskTree:
    """r; a completed; b (requires a) failed; c (requires b) skipped; d (optional on c)
    completed; e, a child of b, completed; r completed."""
    tree = TaskTree.create(
        parse_tasks(
            [
                {"id": "r", "name": "r"},
                {"id": "a", "name": "a", "parent_id": "r"},
                {"id": "b", "name": "b", "parent_id": "r", "dependencies": ["a"]},
                {"id": "c", "name": "c", "parent_id": "r", "dependencies": ["b"]},
                {
                    "id": "d",
                    "name": "d",
                    "parent_id": "r",
                    "dependencies": [{"id": "c", "required": False}],
                },
                {"id": "e", "name": "e", "parent_id": "b"},
            ]
        )
    )
    for task_id, outcome in [("a", "ok"), ("e", "ok"), ("b", "fail"), ("d", "ok"), ("r", "ok")]:
        tree.start(task_id, 1, {})
        if outcome == "ok":
            tree.complete(task_id, f"result of {task_id}")
        else:
            tree.fail(task_id, "RuntimeError: boom")
    assert tree.tasks["c"].status is TaskStatus.SKIPPED
    tree.collect_events()
    return tree


def summary(plan: CopyPlan) -> tuple[list[str], list[str]]:
    carried = {c.task_id for c in plan.carried}
    return (
        [s.original_task_id or "" for s in plan.specs if s.id not in carried],
        [s.original_task_id or "" for s in plan.specs if s.id in carried],
    )


@pytest.mark.parametrize(
    ("task_id", "mode", "custom", "children", "rerun", "carried"),
    [
        ("b", CopyMode.MINIMAL, [], False, ["b", "c", "d", "e"], ["r", "a"]),
        ("a", CopyMode.MINIMAL, [], False, ["a", "b", "c", "d"], ["r"]),
        ("r", CopyMode.FULL, [], False, ["r", "a", "b", "c", "d", "e"], []),
        ("r", CopyMode.CUSTOM, ["c"], False, ["b", "c"], ["r", "a"]),
        ("r", CopyMode.CUSTOM, ["b"], True, ["b", "e"], ["r", "a"]),
        ("r", CopyMode.CUSTOM, ["e"], False, ["b", "e"], ["r", "a"]),
        ("r", CopyMode.CUSTOM, ["d"], False, ["b", "c", "d"], ["r", "a"]),
    ],
)
def test_copy_examples(
    task_id: str,
    mode: CopyMode,
    custom: list[str],
    children: bool,
    rerun: list[str],
    carried: list[str],
) -> None:
    plan = plan_copy(ran_tree(), task_id, mode, custom, children)
    got_rerun, got_carried = summary(plan)
    assert sorted(got_rerun) == sorted(rerun)
    assert sorted(got_carried) == sorted(carried)
    results = {c.result for c in plan.carried}
    assert results == {f"result of {i}" for i in carried}


def test_custom_copy_with_unknown_ids_is_refused_naming_them() -> None:
    tree = ran_tree()
    before = msgspec.to_builtins(tree.state)
    with pytest.raises(InvalidSpec) as caught:
        plan_copy(tree, "r", CopyMode.CUSTOM, ["a", "nope", "b", "gone"])
    assert caught.value.ids == ("nope", "gone")
    assert [f.field for f in caught.value.fields] == ["custom_task_ids", "custom_task_ids"]
    assert all(f.reason for f in caught.value.fields)
    assert msgspec.to_builtins(tree.state) == before
    assert tree.collect_events() == []


def test_custom_copy_needs_ids() -> None:
    with pytest.raises(InvalidSpec) as caught:
        plan_copy(ran_tree(), "r", CopyMode.CUSTOM, [])
    assert [f.field for f in caught.value.fields] == ["custom_task_ids"]


@pytest.mark.parametrize("mode", list(CopyMode))
def test_copying_an_unknown_task_is_not_found(mode: CopyMode) -> None:
    with pytest.raises(TaskNotFound) as caught:
        plan_copy(ran_tree(), "nope", mode, ["a"])
    assert caught.value.ids == ("nope",)


def test_a_dry_run_lists_carried_tasks_as_completed_with_their_result() -> None:
    plan = plan_copy(ran_tree(), "b", CopyMode.MINIMAL, new_id=counter_ids("new-"))
    rows: dict[Any, dict[str, object]] = {
        row["original_task_id"]: row for row in plan_as_tasks(plan)
    }
    assert rows["a"]["status"] == "completed"
    assert rows["a"]["result"] == "result of a"
    assert rows["b"]["status"] == "pending"
    assert rows["b"]["result"] is None
    deps = rows["c"]["dependencies"]
    assert isinstance(deps, (list, tuple))
    assert list(deps) == [{"id": rows["b"]["id"], "required": True}]
