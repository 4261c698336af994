"""The read models' tables (SQLAlchemy Core), and the engine that reaches them.

On the embedded default they live in their own SQLite file beside the event store
(`<FLOWLEDGER_HOME>/readmodels.sqlite3`), so the projector never competes with the runner
for the event store's write lock; on PostgreSQL they are tables of the same database (and
schema) as the events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine

from application.config import SETUP_LOCK, ConfigError, Settings

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime on both databases. SQLite has no date type: there it is ISO 8601
    text of a fixed width (so text order is time order), written and read by the C
    functions isoformat/fromisoformat rather than SQLAlchemy's per-field formatting."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return value.astimezone(UTC).isoformat(timespec="microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


tasks = sa.Table(
    "fl_tasks",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tree_id", sa.Text, nullable=False),
    sa.Column("parent_id", sa.Text),
    sa.Column("is_root", sa.Boolean, nullable=False),
    sa.Column("user_id", sa.Text),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("priority", sa.BigInteger, nullable=False),
    sa.Column("dependencies", sa.JSON, nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("schemas", sa.JSON, nullable=False),
    sa.Column("result", sa.JSON(none_as_null=True)),
    sa.Column("error", sa.Text),
    sa.Column("progress", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),  # creation order within the tree
    sa.Column("child_count", sa.Integer, nullable=False),
    sa.Column("original_task_id", sa.Text),
    sa.Column("has_copy", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("retry_at", UTCDateTime),  # while a failed attempt waits for its retry
    sa.Column("updated_at", UTCDateTime, nullable=False),  # the last event that changed it
    # tasks.list: by user, by status, roots only, newest first (ties: creation order)
    sa.Index("ix_fl_tasks_recent", "is_root", "created_at", "seq"),
    sa.Index("ix_fl_tasks_user_recent", "user_id", "is_root", "created_at", "seq"),
    sa.Index("ix_fl_tasks_status_recent", "status", "is_root", "created_at", "seq"),
    sa.Index("ix_fl_tasks_tree", "tree_id", "seq"),
    sa.Index("ix_fl_tasks_parent", "parent_id", "priority", "seq"),
)

trees = sa.Table(
    "fl_trees",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("root_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text),
    sa.Column("status", sa.Text, nullable=False),  # derived: domain.status.tree_status
    sa.Column("version", sa.Integer, nullable=False),  # the last event applied
    sa.Column("task_count", sa.Integer, nullable=False),
    sa.Column("pending", sa.Integer, nullable=False),
    sa.Column("in_progress", sa.Integer, nullable=False),
    sa.Column("completed", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("cancelled", sa.Integer, nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),
    sa.Column("run_requested", sa.Boolean, nullable=False),
    sa.Column("source_tree_id", sa.Text),
    sa.Column("copy_count", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),  # when it became terminal
    # tasks.running.*: trees in progress, by user; resume: run requested and not terminal
    sa.Index("ix_fl_trees_status", "status", "created_at"),
    sa.Index("ix_fl_trees_user_status", "user_id", "status", "created_at"),
)

# Tasks per (user, status), kept by the projector: tasks.count without a scan. user_key is
# the task's user_id, or "" for tasks without one.
task_counts = sa.Table(
    "fl_task_counts",
    metadata,
    sa.Column("user_key", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# The tracking record: the last notification applied, and which event sits there (so a
# position that runs ahead of the log, after the event store lost or was reset to older
# events, is noticed rather than skipping the new ones). Written in the same transaction as
# the rows it accounts for.
positions = sa.Table(
    "fl_projection_position",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("anchor", sa.Text),  # "<originator id>:<version>" of the event at `position`
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

READ_MODELS = (tasks, trees, task_counts)
PROJECTION = "read_models"
# Bump when a table changes shape: read models of another version are dropped and rebuilt
# from the events when next opened (they hold nothing the events do not).
SCHEMA_VERSION = 1


def _json_dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


READ_POOL_SIZE = 12  # kept open: a server's I/O threads, the projector and a spare or two
# (SQLAlchemy's default keeps 5 and closes the rest after each use: a connect per read)


def read_model_url(settings: Settings) -> sa.URL:
    if settings.database_url is None:
        return sa.URL.create("sqlite", database=str(settings.home / "readmodels.sqlite3"))
    url = sa.make_url(settings.database_url)
    return url.set(drivername="postgresql+psycopg")


def create_read_engine(settings: Settings) -> Engine:
    """An engine on the read-model database; the tables are created if missing."""
    url = read_model_url(settings)
    options: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "json_deserializer": msgspec.json.decode,
    }
    if url.get_backend_name() == "sqlite":
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **options)
        _sqlite_setup(engine)
    else:
        # No pre-ping: reads retry once on a dropped connection (ReadModel._rows), the
        # projector's batches back off and retry.
        engine = sa.create_engine(url, pool_size=READ_POOL_SIZE, **options)
        if settings.database_schema:
            engine = engine.execution_options(schema_translate_map={None: settings.database_schema})
    schema = None if url.get_backend_name() == "sqlite" else settings.database_schema
    try:
        with engine.connect() as conn:
            current = _is_current(conn, schema)
            conn.rollback()
        if not current:
            _recreate(engine, schema)
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(
            f"cannot open the read models at {url.render_as_string()}: {exc}"
        ) from exc
    return engine


def _is_current(conn: sa.Connection, schema: str | None) -> bool:
    """Every table exists with the columns of this version."""
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name, schema=schema):
            return False
        found = {c["name"] for c in inspector.get_columns(table.name, schema=schema)}
        if found != {c.name for c in table.columns}:
            return False
    versions = conn.execute(sa.select(positions.c.schema_version).distinct()).scalars()
    return set(versions) <= {SCHEMA_VERSION}


def _recreate(engine: Engine, schema: str | None) -> None:
    """Create the tables, or replace those of another version, under the write lock (one
    process at a time)."""
    with engine.connect() as conn:
        conn = conn.execution_options(writing=True)
        with conn.begin():
            if conn.dialect.name != "sqlite":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SETUP_LOCK})")
                if schema:
                    conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            if not _is_current(conn, schema):
                metadata.drop_all(conn, checkfirst=True)
                metadata.create_all(conn)


def _sqlite_setup(engine: Engine) -> None:
    """WAL (readers never wait for the projector), NORMAL sync (the read models can always
    be rebuilt from the events), and writers that take the lock when they begin, so two
    projectors serialise on it instead of failing to upgrade a read lock."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # a projector batch rewrites index pages all over the tables: keep them in memory,
        # and let the WAL grow to ~64 MB between checkpoints so each page is written once
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA wal_autocheckpoint=16384")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        writing = conn.get_execution_options().get("writing", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
