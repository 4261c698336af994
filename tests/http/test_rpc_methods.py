"""Every JSON-RPC method of API.md against the real server, on both stores."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.http.server import LiveServer
from tests.http.support import Names, error_of, gate, run_with, task

TASK_KEYS = {
    "id",
    "parent_id",
    "user_id",
    "name",
    "status",
    "priority",
    "dependencies",
    "inputs",
    "params",
    "schemas",
    "result",
    "error",
    "progress",
    "attempts",
    "created_at",
    "started_at",
    "completed_at",
    "has_children",
    "original_task_id",
    "has_copy",
    "tree_id",
}


def nested_ids(node: dict[str, Any]) -> dict[str, list[str]]:
    """{task id: ids of its children, in the order given} of a nested tree."""
    out = {node["id"]: [c["id"] for c in node["children"]]}
    for child in node["children"]:
        out |= nested_ids(child)
    return out


def flat(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {node["id"]: node}
    for child in node["children"]:
        out |= flat(child)
    return out


def three(names: Names) -> tuple[str, str, str, list[dict[str, Any]]]:
    r, a, b = names("r"), names("a"), names("b")
    return r, a, b, [task(r), task(a, r), task(b, a, dependencies=[a])]


def failing_tree(names: Names) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """root r: ok (echo), bad (fail), after (needs bad: skipped)."""
    ids = {k: names(k) for k in ("r", "ok", "bad", "after")}
    tasks = [
        task(ids["r"]),
        task(ids["ok"], ids["r"], **run_with("echo", v=1)),
        task(ids["bad"], ids["r"], **run_with("fail", message="boom")),
        task(ids["after"], ids["r"], dependencies=[ids["bad"]], **run_with("echo")),
    ]
    return tasks, ids


# -- tasks.create -------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["array", "object", "single"])
def test_create_takes_three_payload_shapes(
    shared_server: LiveServer, names: Names, shape: str
) -> None:
    r, a, b, tasks = three(names)
    payload: Any = {"array": tasks, "object": {"tasks": tasks}, "single": tasks[0]}[shape]
    root = shared_server.result("tasks.create", payload)
    assert root["id"] == r
    assert root["tree_status"] == "pending"
    assert set(root) >= TASK_KEYS
    if shape == "single":
        assert root["children"] == []
        assert root["has_children"] is False
        return
    assert nested_ids(root) == {r: [a], a: [b], b: []}
    by_id = flat(root)
    assert by_id[b]["dependencies"] == [{"id": a, "required": True}]
    assert {t["status"] for t in by_id.values()} == {"pending"}
    assert "tree_status" not in by_id[a]
    assert by_id[a]["tree_id"] == root["tree_id"]


def test_create_with_names_generates_ids(shared_server: LiveServer, names: Names) -> None:
    top, load, save = names("top"), names("load"), names("save")
    root = shared_server.result(
        "tasks.create",
        [
            {"name": top},
            {"name": load, "parent_id": top, "priority": 1},
            {
                "name": save,
                "parent_id": top,
                "dependencies": [{"id": load, "required": False}],
            },
        ],
    )
    assert root["name"] == top
    uuid.UUID(root["id"])  # a generated id
    by_name = {t["name"]: t for t in flat(root).values()}
    assert by_name[load]["parent_id"] == root["id"]
    assert by_name[save]["dependencies"] == [{"id": by_name[load]["id"], "required": False}]
    assert shared_server.result("tasks.get", {"task_id": by_name[save]["id"]})["name"] == save


# -- reads --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["tasks.get", "tasks.detail"])
def test_get_and_detail(shared_server: LiveServer, names: Names, method: str) -> None:
    r, a, _b, tasks = three(names)
    tasks[1] |= {"inputs": {"x": [1, "two", None]}, "priority": 0, "user_id": names("u")}
    shared_server.result("tasks.create", tasks)
    root = shared_server.result(method, {"task_id": r})
    assert root["id"] == r
    assert root["tree_status"] == "pending"
    assert root["has_children"] is True
    assert "children" not in root
    child = shared_server.result(method, {"task_id": a})
    assert set(child) == TASK_KEYS
    assert child["inputs"] == {"x": [1, "two", None]}
    assert child["priority"] == 0
    assert child["user_id"] == names("u")
    assert child["attempts"] == 0
    assert child["result"] is None
    assert child["started_at"] is None
    assert child["created_at"].endswith("Z")
    error = error_of(shared_server.rpc(method, {"task_id": names("ghost")}), -32001)
    assert error["data"]["ids"] == [names("ghost")]


def test_tree_from_any_task(shared_server: LiveServer, names: Names) -> None:
    r, a, b, tasks = three(names)
    shared_server.result("tasks.create", tasks)
    for task_id in (r, a, b):
        whole = shared_server.result("tasks.tree", {"task_id": task_id})
        assert whole["id"] == r
        assert whole["tree_status"] == "pending"
        assert nested_ids(whole) == {r: [a], a: [b], b: []}
    error_of(shared_server.rpc("tasks.tree", {"task_id": names("ghost")}), -32001)


def test_children_by_priority(shared_server: LiveServer, names: Names) -> None:
    r = names("r")
    kids = [(names("late"), 5), (names("first"), 0), (names("mid"), 2), (names("mid2"), 2)]
    shared_server.result("tasks.create", [task(r)] + [task(k, r, priority=p) for k, p in kids])
    expected = [names("first"), names("mid"), names("mid2"), names("late")]
    for key in ("task_id", "parent_id"):
        found = shared_server.result("tasks.children", {key: r})
        assert isinstance(found, list)
        assert [c["id"] for c in found] == expected
        assert all(c["parent_id"] == r for c in found)
    assert shared_server.result("tasks.children", {"task_id": names("late")}) == []
    error_of(shared_server.rpc("tasks.children", {"parent_id": names("ghost")}), -32001)


def test_list_filters_and_pages(shared_server: LiveServer, names: Names) -> None:
    user = names("lister")
    roots = [names(f"r{i}") for i in range(4)]
    for r in roots:
        shared_server.result(
            "tasks.create", [task(r, user_id=user), task(f"{r}-kid", r, user_id=user)]
        )
    finished = shared_server.result("tasks.execute", {"task_id": roots[1], "wait": True})
    assert finished["status"] == "completed"

    listed = shared_server.result("tasks.list", {"user_id": user})
    assert isinstance(listed, list)
    assert [t["id"] for t in listed] == roots[::-1]  # newest first, roots only
    assert all("tree_status" in t for t in listed)

    page = shared_server.result("tasks.list", {"user_id": user, "limit": 2, "offset": 1})
    assert [t["id"] for t in page] == [roots[2], roots[1]]
    assert shared_server.result("tasks.list", {"user_id": user, "offset": 4}) == []

    done = shared_server.result("tasks.list", {"user_id": user, "status": "completed"})
    assert [t["id"] for t in done] == [roots[1]]
    pending = shared_server.result("tasks.list", {"user_id": user, "status": "pending"})
    assert [t["id"] for t in pending] == [roots[3], roots[2], roots[0]]

    everything = shared_server.result("tasks.list", {"user_id": user, "root_only": False})
    assert {t["id"] for t in everything} == set(roots) | {f"{r}-kid" for r in roots}
    assert shared_server.result("tasks.list", {"user_id": names("nobody")}) == []
    assert len(shared_server.result("tasks.list", {"limit": 1})) == 1


# -- changes ------------------------------------------------------------------------------
def test_update_a_pending_task(shared_server: LiveServer, names: Names) -> None:
    r, a, b, tasks = three(names)
    c = names("c")
    shared_server.result("tasks.create", [*tasks, task(c, r)])
    changes = {
        "name": "renamed",
        "priority": 7,
        "inputs": {"n": 1},
        "params": {"executor_id": "echo"},
        "schemas": {"note": "kept"},
        "dependencies": [a, {"id": c, "required": False}],
    }
    updated = shared_server.result("tasks.update", {"task_id": b} | changes)
    assert updated["id"] == b
    for key, value in changes.items():
        if key != "dependencies":
            assert updated[key] == value
    expected_deps = [{"id": a, "required": True}, {"id": c, "required": False}]
    assert updated["dependencies"] == expected_deps
    again = shared_server.result("tasks.get", {"task_id": b})
    assert again["name"] == "renamed"
    assert again["dependencies"] == expected_deps
    assert again["parent_id"] == a


def test_update_refuses_fields_that_are_not_updatable(
    shared_server: LiveServer, names: Names
) -> None:
    r = names("r")
    shared_server.result("tasks.create", [task(r)])
    fixed = {"parent_id": "x", "user_id": "u", "status": "completed", "result": 1}
    error = error_of(shared_server.rpc("tasks.update", {"task_id": r, **fixed}), -32602)
    bad = {f["field"] for f in error["data"]["fields"]}
    assert set(fixed) <= bad
    assert shared_server.result("tasks.get", {"task_id": r})["status"] == "pending"


def test_update_only_while_pending(shared_server: LiveServer, names: Names) -> None:
    r, a, _b, tasks = three(names)
    shared_server.result("tasks.create", tasks)
    shared_server.result("tasks.execute", {"task_id": r, "wait": True})
    error = error_of(shared_server.rpc("tasks.update", {"task_id": a, "name": "x"}), -32011)
    assert a in error["data"]["ids"]
    assert shared_server.result("tasks.get", {"task_id": a})["name"] == a
    error_of(shared_server.rpc("tasks.update", {"task_id": names("ghost"), "name": "x"}), -32001)


def test_delete(shared_server: LiveServer, names: Names) -> None:
    r, a, b, c, d = (names(k) for k in "rabcd")
    shared_server.result(
        "tasks.create",
        [task(r), task(a, r), task(b, a), task(c, a), task(d, r, dependencies=[c])],
    )
    # `c` is needed by `d`: refused, naming the dependent; nothing is removed
    refused = error_of(shared_server.rpc("tasks.delete", {"task_id": a}), -32011)
    assert d in refused["data"]["ids"]
    assert shared_server.result("tasks.get", {"task_id": c})["id"] == c

    gone = shared_server.result("tasks.delete", {"task_id": d})
    assert gone["success"] is True
    assert gone["task_id"] == d
    assert gone["deleted_count"] == 1
    subtree = shared_server.result("tasks.delete", {"task_id": a})
    assert (subtree["success"], subtree["task_id"], subtree["deleted_count"]) == (True, a, 3)
    for removed in (a, b, c, d):
        error_of(shared_server.rpc("tasks.get", {"task_id": removed}), -32001)
    assert nested_ids(shared_server.result("tasks.tree", {"task_id": r})) == {r: []}
    error_of(shared_server.rpc("tasks.delete", {"task_id": a}), -32001)


def test_delete_refuses_a_task_that_ran(shared_server: LiveServer, names: Names) -> None:
    r, _a, b, tasks = three(names)
    shared_server.result("tasks.create", tasks)
    shared_server.result("tasks.execute", {"task_id": r, "wait": True})
    for task_id in (r, b):
        error = error_of(shared_server.rpc("tasks.delete", {"task_id": task_id}), -32011)
        assert task_id in error["data"]["ids"]
    assert shared_server.result("tasks.get", {"task_id": b})["status"] == "completed"


# -- copy ---------------------------------------------------------------------------------
def test_copy_modes(shared_server: LiveServer, names: Names) -> None:
    tasks, ids = failing_tree(names)
    shared_server.result("tasks.create", tasks)
    assert (
        shared_server.result("tasks.execute", {"task_id": ids["r"], "wait": True})["status"]
        == "failed"
    )

    def originals(root: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {t["original_task_id"]: t for t in flat(root).values()}

    minimal = shared_server.result("tasks.copy", {"task_id": ids["bad"]})
    got = originals(minimal)
    assert set(got) == {ids["r"], ids["bad"], ids["after"]}  # the failure and its dependent
    assert got[ids["r"]]["status"] == "completed"  # carried over
    assert got[ids["bad"]]["status"] == got[ids["after"]]["status"] == "pending"
    assert minimal["id"] not in ids.values()
    assert minimal["tree_status"] == "pending"
    assert shared_server.result("tasks.get", {"task_id": ids["bad"]})["has_copy"] is True

    full = shared_server.result("tasks.copy", {"task_id": ids["r"], "copy_mode": "full"})
    assert set(originals(full)) == set(ids.values())
    assert {t["status"] for t in flat(full).values()} == {"pending"}

    custom = shared_server.result(
        "tasks.copy",
        {"task_id": ids["r"], "copy_mode": "custom", "custom_task_ids": [ids["ok"]]},
    )
    got = originals(custom)
    assert set(got) == {ids["r"], ids["ok"]}
    assert got[ids["ok"]]["status"] == "pending"

    rerun = shared_server.result("tasks.execute", {"task_id": minimal["id"], "wait": True})
    assert rerun["status"] == "failed"


def test_copy_dry_run_saves_nothing(shared_server: LiveServer, names: Names) -> None:
    tasks, ids = failing_tree(names)
    shared_server.result("tasks.create", tasks)
    shared_server.result("tasks.execute", {"task_id": ids["r"], "wait": True})
    before = shared_server.result("tasks.history", {"task_id": ids["r"]})

    plan = shared_server.result("tasks.copy", {"task_id": ids["bad"], "save": False})
    assert plan["saved"] is False
    planned = {t["original_task_id"]: t for t in plan["tasks"]}
    assert set(planned) == {ids["r"], ids["bad"], ids["after"]}
    assert planned[ids["r"]]["status"] == "completed"
    assert planned[ids["bad"]]["status"] == "pending"
    for planned_task in plan["tasks"]:
        error_of(shared_server.rpc("tasks.get", {"task_id": planned_task["id"]}), -32001)
    assert shared_server.result("tasks.history", {"task_id": ids["r"]}) == before
    assert shared_server.result("tasks.get", {"task_id": ids["bad"]})["has_copy"] is False


# -- execute ------------------------------------------------------------------------------
def test_execute_a_stored_tree_and_wait(shared_server: LiveServer, names: Names) -> None:
    r, _a, b, tasks = three(names)
    tasks[2] |= run_with("echo", say="hi")
    shared_server.result("tasks.create", tasks)
    done = shared_server.result("tasks.execute", {"task_id": r, "wait": True})
    assert done["root_task_id"] == r
    assert done["status"] == "completed"
    assert done["root_task"]["tree_status"] == "completed"
    tree = flat(shared_server.result("tasks.tree", {"task_id": r}))
    assert {t["status"] for t in tree.values()} == {"completed"}
    assert tree[b]["result"]["say"] == "hi"  # echo: its inputs (dependency results merged)
    assert tree[b]["attempts"] == 1
    again = error_of(shared_server.rpc("tasks.execute", {"task_id": r}), -32011)
    assert r in again["data"]["ids"]
    error_of(shared_server.rpc("tasks.execute", {"task_id": names("ghost")}), -32001)


def test_execute_new_tasks_without_waiting(shared_server: LiveServer, names: Names) -> None:
    r, held = names("r"), names("held")
    started = shared_server.result(
        "tasks.execute",
        {"tasks": [task(r), task(held, r, **run_with("test.hold", gate=held))]},
    )
    assert started["root_task_id"] == r
    assert started["status"] == "in_progress"
    gate(held).wait_entered()
    assert shared_server.result("tasks.get", {"task_id": held})["status"] == "in_progress"
    assert shared_server.result("tasks.get", {"task_id": r})["tree_status"] == "in_progress"
    report = shared_server.result("tasks.cancel", {"task_ids": [r]})
    assert report[0]["status"] == "cancelled"


def test_execute_new_tasks_and_wait_for_a_failure(shared_server: LiveServer, names: Names) -> None:
    tasks, ids = failing_tree(names)
    done = shared_server.result("tasks.execute", {"tasks": tasks, "wait": True})
    assert done["root_task_id"] == ids["r"]
    assert done["status"] == "failed"
    tree = flat(shared_server.result("tasks.tree", {"task_id": ids["r"]}))
    assert tree[ids["ok"]]["status"] == "completed"
    assert tree[ids["ok"]]["result"] == {"v": 1}
    assert tree[ids["bad"]]["status"] == "failed"
    assert tree[ids["bad"]]["error"] == "RequestedFailure: boom"
    assert tree[ids["after"]]["status"] == "skipped"
    assert tree[ids["after"]]["error"]


# -- cancel and running.* -----------------------------------------------------------------
def test_cancel_reports_per_id(shared_server: LiveServer, names: Names) -> None:
    done, waiting, ghost = names("done"), names("waiting"), names("ghost")
    shared_server.result("tasks.execute", {"tasks": [task(done)], "wait": True})
    shared_server.result("tasks.create", [task(waiting), task(f"{waiting}-kid", waiting)])
    report = shared_server.result("tasks.cancel", {"task_ids": [waiting, done, ghost]})
    assert isinstance(report, list)
    by_id = {r["task_id"]: r for r in report}
    assert [r["task_id"] for r in report] == [waiting, done, ghost]
    assert by_id[waiting]["status"] == "cancelled"
    assert set(by_id[waiting]["cancelled_ids"]) == {waiting, f"{waiting}-kid"}
    assert by_id[done]["status"] == "not_cancelable"
    assert by_id[ghost]["status"] == "not_found"
    assert all(isinstance(r["message"], str) and r["message"] for r in report)
    root = shared_server.result("tasks.get", {"task_id": waiting})
    assert (root["status"], root["tree_status"]) == ("cancelled", "cancelled")


def test_running_methods_and_cancelling_a_running_task(
    shared_server: LiveServer, names: Names
) -> None:
    user, r, held, after = names("runner"), names("r"), names("held"), names("after")
    shared_server.result(
        "tasks.execute",
        {
            "tasks": [
                task(r, user_id=user),
                task(held, r, user_id=user, **run_with("test.hold", gate=held)),
                task(after, r, user_id=user, dependencies=[held]),
            ]
        },
    )
    gate(held).wait_entered()

    running = shared_server.result("tasks.running.list", {"user_id": user})
    assert [t["id"] for t in running] == [r]
    assert running[0]["tree_status"] == "in_progress"
    assert r in {t["id"] for t in shared_server.result("tasks.running.list", {})}
    count = shared_server.result("tasks.running.count", {"user_id": user})
    assert count == {"count": 1, "tasks_in_progress": count["tasks_in_progress"], "user_id": user}
    assert count["tasks_in_progress"] >= 1
    assert shared_server.result("tasks.running.count", {})["count"] >= 1
    status = shared_server.result(
        "tasks.running.status", {"task_ids": [held, after, names("ghost")]}
    )
    assert [(s["task_id"], s["status"], s["is_running"]) for s in status] == [
        (held, "in_progress", True),
        (after, "pending", False),
        (names("ghost"), "not_found", False),
    ]

    report = shared_server.result("tasks.running.cancel", {"task_ids": [r]})
    assert report[0]["status"] == "cancelled"
    assert set(report[0]["cancelled_ids"]) == {held, after}  # the root had completed
    tree = flat(shared_server.result("tasks.tree", {"task_id": r}))
    assert tree[held]["status"] == tree[after]["status"] == "cancelled"
    assert tree[r]["tree_status"] == "cancelled"
    assert shared_server.result("tasks.running.list", {"user_id": user}) == []
    assert shared_server.result("tasks.running.count", {"user_id": user})["count"] == 0
    again = shared_server.result("tasks.cancel", {"task_ids": [held]})
    assert again[0]["status"] == "not_cancelable"


# -- history and replay -------------------------------------------------------------------
def test_history_pages_through_events(shared_server: LiveServer, names: Names) -> None:
    r, a, b, tasks = three(names)
    shared_server.result("tasks.create", tasks)
    shared_server.result("tasks.execute", {"task_id": r, "wait": True})
    events = shared_server.result("tasks.history", {"task_id": b})
    versions = [e["version"] for e in events]
    assert versions == list(range(1, len(versions) + 1))
    assert events[0]["type"] == "Created"
    assert {"version", "type", "timestamp", "task_id", "data"} <= set(events[0])
    assert {e["task_id"] for e in events if e["type"] == "Completed"} == {r, a, b}

    page = shared_server.result("tasks.history", {"task_id": r, "after_version": 2, "limit": 3})
    assert [e["version"] for e in page] == [3, 4, 5]
    tail = shared_server.result("tasks.history", {"task_id": r, "after_version": versions[-1]})
    assert tail == []
    error_of(shared_server.rpc("tasks.history", {"task_id": names("ghost")}), -32001)


def test_replay_by_version_and_time(shared_server: LiveServer, names: Names) -> None:
    r, a, b, tasks = three(names)
    shared_server.result("tasks.create", tasks)
    shared_server.result("tasks.execute", {"task_id": r, "wait": True})
    events = shared_server.result("tasks.history", {"task_id": r})

    first = shared_server.result("tasks.replay", {"task_id": b, "version": 1})
    assert first["version"] == 1
    assert first["id"] == r
    assert {t["status"] for t in flat(first).values()} == {"pending"}

    completed_a = next(e for e in events if e["type"] == "Completed" and e["task_id"] == a)
    then = shared_server.result("tasks.replay", {"task_id": r, "version": completed_a["version"]})
    assert flat(then)[a]["status"] == "completed"
    assert flat(then)[b]["status"] != "completed"

    at_start = shared_server.result("tasks.replay", {"task_id": r, "at": events[0]["timestamp"]})
    assert at_start["version"] >= 1
    assert at_start["version"] <= max(
        e["version"] for e in events if e["timestamp"] == events[0]["timestamp"]
    )
    now = shared_server.result("tasks.replay", {"task_id": r, "at": events[-1]["timestamp"]})
    assert now["version"] == events[-1]["version"]
    assert now["tree_status"] == "completed"
    latest = shared_server.result("tasks.replay", {"task_id": r})
    assert latest["version"] == events[-1]["version"]


def test_history_and_replay_outlive_a_deleted_task(shared_server: LiveServer, names: Names) -> None:
    r, a, b, tasks = three(names)
    shared_server.result("tasks.create", tasks)
    shared_server.result("tasks.delete", {"task_id": a})
    events = shared_server.result("tasks.history", {"task_id": b})
    assert events[0]["type"] == "Created"
    old = shared_server.result("tasks.replay", {"task_id": b, "version": 1})
    assert set(flat(old)) == {r, a, b}


# -- system -------------------------------------------------------------------------------
def test_system_health(shared_server: LiveServer) -> None:
    health = shared_server.result("system.health", {}, path="/system")
    assert health["status"] == "ok"
    assert isinstance(health["version"], str)
    assert health["store"]["kind"] in ("sqlite", "postgresql")
    assert isinstance(health["store"]["location"], str)
    assert isinstance(health["projector_lag"], int)
    assert health["projector_lag"] >= 0
    assert shared_server.result("system.health", path="/system")["status"] == "ok"
