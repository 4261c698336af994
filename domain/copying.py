"""Copy planning: which tasks of a tree a new tree re-runs, and which it carries over.

The copy is always self-sufficient: an upstream dependency outside the re-run set that
completed is carried as a completed task with its result; one that did not is re-run too.
Ancestors are carried the same way so the copy keeps one root that reaches every task.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from enum import StrEnum

import msgspec
from msgspec import Struct

from domain.errors import FieldError, InvalidSpec
from domain.events import CarriedResult
from domain.graph import subtree
from domain.specs import Dependency, TaskSpec
from domain.status import TaskStatus
from domain.tree import TaskTree


class CopyMode(StrEnum):
    MINIMAL = "minimal"
    FULL = "full"
    CUSTOM = "custom"


class CopyPlan(Struct, frozen=True):
    """The new tree's specs (new ids, original_task_id set) and what it carries over."""

    specs: tuple[TaskSpec, ...]
    carried: tuple[CarriedResult, ...]
    source_ids: tuple[str, ...]  # the source task of each spec, in the same order

    @property
    def root_id(self) -> str:
        return next(s.id for s in self.specs if s.parent_id is None)

    @property
    def carried_ids(self) -> tuple[str, ...]:
        """Source tasks carried over completed (not re-run)."""
        done = {c.task_id for c in self.carried}
        return tuple(
            src for src, s in zip(self.source_ids, self.specs, strict=True) if s.id in done
        )

    @property
    def rerun_ids(self) -> tuple[str, ...]:
        """Source tasks the copy runs again."""
        carried = set(self.carried_ids)
        return tuple(i for i in self.source_ids if i not in carried)


def copy_mode(value: object) -> CopyMode:
    """A CopyMode from a mode or its name; InvalidSpec naming copy_mode otherwise."""
    try:
        return CopyMode(value if isinstance(value, str) else "")
    except ValueError:
        allowed = ", ".join(m.value for m in CopyMode)
        raise InvalidSpec(
            f"copy_mode must be one of {allowed}",
            fields=[FieldError("copy_mode", f"must be one of {allowed}, not {value!r}")],
        ) from None


def _custom_ids(value: Iterable[object]) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidSpec(
            "custom_task_ids must be a list of task ids",
            fields=[FieldError("custom_task_ids", "must be a list of task ids")],
        )
    ids = list(value)
    bad = [k for k, i in enumerate(ids) if not isinstance(i, str)]
    if bad:
        raise InvalidSpec(
            "custom_task_ids holds something that is not a task id",
            fields=[FieldError(f"custom_task_ids[{k}]", "must be a string") for k in bad[:20]],
        )
    return list(dict.fromkeys(ids))  # type: ignore[arg-type]


def rerun_set(
    tree: TaskTree,
    task_id: str,
    mode: CopyMode,
    custom_task_ids: Iterable[str] = (),
    children: bool = False,
) -> set[str]:
    """The tasks the copy must run again, before closing over what they need."""
    tree.task(task_id)
    mode = copy_mode(mode)
    if mode is CopyMode.FULL:
        return set(tree.tasks)
    if mode is CopyMode.CUSTOM:
        wanted = _custom_ids(custom_task_ids)
        if not wanted:
            raise InvalidSpec(
                "custom copy needs the ids to copy",
                fields=[FieldError("custom_task_ids", "must list at least one task id")],
            )
        unknown = [i for i in wanted if i not in tree.tasks]
        if unknown:
            raise InvalidSpec(
                f"custom_task_ids names tasks not in this tree: {', '.join(unknown)}",
                ids=unknown,
                fields=[FieldError("custom_task_ids", f"unknown id {i!r}") for i in unknown],
            )
        chosen = set(wanted)
        if children:
            for i in wanted:
                chosen.update(subtree(tree.children, i))
        return chosen
    chosen = set(subtree(tree.children, task_id))
    queue = list(chosen)
    while queue:
        for dependent in tree.dependents.get(queue.pop(), ()):
            if dependent not in chosen:
                chosen.add(dependent)
                queue.append(dependent)
    return chosen


def plan_copy(
    tree: TaskTree,
    task_id: str,
    mode: CopyMode = CopyMode.MINIMAL,
    custom_task_ids: Iterable[str] = (),
    children: bool = False,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> CopyPlan:
    rerun = rerun_set(tree, task_id, mode, custom_task_ids, children)
    carried: set[str] = set()

    def include(i: str) -> None:
        if i in rerun or i in carried:
            return
        if tree.tasks[i].status is TaskStatus.COMPLETED:
            carried.add(i)
        else:
            rerun.add(i)
        queue.append(i)

    queue = list(rerun)
    while queue:
        task = tree.tasks[queue.pop()]
        if task.parent_id is not None:
            include(task.parent_id)
        if task.id in rerun:
            for dep in task.dependencies:
                include(dep.id)

    kept = rerun | carried
    ordered = sorted(kept, key=lambda i: tree.tasks[i].seq)
    ids = {i: new_id() for i in ordered}
    specs = []
    for i in ordered:
        t = tree.tasks[i]
        specs.append(
            TaskSpec(
                id=ids[i],
                name=t.name,
                parent_id=None if t.parent_id is None else ids[t.parent_id],
                user_id=t.user_id,
                priority=t.priority,
                dependencies=tuple(
                    Dependency(ids[d.id], d.required) for d in t.dependencies if d.id in kept
                ),
                inputs=t.inputs,
                params=t.params,
                schemas=t.schemas,
                original_task_id=t.id,
            )
        )
    carried_results = tuple(
        CarriedResult(ids[i], tree.tasks[i].result, tree.tasks[i].completed_at)
        for i in ordered
        if i in carried
    )
    return CopyPlan(tuple(specs), carried_results, tuple(ordered))


def plan_as_tasks(plan: CopyPlan) -> list[dict[str, object]]:
    """The new task array as plain data (what a dry run returns)."""
    done = {c.task_id: c for c in plan.carried}
    out: list[dict[str, object]] = []
    for spec in plan.specs:
        item: dict[str, object] = msgspec.to_builtins(spec)
        item["dependencies"] = list(item["dependencies"])  # type: ignore[call-overload]
        carried = done.get(spec.id)
        item["status"] = TaskStatus.COMPLETED.value if carried else TaskStatus.PENDING.value
        item["result"] = carried.result if carried else None
        out.append(item)
    return out
