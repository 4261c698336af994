"""The projector when things go wrong: an event store that lost its last commits (restored
from a backup), a stop beyond the log's end, damaged read models under a live projector,
and the live projector's lifecycle."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from application.config import Settings
from application.ledger import Ledger
from application.views import task_json
from domain.errors import InvalidSpec, TaskNotFound
from projections.live import LiveProjector
from projections.projector import Projector, ReadModelsAhead
from projections.queries import ReadModel
from projections.schema import create_read_engine, trees
from tests.integration.support import run_task, task

DEADLINE_S = 60  # a bound on waiting, never a measured duration


@pytest.fixture
def engine(ledger: Ledger) -> Iterator[sa.Engine]:
    engine = create_read_engine(ledger.settings)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("new_trees", [1, 6])  # the log ends before / beyond the old position
def test_an_event_store_restored_from_a_backup_is_noticed(
    sqlite_settings: Settings, new_trees: int
) -> None:
    """The log loses its last commits (a restore; a power loss under synchronous=NORMAL):
    the read models are ahead. New events reuse the lost positions; projecting on would
    skip them, so the projector refuses and says to rebuild, and the rebuild is right."""
    ledger = Ledger(sqlite_settings)
    engine = create_read_engine(sqlite_settings)
    try:
        ledger.create_tree([task("r"), task("k", "r", schemas={"method": "noop"})])
        backup = sqlite_settings.home / "backup.sqlite3"
        ledger.close()
        shutil.copy(sqlite_settings.sqlite_path, backup)
        ledger = Ledger(sqlite_settings)
        run_task(ledger, "k", {"lost": True}, tree=ledger.request_run("k"))
        Projector(ledger, engine).catch_up()
        ledger.close()
        shutil.copy(backup, sqlite_settings.sqlite_path)
        for suffix in ("-wal", "-shm"):
            Path(f"{sqlite_settings.sqlite_path}{suffix}").unlink(missing_ok=True)

        ledger = Ledger(sqlite_settings)
        old = Projector(ledger, engine).position()
        for n in range(new_trees):  # they take positions the read models already passed
            ledger.create_tree([task("n" if n == 0 else f"n{n}")])
        projector = Projector(ledger, engine)
        assert (projector.head() >= old) == (new_trees > 1)
        with pytest.raises(ReadModelsAhead, match="projections rebuild"):
            projector.catch_up()
        assert projector.progress().ahead
        projector.rebuild()
        model = ReadModel(engine)
        assert model.task("n")["status"] == "pending"
        tree = ledger.tree_of("k")
        assert model.task("k") == task_json(tree, tree.task("k"))  # pending again
        assert not projector.progress().ahead
    finally:
        engine.dispose()
        ledger.close()


def test_a_stop_beyond_the_log_skips_nothing(ledger: Ledger, engine: sa.Engine) -> None:
    ledger.create_tree([task("a")])
    projector = Projector(ledger, engine)
    projector.catch_up(until=projector.head() + 10)
    assert projector.position() == projector.head()
    ledger.create_tree([task("b")])
    projector.project_batch(stop=projector.head() + 10)
    assert ReadModel(engine).task("b")["name"] == "b"


def test_waiters_hear_at_once_that_the_projector_fails(ledger: Ledger, engine: sa.Engine) -> None:
    ledger.create_tree([task("a")])
    live = LiveProjector(Projector(ledger, engine), poll_interval_s=60)
    with live:
        assert live.wait_for(ledger.last_position, timeout=DEADLINE_S)
        with engine.begin() as conn:  # damage: the next batch cannot write
            trees.drop(conn)
        ledger.create_tree([task("b")])
        assert live.wait_for(ledger.last_position, timeout=DEADLINE_S) is False
        assert live.last_error is not None

        async def waiting() -> bool:
            return await live.caught_up(ledger.last_position, timeout=DEADLINE_S)

        assert asyncio.run(waiting()) is False


def test_caught_up_settles_on_the_loop_without_holding_a_thread(
    ledger: Ledger, engine: sa.Engine
) -> None:
    async def many_waiters() -> list[bool]:
        with LiveProjector(Projector(ledger, engine), poll_interval_s=60) as live:
            ledger.create_tree([task("a")])
            waiters = [live.caught_up(ledger.last_position) for _ in range(100)]
            return await asyncio.gather(*waiters)

    assert asyncio.run(many_waiters()) == [True] * 100


def test_a_live_projector_restarts_and_refuses_a_double_start(
    ledger: Ledger, engine: sa.Engine
) -> None:
    live = LiveProjector(Projector(ledger, engine), poll_interval_s=60)
    with live, pytest.raises(RuntimeError, match="already running"):
        live.start()
    assert live.wait_for(1, timeout=0) is False  # stopped: answered at once
    with live:
        ledger.create_tree([task("again")])
        assert live.wait_for(ledger.last_position, timeout=DEADLINE_S)
    assert ledger.on_stored == []


def test_running_status_takes_a_list_of_any_length(ledger: Ledger, engine: sa.Engine) -> None:
    ledger.create_tree([task("a")])
    Projector(ledger, engine).catch_up()
    model = ReadModel(engine)
    with pytest.raises(InvalidSpec) as raised:
        model.running_status("a")  # type: ignore[arg-type]
    assert [f.field for f in raised.value.fields] == ["task_ids"]
    many = [f"x{n}" for n in range(70_000)] + ["a"]
    found = model.running_status(many)
    assert len(found) == len(many)
    assert found[-1]["status"] == "pending"


def test_a_tree_whose_root_is_gone_is_not_found(ledger: Ledger, engine: sa.Engine) -> None:
    ledger.create_tree([task("r"), task("k", "r")])
    ledger.remove_task("r")
    Projector(ledger, engine).catch_up()
    with pytest.raises(TaskNotFound):
        ReadModel(engine).tree("k")
