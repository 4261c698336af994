"""One attempt of one task: make the executor, check its inputs, call it under the
task's timeout, and turn whatever happens into an Outcome for the tree's run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pydantic

from application.executors.context import TaskContext, bind
from application.executors.registry import ExecutorEntry
from application.secrets import SecretMissing, SecretSource, from_environment, reveal, scrub

log = logging.getLogger("flowledger.runner")

MAX_ERROR_LENGTH = 8000
CANCEL_GRACE_S = 5.0


@dataclass(frozen=True)
class Done:
    task_id: str
    attempt: int
    result: Any


@dataclass(frozen=True)
class AttemptError:
    task_id: str
    attempt: int
    error: str
    retryable: bool = True


@dataclass(frozen=True)
class Progress:
    task_id: str
    attempt: int
    fraction: float
    message: str | None


@dataclass(frozen=True)
class RetryDue:
    task_id: str
    attempt: int  # the attempt that failed


Outcome = Done | AttemptError | Progress | RetryDue


def describe(exc: BaseException) -> str:
    """ "ExceptionType: message", as API.md says a failed task's error reads."""
    text = str(exc).strip()
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(described) > MAX_ERROR_LENGTH:
        described = described[: MAX_ERROR_LENGTH - 3] + "..."
    return described


def _json_hook(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise NotImplementedError(f"a {type(value).__name__} is not a JSON value")


def as_json(result: Any) -> Any:
    """The result as plain data (datetimes, UUIDs, dataclasses, pydantic models and sets
    become JSON); TypeError when it cannot be. (TaskTree.complete checks the rest: NaN,
    integer range, nesting.)"""
    if result is None or type(result) in (str, int, bool):
        return result
    try:
        plain = msgspec.to_builtins(result, enc_hook=_json_hook, str_keys=True)
    except (NotImplementedError, TypeError) as exc:
        raise TypeError(f"the result is not JSON data: {exc}") from None
    return _tuples_as_lists(plain)


def _tuples_as_lists(value: Any) -> Any:
    """to_builtins keeps tuples (and namedtuples); JSON has arrays only."""
    if isinstance(value, tuple):
        value = list(value)
    elif not isinstance(value, list | dict):
        return value
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(child, tuple):
                child = node[key] = list(child)
            if isinstance(child, list | dict):
                stack.append(child)
    return value


def validation_message(error: pydantic.ValidationError) -> str:
    parts = []
    for item in error.errors()[:20]:
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"inputs.{where}: {item['msg']}" if where else f"inputs: {item['msg']}")
    return "; ".join(parts)


class Attempt:
    """Runs `entry` once for a task. `post` receives exactly one Done or AttemptError
    (none if the attempt is cancelled)."""

    def __init__(
        self,
        entry: ExecutorEntry,
        context: TaskContext,
        inputs: dict[str, Any],
        timeout_s: float | None,
        post: Callable[[Outcome], None],
        secrets: SecretSource = from_environment,
    ) -> None:
        self.entry = entry
        self.context = context
        self.inputs = inputs
        self.timeout_s = timeout_s
        self.post = post
        self.secrets = secrets
        self.revealed: dict[str, str] = {}  # secret name -> the value this attempt was given
        self.instance: Any = None

    async def run(self) -> None:
        task_id, attempt = self.context.task_id, self.context.attempt
        try:
            outcome = await self._call()
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is None or current.cancelling():  # we were asked to stop
                await self._cancel_instance()
                raise
            outcome = AttemptError(task_id, attempt, describe(exc))  # the executor's own
        except Exception as exc:
            outcome = AttemptError(task_id, attempt, describe(exc))
        except SystemExit as exc:  # an executor must not end the process running the tree
            outcome = AttemptError(task_id, attempt, describe(exc), retryable=False)
        self.post(self.scrubbed(outcome))

    def scrubbed(self, outcome: Outcome) -> Outcome:
        """The outcome with no secret value of this attempt left in it."""
        if not self.revealed:
            return outcome
        if isinstance(outcome, Done):
            return Done(outcome.task_id, outcome.attempt, scrub(outcome.result, self.revealed))
        if isinstance(outcome, AttemptError):
            error = scrub(outcome.error, self.revealed)
            return AttemptError(outcome.task_id, outcome.attempt, error, outcome.retryable)
        return outcome

    async def _call(self) -> Outcome:
        task_id, attempt = self.context.task_id, self.context.attempt
        try:
            inputs = reveal(self.inputs, self.secrets, self.revealed)
        except SecretMissing as exc:  # retrying cannot set it
            return AttemptError(task_id, attempt, describe(exc), retryable=False)
        if self.entry.input_schema is not None:
            try:
                checked = self.entry.input_schema.model_validate(inputs)
            except pydantic.ValidationError as exc:  # retrying cannot fix the inputs
                message = f"ValidationError: {validation_message(exc)}"
                return AttemptError(task_id, attempt, message, retryable=False)
            inputs = {**inputs, **checked.model_dump()}
        self.instance = self.entry.make()
        bind(self.context)
        if self.timeout_s is None:
            result = await self.instance.execute(inputs)
        else:
            deadline = asyncio.timeout(self.timeout_s)
            try:
                async with deadline:
                    result = await self.instance.execute(inputs)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the executor's own timeout, not the task's
                await self._cancel_instance()
                message = f"TimeoutError: timed out after {self.timeout_s:g} s"
                return AttemptError(task_id, attempt, message)
        try:
            return Done(task_id, attempt, as_json(result))
        except TypeError as exc:
            return AttemptError(task_id, attempt, f"InvalidResult: {exc}", retryable=False)

    async def _cancel_instance(self) -> None:
        cancel = getattr(self.instance, "cancel", None)
        if cancel is None:
            return
        try:
            async with asyncio.timeout(CANCEL_GRACE_S):
                result = cancel()
                if asyncio.iscoroutine(result):
                    await result
        except (Exception, asyncio.CancelledError) as exc:
            with contextlib.suppress(Exception):
                log.warning("cancel() of %s raised %s", self.entry.id, describe(exc))
