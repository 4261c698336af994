"""tasks.execute with use_streaming: one SSE event per task state change, then exactly one
`final` event whatever the outcome, then the stream closes (both stores)."""

from __future__ import annotations

from typing import Any

from tests.http.server import LiveServer
from tests.http.support import (
    Names,
    gate,
    request,
    run_with,
    sse_lines,
    stream,
    task,
)

CHANGE_TYPES = {
    "task_started",
    "progress",
    "task_completed",
    "task_retrying",
    "task_failed",
    "task_skipped",
    "task_cancelled",
}


def check_shape(events: list[dict[str, Any]], root: str, status: str) -> list[dict[str, Any]]:
    """The events before the one final event, which is last and says `status`."""
    finals = [e for e in events if e["type"] == "final"]
    assert len(finals) == 1, events
    assert events[-1] is finals[0]
    assert finals[0]["root_task_id"] == root
    assert finals[0]["status"] == status
    changes = events[:-1]
    for event in changes:
        assert event["type"] in CHANGE_TYPES, event
        assert isinstance(event["task_id"], str)
        assert isinstance(event["timestamp"], str)
        assert "status" in event
    return changes


def kinds(changes: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{task id: its event types, in order}."""
    out: dict[str, list[str]] = {}
    for event in changes:
        out.setdefault(event["task_id"], []).append(event["type"])
    return out


def test_stream_of_a_completed_tree(shared_server: LiveServer, names: Names) -> None:
    r, a, b = names("r"), names("a"), names("b")
    events = stream(
        shared_server,
        {
            "tasks": [
                task(r),
                task(a, r, **run_with("echo", n=1)),
                task(b, r, dependencies=[a], **run_with("echo", n=2)),
            ]
        },
    )
    changes = check_shape(events, r, "completed")
    by_task = kinds(changes)
    for task_id in (r, a, b):
        assert by_task[task_id] == ["task_started", "task_completed"], by_task
    done = {e["task_id"]: e for e in changes if e["type"] == "task_completed"}
    assert done[a]["result"] == {"n": 1}
    assert done[a]["status"] == "completed"
    order = [(e["task_id"], e["type"]) for e in changes]
    assert order.index((a, "task_completed")) < order.index((b, "task_started"))
    assert shared_server.result("tasks.get", {"task_id": r})["tree_status"] == "completed"


def test_stream_of_a_stored_tree(shared_server: LiveServer, names: Names) -> None:
    r = names("r")
    shared_server.result("tasks.create", [task(r, **run_with("echo", x=True))])
    events = stream(shared_server, {"task_id": r})
    changes = check_shape(events, r, "completed")
    assert [e["type"] for e in changes] == ["task_started", "task_completed"]


def test_stream_of_a_failing_tree(shared_server: LiveServer, names: Names) -> None:
    r, ok, bad, after, loose = (names(k) for k in ("r", "ok", "bad", "after", "loose"))
    events = stream(
        shared_server,
        {
            "tasks": [
                task(r),
                task(ok, r, **run_with("echo")),
                task(bad, r, **run_with("fail", message="no luck")),
                task(after, r, dependencies=[bad], **run_with("echo")),
                task(loose, r, dependencies=[{"id": bad, "required": False}], **run_with("echo")),
            ]
        },
    )
    changes = check_shape(events, r, "failed")
    by_task = kinds(changes)
    assert by_task[ok] == ["task_started", "task_completed"]
    assert by_task[bad] == ["task_started", "task_failed"]
    assert by_task[after] == ["task_skipped"]
    assert by_task[loose] == ["task_started", "task_completed"]
    failed = next(e for e in changes if e["type"] == "task_failed")
    assert (failed["status"], failed["error"]) == ("failed", "RequestedFailure: no luck")
    skipped = next(e for e in changes if e["type"] == "task_skipped")
    assert skipped["status"] == "skipped"
    assert bad in skipped["error"]


def test_stream_of_a_cancelled_tree(shared_server: LiveServer, names: Names) -> None:
    r, held, after = names("r"), names("held"), names("after")
    body = request(
        "tasks.execute",
        {
            "tasks": [
                task(r),
                task(held, r, **run_with("test.hold", gate=held)),
                task(after, r, dependencies=[held], **run_with("echo")),
            ],
            "use_streaming": True,
        },
    )
    events: list[dict[str, Any]] = []
    with shared_server.client.stream("POST", "/tasks", json=body) as response:
        for event in sse_lines(response):
            events.append(event)
            if event["type"] == "task_started" and event["task_id"] == held:
                gate(held).wait_entered()
                report = shared_server.result("tasks.cancel", {"task_ids": [r]})
                assert report[0]["status"] == "cancelled"
    changes = check_shape(events, r, "cancelled")
    by_task = kinds(changes)
    assert by_task[held] == ["task_started", "task_cancelled"]
    assert by_task[after] == ["task_cancelled"]
    cancelled = next(e for e in changes if e["task_id"] == held and e["type"] == "task_cancelled")
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"]
    assert shared_server.result("tasks.get", {"task_id": held})["status"] == "cancelled"


def test_stream_of_a_finished_tree_is_refused(shared_server: LiveServer, names: Names) -> None:
    r = names("r")
    shared_server.result("tasks.execute", {"tasks": [task(r)], "wait": True})
    response = shared_server.client.post(
        "/tasks", json=request("tasks.execute", {"task_id": r, "use_streaming": True})
    )
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == -32011


def test_a_client_that_leaves_does_not_stop_the_run(
    shared_server: LiveServer, names: Names
) -> None:
    r, held = names("r"), names("held")
    body = request(
        "tasks.execute",
        {
            "tasks": [task(r), task(held, r, **run_with("test.hold", gate=held))],
            "use_streaming": True,
        },
    )
    with shared_server.client.stream("POST", "/tasks", json=body) as response:
        for event in sse_lines(response):
            if event["task_id"] == held:
                break
    gate(held).wait_entered()
    gate(held).opened.set()
    # the run goes on without its listener: waiting for it (or finding it over) ends completed
    reply = shared_server.rpc("tasks.execute", {"task_id": r, "wait": True})
    if "error" in reply:
        assert reply["error"]["code"] == -32011
    else:
        assert reply["result"]["status"] == "completed"
    assert shared_server.result("tasks.get", {"task_id": r})["tree_status"] == "completed"
    assert shared_server.result("tasks.get", {"task_id": held})["result"] == {"gate": held}
