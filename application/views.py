"""Plain-data views of trees and events: the task JSON of API.md, and history entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from domain.events import TreeEvent
from domain.tree import Task, TaskTree


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def task_json(tree: TaskTree, task: Task) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": task.id,
        "parent_id": task.parent_id,
        "user_id": task.user_id,
        "name": task.name,
        "status": task.status.value,
        "priority": task.priority,
        "dependencies": [{"id": d.id, "required": d.required} for d in task.dependencies],
        "inputs": task.inputs,
        "params": task.params,
        "schemas": task.schemas,
        "result": task.result,
        "error": task.error,
        "progress": task.progress,
        "attempts": task.attempts,
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "completed_at": iso(task.completed_at),
        "has_children": bool(tree.children.get(task.id)),
        "original_task_id": task.original_task_id,
        "has_copy": task.has_copy,
        "tree_id": str(tree.id),
    }
    if task.id == tree.root_id:
        data["tree_status"] = tree.status.value
    return data


def children_of(tree: TaskTree, task_id: str) -> list[Task]:
    """Direct children, most urgent first (priority, then creation order)."""
    kids = [tree.tasks[i] for i in tree.children.get(task_id, ())]
    kids.sort(key=lambda t: (t.priority, t.seq))
    return kids


def tree_json(tree: TaskTree, top: str | None = None) -> dict[str, Any]:
    """`top` (default the root) with its descendants nested as `children` lists."""
    top = tree.root_id if top is None else top
    out = task_json(tree, tree.task(top))
    stack = [out]
    while stack:
        node = stack.pop()
        node["children"] = [task_json(tree, t) for t in children_of(tree, node["id"])]
        stack.extend(node["children"])
    return out


def event_json(event: TreeEvent) -> dict[str, Any]:
    """One history entry: {version, type, timestamp, task_id, data}."""
    data = msgspec.to_builtins(event)
    for key in ("originator_id", "originator_version", "timestamp"):
        data.pop(key, None)
    task_id = data.pop("task_id", None)
    return {
        "version": event.originator_version,
        "type": type(event).__name__,
        "timestamp": iso(event.timestamp),
        "task_id": task_id,
        "data": data,
    }
