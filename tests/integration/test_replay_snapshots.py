"""State rebuilt from stored events (and from snapshots) equals the live state."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from eventsourcing.persistence import StoredEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from application.config import Settings
from application.ledger import Ledger
from application.snapshots import TreeSnapshot
from domain.errors import DomainError
from domain.specs import Dependency, TaskChanges
from domain.status import TERMINAL, TaskStatus
from domain.tree import TaskTree
from tests.integration.support import head, json_of, run_task, settings_like, state_of, task

OPS = (
    "start",
    "complete",
    "fail",
    "fail_attempt",
    "progress",
    "cancel",
    "update",
    "add_dep",
    "remove",
    "run",
    "ledger_update",
    "ledger_cancel",
    "ledger_run",
)

steps = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.integers(0, 7), st.booleans()),
    min_size=10,
    max_size=40,
)


def template(p: str) -> list[dict[str, Any]]:
    return [
        task(f"{p}r"),
        task(f"{p}a", f"{p}r"),
        task(f"{p}b", f"{p}r", dependencies=[f"{p}a"]),
        task(f"{p}c", f"{p}r", dependencies=[{"id": f"{p}a", "required": False}]),
        task(f"{p}d", f"{p}b", dependencies=[f"{p}b", f"{p}c"]),
        task(f"{p}e", f"{p}a", inputs={"k": [1, 2.5, "é"]}),
    ]


def pick(live: TaskTree, op: str, ids: list[str], i: int, j: int) -> str:
    """Mostly a task the command suits (so histories grow); any task when none does."""
    status = {t: live.tasks[t].status for t in ids}
    if op == "start":
        fits = [t.id for t in live.ready_tasks()]
    elif op in ("complete", "fail", "fail_attempt", "progress"):
        fits = [t for t in ids if status[t] is TaskStatus.IN_PROGRESS]
    elif op == "remove":
        fits = [t for t in ids if status[t] is TaskStatus.PENDING and t != live.root_id]
    elif op in ("update", "add_dep", "ledger_update"):
        fits = [t for t in ids if status[t] is TaskStatus.PENDING]
    else:  # cancelling the root ends the whole tree: only now and then
        fits = [t for t in ids if status[t] not in TERMINAL and (t != live.root_id or i == 7)]
    if not fits or (i == 7 and j == 7):
        fits = ids
    return fits[i % len(fits)]


def apply_step(ledger: Ledger, live: TaskTree, op: str, i: int, j: int) -> TaskTree:
    """One command on the live aggregate, or through the Ledger (which returns its tree;
    the caller saved `live` first, as a Ledger command starts from the stored tree)."""
    ids = sorted(live.tasks, key=lambda t: live.tasks[t].seq)
    tid, other = pick(live, op, ids, i, j), ids[j % len(ids)]
    current = live.tasks[tid]
    if op == "start":
        live.start(tid, current.attempts + 1, {"attempt": current.attempts + 1, "j": j})
    elif op == "complete":
        live.complete(tid, {"j": j, "f": j / 3, "s": "✓" * j} if j % 4 else None)
    elif op == "fail":
        live.fail(tid, f"RuntimeError: boom {j}")
    elif op == "fail_attempt":
        live.fail_attempt(tid, f"OSError: flaky {j}", j / 2)
    elif op == "progress":
        live.record_progress(tid, j / 7)
    elif op == "cancel":
        live.cancel(tid, f"reason {j}")
    elif op == "update":
        live.update_task(tid, TaskChanges(priority=j, inputs={"j": j, "nested": {"l": [j]}}))
    elif op == "add_dep":
        live.add_dependency(tid, Dependency(other, required=j % 2 == 0))
    elif op == "remove":
        live.remove_task(tid)
    elif op == "run":
        live.request_run()
    elif op == "ledger_update":
        live = ledger.update_task(tid, TaskChanges(name=f"renamed {j} ✎", params={"j": j}))
    elif op == "ledger_cancel":
        live, _ = ledger._change(tid, lambda tree: tree.cancel(tid, "via the ledger"))
    else:
        live = ledger.request_run(tid)
    return live


def check_replay(ledger: Ledger, live: TaskTree, saved: dict[int, Any]) -> None:
    tree_id = live.id
    replayed = ledger.replay(tree_id)
    assert state_of(replayed) == state_of(live)
    if not live.is_empty:
        assert json_of(replayed) == json_of(live)
        assert state_of(ledger.load(tree_id)) == state_of(replayed)
    for version, state in saved.items():
        assert state_of(ledger.replay(tree_id, version)) == state
    for version in range(1, live.version + 1):
        at = ledger.replay(tree_id, version)
        if not at.is_empty:
            assert state_of(ledger.load(tree_id, version)) == state_of(at), version


def test_replay_equals_live_state_after_random_commands(store_settings: Settings) -> None:
    ledger = Ledger(settings_like(store_settings, snapshot_every=3))
    seen = {"snapshots": 0, "examples": 0}

    @settings(max_examples=25, deadline=None, database=None)
    @given(steps=steps)
    def check(steps: list[tuple[str, int, int, bool]]) -> None:
        prefix = f"{uuid.uuid4().hex[:8]}-"
        live = ledger.create_tree(template(prefix))
        saved = {live.version: state_of(live)}
        for op, i, j, save_now in steps:
            if live.is_empty:
                break
            if op.startswith("ledger_"):
                ledger.save_trees(live)  # a Ledger command starts from the stored tree
                saved[live.version] = state_of(live)
            version, before = live.version, head(ledger)
            try:
                live = apply_step(ledger, live, op, i, j)
            except DomainError:
                # A refused command emits nothing and stores nothing.
                assert live.version == version
                assert head(ledger) == before
                continue
            if save_now or op.startswith("ledger_"):
                ledger.save_trees(live)
                saved[live.version] = state_of(live)
        ledger.save_trees(live)
        saved[live.version] = state_of(live)
        check_replay(ledger, live, saved)
        seen["examples"] += 1
        if list(ledger.snapshots.get(live.id)):
            seen["snapshots"] += 1

    try:
        check()
    finally:
        ledger.close()
    assert seen["snapshots"] > 0, seen


def test_snapshot_is_taken_and_load_equals_replay(store_settings: Settings) -> None:
    ledger = Ledger(settings_like(store_settings, snapshot_every=3))
    try:
        tree = ledger.create_tree([task("r"), task("a", "r"), task("b", "r", dependencies=["a"])])
        run_task(ledger, "r", "root done")
        run_task(ledger, "a", {"rows": 3})
        ledger.update_task("b", TaskChanges(inputs={"after": "snapshot"}))
        snapshots = list(ledger.snapshots.get(tree.id))
        assert snapshots, "a snapshot is due every max(3, task count) events"
        assert all(isinstance(s, TreeSnapshot) for s in snapshots)
        # Taken when a save crosses a multiple of max(snapshot_every, task count) = 3.
        assert [s.originator_version for s in snapshots] == [3, 6]
        assert state_of(ledger.load(tree.id)) == state_of(ledger.replay(tree.id))
        for version in range(1, ledger.replay(tree.id).version + 1):
            loaded = ledger.load(tree.id, version)
            assert state_of(loaded) == state_of(ledger.replay(tree.id, version))
        # A snapshot's own state equals the replay at its version.
        for snap in snapshots:
            replayed = ledger.replay(tree.id, snap.originator_version)
            assert msgspec.to_builtins(snap.state) == state_of(replayed)
    finally:
        ledger.close()


def test_snapshot_with_a_large_tree_interval(store_settings: Settings) -> None:
    """A tree with more tasks than snapshot_every snapshots every task-count events."""
    ledger = Ledger(settings_like(store_settings, snapshot_every=3))
    try:
        ids = [f"t{i}" for i in range(8)]
        tree = ledger.create_tree([task("r")] + [task(i, "r") for i in ids])
        for task_id in ["r", *ids[:4]]:
            run_task(ledger, task_id, task_id)
        versions = [s.originator_version for s in ledger.snapshots.get(tree.id)]
        assert versions == [9], versions  # the interval is the task count, 9
        assert state_of(ledger.load(tree.id)) == state_of(ledger.replay(tree.id))
    finally:
        ledger.close()


def test_snapshot_of_an_older_schema_is_ignored(store_settings: Settings) -> None:
    ledger = Ledger(settings_like(store_settings, snapshot_every=3))
    try:
        tree = ledger.create_tree([task("r"), task("a", "r"), task("b", "r")])
        for task_id in ("r", "a"):
            run_task(ledger, task_id, task_id)
        version = ledger.replay(tree.id).version
        assert list(ledger.snapshots.get(tree.id))
        # An older state schema's snapshot, newest of all, in a shape the reader cannot use.
        assert ledger.snapshots is not None
        ledger.snapshots.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=tree.id,
                    originator_version=version,
                    topic="tree.Snapshot/s0",
                    state=b'{"legacy": "shape", "tasks": [1, 2, 3]}',
                )
            ]
        )
        loaded = ledger.load(tree.id)
        assert state_of(loaded) == state_of(ledger.replay(tree.id))
        assert loaded.task("a").status is TaskStatus.COMPLETED
        assert state_of(ledger.load(tree.id, version)) == state_of(ledger.replay(tree.id, version))
        # Commands keep working on top of it, and later snapshots are usable again.
        run_task(ledger, "b", "b")
        assert state_of(ledger.load(tree.id)) == state_of(ledger.replay(tree.id))
    finally:
        ledger.close()
