"""Helpers for the runner tests: test executors (ids "test.*") and the signals they use.

Every executor here records its call in CALLS. Blocking ones wait on named asyncio.Events
(SIGNALS[name]) that the test sets; none of them sleeps. `arun` resets this module's state
and runs a test body in a fresh event loop, so the Events always belong to that loop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from application.executors import TaskContext, current_task, executor
from application.ledger import Ledger
from domain import events as ev
from domain.status import TaskStatus
from tests.integration.support import task as task  # re-exported for the runner tests

T = TypeVar("T")

# How long a test waits for something that must happen before calling it a failure. A hang
# guard only: in a passing run every wait ends as soon as the awaited thing happens.
GUARD_S = 30.0


# -- shared state, reset by arun ----------------------------------------------------------------
class Signals:
    """Named asyncio.Events, made on first use."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def __getitem__(self, name: str) -> asyncio.Event:
        if name not in self._events:
            self._events[name] = asyncio.Event()
        return self._events[name]

    def clear(self) -> None:
        self._events.clear()


@dataclass(frozen=True)
class Call:
    executor: str
    task_id: str
    attempt: int
    inputs: dict[str, Any]


SIGNALS = Signals()
CALLS: list[Call] = []
CANCELS: list[str] = []  # task ids whose executor's cancel() was called
INTERRUPTED: list[str] = []  # task ids whose executor saw CancelledError
BARRIERS: Counter[str] = Counter()
CROWD = {"running": 0, "peak": 0}


def reset() -> None:
    SIGNALS.clear()
    CALLS.clear()
    CANCELS.clear()
    INTERRUPTED.clear()
    BARRIERS.clear()
    CROWD.update(running=0, peak=0)


def arun(body: Callable[[], Awaitable[T]]) -> T:
    """Run one test body in a fresh event loop, with fresh executor state."""
    reset()

    async def main() -> T:
        return await body()

    return asyncio.run(main())


async def until(event: asyncio.Event, what: str) -> None:
    """Wait for `event` (set by an executor or a listener); fail, not hang, if it never is."""
    try:
        await asyncio.wait_for(event.wait(), GUARD_S)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def first_of(events: dict[str, asyncio.Event]) -> str:
    """Wait until one of `events` is set; its name (fail, not hang, if none ever is)."""
    waits = {asyncio.ensure_future(e.wait()): name for name, e in events.items()}
    done, pending = await asyncio.wait(waits, timeout=GUARD_S, return_when="FIRST_COMPLETED")
    for job in pending:
        job.cancel()
    if not done:
        raise AssertionError(f"never happened: any of {', '.join(events)}")
    return waits[done.pop()]


async def finish(job: Awaitable[T], what: str = "the run to end") -> T:
    try:
        return await asyncio.wait_for(job, GUARD_S)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def calls_of(task_id: str) -> list[Call]:
    return [c for c in CALLS if c.task_id == task_id]


def _record(executor_id: str, inputs: dict[str, Any]) -> TaskContext:
    context = current_task()
    CALLS.append(Call(executor_id, context.task_id, context.attempt, dict(inputs)))
    return context


# -- executors ------------------------------------------------------------------------------
@executor("test.value", description="Returns inputs.value (None when absent).")
async def value(inputs: dict[str, Any], context: TaskContext) -> Any:
    _record("test.value", inputs)
    return inputs.get("value")


@executor("test.sync_value", description="A plain (thread) function returning inputs.value.")
def sync_value(inputs: dict[str, Any], context: TaskContext) -> Any:
    CALLS.append(Call("test.sync_value", context.task_id, context.attempt, dict(inputs)))
    return inputs.get("value")


@executor("test.raise", description="Raises ValueError(inputs.message).")
async def raise_value_error(inputs: dict[str, Any]) -> None:
    _record("test.raise", inputs)
    raise ValueError(inputs.get("message", "bad"))


class Abort(BaseException):
    """Not an Exception: what a misbehaving executor might raise."""


@executor("test.abort", description="Raises a BaseException that is not an Exception.")
async def abort(inputs: dict[str, Any]) -> None:
    _record("test.abort", inputs)
    raise Abort("stop")


@executor("test.flaky", description="Fails while context.attempt <= inputs.fail_times.")
async def flaky(inputs: dict[str, Any], context: TaskContext) -> dict[str, int]:
    _record("test.flaky", inputs)
    if context.attempt <= inputs["fail_times"]:
        raise RuntimeError(f"attempt {context.attempt} failed")
    return {"attempt": context.attempt}


@executor("test.block", description="Sets inputs.started, then waits for inputs.gate.")
class Block:
    """Blocks until the test sets SIGNALS[inputs.gate]; then returns inputs.value or raises
    RuntimeError(inputs.fail). Its cancel() and any CancelledError are recorded."""

    def __init__(self) -> None:
        self.task_id = "?"

    async def execute(self, inputs: dict[str, Any]) -> Any:
        self.task_id = _record("test.block", inputs).task_id
        if inputs.get("started"):
            SIGNALS[inputs["started"]].set()
        try:
            await SIGNALS[inputs["gate"]].wait()
        except asyncio.CancelledError:
            INTERRUPTED.append(self.task_id)
            raise
        if "fail" in inputs:
            raise RuntimeError(inputs["fail"])
        return inputs.get("value")

    async def cancel(self) -> None:
        CANCELS.append(self.task_id)
        SIGNALS[f"cancel:{self.task_id}"].set()


@executor("test.barrier", description="Waits until inputs.parties tasks entered the barrier.")
async def barrier(inputs: dict[str, Any], context: TaskContext) -> str:
    _record("test.barrier", inputs)
    name = inputs["barrier"]
    BARRIERS[name] += 1
    if BARRIERS[name] >= inputs["parties"]:
        SIGNALS[name].set()
    await SIGNALS[name].wait()
    return context.task_id


@executor("test.crowd", description="Counts how many run at once; waits for inputs.gate.")
async def crowd(inputs: dict[str, Any]) -> None:
    _record("test.crowd", inputs)
    CROWD["running"] += 1
    CROWD["peak"] = max(CROWD["peak"], CROWD["running"])
    try:
        if CROWD["running"] >= inputs["full_at"]:
            SIGNALS["full"].set()
        await SIGNALS[inputs["gate"]].wait()
    finally:
        CROWD["running"] -= 1


class Opaque:
    """Hashable, and not JSON."""


class Shape(BaseModel):
    name: str
    when: datetime


MOMENT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@executor("test.shape", description="Returns a value of the kind inputs.kind names.")
async def shape(inputs: dict[str, Any]) -> Any:
    _record("test.shape", inputs)
    kind = inputs["kind"]
    if kind == "object":
        return object()
    if kind == "opaque_set":
        return {Opaque(), Opaque()}
    if kind == "datetime":
        return MOMENT
    if kind == "model":
        return Shape(name="x", when=MOMENT)
    if kind == "nested":
        return {"at": MOMENT, "items": {3}, "model": Shape(name="y", when=MOMENT)}
    if kind == "tuple":
        return {"pair": (1, 2)}
    raise AssertionError(f"unknown kind {kind!r}")


class CountInputs(BaseModel):
    count: int


@executor("test.validated", input_schema=CountInputs, description="Returns inputs.count * 2.")
async def validated(inputs: dict[str, Any]) -> int:
    _record("test.validated", inputs)
    return int(inputs["count"]) * 2


@executor("test.inner_validation", description="Its own code raises a pydantic error.")
async def inner_validation(inputs: dict[str, Any]) -> None:
    _record("test.inner_validation", inputs)
    CountInputs.model_validate({"count": "not a number"})  # e.g. parsing a reply


@executor("test.progress", description="Reports progress, then waits for inputs.gate if any.")
async def progress(inputs: dict[str, Any], context: TaskContext) -> str:
    _record("test.progress", inputs)
    context.report_progress(inputs.get("fraction", 0.5), inputs.get("message"))
    if inputs.get("gate"):
        await SIGNALS[inputs["gate"]].wait()
    return "done"


# -- reading what happened ----------------------------------------------------------------------
def run_by(executor_id: str, **inputs: Any) -> dict[str, Any]:
    """The fields of a task run by `executor_id` (picked through schemas.method)."""
    return {"schemas": {"method": executor_id}, "inputs": inputs}


def of_type(events: Iterable[Any], kind: type[T], task_id: str | None = None) -> list[T]:
    return [
        e
        for e in events
        if isinstance(e, kind) and (task_id is None or getattr(e, "task_id", None) == task_id)
    ]


def started_ids(events: Iterable[Any]) -> list[str]:
    return [e.task_id for e in events if isinstance(e, ev.Started)]


def task_story(events: Iterable[Any], task_id: str) -> list[tuple[Any, ...]]:
    """The events of one task, as (type, attempt-or-detail) tuples."""
    story: list[tuple[Any, ...]] = []
    for e in events:
        if getattr(e, "task_id", None) != task_id:
            continue
        if isinstance(e, ev.Started):
            story.append(("Started", e.attempt))
        elif isinstance(e, ev.AttemptFailed):
            story.append(("AttemptFailed", e.attempt))
        elif isinstance(e, ev.Failed):
            story.append(("Failed", e.attempt))
        else:
            story.append((type(e).__name__,))
    return story


def versions_in_order(events: list[Any]) -> bool:
    return [e.originator_version for e in events] == list(range(1, len(events) + 1))


def all_tree_events(ledger: Ledger) -> list[Any]:
    """Every tree event in the store, in notification (commit) order, across trees."""
    found = ledger.recorder.select_notifications(start=1, limit=1_000_000)
    return [ledger.mapper.to_domain_event(n) for n in found if n.topic.startswith("tree.")]


def peak_in_progress(events: Iterable[Any], counted: set[str]) -> int:
    """The most tasks among `counted` that were in progress at once, per the log."""
    running: set[str] = set()
    peak = 0
    for e in events:
        task_id = getattr(e, "task_id", None)
        if task_id not in counted:
            continue
        if isinstance(e, ev.Started):
            running.add(task_id)
            peak = max(peak, len(running))
        elif isinstance(e, ev.Completed | ev.Failed | ev.Cancelled | ev.Skipped):
            running.discard(task_id)
    return peak


def statuses(tree: Any) -> dict[str, TaskStatus]:
    return {i: t.status for i, t in tree.tasks.items()}


class SavedEvents:
    """A Runner listener that sets SIGNALS[f"saved:{Type}:{task_id}"] for each saved event."""

    def __call__(self, tree: Any, events: list[Any]) -> None:
        for e in events:
            SIGNALS[f"saved:{type(e).__name__}:{getattr(e, 'task_id', '')}"].set()
