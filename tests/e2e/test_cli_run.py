"""`flowledger run` through Click's CliRunner on a real SQLite store: exit codes, JSON,
plain progress lines, validation errors and usage errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from interfaces.cli.main import cli


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FLOWLEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLOWLEDGER_DATABASE_URL", raising=False)
    from interfaces.cli import run as _  # noqa: F401  (registers the command)

    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(cli, list(args), input=stdin)

    return invoke


def tasks(*items: dict[str, Any]) -> str:
    return json.dumps({"tasks": list(items)})


def test_a_completed_tree_exits_0_and_prints_its_json(run: Any) -> None:
    got = run(
        "run",
        "-",
        "--json",
        stdin=tasks(
            {"name": "root"},
            {"name": "a", "parent_id": "root", "schemas": {"method": "echo"}, "inputs": {"n": 1}},
            {
                "name": "b",
                "parent_id": "root",
                "dependencies": ["a"],
                "schemas": {"method": "echo"},
            },
        ),
    )
    assert got.exit_code == 0, got.output
    tree = json.loads(got.stdout)
    assert tree["tree_status"] == "completed"
    a, b = tree["children"]
    assert b["result"] == {a["id"]: {"n": 1}}
    lines = got.stderr.splitlines()
    assert any(line.endswith(f"started a ({a['id']})") for line in lines)
    assert any(line.endswith(f"completed b ({b['id']})") for line in lines)


def test_a_failed_tree_exits_1_and_says_why(run: Any) -> None:
    got = run(
        "run",
        "-",
        "--quiet",
        "--json",
        stdin=tasks(
            {"name": "root", "schemas": {"method": "fail"}, "inputs": {"message": "boom"}},
            {"name": "after", "parent_id": "root", "dependencies": ["root"]},
        ),
    )
    assert got.exit_code == 1
    tree = json.loads(got.stdout)
    assert (tree["tree_status"], tree["error"]) == ("failed", "RequestedFailure: boom")
    assert tree["children"][0]["status"] == "skipped"
    assert got.stderr == ""  # --quiet: no progress


def test_an_unknown_executor_exits_2_listing_the_known_ones(run: Any) -> None:
    got = run("run", "-", stdin=tasks({"name": "a", "schemas": {"method": "shop.fetch"}}))
    assert got.exit_code == 2
    assert "unknown executor 'shop.fetch'; known: a2a, aggregate_results, echo" in got.stderr
    assert "Traceback" not in got.output


def test_bad_run_params_exit_2_naming_each_field(run: Any) -> None:
    got = run(
        "run",
        "-",
        stdin=tasks({"name": "a", "params": {"timeout_s": "soon", "on_interrupt": "maybe"}}),
    )
    assert got.exit_code == 2
    assert "tasks[0].params.timeout_s: must be a number of seconds" in got.stderr
    assert 'tasks[0].params.on_interrupt: must be "rerun" or "fail"' in got.stderr


@pytest.mark.parametrize("args", [(), ("--resume", "tree.json")])
def test_a_file_or_resume_is_required_but_not_both(run: Any, args: tuple[str, ...]) -> None:
    got = run("run", *args)
    assert got.exit_code == 2
    assert "give a FILE to run, or --resume (not both)" in got.stderr


def test_resume_with_nothing_unfinished(run: Any) -> None:
    got = run("run", "--resume", "--json")
    assert (got.exit_code, json.loads(got.stdout)) == (0, [])
    assert "nothing to resume" in got.stderr
