"""The events of a TaskTree: immutable, past tense, explicitly versioned.

`class_version` is bumped when an event's shape changes; the upcasters that bring an
older stored shape to the current one live with the event as `upcast_vN_vM`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import msgspec
from msgspec import Struct

from domain.specs import Dependency, TaskChanges, TaskSpec, is_text


class TreeEvent(Struct, frozen=True, kw_only=True):
    originator_id: UUID
    originator_version: int
    timestamp: datetime

    class_version: ClassVar[int] = 1


class TaskEvent(TreeEvent, frozen=True, kw_only=True):
    task_id: str


class CarriedResult(Struct, frozen=True):
    """A completed upstream task carried into a copy with its result (not re-run)."""

    task_id: str
    result: Any
    completed_at: datetime | None


class Created(TreeEvent, frozen=True, kw_only=True):
    """The whole validated tree, tasks in creation order."""

    root_id: str
    tasks: tuple[TaskSpec, ...]
    carried: tuple[CarriedResult, ...] = ()
    source_tree_id: UUID | None = None


class DependencyAdded(TaskEvent, frozen=True, kw_only=True):
    dependency: Dependency


class TaskUpdated(TaskEvent, frozen=True, kw_only=True):
    changes: TaskChanges


class TaskRemoved(TaskEvent, frozen=True, kw_only=True):
    """`task_id` and its subtree (`removed_ids`) left the tree before ever running."""

    removed_ids: tuple[str, ...]


class RunRequested(TreeEvent, frozen=True, kw_only=True):
    pass


class Started(TaskEvent, frozen=True, kw_only=True):
    """An attempt began; `inputs` are the resolved inputs the executor was given."""

    attempt: int
    inputs: dict[str, Any]


class Progressed(TaskEvent, frozen=True, kw_only=True):
    progress: float
    message: str | None = None


class Completed(TaskEvent, frozen=True, kw_only=True):
    result: Any


class AttemptFailed(TaskEvent, frozen=True, kw_only=True):
    """One attempt failed and another will follow after `retry_in_s`."""

    attempt: int
    error: str
    retry_in_s: float


class Failed(TaskEvent, frozen=True, kw_only=True):
    attempt: int
    error: str


class Skipped(TaskEvent, frozen=True, kw_only=True):
    reason: str


class Cancelled(TaskEvent, frozen=True, kw_only=True):
    reason: str


class Copied(TreeEvent, frozen=True, kw_only=True):
    """Tasks of this tree (`task_ids`) were copied into a new tree to be re-run there;
    `carried_ids` went along completed, with their results, and will not run again."""

    task_ids: tuple[str, ...]
    new_tree_id: UUID
    new_root_id: str
    carried_ids: tuple[str, ...] = ()


TREE_EVENTS: tuple[type[TreeEvent], ...] = (
    Created,
    DependencyAdded,
    TaskUpdated,
    TaskRemoved,
    RunRequested,
    Started,
    Progressed,
    Completed,
    AttemptFailed,
    Failed,
    Skipped,
    Cancelled,
    Copied,
)


_ENVELOPE = frozenset(TreeEvent.__struct_fields__)
_PAYLOADS: dict[type[TreeEvent], type[Struct]] = {}


def check_payload(event_type: type[TreeEvent], fields: dict[str, Any]) -> str | None:
    """Why `fields` cannot make an `event_type` (a type error, or text that is not
    Unicode), or None. Structs do not check types when built; this keeps bad values out
    of the log, where they would make the tree unreadable."""
    payload = _PAYLOADS.get(event_type)
    if payload is None:
        payload = msgspec.defstruct(
            f"{event_type.__name__}Payload",
            [
                (f.name, f.type) if f.required else (f.name, f.type, f.default)
                for f in msgspec.structs.fields(event_type)
                if f.name not in _ENVELOPE
            ],
            kw_only=True,
        )
        _PAYLOADS[event_type] = payload
    try:
        msgspec.convert(fields, payload, strict=True)
    except msgspec.ValidationError as exc:
        return str(exc)
    for name, value in fields.items():
        if isinstance(value, str) and not is_text(value):
            return f"{name} is not valid Unicode text"
    return None
