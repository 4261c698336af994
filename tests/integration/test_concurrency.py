"""Two Ledgers on one store: stale saves conflict; commands reload, re-decide, lose nothing."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from eventsourcing.persistence import RecordConflictError

from application.claims import TaskIdClaimed
from application.config import Settings
from application.ledger import MAX_RETRIES, Ledger
from domain.copying import CopyMode
from domain.errors import Conflict, DependencyCycle, DuplicateId, HasDependents, NotPending
from domain.specs import Dependency, TaskChanges
from domain.status import TaskStatus
from domain.tree import TaskTree
from tests.integration.support import (
    assert_no_duplicates,
    claims_of,
    events_of,
    head,
    notifications,
    run_task,
    settings_like,
    state_of,
    task,
)


class RacingLedger(Ledger):
    """The real Ledger; after it loads a tree, another writer may act (as a race would)."""

    name = Ledger.name  # the library derives table names from the application's name

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.interleave: list[Callable[[], object]] = []
        self.loads = 0

    def tree_of(self, task_id: str) -> TaskTree:
        tree = super().tree_of(task_id)
        self.loads += 1
        if self.interleave:
            self.interleave.pop(0)()
        return tree


@pytest.fixture
def pair(store_settings: Settings) -> Iterator[tuple[RacingLedger, Ledger]]:
    settings = settings_like(store_settings, snapshot_every=3)
    one, two = RacingLedger(settings), Ledger(settings)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def make_tree(ledger: Ledger) -> TaskTree:
    return ledger.create_tree(
        [
            task("root"),
            task("a", "root"),
            task("b", "root", dependencies=["a"]),
            task("c", "root"),
            task("x", "root"),
        ]
    )


def kinds(ledger: Ledger, tree: TaskTree) -> list[tuple[str, str | None]]:
    return [(type(e).__name__, getattr(e, "task_id", None)) for e in events_of(ledger, tree.id)]


def test_a_stale_tree_cannot_be_saved(pair: tuple[RacingLedger, Ledger]) -> None:
    one, two = pair
    tree = make_tree(one)
    stale = one.load(tree.id)
    two.update_task("c", TaskChanges(priority=0))
    before = head(one)

    stale.update_task("x", TaskChanges(name="lost update"))
    with pytest.raises(RecordConflictError):
        one.save_trees(stale)

    assert head(one) == before
    assert kinds(one, tree) == [("Created", None), ("TaskUpdated", "c")]
    fresh = one.load(tree.id)
    assert fresh.task("x").name == "x"
    assert fresh.task("c").priority == 0
    assert state_of(fresh) == state_of(two.load(tree.id))


def test_a_stale_step_of_a_runner_conflicts_and_stores_nothing(
    pair: tuple[RacingLedger, Ledger],
) -> None:
    one, two = pair
    tree = make_tree(one)
    runner = one.load(tree.id)
    runner.start("a", 1, {})
    one.save_trees(runner)
    two.cancel(["root"])  # another process cancels while the runner holds the tree
    runner.complete("a", {"late": True})
    before = head(one)
    with pytest.raises(RecordConflictError):
        one.save_trees(runner)
    assert head(one) == before
    reloaded = one.load(tree.id)
    assert reloaded.task("a").status is TaskStatus.CANCELLED
    assert reloaded.task("a").result is None


def test_cancel_retries_and_keeps_the_other_writers_events(
    pair: tuple[RacingLedger, Ledger],
) -> None:
    one, two = pair
    tree = make_tree(one)
    one.interleave = [lambda: two.update_task("c", TaskChanges(inputs={"by": "two"}))]

    [outcome] = one.cancel(["a"])

    assert outcome["status"] == "cancelled"
    assert one.loads == 2  # the first decision lost the race and was made again
    assert kinds(one, tree) == [
        ("Created", None),
        ("TaskUpdated", "c"),
        ("Cancelled", "a"),
        ("Skipped", "b"),
    ]
    final = two.load(tree.id)
    assert final.task("c").inputs == {"by": "two"}
    assert state_of(final) == state_of(one.replay(tree.id))
    assert_no_duplicates(one)


def test_update_retries_and_keeps_the_other_writers_events(
    pair: tuple[RacingLedger, Ledger],
) -> None:
    one, two = pair
    tree = make_tree(one)
    one.interleave = [
        lambda: two.cancel(["c"]),
        lambda: run_task(two, "root", "root done"),
    ]

    updated = one.update_task("x", TaskChanges(priority=1, params={"by": "one"}))

    assert one.loads == 3
    assert kinds(one, tree) == [
        ("Created", None),
        ("Cancelled", "c"),
        ("Started", "root"),
        ("Completed", "root"),
        ("TaskUpdated", "x"),
    ]
    assert state_of(updated) == state_of(two.load(tree.id)) == state_of(two.replay(tree.id))
    assert_no_duplicates(one)


def test_a_retried_command_is_decided_again_on_the_new_state(
    pair: tuple[RacingLedger, Ledger],
) -> None:
    one, two = pair
    tree = make_tree(one)
    one.interleave = [lambda: two.cancel(["x"])]
    with pytest.raises(NotPending):
        one.update_task("x", TaskChanges(name="too late"))
    assert kinds(one, tree) == [("Created", None), ("Cancelled", "x")]

    one.interleave = [lambda: two.add_dependency("b", Dependency("c", required=False))]
    before = notifications(one)
    with pytest.raises(HasDependents) as raised:
        one.remove_task("c")
    assert raised.value.ids == ("c", "b")
    added = notifications(one)[len(before) :]  # only the other writer's DependencyAdded
    assert [topic for topic, _, _ in added] == ["tree.DependencyAdded"]
    assert [type(c) for c in claims_of(one, "c")] == [TaskIdClaimed]


def test_add_dependency_retries_into_a_cycle_check_on_the_new_state(
    pair: tuple[RacingLedger, Ledger],
) -> None:
    one, two = pair
    tree = make_tree(one)
    one.interleave = [lambda: two.add_dependency("c", Dependency("x"))]
    with pytest.raises(DependencyCycle):  # x -> c -> x, once c needs x
        one.add_dependency("x", Dependency("c"))
    assert kinds(one, tree) == [("Created", None), ("DependencyAdded", "c")]


def test_copy_retries_when_the_source_changes(pair: tuple[RacingLedger, Ledger]) -> None:
    one, two = pair
    tree = make_tree(one)
    run_task(one, "root", None)
    run_task(one, "a", {"a": 1})
    one.loads = 0
    one.interleave = [lambda: two.update_task("x", TaskChanges(name="renamed by two"))]

    copy = one.copy_tree("a", CopyMode.MINIMAL)

    assert one.loads == 2
    topics = Counter(topic for topic, _, _ in notifications(one))
    assert topics["tree.Created"] == 2  # the source and ONE copy
    assert topics["tree.Copied"] == 1
    claimed = [oid for topic, oid, _ in notifications(one) if topic == "claim.TaskIdClaimed"]
    assert len(claimed) == len(tree.tasks) + len(copy.tasks)
    source = two.load(tree.id)
    assert source.task("x").name == "renamed by two"
    assert source.state.copies == [copy.id]
    assert state_of(two.load(copy.id)) == state_of(copy)
    assert_no_duplicates(one)


def test_a_tree_that_keeps_changing_gives_up_with_conflict(
    pair: tuple[RacingLedger, Ledger],
) -> None:
    one, two = pair
    tree = make_tree(one)

    def interfere(k: int) -> Callable[[], object]:
        return lambda: two.update_task("c", TaskChanges(priority=k))

    one.interleave = [interfere(k) for k in range(MAX_RETRIES)]
    with pytest.raises(Conflict) as raised:
        one.cancel(["a"])
    assert "kept changing" in str(raised.value)
    assert kinds(one, tree) == [("Created", None)] + [("TaskUpdated", "c")] * MAX_RETRIES
    assert one.load(tree.id).task("a").status is TaskStatus.PENDING
    assert_no_duplicates(one)


def test_the_same_id_cannot_be_claimed_by_two_ledgers(pair: tuple[RacingLedger, Ledger]) -> None:
    one, two = pair
    one.create_tree([task("r1"), task("shared", "r1")])
    before = head(two)
    with pytest.raises(DuplicateId) as raised:
        two.create_tree([task("r2"), task("shared", "r2")])
    assert raised.value.ids == ("shared",)
    assert head(two) == before


def run_at_once(jobs: list[Callable[[], object]]) -> list[BaseException]:
    """Run each job in its own thread, released together; return what they raised."""
    barrier = threading.Barrier(len(jobs), timeout=120)  # a safety net, never a wait
    errors: list[BaseException] = []

    def work(job: Callable[[], object]) -> None:
        try:
            barrier.wait()
            job()
        except BaseException as exc:  # reported to the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_concurrent_writers_lose_nothing(store_settings: Settings) -> None:
    """Three Ledgers write to one tree at once; every change lands exactly once."""
    workers = 3
    ledgers = [Ledger(store_settings) for _ in range(workers)]
    try:
        ids = [f"w{w}-{k}" for w in range(workers) for k in range(2)]
        tree = ledgers[0].create_tree([task("root")] + [task(i, "root") for i in ids])

        def job(w: int) -> Callable[[], object]:
            def run() -> None:
                ledgers[w].update_task(f"w{w}-0", TaskChanges(params={"writer": w}))
                ledgers[w].cancel([f"w{w}-1"], reason=f"writer {w}")

            return run

        # Each command retries at most once per other write (4 < MAX_RETRIES): all succeed.
        assert run_at_once([job(w) for w in range(workers)]) == []

        events = events_of(ledgers[0], tree.id)
        assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
        landed = Counter((type(e).__name__, getattr(e, "task_id", None)) for e in events)
        assert landed == Counter(
            [("Created", None)]
            + [("TaskUpdated", f"w{w}-0") for w in range(workers)]
            + [("Cancelled", f"w{w}-1") for w in range(workers)]
        )
        final = ledgers[1].load(tree.id)
        assert final.task("w1-0").params == {"writer": 1}
        assert final.task("w2-1").error == "writer 2"
        assert_no_duplicates(ledgers[0])
    finally:
        for ledger in ledgers:
            ledger.close()


def test_ledgers_can_start_at_the_same_time(store_settings: Settings) -> None:
    """Processes starting together on one store (server, CLI, cron) must all come up."""
    Ledger(store_settings).close()  # the store exists already
    started: list[Ledger] = []

    def start() -> None:
        started.append(Ledger(store_settings))

    try:
        for _ in range(4):
            errors = run_at_once([start] * 4)
            assert [f"{type(e).__name__}: {e}" for e in errors] == []
    finally:
        for ledger in started:
            ledger.close()
