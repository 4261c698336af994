"""The Orchestrator: what the JSON-RPC methods run on. It opens the event store, the read
models (kept live by a LiveProjector in a server), and a Runner for the trees this process
runs; store calls go to a small thread pool so the event loop never blocks on I/O (but for
single-row read-model lookups on SQLite: see `lookup`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from application.config import Settings
from application.executors import ExecutorRegistry
from application.ledger import Ledger
from application.runner import Runner
from interfaces.rpc.callbacks import CallbackPolicy
from projections.live import LiveProjector
from projections.projector import Projector
from projections.queries import ReadModel
from projections.schema import create_read_engine

log = logging.getLogger("flowledger.server")
R = TypeVar("R")

FRESH_TIMEOUT_S = 5.0  # how long a read waits for the read models to include a write
IO_THREADS = 8


class Changes:
    """A generation counter on the event loop, bumped whenever something was stored; feeds
    wait for it to move (no lost wake-ups: they remember the generation they saw)."""

    def __init__(self) -> None:
        self.generation = 0
        self._moved = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def bump(self, _position: int = 0) -> None:
        """Safe from any thread."""
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        self.generation += 1
        self._moved.set()
        self._moved = asyncio.Event()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return once the generation is past `seen`, or after `timeout`."""
        if self.generation != seen:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._moved.wait(), timeout)


class Orchestrator:
    """Use as `async with Orchestrator(settings) as orchestrator:`.

    `live`: keep the read models up to date in the background (a server); otherwise a
    read first catches them up (a short-lived CLI process). `run_trees`: start a Runner;
    `resume`: with it, resume unfinished trees on start."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        live: bool = True,
        run_trees: bool = True,
        resume: bool = True,
        executors: ExecutorRegistry | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.live_mode = live
        self.run_trees = run_trees
        self.resume_on_start = resume
        self._executors = executors
        self._concurrency = concurrency
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="flowledger-io")
        self.ledger: Ledger
        self.engine: Engine
        self.projector: Projector
        self.read_model: ReadModel
        self.live: LiveProjector | None = None
        self.runner: Runner | None = None
        self.changes: Changes
        self.background: set[asyncio.Task[Any]] = set()
        self.callbacks = CallbackPolicy()  # where webhooks and A2A push may go (the server's)

    async def io(self, func: Callable[..., R], *args: Any) -> R:
        """Run a blocking store call on the I/O pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    async def lookup(self, func: Callable[..., R], *args: Any) -> R:
        """A read-model lookup of one row by key (a task, its owner). On SQLite it runs at
        once on the event loop: a WAL read never waits for the projector, and the hop to
        the pool and back costs more than the read (tasks.get served about 1.5x faster
        with p99 halved, bench/api.py). Anything else goes to the I/O pool."""
        if self.settings.database_url is None:
            return func(*args)
        return await self.io(func, *args)

    async def __aenter__(self) -> Orchestrator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self.changes = Changes()
        self.ledger = await self.io(Ledger, self.settings, self._executors)
        try:
            self.engine = await self.io(create_read_engine, self.settings)
            self.projector = Projector(self.ledger, self.engine)
            reads = self.engine
            if self.settings.database_url is not None:
                # Every read-model query is one statement on a connection of its own: in
                # autocommit PostgreSQL skips the BEGIN and ROLLBACK round trips around it.
                reads = reads.execution_options(isolation_level="AUTOCOMMIT")
            self.read_model = ReadModel(reads)
            self.ledger.on_stored.append(self.changes.bump)
            if self.live_mode:
                listen = self.settings.database_url
                self.live = LiveProjector(
                    self.projector,
                    poll_interval_s=self.settings.poll_interval_s,
                    listen_url=listen,
                )
                self.live.on_advance.append(self.changes.bump)
                self.live.start()
            if self.run_trees:
                self.runner = Runner(self.ledger, concurrency=self._concurrency)
                await self.runner.__aenter__()
                if self.resume_on_start:
                    await self.resume()
        except BaseException:
            await self.close()
            raise

    async def resume(self) -> int:
        """Resume the trees a stopped process left unfinished; return how many started."""
        assert self.runner is not None
        candidates = None
        try:
            await self.io(self.projector.catch_up)
            candidates = await self.io(self.read_model.resumable)
        except Exception as exc:  # recovery must not depend on the read models
            log.warning("read models unusable (%s); scanning the event log", exc)
        started = await self.runner.resume(candidates)
        if started:
            log.info("resumed %d unfinished tree(s)", len(started))
        return len(started)

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.runner is not None:
            await self.runner.close()
            self.runner = None
        if self.live is not None:
            await self.io(self.live.stop)
            self.live = None
        if hasattr(self, "engine"):
            await self.io(self.engine.dispose)
        if hasattr(self, "ledger"):
            await self.io(self.ledger.close)
        self._pool.shutdown(wait=False)

    def spawn(self, job: Any, name: str) -> asyncio.Task[Any]:
        """Keep a background job (a webhook delivery, say) until it ends or we close."""
        task = asyncio.create_task(job, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def fresh(self) -> bool:
        """Make sure the read models include this process's last write (read-your-writes);
        False if they cannot (the projector is failing): read the event store instead."""
        position = self.ledger.last_position
        if self.live is not None:
            if self.live.position >= position:
                return True
            return await self.live.caught_up(position, FRESH_TIMEOUT_S)
        try:
            await self.io(self.projector.catch_up)
        except Exception as exc:
            log.warning("read models unusable: %s", exc)
            return False
        return True

    def projector_lag(self) -> int | None:
        """Log entries not yet in the read models (None if unknown)."""
        try:
            return max(0, self.projector.head() - self.projector.position())
        except Exception:
            return None
