"""Bulk row writes for the projector: the hot path of a rebuild.

SQLAlchemy compiles each INSERT / UPDATE-by-id once per dialect; the rows then go to the
DB-API's executemany with their values encoded here, column by column (JSON by msgspec, times
as the fixed-width ISO text UTCDateTime keeps on SQLite). Measured on a 1M-event rebuild,
SQLAlchemy's per-row parameter processing cost more than SQLite's insert itself; the values
written are exactly those the column types would write, so reads go through SQLAlchemy as
usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from projections.schema import UTCDateTime

ID_PARAM = "_id"
COPY_MIN_ROWS = 50  # fewer go by executemany (a COPY has its own round trips to set up)
_encode_json = msgspec.json.Encoder().encode


def _json(value: Any) -> str | None:
    return None if value is None else _encode_json(value).decode()


def _iso(value: datetime | None) -> str | None:
    """UTCDateTime's SQLite text; one event's timestamp is often on many rows: cached."""
    if value is None:
        return None
    text = _iso_cache.get(value)
    if text is None:
        if len(_iso_cache) > 10_000:
            _iso_cache.clear()
        text = _iso_cache[value] = value.astimezone(UTC).isoformat(timespec="microseconds")
    return text


_iso_cache: dict[datetime, str] = {}


def _same(value: Any) -> Any:
    return value


def _no_nul(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL. Ids, names and user ids are refused with one at the
    door; free text (an executor's error message) has it shown as U+FFFD here, and kept
    exactly in the event store."""
    return value if value is None or "\x00" not in value else value.replace("\x00", "\ufffd")


def _encoder(column: sa.Column[Any], dialect: Dialect) -> Callable[[Any], Any]:
    if isinstance(column.type, sa.JSON):
        return _json
    if isinstance(column.type, UTCDateTime) and dialect.name == "sqlite":
        return _iso
    if isinstance(column.type, sa.Text) and dialect.name == "postgresql":
        return _no_nul
    return _same


class RowWriter:
    """INSERT and UPDATE (by `id`) of whole rows of `table`, for one dialect and schema."""

    def __init__(
        self, table: sa.Table, dialect: Dialect, schema_map: dict[str | None, str] | None
    ) -> None:
        options: dict[str, Any] = {"dialect": dialect}
        if schema_map:
            options |= {"schema_translate_map": schema_map, "render_schema_translate": True}
        insert = table.insert().compile(**options)
        update = (
            table.update()
            .where(table.c.id == sa.bindparam(ID_PARAM))
            .values({c.name: sa.bindparam(c.name) for c in table.columns if c.name != "id"})
            .compile(**options)
        )
        encoders = {c.name: _encoder(c, dialect) for c in table.columns}
        encoders[ID_PARAM] = _same
        self._insert = (str(insert), self._shape(insert, encoders))
        self._update = (str(update), self._shape(update, encoders))
        self._copy: tuple[str, Callable[[dict[str, Any]], Any]] | None = None
        if dialect.name == "postgresql":
            quote = dialect.identifier_preparer.quote
            schema = (schema_map or {}).get(table.schema, table.schema)
            target = quote(table.name) if schema is None else f"{quote(schema)}.{quote(table.name)}"
            names = [c.name for c in table.columns]
            columns = ", ".join(quote(name) for name in names)
            self._copy = (
                f"COPY {target} ({columns}) FROM STDIN",
                self._shape(insert, encoders, names),
            )

    @staticmethod
    def _shape(
        compiled: sa.Compiled,
        encoders: dict[str, Callable[[Any], Any]],
        order: list[str] | None = None,
    ) -> Callable[[dict[str, Any]], Any]:
        """A function from a row to the DB-API parameters: a tuple in the statement's order
        (SQLite's qmark style) or a dict (psycopg); with `order`, a tuple in that order.
        Only columns that need it are encoded."""
        names: list[str] | None = order or compiled.positiontup  # type: ignore[attr-defined]
        if names is None:
            names = list(compiled.params)  # the statement's bind names
        special = [
            (i, encoders[name]) for i, name in enumerate(names) if encoders[name] is not _same
        ]
        positional = order is not None or compiled.positiontup is not None  # type: ignore[attr-defined]

        def shape(row: dict[str, Any]) -> Any:
            values = [row[name] for name in names]
            for i, encode in special:
                values[i] = encode(values[i])
            return tuple(values) if positional else dict(zip(names, values, strict=True))

        return shape

    def insert(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """New rows; on PostgreSQL, COPY once there are COPY_MIN_ROWS of them."""
        if self._copy is not None and len(rows) >= COPY_MIN_ROWS:
            self._copy_rows(conn, rows)
            return
        self._run(conn, self._insert, rows)

    def _copy_rows(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """COPY through the DB-API connection of `conn` (in its transaction); its errors are
        raised as SQLAlchemy would (IntegrityError, OperationalError...), and a connection
        that dropped is invalidated, as for any other statement."""
        assert self._copy is not None
        sql, shape = self._copy
        driver: Any = conn.connection.driver_connection  # psycopg
        dbapi = conn.dialect.loaded_dbapi
        try:
            with driver.cursor() as cursor, cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(shape(row))
        except dbapi.Error as exc:
            dropped = conn.dialect.is_disconnect(exc, driver, None)
            if dropped:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                sql,
                None,
                exc,
                dbapi.Error,
                connection_invalidated=dropped,
                dialect=conn.dialect,
            ) from exc

    def update(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Rows keyed by `id`: every other column is overwritten."""
        self._run(conn, self._update, [{**row, ID_PARAM: row["id"]} for row in rows])

    @staticmethod
    def _run(
        conn: sa.Connection,
        statement: tuple[str, Callable[[dict[str, Any]], Any]],
        rows: Sequence[dict[str, Any]],
    ) -> None:
        if rows:
            sql, shape = statement
            conn.exec_driver_sql(sql, [shape(row) for row in rows])
