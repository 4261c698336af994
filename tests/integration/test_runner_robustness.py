"""What a review found, kept as regressions: slots given back when a run dies mid-save, the
run request and recovery decisions kept across a lost first save, executors that raise
CancelledError or SystemExit themselves, and a retry that was waiting when the process
stopped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from application.executors import executor
from application.ledger import Ledger
from application.runner import Runner
from domain import events as ev
from domain.specs import parse_changes
from domain.status import TaskStatus, TreeStatus
from tests.integration.runner_support import (
    arun,
    calls_of,
    finish,
    of_type,
    run_by,
    task,
    task_story,
)


@executor("test.self_cancel", description="Raises CancelledError though nobody cancelled it.")
async def self_cancel(inputs: dict[str, Any]) -> None:
    raise asyncio.CancelledError("the executor's own")


@executor("test.exit", description="Calls sys.exit (raises SystemExit).")
async def exits(inputs: dict[str, Any]) -> None:
    raise SystemExit(3)


def test_a_store_failure_ends_the_run_and_gives_every_slot_back(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = ledger.create_tree(
        [task("root")] + [task(f"t{i}", "root", **run_by("test.value")) for i in range(6)]
    )
    real = ledger.store_step
    calls = {"n": 0}

    def failing(events: Any, snapshot: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(events, snapshot)

    monkeypatch.setattr(ledger, "store_step", failing)

    async def body() -> int:
        async with Runner(ledger, concurrency=2) as runner:
            with pytest.raises(OSError, match="disk full"):
                await finish(runner.run(tree.id))
            return runner.slots.used

    assert arun(body) == 0


def test_a_lost_first_save_keeps_the_run_request_and_the_interrupt_decision(
    ledger: Ledger, store_settings: Any
) -> None:
    tree = ledger.create_tree(
        [
            task("root", **run_by("test.value"), params={"on_interrupt": "fail"}),
            task("later", "root", **run_by("test.value")),
        ]
    )
    stopped = ledger.load(tree.id)  # a process started root, then died
    stopped.request_run()
    stopped.start("root", 1, {})
    ledger.save_trees(stopped)
    other = Ledger(store_settings)
    real = ledger.store_step
    first = {"done": False}

    def racing(events: Any, snapshot: Any) -> None:
        if not first["done"]:  # another process writes just before our first step
            first["done"] = True
            other.update_task("later", parse_changes({"priority": 1}))
        real(events, snapshot)

    ledger.store_step = racing  # type: ignore[method-assign]
    try:

        async def body() -> Any:
            async with Runner(ledger) as runner:
                return await finish(runner.run(tree.id))

        final = arun(body)
    finally:
        other.close()
    assert first["done"]
    assert final.tasks["root"].status is TaskStatus.FAILED
    assert final.tasks["root"].error.startswith("Interrupted: the process running attempt 1")
    assert calls_of("root") == []  # it opted out of running again
    events = ledger.history("root")
    assert len(of_type(events, ev.RunRequested)) == 1


def test_an_executor_raising_cancelled_error_itself_fails_its_task(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.self_cancel")),
            task("b", "root", **run_by("test.value")),
        ]
    )

    async def body() -> Any:
        async with Runner(ledger) as runner:
            return await finish(runner.run(tree.id))

    final = arun(body)
    assert final.status is TreeStatus.FAILED
    assert final.tasks["a"].error == "CancelledError: the executor's own"
    assert final.tasks["b"].status is TaskStatus.COMPLETED


def test_system_exit_in_an_executor_fails_the_task_not_the_process(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task(
                "a",
                "root",
                **run_by("test.exit"),
                params={"retry": {"max_attempts": 3, "backoff_s": 0}},
            ),
        ]
    )

    async def body() -> Any:
        async with Runner(ledger) as runner:
            return await finish(runner.run(tree.id))

    final = arun(body)
    assert final.tasks["a"].status is TaskStatus.FAILED
    assert final.tasks["a"].error == "SystemExit: 3"
    assert task_story(ledger.history("root"), "a") == [("Started", 1), ("Failed", 1)]


@pytest.mark.parametrize("on_interrupt", ["rerun", "fail"])
def test_a_retry_waiting_when_the_process_stopped_still_happens(
    ledger: Ledger, on_interrupt: str
) -> None:
    tree = ledger.create_tree(
        [
            task(
                "root",
                **run_by("test.flaky", fail_times=1),
                params={"retry": {"max_attempts": 3}, "on_interrupt": on_interrupt},
            )
        ]
    )
    stopped = ledger.load(tree.id)  # attempt 1 failed; the retry was due at once
    stopped.request_run()
    stopped.start("root", 1, {"fail_times": 1})
    stopped.fail_attempt("root", "RuntimeError: attempt 1 failed", 0.0)
    ledger.save_trees(stopped)

    async def body() -> Any:
        async with Runner(ledger) as runner:
            jobs = await runner.resume()
            return await finish(jobs[tree.id])

    final = arun(body)
    assert final.tasks["root"].status is TaskStatus.COMPLETED  # not "interrupted"
    assert task_story(ledger.history("root"), "root") == [
        ("Started", 1),
        ("AttemptFailed", 1),
        ("Started", 2),
        ("Completed",),
    ]
