"""The real CLI on a real SQLite store: Click's CliRunner, and the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from interfaces.cli.main import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline.json"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FLOWLEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLOWLEDGER_DATABASE_URL", raising=False)
    from interfaces.cli import history, tasks  # noqa: F401  (registers commands)

    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), input=stdin)

    return invoke


def test_create_json_then_tree_and_history(run) -> None:  # type: ignore[no-untyped-def]
    created = run("tasks", "create", str(EXAMPLE), "--json")
    assert created.exit_code == 0, created.output
    root = json.loads(created.output)
    assert root["name"] == "nightly report"
    assert root["tree_status"] == "pending"
    assert [c["name"] for c in root["children"]][:2] == ["fetch orders", "fetch refunds"]

    shown = run("tasks", "tree", root["children"][0]["id"], "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.output)["id"] == root["id"]

    history = run("history", root["id"], "--json")
    assert history.exit_code == 0
    entries = json.loads(history.output)
    assert [e["type"] for e in entries] == ["Created"]
    assert entries[0]["version"] == 1


def test_bad_input_exits_2_with_the_field_on_stderr(run) -> None:  # type: ignore[no-untyped-def]
    bad = run("tasks", "create", "-", stdin='[{"name": "a", "priority": -1}]')
    assert bad.exit_code == 2
    assert "tasks[0].priority" in bad.output
    assert "Traceback" not in bad.output

    malformed = run("tasks", "create", "-", stdin="{nope")
    assert malformed.exit_code == 2
    assert "not valid JSON" in malformed.output

    deep = run("tasks", "create", "-", stdin="[" * 100_000 + "]" * 100_000)
    assert deep.exit_code == 2
    assert "too deeply" in deep.output

    deep_inputs = run(
        "tasks", "create", "-", stdin='[{"name": "r", "inputs": ' + "[" * 500 + "]" * 500 + "}]"
    )
    assert deep_inputs.exit_code == 2
    assert "tasks[0].inputs" in deep_inputs.output

    cycle = run(
        "tasks",
        "create",
        "-",
        stdin='[{"name": "a", "dependencies": ["b"]}, {"name": "b", "parent_id": "a", '
        '"dependencies": ["a"]}]',
    )
    assert cycle.exit_code == 2
    assert "a -> b -> a" in cycle.output


def test_unknown_id_exits_1(run) -> None:  # type: ignore[no-untyped-def]
    missing = run("tasks", "tree", "no-such-task")
    assert missing.exit_code == 1
    assert "not found" in missing.output
    undecodable = run("tasks", "tree", "\udcff")  # a non-UTF-8 argv byte, as Click passes it
    assert undecodable.exit_code == 1
    assert "Traceback" not in undecodable.output


def test_history_at_takes_ascii_versions_or_times_only(run) -> None:  # type: ignore[no-untyped-def]
    root = json.loads(run("tasks", "create", str(EXAMPLE), "--json").output)
    for bad in ("²", "yesterday", "99999999999999999999999"):
        out = run("history", root["id"], "--at", bad)
        assert out.exit_code == 2, (bad, out.output)
        assert "Traceback" not in out.output
    then = run("history", root["id"], "--at", "1", "--json")
    assert then.exit_code == 0
    assert json.loads(then.output)["tree_status"] == "pending"


def test_copy_dry_run_saves_nothing_and_copy_saves(run) -> None:  # type: ignore[no-untyped-def]
    root = json.loads(run("tasks", "create", str(EXAMPLE), "--json").output)
    refunds = next(c for c in root["children"] if c["name"] == "fetch refunds")
    dry = run("tasks", "copy", refunds["id"], "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert planned["saved"] is False
    assert {t["original_task_id"] for t in planned["tasks"]} >= {refunds["id"], root["id"]}
    assert len(json.loads(run("history", root["id"], "--json").output)) == 1

    copied = run("tasks", "copy", refunds["id"], "--json")
    assert copied.exit_code == 0, copied.output
    assert json.loads(copied.output)["original_task_id"] == root["id"]
    types = [e["type"] for e in json.loads(run("history", root["id"], "--json").output)]
    assert types == ["Created", "Copied"]


def test_cancel_reports_each_id(run) -> None:  # type: ignore[no-untyped-def]
    root = json.loads(run("tasks", "create", str(EXAMPLE), "--json").output)
    out = run("tasks", "cancel", root["id"], "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["status"] == "cancelled"
    again = json.loads(run("tasks", "cancel", root["id"], "--json").output)
    assert again[0]["status"] == "not_cancelable"
    tree = json.loads(run("tasks", "tree", root["id"], "--json").output)
    assert tree["tree_status"] == "cancelled"


def test_console_script_runs_in_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWLEDGER_HOME": str(tmp_path / "home")}
    env.pop("FLOWLEDGER_DATABASE_URL", None)
    script = Path(sys.executable).parent / "flowledger"
    done = subprocess.run(
        [str(script), "tasks", "create", str(EXAMPLE), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tree_status"] == "pending"
    assert (tmp_path / "home" / "events.sqlite3").exists()


def test_demo_runs(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWLEDGER_HOME": str(tmp_path / "home")}
    env.pop("FLOWLEDGER_DATABASE_URL", None)
    root = Path(__file__).resolve().parents[2]
    flowledger = Path(sys.executable).with_name("flowledger")
    ran = subprocess.run(
        [str(flowledger), "run", "--concurrency", "2", "--json", "examples/pipeline.json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    tree = json.loads(ran.stdout)
    assert tree["tree_status"] == "completed"
    by_name = {t["name"]: t for t in tree["children"]}
    combine, publish = by_name["combine"], by_name["publish"]
    fetched = {by_name[n]["id"] for n in ("fetch orders", "fetch refunds", "fetch fx rates")}
    assert set(combine["result"]) == fetched  # fan-in: aggregate_results of every dependency
    assert publish["result"][combine["id"]] == combine["result"]  # flowed downstream
    started = [line.split(" ", 2)[2] for line in ran.stderr.splitlines() if " started " in line]
    assert started[0].startswith("fetch orders")
    assert started[1].startswith("fetch refunds")

    done = subprocess.run(
        [sys.executable, "-m", "examples.tour"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "refused (cycle): dependency cycle: a -> b -> a" in done.stdout
    assert "refused (unknown_executor)" in done.stdout
    assert "AttemptFailed" in done.stdout
    assert "failed" in done.stdout
