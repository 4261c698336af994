"""What a TreeRun keeps about one step and one running attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from application.executors.registry import ExecutorEntry
from application.runner.attempt import Outcome
from domain.events import TreeEvent
from domain.run_options import RunOptions
from domain.state import Task
from domain.tree import TaskTree


@dataclass
class Running:
    attempt: int
    job: asyncio.Task[None]
    holds_slot: bool = True


@dataclass
class Command:
    """A change asked of this run by its own process (e.g. a cancel through the server)."""

    apply: Callable[[TaskTree], Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


class Launch(NamedTuple):
    task: Task
    attempt: int
    inputs: dict[str, Any]
    options: RunOptions
    entry: ExecutorEntry


@dataclass
class Inflight:
    """A step whose events are being stored (and steps without events decided since)."""

    future: asyncio.Future[None]
    steps: list[Step]
    events: list[TreeEvent]


@dataclass
class Step:
    """What one step decided; acted upon only once its events are stored."""

    outcomes: list[Outcome] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    launches: list[Launch] = field(default_factory=list)
    freed: int = 0  # slots held by this run, unused by this step
    retries: list[tuple[str, int, float]] = field(default_factory=list)
