"""Copies are persisted: a new self-sufficient tree, and a Copied event on the source."""

from __future__ import annotations

import pytest

from application.ledger import Ledger
from domain.copying import CopyMode, plan_as_tasks
from domain.errors import InvalidSpec, TaskNotFound
from domain.events import Copied, Created
from domain.status import TaskStatus
from domain.tree import TaskTree
from tests.integration.support import (
    assert_no_duplicates,
    claims_of,
    events_of,
    head,
    run_task,
    state_of,
    task,
)


def failed_pipeline(ledger: Ledger) -> TaskTree:
    """root ─ fetch (completed) ─ transform (failed, needs fetch) ─ report (skipped)
    └ audit (completed) └ notes (pending, child of transform)"""
    tree = ledger.create_tree(
        [
            task("root", user_id="ana"),
            task("fetch", "root", inputs={"url": "https://example.test/orders"}),
            task("transform", "root", dependencies=["fetch"], params={"timeout_s": 5}),
            task("notes", "transform"),
            task("report", "root", dependencies=["transform"], priority=0),
            task("audit", "root"),
        ]
    )
    ledger.request_run("root")
    run_task(ledger, "root", None)
    run_task(ledger, "fetch", {"rows": [1, 2, 3]})
    run_task(ledger, "audit", {"ok": True})
    run_task(ledger, "transform", error="ValueError: bad row 2")
    return ledger.load(tree.id)


def by_original(copy: TaskTree) -> dict[str, str]:
    return {t.original_task_id: t.id for t in copy.tasks.values()}  # type: ignore[misc]


def check_copy_persisted(ledger: Ledger, source: TaskTree, copy: TaskTree) -> None:
    stored_copy = ledger.load(copy.id)
    assert state_of(stored_copy) == state_of(copy)
    assert state_of(ledger.replay(copy.id)) == state_of(copy)
    created = events_of(ledger, copy.id)[0]
    assert isinstance(created, Created)
    assert created.source_tree_id == source.id
    for task_id in copy.tasks:  # every new id is claimed by the new tree
        assert ledger.tree_id_of(task_id) == copy.id
    copied = events_of(ledger, source.id)[-1]
    assert isinstance(copied, Copied)
    assert copied.new_tree_id == copy.id
    assert copied.new_root_id == copy.root_id
    assert set(copied.task_ids) | set(copied.carried_ids) == {
        t.original_task_id for t in copy.tasks.values()
    }
    assert not set(copied.task_ids) & set(copied.carried_ids)
    ever_copied = {
        i for e in events_of(ledger, source.id) if isinstance(e, Copied) for i in e.task_ids
    }
    reloaded = ledger.load(source.id)
    for task_id, t in reloaded.tasks.items():
        assert t.has_copy is (task_id in ever_copied), task_id
    assert state_of(reloaded) == state_of(ledger.replay(source.id))
    assert copy.id in reloaded.state.copies
    assert_no_duplicates(ledger)


def test_minimal_copy_reruns_the_failed_part_and_carries_its_inputs(ledger: Ledger) -> None:
    source = failed_pipeline(ledger)
    before = len(events_of(ledger, source.id))

    copy = ledger.copy_tree("transform", CopyMode.MINIMAL)

    originals = by_original(copy)
    assert set(originals) == {"root", "fetch", "transform", "notes", "report"}
    assert all(new not in source.tasks for new in copy.tasks)
    fetch, root = copy.task(originals["fetch"]), copy.task(originals["root"])
    assert fetch.status is TaskStatus.COMPLETED
    assert fetch.result == {"rows": [1, 2, 3]}
    assert fetch.completed_at == source.task("fetch").completed_at
    assert root.status is TaskStatus.COMPLETED  # carried so the copy keeps its root
    for rerun in ("transform", "notes", "report"):
        t = copy.task(originals[rerun])
        assert t.status is TaskStatus.PENDING, rerun
        assert (t.result, t.error, t.attempts) == (None, None, 0)
    transform = copy.task(originals["transform"])
    assert [d.id for d in transform.dependencies] == [originals["fetch"]]
    assert transform.params == {"timeout_s": 5}
    assert copy.task(originals["notes"]).parent_id == originals["transform"]
    assert copy.task(originals["report"]).priority == 0
    assert all(t.user_id == "ana" for t in copy.tasks.values())
    assert [t.id for t in copy.ready_tasks()] == [originals["transform"], originals["notes"]]
    assert len(events_of(ledger, source.id)) == before + 1
    check_copy_persisted(ledger, source, copy)


def test_full_copy_reruns_every_task(ledger: Ledger) -> None:
    source = failed_pipeline(ledger)
    copy = ledger.copy_tree("report", CopyMode.FULL)
    originals = by_original(copy)
    assert set(originals) == set(source.tasks)
    assert all(t.status is TaskStatus.PENDING for t in copy.tasks.values())
    assert copy.task(originals["fetch"]).inputs == {"url": "https://example.test/orders"}
    check_copy_persisted(ledger, source, copy)


def test_custom_copy_with_and_without_children(ledger: Ledger) -> None:
    source = failed_pipeline(ledger)
    alone = ledger.copy_tree("transform", CopyMode.CUSTOM, ["transform"])
    assert set(by_original(alone)) == {"root", "fetch", "transform"}
    assert alone.task(by_original(alone)["fetch"]).status is TaskStatus.COMPLETED
    check_copy_persisted(ledger, ledger.load(source.id), alone)

    with_children = ledger.copy_tree("transform", CopyMode.CUSTOM, ["transform"], children=True)
    assert set(by_original(with_children)) == {"root", "fetch", "transform", "notes"}
    check_copy_persisted(ledger, ledger.load(source.id), with_children)

    # An upstream dependency that did not complete is re-run, not carried.
    downstream = ledger.copy_tree("report", CopyMode.CUSTOM, ["report"])
    originals = by_original(downstream)
    assert set(originals) == {"root", "fetch", "transform", "report"}
    assert downstream.task(originals["transform"]).status is TaskStatus.PENDING
    assert downstream.task(originals["fetch"]).status is TaskStatus.COMPLETED
    check_copy_persisted(ledger, ledger.load(source.id), downstream)

    reloaded = ledger.load(source.id)
    assert reloaded.state.copies == [alone.id, with_children.id, downstream.id]
    assert [type(e).__name__ for e in events_of(ledger, source.id)][-3:] == ["Copied"] * 3


def test_a_copy_can_run_and_be_copied_again(ledger: Ledger) -> None:
    failed_pipeline(ledger)
    copy = ledger.copy_tree("transform")
    originals = by_original(copy)
    run_task(ledger, originals["transform"], {"fixed": True})
    again = ledger.copy_tree(originals["transform"], CopyMode.MINIMAL)
    assert {t.original_task_id for t in again.tasks.values()} <= set(copy.tasks)
    carried = again.task(by_original(again)[originals["fetch"]])
    assert carried.result == {"rows": [1, 2, 3]}
    check_copy_persisted(ledger, ledger.load(copy.id), again)


def test_dry_run_stores_nothing(ledger: Ledger) -> None:
    source = failed_pipeline(ledger)
    before = head(ledger)
    for mode, custom in ((CopyMode.MINIMAL, ()), (CopyMode.FULL, ()), (CopyMode.CUSTOM, ["fetch"])):
        plan = ledger.plan_copy("transform", mode, custom)
        tasks = plan_as_tasks(plan)
        assert {t["original_task_id"] for t in tasks} == set(plan.source_ids)
        for item in tasks:
            assert claims_of(ledger, str(item["id"])) == []
            with pytest.raises(TaskNotFound):
                ledger.tree_of(str(item["id"]))
    assert head(ledger) == before
    reloaded = ledger.load(source.id)
    assert state_of(reloaded) == state_of(source)
    assert not any(t.has_copy for t in reloaded.tasks.values())


def test_refused_copies_store_nothing(ledger: Ledger) -> None:
    failed_pipeline(ledger)
    before = head(ledger)
    with pytest.raises(TaskNotFound):
        ledger.copy_tree("nobody")
    with pytest.raises(InvalidSpec):
        ledger.copy_tree("transform", CopyMode.CUSTOM, [])
    with pytest.raises(InvalidSpec) as raised:
        ledger.copy_tree("transform", CopyMode.CUSTOM, ["transform", "ghost"])
    assert raised.value.ids == ("ghost",)
    assert head(ledger) == before
