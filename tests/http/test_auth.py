"""JWT auth (HS256): every method keeps one user's trees from another, an admin sees all,
a missing or bad token is HTTP 401, and /system stays open. SQLite only: the rules live
above the store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from application.config import Settings
from interfaces.http.config import ServerConfig
from interfaces.rpc import dispatch
from tests.http.server import LiveServer, running_server
from tests.http.support import (
    SECRET,
    Names,
    bearer,
    error_of,
    fields_of,
    gate,
    post,
    request,
    run_with,
    task,
    token,
)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home: Path = tmp_path_factory.mktemp("auth")
    with running_server(Settings(home=home), ServerConfig(jwt_secret=SECRET)) as live:
        yield live


@dataclass
class User:
    server: LiveServer
    sub: str
    token: str

    def rpc(self, method: str, params: Any = None) -> dict[str, Any]:
        return self.server.rpc(method, params, **bearer(self.token))

    def result(self, method: str, params: Any = None) -> Any:
        reply = self.rpc(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    def forbidden(self, method: str, params: Any = None) -> dict[str, Any]:
        error = error_of(self.rpc(method, params), -32012)
        assert error["data"]["code"] == "forbidden"
        return error


@dataclass
class People:
    alice: User
    bob: User
    admin: User


@pytest.fixture
def people(auth_server: LiveServer, names: Names) -> People:
    def user(sub: str, **claims: Any) -> User:
        return User(auth_server, sub, token(sub, **claims))

    return People(
        alice=user(names("alice")),
        bob=user(names("bob")),
        admin=user(names("admin"), roles=["reader", "admin"], iat=int(time.time())),
    )


def bobs_tree(people: People, names: Names) -> dict[str, str]:
    """Bob's pending tree r -> a -> b (b needs a); his user id fills in."""
    ids = {k: names(f"bob-{k}") for k in "rab"}
    root = people.bob.result(
        "tasks.create",
        [
            task(ids["r"]),
            task(ids["a"], ids["r"]),
            task(ids["b"], ids["r"], dependencies=[ids["a"]]),
        ],
    )
    assert root["user_id"] == people.bob.sub
    return ids


# (method, params from Bob's ids, a check of the admin's result)
Check = Callable[[Any, dict[str, str]], None]
METHODS: dict[str, tuple[str, Callable[[dict[str, str]], dict[str, Any]], Check]] = {
    "get": ("tasks.get", lambda i: {"task_id": i["a"]}, lambda r, i: r["id"] == i["a"]),
    "detail": ("tasks.detail", lambda i: {"task_id": i["a"]}, lambda r, i: r["id"] == i["a"]),
    "tree": ("tasks.tree", lambda i: {"task_id": i["b"]}, lambda r, i: r["id"] == i["r"]),
    "children by task_id": (
        "tasks.children",
        lambda i: {"task_id": i["r"]},
        lambda r, i: len(r) == 2,
    ),
    "children by parent_id": (
        "tasks.children",
        lambda i: {"parent_id": i["r"]},
        lambda r, i: len(r) == 2,
    ),
    "update": (
        "tasks.update",
        lambda i: {"task_id": i["a"], "name": "changed"},
        lambda r, i: r["name"] == "changed",
    ),
    "delete": (
        "tasks.delete",
        lambda i: {"task_id": i["b"]},
        lambda r, i: r["deleted_count"] == 1,
    ),
    "copy": ("tasks.copy", lambda i: {"task_id": i["r"]}, lambda r, i: r["id"] != i["r"]),
    "copy dry run": (
        "tasks.copy",
        lambda i: {"task_id": i["r"], "save": False},
        lambda r, i: r["saved"] is False,
    ),
    "execute": (
        "tasks.execute",
        lambda i: {"task_id": i["r"], "wait": True},
        lambda r, i: r["status"] == "completed",
    ),
    "cancel": (
        "tasks.cancel",
        lambda i: {"task_ids": [i["r"]]},
        lambda r, i: r[0]["status"] == "cancelled",
    ),
    "running.cancel": (
        "tasks.running.cancel",
        lambda i: {"task_ids": [i["a"]]},
        lambda r, i: r[0]["status"] == "cancelled",
    ),
    "history": (
        "tasks.history",
        lambda i: {"task_id": i["b"]},
        lambda r, i: r[0]["type"] == "Created",
    ),
    "replay": (
        "tasks.replay",
        lambda i: {"task_id": i["b"], "version": 1},
        lambda r, i: r["id"] == i["r"],
    ),
}


@pytest.mark.parametrize("case", list(METHODS))
def test_a_user_cannot_touch_another_users_tree(people: People, names: Names, case: str) -> None:
    method, params, check = METHODS[case]
    ids = bobs_tree(people, names)
    before = people.bob.result("tasks.history", {"task_id": ids["r"]})

    error = people.alice.forbidden(method, params(ids))
    assert set(error["data"]["ids"]) & set(ids.values())
    assert people.bob.result("tasks.history", {"task_id": ids["r"]}) == before

    assert check(people.admin.result(method, params(ids)), ids)


def test_a_users_deleted_task_stays_theirs(people: People, names: Names) -> None:
    ids = bobs_tree(people, names)
    people.bob.result("tasks.delete", {"task_id": ids["b"]})
    for method in ("tasks.get", "tasks.delete"):
        error_of(people.alice.rpc(method, {"task_id": ids["b"]}), -32001)  # gone for all
    for method, params in [
        ("tasks.history", {"task_id": ids["b"]}),
        ("tasks.replay", {"task_id": ids["b"], "version": 1}),
    ]:
        people.alice.forbidden(method, params)
        people.bob.result(method, params)
        people.admin.result(method, params)


def test_own_trees_and_creating_for_others(people: People, names: Names) -> None:
    mine = people.alice.result("tasks.create", [task(names("r")), task(names("a"), names("r"))])
    assert mine["user_id"] == people.alice.sub
    assert mine["children"][0]["user_id"] == people.alice.sub
    named = people.alice.result("tasks.create", {"tasks": [{"name": names("by-name")}]})
    assert named["user_id"] == people.alice.sub
    own = people.alice.result("tasks.create", task(names("own"), user_id=people.alice.sub))
    assert own["user_id"] == people.alice.sub
    assert people.alice.result("tasks.get", {"task_id": names("r")})["id"] == names("r")

    for method, params in [
        ("tasks.create", [task(names("x"), user_id=people.bob.sub)]),
        ("tasks.create", {"tasks": [task(names("y")), task(names("z"), names("y"), user_id="b")]}),
        ("tasks.execute", {"tasks": [task(names("w"), user_id=people.bob.sub)], "wait": True}),
    ]:
        people.alice.forbidden(method, params)
    for refused in ("x", "y", "z", "w"):
        error_of(people.admin.rpc("tasks.get", {"task_id": names(refused)}), -32001)

    wrong_type = people.alice.rpc("tasks.create", [task(names("typed"), user_id=5)])
    assert set(fields_of(error_of(wrong_type, -32602))) == {"tasks[0].user_id"}

    for_bob = people.admin.result("tasks.create", [task(names("for-bob"), user_id=people.bob.sub)])
    assert for_bob["user_id"] == people.bob.sub
    assert (
        people.bob.result("tasks.get", {"task_id": names("for-bob")})["user_id"] == people.bob.sub
    )
    own_admin = people.admin.result("tasks.create", [task(names("admins"))])
    assert own_admin["user_id"] == people.admin.sub


def test_lists_show_only_the_callers_trees(people: People, names: Names) -> None:
    alices = [names(f"alice-{i}") for i in range(2)]
    for root in alices:
        people.alice.result("tasks.create", [task(root), task(f"{root}-kid", root)])
    bobs = bobs_tree(people, names)

    listed = people.alice.result("tasks.list", {})
    assert [t["id"] for t in listed] == alices[::-1]
    mine = people.alice.result("tasks.list", {"user_id": people.alice.sub, "root_only": False})
    assert {t["id"] for t in mine} == set(alices) | {f"{r}-kid" for r in alices}
    people.alice.forbidden("tasks.list", {"user_id": people.bob.sub})
    assert (
        people.alice.result("tasks.list", {"status": "pending", "limit": 1})[0]["id"] == alices[1]
    )

    wrong_type = people.alice.rpc("tasks.create", [task(names("typed"), user_id=5)])
    assert set(fields_of(error_of(wrong_type, -32602))) == {"tasks[0].user_id"}

    for_bob = people.admin.result("tasks.list", {"user_id": people.bob.sub})
    assert [t["id"] for t in for_bob] == [bobs["r"]]
    everyone = {t["id"] for t in people.admin.result("tasks.list", {"limit": 1000})}
    assert set(alices) | {bobs["r"]} <= everyone


def test_running_methods_are_per_user(people: People, names: Names) -> None:
    r, held = names("bob-run"), names("bob-held")
    people.bob.result(
        "tasks.execute",
        {"tasks": [task(r), task(held, r, **run_with("test.hold", gate=held))]},
    )
    gate(held).wait_entered()
    try:
        assert people.alice.result("tasks.running.list", {}) == []
        people.alice.forbidden("tasks.running.list", {"user_id": people.bob.sub})
        count = people.alice.result("tasks.running.count", {})
        assert (count["count"], count["user_id"]) == (0, people.alice.sub)
        people.alice.forbidden("tasks.running.count", {"user_id": people.bob.sub})
        status = people.alice.result("tasks.running.status", {"task_ids": [held, names("ghost")]})
        assert [(s["task_id"], s["status"]) for s in status] == [
            (held, "forbidden"),
            (names("ghost"), "not_found"),
        ]
        assert "name" not in status[0]
        people.alice.forbidden("tasks.cancel", {"task_ids": [held]})

        assert [t["id"] for t in people.bob.result("tasks.running.list", {})] == [r]
        assert people.bob.result("tasks.running.count", {})["count"] == 1
        admin_sees = people.admin.result("tasks.running.list", {"user_id": people.bob.sub})
        assert [t["id"] for t in admin_sees] == [r]
        assert r in {t["id"] for t in people.admin.result("tasks.running.list", {})}
        assert people.admin.result("tasks.running.count", {"user_id": people.bob.sub})["count"] == 1
        status = people.admin.result("tasks.running.status", {"task_ids": [held]})
        assert (status[0]["status"], status[0]["is_running"]) == ("in_progress", True)
    finally:
        report = people.bob.result("tasks.cancel", {"task_ids": [r]})
    assert report[0]["status"] == "cancelled"
    assert people.bob.result("tasks.running.list", {}) == []


def test_a_batch_answers_each_request_for_its_caller(people: People, names: Names) -> None:
    ids = bobs_tree(people, names)
    mine = names("mine")
    people.alice.result("tasks.create", [task(mine)])
    replies = post(
        people.alice.server,
        [
            request("tasks.get", {"task_id": mine}, id_=1),
            request("tasks.get", {"task_id": ids["a"]}, id_=2),
            request("tasks.delete", {"task_id": ids["b"]}, id_=None),
        ],
        **bearer(people.alice.token),
    ).json()
    assert [r["id"] for r in replies] == [1, 2]
    assert replies[0]["result"]["id"] == mine
    error_of(replies[1], -32012)
    assert people.bob.result("tasks.get", {"task_id": ids["b"]})["id"] == ids["b"]


def test_a_single_role_claim_also_makes_an_admin(auth_server: LiveServer, names: Names) -> None:
    people_bob = User(auth_server, names("bob"), token(names("bob")))
    root = people_bob.result("tasks.create", [task(names("r"))])
    admin = User(auth_server, names("boss"), token(names("boss"), role="admin"))
    assert admin.result("tasks.get", {"task_id": root["id"]})["user_id"] == people_bob.sub
    plain = User(auth_server, names("eve"), token(names("eve"), roles=["user"]))
    plain.forbidden("tasks.get", {"task_id": root["id"]})


def test_streaming_is_checked_before_it_starts(people: People, names: Names) -> None:
    ids = bobs_tree(people, names)
    response = people.alice.server.client.post(
        "/tasks",
        json=request("tasks.execute", {"task_id": ids["r"], "use_streaming": True}),
        headers=bearer(people.alice.token),
    )
    assert response.headers["content-type"].startswith("application/json")
    error_of(response.json(), -32012)
    assert people.bob.result("tasks.get", {"task_id": ids["r"]})["tree_status"] == "pending"


# -- 401 ----------------------------------------------------------------------------------
def bad_headers() -> dict[str, dict[str, str]]:
    now = int(time.time())
    return {
        "no header": {},
        "not a jwt": bearer("not-a-token"),
        "bare bearer": {"Authorization": "Bearer"},
        "basic auth": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        "wrong secret": bearer(token("alice", secret="another-secret-of-32-bytes-or-more")),
        "expired": bearer(token("alice", exp=now - 3600)),
        "unsigned": bearer(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0."
        ),
    }


@pytest.mark.parametrize("case", list(bad_headers()))
def test_missing_or_bad_token_is_401(auth_server: LiveServer, case: str) -> None:
    headers = bad_headers()[case]
    for body in (request("tasks.list", {}), [request("tasks.list", {})], request("tasks.x")):
        response = post(auth_server, body, **headers)
        assert response.status_code == 401, response.text
    health = post(auth_server, request("system.health"), "/system", **headers)
    assert health.status_code == 200
    assert health.json()["result"]["status"] == "ok"


def test_system_is_open_without_a_token(auth_server: LiveServer) -> None:
    response = post(auth_server, request("system.health", {}), "/system")
    assert response.status_code == 200
    assert response.json()["result"]["status"] == "ok"


A2A_METHODS = (
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
)


def test_every_method_needs_a_token(auth_server: LiveServer) -> None:
    """The matrix's fourth column: without a token, every tasks.* and A2A method is 401;
    only system.health, the agent card, the health probe and the schema stay open."""
    for method in sorted(dispatch.METHODS):
        if dispatch.METHODS[method].endpoint == "/tasks":
            assert post(auth_server, request(method, {})).status_code == 401, method
    for method in A2A_METHODS:
        response = post(auth_server, request(method, {}), "/", **{"A2A-Version": "1.0"})
        assert response.status_code == 401, method
    client = auth_server.client
    assert client.get("/.well-known/agent-card.json").status_code == 200
    assert client.get("/system/health").status_code == 200
    assert client.get("/schema/openapi.json").status_code == 200
