"""cancel: the subtree is cancelled, required dependents skipped, refusals reported per id."""

from __future__ import annotations

from application.ledger import Ledger
from domain.status import TaskStatus, TreeStatus
from tests.integration.support import (
    assert_no_duplicates,
    events_of,
    head,
    run_task,
    start_task,
    state_of,
    task,
)


def make_tree(ledger: Ledger) -> None:
    """root ─ a ─ a1 (running), a2 (completed), a3 ; b needs a ; c needs a (optional) ;
    e needs b ; d (completed)"""
    ledger.create_tree(
        [
            task("root"),
            task("a", "root"),
            task("a1", "a"),
            task("a2", "a"),
            task("a3", "a"),
            task("b", "root", dependencies=["a"]),
            task("c", "root", dependencies=[{"id": "a", "required": False}]),
            task("e", "root", dependencies=["b"]),
            task("d", "root"),
        ]
    )
    ledger.request_run("root")
    run_task(ledger, "a2", "a2 done")
    run_task(ledger, "d", "d done")
    start_task(ledger, "a1")


def test_cancel_cascades_and_reports_each_id(ledger: Ledger) -> None:
    make_tree(ledger)
    tree_id = ledger.tree_id_of("a")
    version = ledger.load(tree_id).version

    outcomes = ledger.cancel(["a", "d", "nobody", "a", "a3"], reason="operator stop")

    assert [(o["task_id"], o["status"]) for o in outcomes] == [
        ("a", "cancelled"),
        ("d", "not_cancelable"),
        ("nobody", "not_found"),
        ("a3", "not_cancelable"),  # already cancelled with its parent
    ]
    assert outcomes[0]["cancelled_ids"] == ["a", "a1", "a3"]
    assert all(o["message"] for o in outcomes)

    tree = ledger.load(tree_id)
    status = {i: t.status for i, t in tree.tasks.items()}
    assert status == {
        "root": TaskStatus.PENDING,
        "a": TaskStatus.CANCELLED,
        "a1": TaskStatus.CANCELLED,  # it was running
        "a2": TaskStatus.COMPLETED,  # terminal tasks keep their outcome
        "a3": TaskStatus.CANCELLED,
        "b": TaskStatus.SKIPPED,  # required a
        "c": TaskStatus.PENDING,  # optional a: now ready
        "e": TaskStatus.SKIPPED,  # required b, transitively
        "d": TaskStatus.COMPLETED,
    }
    assert tree.task("a").error == "operator stop"
    assert "'a'" in (tree.task("a1").error or "")
    assert tree.task("b").error == "required dependency 'a' cancelled"
    assert tree.task("e").error == "required dependency 'b' skipped"
    assert [t.id for t in tree.ready_tasks()] == ["root", "c"]

    new = events_of(ledger, tree_id, gt=version)
    assert [(type(e).__name__, e.task_id) for e in new] == [
        ("Cancelled", "a"),
        ("Cancelled", "a1"),
        ("Cancelled", "a3"),
        ("Skipped", "b"),
        ("Skipped", "e"),
    ]
    assert state_of(tree) == state_of(ledger.replay(tree_id))
    assert_no_duplicates(ledger)


def test_refusals_store_nothing(ledger: Ledger) -> None:
    make_tree(ledger)
    before = head(ledger)
    outcomes = ledger.cancel(["d", "a2", "ghost"])
    assert [o["status"] for o in outcomes] == ["not_cancelable", "not_cancelable", "not_found"]
    assert head(ledger) == before


def test_cancelling_the_root_cancels_the_tree(ledger: Ledger) -> None:
    make_tree(ledger)
    [outcome] = ledger.cancel(["root"])
    assert outcome["status"] == "cancelled"
    assert set(outcome["cancelled_ids"]) == {"root", "a", "a1", "a3", "b", "c", "e"}
    tree = ledger.tree_of("root")
    assert tree.is_terminal
    assert tree.status is TreeStatus.CANCELLED
    assert ledger.cancel(["root"])[0]["status"] == "not_cancelable"


def test_a_removed_task_cannot_be_cancelled(ledger: Ledger) -> None:
    ledger.create_tree([task("root"), task("x", "root")])
    ledger.remove_task("x")
    before = head(ledger)
    assert ledger.cancel(["x"])[0]["status"] == "not_found"
    assert head(ledger) == before
