"""Every error code of API.md, with its data object, against the real server (both stores)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.http.server import LiveServer
from tests.http.support import (
    Names,
    error_of,
    fields_of,
    post,
    post_raw,
    request,
    run_with,
    task,
)


def single_error(server: LiveServer, body: Any, code: int, path: str = "/tasks") -> Any:
    response = post_raw(server, json.dumps(body).encode(), path)
    assert response.status_code == 200
    reply = response.json()
    assert reply["jsonrpc"] == "2.0"
    error_of(reply, code)
    return reply


# -- -32700 -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body", [b"{bad", b'{"jsonrpc": "2.0", "id": 1, "method": "tasks.get"', b"", b"\xff\xfe"]
)
def test_parse_error(shared_server: LiveServer, body: bytes) -> None:
    response = post_raw(shared_server, body)
    assert response.status_code == 200
    reply = response.json()
    assert reply["id"] is None
    assert error_of(reply, -32700)["data"]["code"] == "parse_error"


def test_parse_error_of_a_batch_is_one_error(shared_server: LiveServer) -> None:
    response = post_raw(shared_server, b'[{"jsonrpc": "2.0", "method": "tasks.list", "id": 1},')
    reply = response.json()
    assert isinstance(reply, dict)
    error_of(reply, -32700)


# -- -32600 -------------------------------------------------------------------------------
def test_empty_batch_is_one_invalid_request(shared_server: LiveServer) -> None:
    reply = single_error(shared_server, [], -32600)
    assert isinstance(reply, dict)
    assert reply["id"] is None


@pytest.mark.parametrize(
    ("body", "reply_id"),
    [
        ({"jsonrpc": "1.0", "id": 7, "method": "tasks.list"}, 7),
        ({"id": 7, "method": "tasks.list"}, 7),
        ({"jsonrpc": 2.0, "id": "s", "method": "tasks.list"}, "s"),
        ({"jsonrpc": "2.0", "id": 7}, 7),
        ({"jsonrpc": "2.0", "id": 7, "method": 5}, 7),
        ({"jsonrpc": "2.0", "id": 7, "method": "tasks.list", "params": "x"}, 7),
        ({"jsonrpc": "2.0", "id": 7, "method": "tasks.list", "params": 3}, 7),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "tasks.list"}, None),
        ({"jsonrpc": "2.0", "id": [1], "method": "tasks.list"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "tasks.list"}, None),
        (5, None),
        ("tasks.list", None),
        (None, None),
    ],
    ids=[
        "jsonrpc-1.0",
        "no-jsonrpc",
        "jsonrpc-number",
        "no-method",
        "method-number",
        "params-string",
        "params-number",
        "id-object",
        "id-array",
        "id-bool",
        "number",
        "string",
        "null",
    ],
)
def test_invalid_request(shared_server: LiveServer, body: Any, reply_id: Any) -> None:
    reply = single_error(shared_server, body, -32600)
    assert reply["id"] == reply_id
    assert reply["error"]["data"]["code"] == "invalid_request"


def test_invalid_items_of_a_batch(shared_server: LiveServer) -> None:
    response = post(shared_server, [1, {"jsonrpc": "2.0", "id": 2}, "x"])
    replies = response.json()
    assert isinstance(replies, list)
    assert len(replies) == 3
    assert [r["id"] for r in replies] == [None, 2, None]
    for reply in replies:
        error_of(reply, -32600)


# -- -32601 -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("tasks.nope", "/tasks"),
        ("system.nope", "/system"),
        ("", "/tasks"),
        ("tasks.get", "/system"),
        ("tasks.create", "/system"),
        ("system.health", "/tasks"),
    ],
)
def test_method_not_found(shared_server: LiveServer, method: str, path: str) -> None:
    reply = single_error(shared_server, request(method, {"task_id": "x"}), -32601, path)
    assert reply["id"] == 1
    assert reply["error"]["data"]["code"] == "method_not_found"


# -- -32602: each bad field named ---------------------------------------------------------
BAD_PARAMS: dict[str, tuple[str, Any, set[str]]] = {
    "get without task_id": ("tasks.get", {}, {"task_id"}),
    "get with an array": ("tasks.get", ["x"], {"params"}),
    "get with a number id and extra": ("tasks.get", {"task_id": 5, "more": 1}, {"task_id", "more"}),
    "tree with a null id": ("tasks.tree", {"task_id": None}, {"task_id"}),
    "children with both": ("tasks.children", {"task_id": "a", "parent_id": "b"}, {"task_id"}),
    "children with neither": ("tasks.children", {}, {"task_id"}),
    "list": (
        "tasks.list",
        {"limit": 0, "offset": -1, "status": "done", "root_only": "yes", "colour": "red"},
        {"limit", "offset", "status", "root_only", "colour"},
    ),
    "list user_id type": ("tasks.list", {"user_id": 3, "limit": "10"}, {"user_id", "limit"}),
    "delete": ("tasks.delete", {"task_id": 1, "force": True}, {"task_id", "force"}),
    "copy": (
        "tasks.copy",
        {"task_id": "x", "copy_mode": "all", "save": "no", "children": 1},
        {"copy_mode", "save", "children"},
    ),
    "copy custom without ids": ("tasks.copy", {"task_id": "x", "copy_mode": "custom"}, set()),
    "copy ids without custom": ("tasks.copy", {"task_id": "x", "custom_task_ids": ["a"]}, set()),
    "execute with neither": ("tasks.execute", {}, {"task_id"}),
    "execute with both": ("tasks.execute", {"task_id": "x", "tasks": []}, {"task_id"}),
    "execute flags": (
        "tasks.execute",
        {"task_id": "x", "wait": "yes", "use_streaming": 1, "webhook_config": {"url": "ftp://x"}},
        {"wait", "use_streaming", "webhook_config.url"},
    ),
    "cancel": ("tasks.cancel", {"task_ids": [], "force": "x"}, {"task_ids", "force"}),
    "cancel without ids": ("tasks.cancel", {}, {"task_ids"}),
    "running.list": ("tasks.running.list", {"limit": -5, "user_id": []}, {"limit", "user_id"}),
    "running.status": ("tasks.running.status", {"task_ids": "", "x": 1}, {"task_ids", "x"}),
    "running.count": ("tasks.running.count", {"user_id": 1}, {"user_id"}),
    "history": (
        "tasks.history",
        {"task_id": "x", "after_version": -1, "limit": 0},
        {"after_version", "limit"},
    ),
    "replay both": ("tasks.replay", {"task_id": "x", "version": 1, "at": "2026-01-01"}, {"at"}),
    "replay bad time": ("tasks.replay", {"task_id": "x", "at": "yesterday"}, {"at"}),
    "replay version": ("tasks.replay", {"task_id": "x", "version": 0}, {"version"}),
    "update non-updatable": (
        "tasks.update",
        {"task_id": "x", "parent_id": "p", "status": "done", "result": 1, "user_id": "u"},
        {"parent_id", "status", "result", "user_id"},
    ),
    "update types": (
        "tasks.update",
        {"task_id": "x", "name": 5, "priority": "high", "inputs": 3},
        {"name", "priority", "inputs"},
    ),
    "update types and non-updatable": (
        "tasks.update",
        {"task_id": "x", "name": 5, "status": "done"},
        {"name", "status"},
    ),
    "update without task_id": ("tasks.update", {"name": "n"}, {"task_id"}),
    "create empty": ("tasks.create", [], {"tasks"}),
    "create not tasks": ("tasks.create", {"tasks": "r"}, {"tasks"}),
    "create bad tasks": (
        "tasks.create",
        [{"id": "r", "name": "r", "priority": -1}, {"id": "a", "parent_id": "r"}, 5],
        {"tasks[0].priority", "tasks[1].name", "tasks[2]"},
    ),
    "create one task many bad fields": (
        "tasks.create",
        [{"id": "r", "name": 5, "priority": "high", "colour": "red"}],
        {"tasks[0].name", "tasks[0].priority", "tasks[0].colour"},
    ),
    "create ids on some only": (
        "tasks.create",
        [{"id": "r", "name": "r"}, {"name": "a", "parent_id": "r"}],
        {"tasks[1].id"},
    ),
    "health": ("system.health", {"verbose": True}, {"verbose"}),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_invalid_params_name_each_field(shared_server: LiveServer, case: str) -> None:
    method, params, expected = BAD_PARAMS[case]
    path = "/system" if method.startswith("system.") else "/tasks"
    reply = single_error(shared_server, request(method, params), -32602, path)
    error = reply["error"]
    assert error["data"]["code"] == "invalid_params"
    named = fields_of(error)
    assert named, error
    assert all(isinstance(reason, str) and reason for reason in named.values())
    assert set(named) >= expected, named
    if expected:
        assert set(named) == expected, named


def test_use_streaming_in_a_batch_is_invalid_params(
    shared_server: LiveServer, names: Names
) -> None:
    r = names("r")
    replies = post(
        shared_server,
        [request("tasks.execute", {"tasks": [task(r)], "use_streaming": True})],
    ).json()
    assert set(fields_of(error_of(replies[0], -32602))) == {"use_streaming"}
    error_of(shared_server.rpc("tasks.get", {"task_id": r}), -32001)  # nothing was created


# -- -32001 -------------------------------------------------------------------------------
NOT_FOUND: list[tuple[str, dict[str, Any]]] = [
    ("tasks.get", {}),
    ("tasks.detail", {}),
    ("tasks.tree", {}),
    ("tasks.children", {}),
    ("tasks.update", {"name": "n"}),
    ("tasks.delete", {}),
    ("tasks.copy", {}),
    ("tasks.execute", {}),
    ("tasks.history", {}),
    ("tasks.replay", {}),
]


@pytest.mark.parametrize(("method", "extra"), NOT_FOUND, ids=[m for m, _ in NOT_FOUND])
def test_task_not_found(
    shared_server: LiveServer, names: Names, method: str, extra: dict[str, Any]
) -> None:
    ghost = names("ghost")
    reply = single_error(shared_server, request(method, {"task_id": ghost} | extra), -32001)
    data = reply["error"]["data"]
    assert data["code"] == "task_not_found"
    assert data["ids"] == [ghost]


# -- -32002 -------------------------------------------------------------------------------
def test_not_cancelable_is_reported_in_the_cancel_result(
    shared_server: LiveServer, names: Names
) -> None:
    """API.md: cancelling a terminal task reports "not_cancelable" for that id in the
    result; -32002 is then never the answer of tasks.cancel (nor of any other method)."""
    r = names("r")
    shared_server.result("tasks.execute", {"tasks": [task(r)], "wait": True})
    reply = shared_server.rpc("tasks.cancel", {"task_ids": [r]})
    assert "error" not in reply
    assert reply["result"][0]["status"] == "not_cancelable"


# -- -32010 -------------------------------------------------------------------------------
def test_tree_rejected_cycle_names_its_path(shared_server: LiveServer, names: Names) -> None:
    r, a, b, c = (names(k) for k in "rabc")
    reply = shared_server.rpc(
        "tasks.create",
        [
            task(r),
            task(a, r, dependencies=[b]),
            task(b, r, dependencies=[c]),
            task(c, r, dependencies=[a]),
        ],
    )
    data = error_of(reply, -32010)["data"]
    assert data["code"] == "cycle"
    hops = data["path"].split(" -> ")
    assert hops[0] == hops[-1]
    assert set(hops) == {a, b, c}
    assert {a, b, c} <= set(data["ids"])


def test_tree_rejected_with_names_speaks_names(shared_server: LiveServer, names: Names) -> None:
    top, load, save = names("top"), names("load"), names("save")
    reply = shared_server.rpc(
        "tasks.create",
        [
            {"name": top},
            {"name": load, "parent_id": top, "dependencies": [save]},
            {"name": save, "parent_id": top, "dependencies": [load]},
        ],
    )
    data = error_of(reply, -32010)["data"]
    assert data["code"] == "cycle"
    assert set(data["ids"]) == {load, save}
    assert data["path"] in (f"{load} -> {save} -> {load}", f"{save} -> {load} -> {save}")
    unknown = shared_server.rpc("tasks.create", [{"name": top}, {"name": load, "parent_id": "x"}])
    assert error_of(unknown, -32010)["data"] | {"message": ""} == {
        "code": "unknown_reference",
        "message": "",
        "ids": ["x"],
    }


def rejected(names: Names) -> dict[str, tuple[list[dict[str, Any]], str, set[str]]]:
    r, r2, a, b, taken = (names(k) for k in ("r", "r2", "a", "b", "taken"))
    return {
        "multiple_roots": ([task(r), task(r2), task(a, r)], "multiple_roots", {r, r2}),
        "unreachable": ([task(r), task(a, b), task(b, a)], "unreachable", {a, b}),
        "unknown parent": ([task(r), task(a, names("ghost"))], "unknown_reference", {a}),
        "unknown dependency": (
            [task(r), task(a, r, dependencies=[names("ghost")])],
            "unknown_reference",
            {names("ghost")},
        ),
        "duplicate inside": ([task(r), task(a, r), task(a, r, name="x")], "duplicate_id", {a}),
        "duplicate in the store": ([task(r), task(taken, r)], "duplicate_id", {taken}),
        "unknown_executor": (
            [task(r), task(a, r, **run_with("no.such.executor"))],
            "unknown_executor",
            {a},
        ),
        "self dependency": ([task(r), task(a, r, dependencies=[a])], "cycle", {a}),
    }


@pytest.mark.parametrize(
    "case",
    [
        "multiple_roots",
        "unreachable",
        "unknown parent",
        "unknown dependency",
        "duplicate inside",
        "duplicate in the store",
        "unknown_executor",
        "self dependency",
    ],
)
def test_tree_rejected(shared_server: LiveServer, names: Names, case: str) -> None:
    shared_server.result(
        "tasks.create", [task(names("other")), task(names("taken"), names("other"))]
    )
    payload, code, ids = rejected(names)[case]
    data = error_of(shared_server.rpc("tasks.create", payload), -32010)["data"]
    assert data["code"] == code
    assert ids <= set(data["ids"]), data
    # nothing was stored: the tree's own ids are still free
    root = payload[0]["id"]
    error_of(shared_server.rpc("tasks.get", {"task_id": root}), -32001)


def test_tree_rejected_when_executing_new_tasks(shared_server: LiveServer, names: Names) -> None:
    r, a = names("r"), names("a")
    reply = shared_server.rpc(
        "tasks.execute", {"tasks": [task(r), task(a, r, **run_with("nope"))], "wait": True}
    )
    assert error_of(reply, -32010)["data"]["code"] == "unknown_executor"
    error_of(shared_server.rpc("tasks.get", {"task_id": r}), -32001)


def test_update_to_a_cycle_is_rejected(shared_server: LiveServer, names: Names) -> None:
    r, a, b = names("r"), names("a"), names("b")
    shared_server.result("tasks.create", [task(r), task(a, r), task(b, r, dependencies=[a])])
    reply = shared_server.rpc("tasks.update", {"task_id": a, "dependencies": [b]})
    data = error_of(reply, -32010)["data"]
    assert data["code"] == "cycle"
    assert shared_server.result("tasks.get", {"task_id": a})["dependencies"] == []


# -- -32011 -------------------------------------------------------------------------------
def test_conflicts_name_the_blockers(shared_server: LiveServer, names: Names) -> None:
    r, a, b = names("r"), names("a"), names("b")
    shared_server.result("tasks.create", [task(r), task(a, r), task(b, r, dependencies=[a])])
    blocked = error_of(shared_server.rpc("tasks.delete", {"task_id": a}), -32011)["data"]
    assert blocked["code"] == "has_dependents"
    assert b in blocked["ids"]
    shared_server.result("tasks.execute", {"task_id": r, "wait": True})
    for method, params in [
        ("tasks.update", {"task_id": b, "priority": 1}),
        ("tasks.delete", {"task_id": b}),
        ("tasks.execute", {"task_id": r}),
    ]:
        data = error_of(shared_server.rpc(method, params), -32011)["data"]
        assert data["ids"], data
