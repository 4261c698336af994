"""History (oldest first, paged) and time travel (by version and by instant) from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from application.config import Settings
from application.ledger import Ledger
from application.views import event_json
from domain.errors import InvalidSpec, TaskNotFound
from domain.specs import TaskChanges
from domain.status import TaskStatus
from tests.integration.support import run_task, settings_like, start_task, state_of, task

T0 = datetime(2031, 3, 14, 15, 9, 26, tzinfo=UTC)


def make_history(ledger: Ledger) -> None:
    ledger.create_tree(
        [task("root"), task("fetch", "root"), task("report", "root", dependencies=["fetch"])]
    )
    ledger.request_run("root")
    run_task(ledger, "root", None)
    start_task(ledger, "fetch")
    tree = ledger.tree_of("fetch")
    tree.record_progress("fetch", 0.5, "half way")
    ledger.save_trees(tree)
    tree.complete("fetch", {"rows": 42})
    ledger.save_trees(tree)
    ledger.update_task("report", TaskChanges(inputs={"format": "pdf"}))
    run_task(ledger, "report", "report.pdf")


def test_history_is_oldest_first_and_paged(ledger: Ledger) -> None:
    make_history(ledger)
    full = ledger.history("report")
    assert [e.originator_version for e in full] == list(range(1, len(full) + 1))
    assert [type(e).__name__ for e in full] == [
        "Created",
        "RunRequested",
        "Started",
        "Completed",
        "Started",
        "Progressed",
        "Completed",
        "TaskUpdated",
        "Started",
        "Completed",
    ]
    assert [e.timestamp for e in full] == sorted(e.timestamp for e in full)
    # Any task of the tree gives the tree's history.
    assert ledger.history("fetch") == full
    assert ledger.history("root") == full

    assert ledger.history("root", after_version=3) == full[3:]
    assert ledger.history("root", after_version=3, limit=2) == full[3:5]
    assert ledger.history("root", limit=1) == full[:1]
    assert ledger.history("root", after_version=len(full)) == []
    # Paging through with after_version = last seen version visits every event once.
    pages, after = [], 0
    while page := ledger.history("root", after_version=after, limit=3):
        pages.extend(page)
        after = page[-1].originator_version
    assert pages == full

    entries = [event_json(e) for e in full]
    assert (entries[0]["type"], entries[0]["task_id"]) == ("Created", None)
    assert entries[5] == {
        "version": 6,
        "type": "Progressed",
        "timestamp": entries[5]["timestamp"],
        "task_id": "fetch",
        "data": {"progress": 0.5, "message": "half way"},
    }
    assert all(e["timestamp"].endswith("Z") for e in entries)


def test_history_of_an_unknown_task_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(TaskNotFound):
        ledger.history("nobody")
    with pytest.raises(TaskNotFound):
        ledger.state_at("nobody", version=1)


def test_state_at_version_equals_replay_at_that_version(ledger: Ledger) -> None:
    make_history(ledger)
    tree_id = ledger.tree_id_of("fetch")
    last = ledger.replay(tree_id).version
    for version in range(1, last + 1):
        at = ledger.state_at("fetch", version=version)
        assert at.version == version
        assert state_of(at) == state_of(ledger.replay(tree_id, version))
    assert ledger.state_at("fetch", version=3).task("root").status is TaskStatus.IN_PROGRESS
    assert ledger.state_at("fetch", version=6).task("fetch").progress == 0.5
    assert ledger.state_at("fetch", version=7).task("fetch").result == {"rows": 42}
    assert ledger.state_at("report", version=7).task("report").inputs == {}
    assert ledger.state_at("report", version=8).task("report").inputs == {"format": "pdf"}
    assert state_of(ledger.state_at("report")) == state_of(ledger.replay(tree_id))


def test_state_at_version_with_snapshots(store_settings: Settings) -> None:
    ledger = Ledger(settings_like(store_settings, snapshot_every=3))
    try:
        make_history(ledger)
        tree_id = ledger.tree_id_of("root")
        assert list(ledger.snapshots.get(tree_id))
        for version in range(1, ledger.replay(tree_id).version + 1):
            at = ledger.state_at("root", version=version)
            assert state_of(at) == state_of(ledger.replay(tree_id, version))
    finally:
        ledger.close()


def test_state_at_an_instant(ledger: Ledger) -> None:
    with freeze_time(T0) as clock:
        ledger.create_tree([task("root"), task("a", "root"), task("b", "root")])
        clock.tick(timedelta(minutes=1))
        start_task(ledger, "a")  # T0 + 1 min
        clock.tick(timedelta(minutes=1))
        tree = ledger.tree_of("a")
        tree.complete("a", {"done": True})  # T0 + 2 min
        ledger.save_trees(tree)
        clock.tick(timedelta(hours=1))
        ledger.cancel(["b"])  # T0 + 1 h 2 min

    stamps = [e.timestamp for e in ledger.history("a")]
    assert stamps == [
        T0,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
        T0 + timedelta(minutes=62),
    ]
    with pytest.raises(InvalidSpec, match=r"^at: "):
        ledger.state_at("a", at=T0 - timedelta(microseconds=1))
    with pytest.raises(InvalidSpec, match=r"^at: "):
        ledger.state_at("a", at=datetime(1999, 12, 31, tzinfo=UTC))

    def status_at(at: datetime, task_id: str = "a") -> TaskStatus:
        return ledger.state_at("b", at=at).task(task_id).status

    assert status_at(T0) is TaskStatus.PENDING
    assert status_at(T0 + timedelta(seconds=59)) is TaskStatus.PENDING
    assert status_at(T0 + timedelta(minutes=1)) is TaskStatus.IN_PROGRESS
    assert status_at(T0 + timedelta(minutes=1, seconds=30)) is TaskStatus.IN_PROGRESS
    assert status_at(T0 + timedelta(minutes=2)) is TaskStatus.COMPLETED
    assert status_at(T0 + timedelta(minutes=61), "b") is TaskStatus.PENDING
    assert status_at(T0 + timedelta(minutes=62), "b") is TaskStatus.CANCELLED
    assert status_at(datetime(2100, 1, 1, tzinfo=UTC), "b") is TaskStatus.CANCELLED
    # The same instant written in another timezone is the same instant.
    plus_two = timezone(timedelta(hours=2))
    assert ledger.state_at("a", at=(T0 + timedelta(minutes=1)).astimezone(plus_two)).version == 2
    assert state_of(ledger.state_at("a", at=T0 + timedelta(minutes=1, seconds=1))) == state_of(
        ledger.replay(ledger.tree_id_of("a"), 2)
    )


def test_state_at_an_instant_with_a_ticking_clock(ledger: Ledger) -> None:
    with freeze_time(T0, tick=True):
        ledger.create_tree([task("root"), task("a", "root")])
        run_task(ledger, "root", 1)
        run_task(ledger, "a", 2)
    events = ledger.history("a")
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert all(T0 <= e.timestamp < T0 + timedelta(minutes=5) for e in events)
    for event in events:
        at = ledger.state_at("a", at=event.timestamp)
        assert at.version >= event.originator_version
        assert state_of(at) == state_of(ledger.replay(event.originator_id, at.version))
    with pytest.raises(InvalidSpec, match=r"^at: "):
        ledger.state_at("a", at=events[0].timestamp - timedelta(microseconds=1))


def test_state_at_the_recorded_instants(ledger: Ledger) -> None:
    """Without a fake clock: each event's own timestamp selects the last event at or before it."""
    make_history(ledger)
    events = ledger.history("root")
    tree_id = ledger.tree_id_of("root")
    for event in events:
        expected = max(e.originator_version for e in events if e.timestamp <= event.timestamp)
        at = ledger.state_at("root", at=event.timestamp)
        assert at.version == expected
        assert state_of(at) == state_of(ledger.replay(tree_id, expected))
    first = events[0].timestamp
    with pytest.raises(InvalidSpec, match=r"^at: "):
        ledger.state_at("root", at=first - timedelta(microseconds=1))
    latest = ledger.state_at("root", at=events[-1].timestamp + timedelta(days=365))
    assert state_of(latest) == state_of(ledger.replay(tree_id))


def test_history_and_state_at_arguments_are_checked(ledger: Ledger) -> None:
    make_history(ledger)
    for kwargs, field in (
        ({"after_version": -1}, "after_version"),
        ({"limit": 0}, "limit"),
        ({"limit": -5}, "limit"),
    ):
        with pytest.raises(InvalidSpec) as raised:
            ledger.history("root", **kwargs)  # type: ignore[arg-type]
        assert [f.field for f in raised.value.fields] == [field]
    with pytest.raises(InvalidSpec) as bad_version:
        ledger.state_at("root", version=0)
    assert [f.field for f in bad_version.value.fields] == ["version"]
    last = ledger.history("root")[-1].originator_version
    assert ledger.state_at("root", version=last + 100).version == last


def test_a_naive_instant_is_read_as_utc(ledger: Ledger) -> None:
    make_history(ledger)
    events = ledger.history("root")
    middle = events[len(events) // 2].timestamp
    naive = middle.replace(tzinfo=None)
    assert ledger.state_at("root", at=naive).version == ledger.state_at("root", at=middle).version
