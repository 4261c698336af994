"""The executor registry: executors arrive by the `executor` decorator, by the
`flowledger.executors` entry-point group and by FLOWLEDGER_PLUGINS modules."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

from pydantic import BaseModel

from application.config import ConfigError
from application.executors.context import current_task
from domain.errors import UnknownExecutor

log = logging.getLogger("flowledger.executors")

ENTRY_POINT_GROUP = "flowledger.executors"
T = TypeVar("T")


@runtime_checkable
class Executor(Protocol):
    """What a task's executor is. `cancel()` and `input_schema` are optional."""

    id: str
    name: str
    description: str

    async def execute(self, inputs: dict[str, Any]) -> Any: ...


class RegistryError(ConfigError):
    """A plugin or registration is unusable (a configuration mistake, not a task failure)."""


@dataclass(frozen=True)
class ExecutorEntry:
    """One registered executor: how to make a fresh instance for each run of a task."""

    id: str
    name: str
    description: str
    make: Callable[[], Any]
    input_schema: type[BaseModel] | None
    source: str
    origin: object = field(compare=False, repr=False)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "input_schema": None
            if self.input_schema is None
            else self.input_schema.model_json_schema(),
        }


class FunctionExecutor:
    """Adapts a function (async, or sync run in a worker thread) to the Executor shape.
    A parameter named `context` receives the TaskContext."""

    def __init__(self, func: Callable[..., Any], id: str, name: str, description: str) -> None:
        self.func = func
        self.id, self.name, self.description = id, name, description
        self.wants_context = "context" in inspect.signature(func).parameters
        self.is_async = inspect.iscoroutinefunction(func)

    async def execute(self, inputs: dict[str, Any]) -> Any:
        kwargs = {"context": current_task()} if self.wants_context else {}
        if self.is_async:
            return await self.func(inputs, **kwargs)
        return await asyncio.to_thread(self.func, inputs, **kwargs)


def _schema_of(obj: object, given: type[BaseModel] | None) -> type[BaseModel] | None:
    schema = given if given is not None else getattr(obj, "input_schema", None)
    if schema is None:
        return None
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise RegistryError(f"input_schema of {obj!r} must be a pydantic model class")
    return schema


def _label(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class ExecutorRegistry:
    """Executor ids -> entries. Registering an id twice with different code is refused."""

    def __init__(self) -> None:
        self._entries: dict[str, ExecutorEntry] = {}
        self.load_errors: list[str] = []
        self._loaded_entry_points = False
        self._loaded_modules: set[str] = set()

    def __contains__(self, executor_id: object) -> bool:
        return executor_id in self._entries

    def get(self, executor_id: str) -> ExecutorEntry | None:
        return self._entries.get(executor_id)

    def ids(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ExecutorEntry]:
        return [self._entries[i] for i in self.ids()]

    def remove(self, executor_id: str) -> None:
        self._entries.pop(executor_id, None)

    # -- registering ----------------------------------------------------------------------
    def register(
        self,
        obj: Any,
        id: str | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        input_schema: type[BaseModel] | None = None,
        source: str = "decorator",
    ) -> ExecutorEntry:
        """Register a function, an executor class or an executor instance."""
        executor_id = id or getattr(obj, "id", None)
        if not isinstance(executor_id, str) or not executor_id:
            raise RegistryError(f"{_label(obj)}: an executor needs a non-empty string id")
        doc = inspect.getdoc(obj) or ""
        label = name or getattr(obj, "name", None) or executor_id
        about = description or getattr(obj, "description", None) or doc.split("\n\n")[0]
        schema = _schema_of(obj, input_schema)
        make: Callable[[], Any]
        if inspect.isclass(obj):
            if not callable(getattr(obj, "execute", None)):
                raise RegistryError(f"{_label(obj)}: an executor class needs execute(inputs)")
            make = obj
        elif callable(getattr(obj, "execute", None)):
            make = lambda: obj  # noqa: E731 - an instance shared by every run
        elif callable(obj):
            adapter = FunctionExecutor(obj, executor_id, label, about)  # stateless: shared
            make = lambda: adapter  # noqa: E731
        else:
            raise RegistryError(f"{obj!r} is not a function or an executor class")
        entry = ExecutorEntry(executor_id, label, about, make, schema, source, obj)
        known = self._entries.get(executor_id)
        if known is not None and _label(known.origin) != _label(obj):
            raise RegistryError(
                f"executor id {executor_id!r} is already registered by {_label(known.origin)} "
                f"({known.source}); {_label(obj)} cannot take it"
            )
        self._entries[executor_id] = entry
        return entry

    # -- loading --------------------------------------------------------------------------
    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import every installed entry point of `group`; a broken one is logged and kept
        in load_errors (the others still load)."""
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for point in entry_points(group=group):
            try:
                loaded = point.load()
                if not inspect.ismodule(loaded) and point.name not in self._entries:
                    self.register(loaded, point.name, source=f"entry point {point.value}")
            except Exception as exc:  # a third-party plugin may fail in any way
                message = f"entry point {point.name} = {point.value}: {type(exc).__name__}: {exc}"
                self.load_errors.append(message)
                log.warning("cannot load executor %s", message)

    def load_modules(self, modules: Iterable[str]) -> None:
        """Import FLOWLEDGER_PLUGINS modules; their decorators register executors."""
        for module in modules:
            if module in self._loaded_modules:
                continue
            try:
                importlib.import_module(module)
            except Exception as exc:
                raise RegistryError(
                    f"FLOWLEDGER_PLUGINS: cannot import {module!r}: {type(exc).__name__}: {exc}"
                ) from exc
            self._loaded_modules.add(module)

    # -- checking -------------------------------------------------------------------------
    def usable(self, executor_id: str, disabled: Iterable[str] = ()) -> ExecutorEntry:
        """The entry for `executor_id`, or UnknownExecutor saying which ids exist."""
        entry = self._entries.get(executor_id)
        if entry is None or executor_id in disabled:
            raise self._unknown([executor_id], [], disabled)
        return entry

    def check_known(self, wanted: Iterable[tuple[str, str]], disabled: Iterable[str] = ()) -> None:
        """Refuse (task id, executor id) pairs naming an executor nobody registered (or
        one switched off, named in `disabled`)."""
        off = set(disabled)
        unknown = [(t, ex) for t, ex in wanted if ex not in self._entries or ex in off]
        if unknown:
            raise self._unknown([ex for _, ex in unknown], [t for t, _ in unknown], off)

    def _unknown(
        self, executor_ids: list[str], task_ids: list[str], disabled: Iterable[str]
    ) -> UnknownExecutor:
        off = set(disabled)
        names = sorted(set(executor_ids))
        known = [i for i in self.ids() if i not in off]
        hint = "".join(
            f" ({name} is switched off{DISABLED_HINTS.get(name, '')})"
            for name in names
            if name in off
        )
        return UnknownExecutor(
            f"unknown executor {', '.join(map(repr, names))}{hint}; known: {', '.join(known)}",
            ids=task_ids or names,
        )


DISABLED_HINTS = {"command": ": set FLOWLEDGER_ALLOW_COMMANDS=1 to enable it"}


REGISTRY = ExecutorRegistry()


@overload
def executor(
    id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    input_schema: type[BaseModel] | None = None,
    registry: ExecutorRegistry | None = None,
) -> Callable[[T], T]: ...


@overload
def executor(id: type[T]) -> type[T]: ...


def executor(
    id: str | type | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    input_schema: type[BaseModel] | None = None,
    registry: ExecutorRegistry | None = None,
) -> Any:
    """Register a function or executor class: `@executor("shop.fetch")` on a function,
    `@executor` (bare) on a class that has an `id`."""
    target = registry or REGISTRY
    if id is not None and not isinstance(id, str):
        target.register(id)  # bare @executor on a class (or function with an id attribute)
        return id

    def decorate(obj: T) -> T:
        target.register(obj, id, name=name, description=description, input_schema=input_schema)
        return obj

    return decorate
