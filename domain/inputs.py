"""Resolved inputs: what an executor sees, the task's own inputs plus its dependencies'
results. The stored definition never changes; Started records the resolved copy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.state import Task
from domain.status import TaskStatus


def unwrap(result: Any) -> Any:
    """A {"result": value} wrapper (and nothing else) stands for value."""
    if isinstance(result, dict) and len(result) == 1 and "result" in result:
        return result["result"]
    return result


def schema_properties(task: Task) -> tuple[str, ...]:
    """The property names of schemas.input_schema, if the task declares any."""
    schema = task.schemas.get("input_schema")
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            return tuple(properties)
    return ()


def dependency_results(task: Task, tasks: Mapping[str, Task]) -> dict[str, Any]:
    """{dependency id: unwrapped result} for the dependencies that completed, in the
    order the task lists them (an optional dependency that did not complete is absent)."""
    return {
        dep.id: unwrap(tasks[dep.id].result)
        for dep in task.dependencies
        if tasks[dep.id].status is TaskStatus.COMPLETED
    }


def resolve_inputs(task: Task, tasks: Mapping[str, Task]) -> dict[str, Any]:
    """The task's inputs plus its dependencies' results.

    With schemas.input_schema properties, each property a dependency's (object) result
    holds is copied in under its own name, later dependencies winning; a result that
    fills no property is kept under inputs[<dependency id>] so nothing is lost. Without
    properties, every result goes under inputs[<dependency id>]."""
    resolved = dict(task.inputs)
    properties = schema_properties(task)
    for dep_id, result in dependency_results(task, tasks).items():
        mapped = False
        if properties and isinstance(result, dict):
            for name in properties:
                if name in result:
                    resolved[name] = result[name]
                    mapped = True
        if not mapped:
            resolved[dep_id] = result
    return resolved
