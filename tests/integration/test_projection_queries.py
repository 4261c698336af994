"""ReadModel queries on both stores: task lists and their filters, children, running trees,
counts, and the domain errors a caller gets for unknown ids and bad arguments. Each answer
is checked against the aggregates' own JSON (application.views)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from application.ledger import Ledger
from application.views import children_of, iso, task_json, tree_json
from domain.errors import InvalidSpec, TaskNotFound
from domain.specs import parse_changes
from domain.status import TaskStatus
from domain.tree import TaskTree
from projections.projector import Projector
from projections.queries import MAX_LIMIT, ReadModel
from projections.schema import create_read_engine
from tests.integration.support import run_task, start_task, task

STATUSES = [s.value for s in TaskStatus]


@pytest.fixture
def engine(ledger: Ledger) -> Iterator[sa.Engine]:
    engine = create_read_engine(ledger.settings)
    yield engine
    engine.dispose()


def caught_up(ledger: Ledger, engine: sa.Engine) -> ReadModel:
    Projector(ledger, engine).catch_up()
    return ReadModel(engine)


def as_json(ledger: Ledger, *task_ids: str) -> list[dict[str, Any]]:
    """What the aggregates say each task is (views.task_json)."""
    out = []
    for task_id in task_ids:
        tree = ledger.tree_of(task_id)
        out.append(task_json(tree, tree.task(task_id)))
    return out


def newest_first(*trees: TaskTree) -> list[str]:
    """Ids of every task of `trees` (given oldest first), newest first: later trees first,
    and within a tree (all its tasks made at once) the last listed first."""
    return [
        t.id for tree in reversed(trees) for t in sorted(tree.tasks.values(), key=lambda t: -t.seq)
    ]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


# -- list_tasks ------------------------------------------------------------------------------------
@pytest.fixture
def four_trees(ledger: Ledger) -> list[TaskTree]:
    """Trees owned by alice, bob, alice and nobody, made in that order; one alice task is
    bob's; the second alice tree has run (one task completed, one failed)."""
    return [
        ledger.create_tree(
            [task("r1", user_id="alice"), task("a1", "r1"), task("b1", "r1", user_id="bob")]
        ),
        ledger.create_tree([task("r2", user_id="bob"), task("a2", "r2")]),
        ledger.create_tree(
            [task("r3", user_id="alice"), task("a3", "r3"), task("b3", "r3"), task("c3", "r3")]
        ),
        ledger.create_tree([task("r4"), task("a4", "r4")]),
    ]


@pytest.fixture
def ran(ledger: Ledger, four_trees: list[TaskTree]) -> list[TaskTree]:
    tree = ledger.request_run("r3")
    run_task(ledger, "a3", {"n": 3}, tree=tree)
    run_task(ledger, "b3", error="ValueError: no")
    return [ledger.tree_of(t.root_id) for t in four_trees]


def test_list_tasks_gives_roots_newest_first_as_the_aggregates_say(
    ledger: Ledger, engine: sa.Engine, ran: list[TaskTree]
) -> None:
    model = caught_up(ledger, engine)
    listed = model.list_tasks()
    assert ids(listed) == ["r4", "r3", "r2", "r1"]
    assert listed == as_json(ledger, "r4", "r3", "r2", "r1")
    assert all("tree_status" in item for item in listed)
    assert listed[1]["tree_status"] == "in_progress"


def test_list_tasks_of_every_task_breaks_ties_by_creation_order(
    ledger: Ledger, engine: sa.Engine, ran: list[TaskTree]
) -> None:
    model = caught_up(ledger, engine)
    listed = model.list_tasks(root_only=False)
    assert ids(listed) == newest_first(*ran)
    assert listed == as_json(ledger, *newest_first(*ran))
    assert [("tree_status" in item) for item in listed] == [
        item["parent_id"] is None for item in listed
    ]


def test_list_tasks_by_user_follows_each_task_not_its_root(
    ledger: Ledger, engine: sa.Engine, ran: list[TaskTree]
) -> None:
    model = caught_up(ledger, engine)
    assert ids(model.list_tasks(user_id="alice")) == ["r3", "r1"]
    assert ids(model.list_tasks(user_id="bob")) == ["r2"]
    # children without a user_id take the root's; b1 keeps its own
    assert ids(model.list_tasks(user_id="alice", root_only=False)) == [
        "c3",
        "b3",
        "a3",
        "r3",
        "a1",
        "r1",
    ]
    assert ids(model.list_tasks(user_id="bob", root_only=False)) == ["a2", "r2", "b1"]
    assert model.list_tasks(user_id="carol", root_only=False) == []


def test_list_tasks_by_status(ledger: Ledger, engine: sa.Engine, ran: list[TaskTree]) -> None:
    model = caught_up(ledger, engine)
    assert ids(model.list_tasks(status="completed", root_only=False)) == ["a3"]
    assert ids(model.list_tasks(status="failed", root_only=False)) == ["b3"]
    assert model.list_tasks(status="completed") == []  # no root completed
    assert ids(model.list_tasks(status="pending")) == ["r4", "r3", "r2", "r1"]
    assert ids(model.list_tasks(status="pending", user_id="alice", root_only=False)) == [
        "c3",
        "r3",
        "a1",
        "r1",
    ]
    for status in STATUSES:
        everyone = model.list_tasks(status=status, root_only=False)
        assert all(item["status"] == status for item in everyone)


def test_list_tasks_pages_with_limit_and_offset(
    ledger: Ledger, engine: sa.Engine, ran: list[TaskTree]
) -> None:
    model = caught_up(ledger, engine)
    everything = model.list_tasks(root_only=False)
    assert len(everything) == 11
    for size in (1, 2, 3, 4):
        pages = [
            model.list_tasks(root_only=False, limit=size, offset=start)
            for start in range(0, 12, size)
        ]
        assert all(len(page) <= size for page in pages)
        assert [item for page in pages for item in page] == everything
    assert model.list_tasks(root_only=False, offset=11) == []
    assert model.list_tasks(root_only=False, offset=2**63 - 1) == []
    assert ids(model.list_tasks(limit=1)) == ["r4"]
    assert ids(model.list_tasks(limit=2, offset=1, user_id="alice", root_only=False)) == [
        "b3",
        "a3",
    ]


def test_a_limit_above_the_maximum_gives_the_maximum(ledger: Ledger, engine: sa.Engine) -> None:
    ledger.create_tree([task("big"), *(task(f"k{i}", "big") for i in range(MAX_LIMIT + 4))])
    model = caught_up(ledger, engine)
    listed = model.list_tasks(root_only=False, limit=2**63 - 1)
    assert len(listed) == MAX_LIMIT
    assert ids(listed[:2]) == [f"k{MAX_LIMIT + 3}", f"k{MAX_LIMIT + 2}"]
    assert len(model.running(limit=2**63 - 1)) == 0


# -- children, tree, tree_status, has_children -----------------------------------------------------
def test_children_come_most_urgent_first_then_in_creation_order(
    ledger: Ledger, engine: sa.Engine
) -> None:
    priorities = [3, 0, 2, 0, 1, 2]
    ledger.create_tree(
        [
            task("p"),
            *(task(f"c{i}", "p", priority=n) for i, n in enumerate(priorities)),
            task("g1", "c1", priority=1),
            task("g0", "c1", priority=0),
        ]
    )
    model = caught_up(ledger, engine)
    assert ids(model.children("p")) == ["c1", "c3", "c4", "c2", "c5", "c0"]
    assert ids(model.children("c1")) == ["g0", "g1"]
    assert model.children("c0") == []
    tree = ledger.tree_of("p")
    for task_id in tree.tasks:
        assert model.children(task_id) == [task_json(tree, c) for c in children_of(tree, task_id)]

    ledger.update_task("c0", parse_changes({"priority": 0}))
    ledger.update_task("c3", parse_changes({"priority": 4}))
    model = caught_up(ledger, engine)
    assert ids(model.children("p")) == ["c0", "c1", "c4", "c2", "c5", "c3"]
    tree = ledger.tree_of("p")
    assert model.tree("p") == tree_json(tree)
    assert [c["id"] for c in model.tree("g0")["children"]] == ids(model.children("p"))


def test_tree_status_is_on_the_root_only_and_follows_the_run(
    ledger: Ledger, engine: sa.Engine
) -> None:
    ledger.create_tree([task("r"), task("a", "r"), task("b", "r", dependencies=["a"])])

    def status_now() -> str:
        model = caught_up(ledger, engine)
        tree = ledger.tree_of("r")
        assert model.tree("r") == tree_json(tree)
        assert model.task("r") == task_json(tree, tree.task("r"))
        for task_id in ("a", "b"):
            assert "tree_status" not in model.task(task_id)
        root = model.task("r")["tree_status"]
        assert model.tree("b")["tree_status"] == root
        assert root == tree.status.value
        return str(root)

    assert status_now() == "pending"
    start_task(ledger, "a")  # a running task: in progress even before a run is requested
    assert status_now() == "in_progress"
    tree = ledger.request_run("r")
    tree.complete("a", None)
    ledger.save_trees(tree)
    assert status_now() == "in_progress"
    run_task(ledger, "b", [])
    assert status_now() == "in_progress"  # the root has not run yet
    run_task(ledger, "r")
    assert status_now() == "completed"


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_tree_status_of_a_tree_that_did_not_complete(
    ledger: Ledger, engine: sa.Engine, end: str
) -> None:
    ledger.create_tree([task("r"), task("a", "r"), task("b", "r", dependencies=["a"])])
    tree = ledger.request_run("r")
    if end == "failed":
        run_task(ledger, "a", error="RuntimeError: x", tree=tree)  # b is skipped
        run_task(ledger, "r")
    else:
        start_task(ledger, "a")
        ledger.cancel(["r"])
    model = caught_up(ledger, engine)
    assert model.task("r")["tree_status"] == end
    assert model.task("b")["status"] == ("skipped" if end == "failed" else "cancelled")
    assert model.tree("a") == tree_json(ledger.tree_of("r"))
    assert model.running() == []


def test_a_tree_whose_root_was_removed_has_no_tasks_left(ledger: Ledger, engine: sa.Engine) -> None:
    created = ledger.create_tree([task("r"), task("a", "r"), task("b", "r", dependencies=["a"])])
    ledger.remove_task("r")
    model = caught_up(ledger, engine)
    for task_id in ("r", "a", "b"):
        with pytest.raises(TaskNotFound):
            model.task(task_id)
    (row,) = [r for r in model.tree_rows() if r["id"] == str(created.id)]
    assert (row["status"], row["task_count"], row["pending"]) == ("cancelled", 0, 0)
    assert model.list_tasks(root_only=False) == []
    assert model.count()["total"] == 0


def test_has_children_turns_false_when_the_last_child_is_removed(
    ledger: Ledger, engine: sa.Engine
) -> None:
    ledger.create_tree(
        [task("r"), task("p", "r"), task("k1", "p"), task("k2", "p"), task("g", "k2")]
    )
    model = caught_up(ledger, engine)
    assert [model.task(i)["has_children"] for i in ("r", "p", "k1", "k2", "g")] == [
        True,
        True,
        False,
        True,
        False,
    ]
    ledger.remove_task("k1")
    model = caught_up(ledger, engine)
    assert model.task("p")["has_children"] is True
    ledger.remove_task("k2")  # and g with it
    model = caught_up(ledger, engine)
    assert model.task("p")["has_children"] is False
    assert model.task("r")["has_children"] is True
    assert model.children("p") == []
    for gone in ("k1", "k2", "g"):
        with pytest.raises(TaskNotFound):
            model.task(gone)
    tree = ledger.tree_of("r")
    assert model.task("p") == task_json(tree, tree.task("p"))
    assert model.tree("r") == tree_json(tree)
    ledger.remove_task("p")
    model = caught_up(ledger, engine)
    assert model.task("r")["has_children"] is False
    assert model.tree("r") == tree_json(ledger.tree_of("r"))


# -- running trees ---------------------------------------------------------------------------------
@pytest.fixture
def runs(ledger: Ledger) -> None:
    """pending (never run), done (completed), busy (run requested, a task running and one
    waiting for its retry), asked (run requested, nothing started), solo (a task started
    without a run request), failed (ended by a failure)."""
    ledger.create_tree([task("pending", user_id="alice"), task("pending.a", "pending")])
    ledger.create_tree([task("done", user_id="alice"), task("done.a", "done")])
    tree = ledger.request_run("done")
    run_task(ledger, "done.a", 1, tree=tree)
    run_task(ledger, "done")
    ledger.create_tree(
        [
            task("busy", user_id="alice"),
            task("busy.a", "busy"),
            task("busy.b", "busy"),
            task("busy.c", "busy", user_id="bob"),
        ]
    )
    tree = ledger.request_run("busy")
    tree.start("busy.a", 1, {})
    tree.record_progress("busy.a", 0.25, "a quarter")
    tree.start("busy.b", 1, {})
    tree.fail_attempt("busy.b", "OSError: flaky", 30.0)
    ledger.save_trees(tree)
    ledger.create_tree([task("asked", user_id="bob")])
    ledger.request_run("asked")
    ledger.create_tree([task("solo"), task("solo.a", "solo")])
    start_task(ledger, "solo.a")
    ledger.create_tree([task("failed", user_id="bob")])
    ledger.request_run("failed")
    run_task(ledger, "failed", error="RuntimeError: no")


def test_running_lists_the_roots_of_trees_in_progress_newest_first(
    ledger: Ledger, engine: sa.Engine, runs: None
) -> None:
    model = caught_up(ledger, engine)
    running = model.running()
    assert ids(running) == ["solo", "asked", "busy"]
    assert running == as_json(ledger, "solo", "asked", "busy")
    assert {item["tree_status"] for item in running} == {"in_progress"}
    assert ids(model.running(user_id="alice")) == ["busy"]
    assert ids(model.running(user_id="bob")) == ["asked"]  # the tree's owner, not busy.c's
    assert model.running(user_id="carol") == []
    assert ids(model.running(limit=2)) == ["solo", "asked"]


def test_running_count_counts_trees_in_progress_and_their_running_tasks(
    ledger: Ledger, engine: sa.Engine, runs: None
) -> None:
    model = caught_up(ledger, engine)
    assert model.running_count() == {"count": 3, "tasks_in_progress": 3}
    assert model.running_count(user_id="alice") == {
        "count": 1,
        "tasks_in_progress": 2,
        "user_id": "alice",
    }
    assert model.running_count(user_id="bob") == {
        "count": 1,
        "tasks_in_progress": 0,
        "user_id": "bob",
    }
    assert model.running_count(user_id="carol") == {
        "count": 0,
        "tasks_in_progress": 0,
        "user_id": "carol",
    }


def test_running_status_reports_each_id_in_the_order_given(
    ledger: Ledger, engine: sa.Engine, runs: None
) -> None:
    model = caught_up(ledger, engine)
    asked = ["busy.b", "nope", "busy.a", "done.a", "pending.a", "busy.a"]
    report = model.running_status(asked)
    assert [r["task_id"] for r in report] == asked
    assert report[1] == {"task_id": "nope", "status": "not_found", "is_running": False}
    busy = ledger.tree_of("busy")
    for entry in (report[0], report[2], report[3], report[4]):
        tree = ledger.tree_of(entry["task_id"])
        t = tree.task(entry["task_id"])
        assert entry["context_id"] == t.id
        assert (entry["name"], entry["status"], entry["error"]) == (t.name, t.status, t.error)
        assert (entry["progress"], entry["attempts"]) == (t.progress, t.attempts)
        assert entry["is_running"] is (t.status is TaskStatus.IN_PROGRESS)
        assert entry["retry_at"] == iso(t.retry_at)
        assert entry["started_at"] == iso(t.started_at)
    assert report[0]["retry_at"] is not None  # waiting for its retry
    assert report[0]["error"] == "OSError: flaky"
    assert report[2]["progress"] == 0.25
    assert report[5] == report[2]
    assert model.running_status([]) == []

    busy.start("busy.b", 2, {})  # the retry: running again, no retry time
    busy.complete("busy.a", "ok")
    ledger.save_trees(busy)
    model = caught_up(ledger, engine)
    b, a = model.running_status(["busy.b", "busy.a"])
    assert (b["is_running"], b["retry_at"], b["attempts"]) == (True, None, 2)
    assert (a["is_running"], a["status"], a["progress"]) == (False, "completed", 1.0)


def test_a_tree_that_completes_leaves_the_running_trees(
    ledger: Ledger, engine: sa.Engine, runs: None
) -> None:
    tree = ledger.tree_of("busy")
    tree.complete("busy.a", None)
    tree.start("busy.b", 2, {})
    tree.complete("busy.b", None)
    ledger.save_trees(tree)
    for task_id in ("busy.c", "busy"):
        run_task(ledger, task_id)
    model = caught_up(ledger, engine)
    assert ids(model.running()) == ["solo", "asked"]
    assert model.running_count() == {"count": 2, "tasks_in_progress": 1}
    assert model.task("busy")["tree_status"] == "completed"
    assert model.running_count(user_id="alice")["count"] == 0


# -- count -----------------------------------------------------------------------------------------
def test_count_by_user_and_status_matches_the_aggregates(
    ledger: Ledger, engine: sa.Engine, runs: None, ran: list[TaskTree]
) -> None:
    model = caught_up(ledger, engine)
    expected: Counter[tuple[str | None, str]] = Counter()
    for row in model.tree_rows():
        tree = ledger.tree_of(row["root_id"])
        expected.update((t.user_id, t.status.value) for t in tree.tasks.values())

    def wanted(user: str | None, status: str) -> int:
        return sum(n for (u, s), n in expected.items() if s == status and user in (None, u))

    for user in (None, "alice", "bob", "carol"):
        got = model.count(user_id=user)
        by_status = {s: wanted(user, s) for s in STATUSES}
        assert got["by_status"] == by_status
        assert got["total"] == sum(by_status.values())
        assert ("user_id" in got) is (user is not None)
        for status in STATUSES:
            one = model.count(user_id=user, status=status)
            assert one["by_status"] == {status: by_status[status]}
            assert one["total"] == by_status[status]
    # busy.a, and busy.b waiting for its retry (busy.c is bob's)
    assert model.count(user_id="alice")["by_status"]["in_progress"] == 2
    assert model.count()["by_status"]["skipped"] == 0
    assert model.count(user_id="carol")["total"] == 0


def test_count_follows_removals_and_cancels(ledger: Ledger, engine: sa.Engine) -> None:
    ledger.create_tree([task("r", user_id="u"), task("a", "r"), task("b", "r", dependencies=["a"])])
    ledger.create_tree([task("s", user_id="u"), task("s.a", "s")])
    model = caught_up(ledger, engine)
    assert model.count(user_id="u")["by_status"]["pending"] == 5
    ledger.remove_task("b")
    ledger.cancel(["a"])
    ledger.remove_task("s")  # a whole tree
    model = caught_up(ledger, engine)
    assert model.count(user_id="u")["by_status"] == dict.fromkeys(STATUSES, 0) | {
        "pending": 1,
        "cancelled": 1,
    }
    assert model.count() == {"total": 2, "by_status": model.count(user_id="u")["by_status"]}


# -- unknown ids and bad arguments -----------------------------------------------------------------
def test_unknown_ids_are_task_not_found(ledger: Ledger, engine: sa.Engine) -> None:
    ledger.create_tree([task("r"), task("gone", "r")])
    ledger.remove_task("gone")
    model = caught_up(ledger, engine)
    for task_id in ("nope", "gone", "", "R"):
        for query in (model.task, model.tree, model.children):
            with pytest.raises(TaskNotFound) as raised:
                query(task_id)
            assert raised.value.ids == (task_id,)
    assert model.running_status(["gone"])[0]["status"] == "not_found"


@pytest.mark.parametrize("task_id", [5, None, ["a"], "\ud800"])
def test_malformed_ids_are_task_not_found_as_the_ledger_says(
    ledger: Ledger, engine: sa.Engine, task_id: Any
) -> None:
    """The Ledger answers any value a client may send with TaskNotFound (see
    test_query_arguments); the read model must answer the same, on either store."""
    ledger.create_tree([task("5"), task("a", "5")])
    model = caught_up(ledger, engine)
    with pytest.raises(TaskNotFound):
        ledger.tree_of(task_id)
    for query in (model.task, model.tree, model.children):
        with pytest.raises(TaskNotFound):
            query(task_id)
    assert model.running_status([task_id])[0]["status"] == "not_found"


@pytest.mark.parametrize(
    ("query", "kwargs", "field"),
    [
        ("list_tasks", {"status": "done"}, "status"),
        ("list_tasks", {"status": "PENDING"}, "status"),
        ("list_tasks", {"status": 1}, "status"),
        ("count", {"status": "running"}, "status"),
        ("count", {"status": ""}, "status"),
        ("list_tasks", {"limit": 0}, "limit"),
        ("list_tasks", {"limit": -1}, "limit"),
        ("list_tasks", {"limit": True}, "limit"),
        ("list_tasks", {"limit": "5"}, "limit"),
        ("list_tasks", {"limit": 5.0}, "limit"),
        ("list_tasks", {"limit": 2**63}, "limit"),
        ("list_tasks", {"offset": -1}, "offset"),
        ("list_tasks", {"offset": None}, "offset"),
        ("running", {"limit": 0}, "limit"),
        ("running", {"limit": "1"}, "limit"),
    ],
)
def test_bad_arguments_are_invalid_spec_naming_the_field(
    ledger: Ledger, engine: sa.Engine, query: str, kwargs: dict[str, Any], field: str
) -> None:
    ledger.create_tree([task("r")])
    model = caught_up(ledger, engine)
    with pytest.raises(InvalidSpec) as raised:
        getattr(model, query)(**kwargs)
    assert [f.field for f in raised.value.fields] == [field]
    assert raised.value.message.startswith(f"{field}:")


def test_an_empty_user_id_is_refused_so_it_never_meets_tasks_without_a_user(
    ledger: Ledger, engine: sa.Engine
) -> None:
    """Tasks without a user are counted under no user; an empty user id would be ambiguous
    with that, so it is refused when a tree is created and when a query names it."""
    with pytest.raises(InvalidSpec) as raised:
        ledger.create_tree([task("blank", user_id="")])
    assert [f.field for f in raised.value.fields] == ["tasks[0].user_id"]
    ledger.create_tree([task("nobody's")])
    model = caught_up(ledger, engine)
    for query in (model.count, model.list_tasks, model.running, model.running_count):
        with pytest.raises(InvalidSpec) as refused:
            query(user_id="")
        assert [f.field for f in refused.value.fields] == ["user_id"]
    assert model.count()["total"] == 1
