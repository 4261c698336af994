"""What a running executor may know about its task: ids, the attempt, dependency results,
and a way to report progress. Read it with `current_task()` or take a `context` argument."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class TaskContext:
    task_id: str
    tree_id: UUID
    name: str
    attempt: int  # 1 on the first run; higher on a retry or a re-run after a crash
    params: dict[str, Any]
    dependency_results: dict[str, Any]  # {dependency id: result} of completed dependencies
    report: Callable[[float, str | None], None] = field(repr=False)

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0..1); it is saved with the runner's next step."""
        self.report(fraction, message)


_current: ContextVar[TaskContext] = ContextVar("flowledger_task")


def current_task() -> TaskContext:
    """The task the calling executor runs for (LookupError outside an executor)."""
    return _current.get()


def bind(context: TaskContext) -> None:
    _current.set(context)
