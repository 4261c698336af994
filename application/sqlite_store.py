"""The embedded store: eventsourcing's SQLite persistence, with the durability level chosen
by FLOWLEDGER_SQLITE_SYNCHRONOUS (PRAGMA synchronous on every connection; WAL mode as the
library sets it)."""

from __future__ import annotations

from eventsourcing.persistence import InfrastructureFactoryError
from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool, SQLiteFactory
from eventsourcing.utils import Environment, EnvType

SYNCHRONOUS = "SQLITE_SYNCHRONOUS"
LEVELS = ("FULL", "NORMAL")


class _Pool(SQLiteConnectionPool):
    synchronous = "FULL"

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection._sqlite_conn.execute(f"PRAGMA synchronous={self.synchronous}")
        return connection


class SQLiteStore(SQLiteFactory):
    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        level = (self.env.get(SYNCHRONOUS) or "FULL").upper()
        if level not in LEVELS:
            raise InfrastructureFactoryError(f"{SYNCHRONOUS} must be one of {LEVELS}: {level!r}")
        pool = self.datastore.pool
        pool.__class__ = _Pool  # the library has no hook for connection set-up
        pool.synchronous = level  # type: ignore[attr-defined]
