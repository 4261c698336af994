"""Queries and commands take any value a client may send and answer with a domain error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from application.ledger import Ledger
from domain.errors import InvalidSpec, TaskNotFound
from tests.integration.support import task


@pytest.mark.parametrize("task_id", [5, None, ["a"], "\ud800", "", "no-such-task"])
def test_unknown_or_malformed_ids_are_not_found(ledger: Ledger, task_id: Any) -> None:
    with pytest.raises(TaskNotFound):
        ledger.tree_of(task_id)
    with pytest.raises(TaskNotFound):
        ledger.history(task_id)
    with pytest.raises(TaskNotFound):
        ledger.remove_task(task_id)
    (outcome,) = ledger.cancel([task_id])
    assert outcome["status"] == "not_found"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"after_version": -1}, "after_version"),
        ({"after_version": 10**30}, "after_version"),
        ({"after_version": "1"}, "after_version"),
        ({"after_version": True}, "after_version"),
        ({"limit": 0}, "limit"),
        ({"limit": 10**30}, "limit"),
        ({"limit": 2.0}, "limit"),
    ],
)
def test_history_arguments_are_checked(ledger: Ledger, kwargs: dict[str, Any], field: str) -> None:
    ledger.create_tree([task("r")])
    with pytest.raises(InvalidSpec) as raised:
        ledger.history("r", **kwargs)
    assert raised.value.fields[0].field == field


@pytest.mark.parametrize("version", [0, -1, 10**30, "2", 1.0])
def test_state_at_version_arguments_are_checked(ledger: Ledger, version: Any) -> None:
    ledger.create_tree([task("r")])
    with pytest.raises(InvalidSpec) as raised:
        ledger.state_at("r", version=version)
    assert raised.value.fields[0].field == "version"


def test_a_naive_instant_is_read_as_utc(ledger: Ledger) -> None:
    ledger.create_tree([task("r")])
    later = datetime.now(UTC).replace(tzinfo=None, year=datetime.now(UTC).year + 1)
    assert ledger.state_at("r", at=later).version == 1
