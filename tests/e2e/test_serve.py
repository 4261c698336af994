"""`flowledger serve` as a real process: it resumes unfinished trees on start, answers
JSON-RPC, stops cleanly on SIGTERM, and will not bind a public address without auth."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from application.config import Settings
from application.ledger import Ledger
from interfaces.cli import serve  # noqa: F401  (registers the command)
from interfaces.cli.main import cli

FLOWLEDGER = str(Path(sys.executable).with_name("flowledger"))
DEADLINE_S = 60  # a bound on waiting for the process, never a measured duration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    env = {"FLOWLEDGER_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    assert "refusing to bind 0.0.0.0 without auth" in result.output


def test_bad_server_settings_exit_2(tmp_path: Path) -> None:
    env = {"FLOWLEDGER_HOME": str(tmp_path / "home"), "FLOWLEDGER_RATE_LIMIT": "lots"}
    result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 2
    assert "FLOWLEDGER_RATE_LIMIT" in result.output


def test_serve_resumes_answers_and_stops(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ledger = Ledger(Settings(home=home))
    try:  # a tree asked to run that no process ran: the server must pick it up
        tree = ledger.create_tree(
            [{"id": "left", "name": "left", "params": {"executor_id": "echo"}}]
        )
        ledger.request_run("left")
    finally:
        ledger.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env["FLOWLEDGER_HOME"] = str(home)
    server = subprocess.Popen(
        [FLOWLEDGER, "serve", "--port", str(port), "--log-level", "info"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        seen = []
        for line in server.stderr:  # ready when uvicorn says so
            seen.append(line)
            if "Application startup complete" in line:
                break
        else:
            raise AssertionError("".join(seen))
        logged = [json.loads(line) for line in seen]  # structured: one JSON object a line
        assert all({"ts", "level", "logger", "message"} <= set(entry) for entry in logged)
        assert any("resumed 1 unfinished tree" in entry["message"] for entry in logged), seen
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
            body = {"jsonrpc": "2.0", "id": 7, "method": "tasks.execute"}
            body["params"] = {"task_id": "left", "wait": True}
            reply = client.post("/tasks", json=body).json()
            # Either the resumed run is still going (execute waits for it) or it has ended.
            if "error" in reply:
                assert reply["error"]["code"] == -32011, reply
            else:
                assert reply["result"]["status"] == "completed", reply
            got = client.post(
                "/tasks",
                json={
                    "jsonrpc": "2.0",
                    "id": 8,
                    "method": "tasks.get",
                    "params": {"task_id": "left"},
                },
            ).json()
            assert got["result"]["status"] == "completed"
            assert got["result"]["tree_id"] == str(tree.id)
    finally:
        server.send_signal(signal.SIGTERM)
        rest = server.communicate(timeout=DEADLINE_S)[1]
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert "Application shutdown complete" in rest
    assert server.returncode in (0, -signal.SIGTERM)
