"""What the task-tree agent reads from an A2A message (the tree to run) and writes back
(status updates, artifacts, summaries), in a2a-sdk's protobuf types."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Part,
    Role,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import InvalidParamsError
from google.protobuf import json_format, struct_pb2

from domain.errors import DomainError, TreeRejected
from domain.specs import TaskSpec, read_tasks
from domain.tree import TaskTree

TREE_SHAPE = 'a data part {"tasks": [...]} describing the task tree'

TREE_STATES = {
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "cancelled": TaskState.TASK_STATE_CANCELED,
}


def invalid(field: str, reason: str) -> InvalidParamsError:
    return InvalidParamsError(
        message=f"{field}: {reason}", data={"errors": [{"field": field, "message": reason}]}
    )


def whole_numbers(value: Any) -> Any:
    """protobuf's Value keeps every JSON number as a double: 1 arrives as 1.0. Give whole
    numbers back as ints (JSON does not tell 1 from 1.0), so priority: 1 stays an int."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def _part_value(part: Part) -> tuple[str, Any] | None:
    """The JSON a part carries: a data part's value, or a text part that is a JSON
    object or array (for clients that only send text)."""
    kind = part.WhichOneof("content")
    if kind == "data":
        return "data", whole_numbers(json_format.MessageToDict(part.data))
    if kind == "text" and part.text.lstrip()[:1] in ("{", "["):
        try:
            return "text", json.loads(part.text)
        except ValueError:
            return None
    return None


def tree_payload(message: Message | None) -> tuple[str, Any]:
    """The task array a message asks to run, and the field it came from; InvalidParamsError
    (naming the field and the reason) if it carries none."""
    if message is None or not message.parts:
        raise invalid("message.parts", f"expected {TREE_SHAPE}")
    for i, part in enumerate(message.parts):
        found = _part_value(part)
        if found is None:
            continue
        kind, value = found
        if isinstance(value, dict) and "tasks" in value:
            return f"message.parts[{i}].{kind}", value["tasks"]
        if isinstance(value, list):
            return f"message.parts[{i}].{kind}", value
    raise invalid("message.parts", f"no part holds {TREE_SHAPE}")


class CheckedTree(NamedTuple):
    tasks: Any  # the task array, as sent
    where: str  # the field it came from
    specs: list[TaskSpec]
    declared_root: str | None  # the root's id, if the tasks give ids
    names: dict[str, str]  # generated id -> the name the caller used (tasks without ids)


def checked_tree(message: Message | None) -> CheckedTree:
    """The tree `message` asks to run, validated as tasks.create would (nothing stored)."""
    where, tasks = tree_payload(message)
    try:
        submitted = read_tasks(tasks)
        try:
            TaskTree.create(submitted.specs)
        except TreeRejected as exc:
            raise exc.relabelled(submitted.names or {}) from None
    except DomainError as exc:
        raise refused(exc, where) from None
    declared = None
    if submitted.names is None:
        declared = next(s.id for s in submitted.specs if s.parent_id is None)
    return CheckedTree(tasks, where, submitted.specs, declared, submitted.names or {})


def refused(exc: DomainError, where: str = "") -> InvalidParamsError:
    """A domain refusal as InvalidParamsError, its fields placed under `where`."""
    errors = [
        {"field": f"{where}.{f.field}" if where else f.field, "message": f.reason}
        for f in exc.fields
    ]
    data: dict[str, Any] = {"code": exc.code}
    if errors:
        data["errors"] = errors
    if exc.ids:
        data["ids"] = ", ".join(exc.ids)
    return InvalidParamsError(message=exc.message, data=data)


def now_status(state: TaskState, text: str | None = None) -> TaskStatus:
    status = TaskStatus(state=state)
    status.timestamp.FromDatetime(datetime.now(UTC))
    if text is not None:
        status.message.CopyFrom(agent_text(text))
    return status


def agent_text(text: str) -> Message:
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_AGENT, parts=[Part(text=text)])


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update({k: v for k, v in values.items() if v is not None})
    return out


def result_artifact(task_id: str, name: str | None, result: Any) -> Artifact:
    """A task's result as the artifact "result:<task id>" (one data part)."""
    value = struct_pb2.Value()
    json_format.ParseDict(result, value)
    return Artifact(
        artifact_id=f"result:{task_id}",
        name=f"result:{task_id}",
        description=f"the result of task {name or task_id}",
        parts=[Part(data=value)],
        metadata=struct({"task_id": task_id, "task_name": name}),
    )
