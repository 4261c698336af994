"""Task and tree statuses, and the one table of allowed task transitions."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from domain.errors import InvalidTransition


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class TreeStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[TaskStatus] = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED}
)

# in_progress -> in_progress is a new attempt of the same run (a retry, or recovery after a
# crash); it is only ever taken by Started with a higher attempt number.
TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset(
        {TaskStatus.IN_PROGRESS, TaskStatus.CANCELLED, TaskStatus.SKIPPED}
    ),
    TaskStatus.IN_PROGRESS: frozenset(
        {
            TaskStatus.IN_PROGRESS,
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        }
    ),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
    TaskStatus.SKIPPED: frozenset(),
}


def tree_status(counts: Mapping[TaskStatus, int], total: int, run_requested: bool) -> TreeStatus:
    """A tree's status, derived from how many of its `total` tasks are in each status:
    completed when all completed; cancelled if any was cancelled; failed when anything else
    ended it; pending until asked to run; in progress in between. A tree whose root was
    removed (no tasks left) was abandoned: cancelled."""
    if total == 0:
        return TreeStatus.CANCELLED
    ended = sum(counts.get(s, 0) for s in TERMINAL)
    if ended == total:
        if counts.get(TaskStatus.COMPLETED, 0) == total:
            return TreeStatus.COMPLETED
        if counts.get(TaskStatus.CANCELLED, 0):
            return TreeStatus.CANCELLED
        return TreeStatus.FAILED
    if not run_requested and not counts.get(TaskStatus.IN_PROGRESS, 0):
        return TreeStatus.PENDING
    return TreeStatus.IN_PROGRESS


def can_transition(current: TaskStatus, target: TaskStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(task_id: str, current: TaskStatus, target: TaskStatus) -> None:
    """Raise InvalidTransition unless the table allows current -> target."""
    if not can_transition(current, target):
        raise InvalidTransition(
            f"task {task_id!r} cannot go from {current.value} to {target.value}",
            ids=(task_id,),
        )
