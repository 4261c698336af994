"""Helpers for the A2A tests: the official a2a-sdk client against a live server, messages
that carry a task tree (a protobuf Value data part), reading streams to their end within a
bound, and a local HTTP receiver for push notifications.

Each test drives the client inside `asyncio.run`; the server runs in its own thread, so
nothing here sleeps to synchronise: streams are read to their end, and every wait is bounded
by WAIT_S only as a guard against a hang."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import UnsupportedOperationError
from google.protobuf import json_format, struct_pb2

from interfaces.a2a.messages import whole_numbers
from tests.http.server import LiveServer
from tests.http.support import WAIT_S, run_with, task

T = TypeVar("T")

A2A_HEADERS = {"A2A-Version": "1.0"}
TERMINAL = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
}
TERMINAL_NAMES = {TaskState.Name(state) for state in TERMINAL}


def run(awaitable: Awaitable[T]) -> T:
    """Run one test scenario on a fresh event loop, bounded (a guard, not a timing)."""

    async def bounded() -> T:
        async with asyncio.timeout(4 * WAIT_S):
            return await awaitable

    return asyncio.run(bounded())


# -- the client ----------------------------------------------------------------------------
@asynccontextmanager
async def connect(
    url: str, *, streaming: bool = False, token: str | None = None
) -> AsyncIterator[Client]:
    """An a2a-sdk client made from the server's card; with `token`, every request (the
    card's too) carries it as a bearer."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(timeout=WAIT_S, headers=headers) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
        client = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card)
        try:
            yield client
        finally:
            await client.close()


@asynccontextmanager
async def connect_both(url: str) -> AsyncIterator[tuple[Client, Client]]:
    """A plain client (sends return one answer) and a streaming one (subscriptions)."""
    async with connect(url) as plain, connect(url, streaming=True) as streaming:
        yield plain, streaming


# -- messages ------------------------------------------------------------------------------
def value(data: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    json_format.ParseDict(data, out)
    return out


def plain(message: Any) -> Any:
    """A protobuf Value/Struct as plain JSON (whole numbers as ints, as they were sent)."""
    data = json_format.MessageToDict(message)
    return whole_numbers(data)


def message(*parts: Part, metadata: dict[str, Any] | None = None, context_id: str = "") -> Message:
    out = Message(
        message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=list(parts), context_id=context_id
    )
    if metadata is not None:
        out.metadata.update(metadata)
    return out


def request(
    msg: Message,
    *,
    return_immediately: bool = False,
    push: TaskPushNotificationConfig | None = None,
) -> SendMessageRequest:
    config = SendMessageConfiguration(return_immediately=return_immediately)
    if push is not None:
        config.task_push_notification_config.CopyFrom(push)
    return SendMessageRequest(message=msg, configuration=config)


def tree_parts(*tasks: dict[str, Any]) -> list[Part]:
    """The parts of a message that asks to run `tasks`: one data part {"tasks": [...]}."""
    return [Part(data=value({"tasks": list(tasks)}))]


def tree_request(
    tasks: list[dict[str, Any]],
    *,
    metadata: dict[str, Any] | None = None,
    context_id: str = "",
    return_immediately: bool = False,
    push: TaskPushNotificationConfig | None = None,
) -> SendMessageRequest:
    """SendMessage with one data part {"tasks": tasks}."""
    msg = message(*tree_parts(*tasks), metadata=metadata, context_id=context_id)
    return request(msg, return_immediately=return_immediately, push=push)


def echo(task_id: str, parent: str | None = None, **inputs: Any) -> dict[str, Any]:
    return task(task_id, parent, **run_with("echo", **inputs))


def held(task_id: str, gate_key: str, parent: str | None = None) -> dict[str, Any]:
    return task(task_id, parent, **run_with("test.hold", gate=gate_key))


def gated_tree(root: str, slow: str, after: str, gate_key: str) -> list[dict[str, Any]]:
    """root (echo) with two children: `slow` runs until the gate opens, `after` (echo)
    depends on it."""
    return [
        echo(root),
        held(slow, gate_key, root),
        task(after, root, dependencies=[slow], **run_with("echo")),
    ]


# -- reading answers -----------------------------------------------------------------------
async def collect(events: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    """Every event of a stream, to its end (bounded by WAIT_S)."""
    async with asyncio.timeout(WAIT_S):
        return [event async for event in events]


async def send(client: Client, req: SendMessageRequest) -> Task:
    """A non-streaming SendMessage whose answer is one Task."""
    [answer] = await collect(client.send_message(req))
    assert answer.HasField("task"), answer
    return answer.task


async def until_terminal(streaming: Client, task_id: str) -> Task:
    """The task once terminal: SubscribeToTask (a streaming client) follows it to its end;
    a task already terminal is refused (UnsupportedOperationError) and then read. No polling."""
    with suppress(UnsupportedOperationError):
        await collect(streaming.subscribe(SubscribeToTaskRequest(id=task_id)))
    done = await streaming.get_task(GetTaskRequest(id=task_id))
    assert done.status.state in TERMINAL, done.status
    return done


def tree_tasks(server: LiveServer, root: str) -> dict[str, dict[str, Any]]:
    """{task id: task JSON} of a whole tree, read through tasks.tree at /tasks."""
    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any]) -> None:
        out[node["id"]] = node
        for child in node.get("children", []):
            walk(child)

    walk(server.result("tasks.tree", {"task_id": root}))
    return out


def artifacts(t: Task) -> dict[str, Any]:
    """{artifact id: the JSON of its data part}."""
    out = {}
    for artifact in t.artifacts:
        [part] = artifact.parts
        out[artifact.artifact_id] = plain(part.data)
    return out


def statuses(events: list[StreamResponse]) -> list[TaskStatusUpdateEvent]:
    return [e.status_update for e in events if e.HasField("status_update")]


def meta(update: TaskStatusUpdateEvent) -> dict[str, Any]:
    data: dict[str, Any] = plain(update.metadata)
    return data


def text_of(msg: Message) -> str:
    return " ".join(p.text for p in msg.parts if p.WhichOneof("content") == "text")


def kinds(events: list[StreamResponse]) -> list[str]:
    """Which member each stream event holds: task, message, status_update, artifact_update."""
    return [str(e.WhichOneof("payload")) for e in events]


# -- a push receiver -----------------------------------------------------------------------
@dataclass
class Hit:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    status: int  # what the receiver answered

    @property
    def state(self) -> str:
        """The task state a notification carries ("" for an artifact update)."""
        for key in ("statusUpdate", "task"):
            if key in self.body:
                return str(self.body[key].get("status", {}).get("state", ""))
        return ""


class Receiver:
    """A real HTTP server on 127.0.0.1 (its own thread, so it serves whatever the test is
    doing): answers its first requests with `answers`, then 200. `hits` is every request;
    `next_accepted()` gives those answered 2xx, in arrival order."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.lock = threading.Lock()
        self.hits: list[Hit] = []
        self.accepted: queue.Queue[Hit] = queue.Queue()
        box = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                headers = {k.lower(): v for k, v in self.headers.items()}
                # recorded before the answer: once answered, the sender may send the next
                # notification, served by another thread, and it must be recorded after this
                with box.lock:
                    status = box.answers.pop(0) if box.answers else 200
                    hit = Hit(self.path, headers, body, status)
                    box.hits.append(hit)
                    if 200 <= status < 300:
                        box.accepted.put(hit)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    async def next_accepted(self) -> Hit:
        return await asyncio.to_thread(self.accepted.get, True, WAIT_S)

    async def until_terminal(self) -> list[Hit]:
        """The accepted notifications up to (and with) the first in a terminal state."""
        out: list[Hit] = []
        while not out or out[-1].state not in TERMINAL_NAMES:
            out.append(await self.next_accepted())
        return out


@contextmanager
def receiver(*answers: int) -> Iterator[Receiver]:
    box = Receiver(list(answers))
    box._thread.start()
    try:
        yield box
    finally:
        box._server.shutdown()
        box._server.server_close()
