"""The built-in executors and the registry's loading paths, run through the real Runner on
a real SQLite store (executors do not depend on the store)."""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from application.config import ConfigError, Settings
from application.executors import (
    REGISTRY,
    ExecutorRegistry,
    RegistryError,
    executor,
    loaded_registry,
)
from application.ledger import Ledger
from application.runner import Runner
from domain.errors import UnknownExecutor
from domain.tree import TaskTree


def run_one(settings: Settings, task: dict[str, Any]) -> dict[str, Any]:
    """Run a one-task tree (the task is the root) and return the task's final fields."""
    ledger = Ledger(settings)
    try:
        tree = ledger.create_tree([{"name": "only", **task}])

        async def go() -> TaskTree:
            async with Runner(ledger) as runner:
                return await runner.run(tree.id)

        final = asyncio.run(go())
        only = final.tasks[final.root_id]
        return {"status": only.status.value, "result": only.result, "error": only.error}
    finally:
        ledger.close()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/missing"):
            self._send(404, b"no such thing", "text/plain")
        else:
            self._send(200, json.dumps({"path": self.path}).encode(), "application/json")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        echoed = {"got": json.loads(body), "header": self.headers.get("X-Test")}
        self._send(201, json.dumps(echoed).encode(), "application/json")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_http_executor_arrives_through_the_entry_point_group() -> None:
    entry = loaded_registry().get("http")
    assert entry is not None
    assert entry.source.startswith("entry point interfaces.executors.http")


def test_http_get_post_and_a_non_2xx_status(sqlite_settings: Settings, web: str) -> None:
    got = run_one(
        sqlite_settings, {"schemas": {"method": "http"}, "inputs": {"url": f"{web}/a?x=1"}}
    )
    assert got["status"] == "completed"
    assert got["result"]["status_code"] == 200
    assert got["result"]["json"] == {"path": "/a?x=1"}

    posted = run_one(
        sqlite_settings,
        {
            "schemas": {"method": "http"},
            "inputs": {
                "url": web,
                "method": "POST",
                "json": {"n": 1},
                "headers": {"X-Test": "yes"},
            },
        },
    )
    assert posted["result"]["status_code"] == 201
    assert posted["result"]["json"] == {"got": {"n": 1}, "header": "yes"}

    missing = run_one(
        sqlite_settings, {"schemas": {"method": "http"}, "inputs": {"url": f"{web}/missing"}}
    )
    assert missing["status"] == "failed"
    assert missing["error"].startswith("HttpStatusError: 404 Not Found: no such thing")


def test_http_refuses_a_url_that_is_not_http(sqlite_settings: Settings) -> None:
    got = run_one(sqlite_settings, {"schemas": {"method": "http"}, "inputs": {"url": "file:///x"}})
    assert got["status"] == "failed"
    assert got["error"].startswith("ValidationError: inputs.url")


def test_command_is_off_unless_allowed(sqlite_settings: Settings) -> None:
    ledger = Ledger(sqlite_settings)
    try:
        with pytest.raises(UnknownExecutor) as refused:
            ledger.create_tree([{"name": "sh", "schemas": {"method": "command"}}])
        assert "FLOWLEDGER_ALLOW_COMMANDS=1" in refused.value.message
        assert "command" not in refused.value.message.split("known:")[1]
    finally:
        ledger.close()


def test_command_output_exit_status_and_stderr_tail(sqlite_settings: Settings) -> None:
    allowed = dataclasses.replace(sqlite_settings, allow_commands=True)
    ok = run_one(
        allowed, {"schemas": {"method": "command"}, "inputs": {"command": "echo out; echo err >&2"}}
    )
    assert ok == {
        "status": "completed",
        "result": {"returncode": 0, "stdout": "out\n", "stderr": "err\n"},
        "error": None,
    }
    bad = run_one(
        allowed,
        {"schemas": {"method": "command"}, "inputs": {"command": "echo broken >&2; exit 3"}},
    )
    assert bad["status"] == "failed"
    assert bad["error"] == "CommandFailed: exit status 3: broken"


def test_command_timeout_kills_the_process(sqlite_settings: Settings) -> None:
    allowed = dataclasses.replace(sqlite_settings, allow_commands=True)
    got = run_one(
        allowed,
        {"schemas": {"method": "command"}, "inputs": {"command": "sleep 30", "timeout": 0.2}},
    )
    assert got["status"] == "failed"
    assert got["error"] == "TimeoutError: command timed out after 0.2 s"


def test_echo_noop_fail_sleep_and_system_info(sqlite_settings: Settings) -> None:
    assert run_one(sqlite_settings, {"schemas": {"method": "echo"}, "inputs": {"a": [1]}})[
        "result"
    ] == {"a": [1]}
    assert run_one(sqlite_settings, {"schemas": {"method": "noop"}})["result"] is None
    failed = run_one(sqlite_settings, {"schemas": {"method": "fail"}, "inputs": {"message": "no"}})
    assert failed["error"] == "RequestedFailure: no"
    slept = run_one(sqlite_settings, {"schemas": {"method": "sleep"}, "inputs": {"seconds": 0}})
    assert slept["result"] == {"slept": 0.0}
    negative = run_one(sqlite_settings, {"schemas": {"method": "sleep"}, "inputs": {"seconds": -1}})
    assert negative["error"].startswith("ValidationError: inputs.seconds")
    info = run_one(
        sqlite_settings, {"schemas": {"method": "system_info"}, "inputs": {"resource": "memory"}}
    )["result"]
    assert info["memory"]["total_bytes"] > 0
    assert "cpu" not in info


def test_a_sync_function_runs_in_a_worker_thread(sqlite_settings: Settings) -> None:
    name = f"test.sync.{uuid.uuid4().hex[:6]}"

    @executor(name)
    def blocking(inputs: dict[str, Any]) -> dict[str, Any]:
        return {"thread": threading.current_thread() is not threading.main_thread()}

    assert run_one(sqlite_settings, {"schemas": {"method": name}})["result"] == {"thread": True}
    REGISTRY.remove(name)


def test_registering_an_id_twice_with_other_code_is_refused() -> None:
    registry = ExecutorRegistry()

    async def first(inputs: dict[str, Any]) -> None: ...

    async def second(inputs: dict[str, Any]) -> None: ...

    executor("dup", registry=registry)(first)
    executor("dup", registry=registry)(first)  # the same code again (a re-import) is fine
    with pytest.raises(RegistryError, match="already registered"):
        executor("dup", registry=registry)(second)


def test_a_class_needs_an_id_and_execute() -> None:
    registry = ExecutorRegistry()

    class NoExecute:
        id = "x"

    with pytest.raises(RegistryError, match="execute"):
        registry.register(NoExecute)
    with pytest.raises(RegistryError, match="non-empty string id"):
        registry.register(lambda inputs: None)


def test_a_plugin_module_that_cannot_be_imported_is_a_config_error() -> None:
    registry = ExecutorRegistry()
    with pytest.raises(ConfigError, match="FLOWLEDGER_PLUGINS: cannot import 'no_such_mod'"):
        registry.load_modules(["no_such_mod"])


def test_plugins_and_concurrency_are_read_from_the_environment(tmp_path: Any) -> None:
    settings = Settings.from_env(
        {
            "FLOWLEDGER_HOME": str(tmp_path),
            "FLOWLEDGER_PLUGINS": " tests.plugins.gates , ",
            "FLOWLEDGER_CONCURRENCY": "3",
            "FLOWLEDGER_ALLOW_COMMANDS": "1",
        }
    )
    assert settings.plugins == ("tests.plugins.gates",)
    assert settings.concurrency == 3
    assert settings.allow_commands
    for bad in ({"FLOWLEDGER_CONCURRENCY": "0"}, {"FLOWLEDGER_PLUGINS": "a b"}):
        with pytest.raises(ConfigError):
            Settings.from_env({"FLOWLEDGER_HOME": str(tmp_path), **bad})


def test_with_an_allowlist_commands_run_without_a_shell(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWLEDGER_COMMAND_ALLOWLIST", "echo, /bin/true")
    allowed = dataclasses.replace(sqlite_settings, allow_commands=True)
    planted = tmp_path / "planted"
    ok = run_one(
        allowed,
        {"schemas": {"method": "command"}, "inputs": {"command": f"echo 'a b'; touch {planted}"}},
    )
    assert ok["status"] == "completed"
    assert ok["result"]["stdout"] == f"a b; touch {planted}\n"  # words, not a shell
    assert not planted.exists()
    refused = run_one(
        allowed, {"schemas": {"method": "command"}, "inputs": {"command": f"touch {planted}"}}
    )
    assert refused["status"] == "failed"
    assert refused["error"] == (
        "CommandRefused: 'touch' is not in FLOWLEDGER_COMMAND_ALLOWLIST (/bin/true, echo)"
    )
    assert not planted.exists()
    unbalanced = run_one(
        allowed, {"schemas": {"method": "command"}, "inputs": {"command": "echo 'open"}}
    )
    assert unbalanced["error"].startswith("CommandRefused: cannot split the command into words")


def test_a_malformed_allowlist_is_a_configuration_error(tmp_path: Path) -> None:
    env = {"FLOWLEDGER_HOME": str(tmp_path), "FLOWLEDGER_COMMAND_ALLOWLIST": "echo,rm -rf"}
    with pytest.raises(ConfigError, match="FLOWLEDGER_COMMAND_ALLOWLIST"):
        Settings.from_env(env)
