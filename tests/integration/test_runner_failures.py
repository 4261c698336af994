"""Failures: skip cascades, optional dependencies, timeouts, retries, executors that vanish,
inputs that do not validate, and exceptions from executors."""

from __future__ import annotations

from typing import Any

from application.executors import REGISTRY
from application.ledger import Ledger
from application.runner import Runner
from domain import events as ev
from domain.status import TERMINAL, TaskStatus, TreeStatus
from tests.integration.runner_support import (
    CANCELS,
    INTERRUPTED,
    arun,
    calls_of,
    finish,
    of_type,
    run_by,
    statuses,
    task,
    task_story,
)


def test_a_failure_skips_required_dependents_transitively(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.raise", message="broken")),
            task("b", "root", dependencies=["a"], **run_by("test.value")),
            task("c", "root", dependencies=["b"], **run_by("test.value")),
            task("d", "c", **run_by("test.value")),  # a child of c, depending on nothing
            task("e", "root", dependencies=["c", "d"], **run_by("test.value")),
            task("x", "root", **run_by("test.value", value="fine")),
        ]
    )

    async def body() -> None:
        async with Runner(ledger, concurrency=2) as runner:
            final = await finish(runner.run(tree.id))
        assert final.status is TreeStatus.FAILED
        assert statuses(final) == {
            "root": TaskStatus.COMPLETED,
            "a": TaskStatus.FAILED,
            "b": TaskStatus.SKIPPED,
            "c": TaskStatus.SKIPPED,
            "d": TaskStatus.COMPLETED,  # children do not follow their parent
            "e": TaskStatus.SKIPPED,
            "x": TaskStatus.COMPLETED,
        }
        assert final.tasks["a"].error == "ValueError: broken"
        assert final.tasks["b"].error == "required dependency 'a' failed"
        assert final.tasks["c"].error == "required dependency 'b' skipped"
        assert final.tasks["e"].error == "required dependency 'c' skipped"
        assert not [t for t in final.tasks.values() if t.status not in TERMINAL]
        for skipped in ("b", "c", "e"):
            assert calls_of(skipped) == []
        stored = ledger.load(tree.id)
        assert statuses(stored) == statuses(final)
        skips = of_type(ledger.history("root"), ev.Skipped)
        assert [(s.task_id, s.reason) for s in skips][:2] == [
            ("b", "required dependency 'a' failed"),
            ("c", "required dependency 'b' skipped"),
        ]

    arun(body)


def test_an_optional_dependency_that_fails_is_waited_for_then_ignored(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.raise", message="optional went wrong")),
            task("ok", "root", **run_by("test.value", value=1)),
            task(
                "y",
                "root",
                dependencies=[{"id": "a", "required": False}, {"id": "ok", "required": False}],
                **run_by("test.value", value="ran"),
            ),
        ]
    )

    async def body() -> None:
        async with Runner(ledger, concurrency=4) as runner:
            final = await finish(runner.run(tree.id))
        assert final.tasks["a"].status is TaskStatus.FAILED
        assert final.tasks["y"].status is TaskStatus.COMPLETED
        assert final.tasks["y"].result == "ran"
        assert final.status is TreeStatus.FAILED  # a task failed
        events = ledger.history("root")
        (failed,) = of_type(events, ev.Failed, "a")
        (started,) = of_type(events, ev.Started, "y")
        (ok,) = of_type(events, ev.Completed, "ok")
        # y waited until both were terminal (with 4 slots it could have started at once)
        assert started.originator_version > max(failed.originator_version, ok.originator_version)
        # only the completed dependency's result is passed on
        assert started.inputs == {"value": "ran", "ok": 1}

    arun(body)


def test_a_timeout_fails_the_task_and_cancels_its_executor(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task("slow", "root", params={"timeout_s": 0.05}, **run_by("test.block", gate="never")),
            task("after", "root", dependencies=["slow"], **run_by("test.value")),
        ]
    )

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id))
        slow = final.tasks["slow"]
        assert slow.status is TaskStatus.FAILED
        assert (slow.error or "").startswith("TimeoutError: timed out after"), slow.error
        assert slow.error == "TimeoutError: timed out after 0.05 s"
        assert CANCELS == ["slow"]  # cancel() was called (before the failure was recorded)
        assert INTERRUPTED == ["slow"]  # and execute() itself was interrupted
        assert final.tasks["after"].status is TaskStatus.SKIPPED
        assert final.status is TreeStatus.FAILED
        assert task_story(ledger.history("root"), "slow") == [("Started", 1), ("Failed", 1)]

    arun(body)


def test_retries_record_every_attempt_until_one_succeeds(ledger: Ledger) -> None:
    retry = {"retry": {"max_attempts": 3, "backoff_s": 0}}
    tree = ledger.create_tree(
        [
            task("root"),
            task("flaky", "root", params=retry, **run_by("test.flaky", fail_times=2)),
            task("after", "root", dependencies=["flaky"], **run_by("test.value")),
        ]
    )

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id))
        assert final.status is TreeStatus.COMPLETED
        flaky = final.tasks["flaky"]
        assert (flaky.status, flaky.result, flaky.attempts) == (
            TaskStatus.COMPLETED,
            {"attempt": 3},
            3,
        )
        events = ledger.history("root")
        assert task_story(events, "flaky") == [
            ("Started", 1),
            ("AttemptFailed", 1),
            ("Started", 2),
            ("AttemptFailed", 2),
            ("Started", 3),
            ("Completed",),
        ]
        failures = of_type(events, ev.AttemptFailed)
        assert [(f.error, f.retry_in_s) for f in failures] == [
            ("RuntimeError: attempt 1 failed", 0.0),
            ("RuntimeError: attempt 2 failed", 0.0),
        ]
        assert [c.attempt for c in calls_of("flaky")] == [1, 2, 3]  # context.attempt
        assert [e.inputs for e in of_type(events, ev.Started, "flaky")] == [{"fail_times": 2}] * 3
        assert final.tasks["after"].status is TaskStatus.COMPLETED
        assert calls_of("after")[0].inputs == {"flaky": {"attempt": 3}}

    arun(body)


def test_exhausted_retries_fail_with_the_last_attempt(ledger: Ledger) -> None:
    retry = {"retry": {"max_attempts": 3, "backoff_s": 0}}
    tree = ledger.create_tree([task("root", params=retry, **run_by("test.flaky", fail_times=10))])

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id))
        root = final.tasks["root"]
        assert (root.status, root.attempts) == (TaskStatus.FAILED, 3)
        assert root.error == "RuntimeError: attempt 3 failed"
        events = ledger.history("root")
        assert task_story(events, "root") == [
            ("Started", 1),
            ("AttemptFailed", 1),
            ("Started", 2),
            ("AttemptFailed", 2),
            ("Started", 3),
            ("Failed", 3),
        ]
        (failed,) = of_type(events, ev.Failed)
        assert failed.attempt == 3
        assert [c.attempt for c in calls_of("root")] == [1, 2, 3]
        assert final.status is TreeStatus.FAILED

    arun(body)


def test_an_executor_gone_at_run_time_fails_its_task(ledger: Ledger) -> None:
    async def vanishing(inputs: dict[str, Any]) -> str:
        return "should never run"

    REGISTRY.register(vanishing, "test.vanishing")
    try:
        tree = ledger.create_tree(
            [
                task("root"),
                task("v", "root", **run_by("test.vanishing")),
                task("w", "root", dependencies=["v"], **run_by("test.value")),
                task("x", "root", **run_by("test.value", value=1)),
            ]
        )
    finally:
        REGISTRY.remove("test.vanishing")

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id), "the run to end, not hang")
        v = final.tasks["v"]
        assert v.status is TaskStatus.FAILED
        assert (v.error or "").startswith("UnknownExecutor:"), v.error
        assert "'test.vanishing'" in (v.error or "")
        assert "test.value" in (v.error or "")  # names the executors that do exist
        assert final.tasks["w"].status is TaskStatus.SKIPPED
        assert final.tasks["w"].error == "required dependency 'v' failed"
        assert final.tasks["x"].status is TaskStatus.COMPLETED
        assert final.status is TreeStatus.FAILED
        assert task_story(ledger.history("root"), "v") == [("Started", 1), ("Failed", 1)]

    arun(body)


def test_inputs_that_do_not_validate_fail_without_retry(ledger: Ledger) -> None:
    retry = {"retry": {"max_attempts": 3, "backoff_s": 0}}
    tree = ledger.create_tree(
        [
            task("root"),
            task("bad", "root", params=retry, **run_by("test.validated", count="many")),
            task("missing", "root", params=retry, **run_by("test.validated")),
            task("good", "root", **run_by("test.validated", count="21")),
        ]
    )

    async def body() -> None:
        async with Runner(ledger, concurrency=3) as runner:
            final = await finish(runner.run(tree.id))
        bad, missing = final.tasks["bad"], final.tasks["missing"]
        assert bad.status is TaskStatus.FAILED
        assert (bad.error or "").startswith("ValidationError: inputs.count"), bad.error
        assert (missing.error or "").startswith("ValidationError: inputs.count"), missing.error
        assert "required" in (missing.error or "").lower()
        events = ledger.history("root")
        for node in ("bad", "missing"):
            assert task_story(events, node) == [("Started", 1), ("Failed", 1)]
            assert calls_of(node) == []  # the executor never ran
        assert not of_type(events, ev.AttemptFailed)
        good = final.tasks["good"]
        assert (good.status, good.result) == (TaskStatus.COMPLETED, 42)  # "21" coerced to 21
        assert calls_of("good")[0].inputs == {"count": 21}

    arun(body)


def test_a_validation_error_raised_by_the_executor_itself_is_an_ordinary_failure(
    ledger: Ledger,
) -> None:
    # Regression (found in commit 2387036, fixed since):
    # application/runner/attempt.py Attempt.run wraps the whole of `_call` (the
    # executor's execute() included) in `except pydantic.ValidationError`, so a pydantic
    # error the executor's own code raises (e.g. parsing a reply) is reported as invalid
    # task inputs ("ValidationError: inputs.count: ...") and never retried. Only the
    # input_schema check should get that treatment; an exception from execute() should fail
    # the attempt like any other ("ExceptionType: message", retried per params.retry).
    retry = {"retry": {"max_attempts": 2, "backoff_s": 0}}
    tree = ledger.create_tree([task("root", params=retry, **run_by("test.inner_validation"))])

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id))
        root = final.tasks["root"]
        assert root.status is TaskStatus.FAILED
        assert not (root.error or "").startswith("ValidationError: inputs."), root.error
        assert task_story(ledger.history("root"), "root") == [
            ("Started", 1),
            ("AttemptFailed", 1),
            ("Started", 2),
            ("Failed", 2),
        ]

    arun(body)


def test_a_base_exception_from_an_executor_fails_the_task(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.abort")),
            task("b", "root", **run_by("test.value", value="still runs")),
        ]
    )

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id))
        assert final.tasks["a"].status is TaskStatus.FAILED
        assert final.tasks["a"].error == "Abort: stop"
        assert final.tasks["b"].result == "still runs"
        assert final.status is TreeStatus.FAILED

    arun(body)
