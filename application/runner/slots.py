"""The process-wide concurrency limit (FLOWLEDGER_CONCURRENCY), shared by every tree run.

A run takes a slot per executor call. When none is free it queues once, by the priority
of its most urgent ready task; a freed slot goes to the most urgent waiter, first come
first served among equals, so trees at the same priority take turns."""

from __future__ import annotations

import heapq
import itertools
from typing import Protocol


class SlotWaiter(Protocol):
    def slot_granted(self) -> None: ...


class Slots:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self.limit = limit
        self.used = 0
        self._queue: list[tuple[int, int, SlotWaiter]] = []
        self._queued: dict[int, int] = {}  # id(waiter) -> the priority it waits at
        self._order = itertools.count()

    def try_take(self) -> bool:
        if self.used < self.limit:
            self.used += 1
            return True
        return False

    def most_urgent_waiting(self, besides: SlotWaiter | None = None) -> int | None:
        """The priority of the first waiter in line other than `besides`, if any."""
        queue = self._queue
        if not queue:
            return None
        if queue[0][2] is not besides:
            return queue[0][0]
        # A waiter is queued once, so the next in line is one of the head's two children.
        rest = [entry[0] for entry in queue[1:3]]
        return min(rest) if rest else None

    def wait(self, priority: int, waiter: SlotWaiter) -> None:
        """Queue `waiter` (once) for the next free slot; it is told by slot_granted(). A
        waiter already queued moves up if it now needs a slot for a more urgent task."""
        queued = self._queued.get(id(waiter))
        if queued is not None and queued <= priority:
            return
        if queued is not None:
            self.forget(waiter)
        self._queued[id(waiter)] = priority
        heapq.heappush(self._queue, (priority, next(self._order), waiter))

    def forget(self, waiter: SlotWaiter) -> None:
        if id(waiter) in self._queued:
            del self._queued[id(waiter)]
            self._queue = [entry for entry in self._queue if entry[2] is not waiter]
            heapq.heapify(self._queue)

    def release(self, count: int = 1) -> None:
        self.used -= count
        assert self.used >= 0, "released more slots than were taken"
        while self._queue and self.used < self.limit:
            _, _, waiter = heapq.heappop(self._queue)
            del self._queued[id(waiter)]
            self.used += 1
            waiter.slot_granted()
