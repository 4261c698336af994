"""The runner picks ready tasks by (priority, creation order), runs same-priority work side
by side, never exceeds its concurrency limit, and completes grouping nodes at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

from application.ledger import Ledger
from application.runner import Runner
from domain import events as ev
from domain.status import TaskStatus, TreeStatus
from domain.tree import TaskTree
from tests.integration.runner_support import (
    CROWD,
    SIGNALS,
    SavedEvents,
    all_tree_events,
    arun,
    finish,
    first_of,
    of_type,
    peak_in_progress,
    run_by,
    started_ids,
    statuses,
    task,
    until,
)
from tests.integration.support import assert_no_duplicates


def test_priority_then_creation_order_with_priority_zero_first(ledger: Ledger) -> None:
    priorities = {"a": 2, "b": 0, "c": 1, "d": 0, "e": 2, "f": 1, "g": 3}
    tree = ledger.create_tree(
        [task("root", priority=3)]
        + [
            task(i, "root", priority=p, **run_by("test.value", value=i))
            for i, p in priorities.items()
        ]
    )

    async def body() -> None:
        async with Runner(ledger, concurrency=1) as runner:
            final = await finish(runner.run(tree.id))
        assert final.status is TreeStatus.COMPLETED
        events = ledger.history("root")
        # creation order: root, a, b, ..., g; sorted by (priority, position)
        order = ["root", *priorities]
        expected = sorted(order, key=lambda i: ({"root": 3, **priorities}[i], order.index(i)))
        assert expected[:2] == ["b", "d"]  # priority 0 is the most urgent, not "unset"
        assert started_ids(events) == expected
        # concurrency 1: each executor task ran alone, one after the other
        assert peak_in_progress(events, set(priorities)) == 1

    arun(body)


def test_same_priority_tasks_run_at_the_same_time(ledger: Ledger) -> None:
    """Each of the three waits until all three have begun: they can only finish if the
    runner really runs them side by side."""
    ids = ["a", "b", "c"]
    tree = ledger.create_tree(
        [task("root")]
        + [
            task(i, "root", priority=1, **run_by("test.barrier", barrier="three", parties=3))
            for i in ids
        ]
    )

    async def body() -> None:
        async with Runner(ledger, concurrency=3) as runner:
            final = await finish(runner.run(tree.id), "three tasks to meet at the barrier")
        assert final.status is TreeStatus.COMPLETED
        assert {i: final.tasks[i].result for i in ids} == {i: i for i in ids}
        events = [e for e in ledger.history("root") if getattr(e, "task_id", None) in ids]
        kinds = [type(e).__name__ for e in events]
        assert kinds == ["Started"] * 3 + ["Completed"] * 3  # overlap, proven by the log

    arun(body)


def test_concurrency_limit_holds_across_two_trees_on_one_runner(ledger: Ledger) -> None:
    limit = 2
    trees = []
    workers: set[str] = set()
    for name in ("one", "two"):
        items = [task(f"{name}-root")]
        for n in range(4):
            workers.add(f"{name}-{n}")
            items.append(
                task(
                    f"{name}-{n}",
                    f"{name}-root",
                    priority=n % 2,
                    **run_by("test.crowd", full_at=limit, gate="open"),
                )
            )
        trees.append(ledger.create_tree(items))

    async def body() -> None:
        async with Runner(ledger, concurrency=limit) as runner:
            jobs = [await runner.start(t.id) for t in trees]
            await until(SIGNALS["full"], f"{limit} tasks running at once")
            SIGNALS["open"].set()  # from now on every task finishes at once
            finals = await finish(asyncio.gather(*jobs))
        assert [f.status for f in finals] == [TreeStatus.COMPLETED, TreeStatus.COMPLETED]
        for final in finals:
            assert set(statuses(final).values()) == {TaskStatus.COMPLETED}
        assert CROWD["peak"] == limit  # reached, never passed, as the executors saw it
        log = all_tree_events(ledger)
        for name in ("one", "two"):  # and as each tree's log says (across trees: see below)
            mine = {w for w in workers if w.startswith(name)}
            assert peak_in_progress(log, mine) <= limit
        assert len(of_type(log, ev.Completed)) == 10
        assert_no_duplicates(ledger)

    arun(body)


def test_grouping_nodes_complete_at_once_with_null(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root"),
            task("group", "root"),
            task("leaf", "group", **run_by("test.value", value=1)),
            task("after", "root", dependencies=["group"]),
        ]
    )

    async def body() -> None:
        async with Runner(ledger, concurrency=2) as runner:
            final = await finish(runner.run(tree.id))
        assert final.status is TreeStatus.COMPLETED
        for node in ("root", "group", "after"):
            got = final.tasks[node]
            assert (got.status, got.result, got.error) == (TaskStatus.COMPLETED, None, None)
            assert got.attempts == 1
        events = ledger.history("root")
        started = {e.task_id: e.originator_version for e in of_type(events, ev.Started)}
        completed = {e.task_id: e.originator_version for e in of_type(events, ev.Completed)}
        # a grouping node starts and completes in the same step, with nothing in between
        for node in ("root", "group", "after"):
            assert completed[node] == started[node] + 1
        # and it does not wait for its children (parent/child is organisational)
        assert completed["group"] < completed["leaf"]

    arun(body)


def test_none_is_a_valid_result(ledger: Ledger) -> None:
    tree = ledger.create_tree(
        [
            task("root", **run_by("test.value")),  # no inputs.value: returns None
            task("sync", "root", **run_by("test.sync_value")),  # a thread function
            task("noop", "root", schemas={}, params={"executor_id": "noop"}),
        ]
    )

    async def body() -> None:
        async with Runner(ledger) as runner:
            final = await finish(runner.run(tree.id))
        assert final.status is TreeStatus.COMPLETED
        for node in ("root", "sync", "noop"):
            got = final.tasks[node]
            assert (got.status, got.result, got.error) == (TaskStatus.COMPLETED, None, None)
        stored = ledger.load(tree.id)
        assert [e.result for e in of_type(ledger.history("root"), ev.Completed)] == [None] * 3
        assert stored.tasks["root"].status is TaskStatus.COMPLETED

    arun(body)


def two_trees(ledger: Ledger, first: int, second: int) -> tuple[UUID, UUID]:
    """Tree x (tasks at priority `first`, x1 blocks until "x1-go") and tree y (at `second`)."""
    x = ledger.create_tree(
        [
            task("x-root", priority=first),
            task(
                "x1", "x-root", priority=first, **run_by("test.block", gate="x1-go", started="x1")
            ),
            task("x2", "x-root", priority=first, **run_by("test.value")),
            task("x3", "x-root", priority=first, **run_by("test.value")),
        ]
    )
    y = ledger.create_tree(
        [task("y-root", priority=second)]
        + [task(f"y{i}", "y-root", priority=second, **run_by("test.value")) for i in (1, 2, 3)]
    )
    return x.id, y.id


async def run_two(ledger: Ledger, x: UUID, y: UUID) -> list[str]:
    """Run both on one slot; release x1 once y is queued for a slot; the Started order of
    the executor tasks across both trees."""
    async with Runner(ledger, concurrency=1) as runner:
        runner.listeners.append(SavedEvents())
        x_job = await runner.start(x)
        await until(SIGNALS["x1"], "x1 to start")
        y_job = await runner.start(y)
        await until(SIGNALS["saved:Completed:y-root"], "y's first step (it queues for a slot)")
        SIGNALS["x1-go"].set()  # x1 ends: its slot is free
        finals = await finish(asyncio.gather(x_job, y_job))
    assert [f.status for f in finals] == [TreeStatus.COMPLETED] * 2
    log = all_tree_events(ledger)
    return [i for i in started_ids(log) if not i.endswith("root")]


def test_a_freed_slot_goes_to_the_more_urgent_tree(ledger: Ledger) -> None:
    x, y = two_trees(ledger, first=3, second=0)
    order = arun(lambda: run_two(ledger, x, y))
    # x queued for its next task before y did, but y's tasks are more urgent
    assert order == ["x1", "y1", "y2", "y3", "x2", "x3"]


def test_trees_at_the_same_priority_take_turns(ledger: Ledger) -> None:
    x, y = two_trees(ledger, first=2, second=2)
    order = arun(lambda: run_two(ledger, x, y))
    assert order[0] == "x1"
    # neither tree has to wait for the other to finish: their tasks interleave
    assert order.index("y1") < order.index("x3")
    assert order.index("x2") < order.index("y3")
    assert sorted(order) == ["x1", "x2", "x3", "y1", "y2", "y3"]


def test_the_log_never_shows_more_tasks_in_progress_than_the_limit(ledger: Ledger) -> None:
    # Regression (found in commit 2387036, fixed since):
    # application/runner/tree_run.py TreeRun._attempt_ended gives the
    # slot back to the pool as soon as the executor's job ends, before the task's
    # Completed/Failed is stored. Another tree waiting for the slot can then store its
    # Started first, so the store (history, read models, tasks.running.count) shows
    # limit + 1 tasks in progress at once. Here, with concurrency 1, tree a is busy storing
    # a step when a1 ends; b1 gets the slot and its Started is committed before a1's
    # Completed. The slot should pass on only once the outcome is stored.
    #
    # How the interleaving is forced: the store thread takes one call at a time, in order,
    # so holding it makes commits follow the order in which steps were handed to it.
    # TreeRun.submit (what Runner.cancel uses) runs a function inside a run's next step.
    a = ledger.create_tree(
        [task("a-root"), task("a1", "a-root", **run_by("test.block", started="a1", gate="a1-go"))]
    )
    b = ledger.create_tree([task("b-root"), task("b1", "b-root", **run_by("test.value"))])

    def signal(name: str) -> Callable[[TaskTree], None]:
        return lambda tree: SIGNALS[name].set()

    async def body() -> None:
        # no watcher polls during the test: every store call below is a run's step
        async with Runner(ledger, concurrency=1, poll_interval_s=3600) as runner:
            runner.listeners.append(SavedEvents())
            a_job = await runner.start(a.id)
            await until(SIGNALS["a1"], "a1 to start")
            b_job = await runner.start(b.id)
            await until(SIGNALS["saved:Completed:b-root"], "b to queue for the slot")
            a1_job = runner.runs[a.id].running["a1"].job

            store = runner.store
            after_a1: list[bool] = []

            async def watched_store(func: Any, *args: Any) -> Any:
                if after_a1:
                    SIGNALS["handed-to-store"].set()
                return await store(func, *args)

            runner.store = watched_store  # type: ignore[method-assign]
            hold = threading.Event()
            held = asyncio.ensure_future(store(hold.wait))  # the store thread is busy
            try:
                runner.runs[a.id].submit(signal("a-step"))
                await until(SIGNALS["a-step"], "tree a to decide a step (stored after hold)")
                after_a1.append(True)
                SIGNALS["a1-go"].set()
                await finish(a1_job, "a1's executor to end")
                runner.runs[b.id].submit(signal("b-step"))
                # either a run handed a step to the store since a1 ended, or b (given no
                # slot) decided a step all the same: both orders are now fixed
                await first_of({n: SIGNALS[n] for n in ("handed-to-store", "b-step")})
            finally:
                hold.set()  # never leave the store thread blocked
            await held
            finals = await finish(asyncio.gather(a_job, b_job))
        assert [f.status for f in finals] == [TreeStatus.COMPLETED] * 2
        log = all_tree_events(ledger)
        assert peak_in_progress(log, {"a1", "b1"}) == 1

    arun(body)
