"""`flowledger tasks execute` and `flowledger tasks watch` through Click's CliRunner on a
real store: exit codes, the tasks.execute answer with --json, progress on stderr, and the
stream events of a tree (following live runs of other processes is in test_cli_watch.py)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from click.testing import CliRunner, Result

from application.config import Settings
from interfaces.cli.main import cli


@pytest.fixture
def run(store_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in [n for n in os.environ if n.startswith("FLOWLEDGER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FLOWLEDGER_HOME", str(store_settings.home))
    if store_settings.database_url is not None:
        monkeypatch.setenv("FLOWLEDGER_DATABASE_URL", store_settings.database_url)
        monkeypatch.setenv("FLOWLEDGER_DATABASE_SCHEMA", store_settings.database_schema or "")
    from interfaces.cli import tasks, tasks_run  # noqa: F401  (registers the commands)

    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(cli, list(args), input=stdin)

    return invoke


def create(run: Any, *tasks: dict[str, Any]) -> dict[str, Any]:
    done = run("tasks", "create", "-", "--json", stdin=json.dumps(list(tasks)))
    assert done.exit_code == 0, done.output
    root: dict[str, Any] = json.loads(done.stdout)
    return root


GOOD = (
    {"id": "g", "name": "root"},
    {
        "id": "g1",
        "name": "one",
        "parent_id": "g",
        "schemas": {"method": "echo"},
        "inputs": {"n": 1},
    },
    {
        "id": "g2",
        "name": "two",
        "parent_id": "g",
        "dependencies": ["g1"],
        "schemas": {"method": "echo"},
    },
)
BAD = (
    {"id": "f", "name": "root"},
    {
        "id": "f1",
        "name": "boom",
        "parent_id": "f",
        "schemas": {"method": "fail"},
        "inputs": {"message": "no"},
    },
    {"id": "f2", "name": "after", "parent_id": "f", "dependencies": ["f1"]},
)


def test_execute_runs_a_stored_tree_and_answers_like_tasks_execute(run: Any) -> None:
    create(run, *GOOD)
    done = run("tasks", "execute", "g1", "--json")
    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout)
    assert answer["success"] is True
    assert (answer["root_task_id"], answer["task_id"], answer["status"]) == ("g", "g1", "completed")
    assert answer["root_task"]["tree_status"] == "completed"
    lines = done.stderr.splitlines()
    assert any(line.endswith("started one (g1)") for line in lines), lines
    assert any(line.endswith("completed two (g2)") for line in lines), lines
    tree = json.loads(run("tasks", "tree", "g", "--json").stdout)
    assert tree["children"][1]["result"] == {"g1": {"n": 1}}

    again = run("tasks", "execute", "g")
    assert again.exit_code == 1
    assert "already finished (completed)" in again.stderr
    assert "Traceback" not in again.output

    copy = json.loads(run("tasks", "copy", "g", "--mode", "full", "--json").stdout)
    shown = run("tasks", "execute", copy["id"], "--quiet")
    assert shown.exit_code == 0, shown.output
    assert shown.stderr == ""
    assert "completed" in shown.stdout
    assert "two" in shown.stdout


def test_execute_exits_1_when_the_tree_fails_or_is_unknown(run: Any) -> None:
    create(run, *BAD)
    failed = run("tasks", "execute", "f", "--json")
    assert failed.exit_code == 1
    answer = json.loads(failed.stdout)
    assert answer["status"] == "failed"
    assert "failed boom (f1): RequestedFailure: no" in failed.stderr
    missing = run("tasks", "execute", "nope")
    assert missing.exit_code == 1
    assert "not found" in missing.stderr
    assert run("tasks", "execute").exit_code == 2


def test_watch_of_a_finished_tree_prints_the_final_event(run: Any) -> None:
    create(run, *GOOD)
    create(run, *BAD)
    assert run("tasks", "execute", "g", "--quiet").exit_code == 0
    assert run("tasks", "execute", "f", "--quiet").exit_code == 1

    completed = run("tasks", "watch", "g2", "--json")
    assert completed.exit_code == 0, completed.output
    [final] = [json.loads(line) for line in completed.stdout.splitlines()]
    assert (final["type"], final["root_task_id"], final["status"]) == ("final", "g", "completed")
    assert "watching tree" in completed.stderr

    failed = run("tasks", "watch", "f")
    assert failed.exit_code == 1
    assert "tree f failed" in failed.stdout
    assert "boom" in failed.stdout  # then the tree, for people
    assert "\x1b[" not in failed.output

    missing = run("tasks", "watch", "nope")
    assert missing.exit_code == 1
    assert "task 'nope' not found" in missing.stderr


def test_watch_of_a_cancelled_tree_exits_1(run: Any) -> None:
    create(run, *GOOD)
    assert run("tasks", "cancel", "g").exit_code == 0
    watched = run("tasks", "watch", "g", "--json")
    assert watched.exit_code == 1
    assert json.loads(watched.stdout)["status"] == "cancelled"
