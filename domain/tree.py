"""The TaskTree aggregate: one per tree; commands validate, then emit events; `apply` folds."""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID, uuid4

import msgspec
from msgspec import UNSET

from domain import events as ev
from domain.errors import (
    Conflict,
    FieldError,
    HasDependents,
    InvalidSpec,
    NotCancelable,
    NotPending,
    TaskNotFound,
    UnknownReference,
)
from domain.graph import (
    check_acyclic,
    children_index,
    dependents_index,
    subtree,
    validate_structure,
)
from domain.mutator import STRUCTURAL, mutate, state_from_created
from domain.secrets import secret_problems
from domain.specs import Dependency, TaskChanges, TaskSpec, check_json_value
from domain.state import Task, TreeState, utcnow
from domain.status import TERMINAL, TaskStatus, TreeStatus, check_transition, tree_status

__all__ = ["Task", "TaskTree", "TreeState", "project_tree", "utcnow"]


class TaskTree:
    """A tree of tasks. Each command checks its rules first: a refused command emits nothing."""

    def __init__(self, state: TreeState) -> None:
        self.state = state
        self._pending: list[ev.TreeEvent] = []
        self._children: dict[str, list[str]] | None = None
        self._dependents: dict[str, list[str]] | None = None
        # Kept up to date event by event so a runner's step costs what changed, not the
        # tree's size; None means "rebuild on next use" (after a structural change).
        self._counts: Counter[TaskStatus] | None = None
        self._ready: list[tuple[int, int, str]] | None = None  # heap of (priority, seq, id)
        self._queued: set[str] = set()

    # -- identity, as the event store sees it -------------------------------------------
    @property
    def id(self) -> UUID:
        return self.state.id

    @property
    def version(self) -> int:
        return self.state.version

    @property
    def tasks(self) -> dict[str, Task]:
        return self.state.tasks

    @property
    def root_id(self) -> str:
        return self.state.root_id

    @property
    def is_empty(self) -> bool:
        """True once the root was removed: the tree no longer exists for readers."""
        return not self.state.tasks

    def collect_events(self) -> list[ev.TreeEvent]:
        collected, self._pending = self._pending, []
        return collected

    # -- derived indexes (not stored; rebuilt after a structural change) -----------------
    @property
    def children(self) -> dict[str, list[str]]:
        if self._children is None:
            self._children = children_index(self.tasks.values())
        return self._children

    @property
    def dependents(self) -> dict[str, list[str]]:
        if self._dependents is None:
            self._dependents = dependents_index(self.tasks.values())
        return self._dependents

    def task(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise TaskNotFound(f"task {task_id!r} not found", ids=(task_id,)) from None

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        specs: Sequence[TaskSpec],
        *,
        tree_id: UUID | None = None,
        carried: Sequence[ev.CarriedResult] = (),
        source_tree_id: UUID | None = None,
    ) -> TaskTree:
        """Validate a whole tree and emit Created; tasks without user_id get the root's."""
        root_id = validate_structure(specs)
        owner = next(s.user_id for s in specs if s.id == root_id)
        if owner is not None:
            specs = [
                s if s.user_id is not None else msgspec.structs.replace(s, user_id=owner)
                for s in specs
            ]
        created = ev.Created(
            originator_id=tree_id or uuid4(),
            originator_version=1,
            timestamp=utcnow(),
            root_id=root_id,
            tasks=tuple(specs),
            carried=tuple(carried),
            source_tree_id=source_tree_id,
        )
        tree = cls.from_created(created)
        tree._pending.append(created)
        return tree

    @classmethod
    def from_created(cls, event: ev.Created) -> TaskTree:
        return cls(state_from_created(event))

    # -- commands ------------------------------------------------------------------------
    def add_dependency(self, task_id: str, dependency: Dependency) -> None:
        task = self._pending_task(task_id)
        existing = {d.id: d for d in task.dependencies}
        if dependency.id in existing:
            if existing[dependency.id] == dependency:
                return
            raise Conflict(
                f"{task_id!r} already depends on {dependency.id!r}; update its dependencies "
                "to change whether it is required",
                ids=(task_id, dependency.id),
            )
        self._check_dependencies(task_id, (*task.dependencies, dependency))
        self._trigger(ev.DependencyAdded, task_id=task_id, dependency=dependency)
        self._skip_if_blocked(task_id)

    def update_task(self, task_id: str, changes: TaskChanges) -> None:
        task = self._pending_task(task_id)
        changed = {
            name: value
            for name in changes.__struct_fields__
            if (value := getattr(changes, name)) is not UNSET and value != getattr(task, name)
        }
        if not changed:
            return
        changes = TaskChanges(**changed)
        inputs = task.inputs if changes.inputs is UNSET else changes.inputs
        schemas = task.schemas if changes.schemas is UNSET else changes.schemas
        problems = secret_problems(inputs, schemas, "")
        if problems:
            raise InvalidSpec(f"{problems[0].field}: {problems[0].reason}", fields=problems)
        if changes.dependencies is not UNSET:
            self._check_dependencies(task_id, changes.dependencies)
        self._trigger(ev.TaskUpdated, task_id=task_id, changes=changes)
        self._skip_if_blocked(task_id)

    def remove_task(self, task_id: str) -> tuple[str, ...]:
        """Remove a pending task and its (pending) subtree that nothing else depends on."""
        self.task(task_id)
        removed = subtree(self.children, task_id)
        busy = [i for i in removed if self.tasks[i].status is not TaskStatus.PENDING]
        if busy:
            raise NotPending(
                f"only pending tasks can be removed; not pending: {', '.join(busy)}", ids=busy
            )
        gone = set(removed)
        blockers = sorted(
            {d for i in removed for d in self.dependents.get(i, ()) if d not in gone},
            key=lambda i: self.tasks[i].seq,
        )
        if blockers:
            raise HasDependents(
                f"{task_id!r} cannot be removed: {', '.join(blockers)} depend on it",
                ids=[task_id, *blockers],
            )
        self._trigger(ev.TaskRemoved, task_id=task_id, removed_ids=tuple(removed))
        return tuple(removed)

    def request_run(self) -> bool:
        """Mark the tree as asked to run; False if it already was or cannot run any more."""
        if self.state.run_requested or self.is_terminal:
            return False
        self._trigger(ev.RunRequested)
        return True

    def start(self, task_id: str, attempt: int, inputs: dict[str, Any]) -> None:
        task = self.task(task_id)
        check_transition(task_id, task.status, TaskStatus.IN_PROGRESS)
        if attempt <= task.attempts:
            raise Conflict(
                f"attempt {attempt} of {task_id!r} is not after attempt {task.attempts}",
                ids=(task_id,),
            )
        if task.status is TaskStatus.PENDING and not self._known_ready(task):
            waiting = [d.id for d in task.dependencies if not self._satisfies(d)]
            raise Conflict(
                f"{task_id!r} is not ready: waiting for {', '.join(waiting)}",
                ids=(task_id, *waiting),
            )
        if type(attempt) is not int or not isinstance(inputs, dict):
            raise InvalidSpec(
                "Started: attempt is an integer and inputs an object",
                fields=[FieldError("Started", "attempt must be an int, inputs a dict")],
            )
        _require_json(inputs, "inputs")
        # Every field is checked above (task_id by the lookup): skip the generic payload check.
        self._trigger(ev.Started, checked=True, task_id=task_id, attempt=attempt, inputs=inputs)

    def record_progress(self, task_id: str, progress: float, message: str | None = None) -> None:
        task = self.task(task_id)
        if task.status is not TaskStatus.IN_PROGRESS:
            raise NotPending(f"{task_id!r} is {task.status.value}, not running", ids=(task_id,))
        if not 0.0 <= progress <= 1.0:
            raise InvalidSpec(
                "progress is a fraction", fields=[FieldError("progress", "must be within 0..1")]
            )
        self._trigger(ev.Progressed, task_id=task_id, progress=progress, message=message)

    def complete(self, task_id: str, result: Any) -> None:
        task = self.task(task_id)
        check_transition(task_id, task.status, TaskStatus.COMPLETED)
        _require_json(result, "result")
        self._trigger(ev.Completed, checked=True, task_id=task_id, result=result)

    def fail_attempt(self, task_id: str, error: str, retry_in_s: float) -> None:
        """Record a failed attempt that will be retried; the task stays in progress."""
        task = self.task(task_id)
        if task.status is not TaskStatus.IN_PROGRESS:
            raise NotPending(f"{task_id!r} is {task.status.value}, not running", ids=(task_id,))
        if not (math.isfinite(retry_in_s) and retry_in_s >= 0):
            raise InvalidSpec(
                "retry_in_s: must be a finite number of seconds, 0 or more",
                fields=[FieldError("retry_in_s", "must be finite and 0 or more")],
            )
        self._trigger(
            ev.AttemptFailed,
            task_id=task_id,
            attempt=task.attempts,
            error=error,
            retry_in_s=retry_in_s,
        )

    def fail(self, task_id: str, error: str) -> None:
        task = self.task(task_id)
        check_transition(task_id, task.status, TaskStatus.FAILED)
        self._trigger(ev.Failed, task_id=task_id, attempt=task.attempts, error=error)
        self._skip_dependents([task_id])

    def cancel(self, task_id: str, reason: str = "cancelled") -> list[str]:
        """Cancel a task and its unfinished subtree (even when the task itself has ended, as
        a grouping node does at once); skip what required them. Returns the ids cancelled."""
        task = self.task(task_id)
        targets = [
            i for i in subtree(self.children, task_id) if self.tasks[i].status not in TERMINAL
        ]
        if not targets:
            under = " and so is everything under it" if self.children.get(task_id) else ""
            raise NotCancelable(
                f"{task_id!r} is already {task.status.value}{under}", ids=(task_id,)
            )
        cancelled: list[str] = []
        for i in targets:
            why = reason if i == task_id else f"{reason} (with ancestor {task_id!r})"
            self._trigger(ev.Cancelled, task_id=i, reason=why)
            cancelled.append(i)
        self._skip_dependents(cancelled)
        return cancelled

    def record_copy(
        self,
        task_ids: Sequence[str],
        new_tree_id: UUID,
        new_root_id: str,
        carried_ids: Sequence[str] = (),
    ) -> None:
        """Record that `task_ids` are re-run in a new tree (with `carried_ids` carried)."""
        for task_id in (*task_ids, *carried_ids):
            self.task(task_id)
        self._trigger(
            ev.Copied,
            task_ids=tuple(task_ids),
            new_tree_id=new_tree_id,
            new_root_id=new_root_id,
            carried_ids=tuple(carried_ids),
        )

    # -- readiness and status (pure reads of the state) ---------------------------------
    def _satisfies(self, dep: Dependency) -> bool:
        status = self.tasks[dep.id].status
        return status is TaskStatus.COMPLETED or (not dep.required and status in TERMINAL)

    def is_ready(self, task: Task) -> bool:
        """Pending, every required dependency completed, every optional one terminal."""
        return task.status is TaskStatus.PENDING and all(
            self._satisfies(d) for d in task.dependencies
        )

    def ready_tasks(self, limit: int | None = None) -> list[Task]:
        """The tasks that may start now, most urgent first (priority, then creation order);
        at most `limit` of them. Costs O(limit log n) once the ready heap is built."""
        heap = self._ready_heap()
        if limit is None:
            limit = len(heap)
        taken: list[tuple[int, int, str]] = []
        while heap and len(taken) < limit:
            entry = heapq.heappop(heap)
            task = self.tasks.get(entry[2])
            if task is not None and self.is_ready(task):
                taken.append(entry)
            else:
                self._queued.discard(entry[2])
        for entry in taken:
            heapq.heappush(heap, entry)
        return [self.tasks[entry[2]] for entry in taken]

    def _known_ready(self, task: Task) -> bool:
        # A queued task that is still pending is ready: readiness is only lost by leaving
        # pending, or by a structural change (which drops the queue).
        if task.id in self._queued and task.status is TaskStatus.PENDING:
            return True
        return self.is_ready(task)

    def next_ready(self) -> Task | None:
        """The most urgent ready task (what ready_tasks(1) would give, without copying)."""
        heap = self._ready_heap()
        while heap:
            task = self.tasks.get(heap[0][2])
            if task is not None and task.status is TaskStatus.PENDING:
                return task
            self._queued.discard(heapq.heappop(heap)[2])
        return None

    def status_counts(self) -> Counter[TaskStatus]:
        """How many tasks are in each status (kept up to date as events apply)."""
        if self._counts is None:
            self._counts = Counter(t.status for t in self.tasks.values())
        return self._counts

    @property
    def is_terminal(self) -> bool:
        counts = self.status_counts()
        return sum(counts[s] for s in TERMINAL) == len(self.tasks)

    @property
    def status(self) -> TreeStatus:
        """Derived from the status counts (see domain.status.tree_status)."""
        return tree_status(self.status_counts(), len(self.tasks), self.state.run_requested)

    # -- internals -----------------------------------------------------------------------
    def _pending_task(self, task_id: str) -> Task:
        task = self.task(task_id)
        if task.status is not TaskStatus.PENDING:
            raise NotPending(
                f"{task_id!r} is {task.status.value}; only pending tasks can change",
                ids=(task_id,),
            )
        return task

    def _check_dependencies(self, task_id: str, deps: Iterable[Dependency]) -> None:
        deps = tuple(deps)
        unknown = [d.id for d in deps if d.id not in self.tasks]
        if unknown:
            raise UnknownReference(
                f"{task_id!r} depends on unknown {', '.join(map(repr, unknown))}",
                ids=[task_id, *unknown],
            )
        proposed = [
            msgspec.structs.replace(t, dependencies=deps) if t.id == task_id else t
            for t in self.tasks.values()
        ]
        check_acyclic(proposed)

    def _skip_if_blocked(self, task_id: str) -> None:
        task = self.tasks[task_id]
        for dep in task.dependencies:
            status = self.tasks[dep.id].status
            if dep.required and status in TERMINAL and status is not TaskStatus.COMPLETED:
                reason = f"required dependency {dep.id!r} {status.value}"
                self._trigger(ev.Skipped, task_id=task_id, reason=reason)
                self._skip_dependents([task_id])
                return

    def _skip_dependents(self, ended: Iterable[str]) -> None:
        """Skip, transitively, every pending task that required a task that did not complete."""
        queue = deque(ended)
        while queue:
            dep_id = queue.popleft()
            status = self.tasks[dep_id].status.value
            for dependent_id in self.dependents.get(dep_id, ()):
                dependent = self.tasks[dependent_id]
                if dependent.status is not TaskStatus.PENDING:
                    continue
                if any(d.id == dep_id and d.required for d in dependent.dependencies):
                    reason = f"required dependency {dep_id!r} {status}"
                    self._trigger(ev.Skipped, task_id=dependent_id, reason=reason)
                    queue.append(dependent_id)

    def _trigger(
        self, event_type: type[ev.TreeEvent], *, checked: bool = False, **fields: Any
    ) -> None:
        problem = None if checked else ev.check_payload(event_type, fields)
        if problem:
            raise InvalidSpec(
                f"{event_type.__name__}: {problem}",
                fields=[FieldError(event_type.__name__, problem)],
            )
        event = event_type(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=utcnow(),
            **fields,
        )
        self.apply(event)
        self._pending.append(event)

    def apply(self, event: ev.TreeEvent) -> None:
        """Fold one event into the state (see domain.mutator); keep the indexes current."""
        task_id = getattr(event, "task_id", None)
        before = self.tasks[task_id].status if task_id in self.tasks else None
        mutate(self.state, event)
        if type(event) in STRUCTURAL:
            self._children = self._dependents = None
            self._counts = self._ready = None
            self._queued.clear()
            return
        if before is None:
            return
        after = self.tasks[task_id].status  # type: ignore[index]
        if after is before:
            return
        if self._counts is not None:
            self._counts[before] -= 1
            self._counts[after] += 1
        if self._ready is not None and after in TERMINAL:
            for dependent_id in self.dependents.get(task_id, ()):  # type: ignore[arg-type]
                self._queue_if_ready(dependent_id)

    def _ready_heap(self) -> list[tuple[int, int, str]]:
        if self._ready is None:
            self._queued.clear()
            self._ready = []
            for task in self.tasks.values():
                if self.is_ready(task):
                    self._ready.append((task.priority, task.seq, task.id))
                    self._queued.add(task.id)
            heapq.heapify(self._ready)
        return self._ready

    def _queue_if_ready(self, task_id: str) -> None:
        task = self.tasks[task_id]
        if task_id not in self._queued and self.is_ready(task):
            assert self._ready is not None
            heapq.heappush(self._ready, (task.priority, task.seq, task_id))
            self._queued.add(task_id)


def project_tree(tree: TaskTree | None, events: Iterable[ev.TreeEvent]) -> TaskTree | None:
    """Fold events (the first a Created when `tree` is None) into a tree."""
    for event in events:
        if isinstance(event, ev.Created):
            tree = TaskTree.from_created(event)
        elif tree is None:
            raise ValueError(f"{type(event).__name__} before Created")
        else:
            tree.apply(event)
    return tree


def _require_json(value: Any, field: str) -> None:
    problem = check_json_value(value, field)
    if problem:
        raise InvalidSpec(f"{problem.field}: {problem.reason}", fields=[problem])
