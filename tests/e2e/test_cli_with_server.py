"""The CLI on the store a running server uses, at the same time: its --json is byte for byte
what the server answers over HTTP, `tasks watch` (another process) follows the server's run,
and a `tasks cancel` from the CLI stops it in the server."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from application.config import Settings
from interfaces.cli import history, tasks  # noqa: F401  (registers the commands)
from interfaces.cli.main import cli
from tests.e2e.test_cli_watch import Process
from tests.e2e.test_run_processes import ROOT
from tests.http.server import running_server
from tests.plugins import gates

assert gates.gate  # registers test.gate in this process, where the server runs


def cli_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env |= {"FLOWLEDGER_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    if settings.database_url is not None:
        env |= {
            "FLOWLEDGER_DATABASE_URL": settings.database_url,
            "FLOWLEDGER_DATABASE_SCHEMA": settings.database_schema or "",
        }
    return env


def test_the_cli_works_beside_a_running_server(
    store_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli_env(store_settings)
    for name in [n for n in os.environ if n.startswith("FLOWLEDGER_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("FLOWLEDGER_"):
            monkeypatch.setenv(name, value)
    runner = CliRunner()

    def run(*args: str) -> str:
        done = runner.invoke(cli, [*args, "--json"])
        assert done.exit_code == 0, done.output
        return done.stdout

    p = uuid.uuid4().hex[:8]
    tree = [
        {"id": f"{p}-root", "name": "root", "user_id": "ana"},
        {
            "id": f"{p}-gate",
            "name": "gate",
            "parent_id": f"{p}-root",
            "schemas": {"method": "test.gate"},
            "inputs": {"path": str(tmp_path / "never")},
        },
        {
            "id": f"{p}-after",
            "name": "after",
            "parent_id": f"{p}-root",
            "dependencies": [f"{p}-gate"],
        },
    ]
    with running_server(store_settings) as server:
        started = server.result("tasks.execute", {"tasks": tree})
        assert started["root_task_id"] == f"{p}-root"

        watch = Process(["tasks", "watch", f"{p}-root", "--json"], env)
        watch.wait_for(lambda line: line.startswith("watching tree") and "in_progress" in line)

        for args, method, params in [
            (("tasks", "get", f"{p}-gate"), "tasks.get", {"task_id": f"{p}-gate"}),
            (("tasks", "tree", f"{p}-root"), "tasks.tree", {"task_id": f"{p}-root"}),
            (("tasks", "list", "--user", "ana"), "tasks.list", {"user_id": "ana"}),
            (("history", f"{p}-root"), "tasks.history", {"task_id": f"{p}-root"}),
        ]:
            assert json.loads(run(*args)) == server.result(method, params), args

        cancelled = json.loads(run("tasks", "cancel", f"{p}-root"))
        assert cancelled[0]["status"] == "cancelled"

        code, lines = watch.finish()
        assert code == 1, watch.seen
        events = [json.loads(line) for line in lines]
        assert (events[-1]["type"], events[-1]["status"]) == ("final", "cancelled")
        assert {e["task_id"] for e in events if e["type"] == "task_cancelled"} >= {
            f"{p}-gate",
            f"{p}-after",
        }
        root = server.result("tasks.get", {"task_id": f"{p}-root"})
        assert root["tree_status"] == "cancelled"
        gate = server.result("tasks.get", {"task_id": f"{p}-gate"})
        assert gate["status"] == "cancelled"
