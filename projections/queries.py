"""Queries on the read models: the task JSON of API.md, lists, counts and running trees."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from application.bulk import fewer_collections
from application.ledger import check_count
from application.views import iso
from domain.errors import FieldError, InvalidSpec, TaskNotFound
from domain.specs import is_text
from domain.status import TaskStatus, TreeStatus
from projections.fold import user_key
from projections.schema import task_counts, tasks, trees

MAX_LIMIT = 1_000
IN_CHUNK = 500  # ids per IN (...) lookup
STATUSES = tuple(s.value for s in TaskStatus)


def task_json(row: Any, tree_status: str | None = None) -> dict[str, Any]:
    """A task row as API.md's task JSON (what application.views.task_json gives from the
    aggregate); the root also carries `tree_status`."""
    data: dict[str, Any] = {
        "id": row.id,
        "parent_id": row.parent_id,
        "user_id": row.user_id,
        "name": row.name,
        "status": row.status,
        "priority": row.priority,
        "dependencies": row.dependencies,
        "inputs": row.inputs,
        "params": row.params,
        "schemas": row.schemas,
        "result": row.result,
        "error": row.error,
        "progress": row.progress,
        "attempts": row.attempts,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "completed_at": iso(row.completed_at),
        "has_children": row.child_count > 0,
        "original_task_id": row.original_task_id,
        "has_copy": row.has_copy,
        "tree_id": row.tree_id,
    }
    if row.is_root:
        data["tree_status"] = tree_status
    return data


_WITH_TREE_STATUS = sa.select(tasks, trees.c.status.label("tree_status")).outerjoin(
    trees, sa.and_(tasks.c.is_root, trees.c.id == tasks.c.tree_id)
)


def _json(row: Any) -> dict[str, Any]:
    return task_json(row, row.tree_status)


def _lookup_id(task_id: object) -> str:
    """An id that can be looked up; anything else (not text, a NUL, a lone surrogate) names
    no task, as the Ledger says."""
    if isinstance(task_id, str) and "\x00" not in task_id and is_text(task_id):
        return task_id
    shown = task_id if isinstance(task_id, str) else repr(task_id)
    raise TaskNotFound(f"task {shown!r} not found", ids=(shown,))


def _check_user(user_id: object) -> None:
    if user_id is not None and (
        not isinstance(user_id, str) or not user_id or "\x00" in user_id or not is_text(user_id)
    ):
        reason = "must be a user id (non-empty text without NUL)"
        raise InvalidSpec(f"user_id: {reason}", fields=[FieldError("user_id", reason)])


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        reason = f"must be one of {', '.join(STATUSES)}"
        raise InvalidSpec(f"status: {reason}", fields=[FieldError("status", reason)])


class ReadModel:
    """Read-only access to the projected tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _rows(self, query: sa.Select[Any]) -> list[Any]:
        """Run one read. A connection the server dropped (a restart) is found by its
        failure, not by a ping before every read (a fifth of a tasks.get on PostgreSQL):
        the pool discards it and the read runs once more on a fresh one."""
        for attempt in (1, 2):
            try:
                with self.engine.connect() as conn:
                    return list(conn.execute(query))
            except sa.exc.DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def task(self, task_id: Any) -> dict[str, Any]:
        found = self._rows(_WITH_TREE_STATUS.where(tasks.c.id == _lookup_id(task_id)))
        if not found:
            raise TaskNotFound(f"task {task_id!r} not found", ids=(task_id,))
        return _json(found[0])

    @fewer_collections()
    def tree(self, task_id: Any) -> dict[str, Any]:
        """The whole tree holding `task_id`, from its root, children nested by priority.
        One statement: one consistent snapshot even while a batch is being applied."""
        tree_of = sa.select(tasks.c.tree_id).where(tasks.c.id == _lookup_id(task_id))
        rows = self._rows(
            _WITH_TREE_STATUS.where(tasks.c.tree_id == tree_of.scalar_subquery()).order_by(
                tasks.c.priority, tasks.c.seq
            )
        )
        nodes = {row.id: _json(row) | {"children": []} for row in rows}
        root: dict[str, Any] | None = None
        for row in rows:
            node = nodes[row.id]
            if row.parent_id is None:
                root = node
            else:
                nodes[row.parent_id]["children"].append(node)
        if root is None or task_id not in nodes:
            raise TaskNotFound(f"task {task_id!r} not found", ids=(task_id,))
        return root

    @fewer_collections()
    def children(self, task_id: str) -> list[dict[str, Any]]:
        """Direct children of `task_id`, most urgent first (priority, then creation)."""
        self.task(task_id)
        rows = self._rows(
            _WITH_TREE_STATUS.where(tasks.c.parent_id == task_id).order_by(
                tasks.c.priority, tasks.c.seq
            )
        )
        return [_json(r) for r in rows]

    @fewer_collections()
    def list_tasks(
        self,
        *,
        user_id: str | None = None,
        status: str | None = None,
        root_only: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Tasks newest first, filtered by user, status and whether they are roots."""
        _check_user(user_id)
        _check_status(status)
        check_count("limit", limit, minimum=1)
        check_count("offset", offset, minimum=0)
        query = _WITH_TREE_STATUS
        if user_id is not None:
            query = query.where(tasks.c.user_id == user_id)
        if status is not None:
            query = query.where(tasks.c.status == status)
        if root_only:
            query = query.where(tasks.c.is_root)
        query = query.order_by(tasks.c.created_at.desc(), tasks.c.seq.desc(), tasks.c.id)
        return [_json(r) for r in self._rows(query.limit(min(limit, MAX_LIMIT)).offset(offset))]

    def running(self, *, user_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The root tasks of trees in progress (in any process), newest first."""
        _check_user(user_id)
        check_count("limit", limit, minimum=1)
        query = _WITH_TREE_STATUS.where(tasks.c.is_root, trees.c.status == TreeStatus.IN_PROGRESS)
        if user_id is not None:
            query = query.where(trees.c.user_id == user_id)
        query = query.order_by(tasks.c.created_at.desc(), tasks.c.id).limit(min(limit, MAX_LIMIT))
        return [_json(r) for r in self._rows(query)]

    def running_count(self, *, user_id: str | None = None) -> dict[str, Any]:
        """How many trees are in progress, and how many of their tasks are running now."""
        _check_user(user_id)
        query = sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(trees.c.in_progress), 0)
        ).where(trees.c.status == TreeStatus.IN_PROGRESS)
        if user_id is not None:
            query = query.where(trees.c.user_id == user_id)
        count, tasks_running = self._rows(query)[0]
        out: dict[str, Any] = {"count": int(count), "tasks_in_progress": int(tasks_running)}
        if user_id is not None:
            out["user_id"] = user_id
        return out

    def running_status(self, task_ids: list[Any]) -> list[dict[str, Any]]:
        """Per id (in the order given): its status, progress, error and whether it runs."""
        if not isinstance(task_ids, list):
            reason = "must be a list of task ids"
            raise InvalidSpec(f"task_ids: {reason}", fields=[FieldError("task_ids", reason)])
        wanted = [t for t in task_ids if isinstance(t, str) and "\x00" not in t and is_text(t)]
        found: dict[str, Any] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            found |= {r.id: r for r in self._rows(_WITH_TREE_STATUS.where(tasks.c.id.in_(chunk)))}
        out = []
        for task_id in task_ids:
            row = found.get(task_id) if isinstance(task_id, str) else None
            if row is None:
                shown = task_id if isinstance(task_id, str) else repr(task_id)
                out.append({"task_id": shown, "status": "not_found", "is_running": False})
                continue
            out.append(
                {
                    "task_id": task_id,
                    "context_id": task_id,
                    "name": row.name,
                    "status": row.status,
                    "progress": row.progress,
                    "error": row.error,
                    "is_running": row.status == TaskStatus.IN_PROGRESS,
                    "attempts": row.attempts,
                    "retry_at": iso(row.retry_at),
                    "started_at": iso(row.started_at),
                    "updated_at": iso(row.updated_at),
                }
            )
        return out

    def count(self, *, user_id: str | None = None, status: str | None = None) -> dict[str, Any]:
        """Tasks by status (all users, or one), from the kept counts: no table scan."""
        _check_user(user_id)
        _check_status(status)
        query = sa.select(task_counts.c.status, sa.func.sum(task_counts.c.count)).group_by(
            task_counts.c.status
        )
        if user_id is not None:
            query = query.where(task_counts.c.user_key == user_key(user_id))
        by_status = dict.fromkeys(STATUSES, 0)
        for name, n in self._rows(query):
            by_status[name] = int(n)
        out: dict[str, Any] = {
            "total": by_status[status] if status else sum(by_status.values()),
            "by_status": by_status if status is None else {status: by_status[status]},
        }
        if user_id is not None:
            out["user_id"] = user_id
        return out

    def owner(self, task_id: Any) -> str | None:
        """The user who owns `task_id`'s tree (its root's user_id); TaskNotFound if none."""
        query = (
            sa.select(trees.c.user_id)
            .select_from(tasks.join(trees, trees.c.id == tasks.c.tree_id))
            .where(tasks.c.id == _lookup_id(task_id))
        )
        found = self._rows(query)
        if not found:
            raise TaskNotFound(f"task {task_id!r} not found", ids=(task_id,))
        user: str | None = found[0].user_id
        return user

    def resumable(self) -> list[UUID]:
        """Trees asked to run that have not finished (what a restart should resume)."""
        query = (
            sa.select(trees.c.id)
            .where(
                trees.c.run_requested,
                trees.c.status.in_([TreeStatus.PENDING, TreeStatus.IN_PROGRESS]),
            )
            .order_by(trees.c.created_at, trees.c.id)
        )
        return [UUID(row.id) for row in self._rows(query)]

    @fewer_collections()
    def tree_rows(self) -> list[dict[str, Any]]:
        """Every tree row (for audits and tests)."""
        return [dict(r._mapping) for r in self._rows(sa.select(trees).order_by(trees.c.id))]
