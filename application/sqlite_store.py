"""The embedded store: eventsourcing's SQLite persistence, with the durability level chosen
by FLOWLEDGER_SQLITE_SYNCHRONOUS (PRAGMA synchronous on every connection; WAL mode as the
library sets it)."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactoryError, StoredEvent
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteFactory,
)
from eventsourcing.utils import Environment, EnvType

SYNCHRONOUS = "SQLITE_SYNCHRONOUS"
LEVELS = ("FULL", "NORMAL")


class _Pool(SQLiteConnectionPool):
    synchronous = "NORMAL"

    def _create_connection(self) -> SQLiteConnection:
        connection = self._connect_waiting()
        connection._sqlite_conn.execute(f"PRAGMA synchronous={self.synchronous}")
        return connection

    def _connect_waiting(self) -> SQLiteConnection:
        """The library's connect, retried while the database is locked: its switch of a
        new store to WAL fails at once (no busy wait) while another process writes, say
        creating its tables. Waits at most the lock timeout, like any other statement."""
        deadline = time.monotonic() + (self.lock_timeout or 5)
        pause = 0.01
        while True:
            try:
                return super()._create_connection()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)  # a retry's backoff, not a synchronisation
            pause = min(pause * 2, 0.5)


@functools.lru_cache(maxsize=1 << 14)
def _uuid(text: str) -> UUID:
    """Stored ids are text here: a log's entries name few trees over and over, and parsing
    one costs more than finding it again (a projector reads millions)."""
    return UUID(text)


class _Recorder(SQLiteApplicationRecorder):
    """Inserts a transaction's events with one executemany (the library runs one INSERT per
    event). Rowids of one statement are consecutive: the writer holds the database lock.
    Reads parse each originator id once (a bounded cache of UUIDs, which are immutable)."""

    def convert_originator_id(self, originator_id: str) -> UUID | str:
        if self.datastore.originator_id_type == "uuid":
            return _uuid(originator_id)
        return originator_id

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        if len(stored_events) < 2:
            return super()._insert_events(c, stored_events)
        rows = [
            (
                s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
                s.originator_version,
                s.topic,
                s.state,
            )
            for s in stored_events
        ]
        c.sqlite_cursor.executemany(self.insert_events_statement, rows)
        c.execute("SELECT last_insert_rowid()")
        last = int(c.fetchone()[0])
        return list(range(last - len(rows) + 1, last + 1))


class SQLiteStore(SQLiteFactory):
    application_recorder_class = _Recorder

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        level = (self.env.get(SYNCHRONOUS) or "NORMAL").upper()
        if level not in LEVELS:
            raise InfrastructureFactoryError(f"{SYNCHRONOUS} must be one of {LEVELS}: {level!r}")
        pool = self.datastore.pool
        pool.__class__ = _Pool  # the library has no hook for connection set-up
        pool.synchronous = level  # type: ignore[attr-defined]
