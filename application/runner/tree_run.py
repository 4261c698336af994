"""TreeRun: the one writer of one tree while it runs.

Each step decides in memory (apply executor outcomes, commands, start ready tasks), saves
the step's events in ONE transaction, and only then acts: executors are called after
their Started is stored, retry timers set after their AttemptFailed is stored. A save
that loses a race (another process appended, e.g. a cancel) reloads the tree and decides
again from the same outcomes, so nothing is lost and nothing is recorded twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import RecordConflictError

from application.executors.context import TaskContext
from application.logcontext import for_task
from application.runner.attempt import (
    Attempt,
    AttemptError,
    Done,
    Outcome,
    Progress,
    RetryDue,
    describe,
)
from application.runner.steps import Command, Inflight, Launch, Running, Step
from application.secrets import scrub
from domain.errors import DomainError, InvalidSpec, UnknownExecutor
from domain.events import TreeEvent
from domain.inputs import dependency_results, resolve_inputs
from domain.run_options import RunOptions, run_options
from domain.state import Task, utcnow
from domain.status import TaskStatus
from domain.tree import TaskTree

if TYPE_CHECKING:
    from application.runner.runner import Runner

log = logging.getLogger("flowledger.runner")
R = TypeVar("R")


class RunStalled(RuntimeError):
    """The tree is not finished yet nothing can run: a bug, reported rather than hung."""


class TreeRun:
    def __init__(self, runner: Runner, tree: TaskTree) -> None:
        self.runner = runner
        self.tree = tree
        self.inbox: list[Outcome] = []
        self.commands: list[Command] = []
        self.running: dict[str, Running] = {}
        self.waiting_retry: dict[str, asyncio.TimerHandle] = {}
        self.due: dict[str, int] = {}  # in-progress task id -> the attempt to start next
        self.granted = 0  # slots the pool handed to this run while it waited
        self.reserved = 0  # slots freed by this run's own outcomes in the current step
        self.reload_requested = False
        self.inflight: Inflight | None = None
        self._wake = asyncio.Event()
        self._options: dict[str, RunOptions] = {}
        self._interrupted: dict[str, int] = {}  # in progress when the run began: task -> attempt

    @property
    def id(self) -> UUID:
        return self.tree.id

    # -- signals from outside the loop ----------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def deliver(self, outcome: Outcome) -> None:
        self.inbox.append(outcome)
        self._wake.set()

    def slot_granted(self) -> None:
        self.granted += 1
        self._wake.set()

    def foreign_change(self, version: int) -> None:
        """Another process appended `version` to this tree: reload before deciding."""
        if version > self.tree.version:
            self.reload_requested = True
            self._wake.set()

    def submit(self, apply: Callable[[TaskTree], R]) -> asyncio.Future[R]:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.commands.append(Command(apply, future))
        self._wake.set()
        return future

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> TaskTree:
        """Steps are pipelined: while one step's events are being stored, the next step is
        decided in memory; its executors start only once its own save has succeeded."""
        try:
            self.tree.request_run()
            self._recover()
            while True:
                stored = self.inflight is not None and self.inflight.future.done()
                if stored and not await self._settle():
                    continue
                if self.reload_requested and self.inflight is not None and not stored:
                    # A change by another process: reload once the save in flight is done
                    # (waiting for it; deciding on would spin without yielding to the loop
                    # that completes the save).
                    await asyncio.wait([self.inflight.future])
                    continue
                if self.reload_requested and self.inflight is None:
                    await self._reload()
                step = self._decide()
                events = self.tree.collect_events()
                if events:
                    if self.inflight is not None and not await self._settle(also=step):
                        continue
                    self._send(step, events)
                elif self.inflight is None:
                    self._act(step)  # nothing to store (only commands that were refused)
                else:
                    self.inflight.steps.append(step)
                if self.tree.is_terminal and self._quiet() and self.inflight is None:
                    return self.tree
                if self._quiet() and not (self.inflight and self.inflight.future.done()):
                    self._check_not_stalled()
                    await self._wake.wait()
                self._wake.clear()
        finally:
            self._stop()

    def _quiet(self) -> bool:
        return not (self.inbox or self.commands or self.reload_requested)

    def _stop(self) -> None:
        for running in self.running.values():
            running.job.cancel()
        self.running.clear()
        for handle in self.waiting_retry.values():
            handle.cancel()
        self.waiting_retry.clear()
        self.runner.slots.forget(self)
        unacted = self.inflight.steps if self.inflight else []
        held = self.granted + self.reserved + sum(s.freed + len(s.launches) for s in unacted)
        if held:
            self.runner.slots.release(held)
            self.granted = self.reserved = 0
        for command in self.commands:
            if not command.future.done():
                command.future.cancel()

    def _check_not_stalled(self) -> None:
        if self.inflight or self.running or self.waiting_retry or self.due:
            return
        if self.tree.next_ready() is not None:
            return
        if self.tree.is_terminal:
            return
        stuck = [t.id for t in self.tree.tasks.values() if t.status is TaskStatus.PENDING][:10]
        raise RunStalled(f"tree {self.id} cannot make progress; pending: {stuck}")

    def _recover(self) -> None:
        """Tasks left in progress by a process that died: run again, or fail if opted out;
        a task that was waiting for a retry keeps waiting for what is left of its delay."""
        self._interrupted = {
            t.id: t.attempts
            for t in self.tree.tasks.values()
            if t.status is TaskStatus.IN_PROGRESS and t.retry_at is None
        }
        self._decide_recovery()

    def _decide_recovery(self) -> None:
        """Apply (again, after a reload may have dropped it unsaved) what the run decided
        at its start: the run is requested; interrupted tasks rerun or fail."""
        self.tree.request_run()
        for task_id, attempt in self._interrupted.items():
            task = self.tree.tasks.get(task_id)
            if task is None or task_id in self.running or not self._current(task_id, attempt):
                continue
            if self.options(task).on_interrupt == "fail":
                self.due.pop(task_id, None)
                self.tree.fail(
                    task_id,
                    f"Interrupted: the process running attempt {attempt} stopped "
                    'before it finished (on_interrupt is "fail")',
                )
            else:
                self.due.setdefault(task_id, attempt + 1)
        self._arm_pending_retries()

    def _arm_pending_retries(self) -> None:
        """Timers for stored retries nobody waits for (after a restart or a reload)."""
        loop = asyncio.get_running_loop()
        now = utcnow()
        for task in self.tree.tasks.values():
            if (
                task.status is TaskStatus.IN_PROGRESS
                and task.retry_at is not None
                and task.id not in self.waiting_retry
                and task.id not in self.running
            ):
                delay = max(0.0, (task.retry_at - now).total_seconds())
                self.waiting_retry[task.id] = loop.call_later(
                    delay, self.deliver, RetryDue(task.id, task.attempts)
                )

    def options(self, task: Task) -> RunOptions:
        found = self._options.get(task.id)
        if found is None:
            found = self._options[task.id] = run_options(task.params, task.schemas)
        return found

    # -- deciding ---------------------------------------------------------------------------
    def _decide(self) -> Step:
        step = Step(outcomes=self.inbox, commands=self.commands)
        self.inbox, self.commands = [], []
        progress: dict[str, Progress] = {}  # the latest report per task is enough
        for outcome in step.outcomes:
            if isinstance(outcome, Progress):
                progress[outcome.task_id] = outcome
                continue
            if outcome.task_id in progress:  # it reported progress before it ended
                self._record_progress(progress.pop(outcome.task_id))
            self._apply(outcome, step)
        for item in progress.values():
            self._record_progress(item)
        for command in step.commands:
            command.error = None  # (a command may come back after a lost race)
            try:
                command.result = command.apply(self.tree)
            except DomainError as exc:
                command.error = exc
        self._start_ready(step)
        # Slots this step freed but did not use go back to the pool once its events are
        # stored, so no other tree starts a task before this one's end is on record.
        step.freed, self.granted, self.reserved = self.granted + self.reserved, 0, 0
        return step

    def _record_progress(self, item: Progress) -> None:
        if self._current(item.task_id, item.attempt):
            try:
                self.tree.record_progress(item.task_id, item.fraction, item.message)
            except DomainError as exc:
                log.warning("progress of %s ignored: %s", item.task_id, exc)

    def _current(self, task_id: str, attempt: int) -> bool:
        task = self.tree.tasks.get(task_id)
        return (
            task is not None and task.status is TaskStatus.IN_PROGRESS and task.attempts == attempt
        )

    def _apply(self, outcome: Outcome, step: Step) -> None:
        task_id, attempt = outcome.task_id, outcome.attempt
        if isinstance(outcome, RetryDue):
            self.waiting_retry.pop(task_id, None)
            if self._current(task_id, attempt):
                self.due[task_id] = attempt + 1
            return
        running = self.running.get(task_id)
        if running is not None and running.attempt == attempt:
            del self.running[task_id]
            if running.holds_slot:  # the slot passes to this run: this step may reuse it
                running.holds_slot = False
                self.reserved += 1
        if not self._current(task_id, attempt):
            return  # cancelled or re-decided meanwhile: this outcome no longer counts
        if isinstance(outcome, Done):
            try:
                self.tree.complete(task_id, outcome.result)
            except InvalidSpec as exc:
                self.tree.fail(task_id, f"InvalidResult: {exc.message}")
            return
        assert isinstance(outcome, AttemptError)
        retry = self.options(self.tree.tasks[task_id]).retry
        if outcome.retryable and retry.allows_another(attempt):
            delay = retry.delay_after(attempt)
            self.tree.fail_attempt(task_id, outcome.error, delay)
            step.retries.append((task_id, attempt, delay))
        else:
            self.tree.fail(task_id, outcome.error)

    def _start_ready(self, step: Step) -> None:
        """Start ready (and due) tasks, most urgent first, while slots last."""
        for task_id in [i for i in self.due if not self._current(i, self.due[i] - 1)]:
            del self.due[task_id]  # finished or cancelled since it fell due
        due = sorted(self.due, key=lambda i: (self.tree.tasks[i].priority, self.tree.tasks[i].seq))
        while True:
            candidate = self.tree.next_ready()
            if due:
                first = self.tree.tasks[due[0]]
                if candidate is None or (first.priority, first.seq) < (
                    candidate.priority,
                    candidate.seq,
                ):
                    candidate = first
            if candidate is None:
                break
            options = self.options(candidate)
            attempt = self.due.get(candidate.id, candidate.attempts + 1)
            inputs = resolve_inputs(candidate, self.tree.tasks)
            if options.executor_id is None:  # a grouping node: done at once
                self._start(candidate.id, attempt, inputs, due)
                self.tree.complete(candidate.id, None)
                continue
            try:
                entry = self.runner.executor_entry(options.executor_id)
            except UnknownExecutor as exc:
                self._start(candidate.id, attempt, inputs, due)
                self.tree.fail(candidate.id, f"UnknownExecutor: {exc.message}")
                continue
            if not self._take_slot(candidate.priority):
                self.runner.slots.wait(candidate.priority, self)
                break
            self._start(candidate.id, attempt, inputs, due)
            step.launches.append(Launch(candidate, attempt, inputs, options, entry))

    def _start(self, task_id: str, attempt: int, inputs: dict[str, Any], due: list[str]) -> None:
        self.tree.start(task_id, attempt, inputs)
        if self.due.pop(task_id, None) is not None:
            due.remove(task_id)

    def _take_slot(self, priority: int) -> bool:
        """A slot for a task of `priority`: one the pool handed us; else one our own outcomes
        freed, unless a tree as urgent waits (it gets it once this step is stored: trees
        take turns); else a free one."""
        if self.granted:
            self.granted -= 1
            return True
        waiting = self.runner.slots.most_urgent_waiting(besides=self)
        if self.reserved and (waiting is None or priority < waiting):
            self.reserved -= 1
            return True
        return self.runner.slots.try_take()

    # -- saving -----------------------------------------------------------------------------
    def _send(self, step: Step, events: list[TreeEvent]) -> None:
        saved_from = self.tree.version - len(events)
        snapshot = self.runner.ledger.snapshot_due(self.tree, saved_from)
        future = asyncio.ensure_future(
            self.runner.store(self.runner.ledger.store_step, events, snapshot)
        )
        future.add_done_callback(lambda _: self._wake.set())
        self.inflight = Inflight(future, [step], events)

    async def _settle(self, also: Step | None = None) -> bool:
        """Wait for the step in flight; act on it if stored. If it lost a race, undo it (and
        `also`, decided on top of it), reload, and say so: the caller decides again."""
        inflight = self.inflight
        assert inflight is not None
        try:
            await inflight.future
        except RecordConflictError:
            self.inflight = None
            log.info("tree %s changed in another process; reloading", self.id)
            for step in ([also] if also else []) + inflight.steps[::-1]:
                self._undo(step)
            await self._reload()
            return False
        except BaseException:  # stopped, or the store failed: _stop gives back their slots
            if also is not None:
                inflight.steps.append(also)
            raise
        self.inflight = None
        self._publish(inflight.events)
        for step in inflight.steps:
            self._act(step)
        return True

    def _undo(self, step: Step) -> None:
        """The step was not stored: keep its slots and its inputs for the next."""
        self.reserved += len(step.launches) + step.freed
        step.freed = 0
        self.inbox[:0] = step.outcomes
        self.commands[:0] = step.commands

    def _load_removed_too(self) -> TaskTree:
        return self.runner.ledger.load(self.id, removed_too=True)

    async def _reload(self) -> None:
        self.reload_requested = False
        # removed_too: another process may have removed the whole tree (all pending, so
        # nothing of it runs here); the empty tree is terminal, and the run ends
        self.tree = await self.runner.store(self._load_removed_too)
        self._options.clear()
        self.due = {
            i: a
            for i, a in self.due.items()
            if self.tree.tasks.get(i) is not None
            and self.tree.tasks[i].status is TaskStatus.IN_PROGRESS
        }
        self._cancel_stale()
        answered = {o.task_id for o in self.inbox if isinstance(o, Done | AttemptError | RetryDue)}
        for task in self.tree.tasks.values():  # in progress, yet nobody runs or waits for it
            if (
                task.status is TaskStatus.IN_PROGRESS
                and task.retry_at is None
                and task.id not in self.running
                and task.id not in self.waiting_retry
                and task.id not in answered
                and task.id not in self._interrupted
            ):
                self.due.setdefault(task.id, task.attempts + 1)
        self._decide_recovery()

    def _cancel_stale(self) -> None:
        """Stop executors whose attempt no longer counts (cancelled, or re-decided)."""
        for task_id, running in list(self.running.items()):
            if not self._current(task_id, running.attempt):
                running.job.cancel()
                del self.running[task_id]
        for task_id, handle in list(self.waiting_retry.items()):
            task = self.tree.tasks.get(task_id)
            if task is None or task.status is not TaskStatus.IN_PROGRESS:
                handle.cancel()
                del self.waiting_retry[task_id]

    def _publish(self, events: list[TreeEvent]) -> None:
        if events:
            self.runner.publish(self.tree, events)

    # -- acting -----------------------------------------------------------------------------
    def _act(self, step: Step) -> None:
        if step.freed:
            self.runner.slots.release(step.freed)
            step.freed = 0
        for command in step.commands:
            if not command.future.done():
                if command.error is not None:
                    command.future.set_exception(command.error)
                else:
                    command.future.set_result(command.result)
        self._cancel_stale()
        loop = asyncio.get_running_loop()
        for task_id, attempt, delay in step.retries:
            self.waiting_retry[task_id] = loop.call_later(
                delay, self.deliver, RetryDue(task_id, attempt)
            )
        for launch in step.launches:
            self._launch(launch)

    def _launch(self, launch: Launch) -> None:
        task, attempt, inputs, options, entry = launch
        task_id = task.id

        def report(fraction: float, message: str | None = None) -> None:
            if message is not None:
                message = scrub(message, attempt_run.revealed)
            outcome = Progress(task_id, attempt, float(fraction), message)
            self.runner.call_soon(self.deliver, outcome)

        context = TaskContext(
            task_id=task_id,
            tree_id=self.id,
            name=task.name,
            attempt=attempt,
            params=dict(task.params),
            results_of_dependencies=lambda: dependency_results(task, self.tree.tasks),
            report=report,
        )
        attempt_run = Attempt(
            entry, context, inputs, options.timeout_s, self.deliver, self.runner.secrets
        )
        job = asyncio.create_task(
            attempt_run.run(), name=f"flowledger:{task_id}#{attempt}", context=for_task(task_id)
        )
        running = self.running[task_id] = Running(attempt, job)
        job.add_done_callback(lambda job: self._attempt_ended(job, running, task_id))

    def _give_back(self, running: Running) -> None:
        if running.holds_slot:
            running.holds_slot = False
            self.runner.slots.release()

    def _attempt_ended(self, job: asyncio.Task[None], running: Running, task_id: str) -> None:
        self._give_back(running)  # if its outcome has not already
        attempt = running.attempt
        if job.cancelled():
            if self.running.get(task_id) is running:  # cancelled, yet nobody asked it to stop
                del self.running[task_id]
                self.deliver(AttemptError(task_id, attempt, "CancelledError", retryable=False))
            return
        exc = job.exception()
        if exc is not None:  # the wrapper itself broke (e.g. SystemExit in an executor)
            log.error("attempt %s of %s crashed: %s", attempt, task_id, describe(exc))
            self.deliver(AttemptError(task_id, attempt, describe(exc), retryable=False))
