"""The default A2A agent: a message whose data part is {"tasks": [...]} creates that tree
and runs it. The A2A task id is the tree's root task id; subtask progress arrives as
status updates (the subtask's id and state in metadata); each task's result is the
artifact "result:<task id>"; the final state follows the tree's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import Event, EventQueue
from a2a.types.a2a_pb2 import (
    Message,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import InvalidParamsError, UnsupportedOperationError
from google.protobuf import json_format

from application.runner.runner import TreeBusy
from domain.errors import DomainError, TaskNotFound
from domain.tree import TaskTree
from interfaces.a2a.messages import (
    TREE_STATES,
    CheckedTree,
    checked_tree,
    invalid,
    now_status,
    refused,
    result_artifact,
    struct,
    tree_payload,
)
from interfaces.rpc.calls import ANONYMOUS, Call, Caller
from interfaces.rpc.feed import TreeFeed
from interfaces.rpc.orchestrator import Orchestrator
from interfaces.rpc.tasks import owned_payload

log = logging.getLogger("flowledger.a2a")

FINAL_STATES = frozenset(TREE_STATES.values()) | {TaskState.TASK_STATE_REJECTED}
CANCEL_WAIT_S = 30.0  # how long CancelTask waits for the tree to stop before answering
MAX_NAMED = 20  # ids a refusal names at most
ENDED_KEPT = 10_000  # how many ended A2A task ids the agent remembers (see cancel)


def caller_of(context: ServerCallContext) -> Caller:
    """Who sent the request: set by the HTTP layer from the verified token (never from
    the message)."""
    caller = context.state.get("caller")
    return caller if isinstance(caller, Caller) else ANONYMOUS


def _default_user(tasks: Any, message: Message | None, caller: Caller) -> Any:
    """With auth off, a `user_id` in the message metadata (aipartnerupflow's way) owns the
    tasks that name no user. With auth on it is ignored: the token says who the user is."""
    if caller.user_id is not None or message is None or not isinstance(tasks, list):
        return tasks
    user = json_format.MessageToDict(message.metadata).get("user_id")
    if not isinstance(user, str):
        return tasks
    return [{"user_id": user, **t} if isinstance(t, dict) else t for t in tasks]


class TreeAgent(AgentExecutor):
    """Runs task trees on the server's orchestrator (the same runner as tasks.execute)."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator
        self._finals: dict[str, asyncio.Event] = {}  # A2A task id -> its final state is out
        self._ended: OrderedDict[str, None] = OrderedDict()  # final states this agent sent

    # -- before a new A2A task exists ----------------------------------------------------
    async def admit(self, message: Message | None, context: ServerCallContext) -> str | None:
        """Refuse, before anything is stored, a message without a tree that tasks.create
        would accept; return the id the A2A task must have (the declared root id)."""
        checked = checked_tree(message)
        o = self.orchestrator
        if o.runner is None:
            raise invalid("message", "this server does not run trees")
        try:
            owned_payload(Call(o, caller_of(context)), checked.tasks)
            await o.io(o.ledger.check_executors, checked.specs)
        except DomainError as exc:
            raise refused(exc.relabelled(checked.names), checked.where) from None
        if checked.declared_root is not None:
            await self._refuse_taken_ids(checked)
        return checked.declared_root

    async def _refuse_taken_ids(self, checked: CheckedTree) -> None:
        """Declared ids another tree holds (read models, with this process's writes): so a
        duplicate is refused before a2a-sdk stores the task. A race with another process
        is still caught by create, later."""
        o = self.orchestrator
        ids = [spec.id for spec in checked.specs]
        if not await o.fresh():
            return  # the read models are unusable: create will refuse a duplicate
        found = await o.io(o.read_model.running_status, ids)
        taken = [i for i, entry in enumerate(found) if entry["status"] != "not_found"]
        if taken:
            fields = [
                {"field": f"{checked.where}.tasks[{i}].id", "message": "already exists"}
                for i in taken[:MAX_NAMED]
            ]
            raise InvalidParamsError(
                message=f"{fields[0]['field']}: a task {ids[taken[0]]!r} already exists"
                + (f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""),
                data={
                    "code": "duplicate_id",
                    "ids": ", ".join(ids[i] for i in taken[:MAX_NAMED]),
                    "errors": fields,
                },
            )

    async def follow_up(self, message: Message | None, task: Task) -> None:
        """A message to an existing task: a tree takes no further input while it runs (the
        run would hold the message until it ends); SubscribeToTask follows it."""
        if task.status.state not in FINAL_STATES:
            raise UnsupportedOperationError(
                message=f"task {task.id} is running a task tree and takes no further "
                "messages; follow it with SubscribeToTask, or cancel it with CancelTask"
            )

    async def _exists(self, task_id: str) -> bool:
        o = self.orchestrator
        try:
            await o.io(o.ledger.tree_id_of, task_id)
        except TaskNotFound:
            return False
        return True

    async def resumes(self, task: Task) -> bool:
        """After a restart: this A2A task is a tree we can follow to its end."""
        return await self._exists(task.id)

    # -- running -------------------------------------------------------------------------
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id, context.context_id
        assert task_id is not None
        assert context_id is not None
        finished = self._finals.setdefault(task_id, asyncio.Event())
        try:
            current = context.current_task
            if current is not None and current.status.state in FINAL_STATES:
                return  # a follow-up that waited for the run: the task has its answer
            if current is None:
                tree_id = await self._create(context, event_queue)
                known: set[str] = set()
            else:  # a restart, or a follow-up message to a running tree: follow it
                tree_id = await self._tree_id(task_id)
                known = {a.artifact_id for a in current.artifacts}
            async for event in self._follow(tree_id, task_id, context_id, known):
                await event_queue.enqueue_event(event)
        finally:
            finished.set()
            if self._finals.get(task_id) is finished:
                del self._finals[task_id]

    async def _tree_id(self, task_id: str) -> UUID:
        o = self.orchestrator
        return await o.io(o.ledger.tree_id_of, task_id)

    async def _create(self, context: RequestContext, queue: EventQueue) -> UUID:
        o = self.orchestrator
        caller = caller_of(context.call_context)
        where, tasks = tree_payload(context.message)
        tasks = owned_payload(Call(o, caller), _default_user(tasks, context.message, caller))
        try:
            # With its run request, in one transaction: a server dying now resumes it.
            tree = await o.io(lambda: o.ledger.create_tree(tasks, context.task_id, run=True))
        except DomainError as exc:
            raise refused(exc, where) from None
        if tree.root_id != context.task_id:  # admit() chose the id; a race could break it
            raise InvalidParamsError(message=f"the tree's root is {tree.root_id!r}")
        initial = Task(
            id=tree.root_id,
            context_id=context.context_id,
            status=now_status(TaskState.TASK_STATE_SUBMITTED),
            metadata=struct({"root_task_id": tree.root_id, "tasks": len(tree.tasks)}),
        )
        if context.message is not None:
            initial.history.append(context.message)
        await queue.enqueue_event(initial)
        return tree.id

    async def _follow(
        self, tree_id: UUID, task_id: str, context_id: str, known: set[str], run: bool = True
    ) -> AsyncIterator[Event]:
        o = self.orchestrator
        feed = await TreeFeed.of(o, tree_id)  # before the run starts: it misses nothing
        tree = feed.tree
        assert tree is not None
        for done in tree.tasks.values():  # results stored while nobody followed the tree
            if done.status.value == "completed" and f"result:{done.id}" not in known:
                yield self._artifact(task_id, context_id, tree, done.id, done.result)
        if run and not feed.finished and o.runner is not None:
            with contextlib.suppress(TreeBusy):  # another process runs it: we follow
                await o.runner.start(tree_id)
            text = f"running {len(tree.tasks)} task(s)"
            yield self._status(task_id, context_id, TaskState.TASK_STATE_WORKING, text, {})
        async for update in feed.updates():
            tree = feed.tree or tree
            if update["type"] == "final":
                yield self._final(task_id, context_id, feed.tree, update)
                return
            if update["type"] == "task_completed":
                yield self._artifact(task_id, context_id, tree, update["task_id"], update["result"])
            shown = {k: v for k, v in update.items() if k not in ("result", "timestamp")}
            yield self._status(task_id, context_id, TaskState.TASK_STATE_WORKING, None, shown)

    @staticmethod
    def _status(
        task_id: str,
        context_id: str,
        state: TaskState,
        text: str | None,
        metadata: dict[str, Any],
    ) -> TaskStatusUpdateEvent:
        return TaskStatusUpdateEvent(
            task_id=task_id,
            context_id=context_id,
            status=now_status(state, text),
            metadata=struct(metadata),
        )

    @staticmethod
    def _artifact(
        task_id: str, context_id: str, tree: TaskTree, done_id: str, result: Any
    ) -> TaskArtifactUpdateEvent:
        name = tree.tasks[done_id].name if done_id in tree.tasks else None
        return TaskArtifactUpdateEvent(
            task_id=task_id,
            context_id=context_id,
            artifact=result_artifact(done_id, name, result),
            last_chunk=True,
        )

    def _final(
        self, task_id: str, context_id: str, tree: TaskTree | None, final: dict[str, Any]
    ) -> TaskStatusUpdateEvent:
        state = TREE_STATES.get(final["status"], TaskState.TASK_STATE_FAILED)
        metadata = {"root_task_id": final["root_task_id"], "status": final["status"]}
        self._ended[task_id] = None
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)
        return self._status(task_id, context_id, state, summary(tree, final), metadata)

    # -- cancelling ----------------------------------------------------------------------
    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancel the tree; answer once its final state is out (or CANCEL_WAIT_S passed)."""
        task_id, context_id = context.task_id, context.context_id
        assert task_id is not None
        assert context_id is not None
        o = self.orchestrator
        reason = "cancelled through A2A"
        if o.runner is not None:
            await o.runner.cancel([task_id], reason)
        else:
            await o.io(o.ledger.cancel, [task_id], reason)
        followed = self._finals.get(task_id)
        if followed is not None:  # execute() is following the tree: it sends the end
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(followed.wait(), CANCEL_WAIT_S)
            return
        if task_id in self._ended:  # a cancel that raced another: the end is already out
            return
        current = context.current_task
        known = {a.artifact_id for a in current.artifacts} if current is not None else set()
        with contextlib.suppress(TimeoutError, TaskNotFound):
            async with asyncio.timeout(CANCEL_WAIT_S):
                async for event in self._follow(
                    await self._tree_id(task_id), task_id, context_id, known, run=False
                ):
                    await event_queue.enqueue_event(event)


def summary(tree: TaskTree | None, final: dict[str, Any]) -> str:
    """One line for the final status: how the tree ended, and the first failure."""
    if tree is None or tree.is_empty:
        return str(final.get("message", "the tree was deleted"))
    counts = Counter(t.status.value for t in tree.tasks.values())
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    text = f"The tree {final['status']}: {parts}"
    failed = [t for t in tree.tasks.values() if t.status.value == "failed" and t.error]
    if failed:
        text += f". {failed[0].name}: {failed[0].error}"
    return text
