"""Which tree and task the code running now works for, for structured logs: the runner sets
them (a context variable each, so every log line of a run carries them, in whatever task or
library it is written) and a log formatter reads them."""

from __future__ import annotations

import contextvars
from typing import Any

TREE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("tree_id", default=None)
TASK_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)


def current() -> dict[str, Any]:
    """{tree_id, task_id} of the code running now (only those that are set)."""
    found = {"tree_id": TREE_ID.get(), "task_id": TASK_ID.get()}
    return {k: v for k, v in found.items() if v is not None}


def for_task(task_id: str) -> contextvars.Context:
    """A copy of the current context (the tree's) naming `task_id`: run a task's attempt in
    it (asyncio.create_task(..., context=...))."""
    context = contextvars.copy_context()
    context.run(TASK_ID.set, task_id)
    return context
