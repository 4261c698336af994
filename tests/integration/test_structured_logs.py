"""Log lines written while a task runs carry its tree and task ids (structured logs)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from application.executors import executor
from application.ledger import Ledger
from application.runner import Runner
from interfaces.cli.logs import JsonLines

chatty = logging.getLogger("tests.chatty")


@executor("test.chatty", description="Writes one log line and returns.")
async def chatty_executor(inputs: dict[str, Any]) -> dict[str, Any]:
    chatty.warning("working on %s", inputs["what"])
    return {}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonLines())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Any:
    handler = Lines()
    chatty.addHandler(handler)
    try:
        yield handler.lines
    finally:
        chatty.removeHandler(handler)


def test_a_running_task_logs_with_its_tree_and_task_ids(
    ledger: Ledger, lines: list[dict[str, Any]]
) -> None:
    tree = ledger.create_tree(
        [
            {"id": "logs-root", "name": "root"},
            {
                "id": "logs-a",
                "name": "a",
                "parent_id": "logs-root",
                "params": {"executor_id": "test.chatty"},
                "inputs": {"what": "a"},
            },
            {
                "id": "logs-b",
                "name": "b",
                "parent_id": "logs-root",
                "params": {"executor_id": "test.chatty"},
                "inputs": {"what": "b"},
            },
        ]
    )

    async def run() -> None:
        async with Runner(ledger) as runner:
            await runner.run(tree.id)

    asyncio.run(run())
    by_task = {line["task_id"]: line for line in lines}
    assert set(by_task) == {"logs-a", "logs-b"}
    for task_id, line in by_task.items():
        assert line["tree_id"] == str(tree.id)
        assert line["message"] == f"working on {task_id.removeprefix('logs-')}"
        assert line["level"] == "warning"
        assert line["logger"] == "tests.chatty"


def test_a_line_outside_any_run_has_no_ids(lines: list[dict[str, Any]]) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        chatty.exception("outside")
    [line] = lines
    assert "tree_id" not in line
    assert "task_id" not in line
    assert "ValueError: boom" in line["error"]
