"""The projector: the event store's notification log, in batches, into the read models.

Each batch is applied in ONE read-model transaction together with its tracking position,
so a crash between (or inside) batches neither applies an event twice nor skips one. The
transaction starts by locking the tracking row (BEGIN IMMEDIATE on SQLite, SELECT ... FOR
UPDATE on PostgreSQL), and the events are read after that position once the lock is held:
any number of projectors (a server, CLI processes catching up) may run on one store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from eventsourcing.persistence import Notification
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from application.bulk import fewer_collections
from application.codec import EventCodec
from application.ledger import Ledger
from domain import events as ev
from projections.fold import BatchFold, TreeRecord, add_task_row, record_from_row, task_ids_named
from projections.rows import RowWriter
from projections.schema import (
    PROJECTION,
    READ_MODELS,
    SCHEMA_VERSION,
    positions,
    task_counts,
    tasks,
    trees,
)

BATCH = 2_000
REBUILD_BATCH = 20_000
HOLD_TASKS = 50_000  # a rebuild holds at most about this many tasks' rows in memory
TREE_TOPIC = "tree."
IN_CHUNK = 500  # ids per IN (...) lookup
LOCK_TIMEOUT_S = 60  # PostgreSQL: most time to wait for another projector's batch


class ReadModelsAhead(LookupError):
    """The tracking position names an event the log no longer holds (the event store lost
    its last commits, or was restored or replaced): projecting on would skip new events."""


@dataclass(frozen=True)
class Progress:
    """Where a projector stands: `position` applied out of `head` in the log; `ahead` when
    the position is not in the log any more (see ReadModelsAhead)."""

    position: int
    head: int
    updated_at: datetime | None
    ahead: bool = False

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class Projector:
    """Applies the Ledger's events to the read models held by `engine`."""

    def __init__(self, ledger: Ledger, engine: Engine, name: str = PROJECTION) -> None:
        self.ledger = ledger
        self.engine = engine
        self.name = name
        self.last_position = 0  # as of this projector's last transaction
        codec = ledger.mapper
        assert isinstance(codec, EventCodec)
        self._topics = codec.topics(TREE_TOPIC)
        self._row_writers: dict[str, RowWriter] | None = None
        self._ensure_position()

    # -- public ----------------------------------------------------------------------------
    def head(self) -> int:
        return self.ledger.recorder.max_notification_id() or 0

    def position(self) -> int:
        return self._tracking()[0]

    def progress(self) -> Progress:
        position, anchor, updated_at = self._tracking()
        head = self.head()
        try:
            self._check_anchor(position, anchor, head)
        except ReadModelsAhead:
            return Progress(position, head, updated_at, ahead=True)
        return Progress(position, head, updated_at)

    @fewer_collections()
    def catch_up(
        self,
        until: int | None = None,
        *,
        batch: int = BATCH,
        on_batch: Callable[[int, int], None] | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> int:
        """Apply batches until the position reaches `until` (default: the log's head as of
        now); return the number of tree events applied. `on_batch(position, applied)` is
        called after each committed batch; `stop_when()` is asked between batches. Up to
        date already, it only reads (no write lock). Raises ReadModelsAhead when the read
        models hold events the log no longer has."""
        # The position first, then the head: another projector may move the position on
        # in between, never the log back, so position <= head holds unless the log lost
        # events (read the other way round, a concurrent batch looks like a lost log).
        position, anchor, _ = self._tracking()
        head = self.head()
        target = head if until is None else min(until, head)
        self._check_anchor(position, anchor, head)
        if position >= target:
            self.last_position = position
            return 0
        applied = 0
        while True:
            done, position = self.project_batch(batch, stop=target)
            applied += done
            if on_batch is not None and done:
                on_batch(position, done)
            if position >= target or not done or (stop_when is not None and stop_when()):
                return applied

    def project_batch(self, limit: int = BATCH, stop: int | None = None) -> tuple[int, int]:
        """Apply at most `limit` tree events after the current position (up to `stop`, at
        most the log's head), in ONE transaction with the new position. Return (tree events
        applied, new position). Other entries of the log (task-id claims) are not even
        read: the position moves past them."""
        recorder = self.ledger.recorder
        with self.engine.connect() as conn:
            conn = conn.execution_options(writing=True)
            with conn.begin():
                position, anchor = self._lock_position(conn)
                self.last_position = position
                head = self.head()
                self._check_anchor(position, anchor, head)
                stop = head if stop is None else min(stop, head)
                if position >= stop:
                    return 0, position
                found = recorder.select_notifications(
                    start=position,
                    limit=limit,
                    stop=stop,
                    topics=self._topics,
                    inclusive_of_start=False,
                )
                if len(found) == limit or stop < head:
                    if not found:  # nothing up to `stop`, which may be a gap in the ids
                        return 0, position
                    last = found[-1]
                else:  # a short batch has seen every tree event up to the head
                    head_entry = self._entry_at(head)
                    if head_entry is None:
                        raise ReadModelsAhead(f"the event log has no entry {head}")
                    last = head_entry
                if found:
                    self._apply(conn, self._decode(found))
                conn.execute(
                    positions.update()
                    .where(positions.c.name == self.name)
                    .values(
                        position=last.id,
                        anchor=_anchor(last),
                        updated_at=datetime.now(UTC),
                    )
                )
        self.last_position = last.id
        return len(found), last.id

    @fewer_collections()
    def rebuild(
        self,
        on_batch: Callable[[int, int], None] | None = None,
        *,
        batch: int = REBUILD_BATCH,
        hold_tasks: int = HOLD_TASKS,
    ) -> int:
        """Replace the read models by a replay of the whole log (up to its head as of now)
        in ONE transaction; return the count of tree events applied. Readers see the old
        read models until it commits, and a crash leaves them as they were. Rows are
        written once: a tree is held in memory until it has finished, or until more than
        `hold_tasks` tasks are held (then every held tree is written, and read back when a
        later event needs it). `on_batch(position, applied)` follows each `batch` of events
        read (and applied in memory; nothing is visible before the end)."""
        self._analyze_events()
        recorder = self.ledger.recorder
        with self.engine.connect() as conn:
            conn = conn.execution_options(writing=True)
            with conn.begin():
                self._lock_position(conn)
                for table in READ_MODELS:  # emptied, not dropped: readers keep the old rows
                    conn.execute(table.delete())
                head = self.head()
                held: dict[UUID, TreeRecord] = {}
                fold = BatchFold(held, lambda record, task_id: _load_task(conn, record, task_id))
                position = applied = 0
                while position < head:
                    found = recorder.select_notifications(
                        start=position,
                        limit=batch,
                        stop=head,
                        topics=self._topics,
                        inclusive_of_start=False,
                    )
                    if not found:
                        break
                    events = self._decode(found)
                    held.update(self._prefetch(conn, events, held))
                    for event in events:
                        fold.apply(event)
                    self._release(conn, held, hold_tasks)
                    applied += len(found)
                    position = found[-1].id
                    if on_batch is not None:
                        on_batch(position, len(found))
                    if len(found) < batch:
                        break
                self._write(conn, held.values(), fold.user_counts)
                last = self._entry_at(head) if head else None
                if head and last is None:
                    raise ReadModelsAhead(f"the event log has no entry {head}")
                conn.execute(
                    positions.update()
                    .where(positions.c.name == self.name)
                    .values(
                        position=head,
                        anchor=None if last is None else _anchor(last),
                        updated_at=datetime.now(UTC),
                    )
                )
        self.last_position = head
        return applied

    # -- internals -------------------------------------------------------------------------
    def _analyze_events(self) -> None:
        """PostgreSQL: give the planner statistics on the events table first. Without them
        (a fresh or bulk-loaded store, autovacuum off) it plans each batch's range read as a
        scan and sort of the whole rest of the log: quadratic in the log's size."""
        recorder = self.ledger.recorder
        table = getattr(recorder, "events_table_name", None)
        if self.engine.dialect.name != "postgresql" or table is None:
            return
        schema = recorder.datastore.schema  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f'ANALYZE "{schema}"."{table}"')
            conn.commit()

    def _ensure_position(self) -> None:
        """The tracking row, made at position 0 if missing (only then taking the lock)."""
        with self.engine.connect() as conn:
            exists = conn.execute(
                sa.select(positions.c.name).where(positions.c.name == self.name)
            ).first()
        if exists:
            return
        insert = _insert(self.engine, positions).values(
            name=self.name,
            position=0,
            anchor=None,
            schema_version=SCHEMA_VERSION,
            updated_at=datetime.now(UTC),
        )
        with self.engine.connect() as conn:
            conn = conn.execution_options(writing=True)
            with conn.begin():
                conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))

    def _tracking(self) -> tuple[int, str | None, datetime | None]:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(positions.c.position, positions.c.anchor, positions.c.updated_at).where(
                    positions.c.name == self.name
                )
            ).first()
        if row is None:
            return 0, None, None
        return int(row.position), row.anchor, row.updated_at

    def _lock_position(self, conn: sa.Connection) -> tuple[int, str | None]:
        query = sa.select(positions.c.position, positions.c.anchor).where(
            positions.c.name == self.name
        )
        if conn.dialect.name != "sqlite":  # SQLite: BEGIN IMMEDIATE already holds the lock
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'")
            query = query.with_for_update()
        found = conn.execute(query).first()
        if found is None:
            raise LookupError(f"no tracking row for projection {self.name!r}: rebuild")
        return int(found.position), found.anchor

    def _entry_at(self, position: int) -> Notification | None:
        found = self.ledger.recorder.select_notifications(start=position, limit=1, stop=position)
        return found[0] if found else None

    def _check_anchor(self, position: int, anchor: str | None, head: int) -> None:
        """Refuse to go on from a position the log does not hold (any more)."""
        if position == 0:
            return
        problem = None
        if position > head:
            problem = f"the read models are at log position {position}, the log ends at {head}"
        elif anchor is not None:
            entry = self._entry_at(position)
            if entry is None or _anchor(entry) != anchor:
                problem = f"log position {position} holds another event than the one applied"
        if problem:
            raise ReadModelsAhead(
                f"{problem}: the event store lost or replaced events the read models "
                "hold; run `flowledger projections rebuild`"
            )

    def _decode(self, found: Sequence[Notification]) -> list[ev.TreeEvent]:
        to_event = self.ledger.mapper.to_domain_event
        return [to_event(n) for n in found]  # type: ignore[misc]

    def _apply(self, conn: sa.Connection, events: list[ev.TreeEvent]) -> None:
        records = self._prefetch(conn, events)
        fold = BatchFold(records, lambda record, task_id: _load_task(conn, record, task_id))
        for event in events:
            fold.apply(event)
        self._write(conn, records.values(), fold.user_counts)

    def _prefetch(
        self,
        conn: sa.Connection,
        events: list[ev.TreeEvent],
        held: dict[UUID, TreeRecord] | None = None,
    ) -> dict[UUID, TreeRecord]:
        """The stored rows of the trees and tasks the batch changes (not the ones it makes,
        nor those `held` in memory already): the trees read, by id. The tasks of a held
        tree the batch names and it does not hold are read into it."""
        held = {} if held is None else held
        created: set[UUID] = set()
        wanted: dict[UUID, set[str]] = {}
        for event in events:
            tree_id = event.originator_id
            if isinstance(event, ev.Created):
                created.add(tree_id)
            elif tree_id not in created:
                wanted.setdefault(tree_id, set()).update(task_ids_named(event))
        records: dict[UUID, TreeRecord] = {}
        missing = [t for t in wanted if t not in held]
        for chunk in _chunks(missing, IN_CHUNK):
            for row in conn.execute(
                sa.select(trees).where(trees.c.id.in_([str(t) for t in chunk]))
            ):
                records[UUID(row.id)] = record_from_row(row)
        by_task: dict[str, TreeRecord] = {}
        for tree_id, task_ids in wanted.items():
            record = held.get(tree_id) or records.get(tree_id)
            if record is None:
                raise LookupError(f"the read models have no tree {tree_id}: rebuild them")
            by_task.update((t, record) for t in task_ids if t not in record.state.tasks)
        for chunk in _chunks(list(by_task), IN_CHUNK):
            for row in conn.execute(sa.select(tasks).where(tasks.c.id.in_(chunk))):
                record = by_task[row.id]
                if row.tree_id == str(record.state.id):
                    add_task_row(record, row)
        return records

    def _release(self, conn: sa.Connection, held: dict[UUID, TreeRecord], hold_tasks: int) -> None:
        """Rebuild: write (and stop holding) the trees that have finished, or every held
        tree once more than `hold_tasks` tasks are held. The rows of tasks removed from a
        held tree are deleted first, so that a later tree may take their ids."""
        gone = [task_id for record in held.values() for task_id in record.removed]
        for chunk in _chunks(gone, IN_CHUNK):
            conn.execute(tasks.delete().where(tasks.c.id.in_(chunk)))
        for record in held.values():
            record.removed.clear()
        if sum(len(record.state.tasks) for record in held.values()) > hold_tasks:
            done = list(held)
        else:
            done = [tree_id for tree_id, record in held.items() if record.finished_at]
        if done:
            self._write(conn, [held.pop(tree_id) for tree_id in done], {})

    def _writers(self, conn: sa.Connection) -> dict[str, RowWriter]:
        if self._row_writers is None:
            schema_map = conn.get_execution_options().get("schema_translate_map")
            self._row_writers = {
                table.name: RowWriter(table, conn.dialect, schema_map) for table in (tasks, trees)
            }
        return self._row_writers

    def _write(
        self,
        conn: sa.Connection,
        records: Iterable[TreeRecord],
        user_counts: dict[tuple[str, str], int],
    ) -> None:
        new_trees: list[dict[str, Any]] = []
        old_trees: list[dict[str, Any]] = []
        new_tasks: list[dict[str, Any]] = []
        old_tasks: list[dict[str, Any]] = []
        gone: list[str] = []
        for record in records:
            (new_trees if record.is_new else old_trees).append(record.tree_row())
            for task_id in record.new_tasks:
                new_tasks.append(record.task_row(task_id))
            for task_id in record.touched - record.new_tasks:
                old_tasks.append(record.task_row(task_id))
            gone.extend(record.removed)
        if gone:
            for chunk in _chunks(gone, IN_CHUNK):
                conn.execute(tasks.delete().where(tasks.c.id.in_(chunk)))
        writers = self._writers(conn)
        writers[trees.name].insert(conn, new_trees)
        writers[trees.name].update(conn, old_trees)
        writers[tasks.name].insert(conn, new_tasks)
        writers[tasks.name].update(conn, old_tasks)
        deltas = [
            {"user_key": who, "status": status, "count": n}
            for (who, status), n in sorted(user_counts.items())
            if n
        ]
        if deltas:
            upsert = _insert(conn, task_counts).values(
                user_key=sa.bindparam("user_key"),
                status=sa.bindparam("status"),
                count=sa.bindparam("count"),
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["user_key", "status"],
                    set_={"count": task_counts.c.count + upsert.excluded["count"]},
                ),
                deltas,
            )
            # a (user, status) with no task left has no row: as a rebuild would leave it
            conn.execute(task_counts.delete().where(task_counts.c.count == 0))


def _load_task(conn: sa.Connection, record: TreeRecord, task_id: str) -> None:
    """Read a stored task into `record` (for the rare row no prefetch foresaw)."""
    query = sa.select(tasks).where(tasks.c.id == task_id, tasks.c.tree_id == str(record.state.id))
    row = conn.execute(query).first()
    if row is None:
        raise LookupError(
            f"the read models miss task {task_id} of tree {record.state.id}: rebuild them"
        )
    add_task_row(record, row)


def _anchor(notification: Notification) -> str:
    return f"{notification.originator_id}:{notification.originator_version}"


def _insert(bind: Engine | sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT (it has ON CONFLICT on both databases)."""
    return (sqlite.insert if bind.dialect.name == "sqlite" else postgresql.insert)(table)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
