"""Recovery: a tree whose process died mid-task is resumed; the task runs again with the
next attempt number, or fails when it opted out with on_interrupt = "fail"."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from application.ledger import Ledger
from application.runner import Runner, TreeBusy
from domain import events as ev
from domain.status import TaskStatus, TreeStatus
from tests.integration.runner_support import (
    SIGNALS,
    arun,
    calls_of,
    finish,
    of_type,
    run_by,
    statuses,
    task,
    task_story,
    until,
)
from tests.integration.support import assert_no_duplicates


def die_while_running(ledger: Ledger, tree_id: UUID, task_id: str) -> None:
    """What a process that crashed leaves behind: run requested, the task Started (attempt
    1), and nothing after."""
    tree = ledger.load(tree_id)
    tree.request_run()
    tree.start(task_id, 1, {})
    ledger.save_trees(tree)


def interrupted_tree(ledger: Ledger, **params: Any) -> UUID:
    tree = ledger.create_tree(
        [
            task("root", **run_by("test.value", value="again"), params=params),
            task("after", "root", dependencies=["root"], **run_by("test.value", value="next")),
        ]
    )
    untouched = ledger.create_tree([task("idle", **run_by("test.value"))])  # never asked to run
    assert untouched.id != tree.id
    die_while_running(ledger, tree.id, "root")
    return tree.id


def test_resume_runs_an_interrupted_task_again_with_the_next_attempt(ledger: Ledger) -> None:
    tree_id = interrupted_tree(ledger)

    async def body() -> None:
        async with Runner(ledger) as runner:
            jobs = await runner.resume()
            assert list(jobs) == [tree_id]  # only the tree that was asked to run
            final = await finish(jobs[tree_id])
            assert await runner.resume() == {}  # nothing left to resume
        assert final.status is TreeStatus.COMPLETED
        root = final.tasks["root"]
        assert (root.status, root.result, root.attempts) == (TaskStatus.COMPLETED, "again", 2)
        assert [c.attempt for c in calls_of("root")] == [2]  # context.attempt
        assert final.tasks["after"].result == "next"
        events = ledger.history("root")
        assert task_story(events, "root") == [("Started", 1), ("Started", 2), ("Completed",)]
        (_, second) = of_type(events, ev.Started, "root")
        assert second.inputs == {"value": "again"}  # resolved again, not the crash's {}
        assert len(of_type(events, ev.RunRequested)) == 1
        assert calls_of("idle") == []
        assert_no_duplicates(ledger)

    arun(body)


def test_resume_fails_an_interrupted_task_that_must_not_repeat(ledger: Ledger) -> None:
    tree_id = interrupted_tree(ledger, on_interrupt="fail")

    async def body() -> None:
        async with Runner(ledger) as runner:
            jobs = await runner.resume()
            assert list(jobs) == [tree_id]
            final = await finish(jobs[tree_id])
        assert final.status is TreeStatus.FAILED
        assert statuses(final) == {"root": TaskStatus.FAILED, "after": TaskStatus.SKIPPED}
        error = final.tasks["root"].error or ""
        assert "on_interrupt" in error
        assert "attempt 1" in error
        assert calls_of("root") == []
        assert calls_of("after") == []
        events = ledger.history("root")
        assert task_story(events, "root") == [("Started", 1), ("Failed", 1)]
        assert ledger.load(tree_id).status is TreeStatus.FAILED
        assert_no_duplicates(ledger)

    arun(body)


def test_a_resumed_tree_runs_once_even_if_started_again(ledger: Ledger) -> None:
    tree_id = interrupted_tree(ledger)

    async def body() -> None:
        async with Runner(ledger) as runner:
            jobs = await runner.resume()
            again = await runner.start(tree_id)  # the same run, not a second one
            assert again is jobs[tree_id]
            final = await finish(again)
        assert final.status is TreeStatus.COMPLETED
        assert [c.attempt for c in calls_of("root")] == [2]
        assert_no_duplicates(ledger)

    arun(body)


def test_a_tree_run_by_another_process_is_not_resumed_twice(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [task("root", **run_by("test.block", started="started", gate="go", value=1))]
    )
    other = Ledger(ledger.settings)  # another process, with its own tree locks

    async def body() -> None:
        async with Runner(ledger) as runner, Runner(other) as second:
            job = await runner.start(tree.id)
            await until(SIGNALS["started"], "the task to start")
            assert await second.resume() == {}  # busy elsewhere: left alone
            with pytest.raises(TreeBusy):
                await second.start(tree.id)
            SIGNALS["go"].set()
            final = await finish(job)
            assert await second.resume() == {}  # finished: nothing to resume
        assert final.status is TreeStatus.COMPLETED
        assert [c.attempt for c in calls_of("root")] == [1]
        assert_no_duplicates(ledger)

    try:
        arun(body)
    finally:
        other.close()


def test_a_run_stopped_by_closing_the_runner_resumes_in_the_next_one(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.block", started="a-started", gate="go", value=1)),
            task("b", "root", dependencies=["a"], **run_by("test.value", value=2)),
        ]
    )

    async def body() -> None:
        async with Runner(ledger) as first:
            job = await first.start(tree.id)
            await until(SIGNALS["a-started"], "a to start")
        # leaving the block stopped the run: a is left in progress, as after a crash
        assert job.cancelled()
        await until(SIGNALS["cancel:a"], "the stopped executor's cancel() to be called")
        left = ledger.load(tree.id)
        assert (left.tasks["a"].status, left.tasks["a"].attempts) == (TaskStatus.IN_PROGRESS, 1)
        assert left.status is TreeStatus.IN_PROGRESS

        SIGNALS["go"].set()
        async with Runner(ledger) as second:
            jobs = await second.resume()
            assert list(jobs) == [tree.id]
            final = await finish(jobs[tree.id])
        assert final.status is TreeStatus.COMPLETED
        assert [c.attempt for c in calls_of("a")] == [1, 2]
        assert task_story(ledger.history("root"), "a") == [
            ("Started", 1),
            ("Started", 2),
            ("Completed",),
        ]
        assert final.tasks["b"].result == 2
        assert_no_duplicates(ledger)

    arun(body)
