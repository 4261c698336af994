"""The `a2a` executor: sends one message to a remote A2A 1.0 agent and follows the task it
starts to its end, so a tree can orchestrate other agents (another flowledger server too).

The remote's final state decides the task's: completed gives the artifacts as the result;
failed, canceled or rejected fails the task, and so does input-required or auth-required
(a tree cannot answer). Cancelling the task, or its timeout, cancels the remote task."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    AgentCardResolutionError,
    Client,
    ClientConfig,
    ClientFactory,
)
from a2a.types.a2a_pb2 import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from a2a.utils.errors import A2AError, TaskNotCancelableError
from google.protobuf import json_format, struct_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from application.executors.context import current_task
from interfaces.a2a.messages import whole_numbers

log = logging.getLogger("flowledger.executors.a2a")

CONNECT_S = 30.0  # at most this long to connect (the whole call has inputs.timeout)
CANCEL_WAIT_S = 5.0  # how long a cancelled task waits for the remote's CancelTask answer
POLL_FIRST_S = 0.5  # polling GetTask when the stream ended before the end: first wait
POLL_MAX_S = 5.0  # ... doubling up to this

DONE = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
BLOCKED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})
STOPPED = DONE | BLOCKED  # no further event will come without us


def state_name(state: int) -> str:
    """TASK_STATE_INPUT_REQUIRED -> "input-required" (the A2A spelling)."""
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")


class A2AInputs(BaseModel):
    model_config = ConfigDict(extra="allow")  # dependency results arrive as extra inputs

    url: str = Field(description="The remote agent's base URL (its card: /.well-known/...).")
    text: str | None = Field(default=None, description="Send this text (a text part).")
    data: Any = Field(default=None, description="Send this JSON value (a data part).")
    message: str | dict[str, Any] | None = Field(
        default=None,
        validate_default=True,
        description="Shorthand: a string is sent as text, an object as data.",
    )
    headers: dict[str, str] = Field(
        default={}, description='HTTP headers for every call, e.g. {"Authorization": "Bearer …"}.'
    )
    timeout: float = Field(
        default=300.0,
        gt=0,
        le=7 * 24 * 3600,
        allow_inf_nan=False,
        description="Seconds the whole call may take (card, message, waiting for the end).",
    )
    context_id: str | None = Field(default=None, description="The A2A context to continue.")
    metadata: dict[str, Any] | None = Field(default=None, description="The message's metadata.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL, e.g. http://agent.example:8000")
        return value

    @field_validator("data")
    @classmethod
    def _not_with_text(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("text") is not None:
            raise ValueError("give inputs.text or inputs.data, not both")
        return value

    @field_validator("message")
    @classmethod
    def _one_content(
        cls, value: str | dict[str, Any] | None, info: ValidationInfo
    ) -> str | dict[str, Any] | None:
        given = [f"inputs.{k}" for k in ("text", "data") if info.data.get(k) is not None]
        if value is not None and given:
            raise ValueError(f"give inputs.message or {given[0]}, not both")
        if value is None and not given and {"text", "data"} <= info.data.keys():
            # (a text or data that did not validate has its own error already)
            raise ValueError(
                "nothing to send: give inputs.text (a string), inputs.data (any JSON) "
                "or inputs.message"
            )
        return value

    @model_validator(mode="after")
    def _message_as_text_or_data(self) -> A2AInputs:
        if isinstance(self.message, str):
            self.text, self.message = self.message, None
        elif self.message is not None:
            self.data, self.message = self.message, None
        return self

    def parts(self) -> list[Part]:
        if self.text is not None:
            return [Part(text=self.text)]
        value = struct_pb2.Value()
        json_format.ParseDict(self.data, value)
        return [Part(data=value)]


class A2ACallError(Exception):
    """The remote agent could not be reached, or answered with an error."""


class RemoteTaskFailed(Exception):
    """The remote task ended failed, canceled or rejected."""


class RemoteTaskBlocked(Exception):
    """The remote task waits for input or authentication that a tree cannot give."""


class RemoteTaskTimeout(TimeoutError):
    """The remote task did not end within inputs.timeout."""


def one_line(text: str) -> str:
    return " ".join(text.split())


def http_status(response: httpx.Response) -> str:
    """ "HTTP 401 Unauthorized: <the start of the body>"."""
    said = f"HTTP {response.status_code} {response.reason_phrase}"
    with contextlib.suppress(httpx.ResponseNotRead, UnicodeDecodeError):
        if body := one_line(response.text)[:300]:
            said += f": {body}"
    return said


def part_json(part: Part) -> Any:
    """A part as JSON: a text part its string, a data part its value, a file its fields."""
    kind = part.WhichOneof("content")
    if kind == "text":
        return part.text
    if kind == "data":
        return whole_numbers(json_format.MessageToDict(part.data))
    out: dict[str, Any] = {}
    if kind == "url":
        out["url"] = part.url
    elif kind == "raw":
        out["raw_base64"] = base64.b64encode(part.raw).decode("ascii")
    if part.filename:
        out["filename"] = part.filename
    if part.media_type:
        out["media_type"] = part.media_type
    return out


def parts_json(parts: Any) -> Any:
    """One part: its JSON; several: the list of them; none: null."""
    values = [part_json(p) for p in parts]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def message_text(message: Message | None) -> str | None:
    if message is None:
        return None
    texts = [p.text for p in message.parts if p.WhichOneof("content") == "text"]
    if texts:
        return "\n".join(texts)
    value = parts_json(message.parts)
    return None if value is None else str(value)


class RemoteCall:
    """One message to one remote agent, followed to the end of the task it starts."""

    def __init__(self, inputs: A2AInputs) -> None:
        self.inputs = inputs
        self.url = inputs.url
        self.card: AgentCard | None = None
        self.client: Client | None = None
        self.task_id: str | None = None
        self.context_id: str | None = None
        self.state: int = TaskState.TASK_STATE_UNSPECIFIED
        self.status_message: Message | None = None
        self.artifacts: dict[str, Artifact] = {}  # by artifact id, in arrival order
        self.reported: tuple[str | None, int] | None = None

    # -- the whole call --------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        timeout = self.inputs.timeout
        limits = httpx.Timeout(timeout, connect=min(timeout, CONNECT_S))
        async with httpx.AsyncClient(
            headers=self.inputs.headers, timeout=limits, follow_redirects=True
        ) as http:
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    try:
                        return await self._call(http)
                    except asyncio.CancelledError:  # the task is cancelled or timed out
                        await self._cancel_remote()
                        raise
            except TimeoutError:
                if not deadline.expired():
                    raise
                if self.task_id is None:
                    what = f"the call to the A2A agent at {self.url}"
                    last = ""
                else:
                    what = f"the remote A2A task {self.task_id} at {self.url}"
                    last = f" (last state: {state_name(self.state)})"
                raise RemoteTaskTimeout(f"{what} did not end within {timeout:g} s{last}") from None

    async def _call(self, http: httpx.AsyncClient) -> dict[str, Any]:
        try:
            self.card = await A2ACardResolver(http, self.url).get_agent_card()
        except AgentCardResolutionError as exc:
            raise A2ACallError(one_line(self._card_problem(exc))) from None
        config = ClientConfig(streaming=self.card.capabilities.streaming, httpx_client=http)
        try:
            self.client = ClientFactory(config).create(self.card)
        except ValueError as exc:
            raise A2ACallError(
                f"cannot talk to the A2A agent at {self.url}: {exc} (this client speaks JSON-RPC)"
            ) from None
        try:
            reply = await self._send()
            if reply is not None:
                return {
                    "agent": self.card.name,
                    "url": self.url,
                    "message": parts_json(reply.parts),
                }
            await self._poll_to_the_end()
        except A2AError as exc:
            raise self._error(exc) from None
        except httpx.HTTPError as exc:
            raise A2ACallError(one_line(f"the A2A agent at {self.url}: {exc!r}")) from None
        return self._outcome()

    def _card_problem(self, exc: AgentCardResolutionError) -> str:
        cause = exc.__cause__
        if isinstance(cause, httpx.RequestError):
            return f"cannot reach the A2A agent at {self.url}: {str(cause) or type(cause).__name__}"
        if exc.status_code is not None:
            where = f"{self.url.rstrip('/')}{AGENT_CARD_WELL_KNOWN_PATH}"
            return f"no A2A agent at {self.url}: GET {where} answered HTTP {exc.status_code}"
        return f"no usable A2A agent card at {self.url}: {exc.message}"

    def _error(self, exc: A2AError) -> A2ACallError:
        agent = f"agent {self.card.name!r}" if self.card is not None else "agent"
        about = f" (remote task {self.task_id})" if self.task_id else ""
        cause = exc.__cause__
        if isinstance(cause, httpx.HTTPStatusError):
            said = http_status(cause.response)
        elif isinstance(exc, A2AClientError):  # the transport's own: its message says it
            said = exc.message
        else:  # a JSON-RPC error the agent answered
            said = f"{type(exc).__name__}: {exc.message}"
        return A2ACallError(one_line(f"the A2A {agent} at {self.url}{about}: {said}"))

    # -- sending and following -------------------------------------------------------------
    def _message(self) -> Message:
        message = Message(
            role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=self.inputs.parts()
        )
        if self.inputs.context_id:
            message.context_id = self.inputs.context_id
        if self.inputs.metadata:
            message.metadata.update(self.inputs.metadata)
        return message

    async def _send(self) -> Message | None:
        """Send the message and take its events until the task stops (the reply, if the
        agent answers with a message instead of a task)."""
        assert self.client is not None
        request = SendMessageRequest(
            message=self._message(),
            configuration=SendMessageConfiguration(return_immediately=False),
        )
        events = self.client.send_message(request)
        try:
            async for event in events:
                if event.HasField("message"):
                    return event.message
                self._take(event)
                if self.state in STOPPED:
                    break
        except A2AClientError as exc:  # the stream broke: we can still ask for the task
            if self.task_id is None:
                raise
            log.warning("the stream of remote task %s broke (%s); polling it", self.task_id, exc)
        finally:
            close = getattr(events, "aclose", None)  # the stream's connection, at once
            if close is not None:
                await close()
        if self.task_id is None:
            raise A2ACallError(
                f"the A2A agent at {self.url} answered with neither a task nor a message"
            )
        return None

    async def _poll_to_the_end(self) -> None:
        """GetTask until the task stops (the stream ended, or the agent does not stream)."""
        assert self.client is not None
        assert self.task_id is not None
        wait = POLL_FIRST_S
        while self.state not in STOPPED:
            await asyncio.sleep(wait)
            wait = min(wait * 2, POLL_MAX_S)
            self._take_task(await self.client.get_task(GetTaskRequest(id=self.task_id)))

    def _take(self, event: StreamResponse) -> None:
        if event.HasField("task"):
            self._take_task(event.task)
        elif event.HasField("status_update"):
            status = event.status_update
            self._learn(status.task_id, status.context_id)
            self._take_status(status.status)
        elif event.HasField("artifact_update"):
            chunk = event.artifact_update
            self._learn(chunk.task_id, chunk.context_id)
            self._take_artifact(chunk.artifact, append=chunk.append)

    def _take_task(self, task: Task) -> None:
        self._learn(task.id, task.context_id)
        for artifact in task.artifacts:
            self._take_artifact(artifact, append=False)
        self._take_status(task.status)

    def _learn(self, task_id: str, context_id: str) -> None:
        if task_id and self.task_id is None:
            self.task_id = task_id
        if context_id and self.context_id is None:
            self.context_id = context_id

    def _take_status(self, status: TaskStatus) -> None:
        if status.state != TaskState.TASK_STATE_UNSPECIFIED:
            self.state = status.state
        if status.HasField("message"):
            self.status_message = status.message
        self._report()

    def _take_artifact(self, artifact: Artifact, *, append: bool) -> None:
        known = self.artifacts.get(artifact.artifact_id)
        if append and known is not None:
            known.parts.extend(artifact.parts)
        else:
            kept = Artifact()
            kept.CopyFrom(artifact)
            self.artifacts[artifact.artifact_id] = kept

    def _report(self) -> None:
        """Progress of the flowledger task: the remote task id and state, once each."""
        seen = (self.task_id, self.state)
        if self.task_id is None or seen == self.reported:
            return
        self.reported = seen
        with contextlib.suppress(LookupError):  # not run by the runner
            current_task().report_progress(
                0.0, f"remote A2A task {self.task_id} at {self.url}: {state_name(self.state)}"
            )

    # -- the end ---------------------------------------------------------------------------
    def _outcome(self) -> dict[str, Any]:
        assert self.card is not None
        text = message_text(self.status_message)
        state = state_name(self.state)
        said = f": {one_line(text)}" if text else " (no status message)"
        if self.state in BLOCKED:
            waits = "input" if self.state == TaskState.TASK_STATE_INPUT_REQUIRED else "auth"
            raise RemoteTaskBlocked(
                f"the remote A2A task {self.task_id} at {self.url} is {state}{said}; "
                f"a task tree cannot answer a request for {waits}"
            )
        if self.state != TaskState.TASK_STATE_COMPLETED:
            raise RemoteTaskFailed(
                f"the remote A2A task {self.task_id} at {self.url} ended {state}{said}"
            )
        return {
            "agent": self.card.name,
            "url": self.url,
            "task_id": self.task_id,
            "context_id": self.context_id,
            "state": state,
            "artifacts": {
                a.name or a.artifact_id: parts_json(a.parts) for a in self.artifacts.values()
            },
            "message": text,
        }

    # -- cancelling ------------------------------------------------------------------------
    async def _cancel_remote(self) -> None:
        """Best effort, bounded by CANCEL_WAIT_S and shielded from a second cancellation."""
        if self.client is None or self.task_id is None or self.state in DONE:
            if self.task_id is None and self.client is not None:
                log.warning("cancelled before %s named its task: nothing to cancel", self.url)
            return
        job = asyncio.ensure_future(self._send_cancel(self.client, self.task_id))
        await asyncio.shield(job)

    async def _send_cancel(self, client: Client, task_id: str) -> None:
        try:
            async with asyncio.timeout(CANCEL_WAIT_S):
                await client.cancel_task(CancelTaskRequest(id=task_id))
        except TaskNotCancelableError:
            log.info("remote A2A task %s at %s had already ended", task_id, self.url)
        except Exception as exc:  # best effort: the task is cancelled either way
            log.warning("could not cancel remote A2A task %s at %s: %r", task_id, self.url, exc)
        else:
            log.info("cancelled remote A2A task %s at %s", task_id, self.url)


class A2A:
    id = "a2a"
    name = "A2A agent call"
    description = (
        "Sends inputs.text or inputs.data (or inputs.message) to the A2A agent at inputs.url "
        "and waits for its task to end; returns {agent, url, task_id, context_id, state, "
        "artifacts: {name: JSON}, message}. A remote task that fails, is canceled or rejected, "
        "or asks for input fails the task; cancelling the task (or its timeout) cancels the "
        "remote one."
    )
    input_schema = A2AInputs

    async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
        # The runner has validated `inputs`; validating again (idempotent) gives the model.
        return await RemoteCall(A2AInputs.model_validate(inputs)).run()
