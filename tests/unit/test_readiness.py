"""The ready set, the skip cascade and the derived tree status."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import events as ev
from domain.specs import Dependency, parse_changes, parse_tasks
from domain.state import Task
from domain.status import TaskStatus, TreeStatus
from domain.tree import TaskTree
from tests.unit.oracles import (
    ENDED_BADLY,
    IP,
    TERMINAL_STATUSES,
    C,
    F,
    P,
    S,
    X,
    descendants,
    expected_ready,
    expected_tree_status,
    required_closure,
    satisfied,
)
from tests.unit.strategies import FAST, Driven, driven_trees, ids_by_seq


def creation_order(driven: Driven) -> list[str]:
    created = driven.events[0]
    assert isinstance(created, ev.Created)
    return [s.id for s in created.tasks]


def make(tasks: list[dict[str, Any]]) -> TaskTree:
    tree = TaskTree.create(parse_tasks(tasks))
    tree.collect_events()
    return tree


def statuses(tree: TaskTree) -> dict[str, TaskStatus]:
    return {i: t.status for i, t in tree.tasks.items()}


# -- the ready set -------------------------------------------------------------------------
@FAST
@given(driven_trees())
def test_ready_tasks_are_exactly_the_ready_ones_most_urgent_first(driven: Driven) -> None:
    tree = driven.tree
    ready = tree.ready_tasks()
    assert [t.id for t in ready] == expected_ready(tree, creation_order(driven))
    keys = [(t.priority, t.seq) for t in ready]
    assert keys == sorted(keys)
    for t in tree.tasks.values():
        by_rule = t.status is P and all(satisfied(tree, d.id, d.required) for d in t.dependencies)
        assert tree.is_ready(t) is by_rule
        assert (t in ready) is by_rule


def test_priority_zero_runs_first_then_creation_order() -> None:
    tree = make(
        [
            {"id": "root", "name": "root", "priority": 3},
            {"id": "late", "name": "late", "parent_id": "root", "priority": 1},
            {"id": "default", "name": "default", "parent_id": "root"},
            {"id": "first-of-1", "name": "x", "parent_id": "root", "priority": 1},
            {"id": "urgent", "name": "urgent", "parent_id": "root", "priority": 0},
        ]
    )
    assert [t.id for t in tree.ready_tasks()] == ["urgent", "late", "first-of-1", "default", "root"]
    assert tree.tasks["default"].priority == 2


def test_updating_a_priority_reorders_the_ready_set() -> None:
    tree = make([{"id": "a", "name": "a"}, {"id": "b", "name": "b", "parent_id": "a"}])
    assert [t.id for t in tree.ready_tasks()] == ["a", "b"]
    tree.update_task("b", parse_changes({"priority": 0}))
    assert [t.id for t in tree.ready_tasks()] == ["b", "a"]


def test_parents_do_not_wait_for_children_nor_children_for_parents() -> None:
    tree = make(
        [
            {"id": "p", "name": "p"},
            {"id": "c", "name": "c", "parent_id": "p"},
        ]
    )
    assert {t.id for t in tree.ready_tasks()} == {"p", "c"}
    tree.start("c", 1, {})
    tree.fail("c", "RuntimeError: child")
    assert tree.tasks["p"].status is P
    assert [t.id for t in tree.ready_tasks()] == ["p"]


def test_a_required_dependency_must_complete_an_optional_one_only_end() -> None:
    tree = make(
        [
            {"id": "r", "name": "r"},
            {"id": "req", "name": "req", "parent_id": "r"},
            {"id": "opt", "name": "opt", "parent_id": "r"},
            {
                "id": "t",
                "name": "t",
                "parent_id": "r",
                "dependencies": ["req", {"id": "opt", "required": False}],
            },
        ]
    )
    for step in ("req", "opt"):
        tree.start(step, 1, {})
    assert not tree.is_ready(tree.tasks["t"])
    tree.complete("req", 1)
    assert not tree.is_ready(tree.tasks["t"]), "an optional dependency still running blocks"
    tree.fail("opt", "RuntimeError: optional")
    assert tree.tasks["t"].status is P
    assert tree.is_ready(tree.tasks["t"])


# -- the skip cascade -------------------------------------------------------------------------
def test_a_failure_skips_required_dependents_transitively_but_not_optional_ones() -> None:
    tree = make(
        [
            {"id": "r", "name": "r"},
            {"id": "a", "name": "a", "parent_id": "r"},
            {"id": "b", "name": "b", "parent_id": "r", "dependencies": ["a"]},
            {"id": "c", "name": "c", "parent_id": "b", "dependencies": [{"id": "b"}]},
            {
                "id": "d",
                "name": "d",
                "parent_id": "r",
                "dependencies": [{"id": "c", "required": False}],
            },
            {
                "id": "e",
                "name": "e",
                "parent_id": "a",
                "dependencies": [{"id": "a", "required": False}],
            },
            {"id": "f", "name": "f", "parent_id": "d", "dependencies": ["d"]},
        ]
    )
    tree.start("a", 1, {})
    tree.collect_events()
    tree.fail("a", "RuntimeError: boom")

    events = tree.collect_events()
    assert [(type(e).__name__, getattr(e, "task_id", None)) for e in events] == [
        ("Failed", "a"),
        ("Skipped", "b"),
        ("Skipped", "c"),
    ]
    assert tree.tasks["b"].error == "required dependency 'a' failed"
    assert tree.tasks["c"].error == "required dependency 'b' skipped"
    # Optional dependents wait no longer; their own dependents are untouched.
    assert statuses(tree) == {"r": P, "a": F, "b": S, "c": S, "d": P, "e": P, "f": P}
    assert [t.id for t in tree.ready_tasks()] == ["r", "d", "e"]


def test_a_skipped_parent_does_not_skip_its_children() -> None:
    tree = make(
        [
            {"id": "r", "name": "r"},
            {"id": "a", "name": "a", "parent_id": "r"},
            {"id": "p", "name": "p", "parent_id": "r", "dependencies": ["a"]},
            {"id": "child", "name": "child", "parent_id": "p"},
        ]
    )
    tree.cancel("a")
    assert tree.tasks["p"].status is S
    assert tree.tasks["child"].status is P
    assert tree.is_ready(tree.tasks["child"])


def test_depending_on_a_task_that_already_ended_badly_skips_at_once() -> None:
    tree = make(
        [
            {"id": "r", "name": "r"},
            {"id": "bad", "name": "bad", "parent_id": "r"},
            {"id": "t", "name": "t", "parent_id": "r"},
            {"id": "u", "name": "u", "parent_id": "r", "dependencies": ["t"]},
            {"id": "v", "name": "v", "parent_id": "r"},
        ]
    )
    tree.cancel("bad")
    tree.collect_events()

    tree.add_dependency("v", Dependency("bad", required=False))
    assert tree.tasks["v"].status is P
    tree.add_dependency("t", Dependency("bad"))
    assert [type(e) for e in tree.collect_events()] == [
        ev.DependencyAdded,
        ev.DependencyAdded,
        ev.Skipped,
        ev.Skipped,
    ]
    assert (tree.tasks["t"].status, tree.tasks["u"].status) == (S, S)

    tree2 = make([{"id": "r", "name": "r"}, {"id": "bad", "name": "bad", "parent_id": "r"}])
    tree2.cancel("bad")
    tree2.update_task("r", parse_changes({"dependencies": ["bad"]}))
    assert tree2.tasks["r"].status is S


def snapshot_tasks(tree: TaskTree) -> dict[str, Task]:
    return {i: msgspec.structs.replace(t) for i, t in tree.tasks.items()}


@FAST
@given(driven_trees(), st.data())
def test_failing_or_cancelling_skips_exactly_the_required_closure(
    driven: Driven, data: st.DataObject
) -> None:
    tree = driven.tree
    running = ids_by_seq(tree, lambda t: t.status is IP)
    live = ids_by_seq(tree, lambda t: t.status not in TERMINAL_STATUSES)
    if not live:
        return
    before = snapshot_tasks(tree)
    if running and data.draw(st.booleans(), label="fail"):
        victim = data.draw(st.sampled_from(running), label="failed")
        ended = {victim}
        tree.fail(victim, "RuntimeError: boom")
        ended_as = F
    else:
        victim = data.draw(st.sampled_from(live), label="cancelled")
        ended = {
            i for i in descendants(before, victim) if before[i].status not in TERMINAL_STATUSES
        }
        assert set(tree.cancel(victim)) == ended
        ended_as = X

    doomed = required_closure(before, ended)
    for task_id, old in before.items():
        was, now = old.status, tree.tasks[task_id].status
        if task_id in ended:
            assert now is ended_as
        elif task_id in doomed:
            assert now is S, f"{task_id} requires an ended task but is {now}"
        else:
            assert now is was, f"{task_id} went {was} -> {now}"
    skipped_events = [e for e in tree.collect_events() if isinstance(e, ev.Skipped)]
    assert {e.task_id for e in skipped_events} == doomed
    for e in skipped_events:
        requires = [d.id for d in tree.tasks[e.task_id].dependencies if d.required]
        assert any(repr(d) in e.reason and tree.tasks[d].status in ENDED_BADLY for d in requires), (
            e.reason
        )


# -- the derived tree status ------------------------------------------------------------
TWO = [
    {"id": "r", "name": "r"},
    {"id": "a", "name": "a", "parent_id": "r"},
    {"id": "b", "name": "b", "parent_id": "r", "dependencies": ["a"]},
]


def finish(tree: TaskTree, task_id: str, how: str) -> None:
    if how == "cancel":
        tree.cancel(task_id)
        return
    tree.start(task_id, tree.tasks[task_id].attempts + 1, {})
    if how == "complete":
        tree.complete(task_id, task_id)
    elif how == "fail":
        tree.fail(task_id, "RuntimeError: boom")


@pytest.mark.parametrize(
    ("script", "run", "expected"),
    [
        ([], False, TreeStatus.PENDING),
        ([], True, TreeStatus.IN_PROGRESS),
        ([("a", "start")], False, TreeStatus.IN_PROGRESS),
        ([("a", "complete")], False, TreeStatus.PENDING),
        ([("a", "complete")], True, TreeStatus.IN_PROGRESS),
        ([("a", "complete"), ("b", "complete"), ("r", "complete")], False, TreeStatus.COMPLETED),
        ([("a", "complete"), ("b", "complete"), ("r", "complete")], True, TreeStatus.COMPLETED),
        ([("a", "fail"), ("r", "complete")], True, TreeStatus.FAILED),
        ([("a", "fail"), ("r", "start")], True, TreeStatus.IN_PROGRESS),
        ([("a", "complete"), ("b", "fail"), ("r", "complete")], True, TreeStatus.FAILED),
        ([("a", "fail"), ("r", "cancel")], True, TreeStatus.CANCELLED),
        ([("a", "cancel"), ("r", "complete")], True, TreeStatus.CANCELLED),
        ([("r", "cancel")], False, TreeStatus.CANCELLED),
        ([("r", "cancel")], True, TreeStatus.CANCELLED),
    ],
)
def test_tree_status_is_derived_as_designed(
    script: list[tuple[str, str]], run: bool, expected: TreeStatus
) -> None:
    tree = make(TWO)
    if run:
        tree.request_run()
    for task_id, how in script:
        finish(tree, task_id, how)
    assert tree.status is expected
    assert tree.is_terminal is (expected in {"completed", "failed", "cancelled"})


@FAST
@given(driven_trees())
def test_tree_status_follows_the_task_statuses(driven: Driven) -> None:
    tree = driven.tree
    assert tree.status.value == expected_tree_status(tree)
    if tree.status is TreeStatus.COMPLETED:
        assert all(t.status is C for t in tree.tasks.values())
    if tree.is_terminal:
        assert tree.request_run() is False
        assert tree.collect_events() == []
