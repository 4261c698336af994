"""Domain errors: each has a stable snake_case code and names the ids it is about."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class FieldError:
    """One bad field of an input: where it is and why it is refused."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class DomainError(Exception):
    """A command refused by a rule of the domain; nothing was emitted or persisted."""

    code: ClassVar[str] = "domain_error"

    def __init__(
        self,
        message: str,
        *,
        ids: Iterable[str] = (),
        path: str | None = None,
        fields: Iterable[FieldError] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.ids: tuple[str, ...] = tuple(ids)
        self.path = path
        self.fields: tuple[FieldError, ...] = tuple(fields)

    def relabelled(self, labels: Mapping[str, str]) -> DomainError:
        """The same error with generated (UUID) ids shown as the names the caller used."""

        def label(text: str) -> str:
            return _UUID.sub(lambda m: labels.get(m[0], m[0]), text)

        path = self.path
        if path is not None:
            path = " -> ".join(labels.get(p, p) for p in path.split(" -> "))
        return type(self)(
            label(self.message),
            ids=[labels.get(i, i) for i in self.ids],
            path=path,
            fields=self.fields,
        )

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message, "ids": list(self.ids)}
        if self.path is not None:
            data["path"] = self.path
        if self.fields:
            data["fields"] = [f.as_dict() for f in self.fields]
        return data


class InvalidSpec(DomainError):
    """Input of the wrong shape or type: the fields say which and why."""

    code = "invalid_params"


class TreeRejected(DomainError):
    """A tree (or a change to one) that breaks a structural rule."""

    code = "tree_rejected"


class DuplicateId(TreeRejected):
    code = "duplicate_id"


class DuplicateName(TreeRejected):
    code = "duplicate_name"


class UnknownReference(TreeRejected):
    code = "unknown_reference"


class DependencyCycle(TreeRejected):
    code = "cycle"


class NoRoot(TreeRejected):
    code = "no_root"


class MultipleRoots(TreeRejected):
    code = "multiple_roots"


class Unreachable(TreeRejected):
    code = "unreachable"


class TooDeep(TreeRejected):
    code = "too_deep"


class UnknownExecutor(TreeRejected):
    code = "unknown_executor"


class Conflict(DomainError):
    """The current state does not allow the command."""

    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class NotPending(Conflict):
    code = "not_pending"


class HasDependents(Conflict):
    code = "has_dependents"


class NotCancelable(Conflict):
    code = "not_cancelable"


class TaskNotFound(DomainError):
    code = "task_not_found"
