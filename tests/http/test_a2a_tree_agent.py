"""The default A2A agent through the official a2a-sdk client: a message with {"tasks": [...]}
runs that tree (blocking, non-blocking, streamed) with its results as artifacts; bad messages
are refused with nothing stored; SubscribeToTask, CancelTask, GetTask and ListTasks follow the
tree, which is the one tasks.* sees at /tasks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Part,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError, UnsupportedOperationError

from application.config import Settings
from tests.http.a2a_support import (
    TERMINAL,
    artifacts,
    collect,
    connect,
    connect_both,
    echo,
    gated_tree,
    kinds,
    message,
    meta,
    receiver,
    request,
    run,
    send,
    statuses,
    text_of,
    tree_parts,
    tree_request,
    tree_tasks,
    until_terminal,
    value,
)
from tests.http.server import LiveServer, running_server
from tests.http.support import Names, gate, run_with, task

UNDER_WAY = (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)


# -- blocking ------------------------------------------------------------------------------
@pytest.mark.parametrize("as_text", [False, True], ids=["data-part", "json-text-part"])
def test_a_blocking_send_runs_the_declared_tree_to_the_end(
    shared_server: LiveServer, names: Names, as_text: bool
) -> None:
    """The tree comes as a data part, or (for clients that only send text) as a text part
    holding the same JSON."""
    root, a, b = names("root"), names("a"), names("b")
    tasks = [echo(root, n=1), echo(a, root, text="x", items=[1, 2]), echo(b, root, nested={"k": 3})]
    text = Part(text=json.dumps({"tasks": tasks}))
    req = request(message(text)) if as_text else tree_request(tasks)

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            done = await send(client, req)
            assert done.id == root  # the declared root id is the A2A task id
            assert done.status.state == TaskState.TASK_STATE_COMPLETED
            assert "completed" in text_of(done.status.message)
            assert artifacts(done) == {
                f"result:{root}": {"n": 1},
                f"result:{a}": {"text": "x", "items": [1, 2]},
                f"result:{b}": {"nested": {"k": 3}},
            }
            assert req.message.message_id in [m.message_id for m in done.history]
            stored = await client.get_task(GetTaskRequest(id=root))
            assert stored.status.state == TaskState.TASK_STATE_COMPLETED
            assert artifacts(stored) == artifacts(done)

    run(scenario())
    tree = tree_tasks(shared_server, root)
    assert set(tree) == {root, a, b}
    assert {t["status"] for t in tree.values()} == {"completed"}
    assert tree[a]["result"] == {"text": "x", "items": [1, 2]}  # ints stay ints


def test_a_tree_without_ids_gets_a_generated_root_id(
    shared_server: LiveServer, names: Names
) -> None:
    top, leaf = names("top"), names("leaf")
    tasks = [
        {"name": top, **run_with("echo", level=0)},
        {"name": leaf, "parent_id": top, **run_with("echo", level=1)},
    ]

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            done = await send(client, tree_request(tasks))
            assert done.status.state == TaskState.TASK_STATE_COMPLETED
            tree = tree_tasks(shared_server, done.id)
            assert tree[done.id]["name"] == top  # the A2A task id is the generated root id
            [leaf_id] = [i for i, t in tree.items() if t["name"] == leaf]
            assert leaf_id != leaf
            assert artifacts(done) == {
                f"result:{done.id}": {"level": 0},
                f"result:{leaf_id}": {"level": 1},
            }

    run(scenario())


def test_a_failing_tree_ends_failed_with_the_error(shared_server: LiveServer, names: Names) -> None:
    root, ok, bad = names("root"), names("ok"), names("bad")
    tasks = [echo(root), echo(ok, root), task(bad, root, **run_with("fail", message="kaboom"))]

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            done = await send(client, tree_request(tasks))
            assert done.status.state == TaskState.TASK_STATE_FAILED
            summary = text_of(done.status.message)
            assert "failed" in summary
            assert "kaboom" in summary
            assert f"result:{ok}" in artifacts(done)
            assert f"result:{bad}" not in artifacts(done)

    run(scenario())
    assert "kaboom" in tree_tasks(shared_server, root)[bad]["error"]


def test_priorities_travel_as_ints_and_order_the_run(
    store_settings: Settings, names: Names
) -> None:
    """Numbers in a data part are protobuf doubles; priority 1 must still be the int 1. With
    one slot, the ready children start most urgent (lowest priority) first."""
    root = names("root")
    order = {names("p3"): 3, names("p1"): 1, names("p2"): 2}
    tasks = [task(root, priority=0)] + [
        task(i, root, priority=p, **run_with("echo", p=p)) for i, p in order.items()
    ]
    settings = dataclasses.replace(store_settings, concurrency=1)

    with running_server(settings) as live:

        async def scenario() -> list[str]:
            async with connect(live.url, streaming=True) as client:
                events = await collect(client.send_message(tree_request(tasks)))
            assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
            return [
                meta(u)["task_id"]
                for u in statuses(events)
                if meta(u) and meta(u).get("type") == "task_started" and meta(u)["task_id"] in order
            ]

        started = run(scenario())
        assert started == sorted(order, key=order.__getitem__)
        tree = tree_tasks(live, root)
        assert {i: tree[i]["priority"] for i in order} == order
        assert all(type(tree[i]["priority"]) is int for i in order)


# -- non-blocking and streamed -----------------------------------------------------------------
def test_a_non_blocking_send_returns_at_once_and_a_subscriber_follows_it_to_the_end(
    shared_server: LiveServer, names: Names
) -> None:
    root, slow, after, key = (names(n) for n in ("root", "slow", "after", "gate"))
    tasks = gated_tree(root, slow, after, key)

    async def scenario() -> None:
        async with connect_both(shared_server.url) as (client, streaming):
            try:
                first = await send(client, tree_request(tasks, return_immediately=True))
                assert first.id == root
                assert first.status.state in UNDER_WAY
                await asyncio.to_thread(gate(key).wait_entered)
                # the tree runs; the A2A task says so once the agent's update is stored
                running = await client.get_task(GetTaskRequest(id=root))
                assert running.status.state in UNDER_WAY
                listed = await client.list_tasks(ListTasksRequest(context_id=first.context_id))
                assert [t.id for t in listed.tasks] == [root]
                assert listed.tasks[0].status.state in UNDER_WAY
                stream = streaming.subscribe(SubscribeToTaskRequest(id=root))
                now = await anext(stream)  # the task as it stands, then what happens next
                assert now.task.id == root
                assert now.task.status.state in UNDER_WAY
                gate(key).opened.set()
                rest = await collect(stream)
            finally:
                gate(key).opened.set()
            assert rest[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
            seen = [(m.get("type"), m.get("task_id")) for m in map(meta, statuses(rest))]
            assert ("task_completed", slow) in seen
            assert seen.index(("task_started", after)) < seen.index(("task_completed", after))
            pushed = {e.artifact_update.artifact.artifact_id for e in rest if e.artifact_update}
            assert {f"result:{slow}", f"result:{after}"} <= pushed
            done = await client.get_task(GetTaskRequest(id=root))
            assert done.status.state == TaskState.TASK_STATE_COMPLETED
            assert set(artifacts(done)) == {f"result:{i}" for i in (root, slow, after)}

    run(scenario())


def test_a_streamed_send_shows_each_task_from_start_to_end(
    shared_server: LiveServer, names: Names
) -> None:
    root, a, b = names("root"), names("a"), names("b")
    ids = {root, a, b}
    tasks = [echo(root, r=0), echo(a, root, r=1), echo(b, a, r=2)]

    async def scenario() -> None:
        async with connect(shared_server.url, streaming=True) as client:
            events = await collect(client.send_message(tree_request(tasks)))
        assert kinds(events)[0] == "task"
        assert events[0].task.id == root
        assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
        assert all(
            e.status_update.status.state not in TERMINAL for e in events[1:-1] if e.status_update
        )
        assert {e.status_update.task_id or e.artifact_update.task_id for e in events[1:]} == {root}
        updates = [meta(u) for u in statuses(events)[:-1]]
        seen = [(m["type"], m["task_id"]) for m in updates if "task_id" in m]
        assert {i for _, i in seen} == ids
        for i in ids:
            assert seen.index(("task_started", i)) < seen.index(("task_completed", i))
        assert {
            e.artifact_update.artifact.artifact_id: e.artifact_update.last_chunk
            for e in events
            if e.HasField("artifact_update")
        } == {f"result:{i}": True for i in ids}

    run(scenario())


# -- refusals ----------------------------------------------------------------------------------
def cycle(n: Names) -> list[Part]:
    top, y, z = n("top"), n("y"), n("z")
    return tree_parts(
        {"name": top},
        {"name": y, "parent_id": top, "dependencies": [z]},
        {"name": z, "parent_id": top, "dependencies": [y]},
    )


INVALID: list[Any] = [
    pytest.param(lambda n: [Part(text="hello")], "message.parts", id="text"),
    pytest.param(lambda n: [Part(data=value({"foo": 1}))], "message.parts", id="no-tasks-key"),
    pytest.param(lambda n: tree_parts(), "message.parts[0].data.tasks", id="no-tasks"),
    pytest.param(
        lambda n: tree_parts(task(n("r")), {"id": n("c"), "parent_id": n("r")}),
        "message.parts[0].data.tasks[1].name",
        id="missing-name",
    ),
    pytest.param(
        lambda n: tree_parts(task(n("r"), priority="high")),
        "message.parts[0].data.tasks[0].priority",
        id="priority-not-an-int",
    ),
    pytest.param(cycle, "y", id="cycle"),
    pytest.param(
        lambda n: tree_parts(task(n("r"), **run_with("no.such.executor"))),
        "r",
        id="unknown-executor-with-ids",
    ),
    pytest.param(
        lambda n: tree_parts({"name": n("r"), **run_with("no.such.executor")}),
        "r",
        id="unknown-executor-named",
    ),
]


@pytest.mark.parametrize(("parts", "named"), INVALID)
def test_a_message_without_a_valid_tree_is_refused_and_nothing_is_stored(
    server: LiveServer, names: Names, parts: Any, named: str
) -> None:
    """InvalidParamsError (-32602) naming the field (or, for a refused tree, the tasks as the
    client named them); no A2A task and no tree is stored."""
    expected = named if named.startswith("message.") else names(named)

    async def scenario() -> None:
        async with connect(server.url) as client:
            with pytest.raises(InvalidParamsError) as refused:
                await send(client, request(message(*parts(names))))
            data = refused.value.data or {}
            fields = [e["field"] for e in data.get("errors", [])]
            ids = [i.strip() for i in str(data.get("ids", "")).split(",")]
            assert expected in fields or expected in ids, (refused.value.message, data)
            listed = await client.list_tasks(ListTasksRequest())
            assert listed.total_size == 0
            assert not listed.tasks

    run(scenario())
    assert server.result("tasks.list", {"root_only": False}) == []


def test_a_declared_root_that_exists_is_refused_naming_its_field(
    shared_server: LiveServer, names: Names
) -> None:
    root, child = names("root"), names("child")

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            first = await send(client, tree_request([echo(root, run=1)]))
            with pytest.raises(InvalidParamsError) as refused:
                await send(client, tree_request([echo(child, root), echo(root, run=2)]))
            assert root in refused.value.message
            fields = [e["field"] for e in (refused.value.data or {}).get("errors", [])]
            assert fields == ["message.parts[0].data.tasks[1].id"], refused.value.data
            again = await client.get_task(GetTaskRequest(id=root))
            assert again.status == first.status  # the first run is untouched
            assert artifacts(again) == {f"result:{root}": {"run": 1}}

    run(scenario())
    assert shared_server.result("tasks.get", {"task_id": root})["inputs"] == {"run": 1}
    assert shared_server.error("tasks.get", {"task_id": child})["code"] == -32001


def test_a_tree_reusing_an_existing_child_id_is_refused_with_nothing_stored(
    shared_server: LiveServer, names: Names
) -> None:
    taken, fresh = names("taken"), names("fresh")

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            await send(client, tree_request([echo(taken)]))
            with pytest.raises(InvalidParamsError) as refused:
                await send(client, tree_request([echo(fresh), echo(taken, fresh)]))
            assert taken in str(refused.value.data)
            with pytest.raises(TaskNotFoundError):
                await client.get_task(GetTaskRequest(id=fresh))

    run(scenario())
    assert shared_server.error("tasks.get", {"task_id": fresh})["code"] == -32001


# -- following and cancelling a running tree ---------------------------------------------------
def test_cancel_a_running_tree(shared_server: LiveServer, names: Names) -> None:
    """CancelTask answers CANCELED once the tree has stopped; a subscriber's stream and the
    push receiver end with the same terminal state; the tree's tasks are cancelled."""
    root, slow, waiting, key = (names(n) for n in ("root", "slow", "waiting", "gate"))
    tasks = gated_tree(root, slow, waiting, key)

    async def scenario() -> None:
        with receiver() as rx:
            push = TaskPushNotificationConfig(url=rx.url, token="cancel")
            async with connect_both(shared_server.url) as (client, streaming):
                try:
                    req = tree_request(tasks, return_immediately=True, push=push)
                    first = await send(client, req)
                    await asyncio.to_thread(gate(key).wait_entered)
                    watching = streaming.subscribe(SubscribeToTaskRequest(id=root))
                    assert (await anext(watching)).task.id == root
                    cancelled = await client.cancel_task(CancelTaskRequest(id=root))
                    watched = await collect(watching)
                finally:
                    gate(key).opened.set()
                assert cancelled.id == root
                assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
                assert "cancelled" in text_of(cancelled.status.message)
                ends = [u.status.state for u in statuses(watched) if u.status.state in TERMINAL]
                assert ends == [TaskState.TASK_STATE_CANCELED]
                assert kinds(watched)[-1] == "status_update"
                stored = await client.get_task(GetTaskRequest(id=root))
                assert stored.status.state == TaskState.TASK_STATE_CANCELED
                canceled = TaskState.TASK_STATE_CANCELED
                listed = await client.list_tasks(
                    ListTasksRequest(context_id=first.context_id, status=canceled)
                )
                assert [t.id for t in listed.tasks] == [root]
                pushed = await rx.until_terminal()
                assert pushed[-1].state == "TASK_STATE_CANCELED"

    run(scenario())
    tree = tree_tasks(shared_server, root)
    assert tree[slow]["status"] == "cancelled"
    assert tree[waiting]["status"] == "cancelled"  # it never ran
    assert tree[root]["tree_status"] == "cancelled"
    assert "cancelled through A2A" in shared_server.result("tasks.get", {"task_id": slow})["error"]


def test_a_message_to_a_running_tree_is_refused_at_once(
    shared_server: LiveServer, names: Names
) -> None:
    """A follow-up to a running tree would wait in a2a-sdk's queue until the run ends: it
    is refused (-32004) instead, and the run goes on untouched."""
    root, slow, after, key = names("root"), names("slow"), names("after"), names("gate")

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            try:
                first = await send(
                    client,
                    tree_request(gated_tree(root, slow, after, key), return_immediately=True),
                )
                await asyncio.to_thread(gate(key).wait_entered)
                follow = message(Part(text="and also this"))
                follow.task_id = root
                with pytest.raises(UnsupportedOperationError, match="SubscribeToTask"):
                    await send(client, request(follow, return_immediately=True))
            finally:
                gate(key).opened.set()
            async with connect(shared_server.url, streaming=True) as streaming:
                ended = await until_terminal(streaming, first.id)
            assert ended.status.state == TaskState.TASK_STATE_COMPLETED

    run(scenario())
