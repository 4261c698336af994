"""Creating a tree checks its executors: unknown ones are refused (listing the known ones),
and the `command` executor only exists when commands are allowed."""

from __future__ import annotations

from typing import Any

import pytest

from application.ledger import Ledger
from application.runner import Runner
from domain.errors import TaskNotFound, UnknownExecutor
from domain.status import TaskStatus, TreeStatus
from tests.integration.runner_support import arun, finish, run_by, task
from tests.integration.support import head, settings_like


def test_an_unknown_executor_is_refused_and_nothing_is_stored(ledger: Ledger) -> None:
    before = head(ledger)
    with pytest.raises(UnknownExecutor) as caught:
        ledger.create_tree(
            [
                task("root"),
                task("a", "root", **run_by("test.does_not_exist")),
                task("b", "root", params={"executor_id": "test.nor_this"}),
                task("c", "root", **run_by("echo")),
            ]
        )
    error = caught.value
    assert error.code == "unknown_executor"
    assert error.as_dict()["code"] == "unknown_executor"
    assert set(error.ids) == {"a", "b"}
    assert "'test.does_not_exist'" in error.message
    assert "'test.nor_this'" in error.message
    known = error.message.split("known: ", 1)[1].split(", ")
    assert {"echo", "noop", "aggregate_results", "test.value"} <= set(known)
    assert "command" not in known  # switched off, so not offered
    assert head(ledger) == before
    with pytest.raises(TaskNotFound):
        ledger.tree_id_of("root")


def test_executor_id_wins_over_schemas_method(ledger: Ledger) -> None:
    with pytest.raises(UnknownExecutor) as caught:
        ledger.create_tree(
            [task("root", params={"executor_id": "test.missing"}, schemas={"method": "echo"})]
        )
    assert caught.value.ids == ("root",)
    tree = ledger.create_tree(
        [task("root", params={"executor_id": "echo"}, schemas={"method": "test.missing"})]
    )
    assert tree.tasks["root"].schemas == {"method": "test.missing"}


def test_command_is_refused_unless_commands_are_allowed(ledger: Ledger) -> None:
    shell: dict[str, Any] = {"schemas": {"method": "command"}, "inputs": {"command": "echo hello"}}
    with pytest.raises(UnknownExecutor) as caught:
        ledger.create_tree([task("root", **shell)])
    assert caught.value.code == "unknown_executor"
    assert "switched off" in caught.value.message
    assert "FLOWLEDGER_ALLOW_COMMANDS=1" in caught.value.message

    allowing = Ledger(settings_like(ledger.settings, allow_commands=True))
    try:
        tree = allowing.create_tree([task("root", **shell)])

        async def body() -> None:
            async with Runner(allowing) as runner:
                final = await finish(runner.run(tree.id))
            root = final.tasks["root"]
            assert final.status is TreeStatus.COMPLETED
            assert root.result == {"returncode": 0, "stdout": "hello\n", "stderr": ""}

        arun(body)
    finally:
        allowing.close()


def test_a_command_task_fails_when_run_where_commands_are_off(ledger: Ledger) -> None:
    shell: dict[str, Any] = {"schemas": {"method": "command"}, "inputs": {"command": "echo hello"}}
    allowing = Ledger(settings_like(ledger.settings, allow_commands=True))
    try:
        tree = allowing.create_tree([task("root", **shell)])
    finally:
        allowing.close()

    async def body() -> None:
        async with Runner(ledger) as runner:  # this process does not allow commands
            final = await finish(runner.run(tree.id))
        root = final.tasks["root"]
        assert root.status is TaskStatus.FAILED
        assert (root.error or "").startswith("UnknownExecutor:"), root.error
        assert "switched off" in (root.error or "")

    arun(body)
