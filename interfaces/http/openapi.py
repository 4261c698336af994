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


def _params_schema(method: str) -> dict[str, Any]:
    if method == "tasks.create":
        task = _struct_schema(TaskInput)
        array = {"type": "array", "items": task, "minItems": 1}
        return {
            "anyOf": [
                array,
                task,
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
    return _struct_schema(params)


def _struct_schema(cls: Any) -> dict[str, Any]:
    (schema,), defs = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
    inlined: dict[str, Any] = _inline(schema, defs)
    return inlined


@cache
def request_schema(endpoint: str) -> dict[str, Any]:
    requests = []
    for name, method in METHODS.items():
        if method.endpoint != endpoint:
            continue
        requests.append(
            {
                "type": "object",
                "title": name,
                "properties": {
                    "jsonrpc": {"const": "2.0"},
                    "method": {"const": name},
                    "params": _params_schema(name),
                    "id": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "required": ["jsonrpc", "method"],
            }
        )
    one = {"oneOf": requests}
    return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}


_RESPONSE = {
    "type": "object",
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]},
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


def _responses(endpoint: str) -> dict[str, Any]:
    ok: dict[str, Any] = {
        "application/json": {
            "schema": {"anyOf": [_RESPONSE, {"type": "array", "items": _RESPONSE}]}
        }
    }
    if endpoint == TASKS:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
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
