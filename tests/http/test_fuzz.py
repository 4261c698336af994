"""A hypothesis fuzzer over the JSON-RPC params of every tasks.* method, over task arrays,
and over A2A requests, sent to a real server: wrong types, huge and deeply nested values,
unicode (lone surrogates too), NaN and Infinity, duplicate keys, 10 MB bodies. Whatever
comes in: no 5xx, no -32603, nothing logged as a server error, and nothing stored that the
aggregate cannot replay. Bounded: a fixed seed and a fixed number of examples."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from application.ledger import Ledger
from application.views import tree_json
from interfaces.rpc.dispatch import METHODS
from tests.http.conftest import ServerErrors
from tests.http.server import LiveServer

EXAMPLES = 150
SEED = 20_261_124
A2A = {"A2A-Version": "1.0"}
A2A_METHODS = [
    "SendMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
]
TASK_FIELDS = [
    "id",
    "name",
    "parent_id",
    "user_id",
    "priority",
    "dependencies",
    "inputs",
    "params",
    "schemas",
    "task_id",
    "tasks",
    "status",
    "limit",
    "offset",
    "wait",
]


# -- values -----------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["root", "", " ", "\x00", "\ud800", "é" * 3, "a" * 10_000, "-1"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(TASK_FIELDS), st.text(max_size=8)), inner, max_size=5
        ),
    ),
    max_leaves=20,
)
task_like = st.dictionaries(st.sampled_from(TASK_FIELDS), values, max_size=8)
params = st.one_of(values, task_like, st.lists(task_like, max_size=4))


def deep(depth: int) -> bytes:
    """{"x": [{"x": [... "bottom" ...]}]}, `depth` levels, as JSON text."""
    return b'{"x": [' * depth + b'"bottom"' + b"]}" * depth


def encode(value: Any) -> bytes:
    """JSON as Python writes it: NaN and Infinity as bare tokens; lone surrogates kept."""
    return json.dumps(value, allow_nan=True, ensure_ascii=True).encode()


def check(response: httpx.Response, errors: ServerErrors) -> None:
    assert response.status_code < 500, response.text[:500]
    assert response.status_code in (200, 204, 413), response.status_code
    if response.status_code == 200 and "json" in response.headers.get("content-type", ""):
        body = response.json()
        for reply in body if isinstance(body, list) else [body]:
            error = reply.get("error") if isinstance(reply, dict) else None
            if error is not None:
                assert error["code"] != -32603, error
    assert errors.take() == []


# -- tasks.* ----------------------------------------------------------------------------
@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(sorted(METHODS)), params=params, with_id=st.booleans())
def test_tasks_methods_refuse_what_they_cannot_use(
    safe_server: LiveServer, server_errors: ServerErrors, method: str, params: Any, with_id: bool
) -> None:
    if method == "tasks.execute" and isinstance(params, dict):
        params = {**params, "wait": False, "use_streaming": False}
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if with_id:
        body["id"] = 1
    path = "/system" if method.startswith("system.") else "/tasks"
    check(safe_server.client.post(path, content=encode(body)), server_errors)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "tasks.get", "params": {"task_id": NaN}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tasks.create", '
        b'"params": [{"name": "x", "priority": Infinity}]}',
        b'{"jsonrpc": "2.0", "id": 1, "id": 2, "method": "tasks.get", '
        b'"params": {"task_id": "root", "task_id": 5}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tasks.create", "params": [{"name": "\\ud800"}]}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tasks.create", "params": [{"name": "x", "inputs": '
        + deep(5_000)
        + b"}]}",
        b'{"jsonrpc": "2.0", "id": 1, "method": "tasks.create", "params": [{"name": "'
        + b"x" * (10 * 1024 * 1024)
        + b'"}]}',
        b"[" + b'{"jsonrpc": "2.0", "id": 1, "method": "tasks.get", "params": {}},' * 999 + b"1]",
        b"\xff\xfe not utf-8",
        b"",
    ],
    ids=[
        "nan",
        "infinity",
        "duplicate-keys",
        "lone-surrogate",
        "deep",
        "10MB",
        "batch",
        "bytes",
        "empty",
    ],
)
def test_hostile_bodies(safe_server: LiveServer, server_errors: ServerErrors, raw: bytes) -> None:
    check(safe_server.client.post("/tasks", content=raw), server_errors)
    check(safe_server.client.post("/", content=raw, headers=A2A), server_errors)


# -- task arrays and A2A ----------------------------------------------------------------
@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(tasks=st.lists(task_like, min_size=1, max_size=5), as_text=st.booleans())
def test_a2a_messages_with_any_tree(
    safe_server: LiveServer, server_errors: ServerErrors, tasks: list[Any], as_text: bool
) -> None:
    payload = {"tasks": tasks}
    part = {"text": json.dumps(payload)} if as_text else {"data": payload}
    message = {"messageId": "m", "role": "ROLE_USER", "parts": [part]}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"message": message, "configuration": {"returnImmediately": True}},
    }
    check(safe_server.client.post("/", content=encode(body), headers=A2A), server_errors)


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(A2A_METHODS), params=values)
def test_a2a_methods_with_any_params(
    safe_server: LiveServer, server_errors: ServerErrors, method: str, params: Any
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    check(safe_server.client.post("/", content=encode(body), headers=A2A), server_errors)


def test_nothing_stored_is_garbage(safe_server: LiveServer) -> None:
    """Run last in the module: every tree the fuzzing created replays from its events to
    the state the server reports."""
    settings_ = safe_server.orchestrator.settings
    ledger = Ledger(settings_)
    try:
        roots = safe_server.result("tasks.list", {"limit": 1000})
        assert roots, "the fuzzing created nothing; the strategies are too narrow"
        for root in roots:
            tree = ledger.tree_of(root["id"])
            assert tree_json(ledger.replay(tree.id)) == tree_json(tree)
            assert safe_server.result("tasks.get", {"task_id": root["id"]})["id"] == root["id"]
    finally:
        ledger.close()
