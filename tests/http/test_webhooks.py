"""webhook_config: each stream event of a run is POSTed to a receiver, in order, retried
when it fails, ending with `final`; a receiver that is down never holds the run up."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from application.config import Settings
from interfaces.http.config import ServerConfig
from interfaces.rpc import webhooks
from tests.http.server import LiveServer, running_server
from tests.http.support import WAIT_S, Names, error_of, fields_of, run_with, stream, task


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: it answers its first posts with `answers`, then 200."""

    url: str
    answers: list[int]
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every post, answered or not
    accepted: list[dict[str, Any]] = field(default_factory=list)  # the posts answered 200
    headers: list[dict[str, str]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    final: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, method: str, headers: dict[str, str], body: dict[str, Any]) -> int:
        with self.lock:
            self.attempts.append(body)
            self.methods.append(method)
            self.headers.append(headers)
            if len(self.attempts) <= len(self.answers):
                return self.answers[len(self.attempts) - 1]
            self.accepted.append(body)
            if body.get("type") == "final":
                self.final.set()
            return 200


@contextmanager
def receiver(*answers: int) -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def _take(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            status = box[0].take(self.command, dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_PATCH = _take  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{http.server_address[1]}/hook", list(answers)))
    thread = threading.Thread(target=http.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        http.shutdown()
        http.server_close()
        thread.join(WAIT_S)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry at once (the server runs in this process): the suite stays fast."""
    monkeypatch.setattr(webhooks, "FIRST_BACKOFF_S", 0.001)
    monkeypatch.setattr(webhooks, "MAX_BACKOFF_S", 0.001)


def test_events_arrive_in_order_despite_failures(shared_server: LiveServer, names: Names) -> None:
    r, a, bad = names("r"), names("a"), names("bad")
    with receiver(500, 503, 500) as hook:
        started = shared_server.result(
            "tasks.execute",
            {
                "tasks": [
                    task(r),
                    task(a, r, **run_with("echo", n=1)),
                    task(bad, r, dependencies=[a], **run_with("fail", message="late")),
                ],
                "webhook_config": {"url": hook.url, "headers": {"X-Hook-Token": "t0k"}},
            },
        )
        assert started["webhook_url"] == hook.url
        assert hook.final.wait(WAIT_S), hook.attempts
        attempts, accepted = list(hook.attempts), list(hook.accepted)
        headers = list(hook.headers)

    assert len(attempts) == len(accepted) + 3
    assert attempts[:3] == [attempts[0]] * 3  # the first event, retried until accepted
    assert accepted[0] == attempts[0]
    assert all(h.get("X-Hook-Token") == "t0k" for h in headers)
    assert all(e["root_task_id"] == r and e["protocol"] == "jsonrpc" for e in accepted)
    assert accepted[-1]["type"] == "final"
    assert accepted[-1]["status"] == "failed"
    assert accepted[-1]["final"] is True
    assert [e["type"] for e in accepted].count("final") == 1
    steps = [(e["task_id"], e["type"]) for e in accepted[:-1]]
    assert steps == [
        (r, "task_started"),
        (r, "task_completed"),
        (a, "task_started"),
        (a, "task_completed"),
        (bad, "task_started"),
        (bad, "task_failed"),
    ]
    assert accepted[3]["result"] == {"n": 1}
    assert accepted[5]["error"] == "RequestedFailure: late"
    assert shared_server.result("tasks.get", {"task_id": r})["tree_status"] == "failed"


def test_webhook_with_wait_and_another_method(shared_server: LiveServer, names: Names) -> None:
    r = names("r")
    with receiver() as hook:
        done = shared_server.result(
            "tasks.execute",
            {
                "tasks": [task(r, **run_with("echo", v=2))],
                "wait": True,
                "webhook_config": {"url": hook.url, "method": "PUT"},
            },
        )
        assert done["status"] == "completed"
        assert hook.final.wait(WAIT_S)
    assert [e["type"] for e in hook.accepted] == ["task_started", "task_completed", "final"]
    assert set(hook.methods) == {"PUT"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_receiver_that_is_down_does_not_block_the_run(
    shared_server: LiveServer, names: Names
) -> None:
    r, a = names("r"), names("a")
    done = shared_server.result(
        "tasks.execute",
        {
            "tasks": [task(r), task(a, r, **run_with("echo"))],
            "wait": True,
            "webhook_config": {"url": f"http://127.0.0.1:{free_port()}/hook", "max_retries": 20},
        },
    )
    assert done["status"] == "completed"
    assert shared_server.result("tasks.get", {"task_id": a})["status"] == "completed"


def test_a_receiver_that_refuses_is_not_retried(shared_server: LiveServer, names: Names) -> None:
    """A 4xx other than 408/425/429 is final for that event; later events still go out."""
    r = names("r")
    with receiver(400) as hook:
        shared_server.result(
            "tasks.execute",
            {"tasks": [task(r, **run_with("echo"))], "webhook_config": {"url": hook.url}},
        )
        assert hook.final.wait(WAIT_S)
    types = [e["type"] for e in hook.attempts]
    assert types == ["task_started", "task_completed", "final"]


def test_webhook_and_stream_see_the_same_events(shared_server: LiveServer, names: Names) -> None:
    r, a = names("r"), names("a")
    with receiver() as hook:
        streamed = stream(
            shared_server,
            {
                "tasks": [task(r), task(a, r, **run_with("fail"))],
                "webhook_config": {"url": hook.url},
            },
        )
        assert hook.final.wait(WAIT_S)
    posted = [
        {k: v for k, v in e.items() if k not in ("protocol", "root_task_id", "final")}
        | ({"root_task_id": r} if e["type"] == "final" else {})
        for e in hook.accepted
    ]
    assert posted == streamed
    assert streamed[-1]["status"] == "failed"


def test_a_webhook_to_a_never_called_host_is_refused_before_anything_is_stored(
    shared_server: LiveServer, names: Names
) -> None:
    r = names("r")
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:80/x"):
        error = shared_server.error(
            "tasks.execute", {"tasks": [task(r)], "webhook_config": {"url": url}}
        )
        assert "link-local" in fields_of(error)["webhook_config.url"]
    error_of(shared_server.rpc("tasks.get", {"task_id": r}), -32001)  # nothing stored


def test_with_callback_hosts_only_those_are_called(tmp_path: Path, names: Names) -> None:
    """FLOWLEDGER_CALLBACK_HOSTS=127.0.0.1: the receiver there gets the events; another
    host is refused at the door (names resolved at delivery: test_callbacks.py)."""
    config = ServerConfig.from_env({"FLOWLEDGER_CALLBACK_HOSTS": "127.0.0.1"})
    r, refused = names("r"), names("refused")
    with running_server(Settings(home=tmp_path / "home"), config) as live, receiver() as hook:
        error = live.error(
            "tasks.execute",
            {"tasks": [task(refused)], "webhook_config": {"url": "http://10.1.2.3/hook"}},
        )
        assert fields_of(error) == {
            "webhook_config.url": "host 10.1.2.3 is not one of FLOWLEDGER_CALLBACK_HOSTS"
        }
        live.result(
            "tasks.execute",
            {"tasks": [task(r, **run_with("echo"))], "webhook_config": {"url": hook.url}},
        )
        assert hook.final.wait(WAIT_S)
        assert [e["type"] for e in hook.accepted] == ["task_started", "task_completed", "final"]
