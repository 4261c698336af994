"""Folding one batch of tree events into the read-model rows they touch, in memory.

Each tree touched by the batch is held as a *partial* TreeState: only the tasks the batch's
events name (or all of them, for a tree the batch creates). The events are applied with the
domain's own mutator, so a task row always equals what the aggregate itself says; the fold
adds what only the read side keeps (per-status counts, child counts, timestamps).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from domain import events as ev
from domain.mutator import mutate, state_from_created
from domain.specs import Dependency
from domain.state import Task, TreeState
from domain.status import TaskStatus, TreeStatus, tree_status

STATUS_COLUMNS = tuple(s.value for s in TaskStatus)


def user_key(user_id: str | None) -> str:
    return "" if user_id is None else user_id


@dataclass
class TreeRecord:
    """A tree's row and the task rows of it a batch touches."""

    state: TreeState  # `tasks` holds only the loaded or created tasks
    counts: Counter[TaskStatus]
    task_count: int
    user_id: str | None
    created_at: datetime
    finished_at: datetime | None
    copy_count: int
    is_new: bool
    child_count: dict[str, int] = field(default_factory=dict)
    updated_at: dict[str, datetime] = field(default_factory=dict)
    new_tasks: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)

    @property
    def status(self) -> TreeStatus:
        return tree_status(self.counts, self.task_count, self.state.run_requested)

    def tree_row(self) -> dict[str, Any]:
        state = self.state
        row: dict[str, Any] = {
            "id": str(state.id),
            "root_id": state.root_id,
            "user_id": self.user_id,
            "status": self.status.value,
            "version": state.version,
            "task_count": self.task_count,
            "run_requested": state.run_requested,
            "source_tree_id": None if state.source_tree_id is None else str(state.source_tree_id),
            "copy_count": self.copy_count,
            "created_at": self.created_at,
            "updated_at": state.modified_on,
            "finished_at": self.finished_at,
        }
        for status in TaskStatus:
            row[status.value] = self.counts[status]
        return row

    def task_row(self, task_id: str) -> dict[str, Any]:
        task = self.state.tasks[task_id]
        return {
            "id": task.id,
            "tree_id": str(self.state.id),
            "parent_id": task.parent_id,
            "is_root": task.id == self.state.root_id,
            "user_id": task.user_id,
            "name": task.name,
            "status": task.status.value,
            "priority": task.priority,
            "dependencies": task.dependencies,  # Structs: JSON [{"id", "required"}] as written
            "inputs": task.inputs,
            "params": task.params,
            "schemas": task.schemas,
            "result": task.result,
            "error": task.error,
            "progress": task.progress,
            "attempts": task.attempts,
            "seq": task.seq,
            "child_count": self.child_count[task.id],
            "original_task_id": task.original_task_id,
            "has_copy": task.has_copy,
            "created_at": task.created_at,
            "started_at": task.started_at,
            "completed_at": task.completed_at,
            "retry_at": task.retry_at,
            "updated_at": self.updated_at[task.id],
        }


def record_from_row(row: Any) -> TreeRecord:
    """A stored tree row, with no tasks loaded yet."""
    state = TreeState(
        id=UUID(row.id),
        version=row.version,
        created_on=row.created_at,
        modified_on=row.updated_at,
        root_id=row.root_id,
        tasks={},
        run_requested=row.run_requested,
        source_tree_id=None if row.source_tree_id is None else UUID(row.source_tree_id),
    )
    counts = Counter({s: getattr(row, s.value) for s in TaskStatus})
    return TreeRecord(
        state=state,
        counts=counts,
        task_count=row.task_count,
        user_id=row.user_id,
        created_at=row.created_at,
        finished_at=row.finished_at,
        copy_count=row.copy_count,
        is_new=False,
    )


def add_task_row(record: TreeRecord, row: Any) -> None:
    """Put a stored task row into `record`'s partial state."""
    record.state.tasks[row.id] = Task(
        id=row.id,
        name=row.name,
        parent_id=row.parent_id,
        user_id=row.user_id,
        priority=row.priority,
        dependencies=tuple(msgspec.convert(d, Dependency) for d in row.dependencies),
        inputs=row.inputs,
        params=row.params,
        schemas=row.schemas,
        seq=row.seq,
        created_at=row.created_at,
        original_task_id=row.original_task_id,
        status=TaskStatus(row.status),
        result=row.result,
        error=row.error,
        progress=row.progress,
        attempts=row.attempts,
        started_at=row.started_at,
        completed_at=row.completed_at,
        has_copy=row.has_copy,
        retry_at=row.retry_at,
    )
    record.child_count[row.id] = row.child_count
    record.updated_at[row.id] = row.updated_at


def task_ids_named(event: ev.TreeEvent) -> Iterable[str]:
    """The existing tasks an event changes (what must be loaded before applying it)."""
    if isinstance(event, ev.TaskRemoved):
        return event.removed_ids
    if isinstance(event, ev.Copied):
        return event.task_ids
    task_id = getattr(event, "task_id", None)
    return () if task_id is None else (task_id,)


class BatchFold:
    """Applies a batch's events to TreeRecords. `load_task(record, task_id)` must put a
    stored task into the record (used for the rare row no prefetch foresaw)."""

    def __init__(
        self,
        records: dict[UUID, TreeRecord],
        load_task: Callable[[TreeRecord, str], None],
    ) -> None:
        self.records = records
        self.load_task = load_task
        self.user_counts: Counter[tuple[str, str]] = Counter()

    def apply(self, event: ev.TreeEvent) -> None:
        if isinstance(event, ev.Created):
            self._created(event)
            return
        record = self.records[event.originator_id]
        for named in task_ids_named(event):
            if named not in record.state.tasks:
                self.load_task(record, named)
        if isinstance(event, ev.TaskRemoved):
            self._removed(record, event)
        else:
            task_id: str | None = getattr(event, "task_id", None)
            before = None if task_id is None else record.state.tasks[task_id].status
            mutate(record.state, event)
            if task_id is not None:
                task = record.state.tasks[task_id]
                self._count(record, task, before, task.status)
                record.updated_at[task_id] = event.timestamp
                record.touched.add(task_id)
            if isinstance(event, ev.Copied):
                record.copy_count += 1
                for copied in event.task_ids:
                    record.updated_at[copied] = event.timestamp
                    record.touched.add(copied)
        self._finish(record, event.timestamp)

    def _created(self, event: ev.Created) -> None:
        state = state_from_created(event)
        root = state.tasks[state.root_id]
        record = TreeRecord(
            state=state,
            counts=Counter(),
            task_count=len(state.tasks),
            user_id=root.user_id,
            created_at=event.timestamp,
            finished_at=None,
            copy_count=0,
            is_new=True,
        )
        record.child_count = dict.fromkeys(state.tasks, 0)
        record.updated_at = dict.fromkeys(state.tasks, event.timestamp)
        for task in state.tasks.values():
            if task.parent_id is not None:
                record.child_count[task.parent_id] += 1
            self._count(record, task, None, task.status)
        record.new_tasks = set(state.tasks)
        self.records[state.id] = record
        self._finish(record, event.timestamp)

    def _removed(self, record: TreeRecord, event: ev.TaskRemoved) -> None:
        parent_id = record.state.tasks[event.task_id].parent_id
        if parent_id is not None and parent_id not in record.state.tasks:
            self.load_task(record, parent_id)
        for removed_id in event.removed_ids:
            self._count(
                record, record.state.tasks[removed_id], record.state.tasks[removed_id].status, None
            )
        mutate(record.state, event)
        record.task_count -= len(event.removed_ids)
        for removed_id in event.removed_ids:
            record.removed.add(removed_id)
            record.touched.discard(removed_id)
            record.new_tasks.discard(removed_id)
        if parent_id is not None:
            record.child_count[parent_id] -= 1
            record.updated_at[parent_id] = event.timestamp
            record.touched.add(parent_id)

    def _count(
        self,
        record: TreeRecord,
        task: Task,
        before: TaskStatus | None,
        after: TaskStatus | None,
    ) -> None:
        if before is after:
            return
        who = user_key(task.user_id)
        if before is not None:
            record.counts[before] -= 1
            self.user_counts[(who, before.value)] -= 1
        if after is not None:
            record.counts[after] += 1
            self.user_counts[(who, after.value)] += 1

    @staticmethod
    def _finish(record: TreeRecord, at: datetime) -> None:
        """A tree is finished when no task is left to run (tree_status is then terminal)."""
        counts = record.counts
        if counts[TaskStatus.PENDING] or counts[TaskStatus.IN_PROGRESS]:
            record.finished_at = None
        elif record.finished_at is None:
            record.finished_at = at
