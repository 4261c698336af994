"""What executors see and return: dependency results passed as resolved inputs (the stored
definition untouched), results converted to JSON or refused, and progress reports."""

from __future__ import annotations

from application.ledger import Ledger
from application.runner import Runner
from domain import events as ev
from domain.status import TaskStatus, TreeStatus
from domain.tree import TaskTree
from tests.integration.runner_support import (
    SIGNALS,
    SavedEvents,
    arun,
    calls_of,
    finish,
    of_type,
    run_by,
    task,
    task_story,
)

SCHEMA = {"properties": {"n": {"type": "integer"}, "m": {"type": "integer"}}}


def result_tree(ledger: Ledger) -> None:
    ledger.create_tree(
        [
            task("root"),
            task("a", "root", **run_by("test.value", value={"n": 1, "extra": True})),
            task("scalar", "root", **run_by("test.value", value="plain")),
            task("wrapped", "root", **run_by("test.value", value={"result": {"m": 7}})),
            task("other", "root", **run_by("test.value", value={"unrelated": 5})),
            task("broken", "root", **run_by("test.raise", message="nope")),
            # (a) no input_schema: every result under inputs[<dependency id>]
            task(
                "plain",
                "root",
                dependencies=["a", "scalar", "wrapped"],
                **run_by("echo", static="kept", a="overwritten by a's result"),
            ),
            # (b) with schemas.input_schema properties: matching keys mapped by name
            task(
                "mapped",
                "root",
                dependencies=["a", "scalar", "wrapped", "other"],
                schemas={"method": "echo", "input_schema": SCHEMA},
                inputs={"static": "kept"},
            ),
            # (e) aggregate_results: {dependency id: result} of those that completed
            task(
                "all",
                "root",
                dependencies=["a", "wrapped", {"id": "broken", "required": False}],
                **run_by("aggregate_results"),
            ),
        ]
    )


def test_dependency_results_reach_dependents_as_resolved_inputs(ledger: Ledger) -> None:
    result_tree(ledger)
    tree_id = ledger.tree_id_of("root")
    definition = {i: dict(t.inputs) for i, t in ledger.load(tree_id).tasks.items()}

    async def body() -> None:
        async with Runner(ledger, concurrency=4) as runner:
            final = await finish(runner.run(tree_id))
        assert final.status is TreeStatus.FAILED  # "broken" failed, on purpose
        started = {e.task_id: e.inputs for e in of_type(ledger.history("root"), ev.Started)}

        # (a) inputs[<dep id>] = the dependency's result; static inputs kept;
        # (c) the {"result": ...} wrapper of "wrapped" is unwrapped
        assert started["plain"] == {
            "static": "kept",
            "a": {"n": 1, "extra": True},
            "scalar": "plain",
            "wrapped": {"m": 7},
        }
        assert final.tasks["plain"].result == started["plain"]  # echo saw exactly that

        # (b) properties n and m come from a and (unwrapped) wrapped; a result that fills
        # no property (a scalar, an object without them) stays under its dependency's id
        assert started["mapped"] == {
            "static": "kept",
            "n": 1,
            "m": 7,
            "scalar": "plain",
            "other": {"unrelated": 5},
        }

        # (e) only completed dependencies, results unwrapped
        assert final.tasks["all"].result == {"a": {"n": 1, "extra": True}, "wrapped": {"m": 7}}
        assert final.tasks["all"].status is TaskStatus.COMPLETED

        # (d) the stored definition never changes
        stored = ledger.load(tree_id)
        assert {i: t.inputs for i, t in stored.tasks.items()} == definition
        created = ledger.history("root")[0]
        assert isinstance(created, ev.Created)
        assert {s.id: s.inputs for s in created.tasks} == definition

    arun(body)


def test_executor_context_carries_dependency_results(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root", **run_by("test.value", value={"result": [1, 2]})),
            task("child", "root", dependencies=["root"], **run_by("test.sync_value", value=3)),
        ]
    )

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id))
        assert final.status is TreeStatus.COMPLETED
        assert final.tasks["root"].result == {"result": [1, 2]}  # stored as returned
        (call,) = calls_of("child")
        assert call.inputs == {"value": 3, "root": [1, 2]}
        assert call.attempt == 1

    arun(body)


def test_results_are_converted_to_json_or_refused(ledger: Ledger) -> None:
    no_retry_wanted = {"retry": {"max_attempts": 3, "backoff_s": 0}}
    tree = ledger.create_tree(
        [
            task("root"),
            task("when", "root", **run_by("test.shape", kind="datetime")),
            task("model", "root", **run_by("test.shape", kind="model")),
            task("nested", "root", **run_by("test.shape", kind="nested")),
            task("object", "root", params=no_retry_wanted, **run_by("test.shape", kind="object")),
            task("opaque", "root", **run_by("test.shape", kind="opaque_set")),
            task("bad", "root", **run_by("test.raise", message="bad")),
        ]
    )

    async def body() -> None:
        async with Runner(ledger, concurrency=3) as runner:
            final = await finish(runner.run(tree.id))
        tasks = final.tasks
        iso = "2024-01-02T03:04:05Z"
        assert tasks["when"].result == iso
        assert tasks["model"].result == {"name": "x", "when": iso}
        assert tasks["nested"].result == {
            "at": iso,
            "items": [3],
            "model": {"name": "y", "when": iso},
        }
        for converted in ("when", "model", "nested"):
            assert tasks[converted].status is TaskStatus.COMPLETED

        for refused in ("object", "opaque"):
            assert tasks[refused].status is TaskStatus.FAILED
            assert (tasks[refused].error or "").startswith("InvalidResult:"), tasks[refused].error
        # a result that is not JSON is the executor's bug: retrying cannot help
        assert task_story(ledger.history("root"), "object") == [("Started", 1), ("Failed", 1)]

        assert tasks["bad"].status is TaskStatus.FAILED
        assert tasks["bad"].error == "ValueError: bad"
        assert final.status is TreeStatus.FAILED

    arun(body)


def test_a_tuple_in_a_result_becomes_a_json_array(ledger: Ledger) -> None:
    # Regression (found in commit 2387036, fixed since):
    # application/runner/attempt.py as_json relies on msgspec.to_builtins, which keeps
    # tuples as tuples; check_json_value then refuses them, so an executor returning
    # {"pair": (1, 2)} (or `return a, b`) fails with "InvalidResult: result.pair: a tuple is
    # not a JSON value". A tuple is a JSON array to json.dumps and msgspec.json alike, and
    # as_json already turns sets into lists; it should return {"pair": [1, 2]}.
    tree = ledger.create_tree([task("root", **run_by("test.shape", kind="tuple"))])

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id))
        got = final.tasks["root"]
        assert (got.status, got.error) == (TaskStatus.COMPLETED, None)
        assert got.result == {"pair": [1, 2]}

    arun(body)


def test_progress_is_recorded_before_completion(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [task("root", **run_by("test.progress", fraction=0.5, message="half", gate="go"))]
    )

    async def body() -> None:
        async with Runner(ledger) as runner:
            saved = SavedEvents()

            def release(tree: TaskTree, events: list[ev.TreeEvent]) -> None:
                saved(tree, events)
                if SIGNALS["saved:Progressed:root"].is_set():
                    SIGNALS["go"].set()  # the executor returns once its progress is stored

            runner.listeners.append(release)
            final = await finish(runner.run(tree.id))
        assert final.status is TreeStatus.COMPLETED
        events = ledger.history("root")
        assert task_story(events, "root") == [("Started", 1), ("Progressed",), ("Completed",)]
        (progressed,) = of_type(events, ev.Progressed)
        assert (progressed.progress, progressed.message) == (0.5, "half")
        assert final.tasks["root"].progress == 1.0  # completion ends at 1

    arun(body)


def test_progress_reported_just_before_returning_is_kept(ledger: Ledger) -> None:
    # Regression (found in commit 2387036, fixed since):
    # application/runner/tree_run.py TreeRun._decide applies Done outcomes before the
    # step's Progress outcomes, and then drops any progress of a task that is no longer in
    # progress (`_current`). Progress an executor reports and then returns (without an
    # await in between, or when both arrive in the same step) is never recorded, although
    # TaskContext.report_progress promises "it is saved with the runner's next step".
    tree = ledger.create_tree([task("root", **run_by("test.progress", fraction=0.25))])

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id))
        assert final.status is TreeStatus.COMPLETED
        events = ledger.history("root")
        assert task_story(events, "root") == [("Started", 1), ("Progressed",), ("Completed",)]

    arun(body)
