"""A2A tasks and push configs survive a restart, on SQLite and PostgreSQL: a tree left
running when server 1 stops is taken up by server 2 on the same store (the orchestrator
resumes the run, the agent follows it again), so GetTask, SubscribeToTask, artifacts and push
notifications work as before; a finished task stays readable with its artifacts.

The `test.hold` executor runs in the test process: server 1's stop interrupts it, server 2
runs it again, and it ends only when the test opens its gate."""

from __future__ import annotations

import asyncio

import pytest
from a2a.types.a2a_pb2 import (
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import TaskNotFoundError

from application.config import Settings
from interfaces.http.config import ServerConfig
from tests.http.a2a_support import (
    artifacts,
    collect,
    connect,
    echo,
    gated_tree,
    held,
    meta,
    receiver,
    run,
    send,
    statuses,
    tree_request,
)
from tests.http.server import running_server
from tests.http.support import SECRET, Names, bearer, gate, run_with, task, token

UNDER_WAY = (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)


def test_a_running_tree_is_taken_up_after_a_restart(store_settings: Settings, names: Names) -> None:
    root, quick, slow, last, key = (names(n) for n in ("root", "quick", "slow", "last", "gate"))
    tasks = [
        echo(root, step=0),
        echo(quick, root, step=1),
        held(slow, key, root),
        task(last, root, dependencies=[slow], **run_with("echo", step=3)),
    ]
    held_gate = gate(key)

    with receiver() as rx:
        push = TaskPushNotificationConfig(id="after-restart", url=rx.url, token="t0ken")
        with running_server(store_settings) as first:

            async def start() -> str:
                async with connect(first.url) as client:
                    sent = await send(
                        client, tree_request(tasks, return_immediately=True, push=push)
                    )
                    assert sent.id == root
                    await asyncio.to_thread(held_gate.wait_entered)
                    still = await client.get_task(GetTaskRequest(id=root))
                    assert still.status.state in UNDER_WAY
                    return sent.context_id

            context_id = run(start())
            # the stop interrupts the held task; the tree is left unfinished in the store
        assert not held_gate.opened.is_set()

        with running_server(store_settings) as second:

            async def resume() -> None:
                async with (
                    connect(second.url) as client,
                    connect(second.url, streaming=True) as streaming,
                ):
                    found = await client.get_task(GetTaskRequest(id=root))
                    assert found.context_id == context_id
                    assert found.status.state in UNDER_WAY
                    assert found.history  # the message that started it
                    configs = await client.list_task_push_notification_configs(
                        ListTaskPushNotificationConfigsRequest(task_id=root)
                    )
                    assert [(c.id, c.url, c.token) for c in configs.configs] == [
                        ("after-restart", rx.url, "t0ken")
                    ]
                    one = await client.get_task_push_notification_config(
                        GetTaskPushNotificationConfigRequest(task_id=root, id="after-restart")
                    )
                    assert one.url == rx.url
                    listed = await client.list_tasks(ListTasksRequest(context_id=context_id))
                    assert [t.id for t in listed.tasks] == [root]

                    stream = streaming.subscribe(SubscribeToTaskRequest(id=root))
                    snapshot = await anext(stream)
                    assert snapshot.task.id == root
                    held_gate.opened.set()
                    rest = await collect(stream)
                    assert rest[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
                    seen = [(m.get("type"), m.get("task_id")) for m in map(meta, statuses(rest))]
                    assert ("task_completed", last) in seen

                    done = await client.get_task(GetTaskRequest(id=root))
                    assert done.status.state == TaskState.TASK_STATE_COMPLETED
                    assert artifacts(done) == {
                        f"result:{root}": {"step": 0},
                        f"result:{quick}": {"step": 1},
                        f"result:{slow}": {"gate": key},
                        f"result:{last}": {"step": 3, slow: {"gate": key}},  # its dependency's too
                    }
                    assert len(done.artifacts) == 4  # each result once

                    # push notifications work after the restart too, to the end
                    hits = await rx.until_terminal()
                    assert hits[-1].state == "TASK_STATE_COMPLETED"
                    assert {h.headers.get("x-a2a-notification-token") for h in rx.hits} == {"t0ken"}

            try:
                run(resume())
            finally:
                held_gate.opened.set()
            tree = second.result("tasks.tree", {"task_id": root})
            assert tree["tree_status"] == "completed"


def test_a_finished_task_is_still_readable_after_a_restart(
    store_settings: Settings, names: Names
) -> None:
    root, child = names("root"), names("child")
    tasks = [echo(root, n=1), echo(child, root, words=["a", "b"])]
    failing = names("failing")

    with running_server(store_settings) as first:

        async def finish() -> None:
            async with connect(first.url) as client:
                done = await send(client, tree_request(tasks))
                assert done.status.state == TaskState.TASK_STATE_COMPLETED
                bad = await send(
                    client, tree_request([task(failing, **run_with("fail", message="nope"))])
                )
                assert bad.status.state == TaskState.TASK_STATE_FAILED

        run(finish())

    with running_server(store_settings) as second:

        async def read() -> None:
            async with connect(second.url, streaming=True) as client:
                done = await client.get_task(GetTaskRequest(id=root))
                assert done.status.state == TaskState.TASK_STATE_COMPLETED
                assert artifacts(done) == {
                    f"result:{root}": {"n": 1},
                    f"result:{child}": {"words": ["a", "b"]},
                }
                bad = await client.get_task(GetTaskRequest(id=failing))
                assert bad.status.state == TaskState.TASK_STATE_FAILED
                assert "nope" in bad.status.message.parts[0].text
                listed = await client.list_tasks(ListTasksRequest())
                assert {t.id for t in listed.tasks} == {root, failing}
                with pytest.raises(TaskNotFoundError):
                    await client.get_task(GetTaskRequest(id=names("never")))
                # and server 2 runs new trees as usual
                events = await collect(
                    client.send_message(tree_request([echo(names("after"), n=2)]))
                )
                assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED

        run(read())
        assert second.result("tasks.get", {"task_id": root})["status"] == "completed"


def test_with_auth_a_resumed_task_stays_its_owners(store_settings: Settings, names: Names) -> None:
    """Recovery follows the tree as its owner: after the restart the owner sees it to the
    end, another user still cannot see it."""
    root, slow, after, key = (names(n) for n in ("root", "slow", "after", "gate"))
    alice, bob = token("alice"), token("bob")
    config = ServerConfig(jwt_secret=SECRET)

    with running_server(store_settings, config) as first:

        async def start() -> None:
            async with connect(first.url, token=alice) as client:
                req = tree_request(gated_tree(root, slow, after, key), return_immediately=True)
                assert (await send(client, req)).id == root
                await asyncio.to_thread(gate(key).wait_entered)

        run(start())

    with running_server(store_settings, config) as second:

        async def resume() -> None:
            async with (
                connect(second.url, token=alice) as client,
                connect(second.url, token=alice, streaming=True) as streaming,
                connect(second.url, token=bob) as other,
            ):
                with pytest.raises(TaskNotFoundError):
                    await other.get_task(GetTaskRequest(id=root))
                stream = streaming.subscribe(SubscribeToTaskRequest(id=root))
                assert (await anext(stream)).task.id == root
                gate(key).opened.set()
                rest = await collect(stream)
                assert rest[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
                done = await client.get_task(GetTaskRequest(id=root))
                assert set(artifacts(done)) == {f"result:{i}" for i in (root, slow, after)}
                assert (await other.list_tasks(ListTasksRequest())).total_size == 0
                mine = await client.list_tasks(ListTasksRequest())
                assert [t.id for t in mine.tasks] == [root]

        try:
            run(resume())
        finally:
            gate(key).opened.set()
        owned = second.result("tasks.get", {"task_id": slow}, **bearer(alice))
        assert (owned["user_id"], owned["status"]) == ("alice", "completed")
