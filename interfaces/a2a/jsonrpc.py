"""A2A 1.0 over JSON-RPC 2.0, without a web framework: a request body in, a JSON-RPC
response (or a stream of them, for SendStreamingMessage and SubscribeToTask) out. The
HTTP layer (interfaces/http/a2a.py) only moves bytes. Method names, the A2A-Version rule
and the error codes are a2a-sdk's (its dispatcher is Starlette-only)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from a2a.server.context import ServerCallContext
from a2a.server.jsonrpc_models import JSONParseError, JSONRPCError, MethodNotFoundError
from a2a.server.request_handlers import RequestHandler, build_error_response
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    SendMessageRequest,
    SendMessageResponse,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
)
from a2a.utils import constants, proto_utils
from a2a.utils.errors import (
    A2AError,
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    TaskNotFoundError,
)
from a2a.utils.version_validator import validate_version
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message as Proto

log = logging.getLogger("flowledger.a2a")

Reply = dict[str, Any]

STREAMING = {"SendStreamingMessage", "SubscribeToTask"}

PARAMS: dict[str, type[Proto]] = {
    "SendMessage": SendMessageRequest,
    "SendStreamingMessage": SendMessageRequest,
    "GetTask": GetTaskRequest,
    "ListTasks": ListTasksRequest,
    "CancelTask": CancelTaskRequest,
    "SubscribeToTask": SubscribeToTaskRequest,
    "CreateTaskPushNotificationConfig": TaskPushNotificationConfig,
    "GetTaskPushNotificationConfig": GetTaskPushNotificationConfigRequest,
    "ListTaskPushNotificationConfigs": ListTaskPushNotificationConfigsRequest,
    "DeleteTaskPushNotificationConfig": DeleteTaskPushNotificationConfigRequest,
    "GetExtendedAgentCard": GetExtendedAgentCardRequest,
}

RequestId = str | int | None


def _as_dict(message: Proto) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=False)


def error_reply(request_id: RequestId, error: A2AError | JSONRPCError) -> Reply:
    reply: Reply = build_error_response(request_id, error)
    return reply


def _result(request_id: RequestId, result: Any) -> Reply:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


async def _send(h: RequestHandler, p: Any, c: ServerCallContext) -> Any:
    answer = await h.on_message_send(p, c)
    if isinstance(answer, Task):
        return _as_dict(SendMessageResponse(task=answer))
    return _as_dict(SendMessageResponse(message=answer))


async def _get(h: RequestHandler, p: Any, c: ServerCallContext) -> Any:
    task = await h.on_get_task(p, c)
    if task is None:
        raise TaskNotFoundError
    return _as_dict(task)


async def _list(h: RequestHandler, p: Any, c: ServerCallContext) -> Any:
    # As a2a-sdk's serialize_list_tasks_response (its module needs Starlette): every field
    # printed, artifacts only when asked for.
    page = MessageToDict(
        await h.on_list_tasks(p, c),
        preserving_proto_field_name=False,
        always_print_fields_with_no_presence=True,
    )
    if not p.include_artifacts:
        for task in page["tasks"]:
            task.pop("artifacts", None)
    return page


async def _cancel(h: RequestHandler, p: Any, c: ServerCallContext) -> Any:
    task = await h.on_cancel_task(p, c)
    if task is None:
        raise TaskNotFoundError
    return _as_dict(task)


async def _create_push(h: RequestHandler, p: Any, c: ServerCallContext) -> Any:
    return _as_dict(await h.on_create_task_push_notification_config(p, c))


async def _get_push(h: RequestHandler, p: Any, c: ServerCallContext) -> Any:
    return _as_dict(await h.on_get_task_push_notification_config(p, c))


async def _list_push(h: RequestHandler, p: Any, c: ServerCallContext) -> Any:
    return _as_dict(await h.on_list_task_push_notification_configs(p, c))


async def _delete_push(h: RequestHandler, p: Any, c: ServerCallContext) -> Any:
    await h.on_delete_task_push_notification_config(p, c)
    return None


async def _extended_card(h: RequestHandler, p: Any, c: ServerCallContext) -> Any:
    return _as_dict(await h.on_get_extended_agent_card(p, c))


Unary = Callable[[RequestHandler, Any, ServerCallContext], Awaitable[Any]]

UNARY: dict[str, Unary] = {
    "SendMessage": _send,
    "GetTask": _get,
    "ListTasks": _list,
    "CancelTask": _cancel,
    "CreateTaskPushNotificationConfig": _create_push,
    "GetTaskPushNotificationConfig": _get_push,
    "ListTaskPushNotificationConfigs": _list_push,
    "DeleteTaskPushNotificationConfig": _delete_push,
    "GetExtendedAgentCard": _extended_card,
}


@validate_version(constants.PROTOCOL_VERSION_1_0)
async def _unary(
    handler: RequestHandler, method: str, params: Any, context: ServerCallContext
) -> Any:
    return await UNARY[method](handler, params, context)


@validate_version(constants.PROTOCOL_VERSION_1_0)
async def _stream(
    handler: RequestHandler, method: str, params: Any, context: ServerCallContext
) -> AsyncIterator[Any]:
    if method == "SendStreamingMessage":
        return handler.on_message_send_stream(params, context)
    return handler.on_subscribe_to_task(params, context)


def _envelope(body: bytes) -> tuple[RequestId, str, Any] | Reply:
    """(id, method, params) of a well-formed request, or the error reply."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        return error_reply(None, JSONParseError(message=f"Invalid JSON: {exc}"))
    except RecursionError:
        return error_reply(None, JSONParseError(message="Invalid JSON: nested too deeply"))
    if isinstance(raw, list):
        return error_reply(None, InvalidRequestError(message="Batch requests are not supported"))
    if not isinstance(raw, dict):
        return error_reply(None, InvalidRequestError(message="the request must be a JSON object"))
    request_id = raw.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int | None):
        return error_reply(
            None, InvalidRequestError(message="id must be a string, an integer or null")
        )
    if raw.get("jsonrpc") != "2.0":
        return error_reply(request_id, InvalidRequestError(message="jsonrpc must be exactly '2.0'"))
    method = raw.get("method")
    if not isinstance(method, str) or not method:
        return error_reply(request_id, InvalidRequestError(message="method must be a string"))
    return request_id, method, raw.get("params", {})


async def answer(
    handler: RequestHandler, body: bytes, context: ServerCallContext
) -> Reply | AsyncIterator[Reply]:
    """The reply to one JSON-RPC request: a response object, or for a streaming method an
    iterator of them (errors met while streaming come as a last error object)."""
    checked = _envelope(body)
    if isinstance(checked, dict):
        return checked
    request_id, method, raw_params = checked
    model = PARAMS.get(method)
    if model is None:
        return error_reply(request_id, MethodNotFoundError(message=f"Method not found: {method}"))
    try:
        if not isinstance(raw_params, dict):
            raise TypeError(f"params must be an object, got {type(raw_params).__name__}")
        params = ParseDict(raw_params, model(), ignore_unknown_fields=True)
    except Exception as exc:  # ParseError, TypeError, RecursionError, ValueError
        return error_reply(
            request_id,
            InvalidParamsError(message=f"Invalid params: {exc}", data={"parseError": str(exc)}),
        )
    context.tenant = getattr(params, "tenant", "")
    context.state["method"] = method
    context.state["request_id"] = request_id
    try:
        if method in STREAMING:
            return await _streamed(request_id, await _stream(handler, method, params, context))
        return _result(request_id, await _unary(handler, method, params, context))
    except A2AError as exc:
        return error_reply(request_id, exc)
    except Exception as exc:
        log.exception("A2A %s failed", method)
        return error_reply(request_id, InternalError(message=f"internal error: {exc}"))


async def _streamed(request_id: RequestId, events: AsyncIterator[Any]) -> AsyncIterator[Reply]:
    """Read the first event now, so a refusal (unknown task, bad message) is a plain error
    reply rather than a stream that fails at once."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        first = None

    async def replies() -> AsyncIterator[Reply]:
        try:
            if first is not None:
                yield _event(request_id, first)
            async for event in events:
                yield _event(request_id, event)
        except A2AError as exc:
            yield error_reply(request_id, exc)
        except Exception as exc:
            log.exception("A2A stream failed")
            yield error_reply(request_id, InternalError(message=f"internal error: {exc}"))

    return replies()


def _event(request_id: RequestId, event: Any) -> Reply:
    return _result(request_id, _as_dict(proto_utils.to_stream_response(event)))
