"""One writer per tree across processes: a run holds its tree's lock until it ends.

Both kinds are released by the operating system or the database when the holder dies,
so a crashed process never leaves a tree locked: SQLite stores use flock(2) on a file per
tree beside the store; PostgreSQL stores use a session advisory lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from application.config import Settings


class TreeLocks(Protocol):
    def acquire(self, tree_id: UUID) -> bool: ...

    def release(self, tree_id: UUID) -> None: ...

    def close(self) -> None: ...


class FileLocks:
    """flock(2) on <home>/locks/<tree id>.lock. The file is removed on release; taking
    a lock checks the file it locked is still the one on disk (else it raced a removal)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._held: dict[UUID, int] = {}

    def _path(self, tree_id: UUID) -> Path:
        return self.directory / f"{tree_id}.lock"

    def acquire(self, tree_id: UUID) -> bool:
        if tree_id in self._held:
            return False
        path = self._path(tree_id)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._held[tree_id] = fd
                return True
            os.close(fd)  # the holder removed it as we opened it: try the new file

    def release(self, tree_id: UUID) -> None:
        fd = self._held.pop(tree_id, None)
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(tree_id))
            os.close(fd)

    def close(self) -> None:
        for tree_id in list(self._held):
            self.release(tree_id)


class AdvisoryLocks:
    """pg_try_advisory_lock on a connection of its own, keyed by schema and tree id."""

    def __init__(self, database_url: str, namespace: str) -> None:
        import psycopg

        self._connection: Any = psycopg.connect(database_url, autocommit=True)
        self._namespace = namespace
        self._held: set[UUID] = set()

    def _key(self, tree_id: UUID) -> int:
        digest = hashlib.blake2b(f"{self._namespace}/{tree_id}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)

    def acquire(self, tree_id: UUID) -> bool:
        if tree_id in self._held:
            return False
        row = self._connection.execute(
            "SELECT pg_try_advisory_lock(%s)", (self._key(tree_id),)
        ).fetchone()
        if row and row[0]:
            self._held.add(tree_id)
            return True
        return False

    def release(self, tree_id: UUID) -> None:
        if tree_id in self._held:
            self._held.discard(tree_id)
            self._connection.execute("SELECT pg_advisory_unlock(%s)", (self._key(tree_id),))

    def close(self) -> None:
        self._held.clear()
        self._connection.close()


def tree_locks(settings: Settings) -> TreeLocks:
    if settings.database_url:
        namespace = f"flowledger.run/{settings.database_schema or 'public'}"
        return AdvisoryLocks(settings.database_url, namespace)
    return FileLocks(settings.home / "locks")
