"""Helpers for the integration contract suite. They drive the real Ledger on the real store."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any
from uuid import UUID

import msgspec

from application.claims import claim_id
from application.config import Settings
from application.ledger import Ledger
from application.views import tree_json
from domain.tree import TaskTree


def head(ledger: Ledger) -> int:
    """The notification log's high-water mark (0 for an empty store)."""
    return ledger.recorder.max_notification_id() or 0


def notifications(ledger: Ledger) -> list[tuple[str, UUID, int]]:
    """Every recorded event as (topic, originator id, version), in notification order."""
    found = ledger.recorder.select_notifications(start=1, limit=1_000_000)
    return [(n.topic, UUID(str(n.originator_id)), n.originator_version) for n in found]


def assert_no_duplicates(ledger: Ledger) -> None:
    """No (aggregate, version) pair was ever recorded twice."""
    counts = Counter((oid, version) for _, oid, version in notifications(ledger))
    assert [k for k, n in counts.items() if n > 1] == []


def state_of(tree: TaskTree) -> Any:
    return msgspec.to_builtins(tree.state)


def json_of(tree: TaskTree) -> str:
    """The tree's task JSON (API.md), serialised: equal strings mean equal types too."""
    return json.dumps(tree_json(tree), sort_keys=True)


def events_of(ledger: Ledger, tree_id: UUID, **kwargs: Any) -> list[Any]:
    return list(ledger.events.get(tree_id, **kwargs))


def as_builtins(events: list[Any]) -> list[Any]:
    return [[type(e).__name__, msgspec.to_builtins(e)] for e in events]


def claims_of(ledger: Ledger, task_id: str) -> list[Any]:
    return list(ledger.events.get(claim_id(task_id)))


def settings_like(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)


def run_task(
    ledger: Ledger,
    task_id: str,
    result: Any = None,
    *,
    error: str | None = None,
    tree: TaskTree | None = None,
) -> TaskTree:
    """Start one task and complete (or fail) it, saving the step in one transaction."""
    tree = ledger.tree_of(task_id) if tree is None else tree
    task = tree.task(task_id)
    tree.start(task_id, task.attempts + 1, dict(task.inputs))
    if error is None:
        tree.complete(task_id, result)
    else:
        tree.fail(task_id, error)
    ledger.save_trees(tree)
    return tree


def start_task(ledger: Ledger, task_id: str) -> TaskTree:
    tree = ledger.tree_of(task_id)
    task = tree.task(task_id)
    tree.start(task_id, task.attempts + 1, dict(task.inputs))
    ledger.save_trees(tree)
    return tree


def task(task_id: str, parent: str | None = None, **fields: Any) -> dict[str, Any]:
    """A task item as a caller submits it, with an id (named after the id unless given)."""
    item: dict[str, Any] = {"id": task_id, "name": fields.pop("name", task_id)}
    if parent is not None:
        item["parent_id"] = parent
    item.update(fields)
    return item


def ids_renamed(payload: list[dict[str, Any]], rename: Any) -> list[dict[str, Any]]:
    """Task items with every id, parent_id and dependency id passed through `rename`."""
    out = []
    for item in payload:
        item = dict(item)
        if "id" in item:
            item["id"] = rename(item["id"])
        if item.get("parent_id") is not None:
            item["parent_id"] = rename(item["parent_id"])
        if item.get("dependencies"):
            item["dependencies"] = [
                rename(d) if isinstance(d, str) else {**d, "id": rename(d["id"])}
                for d in item["dependencies"]
            ]
        out.append(item)
    return out
