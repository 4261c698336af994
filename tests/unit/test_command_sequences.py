"""Random command sequences on valid trees: refused commands change nothing and emit nothing;
the events always replay to the live state and always follow the transition table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from domain import events as ev
from domain.errors import DomainError
from domain.specs import Dependency, parse_changes, parse_tasks
from domain.status import TaskStatus
from domain.tree import TaskTree, project_tree
from tests.unit.oracles import (
    ALLOWED,
    ENDED_BADLY,
    TERMINAL_STATUSES,
    expected_ready,
    expected_tree_status,
    satisfied,
)
from tests.unit.strategies import (
    THOROUGH,
    TreeCase,
    ids_by_seq,
    json_objects,
    json_values,
    tree_cases,
)

UNKNOWN = "no-such-task"
NAN = float("nan")


@dataclass(frozen=True)
class Command:
    """One command against a task chosen at run time: the `pick`-th task of `pool`."""

    kind: str
    pool: str = "any"
    pick: int = 0
    attempt_step: int = 1
    value: Any = None
    number: float = 0.0
    other: int = 0
    required: bool = True
    changes: dict[str, Any] | None = None
    new_deps: tuple[tuple[int, bool], ...] | None = None


picks = st.integers(-1, 12)  # -1 names a task that does not exist
bad_json = st.sampled_from([{"x": NAN}, {1: "int key"}, {"s": {1, 2}}])
good_changes = st.fixed_dictionaries(
    {},
    optional={
        "name": st.just("renamed"),
        "priority": st.integers(0, 4),
        "inputs": json_objects | st.none(),
        "params": st.just({"executor_id": "echo"}),
    },
)
bad_changes = st.sampled_from(
    [{"name": ""}, {"name": "  "}, {"priority": -1}, {"priority": "1"}, {"status": "completed"}]
)
change_dicts = st.one_of(good_changes, good_changes, good_changes, bad_changes)

starts = st.builds(
    Command,
    kind=st.just("start"),
    pool=st.sampled_from(["ready", "ready", "ready", "running", "any"]),
    pick=picks,
    attempt_step=st.sampled_from([1, 1, 1, 1, 2, 0, -1]),
    value=st.one_of(json_objects, json_objects, json_objects, bad_json),
)
completions = st.builds(
    Command,
    kind=st.just("complete"),
    pool=st.sampled_from(["running", "running", "running", "any"]),
    pick=picks,
    value=st.one_of(json_values, json_values, json_values, bad_json),
)
# "advance" does what a runner would do next (finish a running task, else start a ready
# one), so that runs get somewhere; the other commands are aimed at random tasks.
advances = st.builds(
    Command,
    kind=st.just("advance"),
    pick=picks,
    required=st.sampled_from([True, True, True, False]),  # False: the task fails
    value=json_values,
)
commands = st.one_of(
    advances,
    advances,
    advances,
    starts,
    completions,
    st.builds(
        Command,
        kind=st.sampled_from(["fail", "fail_attempt", "record_progress"]),
        pool=st.sampled_from(["running", "running", "any"]),
        pick=picks,
        number=st.floats(-0.5, 1.5) | st.just(NAN) | st.just(1.0),
    ),
    st.builds(
        Command, kind=st.just("cancel"), pool=st.sampled_from(["any", "running"]), pick=picks
    ),
    st.builds(
        Command,
        kind=st.just("update_task"),
        pool=st.sampled_from(["pending", "pending", "any"]),
        pick=picks,
        changes=change_dicts,
        new_deps=st.none() | st.lists(st.tuples(picks, st.booleans()), max_size=3).map(tuple),
    ),
    st.builds(
        Command,
        kind=st.just("add_dependency"),
        pool=st.sampled_from(["pending", "any"]),
        pick=picks,
        other=picks,
        required=st.booleans(),
    ),
    st.builds(
        Command,
        kind=st.just("remove_task"),
        pool=st.sampled_from(["pending_child", "pending_child", "pending", "any"]),
        pick=picks,
    ),
    st.just(Command(kind="request_run")),
)

POOLS = {
    "any": lambda t: True,
    "pending": lambda t: t.status is TaskStatus.PENDING,
    "running": lambda t: t.status is TaskStatus.IN_PROGRESS,
    "pending_child": lambda t: t.status is TaskStatus.PENDING and t.parent_id is not None,
}


def choose(tree: TaskTree, pool: str, pick: int) -> str:
    if pick < 0:
        return UNKNOWN
    ready = pool == "ready"
    ids = [t.id for t in tree.ready_tasks()] if ready else ids_by_seq(tree, POOLS[pool])
    ids = ids or ids_by_seq(tree)
    return ids[pick % len(ids)] if ids else UNKNOWN


def execute(tree: TaskTree, cmd: Command) -> None:
    task_id = choose(tree, cmd.pool, cmd.pick)
    if cmd.kind == "advance":
        running = ids_by_seq(tree, POOLS["running"])
        ready = [t.id for t in tree.ready_tasks()]
        if running:
            task_id = running[cmd.pick % len(running)]
            if cmd.required:
                tree.complete(task_id, cmd.value)
            else:
                tree.fail(task_id, "RuntimeError: boom")
        elif ready:
            task = tree.tasks[ready[cmd.pick % len(ready)]]
            tree.start(task.id, task.attempts + 1, dict(task.inputs))
    elif cmd.kind == "start":
        attempts = tree.tasks[task_id].attempts if task_id in tree.tasks else 0
        tree.start(task_id, attempts + cmd.attempt_step, cmd.value)
    elif cmd.kind == "complete":
        tree.complete(task_id, cmd.value)
    elif cmd.kind == "fail":
        tree.fail(task_id, "RuntimeError: boom")
    elif cmd.kind == "fail_attempt":
        tree.fail_attempt(task_id, "TimeoutError: slow", abs(cmd.number))
    elif cmd.kind == "record_progress":
        tree.record_progress(task_id, cmd.number, "working")
    elif cmd.kind == "cancel":
        tree.cancel(task_id, "stop")
    elif cmd.kind == "update_task":
        raw = dict(cmd.changes or {})
        if cmd.new_deps is not None:
            raw["dependencies"] = [
                {"id": choose(tree, "any", pick), "required": required}
                for pick, required in cmd.new_deps
            ]
        tree.update_task(task_id, parse_changes(raw))
    elif cmd.kind == "add_dependency":
        tree.add_dependency(task_id, Dependency(choose(tree, "any", cmd.other), cmd.required))
    elif cmd.kind == "remove_task":
        tree.remove_task(task_id)
    elif cmd.kind == "request_run":
        tree.request_run()
    else:  # pragma: no cover - a typo in the strategy
        raise AssertionError(cmd.kind)


STATUS_OF_EVENT: dict[type[ev.TreeEvent], TaskStatus] = {
    ev.Started: TaskStatus.IN_PROGRESS,
    ev.Completed: TaskStatus.COMPLETED,
    ev.Failed: TaskStatus.FAILED,
    ev.Skipped: TaskStatus.SKIPPED,
    ev.Cancelled: TaskStatus.CANCELLED,
}


def check_event(shadow: TaskTree, event: ev.TreeEvent) -> None:
    """`event` is legal in the state `shadow` holds just before it."""
    assert event.originator_id == shadow.id
    assert event.originator_version == shadow.version + 1
    if isinstance(event, ev.RunRequested):
        assert not shadow.state.run_requested
        return
    if isinstance(event, ev.TaskRemoved):
        assert event.removed_ids[0] == event.task_id
        assert all(shadow.tasks[i].status is TaskStatus.PENDING for i in event.removed_ids)
        return
    if not isinstance(event, ev.TaskEvent):
        raise AssertionError(f"unexpected event {event!r}")
    task = shadow.tasks[event.task_id]
    before = task.status
    target = STATUS_OF_EVENT.get(type(event))
    if target is not None:
        assert target in ALLOWED[before], f"{event.task_id}: {before} -> {target}"
    if isinstance(event, ev.Started):
        assert event.attempt > task.attempts
        if before is TaskStatus.PENDING:
            assert all(satisfied(shadow, d.id, d.required) for d in task.dependencies)
    elif isinstance(event, (ev.Progressed, ev.AttemptFailed)):
        assert before is TaskStatus.IN_PROGRESS
    elif isinstance(event, (ev.TaskUpdated, ev.DependencyAdded)):
        assert before is TaskStatus.PENDING
    elif isinstance(event, ev.Failed):
        assert event.attempt == task.attempts


def check_skipped(tree: TaskTree) -> None:
    """A skipped task requires a task that ended failed, cancelled or skipped."""
    for t in tree.tasks.values():
        if t.status is TaskStatus.SKIPPED:
            assert any(
                d.required and tree.tasks[d.id].status in ENDED_BADLY for d in t.dependencies
            ), f"{t.id} skipped but no required dependency ended badly"


def check_ran_only_when_ready(tree: TaskTree) -> None:
    """A task that ever started had its required deps completed and optional deps ended."""
    for t in tree.tasks.values():
        if t.attempts > 0:
            for d in t.dependencies:
                assert satisfied(tree, d.id, d.required), f"{t.id} ran before {d.id}"


def snapshot(tree: TaskTree) -> Any:
    return msgspec.to_builtins(tree.state)


@THOROUGH
@given(tree_cases(max_size=7, with_ids=True), st.lists(commands, min_size=5, max_size=40))
def test_any_command_sequence_keeps_every_invariant(
    case: TreeCase, sequence: list[Command]
) -> None:
    tree = TaskTree.create(parse_tasks(case.payload()))
    creation_order = ids_by_seq(tree)
    history = tree.collect_events()
    replica = project_tree(None, history)
    assert replica is not None

    for cmd in sequence:
        before = snapshot(tree)
        statuses = {i: t.status for i, t in tree.tasks.items()}
        try:
            execute(tree, cmd)
        except DomainError:
            assert tree.collect_events() == [], f"{cmd} was refused but emitted events"
            assert snapshot(tree) == before, f"{cmd} was refused but changed the state"
            continue
        emitted = tree.collect_events()
        for event in emitted:
            check_event(replica, event)
            replica.apply(event)
        history += emitted
        assert snapshot(replica) == snapshot(tree), f"replaying the events of {cmd} differs"

        for task_id, status in statuses.items():
            if status in TERMINAL_STATUSES:
                assert task_id in tree.tasks, f"terminal {task_id} was removed by {cmd}"
                assert tree.tasks[task_id].status is status, f"{task_id} left {status}"
        check_skipped(tree)
        check_ran_only_when_ready(tree)
        assert [t.id for t in tree.ready_tasks()] == expected_ready(tree, creation_order)
        assert tree.status.value == expected_tree_status(tree)
        if not tree.is_terminal:
            # ADR 0003: skips are eager, so a tree that is not over can always move on.
            assert tree.ready_tasks() or any(
                t.status is TaskStatus.IN_PROGRESS for t in tree.tasks.values()
            )

    replayed = project_tree(None, history)
    assert replayed is not None
    assert snapshot(replayed) == snapshot(tree)
