"""`flowledger tasks watch`, `tasks execute` and `tasks cancel` as real OS processes on one
store: a watcher follows, live, a tree that another process runs, and sees a cancel that a
third process writes. The processes synchronise on each other's output lines (the test
gate executor holds a task running until the test creates its file), never on sleeps."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from application.config import Settings
from application.ledger import Ledger
from tests.conftest import POSTGRES_URL, postgres_schema
from tests.e2e.test_run_processes import DEADLINE_S, FLOWLEDGER, ROOT, child, write_tree


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Settings]]:
    """The environment for the processes, and the same store's Settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env |= {
        "FLOWLEDGER_HOME": str(tmp_path / "home"),
        "FLOWLEDGER_PLUGINS": "tests.plugins.gates",
        "PYTHONPATH": str(ROOT),
    }
    settings = Settings(home=tmp_path / "home", plugins=("tests.plugins.gates",))
    if request.param == "sqlite":
        yield env, settings
        return
    if not POSTGRES_URL:
        pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
    for schema in postgres_schema():
        env |= {"FLOWLEDGER_DATABASE_URL": POSTGRES_URL, "FLOWLEDGER_DATABASE_SCHEMA": schema}
        yield (
            env,
            Settings(
                home=settings.home,
                database_url=POSTGRES_URL,
                database_schema=schema,
                plugins=settings.plugins,
            ),
        )


class Process:
    """A `flowledger ...` process whose stdout and stderr lines are read as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [FLOWLEDGER, *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out = self._follow(self.process.stdout)
        self.err = self._follow(self.process.stderr)
        self.seen: dict[str, list[str]] = {"out": [], "err": []}

    @staticmethod
    def _follow(stream: IO[str] | None) -> queue.Queue[str | None]:
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert stream is not None
            for line in stream:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        return lines

    def wait_for(self, wanted: Callable[[str], bool], *, stream: str = "err") -> str:
        """Block until a line of `stream` satisfies `wanted` (fails if it ends first)."""
        lines = self.out if stream == "out" else self.err
        while True:
            line = lines.get(timeout=DEADLINE_S)
            if line is None:
                pytest.fail(f"{self.args} ended before the awaited line; it said: {self.seen}")
            self.seen[stream].append(line)
            if wanted(line):
                return line

    def finish(self) -> tuple[int, list[str]]:
        """The exit status and every stdout line not read yet."""
        code = self.process.wait(timeout=DEADLINE_S)
        rest = []
        while (line := self.out.get(timeout=DEADLINE_S)) is not None:
            rest.append(line)
        return code, rest


def create(settings: Settings, source: Path) -> None:
    ledger = Ledger(settings)
    try:
        ledger.create_tree(json.loads(source.read_text()))
    finally:
        ledger.close()


def test_watch_follows_a_run_of_another_process_and_sees_a_cancel_from_a_third(
    store: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, _ = store
    p = uuid.uuid4().hex[:8]
    source = write_tree(
        tmp_path / "tree.json",
        [
            {"id": f"{p}-root", "name": "root"},
            child(p, "blocker", method="test.gate", inputs={"path": str(tmp_path / "never")}),
            child(p, "after", method="echo", dependencies=[f"{p}-blocker"]),
        ],
    )
    run = Process(["run", "--json", str(source)], env)
    run.wait_for(lambda line: f"started blocker ({p}-blocker)" in line)

    watch = Process(["tasks", "watch", f"{p}-after", "--json"], env)
    watch.wait_for(lambda line: line.startswith("watching tree") and "in_progress" in line)

    cancel = subprocess.run(
        [FLOWLEDGER, "tasks", "cancel", f"{p}-root", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert cancel.returncode == 0, cancel.stderr
    assert json.loads(cancel.stdout)[0]["status"] == "cancelled"

    code, lines = watch.finish()
    assert code == 1, watch.seen
    events = [json.loads(line) for line in lines]
    cancelled = {e["task_id"] for e in events if e["type"] == "task_cancelled"}
    assert {f"{p}-blocker", f"{p}-after"} <= cancelled
    assert all(e["status"] == "cancelled" for e in events if e["type"] == "task_cancelled")
    assert events[-1] == {
        "type": "final",
        "root_task_id": f"{p}-root",
        "status": "cancelled",
        "timestamp": events[-1]["timestamp"],
    }
    assert [e["type"] for e in events].count("final") == 1

    code, out = run.finish()
    assert code == 1
    assert json.loads("\n".join(out))["tree_status"] == "cancelled"


def test_watch_follows_tasks_execute_live_until_the_tree_completes(
    store: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, settings = store
    p = uuid.uuid4().hex[:8]
    first, second = tmp_path / "first-open", tmp_path / "second-open"
    source = write_tree(
        tmp_path / "tree.json",
        [
            {"id": f"{p}-root", "name": "root"},
            child(p, "first", method="test.gate", inputs={"path": str(first)}),
            child(
                p,
                "second",
                method="test.gate",
                inputs={"path": str(second)},
                dependencies=[f"{p}-first"],
            ),
        ],
    )
    create(settings, source)

    execute = Process(["tasks", "execute", f"{p}-root", "--json"], env)
    execute.wait_for(lambda line: f"started first ({p}-first)" in line)

    watch = Process(["tasks", "watch", f"{p}-root"], env)
    watch.wait_for(lambda line: line.startswith("watching tree"))

    first.touch()  # the watcher tells of it while the tree still runs (second is gated)
    watch.wait_for(lambda line: f"completed first ({p}-first)" in line, stream="out")
    watch.wait_for(lambda line: f"started second ({p}-second)" in line, stream="out")
    assert execute.process.poll() is None
    assert watch.process.poll() is None

    second.touch()
    code, lines = watch.finish()
    assert code == 0, (watch.seen, lines)
    told = "\n".join(lines)
    assert f"completed second ({p}-second)" in told
    assert f"tree {p}-root completed" in told
    assert told.index("completed second") < told.index(f"tree {p}-root completed")

    code, out = execute.finish()
    assert code == 0, execute.seen
    answer = json.loads("\n".join(out))
    assert (answer["root_task_id"], answer["status"]) == (f"{p}-root", "completed")
    assert answer["root_task"]["tree_status"] == "completed"
