"""Audit and replay against what a generated workload did: after every save the test notes the
tree as the writer saw it, the version and the (frozen) instant; then history, the state as of
each version and of each instant, and an export read back must all agree with those notes."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from application.audit import export_lines, read_export
from application.codec import EventCodec
from application.config import Settings
from application.ledger import Ledger
from application.views import tree_json
from domain.errors import DomainError
from tests.conftest import POSTGRES_URL, postgres_schema
from tests.integration.support import task

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TASKS = [
    task("root"),
    task("a", "root", schemas={"method": "noop"}),
    task("b", "root", dependencies=["a"], schemas={"method": "noop"}),
    task("c", "root", dependencies=[{"id": "a", "required": False}]),
    task("d", "b"),
]
STEPS = st.lists(st.integers(min_value=0, max_value=1_000), min_size=4, max_size=16)


@contextmanager
def fresh_ledger(backend: str) -> Iterator[Ledger]:
    with tempfile.TemporaryDirectory() as home:
        if backend == "sqlite":
            ledger = Ledger(Settings(home=Path(home)))
            try:
                yield ledger
            finally:
                ledger.close()
            return
        assert POSTGRES_URL is not None
        for schema in postgres_schema():
            ledger = Ledger(
                Settings(home=Path(home), database_url=POSTGRES_URL, database_schema=schema)
            )
            try:
                yield ledger
            finally:
                ledger.close()


def apply(ledger: Ledger, choice: int) -> None:
    """One change the domain allows now (chosen by `choice`), through its commands, saved."""
    tree = ledger.tree_of("root")
    moves: list[tuple[str, str]] = [("start", t.id) for t in tree.ready_tasks()]
    for t in tree.tasks.values():
        if t.status.value == "in_progress":
            moves += [(step, t.id) for step in ("complete", "fail", "retry", "progress")]
        elif t.status.value == "pending":
            moves += [("update", t.id), ("cancel", t.id)]
    if not moves:
        return
    step, task_id = moves[choice % len(moves)]
    if step == "cancel":
        ledger.cancel([task_id])
        return
    current = tree.task(task_id)
    if step == "start":
        tree.start(task_id, current.attempts + 1, dict(current.inputs))
    elif step == "complete":
        tree.complete(task_id, {"done": task_id})
    elif step == "fail":
        tree.fail(task_id, f"RuntimeError: {task_id} broke")
    elif step == "retry":
        tree.fail_attempt(task_id, "OSError: flaky", 1.5)
        tree.start(task_id, current.attempts + 1, dict(current.inputs))
    elif step == "progress":
        tree.record_progress(task_id, 0.5, "halfway")
    else:
        ledger.update_task(task_id, _changes(current.priority + 1))
        return
    ledger.save_trees(tree)


def _changes(priority: int) -> Any:
    from domain.specs import parse_changes

    return parse_changes({"priority": priority})


def check_workload(backend: str, steps: list[int]) -> None:
    with fresh_ledger(backend) as ledger, freeze_time(T0) as clock:
        ledger.create_tree(TASKS)
        ledger.request_run("root")
        seen = {}  # version -> (instant, the tree's JSON as the writer saw it)
        tree = ledger.tree_of("root")
        seen[tree.version] = (T0, tree_json(tree))
        for n, choice in enumerate(steps, start=1):
            clock.move_to(T0 + timedelta(seconds=n))
            try:
                apply(ledger, choice)
            except DomainError:
                continue
            tree = ledger.tree_of("root")
            seen[tree.version] = (T0 + timedelta(seconds=n), tree_json(tree))

        event(f"saved changes: {min(len(seen) // 4 * 4, 12)}+")
        history = ledger.history("a")
        assert [e.originator_version for e in history] == list(range(1, len(history) + 1))
        assert history[-1].originator_version == max(seen)
        for version, (instant, shown) in seen.items():
            assert tree_json(ledger.state_at("d", version=version)) == shown
            assert tree_json(ledger.state_at("d", at=instant)) == shown
            halfway = instant + timedelta(milliseconds=500)  # nothing is written in between
            assert tree_json(ledger.state_at("d", at=halfway)) == shown
        codec = ledger.mapper
        assert isinstance(codec, EventCodec)
        assert read_export(list(export_lines(ledger, "c")), codec) == history


def budget(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )


@budget(25)
@given(steps=STEPS)
def test_audit_answers_what_the_workload_did_sqlite(steps: list[int]) -> None:
    check_workload("sqlite", steps)


@pytest.mark.postgres
@budget(6)
@given(steps=STEPS)
def test_audit_answers_what_the_workload_did_postgres(steps: list[int]) -> None:
    if not POSTGRES_URL:
        pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
    check_workload("postgres", steps)
