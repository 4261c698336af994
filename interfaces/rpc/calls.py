"""What every method is given: the orchestrator, who is calling, and how it may answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

from domain.errors import TaskNotFound
from interfaces.rpc.errors import Forbidden
from interfaces.rpc.orchestrator import Orchestrator


@dataclass(frozen=True)
class Caller:
    """Who is calling: with auth off, `user_id` is None and everything is visible."""

    user_id: str | None = None
    admin: bool = False

    @property
    def unrestricted(self) -> bool:
        return self.user_id is None or self.admin


ANONYMOUS = Caller()


class EventStream(NamedTuple):
    """A method's answer as a stream of events (tasks.execute with use_streaming)."""

    root_task_id: str
    events: AsyncIterator[dict[str, Any]]


@dataclass(frozen=True)
class Call:
    orchestrator: Orchestrator
    caller: Caller = ANONYMOUS
    streaming: bool = False  # the answer may be an EventStream (a single request over HTTP)
    notification: bool = False  # nobody reads the answer

    # -- who may see what ----------------------------------------------------------------
    async def owner_of(self, task_id: str, *, removed_too: bool = False) -> str | None:
        """The user owning `task_id`'s tree (its root's user_id). TaskNotFound if no such
        task (with `removed_too`, also a task that was removed)."""
        o = self.orchestrator
        if await o.fresh():
            try:
                return await o.lookup(o.read_model.owner, task_id)
            except TaskNotFound:
                if not removed_too:
                    raise
        tree_id = await o.io(lambda: o.ledger.tree_id_of(task_id, removed_too=removed_too))
        return await o.io(self._creator, tree_id)

    def _creator(self, tree_id: UUID) -> str | None:
        # The root and its user never change, so the tree as created tells the owner.
        tree = self.orchestrator.ledger.load(tree_id, 1)
        return tree.tasks[tree.root_id].user_id

    async def require_owner(self, task_id: str, *, removed_too: bool = False) -> None:
        """Forbidden unless the caller may see and change `task_id`'s tree."""
        if self.caller.unrestricted:
            return
        owner = await self.owner_of(task_id, removed_too=removed_too)
        if owner != self.caller.user_id:
            raise Forbidden(f"task {task_id!r} belongs to another user", ids=(task_id,))

    def user_filter(self, wanted: str | None) -> str | None:
        """The user a listing is limited to: a plain user only ever sees their own."""
        if self.caller.unrestricted:
            return wanted
        if wanted is not None and wanted != self.caller.user_id:
            raise Forbidden(f"cannot list the tasks of user {wanted!r}", ids=(wanted,))
        return self.caller.user_id
