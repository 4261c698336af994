"""The Runner: runs trees in this process, under one concurrency limit, and notices
changes other processes write to them (a cancel from the CLI or another server).

Store calls run on one worker thread, so the event loop (and every executor) keeps going
while a step commits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from uuid import UUID

from application.executors.registry import ExecutorEntry
from application.ledger import Ledger, cancel_report
from application.logcontext import TREE_ID
from application.runner.locks import TreeLocks, tree_locks
from application.runner.slots import Slots
from application.runner.tree_run import TreeRun
from application.secrets import SecretSource, from_environment
from domain import events as ev
from domain.errors import Conflict, NotCancelable, TaskNotFound
from domain.events import TreeEvent
from domain.tree import TaskTree

log = logging.getLogger("flowledger.runner")
R = TypeVar("R")
Listener = Callable[[TaskTree, list[TreeEvent]], None]

# Events a run never writes itself: seeing one on a running tree means another process
# changed it. (Skipped comes with Cancelled or with an update's cascade.)
FOREIGN = (ev.Cancelled, ev.TaskUpdated, ev.TaskRemoved, ev.DependencyAdded, ev.Copied)
SCAN_PAGE = 10_000


class TreeBusy(Conflict):
    code = "tree_busy"


class Runner:
    """Use as `async with Runner(ledger) as runner:`; then run, start, resume, cancel."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        concurrency: int | None = None,
        poll_interval_s: float | None = None,
        locks: TreeLocks | None = None,
        secrets: SecretSource = from_environment,
    ) -> None:
        self.ledger = ledger
        self.secrets = secrets  # where attempts look up the secrets their inputs name
        settings = ledger.settings
        self.slots = Slots(concurrency or settings.concurrency)
        self.poll_interval_s = poll_interval_s or settings.poll_interval_s
        self.locks = locks
        self.runs: dict[UUID, TreeRun] = {}
        self.jobs: dict[UUID, asyncio.Task[TaskTree]] = {}
        self.listeners: list[Listener] = []
        self._io: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._watcher: asyncio.Task[None] | None = None
        self._cursor = 0
        self._topics = [ledger.mapper.topic_of(t) for t in FOREIGN]  # type: ignore[attr-defined]

    # -- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Runner:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="flowledger-store")
        if self.locks is None:
            self.locks = await self.store(tree_locks, self.ledger.settings)
        self._cursor = await self.store(self._max_notification_id)
        self._watcher = asyncio.create_task(self._watch(), name="flowledger:watch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every run (their in-progress tasks resume in the next process)."""
        jobs = [*self.jobs.values(), *([self._watcher] if self._watcher else [])]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        self._watcher = None
        if self.locks is not None:
            await self.store(self.locks.close)
        if self._io is not None:
            self._io.shutdown(wait=True)
            self._io = None

    # -- services for TreeRun -------------------------------------------------------------
    async def store(self, func: Callable[..., R], *args: Any) -> R:
        """Call the (blocking) store on the store thread."""
        assert self._io is not None, "use the Runner as an async context manager"
        return await asyncio.get_running_loop().run_in_executor(self._io, func, *args)

    def call_soon(self, func: Callable[..., Any], *args: Any) -> None:
        """Call `func` now on the loop's thread, else schedule it there (an executor running
        in a worker thread may report progress)."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            func(*args)
        else:
            self._loop.call_soon_threadsafe(func, *args)

    def executor_entry(self, executor_id: str) -> ExecutorEntry:
        return self.ledger.executors.usable(executor_id, self.ledger.settings.disabled_executors)

    def publish(self, tree: TaskTree, events: list[TreeEvent]) -> None:
        for listener in self.listeners:
            try:
                listener(tree, events)
            except Exception:
                log.exception("a run listener failed")

    # -- running ----------------------------------------------------------------------------
    async def start(self, tree_id: UUID) -> asyncio.Task[TaskTree]:
        """Run the tree in the background; TreeBusy if another process is running it."""
        if tree_id in self.jobs:
            return self.jobs[tree_id]
        assert self.locks is not None
        if not await self.store(self.locks.acquire, tree_id):
            raise TreeBusy(f"tree {tree_id} is being run by another process", ids=(str(tree_id),))
        try:
            tree = await self.store(self.ledger.load, tree_id)
        except BaseException:
            await self.store(self.locks.release, tree_id)
            raise
        run = TreeRun(self, tree)
        self.runs[tree_id] = run
        job = asyncio.create_task(self._run(run), name=f"flowledger:tree:{tree_id}")
        self.jobs[tree_id] = job
        return job

    async def _run(self, run: TreeRun) -> TaskTree:
        TREE_ID.set(str(run.id))  # this job's own context: its log lines name the tree
        try:
            return await run.run()
        finally:
            self.runs.pop(run.id, None)
            self.jobs.pop(run.id, None)
            assert self.locks is not None
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store(self.locks.release, run.id))

    async def run(self, tree_id: UUID) -> TaskTree:
        """Run the tree to its end and return it."""
        return await (await self.start(tree_id))

    async def resume(
        self, candidates: Iterable[UUID] | None = None
    ) -> dict[UUID, asyncio.Task[TaskTree]]:
        """Start every tree that was asked to run and has not finished, unless another
        process runs it; returns the runs started, by tree id. `candidates` (say, from the
        read models) spares the scan of the whole log; each is checked against its events."""
        started: dict[UUID, asyncio.Task[TaskTree]] = {}
        wanted = (
            await self.store(self.unfinished)
            if candidates is None
            else await self.store(self.still_unfinished, list(candidates))
        )
        for tree_id in wanted:
            if tree_id in self.jobs:
                continue
            try:
                started[tree_id] = await self.start(tree_id)
            except TreeBusy:
                log.info("tree %s is being run by another process", tree_id)
            except TaskNotFound:  # removed (all pending) since it was found unfinished
                log.info("tree %s was removed before its run resumed", tree_id)
        return started

    def unfinished(self) -> list[UUID]:
        """Trees with a run requested that are not terminal (scans the event log)."""
        recorder: Any = self.ledger.recorder
        topic = self.ledger.mapper.topic_of(ev.RunRequested)  # type: ignore[attr-defined]
        candidates: dict[UUID, None] = {}
        start = 1
        while True:
            page = recorder.select_notifications(start, SCAN_PAGE, topics=[topic])
            for notification in page:
                candidates[notification.originator_id] = None
            if len(page) < SCAN_PAGE:
                break
            start = page[-1].id + 1
        return self.still_unfinished(list(candidates))

    def still_unfinished(self, candidates: list[UUID]) -> list[UUID]:
        """The candidates whose run was requested and that are not terminal, per the store."""
        found = []
        for tree_id in candidates:
            with contextlib.suppress(TaskNotFound):
                tree = self.ledger.load(tree_id)
                if tree.state.run_requested and not tree.is_terminal:
                    found.append(tree_id)
        return found

    async def cancel(
        self, task_ids: Iterable[str], reason: str = "cancelled"
    ) -> list[dict[str, Any]]:
        """Cancel tasks (and their subtrees), through the run when this process runs their
        tree, through the store otherwise. Reports per id like Ledger.cancel."""
        outcomes: list[dict[str, Any]] = []
        for task_id in dict.fromkeys(task_ids):
            try:
                tree_id = await self.store(self.ledger.tree_id_of, task_id)
            except TaskNotFound as exc:
                outcomes.append(cancel_report(task_id, exc))
                continue
            run = self.runs.get(tree_id)
            if run is None:
                outcomes += await self.store(self.ledger.cancel, [task_id], reason)
                continue

            def cancel(tree: TaskTree, task_id: str = task_id) -> list[str]:
                return tree.cancel(task_id, reason)

            try:
                cancelled = await run.submit(cancel)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # our caller is being cancelled
                # the run stopped before it took the command: write it to the store
                outcomes += await self.store(self.ledger.cancel, [task_id], reason)
                continue
            except NotCancelable as exc:
                outcomes.append(cancel_report(task_id, exc))
            else:
                outcomes.append(cancel_report(task_id, cancelled))
        return outcomes

    # -- noticing other processes ---------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            if not self.runs:
                continue
            try:
                changes = await self.store(self._foreign_changes)
            except Exception:
                log.exception("cannot read the event log for changes by other processes")
                continue
            for tree_id, version in changes.items():
                run = self.runs.get(tree_id)
                if run is not None:
                    run.foreign_change(version)

    def _max_notification_id(self) -> int:
        recorder: Any = self.ledger.recorder
        return int(recorder.max_notification_id() or 0)

    def _foreign_changes(self) -> dict[UUID, int]:
        recorder: Any = self.ledger.recorder
        last = self._max_notification_id()
        changes: dict[UUID, int] = {}
        if last > self._cursor:
            for n in recorder.select_notifications(
                self._cursor + 1, last - self._cursor, stop=last, topics=self._topics
            ):
                changes[n.originator_id] = max(
                    changes.get(n.originator_id, 0), n.originator_version
                )
            self._cursor = last
        return changes
