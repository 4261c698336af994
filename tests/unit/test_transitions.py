"""The task state machine: one table, obeyed by every command; refusals change nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from domain import events as ev
from domain.errors import (
    Conflict,
    DomainError,
    HasDependents,
    InvalidSpec,
    InvalidTransition,
    NotCancelable,
    NotPending,
)
from domain.specs import Dependency, parse_changes, parse_tasks
from domain.status import TERMINAL, TRANSITIONS, TaskStatus, can_transition, check_transition
from domain.tree import TaskTree
from tests.unit.oracles import ALLOWED, TERMINAL_STATUSES

ALL = list(TaskStatus)


def test_the_table_is_the_one_in_the_design() -> None:
    assert dict(TRANSITIONS) == ALLOWED
    assert frozenset(TERMINAL) == TERMINAL_STATUSES
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()


@pytest.mark.parametrize("current", ALL)
@pytest.mark.parametrize("target", ALL)
def test_check_transition_follows_the_table(current: TaskStatus, target: TaskStatus) -> None:
    allowed = target in ALLOWED[current]
    assert can_transition(current, target) is allowed
    if allowed:
        check_transition("t", current, target)
    else:
        with pytest.raises(InvalidTransition) as caught:
            check_transition("t", current, target)
        assert caught.value.ids == ("t",)
        assert caught.value.code == "invalid_transition"


def tree_with_task_in(status: TaskStatus) -> TaskTree:
    """Root r with children d and t; t requires d. Task t is brought to `status`."""
    tree = TaskTree.create(
        parse_tasks(
            [
                {"id": "r", "name": "root"},
                {"id": "d", "name": "upstream", "parent_id": "r"},
                {"id": "t", "name": "target", "parent_id": "r", "dependencies": ["d"]},
            ]
        )
    )
    tree.start("d", 1, {})
    if status is TaskStatus.SKIPPED:
        tree.fail("d", "ValueError: no")
    else:
        tree.complete("d", {"rows": 3})
    if status is not TaskStatus.PENDING and status is not TaskStatus.SKIPPED:
        if status is TaskStatus.CANCELLED:
            tree.cancel("t", "user asked")
        else:
            tree.start("t", 1, {"d": {"rows": 3}})
            if status is TaskStatus.COMPLETED:
                tree.complete("t", None)
            elif status is TaskStatus.FAILED:
                tree.fail("t", "RuntimeError: boom")
    assert tree.tasks["t"].status is status
    tree.collect_events()
    return tree


def snapshot(tree: TaskTree) -> Any:
    return msgspec.to_builtins(tree.state)


STATUS_COMMANDS: dict[str, tuple[TaskStatus, Callable[[TaskTree], Any]]] = {
    "start": (TaskStatus.IN_PROGRESS, lambda t: t.start("t", t.tasks["t"].attempts + 1, {})),
    "complete": (TaskStatus.COMPLETED, lambda t: t.complete("t", {"ok": True})),
    "fail": (TaskStatus.FAILED, lambda t: t.fail("t", "RuntimeError: boom")),
    "cancel": (TaskStatus.CANCELLED, lambda t: t.cancel("t")),
}


@pytest.mark.parametrize("status", ALL)
@pytest.mark.parametrize("command", list(STATUS_COMMANDS))
def test_every_status_command_obeys_the_table(status: TaskStatus, command: str) -> None:
    target, run = STATUS_COMMANDS[command]
    tree = tree_with_task_in(status)
    before = snapshot(tree)

    if target in ALLOWED[status]:
        run(tree)
        events = tree.collect_events()
        assert tree.tasks["t"].status is target
        mine = [e for e in events if isinstance(e, ev.TaskEvent) and e.task_id == "t"]
        assert len(mine) == 1
    else:
        expected = NotCancelable if command == "cancel" else InvalidTransition
        with pytest.raises(expected) as caught:
            run(tree)
        assert "t" in caught.value.ids
        assert tree.collect_events() == []
        assert snapshot(tree) == before


@pytest.mark.parametrize("status", [s for s in ALL if s is not TaskStatus.PENDING])
@pytest.mark.parametrize(
    "command",
    [
        lambda t: t.update_task("t", parse_changes({"priority": 0})),
        lambda t: t.add_dependency("t", Dependency("r", required=False)),
        lambda t: t.remove_task("t"),
    ],
    ids=["update_task", "add_dependency", "remove_task"],
)
def test_only_pending_tasks_change_definition(
    status: TaskStatus, command: Callable[[TaskTree], Any]
) -> None:
    tree = tree_with_task_in(status)
    before = snapshot(tree)
    with pytest.raises(NotPending) as caught:
        command(tree)
    assert caught.value.code == "not_pending"
    assert "t" in caught.value.ids
    assert tree.collect_events() == []
    assert snapshot(tree) == before


@pytest.mark.parametrize("status", [s for s in ALL if s is not TaskStatus.IN_PROGRESS])
@pytest.mark.parametrize(
    "command",
    [
        lambda t: t.record_progress("t", 0.5),
        lambda t: t.fail_attempt("t", "TimeoutError: slow", 1.0),
    ],
    ids=["record_progress", "fail_attempt"],
)
def test_only_running_tasks_progress_or_retry(
    status: TaskStatus, command: Callable[[TaskTree], Any]
) -> None:
    tree = tree_with_task_in(status)
    before = snapshot(tree)
    with pytest.raises(NotPending):
        command(tree)
    assert tree.collect_events() == []
    assert snapshot(tree) == before


def refuses(tree: TaskTree, command: Callable[[], Any], error: type[DomainError]) -> DomainError:
    before = snapshot(tree)
    with pytest.raises(error) as caught:
        command()
    assert tree.collect_events() == []
    assert snapshot(tree) == before
    return caught.value


def test_a_retry_is_a_new_attempt_of_the_same_run() -> None:
    tree = tree_with_task_in(TaskStatus.IN_PROGRESS)
    first_start = tree.tasks["t"].started_at

    tree.record_progress("t", 0.5, "half")
    tree.fail_attempt("t", "TimeoutError: slow", 2.5)
    events = tree.collect_events()
    assert tree.tasks["t"].status is TaskStatus.IN_PROGRESS
    assert tree.tasks["t"].error == "TimeoutError: slow"
    refuses(tree, lambda: tree.start("t", 1, {}), Conflict)
    tree.start("t", 2, {})
    assert tree.tasks["t"].attempts == 2
    assert tree.tasks["t"].progress == 0.0
    assert tree.tasks["t"].started_at == first_start
    tree.fail("t", "TimeoutError: slow again")

    events += tree.collect_events()
    assert [type(e) for e in events] == [
        ev.Progressed,
        ev.AttemptFailed,
        ev.Started,
        ev.Failed,
    ]
    attempt_failed, failed = events[1], events[3]
    assert isinstance(attempt_failed, ev.AttemptFailed)
    assert (attempt_failed.attempt, attempt_failed.retry_in_s) == (1, 2.5)
    assert isinstance(failed, ev.Failed)
    assert failed.attempt == 2
    assert tree.tasks["t"].status is TaskStatus.FAILED


def test_a_first_attempt_must_be_positive_and_after_the_last() -> None:
    tree = tree_with_task_in(TaskStatus.PENDING)
    refuses(tree, lambda: tree.start("t", 0, {}), Conflict)
    refuses(tree, lambda: tree.start("t", -1, {}), Conflict)
    tree.start("t", 1, {})
    assert tree.tasks["t"].attempts == 1


def test_a_task_that_is_not_ready_does_not_start() -> None:
    tree = TaskTree.create(
        parse_tasks(
            [
                {"id": "r", "name": "r"},
                {"id": "a", "name": "a", "parent_id": "r"},
                {"id": "b", "name": "b", "parent_id": "r", "dependencies": ["a"]},
            ]
        )
    )
    tree.collect_events()
    error = refuses(tree, lambda: tree.start("b", 1, {}), Conflict)
    assert type(error) is Conflict
    assert error.ids == ("b", "a")


@pytest.mark.parametrize("progress", [-0.01, 1.01, float("nan"), float("inf")])
def test_progress_is_a_fraction(progress: float) -> None:
    tree = tree_with_task_in(TaskStatus.IN_PROGRESS)
    error = refuses(tree, lambda: tree.record_progress("t", progress), InvalidSpec)
    assert [f.field for f in error.fields] == ["progress"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (float("nan"), "result"),
        ({"x": float("inf")}, "result.x"),
        ({1: "a"}, "result"),
        ({"s": {1}}, "result.s"),
    ],
)
def test_a_result_must_be_json(value: Any, field: str) -> None:
    tree = tree_with_task_in(TaskStatus.IN_PROGRESS)
    error = refuses(tree, lambda: tree.complete("t", value), InvalidSpec)
    assert [f.field for f in error.fields] == [field]


def test_started_inputs_must_be_json() -> None:
    tree = tree_with_task_in(TaskStatus.PENDING)
    error = refuses(tree, lambda: tree.start("t", 1, {"d": float("nan")}), InvalidSpec)
    assert [f.field for f in error.fields] == ["inputs.d"]


def test_none_is_a_valid_result() -> None:
    tree = tree_with_task_in(TaskStatus.IN_PROGRESS)
    tree.complete("t", None)
    assert tree.tasks["t"].status is TaskStatus.COMPLETED
    assert tree.tasks["t"].result is None
    assert tree.tasks["t"].progress == 1.0


def test_cancel_ends_the_unfinished_subtree_only() -> None:
    tree = TaskTree.create(
        parse_tasks(
            [
                {"id": "r", "name": "r"},
                {"id": "p", "name": "p", "parent_id": "r"},
                {"id": "done", "name": "done", "parent_id": "p"},
                {"id": "running", "name": "running", "parent_id": "p"},
                {"id": "waiting", "name": "waiting", "parent_id": "running"},
                {"id": "other", "name": "other", "parent_id": "r"},
            ]
        )
    )
    for task_id in ("done", "running"):
        tree.start(task_id, 1, {})
    tree.complete("done", 1)
    tree.collect_events()

    cancelled = tree.cancel("p", "stop")
    assert cancelled == ["p", "running", "waiting"]
    assert tree.tasks["done"].status is TaskStatus.COMPLETED
    assert tree.tasks["other"].status is TaskStatus.PENDING
    assert tree.tasks["p"].error == "stop"
    assert "stop" in str(tree.tasks["waiting"].error)
    events = tree.collect_events()
    assert all(isinstance(e, ev.Cancelled) for e in events)
    assert [e.task_id for e in events if isinstance(e, ev.Cancelled)] == cancelled


def test_remove_refuses_a_subtree_that_is_not_all_pending_or_is_depended_on() -> None:
    tree = TaskTree.create(
        parse_tasks(
            [
                {"id": "r", "name": "r"},
                {"id": "p", "name": "p", "parent_id": "r"},
                {"id": "c", "name": "c", "parent_id": "p"},
                {"id": "u", "name": "u", "parent_id": "r", "dependencies": ["c"]},
                {"id": "q", "name": "q", "parent_id": "r"},
                {"id": "qc", "name": "qc", "parent_id": "q"},
            ]
        )
    )
    tree.collect_events()
    error = refuses(tree, lambda: tree.remove_task("p"), HasDependents)
    assert error.ids == ("p", "u")
    assert error.code == "has_dependents"

    tree.start("qc", 1, {})
    tree.collect_events()
    error = refuses(tree, lambda: tree.remove_task("q"), NotPending)
    assert error.ids == ("qc",)

    assert tree.remove_task("u") == ("u",)
    assert tree.remove_task("p") == ("p", "c")
    (first, second) = tree.collect_events()
    assert isinstance(first, ev.TaskRemoved)
    assert isinstance(second, ev.TaskRemoved)
    assert second.removed_ids == ("p", "c")
    assert set(tree.tasks) == {"r", "q", "qc"}


def test_request_run_is_recorded_once_and_never_on_a_finished_tree() -> None:
    tree = tree_with_task_in(TaskStatus.PENDING)
    assert tree.request_run() is True
    assert tree.request_run() is False
    events = tree.collect_events()
    assert [type(e) for e in events] == [ev.RunRequested]

    done = tree_with_task_in(TaskStatus.CANCELLED)
    done.cancel("r")
    done.collect_events()
    assert done.is_terminal
    assert done.request_run() is False
    assert done.collect_events() == []
    assert done.state.run_requested is False
