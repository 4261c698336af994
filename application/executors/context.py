"""What a running executor may know about its task: ids, the attempt, dependency results,
and a way to report progress. Read it with `current_task()` or take a `context` argument."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class TaskContext:
    task_id: str
    tree_id: UUID
    name: str
    attempt: int  # 1 on the first run; higher on a retry or a re-run after a crash
    params: dict[str, Any]
    results_of_dependencies: Callable[[], dict[str, Any]] = field(repr=False)
    report: Callable[[float, str | None], None] = field(repr=False)

    @cached_property
    def dependency_results(self) -> dict[str, Any]:
        """{dependency id: result} of the dependencies that completed."""
        return self.results_of_dependencies()

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0..1); it is saved with the runner's next step."""
        self.report(fraction, message)


_current: ContextVar[TaskContext] = ContextVar("flowledger_task")


def current_task() -> TaskContext:
    """The task the calling executor runs for (LookupError outside an executor)."""
    return _current.get()


def bind(context: TaskContext) -> None:
    _current.set(context)
