"""JSON-RPC errors: the codes of API.md and the mapping from domain errors to them."""

from __future__ import annotations

from typing import Any

from domain.errors import (
    Conflict,
    DomainError,
    FieldError,
    InvalidSpec,
    NotCancelable,
    TaskNotFound,
    TreeRejected,
)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TASK_NOT_FOUND = -32001
NOT_CANCELABLE = -32002
TREE_REJECTED = -32010
CONFLICT = -32011
FORBIDDEN = -32012


class Forbidden(DomainError):
    """The caller may not see or change what it asked for."""

    code = "forbidden"


class RpcError(Exception):
    """A JSON-RPC error object: code, message and a data object {code, message, ids, ...}."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    @classmethod
    def of(cls, code: int, message: str, reason: str, *, ids: tuple[str, ...] = ()) -> RpcError:
        return cls(code, message, {"code": reason, "message": message, "ids": list(ids)})

    @classmethod
    def invalid_params(cls, field: str, reason: str) -> RpcError:
        return cls.from_domain(
            InvalidSpec(f"{field}: {reason}", fields=[FieldError(field, reason)])
        )

    @classmethod
    def from_domain(cls, exc: DomainError) -> RpcError:
        return cls(code_of(exc), exc.message, exc.as_dict())


def code_of(exc: DomainError) -> int:
    """The JSON-RPC code API.md gives each kind of refusal."""
    if isinstance(exc, InvalidSpec):
        return INVALID_PARAMS
    if isinstance(exc, TaskNotFound):
        return TASK_NOT_FOUND
    if isinstance(exc, NotCancelable):
        return NOT_CANCELABLE
    if isinstance(exc, TreeRejected):
        return TREE_REJECTED
    if isinstance(exc, Forbidden):
        return FORBIDDEN
    if isinstance(exc, Conflict):
        return CONFLICT
    return INVALID_PARAMS
