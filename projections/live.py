"""Live projection: a background thread keeps the read models up to date.

It wakes when this process stores events (the Ledger's `on_stored` hook), when another
process does (PostgreSQL LISTEN on the channel the event store NOTIFYs; on SQLite, which has
no notifications, a poll every `poll_interval_s`), and applies everything new. A writer that
wants to read its own write waits with `wait_for(position)` / `await caught_up(position)`;
both answer False at once while the projector is failing (see `last_error`) or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from projections.projector import Projector

log = logging.getLogger(__name__)

RETRY_AFTER_ERROR_S = 1.0
MAX_RETRY_S = 30.0


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class LiveProjector:
    """Runs a Projector continuously in a daemon thread (start/stop, or `with`)."""

    def __init__(
        self,
        projector: Projector,
        *,
        poll_interval_s: float = 0.25,
        listen_url: str | None = None,
    ) -> None:
        self.projector = projector
        self.poll_interval_s = poll_interval_s
        self.listen_url = listen_url
        self.last_error: BaseException | None = None
        self._position = 0
        self._changed = threading.Condition()
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Called (on the projector's thread) with each new position: feeds that follow trees.
        self.on_advance: list[Callable[[int], None]] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LiveProjector:
        if self._threads:
            raise RuntimeError("this LiveProjector is already running")
        self._stop.clear()
        self.projector.ledger.on_stored.append(self.poke)
        self._spawn(self._project, "flowledger-projector")
        channel = getattr(self.projector.ledger.recorder, "channel_name", None)
        if self.listen_url and channel:
            self._spawn(lambda: self._listen(channel), "flowledger-listener")
        return self

    def stop(self) -> None:
        """Stop after the batch in progress (not the whole backlog)."""
        with contextlib.suppress(ValueError):
            self.projector.ledger.on_stored.remove(self.poke)
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._notify()

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stop.is_set()

    def __enter__(self) -> LiveProjector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- waiting ---------------------------------------------------------------------------
    @property
    def position(self) -> int:
        return self._position

    def poke(self, _position: int = 0) -> None:
        """Something was stored: project it now."""
        self._wake.set()

    def _answer(self, position: int) -> bool | None:
        """True once `position` is in; False while failing or stopped; None: keep waiting."""
        if self._position >= position:
            return True
        if self.last_error is not None or not self.running:
            return False
        return None

    def wait_for(self, position: int, timeout: float | None = None, *, wake: bool = True) -> bool:
        """Block until the read models include notification `position` (read-your-writes).
        False if `timeout` passes first, or at once while the projector is failing or
        stopped. With `wake` (the default) the projector looks at the log at once rather
        than at its next wake-up."""
        if wake:
            self.poke()
        with self._changed:
            self._changed.wait_for(lambda: self._answer(position) is not None, timeout)
            return self._answer(position) is True

    async def caught_up(self, position: int, timeout: float | None = None) -> bool:
        """`wait_for` for asyncio callers (the server). It holds no thread while it waits:
        the projector settles a future on the caller's loop."""
        self.poke()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._changed:
            answer = self._answer(position)
            if answer is not None:
                return answer
            entry = (position, loop, future)
            self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            with self._changed, contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def _notify(self) -> None:
        """Wake the waiters that have their answer (call with or without the lock)."""
        with self._changed:
            self._changed.notify_all()
            keep = []
            for position, loop, future in self._waiters:
                answer = self._answer(position)
                if answer is None:
                    keep.append((position, loop, future))
                else:
                    with contextlib.suppress(RuntimeError):  # that loop has closed
                        loop.call_soon_threadsafe(_settle, future, answer)
            self._waiters = keep

    # -- threads ---------------------------------------------------------------------------
    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _project(self) -> None:
        retry_in = RETRY_AFTER_ERROR_S
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.projector.catch_up(
                    on_batch=lambda position, _n: self._advance(position),
                    stop_when=self._stop.is_set,
                )
                self._advance(self.projector.last_position)
            except Exception as exc:  # keep projecting: a database blip must not end it
                if repr(exc) != repr(self.last_error):
                    log.exception("projector batch failed; retrying (repeats not logged)")
                self.last_error = exc
                self._notify()
                self._stop.wait(retry_in)  # a backoff that new events do not cut short
                retry_in = min(MAX_RETRY_S, retry_in * 2)
                continue
            if self.last_error is not None:
                log.info("projector recovered")
                self.last_error = None
            retry_in = RETRY_AFTER_ERROR_S
            self._wake.wait(self.poll_interval_s)

    def _advance(self, position: int) -> None:
        with self._changed:
            moved = position > self._position
            if moved:
                self._position = position
            self._notify()
        for listener in self.on_advance if moved else ():
            try:
                listener(position)
            except Exception:
                log.exception("a projection listener failed")

    def _listen(self, channel: str) -> None:
        """Wake the projector on every NOTIFY from the event store (any process)."""
        import psycopg
        from psycopg import sql

        assert self.listen_url is not None
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.listen_url, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.poke()  # anything stored while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self.poke()
            except psycopg.Error:
                log.exception("LISTEN connection lost; reconnecting")
                self._stop.wait(RETRY_AFTER_ERROR_S)
