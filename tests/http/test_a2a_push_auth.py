"""A2A push notifications and auth at a live server, through the official a2a-sdk client:
push configs are created, read, listed and deleted; a tree's events reach a real HTTP receiver
on 127.0.0.1 with the config's token, retried past a 503. With JWT auth on, the card stays
public and declares the bearer scheme, POST / needs a token, each user sees only their own
tasks (an admin sees all), and a tree belongs to the token's user whatever the message says."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError

from application.config import Settings
from interfaces.http.config import ServerConfig
from tests.http.a2a_support import (
    A2A_HEADERS,
    Hit,
    artifacts,
    collect,
    connect,
    echo,
    held,
    receiver,
    run,
    send,
    tree_request,
)
from tests.http.server import LiveServer, running_server
from tests.http.support import SECRET, Names, bearer, error_of, gate, token

CARD = "/.well-known/agent-card.json"


def results_in(hits: list[Hit]) -> set[str]:
    return {
        h.body["artifactUpdate"]["artifact"]["artifactId"]
        for h in hits
        if "artifactUpdate" in h.body
    }


# -- push configs ------------------------------------------------------------------------------
def test_push_configs_are_created_read_listed_and_deleted(
    shared_server: LiveServer, names: Names
) -> None:
    root, slow, key = names("root"), names("slow"), names("gate")

    async def scenario() -> None:
        with receiver() as rx:
            async with connect(shared_server.url) as client:
                try:
                    await send(
                        client,
                        tree_request([echo(root), held(slow, key, root)], return_immediately=True),
                    )
                    await asyncio.to_thread(gate(key).wait_entered)
                    made = await client.create_task_push_notification_config(
                        TaskPushNotificationConfig(task_id=root, id="one", url=rx.url, token="s3")
                    )
                    assert (made.task_id, made.id, made.url, made.token) == (
                        root,
                        "one",
                        rx.url,
                        "s3",
                    )
                    other = await client.create_task_push_notification_config(
                        TaskPushNotificationConfig(task_id=root, url=rx.url + "/2")
                    )
                    assert other.id  # an id is given when none is asked for
                    got = await client.get_task_push_notification_config(
                        GetTaskPushNotificationConfigRequest(task_id=root, id="one")
                    )
                    assert got == made
                    listed = await client.list_task_push_notification_configs(
                        ListTaskPushNotificationConfigsRequest(task_id=root)
                    )
                    assert sorted(c.id for c in listed.configs) == sorted(["one", other.id])
                finally:
                    gate(key).opened.set()
                # the configs made while it ran get its remaining events, to the end
                hits = await rx.until_terminal()
                assert hits[-1].state == "TASK_STATE_COMPLETED"
                assert f"result:{slow}" in results_in(hits)

                await client.delete_task_push_notification_config(
                    DeleteTaskPushNotificationConfigRequest(task_id=root, id=other.id)
                )
                left = await client.list_task_push_notification_configs(
                    ListTaskPushNotificationConfigsRequest(task_id=root)
                )
                assert [c.id for c in left.configs] == ["one"]
                with pytest.raises(TaskNotFoundError):
                    await client.get_task_push_notification_config(
                        GetTaskPushNotificationConfigRequest(task_id=root, id=other.id)
                    )
                with pytest.raises(TaskNotFoundError):
                    await client.create_task_push_notification_config(
                        TaskPushNotificationConfig(task_id=names("nope"), url=rx.url)
                    )
                with pytest.raises(TaskNotFoundError):
                    await client.list_task_push_notification_configs(
                        ListTaskPushNotificationConfigsRequest(task_id=names("nope"))
                    )

    run(scenario())


def test_push_to_a_never_called_host_is_refused(shared_server: LiveServer, names: Names) -> None:
    """The callback policy (interfaces/rpc/callbacks.py) through a2a-sdk's push-URL hook:
    a message naming such a push URL, or a config for one, is -32602; nothing is stored."""
    root, other = names("root"), names("other")
    metadata = "http://169.254.169.254/latest/meta-data/"

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            push = TaskPushNotificationConfig(url=metadata)
            with pytest.raises(InvalidParamsError):
                await send(client, tree_request([echo(other)], push=push))
            with pytest.raises(TaskNotFoundError):
                await client.get_task(GetTaskRequest(id=other))
            await send(client, tree_request([echo(root)]))
            with pytest.raises(InvalidParamsError):
                await client.create_task_push_notification_config(
                    TaskPushNotificationConfig(task_id=root, url=metadata)
                )
            listed = await client.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=root)
            )
            assert list(listed.configs) == []

    run(scenario())
    error_of(shared_server.rpc("tasks.get", {"task_id": other}), -32001)


@pytest.mark.parametrize("answers", [(), (503,), (503, 502)], ids=["ok", "503-first", "two-5xx"])
def test_a_trees_events_are_pushed_with_the_token_and_retried(
    shared_server: LiveServer, names: Names, answers: tuple[int, ...]
) -> None:
    root, a, b = names("root"), names("a"), names("b")
    tasks = [echo(root, x=0), echo(a, root, x=1), echo(b, root, x=2)]

    async def scenario() -> None:
        with receiver(*answers) as rx:
            push = TaskPushNotificationConfig(url=rx.url, token=names("token"))
            async with connect(shared_server.url) as client:
                await send(client, tree_request(tasks, return_immediately=True, push=push))
                hits = await rx.until_terminal()
            assert hits[-1].state == "TASK_STATE_COMPLETED"
            assert "completed" in str(hits[-1].body)
            assert results_in(hits) == {f"result:{i}" for i in (root, a, b)}
            assert {h.path for h in rx.hits} == {"/hook"}
            assert {h.headers.get("x-a2a-notification-token") for h in rx.hits} == {names("token")}
            assert {h.headers.get("content-type") for h in rx.hits} == {"application/json"}
            refused = [h for h in rx.hits if h.status >= 500]
            assert [h.status for h in refused] == list(answers)
            if refused:  # the same notification again, then the rest in order
                assert all(h.body == refused[0].body for h in refused)
                assert hits[0].body == refused[0].body
            tasks_ids = {
                h.body.get("statusUpdate", h.body.get("artifactUpdate", {})).get("taskId")
                for h in hits
                if "task" not in h.body
            }
            assert tasks_ids == {root}

    run(scenario())


# -- auth ----------------------------------------------------------------------------------------
@pytest.fixture
def auth_server(store_settings: Settings) -> Iterator[LiveServer]:
    with running_server(store_settings, ServerConfig(jwt_secret=SECRET)) as live:
        yield live


ALICE, BOB = token("alice"), token("bob")
ADMIN = token("boss", roles=["admin"])


def test_the_card_is_public_and_declares_the_bearer_scheme(auth_server: LiveServer) -> None:
    response = httpx.get(auth_server.url + CARD)  # no token
    assert response.status_code == 200
    card = response.json()
    [(name, scheme)] = card["securitySchemes"].items()
    http = scheme["httpAuthSecurityScheme"]
    assert http["scheme"].lower() == "bearer"
    assert http["bearerFormat"] == "JWT"
    assert [list(r["schemes"]) for r in card["securityRequirements"]] == [[name]]


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("not-a-jwt"), bearer(token("alice", secret="another-secret-of-32-bytes-or-more"))],
    ids=["none", "garbage", "wrong-secret"],
)
def test_json_rpc_needs_a_valid_token(auth_server: LiveServer, headers: dict[str, str]) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}
    response = httpx.post(auth_server.url + "/", json=body, headers=A2A_HEADERS | headers)
    assert response.status_code == 401
    ok = httpx.post(auth_server.url + "/", json=body, headers=A2A_HEADERS | bearer(ALICE))
    assert ok.status_code == 200
    assert "result" in ok.json()


def test_each_user_sees_only_their_tasks_and_an_admin_sees_all(
    auth_server: LiveServer, names: Names
) -> None:
    root, child = names("root"), names("child")
    sent = tree_request([echo(root, v=1), echo(child, root)], metadata={"user_id": "mallory"})

    async def scenario() -> None:
        async with connect(auth_server.url, token=ALICE) as alice:
            done = await send(alice, sent)
            assert done.status.state == TaskState.TASK_STATE_COMPLETED
            assert (await alice.get_task(GetTaskRequest(id=root))).id == root
            mine = await alice.list_tasks(ListTasksRequest())
            assert [t.id for t in mine.tasks] == [root]

        async with (
            connect(auth_server.url, token=BOB) as bob,
            connect(auth_server.url, token=BOB, streaming=True) as bob_streaming,
        ):
            with pytest.raises(TaskNotFoundError):
                await bob.get_task(GetTaskRequest(id=root))
            with pytest.raises(TaskNotFoundError):
                await bob.cancel_task(CancelTaskRequest(id=root))
            with pytest.raises(TaskNotFoundError):
                await collect(bob_streaming.subscribe(SubscribeToTaskRequest(id=root)))
            with pytest.raises(TaskNotFoundError):
                await bob.create_task_push_notification_config(
                    TaskPushNotificationConfig(task_id=root, url="http://127.0.0.1:9/x")
                )
            theirs = await bob.list_tasks(ListTasksRequest())
            assert root not in [t.id for t in theirs.tasks]
            assert theirs.total_size == 0

        async with connect(auth_server.url, token=ADMIN) as admin:
            seen = await admin.get_task(GetTaskRequest(id=root))
            assert artifacts(seen)[f"result:{root}"] == {"v": 1}
            everyone = await admin.list_tasks(ListTasksRequest())
            assert root in [t.id for t in everyone.tasks]

    run(scenario())
    # the tree belongs to the token's user, not to the user_id the message metadata names
    for task_id in (root, child):
        owned = auth_server.result("tasks.get", {"task_id": task_id}, **bearer(ALICE))
        assert owned["user_id"] == "alice"
    refused = auth_server.error("tasks.get", {"task_id": root}, **bearer(BOB))
    assert refused["code"] in (-32001, -32012)
    assert not [
        t
        for t in auth_server.result("tasks.list", {}, **bearer(ADMIN))
        if t["user_id"] == "mallory"
    ]


def test_a_user_cannot_create_a_tree_for_someone_else(
    auth_server: LiveServer, names: Names
) -> None:
    root = names("root")
    tasks: list[dict[str, Any]] = [echo(root) | {"user_id": "alice"}]

    async def scenario() -> None:
        async with connect(auth_server.url, token=BOB) as bob:
            with pytest.raises(InvalidParamsError) as refused:
                await send(bob, tree_request(tasks))
            fields = [e["field"] for e in (refused.value.data or {}).get("errors", [])]
            assert fields == ["message.parts[0].data.tasks[0].user_id"], refused.value.data
        async with connect(auth_server.url, token=ADMIN) as admin:
            with pytest.raises(TaskNotFoundError):
                await admin.get_task(GetTaskRequest(id=root))
            made = await send(admin, tree_request(tasks))  # an admin may
            assert made.status.state == TaskState.TASK_STATE_COMPLETED

    run(scenario())
    assert auth_server.result("tasks.get", {"task_id": root}, **bearer(ALICE))["user_id"] == "alice"


def test_without_auth_the_message_metadata_names_the_user(
    shared_server: LiveServer, names: Names
) -> None:
    """aipartnerupflow's habit, kept with auth off: metadata user_id owns the new tree."""
    root = names("root")
    user = names("carol")

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            await send(client, tree_request([echo(root)], metadata={"user_id": user}))

    run(scenario())
    assert shared_server.result("tasks.get", {"task_id": root})["user_id"] == user
