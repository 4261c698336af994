"""`flowledger projections rebuild|status` and `flowledger events export` through the real CLI
on a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from application.audit import read_export
from application.codec import EventCodec
from application.config import Settings
from application.ledger import Ledger
from domain.errors import InvalidSpec
from interfaces.cli.main import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline.json"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWLEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FLOWLEDGER_DATABASE_URL", raising=False)
    from interfaces.cli import events, history, projections, run, tasks  # noqa: F401

    return tmp_path / "home"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def ran_tree() -> dict[str, Any]:
    done = invoke("run", "--quiet", "--json", str(EXAMPLE))
    assert done.exit_code == 0, done.output
    tree: dict[str, Any] = json.loads(done.output)
    return tree


def test_status_shows_the_lag_and_rebuild_clears_it(home: Path) -> None:
    ran_tree()
    before = invoke("projections", "status", "--json")
    assert before.exit_code == 0, before.output
    status = json.loads(before.output)
    assert status["position"] == 0
    assert status["lag"] == status["head"] > 0

    rebuilt = invoke("projections", "rebuild", "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    report = json.loads(rebuilt.output)
    assert report["position"] == status["head"]
    assert 0 < report["events"] < report["position"]  # the log also holds task-id claims

    after = json.loads(invoke("projections", "status", "--json").output)
    assert after["lag"] == 0
    assert after["position"] == status["head"]
    human = invoke("projections", "status")
    assert "up to date" in human.output


def test_rebuild_prints_a_rate_for_people(home: Path) -> None:
    ran_tree()
    rebuilt = invoke("projections", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "rebuilt the read models:" in rebuilt.output
    assert "log entries/s" in rebuilt.output


def test_export_lines_read_back_into_the_same_events(home: Path, tmp_path: Path) -> None:
    tree = ran_tree()
    out = tmp_path / "tree.jsonl"
    done = invoke("events", "export", tree["id"], "--output", str(out), "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    lines = out.read_bytes().splitlines()
    assert summary == {"tree_id": tree["tree_id"], "events": len(lines), "output": str(out)}
    assert all(json.loads(line)["tree_id"] == tree["tree_id"] for line in lines)

    ledger = Ledger(Settings(home=home))
    try:
        assert isinstance(ledger.mapper, EventCodec)
        stored = ledger.history(tree["id"])
        assert read_export(lines, ledger.mapper) == stored
    finally:
        ledger.close()

    to_stdout = invoke("events", "export", tree["children"][0]["id"])
    assert to_stdout.exit_code == 0
    assert to_stdout.output.encode().splitlines() == lines


def test_export_refuses_unknown_ids_and_unwritable_files(home: Path, tmp_path: Path) -> None:
    tree = ran_tree()
    missing = invoke("events", "export", "no-such-task")
    assert missing.exit_code == 1
    assert "not found" in missing.stderr
    blocked = invoke("events", "export", tree["id"], "-o", str(tmp_path / "nope" / "x.jsonl"))
    assert blocked.exit_code == 2
    assert "cannot write" in blocked.stderr
    assert "Traceback" not in blocked.output


def test_a_damaged_export_is_refused_naming_the_line(home: Path) -> None:
    tree = ran_tree()
    lines = invoke("events", "export", tree["id"]).output.splitlines()
    ledger = Ledger(Settings(home=home))
    try:
        assert isinstance(ledger.mapper, EventCodec)
        damaged = [*lines[:2], lines[2].replace('"version":3', '"version":"three"'), *lines[3:]]
        with pytest.raises(InvalidSpec, match="line 3"):
            read_export(damaged, ledger.mapper)
        with pytest.raises(InvalidSpec, match="line 1"):
            read_export(["{not json"], ledger.mapper)
        for topic in ("tree.Exploded", "tree.Snapshot/s2", "claim.TaskIdClaimed"):
            other = lines[0].replace('"topic":"tree.Created"', f'"topic":"{topic}"')
            with pytest.raises(InvalidSpec, match="line 1: topic"):
                read_export([other], ledger.mapper)
        mislabelled = lines[0].replace('"type":"Created"', '"type":"Completed"')
        with pytest.raises(InvalidSpec, match="does not match"):
            read_export([mislabelled], ledger.mapper)
    finally:
        ledger.close()


def test_history_prints_a_timeline_with_times(home: Path) -> None:
    tree = ran_tree()
    shown = invoke("history", tree["id"])
    assert shown.exit_code == 0
    assert "time (UTC)" in shown.output
    assert "Completed" in shown.output
    earlier = invoke("history", tree["id"], "--at", "1", "--json")
    assert json.loads(earlier.output)["tree_status"] == "pending"


def test_reading_commands_catch_up_before_they_read(home: Path) -> None:
    tree = ran_tree()  # another process's run, as far as the read models know
    listed = invoke("tasks", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(t["id"], t["tree_status"]) for t in json.loads(listed.output)] == [
        (tree["id"], "completed")
    ]
    every = json.loads(invoke("tasks", "list", "--all", "--status", "completed", "--json").output)
    assert len(every) == 1 + len(tree["children"])
    counted = json.loads(invoke("tasks", "count", "--user", "demo", "--json").output)
    assert counted["by_status"]["completed"] == counted["total"] == len(every)
    assert json.loads(invoke("projections", "status", "--json").output)["lag"] == 0
    bad = invoke("tasks", "list", "--status", "done")
    assert bad.exit_code == 2
    assert "--status" in bad.output


def damage_read_models(home: Path) -> None:
    import sqlite3

    with sqlite3.connect(home / "readmodels.sqlite3") as conn:
        conn.execute("DELETE FROM fl_trees")


def test_damaged_read_models_give_a_reason_and_a_hint(home: Path) -> None:
    tree = ran_tree()
    assert invoke("projections", "rebuild").exit_code == 0
    damage_read_models(home)
    copied = invoke("tasks", "copy", tree["id"], "--mode", "full")  # Copied: on a lost tree
    assert copied.exit_code == 0, copied.output
    listed = invoke("tasks", "list")
    assert listed.exit_code == 2
    assert "projections rebuild" in listed.stderr
    assert "Traceback" not in listed.output
    assert invoke("projections", "rebuild").exit_code == 0
    assert len(json.loads(invoke("tasks", "list", "--json").output)) == 2


def test_resume_does_not_depend_on_the_read_models(home: Path) -> None:
    tree = ran_tree()
    assert invoke("projections", "rebuild").exit_code == 0
    damage_read_models(home)
    assert invoke("tasks", "copy", tree["id"], "--mode", "full").exit_code == 0
    resumed = invoke("run", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "scanning the event log" in resumed.stderr
    assert "nothing to resume" in resumed.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_export_to_a_full_disk_fails_cleanly(home: Path, tmp_path: Path) -> None:
    tree = ran_tree()
    full = invoke("events", "export", tree["id"], "-o", "/dev/full")
    assert full.exit_code == 2
    assert "cannot write" in full.stderr
    assert "Traceback" not in full.output
