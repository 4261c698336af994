"""A2A 1.0 protocol rules at a live server, through the official a2a-sdk client (raw HTTP only
for what the client cannot send): the agent card and its caching, the JSON-RPC envelope and
error codes at POST /, the SDK's errors for unknown and terminal tasks, and ListTasks paging
and filters. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
    GetTaskRequest,
    ListTasksRequest,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import (
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)

from tests.http.a2a_support import (
    A2A_HEADERS,
    collect,
    connect,
    echo,
    run,
    send,
    tree_request,
)
from tests.http.server import LiveServer
from tests.http.support import Names, run_with, task

CARD = "/.well-known/agent-card.json"


def post(server: LiveServer, body: bytes, path: str = "/", **headers: str) -> httpx.Response:
    return server.client.post(
        path, content=body, headers={"Content-Type": "application/json", **headers}
    )


def rpc_error(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC error object of an HTTP 200 answer."""
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["jsonrpc"] == "2.0"
    assert "result" not in reply, reply
    error: dict[str, Any] = reply["error"]
    assert isinstance(error["code"], int)
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def envelope(method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method, **extra}
    if params is not None:
        body["params"] = params
    return body


# -- the agent card --------------------------------------------------------------------------
def test_the_card_has_every_required_field_and_points_at_this_server(
    shared_server: LiveServer,
) -> None:
    response = shared_server.client.get(CARD)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    card = response.json()
    for name in ("name", "description", "version"):
        assert isinstance(card[name], str)
        assert card[name]
    [interface] = card["supportedInterfaces"]
    assert interface == {
        "url": shared_server.url + "/",
        "protocolBinding": "JSONRPC",
        "protocolVersion": "1.0",
    }
    assert card["capabilities"]["streaming"] is True
    assert card["capabilities"]["pushNotifications"] is True
    assert card["skills"]
    for skill in card["skills"]:
        for name in ("id", "name", "description"):
            assert isinstance(skill[name], str)
            assert skill[name]
        assert skill["tags"]
    assert "securitySchemes" not in card  # auth is off

    async def resolved() -> None:
        async with httpx.AsyncClient() as http:
            parsed = await A2ACardResolver(http, shared_server.url).get_agent_card()
        assert parsed.name == card["name"]
        assert parsed.supported_interfaces[0].url == shared_server.url + "/"

    run(resolved())


def test_the_card_is_cacheable_and_revalidates_with_its_etag(shared_server: LiveServer) -> None:
    first = shared_server.client.get(CARD)
    etag = first.headers["etag"]
    cache = first.headers["cache-control"]
    assert "max-age=" in cache
    assert "public" in cache
    again = shared_server.client.get(CARD)
    assert again.headers["etag"] == etag  # stable while the card is the same
    for wanted in (etag, etag.removeprefix("W/"), f'"other", {etag}', "*"):
        unchanged = shared_server.client.get(CARD, headers={"If-None-Match": wanted})
        assert unchanged.status_code == 304, wanted
        assert unchanged.content == b""
        assert unchanged.headers["etag"] == etag
    changed = shared_server.client.get(CARD, headers={"If-None-Match": 'W/"stale"'})
    assert changed.status_code == 200
    assert changed.json() == first.json()


# -- the JSON-RPC envelope -----------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", ""])
def test_json_rpc_answers_at_the_root_with_and_without_the_slash(
    shared_server: LiveServer, path: str
) -> None:
    url = shared_server.url + path
    body = envelope("GetTask", {"id": "no-such-task"})
    response = httpx.post(url, json=body, headers=A2A_HEADERS)
    assert rpc_error(response)["code"] == -32001
    assert response.json()["id"] == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"A2A-Version": "0.3"}, {"A2A-Version": "2.0"}],
    ids=["missing", "0.3", "2.0"],
)
def test_a_version_other_than_1_0_is_refused(
    shared_server: LiveServer, headers: dict[str, str]
) -> None:
    body = envelope("GetTask", {"id": "x"})
    error = rpc_error(shared_server.client.post("/", json=body, headers=headers))
    assert error["code"] == -32009, error
    ok = shared_server.client.post("/", json=body, headers=A2A_HEADERS)
    assert rpc_error(ok)["code"] == -32001  # the version passes; the task is unknown


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", -32700),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask"', -32700),
        (b"\xff\xfe", -32700),
        (b"[]", -32600),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}]', -32600),
        (b"42", -32600),
        (b'"GetTask"', -32600),
        (b"null", -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}', -32600),
        (b'{"id": 1, "method": "GetTask", "params": {"id": "x"}}', -32600),
        (b'{"jsonrpc": 2.0, "id": 1, "method": "GetTask", "params": {"id": "x"}}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "params": {"id": "x"}}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 7}', -32600),
        (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "GetTask"}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tasks.get", "params": {}}', -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {}}', -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "gettask", "params": {}}', -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": 5}}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": [1]}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": "x"}', -32602),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask",'
            b' "params": {"id": "x", "historyLength": "many"}}',
            -32602,
        ),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"pageSize": "x"}}',
            -32602,
        ),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage",'
            b' "params": {"message": {"role": "ROLE_USER", "parts": 3}}}',
            -32602,
        ),
    ],
)
def test_a_bad_request_gets_its_json_rpc_error_code(
    shared_server: LiveServer, body: bytes, code: int
) -> None:
    error = rpc_error(post(shared_server, body, **A2A_HEADERS))
    assert error["code"] == code, error


def test_a_refusal_echoes_the_request_id(shared_server: LiveServer) -> None:
    for request_id in ("abc", 99, None):
        body = {"jsonrpc": "2.0", "id": request_id, "method": "Nope"}
        reply = shared_server.client.post("/", json=body, headers=A2A_HEADERS).json()
        assert reply["id"] == request_id
        assert reply["error"]["code"] == -32601


def test_error_data_carries_google_rpc_error_info(shared_server: LiveServer) -> None:
    body = envelope("GetTask", {"id": "no-such-task"})
    error = rpc_error(shared_server.client.post("/", json=body, headers=A2A_HEADERS))
    [info] = [d for d in error["data"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert info["reason"] == "TASK_NOT_FOUND"


# -- huge and deep payloads ----------------------------------------------------------------
def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def get_task(extra: str) -> str:
    return '{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"' + extra + "}}"


def data_part(data: str) -> str:
    message = '{"messageId": "m", "role": "ROLE_USER", "parts": [{"data": ' + data + "}]}"
    return '{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": ' + (
        message + "}}"
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(get_task(', "d": ' + deep(100_000)), -32700, id="deep-params"),
        pytest.param(data_part(deep(5_000)), -32700, id="deep-data-part"),
        pytest.param(data_part(deep(300)), -32602, id="data-part-deeper-than-protobuf-allows"),
        pytest.param(get_task(', "pad": "' + "x" * 5_000_000 + '"'), -32001, id="long-string"),
        pytest.param(
            get_task(', "pad": "' + "x" * 11 * 1024 * 1024 + '"'), -32600, id="over-the-body-limit"
        ),
    ],
)
def test_huge_or_deep_payloads_get_a_json_rpc_error_not_a_500(
    shared_server: LiveServer, body: str, code: int
) -> None:
    error = rpc_error(post(shared_server, body.encode(), **A2A_HEADERS))
    assert error["code"] == code, error
    # and the server still answers
    after = post(shared_server, get_task("").encode(), **A2A_HEADERS)
    assert rpc_error(after)["code"] == -32001


# -- the SDK's errors, through its client ------------------------------------------------------
def test_unknown_and_terminal_tasks_raise_the_sdk_errors(
    shared_server: LiveServer, names: Names
) -> None:
    root = names("done")

    async def scenario() -> None:
        async with connect(shared_server.url, streaming=True) as client:
            with pytest.raises(TaskNotFoundError):
                await client.get_task(GetTaskRequest(id=names("missing")))
            with pytest.raises(TaskNotFoundError):
                await client.cancel_task(CancelTaskRequest(id=names("missing")))
            with pytest.raises(TaskNotFoundError):
                await collect(client.subscribe(SubscribeToTaskRequest(id=names("missing"))))
            events = await collect(client.send_message(tree_request([echo(root, v=1)])))
            assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
            with pytest.raises(TaskNotCancelableError):
                await client.cancel_task(CancelTaskRequest(id=root))
            with pytest.raises(UnsupportedOperationError, match="terminal"):
                await collect(client.subscribe(SubscribeToTaskRequest(id=root)))
            done = await client.get_task(GetTaskRequest(id=root))
            assert done.status.state == TaskState.TASK_STATE_COMPLETED  # nothing changed it

    run(scenario())
    for method, code in (("CancelTask", -32002), ("SubscribeToTask", -32004)):
        body = envelope(method, {"id": root})
        error = rpc_error(shared_server.client.post("/", json=body, headers=A2A_HEADERS))
        assert error["code"] == code, error


def test_the_extended_card_is_not_offered(shared_server: LiveServer) -> None:
    """capabilities.extendedAgentCard is not set: the SDK's handler refuses the method with
    -32004, and the SDK's client does not call it but returns the public card."""
    body = envelope("GetExtendedAgentCard", {})
    error = rpc_error(shared_server.client.post("/", json=body, headers=A2A_HEADERS))
    assert error["code"] == -32004, error

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            card = await client.get_extended_agent_card(GetExtendedAgentCardRequest())
            assert card.name == shared_server.client.get(CARD).json()["name"]

    run(scenario())


# -- ListTasks -------------------------------------------------------------------------------
def test_list_tasks_pages_and_filters(shared_server: LiveServer, names: Names) -> None:
    context, other = names("ctx"), names("other-ctx")
    done = [names(f"ok{i}") for i in range(4)]
    failed = names("failed")

    async def scenario() -> None:
        async with connect(shared_server.url) as client:
            sent: list[Task] = []
            for root in done:
                sent.append(await send(client, tree_request([echo(root)], context_id=context)))
            bad = [task(failed, **run_with("fail", message="no"))]
            sent.append(await send(client, tree_request(bad, context_id=context)))
            elsewhere = await send(client, tree_request([echo(names("x"))], context_id=other))
            assert {t.context_id for t in sent} == {context}

            everything = await client.list_tasks(ListTasksRequest(context_id=context))
            assert everything.total_size == 5
            assert {t.id for t in everything.tasks} == {*done, failed}
            assert elsewhere.id not in {t.id for t in everything.tasks}
            stamps = [t.status.timestamp.ToNanoseconds() for t in everything.tasks]
            assert stamps == sorted(stamps, reverse=True)  # newest status first

            seen: list[str] = []
            token = ""
            for _ in range(5):
                page = await client.list_tasks(
                    ListTasksRequest(context_id=context, page_size=2, page_token=token)
                )
                assert page.total_size == 5
                assert len(page.tasks) <= 2
                seen += [t.id for t in page.tasks]
                token = page.next_page_token
                if not token:
                    break
            assert seen == [t.id for t in everything.tasks]  # same order, no repeats

            completed = await client.list_tasks(
                ListTasksRequest(context_id=context, status=TaskState.TASK_STATE_COMPLETED)
            )
            assert {t.id for t in completed.tasks} == set(done)
            failing = await client.list_tasks(
                ListTasksRequest(context_id=context, status=TaskState.TASK_STATE_FAILED)
            )
            assert [t.id for t in failing.tasks] == [failed]
            assert not [t for t in everything.tasks if t.artifacts]  # only when asked
            full = await client.list_tasks(
                ListTasksRequest(context_id=context, include_artifacts=True, history_length=0)
            )
            with_results = {t.id for t in full.tasks if t.artifacts}
            assert with_results == set(done)
            assert not [t for t in full.tasks if t.history]

    run(scenario())


@pytest.mark.parametrize(
    "params",
    [{"pageSize": 0}, {"pageSize": -1}, {"pageSize": 1000}, {"pageToken": "not-a-token"}],
)
def test_list_tasks_refuses_bad_paging(shared_server: LiveServer, params: dict[str, Any]) -> None:
    body = envelope("ListTasks", params)
    error = rpc_error(shared_server.client.post("/", json=body, headers=A2A_HEADERS))
    assert error["code"] == -32602, error
