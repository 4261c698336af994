"""Settings read from the environment (FLOWLEDGER_*), and the store they select."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None = None
    database_schema: str | None = None
    snapshot_every: int = 100
    concurrency: int = 16
    plugins: tuple[str, ...] = ()
    allow_commands: bool = False
    poll_interval_s: float = 0.25
    sqlite_synchronous: str = "NORMAL"  # WAL + NORMAL: see docs/durability.md

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("FLOWLEDGER_HOME") or Path.home() / ".flowledger").expanduser()
        every = _positive(env, "FLOWLEDGER_SNAPSHOT_EVERY", 100)
        concurrency = _positive(env, "FLOWLEDGER_CONCURRENCY", 16, limit=100_000)
        plugins = tuple(
            p.strip() for p in env.get("FLOWLEDGER_PLUGINS", "").split(",") if p.strip()
        )
        for module in plugins:
            if not all(part.isidentifier() for part in module.split(".")):
                raise ConfigError(f"FLOWLEDGER_PLUGINS: {module!r} is not a module name")
        synchronous = (env.get("FLOWLEDGER_SQLITE_SYNCHRONOUS") or "NORMAL").strip().upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(
                f"FLOWLEDGER_SQLITE_SYNCHRONOUS must be FULL or NORMAL: {synchronous!r}"
            )
        command_allowlist(env)  # refuse a malformed list at start, not at the first command
        allow = env.get("FLOWLEDGER_ALLOW_COMMANDS", "0").strip()
        if allow not in ("", "0", "1"):
            raise ConfigError(f"FLOWLEDGER_ALLOW_COMMANDS must be 0 or 1: {allow!r}")
        schema = env.get("FLOWLEDGER_DATABASE_SCHEMA") or None
        if schema is not None and not IDENTIFIER.fullmatch(schema):
            raise ConfigError(
                "FLOWLEDGER_DATABASE_SCHEMA must be a plain identifier "
                f"(letters, digits, _; at most 40 characters): {schema!r}"
            )
        return cls(
            home=home,
            database_url=env.get("FLOWLEDGER_DATABASE_URL") or None,
            database_schema=schema,
            snapshot_every=every,
            concurrency=concurrency,
            plugins=plugins,
            allow_commands=allow == "1",
            sqlite_synchronous=synchronous,
        )

    @property
    def disabled_executors(self) -> frozenset[str]:
        return frozenset() if self.allow_commands else frozenset({"command"})

    @property
    def store_kind(self) -> str:
        return "postgresql" if self.database_url else "sqlite"

    @property
    def sqlite_path(self) -> Path:
        return self.home / "events.sqlite3"

    @property
    def store_location(self) -> str:
        if self.database_url:
            parts = urlsplit(self.database_url)
            host = parts.hostname or "localhost"
            return f"{host}:{_port(parts)}/{parts.path.lstrip('/')}"
        return str(self.sqlite_path)


def _positive(env: Mapping[str, str], name: str, default: int, limit: int = 2**31) -> int:
    raw = env.get(name) or str(default)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) < limit:
        raise ConfigError(f"{name} must be a positive integer below {limit}: {raw!r}")
    return int(raw)


def store_env(settings: Settings) -> dict[str, str]:
    """The eventsourcing library's settings for the store that `settings` selects."""
    env = {"IS_SNAPSHOTTING_ENABLED": "y"}
    if settings.database_url is None:
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"FLOWLEDGER_HOME {str(settings.home)!r} is not usable: {exc}"
            ) from exc
        env |= {
            "PERSISTENCE_MODULE": "application.sqlite_store:SQLiteStore",
            "SQLITE_DBNAME": str(settings.sqlite_path),
            "SQLITE_LOCK_TIMEOUT": "30",
            "SQLITE_SYNCHRONOUS": settings.sqlite_synchronous,
        }
        return env
    parts = urlsplit(settings.database_url)
    if parts.scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
        raise ConfigError(
            f"FLOWLEDGER_DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}"
        )
    dbname = parts.path.lstrip("/")
    if not dbname:
        raise ConfigError("FLOWLEDGER_DATABASE_URL must name a database: postgresql://host/db")
    env |= {
        "PERSISTENCE_MODULE": "application.postgres_store:PostgresStore",
        "POSTGRES_DBNAME": unquote(dbname),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(_port(parts)),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        # The library's insert function takes no table lock; the projector relies on the
        # lock that gives notification ids in commit order (ADR 0010).
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
    }
    if settings.database_schema:
        env["POSTGRES_SCHEMA"] = settings.database_schema
    return env


def _port(parts: SplitResult) -> int:
    try:
        return parts.port or 5432
    except ValueError:
        raise ConfigError(
            f"FLOWLEDGER_DATABASE_URL has an invalid port: {parts.netloc.rpartition(':')[2]!r}"
        ) from None


@contextmanager
def store_setup(settings: Settings) -> Iterator[None]:
    """Prepare the store and hold it while it is opened.

    On PostgreSQL: check that the database answers (a clear ConfigError if not), create the
    schema if missing, and hold an advisory lock so processes starting together do not race
    on the event store's table and function creation (PostgreSQL refuses concurrent
    CREATE OR REPLACE FUNCTION with "tuple concurrently updated").
    """
    if not settings.database_url:
        # On SQLite: hold a file lock while the store is opened, so processes opening a new
        # home together take turns (SQLite refuses a concurrent switch to WAL at once,
        # "database is locked", without waiting for the busy timeout).
        try:
            lock = open(settings.home / ".open.lock", "a+b")  # noqa: SIM115
        except OSError:  # an unwritable home: opening the store says so clearly
            yield
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        raise ConfigError(
            "FLOWLEDGER_DATABASE_URL is set but the PostgreSQL driver is missing: "
            "pip install 'flowledger[postgres]'"
        ) from None
    try:
        conn = psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot connect to FLOWLEDGER_DATABASE_URL: {exc}".strip()) from exc
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
        try:
            if settings.database_schema:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(settings.database_schema)
                    )
                )
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))


SETUP_LOCK = 0x666C6F77  # "flow": one key for every flowledger store on the server


ALLOWLIST = "FLOWLEDGER_COMMAND_ALLOWLIST"


def command_allowlist(environ: Mapping[str, str] | None = None) -> frozenset[str] | None:
    """The programs the `command` executor may run (FLOWLEDGER_COMMAND_ALLOWLIST: names on
    the PATH or absolute paths, comma-separated), or None when unset (any command, in a
    shell). With a list, commands run without a shell and their program must be listed."""
    env = os.environ if environ is None else environ
    text = env.get(ALLOWLIST, "").strip()
    if not text:
        return None
    programs = frozenset(p.strip() for p in text.split(",") if p.strip())
    bad = sorted(
        p
        for p in programs
        if any(c.isspace() for c in p) or ("/" in p.rstrip("/") and not p.startswith("/"))
    )
    if bad:
        raise ConfigError(
            f"{ALLOWLIST} holds program names or absolute paths, comma-separated: {bad[0]!r}"
        )
    return programs
