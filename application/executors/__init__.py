"""Executors: the extension point. Register with the `executor` decorator, the
`flowledger.executors` entry-point group, or a FLOWLEDGER_PLUGINS module."""

from __future__ import annotations

from application.executors.context import TaskContext, current_task
from application.executors.registry import (
    ENTRY_POINT_GROUP,
    REGISTRY,
    Executor,
    ExecutorEntry,
    ExecutorRegistry,
    RegistryError,
    executor,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "Executor",
    "ExecutorEntry",
    "ExecutorRegistry",
    "RegistryError",
    "TaskContext",
    "current_task",
    "executor",
    "loaded_registry",
]


def loaded_registry(plugins: tuple[str, ...] = ()) -> ExecutorRegistry:
    """The process registry with the built-ins, installed entry points and `plugins`."""
    import application.executors.builtins  # noqa: F401 - registers the built-ins

    REGISTRY.load_entry_points()
    REGISTRY.load_modules(plugins)
    return REGISTRY
