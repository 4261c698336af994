"""The Ledger: flowledger's event-sourced application. Commands are load -> decide -> save."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import PersistenceError, RecordConflictError, StoredEvent

from application.bulk import fewer_collections
from application.claims import TaskIdClaimed, TaskIdReleased, claim_id
from application.codec import EventCodec
from application.config import ConfigError, Settings, store_env, store_setup
from application.executors import ExecutorRegistry, loaded_registry
from application.snapshots import SNAPSHOT_TOPIC, TreeSnapshot, should_snapshot
from domain.copying import CopyMode, CopyPlan, plan_copy
from domain.errors import (
    Conflict,
    DuplicateId,
    FieldError,
    InvalidSpec,
    NotCancelable,
    TaskNotFound,
    TreeRejected,
)
from domain.events import TREE_EVENTS, TreeEvent
from domain.run_options import executor_id_of
from domain.specs import Dependency, TaskChanges, TaskSpec, is_text, read_tasks
from domain.tree import TaskTree, project_tree, utcnow

R = TypeVar("R")
MAX_RETRIES = 8


def backoff(attempt: int) -> None:
    """Jittered exponential pause before retrying a lost write race (at most ~0.3 s)."""
    time.sleep(random.uniform(0, min(0.3, 0.002 * 2**attempt)))


def _as_id(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


def check_count(field: str, value: object, *, minimum: int) -> None:
    """An integer argument within [minimum, 2**63): else InvalidSpec naming `field`."""
    if type(value) is not int or not minimum <= value < 2**63:
        reason = f"must be an integer from {minimum} to 2**63-1"
        raise InvalidSpec(f"{field}: {reason}", fields=[FieldError(field, reason)])


def cancel_report(
    task_id: str, outcome: list[str] | TaskNotFound | NotCancelable
) -> dict[str, Any]:
    """What a cancel of `task_id` did: the ids it cancelled, or why it could not."""
    if isinstance(outcome, TaskNotFound):
        return {"task_id": task_id, "status": "not_found", "message": str(outcome)}
    if isinstance(outcome, NotCancelable):
        return {"task_id": task_id, "status": "not_cancelable", "message": str(outcome)}
    return {
        "task_id": task_id,
        "status": "cancelled",
        "message": f"cancelled {len(outcome)} task(s)",
        "cancelled_ids": outcome,
    }


class Ledger(Application[UUID]):
    """Stores every tree as the events of one TaskTree aggregate."""

    name = "flowledger"

    def __init__(
        self, settings: Settings | None = None, executors: ExecutorRegistry | None = None
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.last_position = 0  # the notification log position of this Ledger's last write
        self.on_stored: list[Callable[[int], None]] = []
        self.executors = executors or loaded_registry(self.settings.plugins)
        env = store_env(self.settings)
        with store_setup(self.settings):
            try:
                super().__init__(env=env)
            except (PersistenceError, sqlite3.Error, OSError) as exc:
                raise ConfigError(
                    f"cannot open the event store at {self.settings.store_location}: {exc}"
                ) from exc

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = Ledger.name  # the store's table names: a subclass shares the store

    def construct_mapper(self) -> EventCodec:
        types: list[tuple[str, type[Any]]] = [(f"tree.{t.__name__}", t) for t in TREE_EVENTS]
        types += [("claim.TaskIdClaimed", TaskIdClaimed), ("claim.TaskIdReleased", TaskIdReleased)]
        types.append((SNAPSHOT_TOPIC, TreeSnapshot))
        return EventCodec(types, stale_prefixes=("tree.Snapshot",))

    # -- loading -------------------------------------------------------------------------
    @fewer_collections()
    def load(
        self, tree_id: UUID, version: int | None = None, *, removed_too: bool = False
    ) -> TaskTree:
        """A tree from its latest usable snapshot plus the events after it. A tree whose root
        was removed is not found, unless `removed_too` (then it is empty, and terminal)."""
        tree: TaskTree | None = None
        after: int | None = None
        if self.snapshots is not None:
            for snapshot in self.snapshots.get(tree_id, desc=True, limit=1, lte=version):
                if isinstance(snapshot, TreeSnapshot):
                    tree, after = TaskTree(snapshot.state), snapshot.originator_version
        events = self.events.get(tree_id, gt=after, lte=version)
        loaded = project_tree(tree, events)  # type: ignore[arg-type]
        if loaded is None or (loaded.is_empty and not removed_too):
            raise TaskNotFound(f"tree {tree_id} not found", ids=(str(tree_id),))
        return loaded

    @fewer_collections()
    def replay(self, tree_id: UUID, version: int | None = None) -> TaskTree:
        """A tree folded from its events alone, ignoring snapshots (for audits and checks)."""
        tree = project_tree(None, self.events.get(tree_id, lte=version))  # type: ignore[arg-type]
        if tree is None:
            raise TaskNotFound(f"tree {tree_id} not found", ids=(str(tree_id),))
        return tree

    def tree_id_of(self, task_id: str, *, removed_too: bool = False) -> UUID:
        """The tree a task id belongs (or, with removed_too, belonged) to."""
        if not isinstance(task_id, str) or not is_text(task_id):
            raise TaskNotFound(f"task {task_id!r} not found", ids=(repr(task_id),))
        claim = self._last_event(claim_id(task_id))
        if isinstance(claim, TaskIdClaimed) or (removed_too and claim is not None):
            return claim.tree_id
        raise TaskNotFound(f"task {task_id!r} not found", ids=(task_id,))

    def tree_of(self, task_id: str) -> TaskTree:
        tree = self.load(self.tree_id_of(task_id))
        tree.task(task_id)
        return tree

    # -- saving --------------------------------------------------------------------------
    def save_trees(self, *trees: TaskTree, extra: Sequence[Any] = ()) -> list[TreeEvent]:
        """Save the new events of `trees` (and `extra` events) in ONE transaction; return
        the tree events saved.

        On RecordConflictError nothing was stored and `trees` are ahead of the store:
        reload them before deciding again.
        """
        batches = [(tree, tree.version, tree.collect_events()) for tree in trees]
        events = [e for _, _, new in batches for e in new]
        if not events and not extra:
            return events
        self.put([*events, *extra])
        for tree, version, new in batches:
            self._snapshot_if_due(tree, version - len(new))
        return events

    def put(self, events: Sequence[Any]) -> None:
        """Store events in ONE transaction. (Application.save would first check each event
        against a runtime Protocol, 8 us an event; ours are all known event types.)

        Then note the notification position written (`last_position`, for read-your-writes)
        and tell the `on_stored` listeners (a live projector, say) about it."""
        recordings = self.events.put(list(events))
        if recordings:
            position = recordings[-1].notification.id
            if position > self.last_position:
                self.last_position = position
            for listener in self.on_stored:
                listener(position)

    def snapshot_due(self, tree: TaskTree, saved_from: int) -> StoredEvent | None:
        """`tree`'s snapshot, already encoded (so another thread may store it while the tree
        changes), if its events since `saved_from` cross the snapshot interval."""
        every = self.settings.snapshot_every
        if should_snapshot(saved_from, tree.version, len(tree.tasks), every):
            assert self.snapshots is not None
            return self.snapshots.mapper.to_stored_event(TreeSnapshot.of(tree))
        return None

    def store_step(self, events: Sequence[TreeEvent], snapshot: StoredEvent | None) -> None:
        """Store a run's step (ONE transaction), then its snapshot if one is due."""
        self.put(events)
        if snapshot is not None:
            assert self.snapshots is not None
            with contextlib.suppress(RecordConflictError):
                self.snapshots.recorder.insert_events([snapshot])

    def _snapshot_if_due(self, tree: TaskTree, saved_from: int) -> None:
        every = self.settings.snapshot_every
        if should_snapshot(saved_from, tree.version, len(tree.tasks), every):
            self.take_tree_snapshot(tree)

    def take_tree_snapshot(self, tree: TaskTree) -> None:
        assert self.snapshots is not None
        # Another process may have snapshotted this very version: either copy is the same.
        with contextlib.suppress(RecordConflictError):
            self.snapshots.put([TreeSnapshot.of(tree)])

    def _save_new(self, tree: TaskTree, *, also: Sequence[TaskTree] = ()) -> None:
        """Save a new tree with a claim per task id; refuse ids another tree holds."""
        versions = dict.fromkeys(tree.tasks, 1)
        events = tree.collect_events()
        at = events[0].timestamp
        also_events = []
        for other in also:
            new = other.collect_events()
            also_events.append((other, other.version - len(new), new))
        for _ in range(MAX_RETRIES):
            claims = [
                TaskIdClaimed(
                    originator_id=claim_id(task_id),
                    originator_version=v,
                    timestamp=at,
                    task_id=task_id,
                    tree_id=tree.id,
                )
                for task_id, v in versions.items()
            ]
            try:
                self.put([*events, *(e for _, _, new in also_events for e in new), *claims])
            except RecordConflictError:
                if any(self._stored_version(t.id) != v for t, v, _ in also_events):
                    raise  # a tree in `also` changed meanwhile: the caller re-plans
                taken, free_at = self._claim_versions(versions)
                if taken:
                    raise DuplicateId(
                        f"task ids already exist: {', '.join(taken[:10])}"
                        + (" ..." if len(taken) > 10 else ""),
                        ids=taken,
                    ) from None
                if free_at == versions:
                    raise  # not a claim conflict: nothing this method can retry
                versions = free_at
                continue
            break
        else:
            raise Conflict("task ids kept changing hands; try again")
        self._snapshot_if_due(tree, 0)
        for other, saved_from, _ in also_events:
            self._snapshot_if_due(other, saved_from)

    def _last_event(self, originator_id: UUID) -> Any | None:
        return next(iter(self.events.get(originator_id, desc=True, limit=1)), None)

    def _stored_version(self, tree_id: UUID) -> int:
        # The raw record: the last event may be a large Created, not worth decoding.
        last = self.recorder.select_events(tree_id, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def _claim_versions(self, versions: dict[str, int]) -> tuple[list[str], dict[str, int]]:
        taken: list[str] = []
        free_at: dict[str, int] = {}
        for task_id in versions:
            last = self._last_event(claim_id(task_id))
            if isinstance(last, TaskIdClaimed):
                taken.append(task_id)
            free_at[task_id] = 1 if last is None else last.originator_version + 1
        return taken, free_at

    def _change(
        self,
        task_id: str,
        command: Callable[[TaskTree], R],
        extra: Callable[[TaskTree, R], Sequence[Any]] | None = None,
    ) -> tuple[TaskTree, R]:
        """Load the tree of `task_id`, run `command`, save (with the `extra` events it
        implies, in the same transaction); on a write race, do it all again."""
        for attempt in range(MAX_RETRIES):
            tree = self.tree_of(task_id)
            result = command(tree)
            try:
                self.save_trees(tree, extra=extra(tree, result) if extra else ())
            except RecordConflictError:
                backoff(attempt)
                continue
            return tree, result
        raise Conflict(f"the tree of {task_id!r} kept changing; try again", ids=(task_id,))

    # -- commands ------------------------------------------------------------------------
    @fewer_collections()
    def create_tree(
        self, payload: Any, root_id: str | None = None, *, run: bool = False
    ) -> TaskTree:
        """Validate and store a new tree; nothing is stored if any rule is broken. Without
        task ids in `payload`, `root_id` (if given) is the root's id. With `run`, the run
        request is stored in the same transaction (resumed by any process after a crash)."""
        submitted = read_tasks(payload, root_id=root_id)
        try:
            tree = TaskTree.create(submitted.specs)
            self.check_executors(submitted.specs)
        except TreeRejected as exc:
            if submitted.names is None:
                raise
            raise exc.relabelled(submitted.names) from None
        if run:
            tree.request_run()
        self._save_new(tree)
        return tree

    def check_executors(self, specs: Iterable[TaskSpec], carried: Iterable[str] = ()) -> None:
        """Refuse tasks (other than `carried` ones, which never run) whose executor is not
        registered or is switched off."""
        done = set(carried)
        wanted = [
            (spec.id, ex)
            for spec in specs
            if spec.id not in done and (ex := executor_id_of(spec.params, spec.schemas))
        ]
        self.executors.check_known(wanted, self.settings.disabled_executors)

    def add_dependency(self, task_id: str, dependency: Dependency) -> TaskTree:
        return self._change(task_id, lambda t: t.add_dependency(task_id, dependency))[0]

    def update_task(self, task_id: str, changes: TaskChanges) -> TaskTree:
        def update(tree: TaskTree) -> None:
            tree.update_task(task_id, changes)
            task = tree.task(task_id)
            wanted = executor_id_of(task.params, task.schemas)
            if wanted:
                self.executors.check_known([(task_id, wanted)], self.settings.disabled_executors)

        return self._change(task_id, update)[0]

    def remove_task(self, task_id: str) -> tuple[str, ...]:
        """Remove a pending task and its subtree, and free their ids, in one transaction."""
        return self._change(task_id, lambda t: t.remove_task(task_id), self._releases)[1]

    def _releases(self, tree: TaskTree, removed: tuple[str, ...]) -> list[TaskIdReleased]:
        at = utcnow()
        releases = []
        for removed_id in removed:
            last = self._last_event(claim_id(removed_id))
            assert last is not None, "every task of a stored tree has a claim"
            releases.append(
                TaskIdReleased(
                    originator_id=claim_id(removed_id),
                    originator_version=last.originator_version + 1,
                    timestamp=at,
                    task_id=removed_id,
                    tree_id=tree.id,
                )
            )
        return releases

    def request_run(self, task_id: str) -> TaskTree:
        return self._change(task_id, lambda t: t.request_run())[0]

    def cancel(self, task_ids: Iterable[str], reason: str = "cancelled") -> list[dict[str, Any]]:
        """Cancel each task (and its subtree); report per id, in the order given."""
        outcomes: list[dict[str, Any]] = []
        for task_id in dict.fromkeys(map(_as_id, task_ids)):

            def cancel(tree: TaskTree, task_id: str = task_id) -> list[str]:
                return tree.cancel(task_id, reason)

            try:
                _, cancelled = self._change(task_id, cancel)
            except (TaskNotFound, NotCancelable) as exc:
                outcomes.append(cancel_report(task_id, exc))
            else:
                outcomes.append(cancel_report(task_id, cancelled))
        return outcomes

    def plan_copy(
        self,
        task_id: str,
        mode: CopyMode = CopyMode.MINIMAL,
        custom_task_ids: Iterable[str] = (),
        children: bool = False,
    ) -> CopyPlan:
        """The copy `copy_tree` would make, without saving anything (a dry run)."""
        return plan_copy(self.tree_of(task_id), task_id, mode, tuple(custom_task_ids), children)

    @fewer_collections()
    def copy_tree(
        self,
        task_id: str,
        mode: CopyMode = CopyMode.MINIMAL,
        custom_task_ids: Iterable[str] = (),
        children: bool = False,
    ) -> TaskTree:
        """Make a new tree that re-runs part of `task_id`'s tree; record Copied on the source."""
        wanted = tuple(custom_task_ids)
        for _ in range(MAX_RETRIES):
            source = self.tree_of(task_id)
            plan = plan_copy(source, task_id, mode, wanted, children)
            copy = TaskTree.create(plan.specs, carried=plan.carried, source_tree_id=source.id)
            self.check_executors(plan.specs, [c.task_id for c in plan.carried])
            source.record_copy(plan.rerun_ids, copy.id, plan.root_id, plan.carried_ids)
            try:
                self._save_new(copy, also=[source])
            except RecordConflictError:
                continue
            return copy
        raise Conflict(f"the tree of {task_id!r} kept changing; try again", ids=(task_id,))

    # -- queries -------------------------------------------------------------------------
    @fewer_collections()
    def history(
        self, task_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[TreeEvent]:
        """The events of the tree holding `task_id`, oldest first, after `after_version`."""
        check_count("after_version", after_version, minimum=0)
        if limit is not None:
            check_count("limit", limit, minimum=1)
        tree_id = self.tree_id_of(task_id, removed_too=True)
        return list(self.events.get(tree_id, gt=after_version, limit=limit))  # type: ignore[arg-type]

    def state_at(
        self, task_id: str, *, version: int | None = None, at: datetime | None = None
    ) -> TaskTree:
        """The tree holding `task_id` as it stood at `version`, or at the instant `at`."""
        tree_id = self.tree_id_of(task_id, removed_too=True)
        if at is not None:
            version = self.version_at(tree_id, at if at.tzinfo else at.replace(tzinfo=UTC))
        elif version is not None:
            check_count("version", version, minimum=1)
        return self.load(tree_id, version)

    def version_at(self, tree_id: UUID, at: datetime) -> int:
        """The tree's last version recorded at or before `at`."""
        found = 0
        for event in self._tree_events(tree_id):
            if event.timestamp > at:
                break
            found = event.originator_version
        if not found:
            raise InvalidSpec(
                f"at: the tree did not exist yet at {at.isoformat()}",
                ids=(str(tree_id),),
                fields=[FieldError("at", "before the tree was created")],
            )
        return found

    def _tree_events(self, tree_id: UUID) -> Iterator[TreeEvent]:
        return self.events.get(tree_id)  # type: ignore[return-value]
