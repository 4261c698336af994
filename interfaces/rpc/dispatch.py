"""JSON-RPC 2.0: requests, batches and notifications in; results or error objects out.

`call` runs one method (the CLI uses it directly); `answer` takes a whole HTTP body. A
client's mistake is always a JSON-RPC error with a precise code, never -32603: that code is
kept for faults of the server itself (a store that is down), which are logged."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import msgspec
from msgspec import Struct

from domain.errors import DomainError
from interfaces.rpc import system, tasks
from interfaces.rpc.calls import Call, EventStream
from interfaces.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
)
from interfaces.rpc.params import (
    ChildrenParams,
    CopyParams,
    HistoryParams,
    ListParams,
    NoParams,
    ReplayParams,
    RunningListParams,
    TaskRef,
    UserParams,
    read_params,
)

log = logging.getLogger("flowledger.rpc")

MAX_BATCH = 1_000


class Method(NamedTuple):
    """A handler; with `params`, it gets them read into that Struct, else the raw value."""

    handler: Callable[[Call, Any], Awaitable[Any]]
    params: type[Struct] | None
    endpoint: str  # the HTTP path serving it


TASKS = "/tasks"
SYSTEM = "/system"

METHODS: dict[str, Method] = {
    "tasks.create": Method(tasks.create, None, TASKS),
    "tasks.get": Method(tasks.get, None, TASKS),
    "tasks.detail": Method(tasks.get, None, TASKS),
    "tasks.tree": Method(tasks.tree, None, TASKS),
    "tasks.children": Method(tasks.children, ChildrenParams, TASKS),
    "tasks.list": Method(tasks.list_tasks, ListParams, TASKS),
    "tasks.update": Method(tasks.update, None, TASKS),
    "tasks.delete": Method(tasks.delete, TaskRef, TASKS),
    "tasks.copy": Method(tasks.copy, CopyParams, TASKS),
    "tasks.execute": Method(tasks.execute, None, TASKS),
    "tasks.cancel": Method(tasks.cancel, None, TASKS),
    "tasks.running.cancel": Method(tasks.cancel, None, TASKS),
    "tasks.running.list": Method(tasks.running_list, RunningListParams, TASKS),
    "tasks.running.status": Method(tasks.running_status, None, TASKS),
    "tasks.running.count": Method(tasks.running_count, UserParams, TASKS),
    "tasks.history": Method(tasks.history, HistoryParams, TASKS),
    "tasks.replay": Method(tasks.replay, ReplayParams, TASKS),
    "system.health": Method(system.health, NoParams, SYSTEM),
}


async def call(call: Call, method: str, params: Any, endpoint: str | None = None) -> Any:
    """Run `method` with `params`; RpcError for any refusal."""
    found = METHODS.get(method)
    if found is None or (endpoint is not None and found.endpoint != endpoint):
        where = f"; it is served at POST {found.endpoint}" if found else ""
        raise RpcError.of(
            METHOD_NOT_FOUND, f"method {method!r} not found{where}", "method_not_found"
        )
    try:
        if found.params is not None:
            params = read_params(params, found.params)
        return await found.handler(call, params)
    except DomainError as exc:
        raise RpcError.from_domain(exc) from None
    except RpcError:
        raise
    except Exception:
        log.exception("%s failed", method)
        raise RpcError.of(
            INTERNAL_ERROR,
            "internal error: the server could not complete the call (see its log)",
            "internal_error",
        ) from None


_encoder = msgspec.json.Encoder()


def _error(id_: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": error.as_dict()}


def _invalid(message: str) -> RpcError:
    return RpcError.of(INVALID_REQUEST, message, "invalid_request")


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


async def _one(
    base: Call, request: Any, endpoint: str, *, single: bool
) -> dict[str, Any] | EventStream | None:
    """The response to one request object (None for a notification)."""
    if not isinstance(request, dict):
        return _error(None, _invalid("a request must be a JSON object"))
    id_ = request.get("id")
    if not _valid_id(id_):
        return _error(None, _invalid("id must be a string, a number or null"))
    notification = "id" not in request
    problem = None
    if request.get("jsonrpc") != "2.0":
        problem = 'jsonrpc must be "2.0"'
    elif not isinstance(request.get("method"), str):
        problem = "method must be a string"
    elif "params" in request and not isinstance(request["params"], dict | list):
        problem = "params must be an object or an array"
    if problem is not None:
        return _error(id_, _invalid(problem))
    this = Call(
        base.orchestrator,
        base.caller,
        streaming=single and not notification,
        notification=notification,
    )
    try:
        result = await call(this, request["method"], request.get("params"), endpoint)
    except RpcError as exc:
        return None if notification else _error(id_, exc)
    if notification:
        if isinstance(result, EventStream):
            await result.events.aclose()  # type: ignore[attr-defined]
        return None
    if isinstance(result, EventStream):
        return result
    return {"jsonrpc": "2.0", "id": id_, "result": result}


async def answer(base: Call, body: bytes, endpoint: str) -> bytes | EventStream | None:
    """The HTTP answer to a JSON-RPC body: JSON bytes, an event stream (a streamed
    tasks.execute), or None (only notifications: nothing to send)."""
    try:
        decoded = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        error = RpcError.of(PARSE_ERROR, f"parse error: {reason}", "parse_error")
        return _encoder.encode(_error(None, error))
    if isinstance(decoded, list):
        if not decoded:
            return _encoder.encode(_error(None, _invalid("an empty batch")))
        if len(decoded) > MAX_BATCH:
            error = _invalid(f"a batch holds at most {MAX_BATCH} requests")
            return _encoder.encode(_error(None, error))
        replies = []
        for request in decoded:
            reply = await _one(base, request, endpoint, single=False)
            if reply is not None:
                replies.append(reply)
        return _encoder.encode(replies) if replies else None
    reply = await _one(base, decoded, endpoint, single=True)
    if reply is None or isinstance(reply, EventStream):
        return reply
    return _encoder.encode(reply)
