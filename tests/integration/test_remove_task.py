"""remove_task: pending subtrees only, refused while depended on, ids released for reuse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from application.claims import TaskIdClaimed, TaskIdReleased
from application.config import Settings
from application.ledger import Ledger
from domain.errors import HasDependents, NotPending, TaskNotFound
from domain.events import TaskRemoved
from domain.status import TaskStatus
from tests.integration.support import (
    assert_no_duplicates,
    claims_of,
    head,
    run_task,
    start_task,
    state_of,
    task,
)


def make_tree(ledger: Ledger) -> None:
    """root ─ a ─ a1, a2 ; b (needs a1) ; c (needs b, optional) ; d"""
    ledger.create_tree(
        [
            task("root"),
            task("a", "root"),
            task("a1", "a"),
            task("a2", "a"),
            task("b", "root", dependencies=["a1"]),
            task("c", "root", dependencies=[{"id": "b", "required": False}]),
            task("d", "root"),
        ]
    )


def test_removing_a_depended_on_subtree_is_refused_naming_the_blockers(ledger: Ledger) -> None:
    make_tree(ledger)
    before = head(ledger)
    with pytest.raises(HasDependents) as raised:
        ledger.remove_task("a")
    assert raised.value.code == "has_dependents"
    assert raised.value.ids == ("a", "b")
    assert "b" in str(raised.value)
    with pytest.raises(HasDependents) as optional:
        ledger.remove_task("b")  # an optional dependent blocks too
    assert optional.value.ids == ("b", "c")
    assert head(ledger) == before
    assert set(ledger.tree_of("a").tasks) == {"root", "a", "a1", "a2", "b", "c", "d"}


def test_only_pending_subtrees_can_be_removed(ledger: Ledger) -> None:
    make_tree(ledger)
    run_task(ledger, "a2", "done")
    start_task(ledger, "d")
    before = head(ledger)
    with pytest.raises(NotPending) as raised:
        ledger.remove_task("d")
    assert raised.value.ids == ("d",)
    ledger.remove_task("c")
    ledger.remove_task("b")
    after_c_and_b = head(ledger)
    with pytest.raises(NotPending) as subtree:
        ledger.remove_task("a")  # a2 completed
    assert subtree.value.ids == ("a2",)
    assert head(ledger) == after_c_and_b
    assert after_c_and_b > before


def test_removed_ids_are_released_and_reusable(ledger: Ledger) -> None:
    make_tree(ledger)
    tree_id = ledger.tree_id_of("a")
    ledger.remove_task("c")
    ledger.remove_task("b")
    removed = ledger.remove_task("a")
    assert removed == ("a", "a1", "a2")

    tree = ledger.load(tree_id)
    assert set(tree.tasks) == {"root", "d"}
    assert state_of(tree) == state_of(ledger.replay(tree_id))
    for task_id in ("a", "a1", "a2", "b", "c"):
        assert [type(c) for c in claims_of(ledger, task_id)] == [TaskIdClaimed, TaskIdReleased]
        with pytest.raises(TaskNotFound):
            ledger.tree_of(task_id)
    assert [type(c) for c in claims_of(ledger, "d")] == [TaskIdClaimed]

    # The history of a removed task is still readable, and ends with its removal.
    history = ledger.history("a1")
    assert history == ledger.history("root")
    last = history[-1]
    assert isinstance(last, TaskRemoved)
    assert (last.task_id, last.removed_ids) == ("a", ("a", "a1", "a2"))
    assert ledger.state_at("a1", version=1).task("a1").status is TaskStatus.PENDING

    # A new tree may use the released ids (even one of them as its root).
    reuse = ledger.create_tree(
        [task("a"), task("a1", "a"), task("fresh", "a"), task("b", "a"), task("c", "b")]
    )
    assert ledger.tree_id_of("a1") == reuse.id
    assert [type(c) for c in claims_of(ledger, "a1")] == [
        TaskIdClaimed,
        TaskIdReleased,
        TaskIdClaimed,
    ]
    assert ledger.history("a1") == ledger.history("c")
    assert ledger.tree_of("d").id == tree_id
    # ... and once claimed again they are taken again.
    ledger.remove_task("c")
    assert ledger.create_tree([task("c")]).root_id == "c"
    assert_no_duplicates(ledger)


def test_removing_the_root_removes_the_tree_but_keeps_its_history(ledger: Ledger) -> None:
    ledger.create_tree([task("root"), task("x", "root"), task("y", "x", dependencies=["x"])])
    tree_id = ledger.tree_id_of("y")
    assert ledger.remove_task("root") == ("root", "x", "y")
    with pytest.raises(TaskNotFound):
        ledger.load(tree_id)
    with pytest.raises(TaskNotFound):
        ledger.tree_of("x")
    assert [type(e).__name__ for e in ledger.history("y")] == ["Created", "TaskRemoved"]
    assert set(ledger.state_at("y", version=1).tasks) == {"root", "x", "y"}
    assert ledger.replay(tree_id).is_empty
    again = ledger.create_tree([task("root"), task("x", "root"), task("y", "root")])
    assert ledger.tree_id_of("y") == again.id


def test_removing_an_unknown_or_removed_task_is_not_found(ledger: Ledger) -> None:
    make_tree(ledger)
    ledger.remove_task("d")
    before = head(ledger)
    with pytest.raises(TaskNotFound):
        ledger.remove_task("d")
    with pytest.raises(TaskNotFound):
        ledger.remove_task("nobody")
    assert head(ledger) == before


class Crash(Exception):
    """The process died here (raised instead of writing, as a kill -9 would)."""


class CrashingLedger(Ledger):
    """The real Ledger, dying just before it writes any TaskIdReleased."""

    name = Ledger.name  # the library derives table names from the application's name

    def put(self, events: Sequence[Any]) -> None:  # every write of the Ledger goes here
        if any(isinstance(o, TaskIdReleased) for o in events):
            raise Crash("killed before writing the releases")
        super().put(events)


def test_removal_and_release_are_one_transaction(store_settings: Settings) -> None:
    """DESIGN: a step's events are saved in ONE transaction. A crash part-way through
    remove_task must leave either the task in its tree with its id claimed, or neither."""
    dying = CrashingLedger(store_settings)
    try:
        dying.create_tree([task("root"), task("x", "root"), task("x1", "x")])
        tree_id = dying.tree_id_of("x")
        with pytest.raises(Crash):
            dying.remove_task("x")
    finally:
        dying.close()

    fresh = Ledger(store_settings)
    try:
        tree = fresh.load(tree_id)
        for task_id in ("x", "x1"):
            still_claimed = isinstance(claims_of(fresh, task_id)[-1], TaskIdClaimed)
            assert (task_id in tree.tasks) == still_claimed, (
                f"{task_id!r} in tree: {task_id in tree.tasks}; id still claimed: {still_claimed}"
            )
        if "x" not in tree.tasks:
            fresh.create_tree([task("x"), task("x1", "x")])  # the ids must be free again
    finally:
        fresh.close()
