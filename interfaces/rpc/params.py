"""The params of each JSON-RPC method as msgspec Structs, read with every bad field named.

`read_params` checks each field on its own, so one answer lists every problem (msgspec
alone stops at the first), then builds the Struct. The same Structs give the OpenAPI
schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from domain.errors import FieldError, InvalidSpec
from domain.specs import MAX_FIELD_ERRORS, UserId, struct_errors

P = TypeVar("P", bound=Struct)

Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Limit = Annotated[int, Meta(ge=1, le=2**63 - 1)]
Version = Annotated[int, Meta(ge=1, le=2**63 - 1)]
TaskIds = Annotated[list[str], Meta(min_length=1, max_length=100_000)]
Status = Literal["pending", "in_progress", "completed", "failed", "cancelled", "skipped"]
Url = Annotated[str, Meta(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=2048)]


class Params(Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every params Struct."""


class NoParams(Params):
    pass


class TaskRef(Params):
    task_id: str


class ChildrenParams(Params):
    task_id: str | None = None
    parent_id: str | None = None


class ListParams(Params):
    user_id: UserId | None = None
    status: Status | None = None
    root_only: bool = True
    limit: Limit = 100
    offset: Count = 0


class CopyParams(Params):
    task_id: str
    copy_mode: Literal["minimal", "full", "custom"] = "minimal"
    custom_task_ids: list[str] | None = None
    children: bool = False
    save: bool = True


class WebhookConfig(Params):
    url: Url
    headers: dict[str, str] = {}
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    timeout: Annotated[float, Meta(gt=0, le=300)] = 10.0
    max_retries: Annotated[int, Meta(ge=0, le=20)] = 5


class ExecuteParams(Params):
    task_id: str | None = None
    tasks: list[Any] | None = None
    wait: bool = False
    use_streaming: bool = False
    webhook_config: WebhookConfig | None = None


class CancelParams(Params):
    task_ids: TaskIds
    force: bool = False
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class RunningListParams(Params):
    user_id: UserId | None = None
    limit: Limit = 100


class RunningStatusParams(Params):
    task_ids: TaskIds


class UserParams(Params):
    user_id: UserId | None = None


class HistoryParams(Params):
    task_id: str
    after_version: Count = 0
    limit: Limit | None = None


class ReplayParams(Params):
    task_id: str
    version: Version | None = None
    at: str | None = None


def read_params(raw: Any, cls: type[P], *, where: str = "") -> P:
    """`raw` as a `cls`, or InvalidSpec naming every bad field (unknown ones too)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        field = where.rstrip(".") or "params"
        reason = f"expected an object, got {_json_type(raw)}"
        raise InvalidSpec(f"{field}: {reason}", fields=[FieldError(field, reason)])
    errors = struct_errors(raw, cls, where.rstrip("."), unknown="unknown parameter")
    if errors:
        errors = errors[:MAX_FIELD_ERRORS]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidSpec(f"{errors[0].field}: {errors[0].reason}{more}", fields=errors)
    return msgspec.convert(raw, cls, strict=True)


def instant(text: str, field: str) -> datetime:
    """An ISO 8601 time (UTC when it names no zone), else InvalidSpec naming `field`."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        reason = "must be an ISO 8601 time such as 2026-01-31T12:00:00Z"
        raise InvalidSpec(f"{field}: {reason}", fields=[FieldError(field, reason)]) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _json_type(value: Any) -> str:
    names = {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return names.get(type(value), "null" if value is None else type(value).__name__)
