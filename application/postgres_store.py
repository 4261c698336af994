"""The PostgreSQL store: eventsourcing's PostgreSQL persistence, with one change to how a
transaction's events are inserted.

The library sends LOCK TABLE, NOTIFY and the INSERT (all events as one array parameter) in
psycopg's pipeline mode. With a large parameter (a Created event of several thousand tasks,
a few MB) the pipeline deadlocks on this machine: the server waits in ClientRead while the
client waits for results (compare psycopg issue #685). Large batches are therefore sent as
three plain statements in the same transaction; small ones keep the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import retry

PIPELINE_LIMIT_BYTES = 256 * 1024


class _Recorder(PostgresApplicationRecorder):
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if sum(len(e.state) for e in stored_events) < PIPELINE_LIMIT_BYTES:
            pipelined: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return pipelined
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_stored_events(curs, stored_events)  # locks the table, notifies
            ids: Sequence[int] | None = self._fetch_ids_after_insert_events(curs, stored_events)
            return ids


class PostgresStore(PostgresFactory):
    application_recorder_class = _Recorder
