"""The one mutator: folds each event into a TreeState. It never validates (replay never
re-checks rules that may have changed since) and it is the only code that changes state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from msgspec import UNSET

from domain import events as ev
from domain.state import Task, TreeState
from domain.status import TaskStatus

STRUCTURAL: frozenset[type[ev.TreeEvent]] = frozenset(
    {ev.DependencyAdded, ev.TaskUpdated, ev.TaskRemoved}
)


def state_from_created(event: ev.Created) -> TreeState:
    at = event.timestamp
    tasks = {
        s.id: Task(
            id=s.id,
            name=s.name,
            parent_id=s.parent_id,
            user_id=s.user_id,
            priority=s.priority,
            dependencies=s.dependencies,
            inputs=s.inputs,
            params=s.params,
            schemas=s.schemas,
            seq=i,
            created_at=at,
            original_task_id=s.original_task_id,
        )
        for i, s in enumerate(event.tasks)
    }
    for carried in event.carried:
        task = tasks[carried.task_id]
        task.status = TaskStatus.COMPLETED
        task.result = carried.result
        task.progress = 1.0
        task.completed_at = carried.completed_at or at
    return TreeState(
        id=event.originator_id,
        version=event.originator_version,
        created_on=at,
        modified_on=at,
        root_id=event.root_id,
        tasks=tasks,
        source_tree_id=event.source_tree_id,
    )


def mutate(state: TreeState, event: ev.TreeEvent) -> None:
    """Fold one event (anything but Created) into `state`."""
    _MUTATORS[type(event)](state, event)
    state.version = event.originator_version
    state.modified_on = event.timestamp


def _dependency_added(state: TreeState, e: ev.DependencyAdded) -> None:
    task = state.tasks[e.task_id]
    task.dependencies = (*task.dependencies, e.dependency)


def _updated(state: TreeState, e: ev.TaskUpdated) -> None:
    task = state.tasks[e.task_id]
    for name in e.changes.__struct_fields__:
        value = getattr(e.changes, name)
        if value is not UNSET:
            setattr(task, name, value)


def _removed(state: TreeState, e: ev.TaskRemoved) -> None:
    for task_id in e.removed_ids:
        del state.tasks[task_id]


def _run_requested(state: TreeState, e: ev.RunRequested) -> None:
    state.run_requested = True


def _started(state: TreeState, e: ev.Started) -> None:
    task = state.tasks[e.task_id]
    task.status = TaskStatus.IN_PROGRESS
    task.attempts = e.attempt
    task.progress = 0.0
    task.retry_at = None
    if task.started_at is None:
        task.started_at = e.timestamp


def _progressed(state: TreeState, e: ev.Progressed) -> None:
    state.tasks[e.task_id].progress = e.progress


def _completed(state: TreeState, e: ev.Completed) -> None:
    task = state.tasks[e.task_id]
    task.status = TaskStatus.COMPLETED
    task.result = e.result
    task.error = None
    task.progress = 1.0
    task.completed_at = e.timestamp


def _attempt_failed(state: TreeState, e: ev.AttemptFailed) -> None:
    task = state.tasks[e.task_id]
    task.error = e.error
    task.retry_at = e.timestamp + timedelta(seconds=e.retry_in_s)


def _end(state: TreeState, task_id: str, status: TaskStatus, error: str, at: datetime) -> None:
    task = state.tasks[task_id]
    task.status = status
    task.error = error
    task.completed_at = at


def _failed(state: TreeState, e: ev.Failed) -> None:
    _end(state, e.task_id, TaskStatus.FAILED, e.error, e.timestamp)


def _skipped(state: TreeState, e: ev.Skipped) -> None:
    _end(state, e.task_id, TaskStatus.SKIPPED, e.reason, e.timestamp)


def _cancelled(state: TreeState, e: ev.Cancelled) -> None:
    _end(state, e.task_id, TaskStatus.CANCELLED, e.reason, e.timestamp)


def _copied(state: TreeState, e: ev.Copied) -> None:
    for task_id in e.task_ids:
        state.tasks[task_id].has_copy = True
    state.copies.append(e.new_tree_id)


_MUTATORS: dict[type[ev.TreeEvent], Callable[[TreeState, Any], None]] = {
    ev.DependencyAdded: _dependency_added,
    ev.TaskUpdated: _updated,
    ev.TaskRemoved: _removed,
    ev.RunRequested: _run_requested,
    ev.Started: _started,
    ev.Progressed: _progressed,
    ev.Completed: _completed,
    ev.AttemptFailed: _attempt_failed,
    ev.Failed: _failed,
    ev.Skipped: _skipped,
    ev.Cancelled: _cancelled,
    ev.Copied: _copied,
}
