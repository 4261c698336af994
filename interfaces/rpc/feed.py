"""Following a tree: its task state changes as stream events (SSE, webhooks, `tasks watch`),
read from the tree's own events, so runs in any process are seen, in order, exactly once;
always ending with one `final` event when the tree is terminal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from application.views import iso
from domain import events as ev
from domain.errors import TaskNotFound
from domain.tree import TaskTree, project_tree
from interfaces.rpc.orchestrator import Orchestrator

POLL_S = 1.0  # a safety net: wake-ups normally come from the store and the projector


def stream_event(tree: TaskTree, event: ev.TreeEvent) -> dict[str, Any] | None:
    """The stream event for a tree event that changes a task's state (else None)."""
    task_id = getattr(event, "task_id", None)
    task = tree.tasks.get(task_id) if task_id is not None else None
    status = task.status.value if task is not None else None
    out: dict[str, Any]
    match event:
        case ev.Started(attempt=attempt):
            out = {"type": "task_started", "attempt": attempt}
        case ev.Progressed(progress=progress, message=message):
            out = {"type": "progress", "progress": progress, "message": message}
        case ev.Completed(result=result):
            out = {"type": "task_completed", "result": result}
        case ev.AttemptFailed(attempt=attempt, error=error, retry_in_s=delay):
            out = {"type": "task_retrying", "attempt": attempt, "error": error, "retry_in_s": delay}
        case ev.Failed(error=error):
            out = {"type": "task_failed", "error": error}
        case ev.Skipped(reason=reason):
            out = {"type": "task_skipped", "error": reason}
        case ev.Cancelled(reason=reason):
            out = {"type": "task_cancelled", "error": reason}
        case _:
            return None
    return {"task_id": task_id, "status": status, **out, "timestamp": iso(event.timestamp)}


def final_event(tree: TaskTree | None, root_task_id: str) -> dict[str, Any]:
    if tree is None or tree.is_empty:
        return {
            "type": "final",
            "root_task_id": root_task_id,
            "status": "cancelled",
            "message": "the tree was deleted",
        }
    return {
        "type": "final",
        "root_task_id": tree.root_id,
        "status": tree.status.value,
        "timestamp": iso(max(t.completed_at or t.created_at for t in tree.tasks.values())),
    }


class TreeFeed:
    """The tree as of `tree.version`; `updates()` yields what happens after it."""

    def __init__(self, orchestrator: Orchestrator, tree: TaskTree) -> None:
        self.orchestrator = orchestrator
        self.tree: TaskTree | None = tree
        self.root_task_id = tree.root_id

    @classmethod
    async def of(cls, orchestrator: Orchestrator, tree_id: UUID) -> TreeFeed:
        return cls(orchestrator, await orchestrator.io(orchestrator.ledger.load, tree_id))

    def _pull(self) -> list[dict[str, Any]]:
        tree = self.tree
        assert tree is not None
        new = list(self.orchestrator.ledger.events.get(tree.id, gt=tree.version))
        out = []
        for event in new:
            tree = project_tree(tree, [event])  # type: ignore[list-item]
            if tree is None or tree.is_empty:
                break
            shown = stream_event(tree, event)  # type: ignore[arg-type]
            if shown is not None:
                out.append(shown)
        self.tree = tree
        return out

    @property
    def finished(self) -> bool:
        return self.tree is None or self.tree.is_empty or self.tree.is_terminal

    async def updates(self) -> AsyncIterator[dict[str, Any]]:
        """Each task state change, then the one `final` event; then it ends."""
        changes = self.orchestrator.changes
        while not self.finished:
            seen = changes.generation
            try:
                pulled = await self.orchestrator.io(self._pull)
            except TaskNotFound:
                self.tree = None
                break
            for item in pulled:
                yield item
            if self.finished:
                break
            await changes.wait(seen, POLL_S)
        yield final_event(self.tree, self.root_task_id)
