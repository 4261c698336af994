"""The projector on real stores: exactly-once batches, crashes inside a batch (a failed write
and a SIGKILLed process), several projectors on one store, the live projector and
read-your-writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from application.config import Settings
from application.ledger import Ledger
from application.views import task_json
from projections.live import LiveProjector
from projections.projector import Projector
from projections.queries import ReadModel
from projections.rows import COPY_MIN_ROWS
from projections.schema import create_read_engine, positions, task_counts, tasks, trees
from tests.integration.support import run_task, task

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60  # a bound on waiting, never a measured duration


@pytest.fixture
def engine(ledger: Ledger) -> Iterator[sa.Engine]:
    engine = create_read_engine(ledger.settings)
    yield engine
    engine.dispose()


def all_rows(engine: sa.Engine) -> dict[str, list[Any]]:
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))
            ]
            for table in (tasks, trees, task_counts)
        }


def workload(ledger: Ledger, trees_wanted: int = 3) -> list[str]:
    """A few trees: runs, a failure with its skip cascade, a retry, a copy, a removal."""
    roots = []
    for n in range(trees_wanted):
        r = f"r{n}"
        ledger.create_tree(
            [
                task(r, user_id=f"u{n % 2}"),
                task(f"a{n}", r, schemas={"method": "noop"}),
                task(f"b{n}", r, dependencies=[f"a{n}"], schemas={"method": "noop"}),
                task(f"c{n}", r, dependencies=[f"b{n}"]),
                task(f"d{n}", r),
            ]
        )
        roots.append(r)
        tree = ledger.request_run(r)
        run_task(ledger, f"a{n}", {"n": n}, tree=tree)
        if n % 3 == 1:
            run_task(ledger, f"b{n}", error="ValueError: boom")  # c is skipped
        else:
            tree = ledger.tree_of(f"b{n}")
            tree.start(f"b{n}", 1, {})
            tree.fail_attempt(f"b{n}", "OSError: flaky", 0.5)
            tree.start(f"b{n}", 2, {})
            tree.complete(f"b{n}", [1, 2])
            ledger.save_trees(tree)
        ledger.remove_task(f"d{n}")
    ledger.copy_tree("b0")
    ledger.cancel(["r2"])
    return roots


def assert_matches_aggregates(
    ledger: Ledger, engine: sa.Engine, *, nul_shown: bool = False
) -> None:
    """Every task row reads back as its aggregate shows it (on PostgreSQL, with a NUL in
    free text shown as U+FFFD when `nul_shown`: text columns cannot hold it)."""
    model = ReadModel(engine)
    with engine.connect() as conn:
        ids = [r.id for r in conn.execute(sa.select(tasks.c.id))]
    assert ids
    for task_id in ids:
        tree = ledger.tree_of(task_id)
        expected = task_json(tree, tree.task(task_id))
        if nul_shown and engine.dialect.name == "postgresql" and expected["error"]:
            expected["error"] = expected["error"].replace("\x00", "\ufffd")
        assert model.task(task_id) == expected


def test_batches_of_any_size_give_the_same_rows(ledger: Ledger, engine: sa.Engine) -> None:
    workload(ledger)
    projector = Projector(ledger, engine)
    while projector.project_batch(limit=3)[0]:
        pass
    assert projector.progress().lag == 0
    assert_matches_aggregates(ledger, engine)
    small = all_rows(engine)
    projector.rebuild()
    assert all_rows(engine) == small


def test_wide_trees_with_awkward_values_read_back_exactly(
    ledger: Ledger, engine: sa.Engine
) -> None:
    """Enough rows per write for PostgreSQL's COPY (projections.rows.COPY_MIN_ROWS), with
    values that text formats trip on: quotes, backslashes, tabs, newlines, a NUL in an
    error, non-ASCII, nested JSON, nulls. Live batches, a rebuild and a rebuild that writes
    a few rows at a time all read back as the aggregates say."""
    awkward = 'tab\there, "quoted", back\\slash\nnew line, ünïcödé ✓ \\N'
    items = [task("wide", name=awkward, user_id="ü")]
    for i in range(COPY_MIN_ROWS * 2):
        items.append(
            task(
                f"w{i:03d}",
                "wide",
                name=f"{awkward} {i}",
                inputs={"text": awkward, "nested": {"list": [1, None, 2.5, {"k": awkward}]}},
                params={"executor_id": "noop"},
            )
        )
    ledger.create_tree(items)
    tree = ledger.request_run("wide")
    for i in range(0, COPY_MIN_ROWS * 2, 3):
        run_task(ledger, f"w{i:03d}", {"echo": awkward, "none": None}, tree=tree)
        tree = ledger.tree_of("wide")
    run_task(ledger, "w001", error=f"ValueError: {awkward}\x00 after a NUL", tree=tree)
    projector = Projector(ledger, engine)
    projector.catch_up()
    assert_matches_aggregates(ledger, engine, nul_shown=True)
    live = all_rows(engine)
    projector.rebuild()
    assert all_rows(engine) == live
    projector.rebuild(batch=2, hold_tasks=0)
    assert all_rows(engine) == live


def test_a_failed_insert_is_a_sqlalchemy_error_however_many_rows(
    ledger: Ledger, engine: sa.Engine
) -> None:
    """A read-model row in the way of a new task's (here planted by hand): the batch fails
    with SQLAlchemy's IntegrityError whether its rows went by executemany or (PostgreSQL,
    COPY_MIN_ROWS or more) by COPY, so callers that handle SQLAlchemyError (the CLI's
    "rebuild" hint, run's fallback to the log) see one kind of error."""
    ledger.create_tree([task("stray")])
    projector = Projector(ledger, engine)
    projector.catch_up()
    for count, name in ((3, "few"), (COPY_MIN_ROWS + 5, "many")):
        with engine.begin() as conn:
            conn.execute(tasks.update().where(tasks.c.id == "stray").values(id=f"{name}-1"))
        ledger.create_tree(
            [task(f"{name}-0")] + [task(f"{name}-{i}", f"{name}-0") for i in range(1, count)]
        )
        with pytest.raises(sa.exc.IntegrityError):
            projector.catch_up()
        with engine.begin() as conn:  # out of the way again: the batch then applies
            conn.execute(tasks.update().where(tasks.c.id == f"{name}-1").values(id="stray"))
        projector.catch_up()
        assert ReadModel(engine).task(f"{name}-1")["status"] == "pending"


def test_a_failed_batch_leaves_nothing_behind(
    ledger: Ledger, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload(ledger)
    projector = Projector(ledger, engine)
    projector.project_batch(limit=10)
    before, position = all_rows(engine), projector.position()
    original = Projector._write

    def write_then_fail(self: Projector, *args: Any) -> None:
        original(self, *args)  # rows written inside the transaction...
        raise OSError("disk gone")  # ...and the commit never happens

    monkeypatch.setattr(Projector, "_write", write_then_fail)
    with pytest.raises(OSError, match="disk gone"):
        projector.project_batch(limit=10)
    assert projector.position() == position
    assert all_rows(engine) == before
    monkeypatch.undo()
    projector.catch_up()
    assert_matches_aggregates(ledger, engine)


CHILD = """
import sys
from pathlib import Path
from application.config import Settings
from application.ledger import Ledger
from projections.projector import Projector
from projections.schema import create_read_engine

settings = Settings(home=Path(sys.argv[1]), database_url=sys.argv[2] or None,
                    database_schema=sys.argv[3] or None)
ledger = Ledger(settings)
write = Projector._write
batches = 0

def write_and_wait(self, *args):
    global batches
    write(self, *args)
    batches += 1
    if batches == int(sys.argv[4]):
        print("inside batch", flush=True)
        sys.stdin.readline()  # killed here, before the commit

Projector._write = write_and_wait
Projector(ledger, create_read_engine(settings)).catch_up(batch=7)
"""


def test_a_projector_killed_inside_a_batch_loses_and_repeats_nothing(
    ledger: Ledger, engine: sa.Engine
) -> None:
    workload(ledger, trees_wanted=4)
    settings = ledger.settings
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(settings.home),
            settings.database_url or "",
            settings.database_schema or "",
            "3",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "inside batch\n"  # two batches committed, a third open
    child.send_signal(signal.SIGKILL)
    child.wait(DEADLINE_S)
    projector = Projector(ledger, engine)
    tree_events = [
        n.id
        for n in ledger.recorder.select_notifications(start=1, limit=10_000)
        if n.topic.startswith("tree.")
    ]
    assert projector.position() == tree_events[13]  # two batches of 7; the third never committed
    projector.catch_up()
    assert_matches_aggregates(ledger, engine)
    live = all_rows(engine)
    projector.rebuild()
    assert all_rows(engine) == live


def test_projectors_racing_on_one_store_apply_each_event_once(
    ledger: Ledger, engine: sa.Engine, store_settings: Settings
) -> None:
    workload(ledger, trees_wanted=6)
    others = [create_read_engine(store_settings) for _ in range(2)]
    projectors = [Projector(ledger, e) for e in (engine, *others)]
    errors: list[BaseException] = []

    def drain(projector: Projector) -> None:
        try:
            while projector.project_batch(limit=4)[0]:
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(p,)) for p in projectors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    for other in others:
        other.dispose()
    assert errors == []
    assert_matches_aggregates(ledger, engine)
    raced = all_rows(engine)
    Projector(ledger, engine).rebuild()
    assert all_rows(engine) == raced


def test_live_projector_gives_read_your_writes(ledger: Ledger, engine: sa.Engine) -> None:
    model = ReadModel(engine)
    settings = ledger.settings
    with LiveProjector(
        Projector(ledger, engine), poll_interval_s=60, listen_url=settings.database_url
    ) as live:
        ledger.create_tree([task("root"), task("kid", "root", schemas={"method": "noop"})])
        assert live.wait_for(ledger.last_position, timeout=DEADLINE_S)
        assert model.task("kid")["status"] == "pending"
        tree = ledger.request_run("root")
        run_task(ledger, "kid", {"ok": True}, tree=tree)
        assert live.wait_for(ledger.last_position, timeout=DEADLINE_S)
        assert model.task("kid")["result"] == {"ok": True}
        assert model.tree("root")["tree_status"] == "in_progress"
        run_task(ledger, "root")
        assert live.wait_for(ledger.last_position, timeout=DEADLINE_S)
        assert model.tree("root")["tree_status"] == "completed"
    assert live.last_error is None


def test_live_projector_sees_writes_of_another_process(ledger: Ledger, engine: sa.Engine) -> None:
    """Another Ledger (as another process would) writes; on PostgreSQL the NOTIFY wakes the
    projector, on SQLite its poll does."""
    settings = ledger.settings
    other = Ledger(settings)
    try:
        poll = 60.0 if settings.database_url else 0.05
        with LiveProjector(
            Projector(ledger, engine), poll_interval_s=poll, listen_url=settings.database_url
        ) as live:
            other.create_tree([task("far")])
            assert live.wait_for(other.last_position, timeout=DEADLINE_S)
            assert ReadModel(engine).task("far")["tree_status"] == "pending"
    finally:
        other.close()


def test_rebuild_resets_the_tracking_row(ledger: Ledger, engine: sa.Engine) -> None:
    workload(ledger, trees_wanted=1)
    projector = Projector(ledger, engine)
    logged = ledger.recorder.select_notifications(start=1, limit=10_000)
    assert projector.rebuild() == sum(n.topic.startswith("tree.") for n in logged)
    assert projector.position() == projector.head()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(positions)).scalar() == 1
    assert projector.progress().lag == 0


def test_resume_candidates_come_from_the_read_models(ledger: Ledger, engine: sa.Engine) -> None:
    """Trees asked to run and not finished: what `flowledger run --resume` resumes, found
    without scanning the log; the Runner still checks each against its events."""
    from application.runner import Runner
    from tests.integration.runner_support import arun

    ledger.create_tree([task("running"), task("step", "running", schemas={"method": "noop"})])
    tree = ledger.request_run("running")
    tree.start("step", 1, {})
    ledger.save_trees(tree)
    ledger.create_tree([task("done")])
    run_task(ledger, "done", tree=ledger.request_run("done"))
    ledger.create_tree([task("idle")])
    Projector(ledger, engine).catch_up()
    assert ReadModel(engine).resumable() == [ledger.tree_id_of("running")]

    async def resume() -> list[Any]:
        async with Runner(ledger) as runner:
            everything = [ledger.tree_id_of(t) for t in ("running", "done", "idle")]
            started = await runner.resume(everything)
            return [(tree_id, (await job).status.value) for tree_id, job in started.items()]

    assert arun(resume) == [(ledger.tree_id_of("running"), "completed")]
