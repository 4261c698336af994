"""Cancelling a running tree: from this process (through the Runner) and from another one
(a second Ledger on the same store, which is what another process is)."""

from __future__ import annotations

from collections import Counter

import pytest

from application.ledger import Ledger
from application.runner import Runner
from domain import events as ev
from domain.status import TaskStatus, TreeStatus
from tests.integration.runner_support import (
    CANCELS,
    INTERRUPTED,
    SIGNALS,
    SavedEvents,
    arun,
    finish,
    of_type,
    run_by,
    statuses,
    task,
    until,
)
from tests.integration.support import assert_no_duplicates


def assert_recorded_once(ledger: Ledger, root: str) -> None:
    """No task completed twice, no (tree, version) stored twice."""
    completed = Counter(e.task_id for e in of_type(ledger.history(root), ev.Completed))
    assert [i for i, n in completed.items() if n > 1] == []
    assert_no_duplicates(ledger)


def test_cancelling_the_running_root_stops_its_executor(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("r", **run_by("test.block", started="r-started", gate="never")),
            task("c", "r", dependencies=["r"], **run_by("test.value")),
            task("c2", "r", dependencies=["c"], **run_by("test.value")),
        ]
    )

    async def body() -> None:
        async with Runner(ledger) as runner:
            job = await runner.start(tree.id)
            await until(SIGNALS["r-started"], "r to start")
            outcomes = await runner.cancel(["r", "nobody"], reason="stop it")
            final = await finish(job)
            await until(SIGNALS["cancel:r"], "the executor's cancel() to be called")
        assert [(o["task_id"], o["status"]) for o in outcomes] == [
            ("r", "cancelled"),
            ("nobody", "not_found"),
        ]
        assert outcomes[0]["cancelled_ids"] == ["r", "c", "c2"]
        assert final.status is TreeStatus.CANCELLED
        assert statuses(final) == dict.fromkeys(["r", "c", "c2"], TaskStatus.CANCELLED)
        assert final.tasks["r"].error == "stop it"
        assert CANCELS == ["r"]
        assert INTERRUPTED == ["r"]
        stored = ledger.load(tree.id)
        assert stored.status is TreeStatus.CANCELLED
        events = ledger.history("r")
        assert of_type(events, ev.Completed) == []
        assert [e.task_id for e in of_type(events, ev.Started)] == ["r"]
        assert_recorded_once(ledger, "r")

    arun(body)


def test_cancelling_a_grouping_root_cancels_the_whole_running_tree(ledger: Ledger) -> None:
    """The root completed at once (a grouping node); cancelling it cancels everything under
    it that has not ended, which is how a whole tree is cancelled (ADR 0007)."""
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.block", started="a-started", gate="never")),
            task("b", "root", dependencies=["a"], **run_by("test.value")),
            task("done", "root", priority=0, **run_by("test.value", value="early")),
        ]
    )

    async def body() -> None:
        async with Runner(ledger, concurrency=2) as runner:
            runner.listeners.append(SavedEvents())
            job = await runner.start(tree.id)
            await until(SIGNALS["a-started"], "a to start")
            await until(SIGNALS["saved:Completed:done"], "done to complete")
            (outcome,) = await runner.cancel(["root"])
            final = await finish(job)
            await until(SIGNALS["cancel:a"], "a's cancel() to be called")
        assert (outcome["status"], outcome["cancelled_ids"]) == ("cancelled", ["a", "b"])
        assert final.status is TreeStatus.CANCELLED
        assert statuses(final) == {
            "root": TaskStatus.COMPLETED,
            "a": TaskStatus.CANCELLED,
            "b": TaskStatus.CANCELLED,
            "done": TaskStatus.COMPLETED,
        }
        assert final.tasks["a"].error == "cancelled (with ancestor 'root')"
        assert CANCELS == ["a"]
        assert INTERRUPTED == ["a"]
        assert ledger.load(tree.id).status is TreeStatus.CANCELLED
        assert_recorded_once(ledger, "root")

    arun(body)


def test_cancelling_a_running_task_cancels_its_subtree_and_skips_dependents(
    ledger: Ledger,
) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.block", started="a-started", gate="never")),
            task("a1", "a", dependencies=["a"], **run_by("test.value")),
            task("b", "root", dependencies=["a"], **run_by("test.value")),
            task("e", "root", dependencies=["b"], **run_by("test.value")),
            task("z", "root", **run_by("test.value", value="independent")),
        ]
    )

    async def body() -> None:
        async with Runner(ledger, concurrency=2) as runner:
            job = await runner.start(tree.id)
            await until(SIGNALS["a-started"], "a to start")
            (outcome,) = await runner.cancel(["a"])
            final = await finish(job)
            await until(SIGNALS["cancel:a"], "a's cancel() to be called")
            # once the tree ended, cancelling goes through the store: a terminal task
            (again,) = await runner.cancel(["a"])
        assert (outcome["status"], outcome["cancelled_ids"]) == ("cancelled", ["a", "a1"])
        assert again["status"] == "not_cancelable"
        assert final.status is TreeStatus.CANCELLED
        assert statuses(final) == {
            "root": TaskStatus.COMPLETED,
            "a": TaskStatus.CANCELLED,
            "a1": TaskStatus.CANCELLED,
            "b": TaskStatus.SKIPPED,
            "e": TaskStatus.SKIPPED,
            "z": TaskStatus.COMPLETED,
        }
        assert final.tasks["a1"].error == "cancelled (with ancestor 'a')"
        assert final.tasks["b"].error == "required dependency 'a' cancelled"
        assert final.tasks["e"].error == "required dependency 'b' skipped"
        assert CANCELS == ["a"]
        assert INTERRUPTED == ["a"]
        assert of_type(ledger.history("root"), ev.Completed, "a") == []
        assert_recorded_once(ledger, "root")

    arun(body)


def test_a_cancel_from_another_process_is_noticed_by_the_watcher(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.block", started="a-started", gate="never")),
            task("b", "root", dependencies=["a"], **run_by("test.value")),
        ]
    )
    other = Ledger(ledger.settings)  # what another process would use

    async def body() -> None:
        async with Runner(ledger, poll_interval_s=0.05) as runner:
            job = await runner.start(tree.id)
            await until(SIGNALS["a-started"], "a to start")
            (outcome,) = other.cancel(["a"], reason="from the CLI")
            assert outcome["status"] == "cancelled"
            # the executor never returns by itself: only the watcher can end this run
            final = await finish(job, "the runner to notice the foreign cancel")
            await until(SIGNALS["cancel:a"], "a's cancel() to be called")
        assert final.status is TreeStatus.CANCELLED
        assert final.tasks["a"].status is TaskStatus.CANCELLED
        assert final.tasks["a"].error == "from the CLI"
        assert final.tasks["b"].status is TaskStatus.SKIPPED
        assert CANCELS == ["a"]
        assert INTERRUPTED == ["a"]
        assert ledger.load(tree.id).status is TreeStatus.CANCELLED
        assert of_type(ledger.history("root"), ev.Completed, "a") == []
        assert_recorded_once(ledger, "root")

    try:
        arun(body)
    finally:
        other.close()


def test_a_foreign_cancel_wins_over_a_result_arriving_after_it(ledger: Ledger) -> None:
    """The executor finishes right after another process cancelled its task: the runner's
    save of Completed loses the race, it reloads, and the stale result is dropped."""
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.block", started="a-started", gate="go", value=1)),
            task("b", "root", dependencies=["a"], **run_by("test.value")),
        ]
    )
    other = Ledger(ledger.settings)

    async def body() -> None:
        # a watcher that never looks in time: the save conflict alone must handle it
        async with Runner(ledger, poll_interval_s=3600) as runner:
            job = await runner.start(tree.id)
            await until(SIGNALS["a-started"], "a to start")
            other.cancel(["a"])
            SIGNALS["go"].set()
            final = await finish(job)
        assert final.status is TreeStatus.CANCELLED
        assert statuses(final) == {
            "root": TaskStatus.COMPLETED,
            "a": TaskStatus.CANCELLED,
            "b": TaskStatus.SKIPPED,
        }
        assert of_type(ledger.history("root"), ev.Completed, "a") == []
        assert ledger.load(tree.id).tasks["a"].status is TaskStatus.CANCELLED
        assert_recorded_once(ledger, "root")

    try:
        arun(body)
    finally:
        other.close()


@pytest.mark.parametrize("poll_interval_s", [0.05, 3600])
def test_a_foreign_cancel_of_a_pending_task_loses_nothing(
    ledger: Ledger, poll_interval_s: float
) -> None:
    """Another process cancels a task that has not started while `a` runs; a's result,
    arriving after the foreign write (noticed by the watcher or by a lost save), is kept."""
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.block", started="a-started", gate="go", value=7)),
            task("b", "root", dependencies=["a"], **run_by("test.value")),
            task("c", "root", dependencies=["b"], **run_by("test.value")),
        ]
    )
    other = Ledger(ledger.settings)

    async def body() -> None:
        async with Runner(ledger, poll_interval_s=poll_interval_s) as runner:
            job = await runner.start(tree.id)
            await until(SIGNALS["a-started"], "a to start")
            (outcome,) = other.cancel(["b"])
            assert outcome["cancelled_ids"] == ["b"]
            SIGNALS["go"].set()
            final = await finish(job)
        assert final.status is TreeStatus.CANCELLED
        assert statuses(final) == {
            "root": TaskStatus.COMPLETED,
            "a": TaskStatus.COMPLETED,
            "b": TaskStatus.CANCELLED,
            "c": TaskStatus.SKIPPED,
        }
        assert final.tasks["a"].result == 7
        stored = ledger.load(tree.id)
        assert statuses(stored) == statuses(final)
        events = ledger.history("root")
        assert len(of_type(events, ev.Completed, "a")) == 1
        assert [e.task_id for e in of_type(events, ev.Started)] == ["root", "a"]
        assert CANCELS == []
        assert INTERRUPTED == []
        assert_recorded_once(ledger, "root")

    try:
        arun(body)
    finally:
        other.close()


@pytest.mark.parametrize("where", ["this process", "another process"])
def test_cancelling_a_task_that_waits_for_its_retry(ledger: Ledger, where: str) -> None:
    """The retry is an hour away: the cancel must end the tree without waiting for it."""
    retry = {"retry": {"max_attempts": 3, "backoff_s": 3600, "max_backoff_s": 3600}}
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", params=retry, **run_by("test.flaky", fail_times=5)),
            task("b", "root", dependencies=["a"], **run_by("test.value")),
        ]
    )
    other = Ledger(ledger.settings)

    async def body() -> None:
        async with Runner(ledger, poll_interval_s=0.05) as runner:
            runner.listeners.append(SavedEvents())
            job = await runner.start(tree.id)
            await until(SIGNALS["saved:AttemptFailed:a"], "a's first attempt to fail")
            if where == "this process":
                (outcome,) = await runner.cancel(["a"])
            else:
                (outcome,) = other.cancel(["a"])
            assert outcome["status"] == "cancelled"
            final = await finish(job, "the run to end without waiting for the retry")
        assert final.status is TreeStatus.CANCELLED
        assert statuses(final) == {
            "root": TaskStatus.COMPLETED,
            "a": TaskStatus.CANCELLED,
            "b": TaskStatus.SKIPPED,
        }
        events = ledger.history("root")
        assert [(e.task_id, e.attempt) for e in of_type(events, ev.Started)] == [
            ("root", 1),
            ("a", 1),
        ]
        (failed,) = of_type(events, ev.AttemptFailed)
        assert failed.retry_in_s == 3600
        assert_recorded_once(ledger, "root")

    try:
        arun(body)
    finally:
        other.close()
