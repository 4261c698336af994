"""Helpers for the HTTP suite: unique names, a gate executor the test opens, raw JSON-RPC
posts, SSE reading and JWTs.

The server runs in a thread of the test process, so the `test.hold` executor registered here
is the server's too: a test learns that a task runs from the gate's `entered` event (no
sleeping to synchronise) and ends it by opening the gate or cancelling the task."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from application.executors import executor
from tests.http.server import LiveServer

WAIT_S = 30  # an upper bound for an event that is due at once; never a synchronisation
SECRET = "a-test-secret-of-at-least-32-bytes!"


@dataclass
class Gate:
    entered: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)

    def wait_entered(self) -> None:
        assert self.entered.wait(WAIT_S), "the gated task did not start"


_GATES: dict[str, Gate] = {}
_GATES_LOCK = threading.Lock()


def gate(key: str) -> Gate:
    with _GATES_LOCK:
        return _GATES.setdefault(key, Gate())


@executor("test.hold", description="Runs until the test opens the gate inputs.gate.")
async def hold(inputs: dict[str, Any]) -> dict[str, Any]:
    held = gate(inputs["gate"])
    held.entered.set()
    while not held.opened.is_set():
        await asyncio.sleep(0.005)  # the executor working; cancelling ends it here
    return {"gate": inputs["gate"]}


class Names:
    """Task ids, user ids and gate keys unique to one test (servers are shared)."""

    def __init__(self) -> None:
        self.prefix = uuid.uuid4().hex[:8]

    def __call__(self, name: str) -> str:
        return f"{name}-{self.prefix}"


def task(task_id: str, parent: str | None = None, **fields: Any) -> dict[str, Any]:
    """A task with an id (its name too, unless given)."""
    out: dict[str, Any] = {"id": task_id, "name": fields.pop("name", task_id)}
    if parent is not None:
        out["parent_id"] = parent
    return out | fields


def run_with(executor_id: str, **inputs: Any) -> dict[str, Any]:
    return {"params": {"executor_id": executor_id}, "inputs": inputs}


def request(method: str, params: Any = None, id_: Any = 1) -> dict[str, Any]:
    """A JSON-RPC request object; id_=None makes it a notification (no id member)."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        body["params"] = params
    if id_ is not None:
        body["id"] = id_
    return body


def post(server: LiveServer, body: Any, path: str = "/tasks", **headers: str) -> httpx.Response:
    return server.client.post(path, json=body, headers=headers)


def post_raw(
    server: LiveServer, content: bytes, path: str = "/tasks", **headers: str
) -> httpx.Response:
    return server.client.post(
        path, content=content, headers={"Content-Type": "application/json", **headers}
    )


def error_of(reply: dict[str, Any], code: int) -> dict[str, Any]:
    """The error object of `reply`, checked to carry `code` and the data object."""
    assert "error" in reply, reply
    error: dict[str, Any] = reply["error"]
    assert error["code"] == code, error
    data = error["data"]
    assert isinstance(data, dict)
    assert isinstance(data["code"], str)
    assert isinstance(data["message"], str)
    assert isinstance(data["ids"], list)
    return error


def fields_of(error: dict[str, Any]) -> dict[str, str]:
    """{field: reason} of a -32602 error."""
    assert error["code"] == -32602, error
    return {f["field"]: f["reason"] for f in error["data"]["fields"]}


def sse_lines(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The `data:` events of an SSE response, decoded, as they arrive."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    for line in response.iter_lines():
        if line.startswith("data:"):
            yield json.loads(line[len("data:") :].strip())


def stream(server: LiveServer, params: dict[str, Any], **headers: str) -> list[dict[str, Any]]:
    """Every event of a streamed tasks.execute, to the end of the stream."""
    body = request("tasks.execute", params | {"use_streaming": True})
    with server.client.stream("POST", "/tasks", json=body, headers=headers) as response:
        return list(sse_lines(response))


def token(sub: str, *, roles: list[str] | None = None, secret: str = SECRET, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + 3600, **claims}
    if roles is not None:
        payload["roles"] = roles
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}
