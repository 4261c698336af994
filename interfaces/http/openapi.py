"""The OpenAPI description of the JSON-RPC endpoints: one request schema per method (its
params from the same Structs the server reads them with), single or batched."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
from litestar.openapi.spec import Operation

from domain.specs import ChangesInput, TaskInput
from interfaces.rpc.dispatch import METHODS, SYSTEM, TASKS
from interfaces.rpc.params import CancelParams, ExecuteParams, RunningStatusParams, TaskRef

_SCHEMA_OF: dict[str, Any] = {
    "tasks.get": TaskRef,
    "tasks.detail": TaskRef,
    "tasks.tree": TaskRef,
    "tasks.execute": ExecuteParams,
    "tasks.cancel": CancelParams,
    "tasks.running.cancel": CancelParams,
    "tasks.running.status": RunningStatusParams,
}


class UpdateParams(ChangesInput, kw_only=True, forbid_unknown_fields=True):
    """tasks.update: the task and the fields to change."""

    task_id: str


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """`schema` with every $ref replaced by its definition (ours are not recursive)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return _inline(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _tasks_array() -> dict[str, Any]:
    return {"type": "array", "items": _struct_schema(TaskInput), "minItems": 1}


def _exactly_one(first: str, first_type: str, second: str, second_type: str) -> dict[str, Any]:
    """Exactly one of two optional fields given (not null): what the handler checks."""
    return {
        "oneOf": [
            {"required": [first], "properties": {first: {"type": first_type}}},
            {"required": [second], "properties": {second: {"type": second_type}}},
        ]
    }


# The rules between fields that a handler checks beyond each field's own type.
_CROSS_FIELD: dict[str, dict[str, Any]] = {
    "tasks.children": _exactly_one("task_id", "string", "parent_id", "string"),
    "tasks.execute": _exactly_one("task_id", "string", "tasks", "array"),
    "tasks.copy": {
        "anyOf": [
            {
                "required": ["copy_mode", "custom_task_ids"],
                "properties": {
                    "copy_mode": {"const": "custom"},
                    "custom_task_ids": {"type": "array", "minItems": 1},
                },
            },
            {
                "properties": {
                    "copy_mode": {"enum": ["minimal", "full"]},
                    "custom_task_ids": {"type": "null"},
                }
            },
        ]
    },
    "tasks.replay": {  # version or at, not both
        "anyOf": [
            {"properties": {"version": {"type": "null"}}},
            {"properties": {"at": {"type": "null"}}},
        ]
    },
}


def _params_schema(method: str) -> dict[str, Any]:
    if method == "tasks.create":
        array = _tasks_array()
        return {
            "anyOf": [
                array,
                _struct_schema(TaskInput),
                {
                    "type": "object",
                    "properties": {"tasks": array},
                    "required": ["tasks"],
                    "additionalProperties": False,
                },
            ]
        }
    if method == "tasks.update":
        return _struct_schema(UpdateParams)
    params = _SCHEMA_OF.get(method) or METHODS[method].params
    schema = _struct_schema(params)
    if method == "tasks.execute":
        schema["properties"]["tasks"] = {"anyOf": [_tasks_array(), {"type": "null"}]}
    if method == "tasks.replay":
        schema["properties"]["at"] = {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
            "description": "an ISO 8601 time (UTC when it names no zone)",
        }
    return schema | _CROSS_FIELD.get(method, {})


def _params_required(params: dict[str, Any]) -> bool:
    """Whether a method needs params: absent params read as {}, which some refuse."""
    return bool(params.get("required")) or any(k in params for k in ("anyOf", "oneOf"))


def _struct_schema(cls: Any) -> dict[str, Any]:
    (schema,), defs = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
    inlined: dict[str, Any] = _inline(schema, defs)
    return inlined


# A request's id: a string, a number or null (a request without an id is a notification).
_ID = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}


@cache
def request_schema(endpoint: str) -> dict[str, Any]:
    requests = []
    for name, method in METHODS.items():
        if method.endpoint != endpoint:
            continue
        params = _params_schema(name)
        requests.append(
            {
                "type": "object",
                "title": name,
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "method": {"const": name},
                    "params": params,
                    "id": _ID,
                },
                "required": ["jsonrpc", "method", "params"]
                if _params_required(params)
                else ["jsonrpc", "method"],
            }
        )
    one = {"oneOf": requests}
    return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}


_RESPONSE = {
    "type": "object",
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": _ID,
        "result": {},
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "data": {"type": "object"},
            },
            "required": ["code", "message"],
        },
    },
    "required": ["jsonrpc", "id"],
}


# One Server-Sent Event of a streamed tasks.execute (OpenAPI 3.1: the schema of
# text/event-stream describes each event); its data is one JSON object.
_STREAM_DATA = {
    "type": "object",
    "properties": {
        "type": {
            "enum": [
                "task_started",
                "progress",
                "task_completed",
                "task_retrying",
                "task_failed",
                "task_skipped",
                "task_cancelled",
                "final",
            ]
        },
        "task_id": {"type": "string"},
        "root_task_id": {"type": "string"},
        "status": {"type": ["string", "null"]},
        "timestamp": {"type": "string"},
    },
    "required": ["type"],
}
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": _STREAM_DATA,
        },
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}


def _responses(endpoint: str) -> dict[str, Any]:
    ok: dict[str, Any] = {
        "application/json": {
            "schema": {"anyOf": [_RESPONSE, {"type": "array", "items": _RESPONSE}]}
        }
    }
    if endpoint == TASKS:
        ok["text/event-stream"] = {"schema": _SSE_EVENT}
    return {
        "200": {
            "description": "JSON-RPC responses (results and errors alike), or an SSE "
            "stream for tasks.execute with use_streaming",
            "content": ok,
        },
        "204": {"description": "only notifications: no response"},
        "401": {"description": "auth is on and the bearer token is missing or invalid"},
        "413": {"description": "the request body is too large"},
        "429": {"description": "rate limited"},
    }


def operation_for(endpoint: str) -> type[Operation]:
    """An Operation class documenting `endpoint`'s JSON-RPC body and answers."""

    @dataclass
    class JsonRpcOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = {  # type: ignore[assignment]
                "required": True,
                "content": {"application/json": {"schema": request_schema(endpoint)}},
            }
            self.responses = _responses(endpoint)

    return JsonRpcOperation


__all__ = ["SYSTEM", "TASKS", "operation_for", "request_schema"]
