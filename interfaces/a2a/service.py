"""The A2A side of the server: a2a-sdk's request handler over flowledger's persisted task
and push-config stores, any agent executor (the task-tree agent by default), and the
recovery of A2A tasks a stopped server left unfinished."""

from __future__ import annotations

import importlib
import logging
from typing import Any, Protocol, runtime_checkable

from a2a.auth.user import UnauthenticatedUser, User
from a2a.server.agent_execution import (
    AgentExecutor,
    RequestContext,
    SimpleRequestContextBuilder,
)
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import TaskStore
from a2a.types.a2a_pb2 import AgentCard, Message, SendMessageRequest, Task, TaskState
from sqlalchemy.engine import Engine

from application.config import ConfigError
from interfaces.a2a.agent import TreeAgent
from interfaces.a2a.card import agent_card, other_agent_skill
from interfaces.a2a.messages import now_status
from interfaces.a2a.push import RetryingPushSender
from interfaces.a2a.store import SqlPushConfigStore, SqlTaskStore, create_a2a_engine
from interfaces.rpc.calls import Caller
from interfaces.rpc.orchestrator import Orchestrator

log = logging.getLogger("flowledger.a2a")


@runtime_checkable
class Admits(Protocol):
    """An agent that checks a new task's first message before anything is stored, and may
    choose the new task's id (the task-tree agent: the tree's declared root id)."""

    async def admit(self, message: Message | None, context: ServerCallContext) -> str | None: ...


@runtime_checkable
class TakesFollowUps(Protocol):
    """An agent that checks a message to an existing task before a2a-sdk queues it (the
    task-tree agent refuses messages to a running tree rather than hold them)."""

    async def follow_up(self, message: Message | None, task: Task) -> None: ...


@runtime_checkable
class Resumes(Protocol):
    """An agent that can take an unfinished A2A task up again after a restart: execute()
    is then called with the stored task as `current_task` and no message."""

    async def resumes(self, task: Task) -> bool: ...


class NamedUser(User):
    """The caller as a2a-sdk sees it (its stores scope tasks by `user_name`)."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._name


def call_context(caller: Caller, headers: dict[str, str] | None = None) -> ServerCallContext:
    """A ServerCallContext for `caller` (the verified token's user; anonymous with auth
    off). The task stores scope by user; an admin sees every user's tasks."""
    user: User = UnauthenticatedUser() if caller.user_id is None else NamedUser(caller.user_id)
    state: dict[str, Any] = {"caller": caller, "admin": caller.admin}
    if headers is not None:
        state["headers"] = headers
    return ServerCallContext(user=user, state=state)


class AdmittingContextBuilder(SimpleRequestContextBuilder):
    """Lets an `Admits` agent refuse a new task's message (a clear -32602 naming the field,
    with nothing stored) and pick its id, before a2a-sdk creates the task; and a
    `TakesFollowUps` agent refuse a message to an existing task before it is queued."""

    def __init__(self, agent: AgentExecutor, tasks: TaskStore | None = None) -> None:
        super().__init__()
        self.agent = agent
        self.tasks = tasks

    async def build(
        self,
        context: ServerCallContext,
        params: SendMessageRequest | None = None,
        task_id: str | None = None,
        context_id: str | None = None,
        task: Task | None = None,
    ) -> RequestContext:
        if params is not None and task_id is None and isinstance(self.agent, Admits):
            task_id = await self.agent.admit(params.message, context) or None
        elif params is not None and task_id and isinstance(self.agent, TakesFollowUps):
            current = await self.tasks.get(task_id, context) if self.tasks else None
            if current is not None:
                await self.agent.follow_up(params.message, current)
        return await super().build(context, params, task_id, context_id, task)


class ClientRefusals(logging.Filter):
    """a2a-sdk logs a refused request (say, GetExtendedAgentCard when the card offers none)
    at ERROR: it is the client's mistake, answered with its error code, so log it at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if record.levelno >= logging.ERROR and message.startswith("Validation failure"):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("a2a.server.request_handlers.request_handler").addFilter(ClientRefusals())


class A2AService:
    """Started and closed with the server (its lifespan)."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        agent: AgentExecutor | None = None,
        card: AgentCard | None = None,
        *,
        auth: bool = False,
    ) -> None:
        self.orchestrator = orchestrator
        self.agent = agent if agent is not None else TreeAgent(orchestrator)
        if card is None:  # the agent's own card, if it carries one; else flowledger's
            card = getattr(agent, "agent_card", None)
        if not isinstance(card, AgentCard):
            skills = None if isinstance(self.agent, TreeAgent) else [other_agent_skill()]
            card = agent_card(auth=auth, skills=skills)
        self.card = card
        self.engine: Engine | None = None
        self.handler: DefaultRequestHandler
        self.tasks: SqlTaskStore
        self.push: RetryingPushSender

    async def start(self) -> None:
        o = self.orchestrator
        self.engine = await o.io(create_a2a_engine, o.settings)
        self.tasks = SqlTaskStore(self.engine, o.io)
        configs = SqlPushConfigStore(self.engine, o.io)
        self.push = RetryingPushSender(configs, url_validator=o.callbacks.accepts_resolved)
        self.handler = DefaultRequestHandler(
            agent_executor=self.agent,
            task_store=self.tasks,
            agent_card=self.card,
            push_config_store=configs,
            push_sender=self.push,
            push_url_validator=o.callbacks.accepts,
            request_context_builder=AdmittingContextBuilder(self.agent, self.tasks),
        )
        await self.recover()

    async def recover(self) -> int:
        """Take up the A2A tasks a stopped server left submitted or working: an agent that
        `Resumes` follows them to their end (the task-tree agent follows its tree, which
        the orchestrator has resumed); others are marked failed, not left working forever."""
        resumed = 0
        for task, owner in await self.tasks.unfinished():
            context = call_context(Caller(user_id=owner or None))
            try:
                if isinstance(self.agent, Resumes) and await self.agent.resumes(task):
                    await self._resume(task, context)
                    resumed += 1
                    continue
                failed = Task()
                failed.CopyFrom(task)
                failed.status.CopyFrom(
                    now_status(
                        TaskState.TASK_STATE_FAILED,
                        "the server stopped while this task was running",
                    )
                )
                await self.tasks.save(failed, context)
            except Exception:
                log.exception("could not recover A2A task %s", task.id)
        if resumed:
            log.info("resumed %d unfinished A2A task(s)", resumed)
        return resumed

    async def _resume(self, task: Task, context: ServerCallContext) -> None:
        # a2a-sdk 1.3 has no public call to restart a stored task's producer: its handler's
        # registry does it (pinned to 1.3.*; tests/http/test_a2a_restart.py covers it).
        registry = self.handler._active_task_registry
        active = await registry.get_or_create(
            task.id, call_context=context, context_id=task.context_id
        )
        await active.enqueue_request(
            RequestContext(
                call_context=context, task_id=task.id, context_id=task.context_id, task=task
            )
        )

    async def close(self) -> None:
        if hasattr(self, "handler"):
            await self.handler.aclose()
        if hasattr(self, "push"):
            await self.push.aclose()
        if self.engine is not None:
            await self.orchestrator.io(self.engine.dispose)
            self.engine = None


def load_agent(reference: str) -> AgentExecutor:
    """The AgentExecutor named by "module:attribute" (an instance, or a callable making
    one); ConfigError saying what is wrong otherwise."""
    module_name, _, attribute = reference.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for name in attribute.split("."):
            found = getattr(found, name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"FLOWLEDGER_A2A_AGENT={reference}: {exc}") from exc
    if not isinstance(found, AgentExecutor) and callable(found):
        found = found()
    if not isinstance(found, AgentExecutor):
        raise ConfigError(
            f"FLOWLEDGER_A2A_AGENT={reference} is a {type(found).__name__}, "
            "not an a2a-sdk AgentExecutor"
        )
    return found
