"""Crash safety (issue 9, item 1): `flowledger serve` killed with SIGKILL at random moments
loses nothing. The bounded run of tests/soak/harness.py (the long one: `python -m
tests.soak`), on SQLite and on PostgreSQL; and the defect it found, shown deterministically."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from application.config import Settings
from application.ledger import Ledger
from interfaces.rpc.calls import Call
from interfaces.rpc.dispatch import call
from interfaces.rpc.orchestrator import Orchestrator
from tests.conftest import POSTGRES_URL
from tests.soak.harness import SoakConfig, run_soak

SEED = int(os.environ.get("FLOWLEDGER_SOAK_SEED", "20261124"))
DEADLINE_S = 60  # a bound on waiting, never a measured duration


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_servers_killed_at_random_lose_nothing(backend: str, tmp_path: Path) -> None:
    if backend == "postgres" and not POSTGRES_URL:
        pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
    config = SoakConfig(
        seed=SEED,
        kills=10,
        trees=8,
        tasks_per_tree=75,
        postgres_url=POSTGRES_URL if backend == "postgres" else None,
        max_kill_delay_s=1.0,
        deadline_s=DEADLINE_S,
    )
    report = run_soak(config, tmp_path)
    print(report.summary())  # the numbers, shown with -s or on failure

    assert report.problems == [], report.summary()
    assert report.kills == config.kills
    assert report.trees == report.accepted == config.trees
    assert report.tasks == config.trees * config.tasks_per_tree
    assert report.lost_events == 0
    assert report.probes > 0
    assert report.stranded == 0, report.summary()


class ProcessDied(BaseException):
    """Stands for the SIGKILL: the store call it interrupts never commits."""


def test_a_tree_accepted_by_execute_is_resumed_after_a_crash(store_settings: Settings) -> None:
    """tasks.execute on new tasks stores the tree, starts the run in the background and
    answers `success` at once; the run's first step stores RunRequested a moment later, on
    the Runner's store thread (behind the steps of every other running tree). If the
    process dies in between, the accepted tree is in the store without RunRequested, and
    `resume` (which only takes trees asked to run) never runs it: it stays pending.

    Here the first step's commit is held back (as a busy store thread does) and then
    dropped (as a SIGKILL does); then a new server starts on the same store."""
    tasks: list[dict[str, Any]] = [
        {"id": "acc-root", "name": "root"},
        {"id": "acc-a", "name": "a", "parent_id": "acc-root", "params": {"executor_id": "noop"}},
    ]

    async def accept_then_die() -> dict[str, Any]:
        async with Orchestrator(store_settings) as first:
            ledger = first.ledger
            commit, gate = ledger.store_step, threading.Event()

            def store_step(*args: Any) -> None:
                if not gate.wait(DEADLINE_S):  # the commit is slow...
                    raise AssertionError("the gate never opened")
                raise ProcessDied  # ...and the process dies before it happens

            ledger.store_step = store_step  # type: ignore[method-assign]
            try:
                answer: dict[str, Any] = await call(Call(first), "tasks.execute", {"tasks": tasks})
            finally:
                gate.set()
            ledger.store_step = commit  # type: ignore[method-assign]
            return answer

    async def restart() -> tuple[bool, bool]:
        async with Orchestrator(store_settings) as second:  # resumes unfinished trees
            tree_id = await second.io(second.ledger.tree_id_of, "acc-root")
            assert second.runner is not None
            job = second.runner.jobs.get(tree_id)
            if job is not None:
                await asyncio.wait_for(job, DEADLINE_S)
            tree = await second.io(second.ledger.tree_of, "acc-root")
            return job is not None, tree.is_terminal

    answer = asyncio.run(accept_then_die())
    assert answer["success"] is True
    assert answer["message"] == "Task execution started"
    check = Ledger(store_settings)
    try:  # what the store holds after the "crash"
        stored = check.tree_of("acc-root")
        assert stored.tasks["acc-a"].status.value == "pending"
    finally:
        check.close()
    resumed, ended = asyncio.run(restart())
    after_crash = {"run_requested": stored.state.run_requested, "resumed": resumed, "ended": ended}
    assert after_crash == {"run_requested": True, "resumed": True, "ended": True}
