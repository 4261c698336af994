"""The state a TaskTree folds its events into; what a snapshot stores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from msgspec import Struct

from domain.specs import Dependency
from domain.status import TaskStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class Task(Struct, kw_only=True):
    """One task of a tree: its definition and its run state."""

    id: str
    name: str
    parent_id: str | None
    user_id: str | None
    priority: int
    dependencies: tuple[Dependency, ...]
    inputs: dict[str, Any]
    params: dict[str, Any]
    schemas: dict[str, Any]
    seq: int
    created_at: datetime
    original_task_id: str | None = None
    status: TaskStatus = TaskStatus.PENDING
    result: Any = None
    error: str | None = None
    progress: float = 0.0
    attempts: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    has_copy: bool = False
    retry_at: datetime | None = None  # set while a failed attempt waits for its retry


class TreeState(Struct, kw_only=True):
    """Everything a TaskTree knows; what a snapshot stores."""

    id: UUID
    version: int
    created_on: datetime
    modified_on: datetime
    root_id: str
    tasks: dict[str, Task]
    run_requested: bool = False
    source_tree_id: UUID | None = None
    copies: list[UUID] = []
