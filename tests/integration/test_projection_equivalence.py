"""The read models against the aggregates, on generated workloads over several trees.

A random sequence of commands (create, run, start, complete, fail, retry, progress, cancel,
copy in every mode, update, add_dependency, remove, and re-use of a removed id) drives a real
Ledger, while the live read model is projected in many small batches interleaved with the
writes. At the end every task's read-model JSON must equal the aggregate's own JSON, every
row must equal what the tree's events say, and a full offline rebuild in another database
must give exactly the same rows.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from application.config import Settings
from application.ledger import Ledger
from application.views import children_of, task_json, tree_json
from domain import events as ev
from domain.copying import CopyMode
from domain.errors import DomainError, InvalidSpec, TaskNotFound
from domain.specs import Dependency, parse_changes
from domain.status import TaskStatus, TreeStatus
from domain.tree import TaskTree
from projections.projector import Projector
from projections.queries import ReadModel
from projections.schema import create_read_engine, task_counts, tasks, trees
from tests.conftest import POSTGRES_URL
from tests.integration.support import head, ids_renamed, task
from tests.unit.strategies import json_objects, json_values, keys, tree_cases

SQLITE_RUNS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
POSTGRES_RUNS = settings(SQLITE_RUNS, max_examples=8)
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)"
)

TERMINAL_TREE = {TreeStatus.COMPLETED, TreeStatus.FAILED, TreeStatus.CANCELLED}
MAX_TREES = 7
USERS = st.sampled_from([None, "alice", "bob"])


# -- stores ----------------------------------------------------------------------------------------
def drop_schemas(names: list[str]) -> None:
    import psycopg

    assert POSTGRES_URL is not None
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextmanager
def read_engine_beside(settings: Settings, home: Path) -> Iterator[sa.Engine]:
    """A read-model database of its own (another SQLite home, or another PostgreSQL schema)
    that a Projector can fill from the Ledger of `settings`."""
    schema = f"fl_test_{uuid.uuid4().hex[:12]}" if settings.database_url else None
    other = Settings(home=home, database_url=settings.database_url, database_schema=schema)
    engine = create_read_engine(other)
    try:
        yield engine
    finally:
        engine.dispose()
        if schema is not None:
            drop_schemas([schema])


@contextmanager
def fresh_ledger(backend: str, home: Path) -> Iterator[Ledger]:
    """A Ledger on an empty store: a fresh directory, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        settings = Settings(home=home)
    else:
        schema = f"fl_test_{uuid.uuid4().hex[:12]}"
        settings = Settings(home=home, database_url=POSTGRES_URL, database_schema=schema)
    ledger = None
    try:
        ledger = Ledger(settings)
        yield ledger
    finally:
        if ledger is not None:
            ledger.close()
        if settings.database_schema:
            drop_schemas([settings.database_schema])


def all_rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the read-model tables, ordered by primary key."""
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))
            ]
            for table in (tasks, trees, task_counts)
        }


def by_seq(tree: TaskTree, status: TaskStatus | None = None) -> list[str]:
    """Task ids in creation order (never by id: generated ids differ from run to run)."""
    return [
        t.id
        for t in sorted(tree.tasks.values(), key=lambda t: t.seq)
        if status is None or t.status is status
    ]


# -- the workload ----------------------------------------------------------------------------------
@dataclass
class Workload:
    """Draws commands the domain allows (or catches the DomainError of one it refuses)."""

    ledger: Ledger
    engine: sa.Engine
    data: st.DataObject
    nul_free: bool  # PostgreSQL's read models show NUL in error text as U+FFFD: see below
    tree_ids: list[UUID] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)  # ids released by remove_task
    numbers: Iterator[int] = field(default_factory=itertools.count)
    done: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)  # ops that stored something
    head: int = 0

    def __post_init__(self) -> None:
        self.projector = Projector(self.ledger, self.engine)
        chars = st.characters(
            exclude_categories=("Cs",), exclude_characters="\x00" if self.nul_free else ""
        )
        self.texts = st.text(chars, max_size=12)
        self.names = keys

    def draw(self, strategy: st.SearchStrategy[Any], label: str) -> Any:
        return self.data.draw(strategy, label=label)

    # -- choosing -----------------------------------------------------------------------------
    def some_tree(self) -> TaskTree | None:
        if not self.tree_ids:
            return None
        tree_id = self.draw(st.sampled_from(self.tree_ids), "tree")
        try:
            return self.ledger.load(tree_id)
        except TaskNotFound:  # its root was removed
            return None

    def some_task(self, tree: TaskTree, status: TaskStatus | None = None) -> str | None:
        ids = by_seq(tree, status)
        return self.draw(st.sampled_from(ids), "task") if ids else None

    def task_anywhere(
        self, status: TaskStatus | None = None, ready: bool = False
    ) -> tuple[TaskTree, str] | None:
        """A task (in `status`, or ready to start) of any tree, and its tree."""
        found: list[tuple[UUID, str]] = []
        for tree_id in self.tree_ids:
            try:
                tree = self.ledger.load(tree_id)
            except TaskNotFound:
                continue
            if ready:
                found += [(tree_id, t.id) for t in tree.ready_tasks()]
            else:
                found += [(tree_id, i) for i in by_seq(tree, status)]
        if not found:
            return None
        tree_id, task_id = self.draw(st.sampled_from(found), "task")
        return self.ledger.load(tree_id), task_id

    # -- the operations ------------------------------------------------------------------------
    def step(self) -> None:
        op = self.draw(st.sampled_from(OPERATIONS), "op")
        try:
            getattr(self, op)()
        except DomainError as exc:
            self.done[f"{op}: refused ({exc.code})"] += 1
        else:
            self.done[op] += 1
        head_now = head(self.ledger)
        if head_now != self.head:
            self.head = head_now
            self.changed[op] += 1

    def project(self) -> None:
        if self.draw(st.booleans(), "new projector"):  # as another process would
            self.projector = Projector(self.ledger, self.engine)
        self.projector.project_batch(limit=self.draw(st.integers(1, 6), "batch"))

    def create(self) -> None:
        if len(self.tree_ids) >= MAX_TREES:
            return
        case = self.draw(tree_cases(max_size=6), "new tree")
        prefix = f"t{next(self.numbers)}|"  # prefix-free: the first "|" ends it
        payload = case.payload()
        if case.with_ids:
            payload = ids_renamed(payload, lambda key: prefix + key)
        self.tree_ids.append(self.ledger.create_tree(payload).id)

    def reuse(self) -> None:
        """A new tree whose ids were freed by remove_task in another (or the same) tree."""
        if not self.freed or len(self.tree_ids) >= MAX_TREES:
            return
        ids = self.draw(
            st.lists(st.sampled_from(self.freed), min_size=1, max_size=2, unique=True), "reused"
        )
        payload = [task(ids[0], name="again", user_id=self.draw(USERS, "user"))]
        payload += [task(i, ids[0], name="again") for i in ids[1:]]
        self.tree_ids.append(self.ledger.create_tree(payload).id)
        for i in ids:
            self.freed.remove(i)

    def run(self) -> None:
        tree = self.some_tree()
        if tree is not None:
            self.ledger.request_run(tree.root_id)

    def start(self) -> None:
        """Start a ready task; maybe progress, complete or fail it in the same save."""
        found = self.task_anywhere(ready=True)
        if found is None:
            return
        tree, task_id = found
        task_now = tree.task(task_id)
        tree.start(task_id, task_now.attempts + 1, self.draw(json_objects, "inputs"))
        then = self.draw(st.sampled_from(["", "progress", "complete", "fail"]), "then")
        if then == "progress":
            tree.record_progress(task_id, self.draw(st.floats(0, 1), "progress"))
        elif then == "complete":
            tree.complete(task_id, self.draw(json_values, "result"))
        elif then == "fail":
            tree.fail(task_id, self.draw(self.texts, "error"))
        self.ledger.save_trees(tree)

    def _running(self) -> tuple[TaskTree, str] | None:
        return self.task_anywhere(TaskStatus.IN_PROGRESS)

    def complete(self) -> None:
        if found := self._running():
            tree, task_id = found
            tree.complete(task_id, self.draw(json_values, "result"))
            self.ledger.save_trees(tree)

    def fail(self) -> None:
        """A failure: the domain skips, transitively, whatever required the task."""
        if found := self._running():
            tree, task_id = found
            tree.fail(task_id, self.draw(self.texts, "error"))
            self.ledger.save_trees(tree)

    def retry(self) -> None:
        """A failed attempt; the next attempt now, later (another save), or not yet."""
        if found := self._running():
            tree, task_id = found
            wait = self.draw(st.floats(0, 3600, allow_subnormal=False), "retry_in_s")
            tree.fail_attempt(task_id, self.draw(self.texts, "error"), wait)
            when = self.draw(st.sampled_from(["same save", "next save", "not yet"]), "restart")
            if when == "next save":
                self.ledger.save_trees(tree)
            if when != "not yet":
                tree.start(task_id, tree.task(task_id).attempts + 1, {})
            self.ledger.save_trees(tree)

    def progress(self) -> None:
        if found := self._running():
            tree, task_id = found
            message = self.draw(st.none() | self.texts, "message")
            tree.record_progress(task_id, self.draw(st.floats(0, 1), "progress"), message)
            self.ledger.save_trees(tree)

    def cancel(self) -> None:
        """A task and its unfinished subtree (the ledger reports one it cannot cancel)."""
        tree = self.some_tree()
        if tree is not None and (task_id := self.some_task(tree)):
            self.ledger.cancel([task_id], self.draw(self.texts, "reason"))

    def copy(self) -> None:
        if len(self.tree_ids) >= MAX_TREES:
            return
        tree = self.some_tree()
        if tree is None or not (task_id := self.some_task(tree)):
            return
        mode = self.draw(st.sampled_from(list(CopyMode)), "mode")
        custom: list[str] = []
        if mode is CopyMode.CUSTOM:
            custom = self.draw(
                st.lists(st.sampled_from(by_seq(tree)), min_size=1, max_size=3), "ids"
            )
        children = self.draw(st.booleans(), "children")
        self.tree_ids.append(self.ledger.copy_tree(task_id, mode, custom, children).id)

    def update(self) -> None:
        found = self.task_anywhere(TaskStatus.PENDING)
        if found is None:
            return
        tree, task_id = found
        raw: dict[str, Any] = {}
        if self.draw(st.booleans(), "name?"):
            raw["name"] = self.draw(self.names, "name")
        if self.draw(st.booleans(), "priority?"):
            raw["priority"] = self.draw(st.integers(0, 4), "priority")
        if self.draw(st.booleans(), "inputs?"):
            raw["inputs"] = self.draw(st.none() | json_objects, "inputs")
        if self.draw(st.booleans(), "dependencies?"):
            on = self.draw(st.lists(st.sampled_from(by_seq(tree)), max_size=2, unique=True), "on")
            raw["dependencies"] = [
                {"id": d, "required": self.draw(st.booleans(), "required")} for d in on
            ]
        self.ledger.update_task(task_id, parse_changes(raw))

    def add_dependency(self) -> None:
        found = self.task_anywhere(TaskStatus.PENDING)
        if found is None:
            return
        tree, task_id = found
        on = self.some_task(tree)
        assert on is not None
        required = self.draw(st.booleans(), "required")
        self.ledger.add_dependency(task_id, Dependency(on, required))

    def remove(self) -> None:
        """Mostly a pending task (a removal the domain may still refuse: has dependents)."""
        pending = self.draw(st.integers(0, 3), "pending?") > 0
        found = self.task_anywhere(TaskStatus.PENDING if pending else None)
        if found is not None:
            self.freed.extend(self.ledger.remove_task(found[1]))


OPERATIONS = (
    ["create"] * 3
    + ["project"] * 6
    + ["start"] * 6
    + ["complete"] * 3
    + ["fail", "retry", "retry", "progress", "run", "run", "cancel", "copy", "copy"]
    + ["update", "update", "add_dependency", "remove", "remove", "reuse"]
)


# -- what the rows must be, from the events alone --------------------------------------------------
@dataclass
class Replayed:
    """A tree folded event by event, with what only the read side keeps."""

    tree: TaskTree
    owner: str | None
    finished_at: datetime | None
    updated_at: dict[str, datetime]


def replay(ledger: Ledger, tree_id: UUID) -> Replayed:
    created, *later = ledger.events.get(tree_id)
    assert isinstance(created, ev.Created)
    tree = TaskTree.from_created(created)
    owner = next(s.user_id for s in created.tasks if s.id == created.root_id)
    updated = dict.fromkeys(tree.tasks, created.timestamp)
    finished = created.timestamp if tree.status in TERMINAL_TREE else None
    for change in later:
        changed: tuple[str, ...] = ()
        if isinstance(change, ev.TaskRemoved):  # the parent lost a child
            parent = tree.tasks[change.task_id].parent_id
            changed = () if parent is None else (parent,)
            for gone in change.removed_ids:
                del updated[gone]
        elif isinstance(change, ev.Copied):
            changed = change.task_ids
        elif isinstance(change, ev.TaskEvent):
            changed = (change.task_id,)
        tree.apply(change)
        for task_id in changed:
            updated[task_id] = change.timestamp
        if tree.status not in TERMINAL_TREE:
            finished = None
        elif finished is None:
            finished = change.timestamp
    return Replayed(tree, owner, finished, updated)


def expected_tree_row(r: Replayed) -> dict[str, Any]:
    state, counts = r.tree.state, r.tree.status_counts()
    row: dict[str, Any] = {
        "id": str(state.id),
        "root_id": state.root_id,
        "user_id": r.owner,
        "status": r.tree.status.value,
        "version": state.version,
        "task_count": len(state.tasks),
        "run_requested": state.run_requested,
        "source_tree_id": None if state.source_tree_id is None else str(state.source_tree_id),
        "copy_count": len(state.copies),
        "created_at": state.created_on,
        "updated_at": state.modified_on,
        "finished_at": r.finished_at,
    }
    row.update({s.value: counts[s] for s in TaskStatus})
    return row


def expected_task_row(r: Replayed, task_id: str) -> dict[str, Any]:
    tree, t = r.tree, r.tree.tasks[task_id]
    return {
        "id": t.id,
        "tree_id": str(tree.id),
        "parent_id": t.parent_id,
        "is_root": t.id == tree.root_id,
        "user_id": t.user_id,
        "name": t.name,
        "status": t.status.value,
        "priority": t.priority,
        "dependencies": [{"id": d.id, "required": d.required} for d in t.dependencies],
        "inputs": t.inputs,
        "params": t.params,
        "schemas": t.schemas,
        "result": t.result,
        "error": t.error,
        "progress": t.progress,
        "attempts": t.attempts,
        "seq": t.seq,
        "child_count": len(tree.children.get(t.id, ())),
        "original_task_id": t.original_task_id,
        "has_copy": t.has_copy,
        "created_at": t.created_at,
        "started_at": t.started_at,
        "completed_at": t.completed_at,
        "retry_at": t.retry_at,
        "updated_at": r.updated_at[t.id],
    }


def assert_read_model_matches(ledger: Ledger, engine: sa.Engine, tree_ids: list[UUID]) -> None:
    model = ReadModel(engine)
    with engine.connect() as conn:
        task_rows = {r.id: dict(r._mapping) for r in conn.execute(sa.select(tasks))}
        count_rows = {(r.user_key, r.status): r.count for r in conn.execute(sa.select(task_counts))}
    tree_rows = {row["id"]: row for row in model.tree_rows()}
    assert sorted(tree_rows) == sorted(str(i) for i in tree_ids)

    expected_counts: Counter[tuple[str, str]] = Counter()
    seen: set[str] = set()
    gone_roots: list[str] = []
    for tree_id in tree_ids:
        replayed = replay(ledger, tree_id)
        assert tree_rows[str(tree_id)] == expected_tree_row(replayed)
        if replayed.tree.is_empty:  # its root was removed: no task rows, no JSON
            assert not any(row["tree_id"] == str(tree_id) for row in task_rows.values())
            gone_roots.append(replayed.tree.root_id)
            continue
        tree = ledger.tree_of(replayed.tree.root_id)
        assert tree_json(tree) == tree_json(replayed.tree)
        assert model.tree(tree.root_id) == tree_json(tree)
        for t in tree.tasks.values():
            seen.add(t.id)
            expected_counts[("" if t.user_id is None else t.user_id, t.status.value)] += 1
            assert task_rows[t.id] == expected_task_row(replayed, t.id)
            assert model.task(t.id) == task_json(tree, t)
            assert model.children(t.id) == [task_json(tree, c) for c in children_of(tree, t.id)]
        some = by_seq(tree)[-1]
        assert model.tree(some) == tree_json(tree)  # the whole tree, from any of its tasks
    assert set(task_rows) == seen
    for root_id in gone_roots:
        if root_id not in seen:  # (unless another tree claimed the id since)
            with pytest.raises(TaskNotFound):
                model.tree(root_id)

    assert count_rows == dict(expected_counts)  # no row for a (user, status) with no task
    for user in (None, "alice", "bob"):
        mine = dict.fromkeys((s.value for s in TaskStatus), 0)
        for (who, status), n in expected_counts.items():
            if user is None or who == user:
                mine[status] += n
        got = model.count(user_id=user)
        assert got["by_status"] == mine
        assert got["total"] == sum(mine.values())


def run_workload(backend: str, base: Path, data: st.DataObject) -> None:
    home = base / uuid.uuid4().hex
    with (
        fresh_ledger(backend, home / "store") as ledger,
        read_engine_beside(ledger.settings, home / "live") as live,
    ):
        work = Workload(ledger, live, data, nul_free=backend == "postgres")
        wanted = data.draw(st.integers(5, 40), label="changes")
        for _ in range(3 * wanted):  # (a draw that finds nothing to do stores nothing)
            if sum(work.changed.values()) >= wanted:
                break
            work.step()
        for op in work.changed:
            event(f"stored: {op}")
        for outcome in work.done:
            if "refused" in outcome:
                event(outcome)

        # (a) the live read model catches up...
        work.projector.catch_up()
        assert work.projector.progress().lag == 0
        assert work.projector.position() == head(ledger)
        for row in ReadModel(live).tree_rows():
            event(f"a tree ends {row['status']}")
            for status in TaskStatus:
                if row[status.value]:
                    event(f"a task ends {status.value}")
        # (b) ...to exactly what the aggregates and their events say
        assert_read_model_matches(ledger, live, work.tree_ids)
        live_rows = all_rows(live)

        # (c) a full offline rebuild elsewhere gives the very same rows, twice over, and so
        # does one that reads the log a few events at a time, holding every unfinished tree
        # from one read to the next, or holding none (each is written after each read, and
        # read back from the rows when a later event needs it)
        with read_engine_beside(ledger.settings, home / "rebuilt") as rebuilt:
            Projector(ledger, rebuilt).rebuild()
            assert all_rows(rebuilt) == live_rows
            Projector(ledger, rebuilt).rebuild()
            assert all_rows(rebuilt) == live_rows
            Projector(ledger, rebuilt).rebuild(batch=3)
            assert all_rows(rebuilt) == live_rows
            Projector(ledger, rebuilt).rebuild(batch=2, hold_tasks=0)
            assert all_rows(rebuilt) == live_rows
        # and so does a rebuild of the live read model in place. (It reads fewer
        # notifications than the head on PostgreSQL when a write rolled back: ids are taken
        # from a sequence. A re-used id does that: its first claim conflicts and is retried.)
        in_place = Projector(ledger, live)
        assert in_place.rebuild() <= head(ledger)
        assert in_place.position() == head(ledger)
        assert all_rows(live) == live_rows


@SQLITE_RUNS
@given(data=st.data())
def test_live_projection_matches_aggregates_and_rebuild_on_sqlite(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    run_workload("sqlite", tmp_path_factory.mktemp("equivalence"), data)


@pytest.mark.postgres
@needs_postgres
@POSTGRES_RUNS
@given(data=st.data())
def test_live_projection_matches_aggregates_and_rebuild_on_postgres(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    run_workload("postgres", tmp_path_factory.mktemp("equivalence"), data)


# -- fixed cases -----------------------------------------------------------------------------------
def removal_and_reuse(ledger: Ledger) -> list[UUID]:
    """Ids freed by remove_task and claimed again by other trees, between and within what
    one batch holds; a removed root; a parent that loses its last child."""
    a = ledger.create_tree(
        [task("a"), task("x", "a", user_id="bob"), task("y", "x"), task("z", "a")]
    )
    ledger.update_task("x", parse_changes({"priority": 0}))
    ledger.remove_task("x")  # x and y freed; a keeps z
    b = ledger.create_tree([task("x", user_id="alice"), task("y", "x")])
    tree = ledger.request_run("y")
    tree.start("y", 1, {})
    tree.complete("y", {"again": True})
    ledger.save_trees(tree)
    ledger.remove_task("z")  # a has no child left
    c = ledger.create_tree([task("z"), task("w", "z")])
    ledger.remove_task("z")  # c's root: c is empty
    d = ledger.create_tree([task("z", user_id="bob"), task("w", "z")])
    ledger.cancel(["w"])
    return [a.id, b.id, c.id, d.id]


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8, 1000])
def test_removed_ids_claimed_again_project_in_any_batching(
    ledger: Ledger, tmp_path: Path, batch: int
) -> None:
    tree_ids = removal_and_reuse(ledger)
    with read_engine_beside(ledger.settings, tmp_path / "small") as engine:
        Projector(ledger, engine).catch_up(batch=batch)
        assert_read_model_matches(ledger, engine, tree_ids)
        assert ReadModel(engine).task("a")["has_children"] is False
        projected = all_rows(engine)
        Projector(ledger, engine).rebuild()
        assert all_rows(engine) == projected


def test_nul_is_refused_in_ids_and_names_and_shown_in_free_text(
    ledger: Ledger, tmp_path: Path
) -> None:
    """PostgreSQL text cannot hold NUL: ids, names and user ids with one are refused when the
    tree is created; an error message with one is kept exactly in the event store and shown
    with U+FFFD in PostgreSQL's read model (exactly on SQLite): the projector never stalls."""
    for bad, field_name in (
        ([task("r\x00")], "tasks[0].id"),
        ([task("r", name="n\x00")], "tasks[0].name"),
        ([task("r", user_id="u\x00")], "tasks[0].user_id"),
    ):
        with pytest.raises(InvalidSpec) as raised:
            ledger.create_tree(bad)
        assert field_name in [f.field for f in raised.value.fields]
    ledger.create_tree([task("r"), task("k", "r")])
    tree = ledger.request_run("k")
    tree.start("k", 1, {})
    tree.fail("k", "Error: \x00 inside")
    ledger.save_trees(tree)
    with read_engine_beside(ledger.settings, tmp_path / "nul") as engine:
        Projector(ledger, engine).catch_up()
        model = ReadModel(engine)
        shown = "Error: \ufffd inside" if ledger.settings.database_url else "Error: \x00 inside"
        assert model.task("k")["error"] == shown
        assert ledger.tree_of("k").task("k").error == "Error: \x00 inside"
        with pytest.raises(TaskNotFound):
            model.task("r\x00")
