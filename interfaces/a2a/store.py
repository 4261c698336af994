"""A2A tasks and push-notification configs, persisted on flowledger's store.

On the embedded default they live in their own SQLite file beside the event store
(`<FLOWLEDGER_HOME>/a2a.sqlite3`), so they never take the event store's or the read models'
write locks; on PostgreSQL they are tables of the same database (and schema) as the events.

A task is stored whole (its protobuf bytes) beside the columns that ListTasks filters and
orders on, so filtering, ordering and paging all happen in SQL. Tasks are scoped to their
owner (`owner_of`): another owner's tasks are invisible, except to an admin context
(`is_admin`), which sees and deletes every owner's. A task's owner is set when it is first
saved and never changes: a save of another owner's task id by a non-admin is ignored (and
logged), so no caller can overwrite or take over a task that is not theirs.

Push-notification configs are scoped to their owner like the SDK's in-memory store: the key
is (task id, owner, config id), so the same config id set by two owners makes two configs,
and one owner can neither read, replace nor delete another's. Dispatch reads all of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from a2a.server.context import ServerCallContext
from a2a.server.tasks import PushNotificationConfigStore, TaskStore
from a2a.server.tasks.push_notification_config_store import (
    normalize_push_notification_config,
)
from a2a.types.a2a_pb2 import (
    ListTasksRequest,
    ListTasksResponse,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.constants import DEFAULT_LIST_TASKS_PAGE_SIZE
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import ListTasksCursor, decode_list_tasks_cursor, encode_list_tasks_cursor
from sqlalchemy.dialects import postgresql, sqlite

from application.config import SETUP_LOCK, ConfigError, Settings
from projections.schema import UTCDateTime

log = logging.getLogger("flowledger.a2a")

R = TypeVar("R")


class Io(Protocol):
    """Runs a blocking function off the event loop (asyncio.to_thread, Orchestrator.io)."""

    def __call__(self, func: Callable[..., R], /, *args: Any) -> Awaitable[R]: ...


# Task ids compare in code-point order on both databases (as Python's sort in the SDK's
# in-memory store does), so the ListTasks order and its cursors agree everywhere.
_ID = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")

# status_ts_ns is the status timestamp in nanoseconds, clamped to the 64-bit range (years
# 1677 to 2262: timestamps beyond compare as equal to the bound, in SQL); a task without
# one gets NO_TIMESTAMP, below every real value, so it sorts last when descending.
NO_TIMESTAMP = -(2**63)
_MAX_NS = 2**63 - 1

metadata = sa.MetaData()

tasks = sa.Table(
    "a2a_tasks",
    metadata,
    sa.Column("task_id", _ID, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("context_id", sa.Text, nullable=False),
    sa.Column("state", sa.Integer, nullable=False),  # TaskState's number
    sa.Column("status_ts_ns", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),  # Task.SerializeToString()
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # ListTasks: an owner's (or, for an admin, everyone's) tasks, newest status first
    sa.Index("ix_a2a_tasks_owner_recent", "owner", "status_ts_ns", "task_id"),
    sa.Index("ix_a2a_tasks_owner_context", "owner", "context_id", "status_ts_ns", "task_id"),
    sa.Index("ix_a2a_tasks_owner_state", "owner", "state", "status_ts_ns", "task_id"),
    sa.Index("ix_a2a_tasks_recent", "status_ts_ns", "task_id"),
    sa.Index("ix_a2a_tasks_state", "state"),  # unfinished(), at start-up
)

push_configs = sa.Table(
    "a2a_push_configs",
    metadata,
    sa.Column("task_id", _ID, primary_key=True),
    sa.Column("owner", sa.Text, primary_key=True),
    sa.Column("config_id", sa.Text, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),  # TaskPushNotificationConfig bytes
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

Rows = list[sa.Row[Any]]
Where = list[sa.ColumnElement[bool]]
Owned = list[tuple[Task, str]]  # tasks with their owner

UNFINISHED = (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)


def owner_of(context: ServerCallContext) -> str:
    """The caller's user name, or "" for an unauthenticated caller."""
    return context.user.user_name if context.user.is_authenticated else ""


def is_admin(context: ServerCallContext) -> bool:
    """An admin context sees every owner's tasks."""
    return bool(context.state.get("admin"))


def a2a_store_url(settings: Settings) -> sa.URL:
    if settings.database_url is None:
        return sa.URL.create("sqlite", database=str(settings.home / "a2a.sqlite3"))
    return sa.make_url(settings.database_url).set(drivername="postgresql+psycopg")


def create_a2a_engine(settings: Settings) -> sa.Engine:
    """An engine on the A2A tables; they (and the schema) are created if missing."""
    try:
        url = a2a_store_url(settings)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"FLOWLEDGER_DATABASE_URL is not a database URL: {exc}") from exc
    sqlite_store = url.get_backend_name() == "sqlite"
    engine: sa.Engine | None = None
    try:
        engine = _sqlite_engine(settings, url) if sqlite_store else _postgres_engine(settings, url)
        _create_tables(engine, None if sqlite_store else settings.database_schema)
    except ImportError:
        raise ConfigError(
            "FLOWLEDGER_DATABASE_URL is set but the PostgreSQL driver is missing: "
            "pip install 'flowledger[postgres]'"
        ) from None
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        if engine is not None:
            engine.dispose()
        raise ConfigError(f"cannot open the A2A store at {url.render_as_string()}: {exc}") from exc
    return engine


def _postgres_engine(settings: Settings, url: sa.URL) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    if settings.database_schema:
        engine = engine.execution_options(schema_translate_map={None: settings.database_schema})
    return engine


def _sqlite_engine(settings: Settings, url: sa.URL) -> sa.Engine:
    """WAL (readers never wait for a writer), the event store's sync level (these rows are
    not rebuilt from anything), and writers that take the lock when they begin."""
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})
    synchronous = "FULL" if settings.sqlite_synchronous == "FULL" else "NORMAL"

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        writing = conn.get_execution_options().get("writing", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


def _create_tables(engine: sa.Engine, schema: str | None) -> None:
    """Create what is missing, one process at a time on PostgreSQL."""
    with engine.connect() as conn:
        conn = conn.execution_options(writing=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SETUP_LOCK})")
                if schema:
                    conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            metadata.create_all(conn, checkfirst=True)


class _Sql:
    """Short transactions on the engine, each run through `io`."""

    def __init__(self, engine: sa.Engine, io: Io | None = None) -> None:
        self._engine = engine
        self._writer = engine.execution_options(writing=True)
        self._io: Io = io or asyncio.to_thread

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            yield conn


def _upsert(conn: sa.Connection, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT for the connection's database."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _now() -> datetime:
    return datetime.now(UTC)


def _clamp(ns: int) -> int:
    return max(NO_TIMESTAMP + 1, min(_MAX_NS, ns))


def _status_ns(task: Task) -> int:
    if task.HasField("status") and task.status.HasField("timestamp"):
        return _clamp(task.status.timestamp.ToNanoseconds())
    return NO_TIMESTAMP


def _cursor_ns(cursor: ListTasksCursor) -> int:
    return NO_TIMESTAMP if cursor.timestamp_ns is None else _clamp(cursor.timestamp_ns)


def _after(page_token: str) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor in `page_token`, in the ListTasks order."""
    cursor = decode_list_tasks_cursor(page_token)
    if cursor is None:
        raise InvalidParamsError("page_token is not a token that ListTasks returned")
    return sa.tuple_(tasks.c.status_ts_ns, tasks.c.task_id) < sa.tuple_(
        sa.literal(_cursor_ns(cursor), sa.BigInteger), sa.literal(cursor.task_id, _ID)
    )


def _list_filters(params: ListTasksRequest, owner: str | None) -> Where:
    """The WHERE of ListTasks (without the cursor); owner None: every owner's."""
    where: Where = []
    if owner is not None:
        where.append(tasks.c.owner == owner)
    if params.context_id:
        where.append(tasks.c.context_id == params.context_id)
    if params.status:
        where.append(tasks.c.state == int(params.status))
    if params.HasField("status_timestamp_after"):
        after = _clamp(params.status_timestamp_after.ToNanoseconds())
        where.append(tasks.c.status_ts_ns >= after)
    return where


def _page_token(task: Task) -> str:
    """The cursor after `task`: its own timestamp (as the SDK's stores make it), which
    `_after` clamps the way the column is."""
    ts = task.status.timestamp.ToNanoseconds() if task.status.HasField("timestamp") else None
    return encode_list_tasks_cursor(ListTasksCursor(timestamp_ns=ts, task_id=task.id))


class SqlTaskStore(_Sql, TaskStore):
    """The SDK's TaskStore on flowledger's database (see the module docstring)."""

    async def save(self, task: Task, context: ServerCallContext) -> None:
        owner, admin = owner_of(context), is_admin(context)
        row = {
            "task_id": task.id,
            "owner": owner,
            "context_id": task.context_id,
            "state": int(task.status.state),
            "status_ts_ns": _status_ns(task),
            "data": task.SerializeToString(),
        }
        if not await self._io(self._save, row, admin):
            log.warning("A2A task %s belongs to another owner than %r: not saved", task.id, owner)

    def _save(self, row: dict[str, Any], admin: bool) -> bool:
        with self._write() as conn:
            stmt = _upsert(conn, tasks).values(**row, updated_at=_now())
            changes = {
                name: stmt.excluded[name]
                for name in ("context_id", "state", "status_ts_ns", "data", "updated_at")
            }
            only_own = None if admin else tasks.c.owner == stmt.excluded.owner
            stmt = stmt.on_conflict_do_update(
                index_elements=[tasks.c.task_id], set_=changes, where=only_own
            )
            # RETURNING rather than rowcount (not reported for an INSERT on every driver):
            # no row when the task is another owner's
            return conn.execute(stmt.returning(tasks.c.task_id)).first() is not None

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        owner = None if is_admin(context) else owner_of(context)
        data = await self._io(self._get, task_id, owner)
        return None if data is None else Task.FromString(data)

    def _get(self, task_id: str, owner: str | None) -> bytes | None:
        stmt = sa.select(tasks.c.data).where(tasks.c.task_id == task_id)
        if owner is not None:
            stmt = stmt.where(tasks.c.owner == owner)
        with self._read() as conn:
            data: bytes | None = conn.execute(stmt).scalar_one_or_none()
            return data

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        owner = None if is_admin(context) else owner_of(context)
        where = _list_filters(params, owner)
        after = _after(params.page_token) if params.page_token else None
        page_size = params.page_size or DEFAULT_LIST_TASKS_PAGE_SIZE
        rows, total = await self._io(self._list, where, after, page_size)
        page = [Task.FromString(row.data) for row in rows[:page_size]]
        return ListTasksResponse(
            tasks=page,
            total_size=total,
            page_size=page_size,
            next_page_token=_page_token(page[-1]) if len(rows) > page_size else "",
        )

    def _list(
        self,
        where: Where,
        after: sa.ColumnElement[bool] | None,
        page_size: int,
    ) -> tuple[Rows, int]:
        """One more row than the page (is there a next page?), and the count of all."""
        count = sa.select(sa.func.count()).select_from(tasks).where(*where)
        page = (
            sa.select(tasks.c.data)
            .where(*where, *([] if after is None else [after]))
            .order_by(tasks.c.status_ts_ns.desc(), tasks.c.task_id.desc())
            .limit(page_size + 1)
        )
        with self._read() as conn:
            total = conn.execute(count).scalar_one()
            return list(conn.execute(page)), int(total)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        owner = None if is_admin(context) else owner_of(context)
        if not await self._io(self._delete, task_id, owner):
            log.warning("no A2A task %s of owner %r to delete", task_id, owner)

    def _delete(self, task_id: str, owner: str | None) -> bool:
        stmt = sa.delete(tasks).where(tasks.c.task_id == task_id)
        if owner is not None:
            stmt = stmt.where(tasks.c.owner == owner)
        with self._write() as conn:
            return bool(conn.execute(stmt).rowcount)

    async def unfinished(self) -> Owned:
        """Every owner's tasks still SUBMITTED or WORKING, with their owner (for recovery at
        start-up), oldest status first."""
        rows = await self._io(self._unfinished)
        return [(Task.FromString(row.data), row.owner) for row in rows]

    def _unfinished(self) -> Rows:
        stmt = (
            sa.select(tasks.c.data, tasks.c.owner)
            .where(tasks.c.state.in_([int(state) for state in UNFINISHED]))
            .order_by(tasks.c.status_ts_ns, tasks.c.task_id)
        )
        with self._read() as conn:
            return list(conn.execute(stmt))


class SqlPushConfigStore(_Sql, PushNotificationConfigStore):
    """The SDK's PushNotificationConfigStore on flowledger's database, scoped by owner."""

    async def set_info(
        self,
        task_id: str,
        notification_config: TaskPushNotificationConfig,
        context: ServerCallContext,
    ) -> TaskPushNotificationConfig:
        stored = normalize_push_notification_config(task_id, notification_config)
        row = {
            "task_id": task_id,
            "owner": owner_of(context),
            "config_id": stored.id,
            "data": stored.SerializeToString(),
        }
        await self._io(self._set, row)
        return stored

    def _set(self, row: dict[str, Any]) -> None:
        with self._write() as conn:
            stmt = _upsert(conn, push_configs).values(**row, updated_at=_now())
            stmt = stmt.on_conflict_do_update(
                index_elements=list(push_configs.primary_key.columns),
                set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at},
            )
            conn.execute(stmt)

    async def get_info(
        self, task_id: str, context: ServerCallContext
    ) -> list[TaskPushNotificationConfig]:
        """The caller's configs for the task."""
        return await self._io(self._select, task_id, owner_of(context))

    async def get_info_for_dispatch(self, task_id: str) -> list[TaskPushNotificationConfig]:
        """Every owner's configs for the task."""
        return await self._io(self._select, task_id, None)

    def _select(self, task_id: str, owner: str | None) -> list[TaskPushNotificationConfig]:
        stmt = sa.select(push_configs).where(push_configs.c.task_id == task_id)
        if owner is not None:
            stmt = stmt.where(push_configs.c.owner == owner)
        stmt = stmt.order_by(push_configs.c.owner, push_configs.c.config_id)
        with self._read() as conn:
            rows = list(conn.execute(stmt))
        return [config for row in rows if (config := _config(row)) is not None]

    async def delete_info(
        self, task_id: str, context: ServerCallContext, config_id: str | None = None
    ) -> None:
        """Delete one of the caller's configs for the task, or all of them (config_id None)."""
        owner = owner_of(context)
        if not await self._io(self._delete, task_id, owner, config_id):
            log.warning(
                "no push config %s of task %s, owner %r, to delete", config_id, task_id, owner
            )

    def _delete(self, task_id: str, owner: str, config_id: str | None) -> bool:
        stmt = sa.delete(push_configs).where(
            push_configs.c.task_id == task_id, push_configs.c.owner == owner
        )
        if config_id is not None:
            stmt = stmt.where(push_configs.c.config_id == config_id)
        with self._write() as conn:
            return bool(conn.execute(stmt).rowcount)


def _config(row: sa.Row[Any]) -> TaskPushNotificationConfig | None:
    try:
        config: TaskPushNotificationConfig = TaskPushNotificationConfig.FromString(row.data)
        return config
    except Exception:
        log.exception("cannot decode push config %s of task %s", row.config_id, row.task_id)
        return None
