"""`flowledger run` as real OS processes: a cancel written by another process is honoured,
and a run killed with SIGKILL resumes with nothing lost and nothing completed twice."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from application.config import Settings
from application.ledger import Ledger
from domain import events as ev
from tests.conftest import POSTGRES_URL, postgres_schema

ROOT = Path(__file__).resolve().parents[2]
FLOWLEDGER = str(Path(sys.executable).with_name("flowledger"))
DEADLINE_S = 60  # a generous bound on waiting for a process, never a measured duration


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Settings]]:
    """The environment for subprocesses, and the same store's Settings for checking."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env |= {
        "FLOWLEDGER_HOME": str(tmp_path / "home"),
        "FLOWLEDGER_PLUGINS": "tests.plugins.gates",
        "PYTHONPATH": str(ROOT),
    }
    if request.param == "sqlite":
        yield env, Settings(home=tmp_path / "home")
        return
    if not POSTGRES_URL:
        pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
    for schema in postgres_schema():
        env |= {"FLOWLEDGER_DATABASE_URL": POSTGRES_URL, "FLOWLEDGER_DATABASE_SCHEMA": schema}
        yield (
            env,
            Settings(home=tmp_path / "home", database_url=POSTGRES_URL, database_schema=schema),
        )


class Run:
    """A `flowledger run` subprocess whose stderr lines are read as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [FLOWLEDGER, "run", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, wanted: Callable[[str], bool]) -> str:
        """Block until a stderr line satisfies `wanted` (fails if the process ends first)."""
        while True:
            line = self.lines.get(timeout=DEADLINE_S)
            if line is None:
                pytest.fail(f"the run ended before the awaited line; it said: {self.seen}")
            self.seen.append(line)
            if wanted(line):
                return line

    def finish(self) -> tuple[int, str]:
        stdout, _ = self.process.communicate(timeout=DEADLINE_S)
        return self.process.returncode, stdout


def write_tree(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"tasks": tasks}))
    return path


def child(prefix: str, name: str, *, method: str, **fields: Any) -> dict[str, Any]:
    """A task `<prefix>-<name>` under the root `<prefix>-root`, run by `method`."""
    return {
        "id": f"{prefix}-{name}",
        "name": name,
        "parent_id": f"{prefix}-root",
        "schemas": {"method": method},
        **fields,
    }


def history(settings: Settings, task_id: str) -> list[Any]:
    ledger = Ledger(settings)
    try:
        return ledger.history(task_id)
    finally:
        ledger.close()


def test_a_cancel_from_another_process_stops_the_run(
    store: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, settings = store
    p = uuid.uuid4().hex[:8]
    never = str(tmp_path / "never-opened")
    source = write_tree(
        tmp_path / "tree.json",
        [
            {"id": f"{p}-root", "name": "root"},
            child(p, "blocker", method="test.gate", inputs={"path": never}),
            child(p, "after", method="echo", dependencies=[f"{p}-blocker"]),
        ],
    )
    run = Run(["--json", str(source)], env)
    run.wait_for(lambda line: f"started blocker ({p}-blocker)" in line)

    cancel = subprocess.run(
        [FLOWLEDGER, "tasks", "cancel", f"{p}-root", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert cancel.returncode == 0, cancel.stderr

    code, stdout = run.finish()
    assert code == 1
    tree = json.loads(stdout)
    assert tree["tree_status"] == "cancelled"
    status = {t["name"]: t["status"] for t in tree["children"]}
    assert status == {"blocker": "cancelled", "after": "cancelled"}

    events = history(settings, f"{p}-root")
    assert not [e for e in events if isinstance(e, ev.Completed) and e.task_id == f"{p}-blocker"]
    versions = [e.originator_version for e in events]
    assert versions == list(range(1, len(versions) + 1))


def test_a_killed_run_resumes_with_nothing_lost_or_done_twice(
    store: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, settings = store
    p = uuid.uuid4().hex[:8]
    gate_file, attempts_log = tmp_path / "gate-open", tmp_path / "attempts.jsonl"
    quick = [child(p, f"quick{i}", method="echo", priority=0, inputs={"i": i}) for i in range(3)]
    source = write_tree(
        tmp_path / "tree.json",
        [
            {"id": f"{p}-root", "name": "root"},
            *quick,
            child(
                p,
                "gate",
                method="test.gate",
                priority=1,
                dependencies=[q["id"] for q in quick],
                inputs={"path": str(gate_file), "log": str(attempts_log)},
            ),
            child(p, "later", method="echo", dependencies=[f"{p}-gate"]),
        ],
    )
    run = Run([str(source)], env)
    run.wait_for(lambda line: f"gate entered {p}-gate attempt 1" in line)
    run.process.send_signal(signal.SIGKILL)
    assert run.process.wait(timeout=DEADLINE_S) == -signal.SIGKILL

    gate_file.touch()
    resumed = Run(["--resume", "--json"], env)
    code, stdout = resumed.finish()
    assert code == 0, resumed.seen
    [tree] = json.loads(stdout)
    assert tree["tree_status"] == "completed"
    by_name = {t["name"]: t for t in tree["children"]}
    assert by_name["gate"]["attempts"] == 2
    assert by_name["gate"]["result"] == {"opened": str(gate_file), "attempt": 2}
    assert by_name["later"]["result"] == {f"{p}-gate": {"opened": str(gate_file), "attempt": 2}}

    seen_attempts = [json.loads(line) for line in attempts_log.read_text().splitlines()]
    assert [a["attempt"] for a in seen_attempts] == [1, 2]

    events = history(settings, f"{p}-root")
    completed = Counter(e.task_id for e in events if isinstance(e, ev.Completed))
    assert set(completed.values()) == {1}
    assert set(completed) == {t["id"] for t in [*quick]} | {f"{p}-root", f"{p}-gate", f"{p}-later"}
    started = Counter(e.task_id for e in events if isinstance(e, ev.Started))
    assert started[f"{p}-gate"] == 2
    assert all(started[q["id"]] == 1 for q in quick)  # finished work is not redone
    versions = [e.originator_version for e in events]
    assert versions == list(range(1, len(versions) + 1))


def test_resume_skips_a_tree_another_process_is_running(
    store: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, _ = store
    p = uuid.uuid4().hex[:8]
    gate_file = tmp_path / "gate-open"
    source = write_tree(
        tmp_path / "tree.json",
        [
            {"id": f"{p}-root", "name": "root"},
            child(p, "gate", method="test.gate", inputs={"path": str(gate_file)}),
        ],
    )
    first = Run(["--json", str(source)], env)
    first.wait_for(lambda line: f"started gate ({p}-gate)" in line)

    second = Run(["--resume", "--json"], env)
    code, stdout = second.finish()
    assert (code, json.loads(stdout)) == (0, [])  # the live run keeps its tree

    gate_file.touch()
    code, stdout = first.finish()
    assert code == 0
    assert json.loads(stdout)["tree_status"] == "completed"
