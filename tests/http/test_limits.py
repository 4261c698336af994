"""Request limits: HTTP 429 past the rate limit, HTTP 413 past the body size limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from application.config import Settings
from interfaces.http.config import ServerConfig
from tests.http.server import LiveServer, running_server
from tests.http.support import Names, post, post_raw, request, task

MAX_BODY = 2048


def test_rate_limit_answers_429(tmp_path: Path) -> None:
    with running_server(Settings(home=tmp_path), ServerConfig(rate_limit=("minute", 5))) as live:
        for _ in range(5):
            assert post(live, request("tasks.list", {})).status_code == 200
        limited = post(live, request("tasks.list", {}))
        assert limited.status_code == 429
        assert post(live, [request("tasks.list", {})]).status_code == 429


def test_rate_limit_counts_every_kind_of_request(tmp_path: Path) -> None:
    """Errors, batches and notifications use up the allowance like any request."""
    with running_server(Settings(home=tmp_path), ServerConfig(rate_limit=("minute", 5))) as live:
        assert post_raw(live, b"{bad").status_code == 200
        assert post(live, [request("tasks.list", {}), request("tasks.nope")]).status_code == 200
        assert post(live, request("tasks.list", id_=None)).status_code == 204
        assert post(live, request("system.health"), "/system").status_code == 200
        assert post(live, request("tasks.get", {"task_id": "x"})).status_code == 200
        assert post(live, request("tasks.list", {})).status_code == 429


@pytest.fixture(scope="module")
def small_body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("limits")
    with running_server(Settings(home=home), ServerConfig(max_body_bytes=MAX_BODY)) as live:
        yield live


def big_create(names: Names, size: int) -> bytes:
    body = request("tasks.create", [task(names("big"), inputs={"pad": "x" * size})])
    return json.dumps(body).encode()


def test_body_too_large_is_413(small_body_server: LiveServer, names: Names) -> None:
    live = small_body_server
    fits = big_create(names, MAX_BODY - 200)
    assert len(fits) <= MAX_BODY
    assert post_raw(live, fits).json()["result"]["id"] == names("big")

    too_big = big_create(Names(), MAX_BODY)
    assert len(too_big) > MAX_BODY
    assert post_raw(live, too_big).status_code == 413
    batch = json.dumps([request("tasks.list", {})] * 100).encode()
    assert len(batch) > MAX_BODY
    assert post_raw(live, batch).status_code == 413
    assert post_raw(live, too_big, "/system").status_code == 413


def test_body_too_large_without_a_length_is_413(
    small_body_server: LiveServer, names: Names
) -> None:
    too_big = big_create(names, MAX_BODY * 4)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(too_big), 512):
            yield too_big[start : start + 512]

    response = small_body_server.client.post(
        "/tasks", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    reply = small_body_server.rpc("tasks.get", {"task_id": names("big")})
    assert reply["error"]["code"] == -32001
