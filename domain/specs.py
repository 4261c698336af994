"""Task specs: what a caller submits, validated and normalised before any rule is checked."""

from __future__ import annotations

import functools
import math
import re
import types
import typing
import uuid
from collections.abc import Callable, Iterable
from typing import Annotated, Any, NamedTuple

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from domain.errors import DuplicateName, FieldError, InvalidSpec, UnknownReference
from domain.run_options import run_params_problems
from domain.secrets import secret_problems

PRIORITY_DEFAULT = 2
PRIORITY_MAX = 2**31 - 1
MAX_ID_LENGTH = 255
MAX_NAME_LENGTH = 1000
MAX_NESTING = 100
MAX_FIELD_ERRORS = 100
INT_LIMIT = 2**63

# Ids, names and user ids are looked up and listed as database text, which (on PostgreSQL)
# cannot hold the NUL character: refuse it at the door rather than store what cannot be read.
NO_NUL = r"^[^\x00]*$"
TaskId = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH, pattern=NO_NUL)]
Priority = Annotated[int, Meta(ge=0, le=PRIORITY_MAX)]
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NO_NUL)]
UserId = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH, pattern=NO_NUL)]


class Dependency(Struct, frozen=True, forbid_unknown_fields=True):
    """A task waits for `id`; if `required`, it is skipped when `id` does not complete."""

    id: TaskId
    required: bool = True


class TaskSpec(Struct, frozen=True, kw_only=True):
    """The definition of one task as stored in Created: it never changes once run."""

    id: str
    name: str
    parent_id: str | None = None
    user_id: str | None = None
    priority: int = PRIORITY_DEFAULT
    dependencies: tuple[Dependency, ...] = ()
    inputs: dict[str, Any] = {}
    params: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    original_task_id: str | None = None


class TaskInput(Struct, kw_only=True, forbid_unknown_fields=True):
    """One task as a caller submits it (the wire shape; see read_tasks for the rules)."""

    name: Name
    id: TaskId | None = None
    parent_id: TaskId | None = None
    user_id: UserId | None = None
    priority: Priority = PRIORITY_DEFAULT
    dependencies: list[Dependency | TaskId] | None = None
    inputs: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    schemas: dict[str, Any] | None = None


class TaskChanges(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The fields of a pending task that an update may change; UNSET means unchanged."""

    name: str | UnsetType = UNSET
    priority: int | UnsetType = UNSET
    inputs: dict[str, Any] | UnsetType = UNSET
    params: dict[str, Any] | UnsetType = UNSET
    schemas: dict[str, Any] | UnsetType = UNSET
    dependencies: tuple[Dependency, ...] | UnsetType = UNSET


class ChangesInput(Struct, kw_only=True, forbid_unknown_fields=True):
    """The fields tasks.update may change, as a caller sends them."""

    name: Name | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    inputs: dict[str, Any] | UnsetType | None = UNSET
    params: dict[str, Any] | UnsetType | None = UNSET
    schemas: dict[str, Any] | UnsetType | None = UNSET
    dependencies: list[Dependency | TaskId] | UnsetType | None = UNSET


NOT_UPDATABLE = frozenset(
    {
        "id",
        "parent_id",
        "user_id",
        "status",
        "result",
        "error",
        "progress",
        "attempts",
        "created_at",
        "started_at",
        "completed_at",
        "original_task_id",
        "has_copy",
        "has_children",
        "tree_id",
    }
)

_PATH = re.compile(
    r"^(?P<reason>.*?)(?: - at `(?P<path>[^`]*)`)?(?: in `(?P<outer>[^`]*)`)?$", re.S
)
_NAMED = re.compile(r"(?P<what>unknown|missing required) field `(?P<name>[^`]*)`")


def field_error(error: msgspec.ValidationError, prefix: str) -> FieldError:
    """Turn msgspec's "reason - at `$.a[0]`" into a FieldError named from `prefix`."""
    text = str(error)
    match = _PATH.fullmatch(text)
    if match is None:  # pragma: no cover - msgspec always matches; stay safe if it changes
        return FieldError(prefix, text)
    where = prefix + (match["outer"] or match["path"] or "$")[1:]
    named = _NAMED.search(text)
    if named:
        reason = "unknown field" if named["what"] == "unknown" else f"{named['name']} is required"
        return FieldError(f"{where}.{named['name']}", reason)
    reason = match["reason"]
    if reason.startswith("Expected `str` matching regex"):  # the only pattern is NO_NUL
        reason = "must not contain the NUL character (U+0000)"
    if match["outer"]:
        reason = f"{reason} (in a key)"
    return FieldError(where, reason)


def struct_errors(
    raw: dict[str, Any], cls: type[Struct], where: str = "", unknown: str = "unknown field"
) -> list[FieldError]:
    """Every field of `raw` that `cls` refuses, each checked on its own (msgspec alone stops
    at the first): unknown fields, missing required ones, and values of the wrong type."""
    prefix = f"{where}." if where else ""
    fields = _struct_fields(cls)
    known = {f.encode_name for f in fields}
    errors = [FieldError(prefix + key, unknown) for key in raw if key not in known]
    for info in fields:
        name = info.encode_name
        if name in raw:
            nested = _struct_in(info.type)
            if nested is not None and isinstance(raw[name], dict):
                errors += struct_errors(raw[name], nested, prefix + name, unknown)
                continue
            try:
                msgspec.convert(raw[name], info.type, strict=True)
            except msgspec.ValidationError as exc:
                errors.append(field_error(exc, prefix + name))
        elif info.required:
            errors.append(FieldError(prefix + name, f"{name} is required"))
    return errors


def _struct_in(annotation: Any) -> type[Struct] | None:
    """The Struct of a field typed X or X | None, whose fields are then checked one by one."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    for option in typing.get_args(annotation) if union else (annotation,):
        if isinstance(option, type) and issubclass(option, Struct):
            return option
    return None


@functools.cache
def _struct_fields(cls: type[Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    return msgspec.structs.fields(cls)


def check_json_value(value: Any, field: str) -> FieldError | None:
    """Return why `value` is not plain JSON data (or nested too deep), else None."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_NESTING:
            return FieldError(where, f"nested deeper than {MAX_NESTING} levels")
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if not is_text(item):
                return FieldError(where, "not valid Unicode text (a lone surrogate)")
        elif isinstance(item, int):
            if not -INT_LIMIT <= item < INT_LIMIT:
                return FieldError(where, "integer out of the 64-bit range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                return FieldError(where, "NaN and infinities are not JSON numbers")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return FieldError(where, f"object key {key!r} is not a string")
                if not is_text(key):
                    return FieldError(where, "an object key is not valid Unicode text")
                stack.append((child, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        else:
            return FieldError(where, f"a {type(item).__name__} is not a JSON value")
    return None


def is_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def task_items(payload: Any) -> list[Any]:
    """Accept a task array, {"tasks": [...]}, or one task object."""
    if isinstance(payload, dict):
        if "tasks" in payload:
            payload = payload["tasks"]
        else:
            return [payload]
    if not isinstance(payload, list):
        raise InvalidSpec(
            "tasks must be an array of task objects",
            fields=[FieldError("tasks", f"expected an array, got {type(payload).__name__}")],
        )
    if not payload:
        raise InvalidSpec(
            "a tree needs at least one task",
            fields=[FieldError("tasks", "must hold at least one task")],
        )
    return payload


def _dependencies(
    raw: Iterable[Dependency | str], where: str, errors: list[FieldError]
) -> tuple[Dependency, ...]:
    seen: set[str] = set()
    out: list[Dependency] = []
    for k, dep in enumerate(raw):
        normal = Dependency(id=dep) if isinstance(dep, str) else dep
        if normal.id in seen:
            field = f"{where}.dependencies[{k}]" if where else f"dependencies[{k}]"
            errors.append(FieldError(field, f"repeats {normal.id!r}"))
            continue
        seen.add(normal.id)
        out.append(normal)
    return tuple(out)


def _check_values(item: TaskInput | ChangesInput, where: str, errors: list[FieldError]) -> None:
    if isinstance(item.name, str) and not item.name.strip():
        errors.append(FieldError(f"{where}.name", "must not be blank"))


class SubmittedTasks(NamedTuple):
    specs: list[TaskSpec]
    names: dict[str, str] | None  # generated id -> name, when the caller gave no ids


def parse_tasks(
    payload: Any, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> list[TaskSpec]:
    """Validate a submitted task array and return specs with every reference an id."""
    return read_tasks(payload, new_id).specs


def read_tasks(
    payload: Any,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    root_id: str | None = None,
) -> SubmittedTasks:
    """Validate a submitted task array: specs with every reference an id, and the names
    behind generated ids.

    Either every task gives an id or none does; without ids, ids are generated and
    parent_id and dependencies name tasks by their (then unique) names. `root_id`, if
    given, is the id the root (the one task without a parent) gets when ids are generated.
    """
    items = task_items(payload)
    errors: list[FieldError] = []
    inputs: list[TaskInput] = []
    for i, raw in enumerate(items):
        if len(errors) >= MAX_FIELD_ERRORS:
            del errors[MAX_FIELD_ERRORS:]
            break
        where = f"tasks[{i}]"
        if not isinstance(raw, dict):
            errors.append(FieldError(where, f"expected an object, got {type(raw).__name__}"))
            continue
        problem = check_json_value(raw, where)
        if problem:
            errors.append(problem)
            continue
        try:
            item = msgspec.convert(raw, TaskInput, strict=True)
        except msgspec.ValidationError as exc:
            # the rare path: name every bad field, not only the first one msgspec met
            errors.extend(struct_errors(raw, TaskInput, where) or [field_error(exc, where)])
            continue
        _check_values(item, where, errors)
        errors.extend(run_params_problems(item.params or {}, item.schemas or {}, where))
        errors.extend(secret_problems(item.inputs or {}, item.schemas or {}, where))
        inputs.append(item)
    if errors:
        raise InvalidSpec(_summary(errors), fields=errors)

    with_id = [t.id is not None for t in inputs]
    if any(with_id) and not all(with_id):
        missing = [f"tasks[{i}].id" for i, has in enumerate(with_id) if not has]
        raise InvalidSpec(
            "give every task an id or none (then tasks refer to each other by name)",
            fields=[FieldError(f, "missing while other tasks have ids") for f in missing[:20]],
        )
    names: dict[str, str] | None = None
    if all(with_id):
        ids = [str(t.id) for t in inputs]
        resolve: Callable[[str], str] = str
    else:
        ids = [new_id() for _ in inputs]
        roots = [i for i, t in enumerate(inputs) if t.parent_id is None]
        if root_id is not None and len(roots) == 1:
            ids[roots[0]] = root_id
        by_name: dict[str, str] = {}
        repeated: list[FieldError] = []
        twice: set[str] = set()
        for i, (t, tid) in enumerate(zip(inputs, ids, strict=True)):
            if t.name in by_name:
                repeated.append(FieldError(f"tasks[{i}].name", f"repeats {t.name!r}"))
                twice.add(t.name)
            by_name[t.name] = tid
        if repeated:
            raise DuplicateName(
                f"without ids, task names must be unique; repeated: {', '.join(sorted(twice))}",
                ids=sorted(twice),
                fields=repeated[:MAX_FIELD_ERRORS],
            )

        def resolve(ref: str) -> str:
            try:
                return by_name[ref]
            except KeyError:
                raise UnknownReference(
                    f"no task is named {ref!r} (without ids, references are names)", ids=(ref,)
                ) from None

    specs: list[TaskSpec] = []
    for i, (t, tid) in enumerate(zip(inputs, ids, strict=True)):
        deps = _dependencies(t.dependencies or (), f"tasks[{i}]", errors)
        specs.append(
            TaskSpec(
                id=str(tid),
                name=t.name,
                parent_id=None if t.parent_id is None else resolve(t.parent_id),
                user_id=t.user_id,
                priority=t.priority,
                dependencies=tuple(Dependency(resolve(d.id), d.required) for d in deps),
                inputs=t.inputs or {},
                params=t.params or {},
                schemas=t.schemas or {},
            )
        )
    if errors:
        raise InvalidSpec(_summary(errors), fields=errors)
    if not all(with_id):
        names = {s.id: s.name for s in specs}
    return SubmittedTasks(specs, names)


def parse_changes(raw: Any) -> TaskChanges:
    """Validate the fields of tasks.update (everything but task_id)."""
    if not isinstance(raw, dict):
        raise InvalidSpec(
            "changes must be an object",
            fields=[FieldError("params", f"expected an object, got {type(raw).__name__}")],
        )
    problem = check_json_value(raw, "")
    if problem:
        problem = FieldError(problem.field.lstrip(".") or "params", problem.reason)
        raise InvalidSpec(_summary([problem]), fields=[problem])
    fixed = [FieldError(k, "not updatable") for k in raw if k in NOT_UPDATABLE]
    free = {k: v for k, v in raw.items() if k not in NOT_UPDATABLE}
    bad = fixed + struct_errors(free, ChangesInput)
    if bad:
        raise InvalidSpec(_summary(bad), fields=bad)
    item = msgspec.convert(free, ChangesInput, strict=True)
    errors: list[FieldError] = []
    _check_values(item, "", errors)
    errors = [FieldError(e.field.lstrip("."), e.reason) for e in errors]
    errors += run_params_problems(
        item.params if isinstance(item.params, dict) else {},
        item.schemas if isinstance(item.schemas, dict) else {},
        "",
    )
    deps: tuple[Dependency, ...] | UnsetType = UNSET
    if item.dependencies is not UNSET:
        deps = _dependencies(item.dependencies or (), "", errors)
    if errors:
        raise InvalidSpec(_summary(errors), fields=errors)
    return TaskChanges(
        name=item.name,
        priority=item.priority,
        inputs=_or_empty(item.inputs),
        params=_or_empty(item.params),
        schemas=_or_empty(item.schemas),
        dependencies=deps,
    )


def _or_empty(value: dict[str, Any] | UnsetType | None) -> dict[str, Any] | UnsetType:
    return {} if value is None else value


def _summary(errors: list[FieldError]) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first.field}: {first.reason}{more}"
