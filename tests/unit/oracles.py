"""Reference answers written from DESIGN.md, API.md and the ADRs, independently of domain/.

The tests compare what the domain computes with what these plain functions say it should.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.state import Task
from domain.status import TaskStatus
from domain.tree import TaskTree

P, IP, C, F, X, S = (
    TaskStatus.PENDING,
    TaskStatus.IN_PROGRESS,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.SKIPPED,
)
TERMINAL_STATUSES = frozenset({C, F, X, S})
ENDED_BADLY = frozenset({F, X, S})

# DESIGN.md / ADR 0003: pending -> in_progress | cancelled | skipped;
# in_progress -> completed | failed | cancelled | in_progress (a new attempt); terminal is final.
ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    P: frozenset({IP, X, S}),
    IP: frozenset({IP, C, F, X}),
    C: frozenset(),
    F: frozenset(),
    X: frozenset(),
    S: frozenset(),
}


def satisfied(tree: TaskTree, dep_id: str, required: bool) -> bool:
    status = tree.tasks[dep_id].status
    if required:
        return status is C
    return status in TERMINAL_STATUSES


def expected_ready(tree: TaskTree, creation_order: list[str]) -> list[str]:
    """Pending tasks whose required deps completed and optional deps ended, most urgent first;
    ties broken by the order the tasks were created in (their position in Created)."""
    position = {task_id: i for i, task_id in enumerate(creation_order)}
    ready = [
        t
        for t in tree.tasks.values()
        if t.status is P and all(satisfied(tree, d.id, d.required) for d in t.dependencies)
    ]
    ready.sort(key=lambda t: (t.priority, position[t.id]))
    return [t.id for t in ready]


def expected_tree_status(tree: TaskTree) -> str:
    statuses = [t.status for t in tree.tasks.values()]
    if not statuses:  # the root was removed: the tree is abandoned (ADR 0003)
        return "cancelled"
    if all(s in TERMINAL_STATUSES for s in statuses):
        if all(s is C for s in statuses):
            return "completed"
        if any(s is X for s in statuses):
            return "cancelled"
        return "failed"
    if tree.state.run_requested or any(s is IP for s in statuses):
        return "in_progress"
    return "pending"


def descendants(tasks: dict[str, Task], top: str) -> set[str]:
    """`top` and every task below it through parent_id."""
    out = {top}
    grew = True
    while grew:
        grew = False
        for t in tasks.values():
            if t.parent_id in out and t.id not in out:
                out.add(t.id)
                grew = True
    return out


def required_closure(tasks: dict[str, Task], ended: Iterable[str]) -> set[str]:
    """Pending tasks (other than `ended`) that require one of `ended`, directly or through
    other such tasks."""
    ended = set(ended)
    doomed: set[str] = set()
    frontier = set(ended)
    while frontier:
        nxt = {
            t.id
            for t in tasks.values()
            if t.status is P
            and t.id not in doomed
            and t.id not in ended
            and any(d.required and d.id in frontier for d in t.dependencies)
        }
        doomed |= nxt
        frontier = nxt
    return doomed


def transitive_dependents(tasks: dict[str, Task], start: set[str]) -> set[str]:
    """Every task that depends, directly or through others, on a task of `start`."""
    out: set[str] = set()
    frontier = set(start)
    while frontier:
        nxt = {
            t.id
            for t in tasks.values()
            if t.id not in out and any(d.id in frontier for d in t.dependencies)
        }
        nxt -= out
        out |= nxt
        frontier = nxt
    return out
