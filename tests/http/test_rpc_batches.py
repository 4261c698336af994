"""Batches and notifications as JSON-RPC 2.0 says, against the real server (both stores)."""

from __future__ import annotations

from tests.http.server import LiveServer
from tests.http.support import Names, error_of, post, request, task


def test_batch_mixes_results_and_errors_in_order(shared_server: LiveServer, names: Names) -> None:
    r, quiet = names("r"), names("quiet")
    response = post(
        shared_server,
        [
            request("tasks.create", [task(r)], id_="make"),
            request("tasks.create", [task(quiet)], id_=None),  # a notification: no reply
            request("tasks.get", {"task_id": r}, id_=2),
            request("tasks.get", {"task_id": names("ghost")}, id_=3),
            {"jsonrpc": "2.0", "id": 4},
            request("tasks.nope", {}, id_=5),
            request("tasks.list", {"limit": 0}, id_=6.5),
            request("system.health", {}, id_=7),
        ],
    )
    assert response.status_code == 200
    replies = response.json()
    assert [reply["id"] for reply in replies] == ["make", 2, 3, 4, 5, 6.5, 7]
    assert all(reply["jsonrpc"] == "2.0" for reply in replies)
    assert replies[0]["result"]["id"] == r
    assert replies[1]["result"]["id"] == r  # a later call sees an earlier one's write
    error_of(replies[2], -32001)
    error_of(replies[3], -32600)
    error_of(replies[4], -32601)
    error_of(replies[5], -32602)
    error_of(replies[6], -32601)  # system.* is served at /system
    assert shared_server.result("tasks.get", {"task_id": quiet})["id"] == quiet


def test_a_batch_of_one_is_still_an_array(shared_server: LiveServer) -> None:
    replies = post(shared_server, [request("tasks.list", {"limit": 1}, id_=0)]).json()
    assert isinstance(replies, list)
    assert replies[0]["id"] == 0
    assert isinstance(replies[0]["result"], list)


def test_all_notification_batch_gets_204_and_no_body(
    shared_server: LiveServer, names: Names
) -> None:
    a, b = names("a"), names("b")
    response = post(
        shared_server,
        [
            request("tasks.create", [task(a)], id_=None),
            request("tasks.create", [task(b)], id_=None),
            request("tasks.get", {"task_id": names("ghost")}, id_=None),  # errors stay silent
            request("tasks.nope", id_=None),
        ],
    )
    assert response.status_code == 204
    assert response.content == b""
    assert shared_server.result("tasks.get", {"task_id": a})["id"] == a
    assert shared_server.result("tasks.get", {"task_id": b})["id"] == b


def test_single_notification_gets_204_and_runs(shared_server: LiveServer, names: Names) -> None:
    r = names("r")
    response = post(shared_server, request("tasks.create", [task(r)], id_=None))
    assert response.status_code == 204
    assert response.content == b""
    assert shared_server.result("tasks.get", {"task_id": r})["id"] == r

    failing = post(shared_server, request("tasks.delete", {"task_id": names("ghost")}, id_=None))
    assert (failing.status_code, failing.content) == (204, b"")
    health = post(shared_server, request("system.health", id_=None), "/system")
    assert (health.status_code, health.content) == (204, b"")


def test_notification_that_executes_runs_the_tree(shared_server: LiveServer, names: Names) -> None:
    r = names("r")
    shared_server.result("tasks.create", [task(r)])
    response = post(
        shared_server, request("tasks.execute", {"task_id": r, "use_streaming": True}, id_=None)
    )
    assert (response.status_code, response.content) == (204, b"")
    # the run was started: running it again either waits for it or finds it finished
    reply = shared_server.rpc("tasks.execute", {"task_id": r, "wait": True})
    if "error" in reply:
        assert error_of(reply, -32011)["data"]["ids"] == [r]
    else:
        assert reply["result"]["status"] == "completed"
    assert shared_server.result("tasks.get", {"task_id": r})["tree_status"] == "completed"


def test_a_null_id_is_answered_not_a_notification(shared_server: LiveServer) -> None:
    response = post(shared_server, {"jsonrpc": "2.0", "id": None, "method": "tasks.list"})
    assert response.status_code == 200
    reply = response.json()
    assert reply["id"] is None
    assert isinstance(reply["result"], list)


def test_use_streaming_inside_a_batch_is_refused(shared_server: LiveServer, names: Names) -> None:
    r = names("r")
    shared_server.result("tasks.create", [task(r)])
    replies = post(
        shared_server,
        [
            request("tasks.execute", {"task_id": r, "use_streaming": True}, id_=1),
            request("tasks.get", {"task_id": r}, id_=2),
        ],
    ).json()
    error = error_of(replies[0], -32602)
    assert [f["field"] for f in error["data"]["fields"]] == ["use_streaming"]
    assert replies[1]["result"]["tree_status"] == "pending"  # it did not run
