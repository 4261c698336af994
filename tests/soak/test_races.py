"""Races (issue 9, item 2): two `flowledger serve` processes on one store, while each runs
trees, take cancels, updates, copies and deletes of those trees' tasks from several clients
at once, sent to either server. Every command either applies or is refused as a conflict
(-32011), or as not found (-32001) when the task was deleted; never -32603, an HTTP error or
a dropped connection. At the end every tree that was run has ended, each tree's history is a
valid sequence whose replay is exactly the tree both servers show, and the read models equal
the events and an offline rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from application.config import Settings
from application.ledger import Ledger
from application.runner import Runner
from application.views import tree_json
from domain import events as ev
from domain.specs import parse_changes
from projections.projector import Projector
from projections.schema import create_read_engine
from tests.conftest import POSTGRES_URL
from tests.soak.harness import (
    POLL_S,
    TERMINAL_TREE,
    Report,
    Rpc,
    Server,
    SoakConfig,
    SoakError,
    Unanswered,
    check_history,
    check_read_models,
    fresh_store,
    normal,
)

SEED = 20261124
TREES = 6
TASKS = 24  # per tree
WORKERS = 4  # clients sending commands at once
DEADLINE_S = 60  # a bound on waiting, never a measured duration
ANSWER_S = 10  # a bound on one answer: a server that takes longer has stopped answering
ALLOWED = {-32011, -32001}  # conflict; not found (a deleted task)
DELETED = "deleted"  # a root's status once a client deleted its (all pending) tree
ENDED = {*TERMINAL_TREE, DELETED}
OPS = ("cancel", "update", "update", "copy", "delete", "delete")


def plan(rng: random.Random, index: int) -> list[dict[str, Any]]:
    """A tree of `sleep` tasks (so it is still running while the commands come) with some
    `noop`s and dependencies."""
    prefix = f"race{index}"
    items: list[dict[str, Any]] = [{"id": f"{prefix}-root", "name": "root"}]
    for j in range(1, TASKS):
        item: dict[str, Any] = {
            "id": f"{prefix}-{j:02d}",
            "name": f"t{j}",
            "parent_id": f"{prefix}-root" if j < 4 or rng.random() < 0.7 else items[-1]["id"],
            "priority": rng.randint(0, 3),
        }
        if rng.random() < 0.8:
            item["params"] = {"executor_id": "sleep"}
            item["inputs"] = {"seconds": rng.choice((0.2, 0.4, 0.6, 0.8))}
        else:
            item["params"] = {"executor_id": "noop"}
        if j > 3 and rng.random() < 0.3:
            dep = items[rng.randint(1, j - 1)]["id"]
            item["dependencies"] = [{"id": dep, "required": rng.random() < 0.7}]
        items.append(item)
    return items


class Clients:
    """The command senders and what they saw."""

    def __init__(self, urls: list[str], trees: list[list[dict[str, Any]]]) -> None:
        self.urls = urls
        self.task_ids = [item["id"] for items in trees for item in items]
        self.roots = [items[0]["id"] for items in trees]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counter: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.problems: list[str] = []
        self.deleted: set[str] = set()
        self.not_found: set[str] = set()
        self.copies: list[str] = []  # root ids of the copies made

    def note(self, outcome: str, problem: str | None = None) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if problem is not None:
                self.problems.append(problem)

    def work(self, worker: int) -> None:
        rng = random.Random(f"race-worker:{SEED}:{worker}")
        rpc = Rpc(self.counter, ANSWER_S)
        try:
            while not self.stop.is_set():
                self.command(rpc, rng)
        except Exception as exc:  # a harness failure: reported, not swallowed
            self.note("crashed", f"worker {worker} crashed: {exc!r}")
        finally:
            rpc.close()

    def command(self, rpc: Rpc, rng: random.Random) -> None:
        op = rng.choice(OPS)
        server = rng.randrange(len(self.urls))
        task_id = rng.choice(self.roots) if rng.random() < 0.03 else rng.choice(self.task_ids)
        params: dict[str, Any] = {"task_id": task_id}
        if op == "cancel":
            params = {"task_ids": [task_id], "reason": "raced"}
        elif op == "update":
            params["priority"] = rng.randint(0, 3)
            if rng.random() < 0.5:
                params["inputs"] = {"seconds": rng.choice((0.05, 0.1)), "updated": True}
        elif op == "copy":
            params["copy_mode"] = rng.choice(("minimal", "full"))
            params["children"] = rng.random() < 0.5
        method = f"tasks.{op}"
        try:
            reply = rpc.call(self.urls[server], method, params)
        except Unanswered as exc:
            self.note(f"{op}: no answer", f"{method} {params}: no answer: {exc}")
            return
        except SoakError as exc:  # an HTTP status other than 200
            self.note(f"{op}: HTTP error", f"{method} {params}: {exc}")
            return
        error = reply.get("error")
        if error is not None:
            code = error["code"]
            self.note(f"{op}: {code} {(error.get('data') or {}).get('code')}")
            if code not in ALLOWED:
                self.note("refused wrongly", f"{method} {params} on server {server}: {error}")
            if code == -32001:
                with self.lock:
                    self.not_found.add(task_id)
            return
        result = reply["result"]
        if op == "cancel":
            [report] = result
            self.note(f"cancel: {report['status']}")
            if report["status"] not in ("cancelled", "not_cancelable", "not_found"):
                self.note("odd cancel", f"{method} {params}: {result}")
            if report["status"] == "not_found":
                with self.lock:
                    self.not_found.add(task_id)
            return
        self.note(f"{op}: applied")
        with self.lock:
            if op == "delete":
                self.deleted.update(result["deleted_ids"])
            elif op == "copy":
                self.copies.append(result["id"])


def wait_all_ended(
    rpc: Rpc, urls: list[str], roots: list[str], deleted: set[str]
) -> dict[str, Any]:
    """Poll (bounded) until every root's tree has ended or been deleted (a tree whose run
    had not started yet is all pending, so a client may delete it), asking each server in
    turn (so one that stops answering is noticed: Unanswered); the last statuses seen."""
    end = time.monotonic() + DEADLINE_S
    statuses: dict[str, Any] = {}
    turn = 0
    while time.monotonic() < end:
        replies = rpc.batch(urls[turn % len(urls)], [("tasks.get", {"task_id": r}) for r in roots])
        turn += 1
        statuses = {
            r: reply.get("result", {}).get("tree_status")
            or (DELETED if r in deleted else json.dumps(reply.get("error")))
            for r, reply in zip(roots, replies, strict=True)
        }
        if all(s in ENDED for s in statuses.values()):
            break
        time.sleep(POLL_S)  # polling observable state, within the deadline
    return statuses


def answers(url: str) -> bool:
    try:
        with httpx.Client(timeout=ANSWER_S) as client:
            return client.get(f"{url}/system/health").status_code == 200
    except httpx.TransportError:
        return False


def cpu_share(pid: int) -> float:
    """The share of one CPU the process used over a one-second window."""

    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    before = ticks()
    time.sleep(1.0)  # the measurement window
    return (ticks() - before) / os.sysconf("SC_CLK_TCK")


def wait_settled(url: str) -> dict[str, Any]:
    """Poll (bounded) until the server runs nothing and its read models are caught up."""
    end = time.monotonic() + DEADLINE_S
    health: dict[str, Any] = {}
    with httpx.Client(timeout=DEADLINE_S) as client:
        while time.monotonic() < end:
            health = client.get(f"{url}/system/health").json()
            if health["projector_lag"] == 0 and health["running"]["trees"] == 0:
                break
            time.sleep(POLL_S)  # polling observable state, within the deadline
    return health


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_servers_racing_commands_on_running_trees(backend: str, tmp_path: Path) -> None:
    if backend == "postgres" and not POSTGRES_URL:
        pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
    config = SoakConfig(seed=SEED, postgres_url=POSTGRES_URL if backend == "postgres" else None)
    rng = random.Random(f"race-trees:{SEED}")
    trees = [plan(rng, i) for i in range(TREES)]
    report = Report(seed=SEED, store=config.store_kind)
    with fresh_store(config, tmp_path) as store:
        log = tmp_path / "servers.log"
        servers = [Server(store, log, 0)]
        try:
            # One after the other: two processes opening a fresh SQLite store at once is
            # the defect test_two_processes_open_a_fresh_sqlite_store_at_once shows.
            urls = [servers[0].wait_ready(DEADLINE_S)]
            servers.append(Server(store, log, 1))
            urls.append(servers[1].wait_ready(DEADLINE_S))
            clients = Clients(urls, trees)
            rpc = Rpc(clients.counter, ANSWER_S)
            for i, items in enumerate(trees):  # each server runs half of the trees
                answer = rpc.call(urls[i % 2], "tasks.execute", {"tasks": items})
                assert answer.get("result", {}).get("success") is True, answer
            workers = [
                threading.Thread(target=clients.work, args=(w,), daemon=True)
                for w in range(WORKERS)
            ]
            for worker in workers:
                worker.start()
            statuses: dict[str, Any] = {}
            with contextlib.suppress(Unanswered):
                statuses = wait_all_ended(rpc, urls, clients.roots, clients.deleted)
            clients.stop.set()
            for worker in workers:
                worker.join(DEADLINE_S)
            stuck = {s.incarnation: s.process.pid for s in servers if not answers(str(s.url))}
            if stuck:  # e.g. the spin test_a_foreign_change_noticed_during_a_save... covers
                busy = {n: round(cpu_share(pid), 2) for n, pid in stuck.items()}
                pytest.fail(f"server(s) stopped answering, using this much CPU: {busy}")
            healths = [wait_settled(url) for url in urls]
            kept = [r for r in clients.roots if r not in clients.deleted] + clients.copies
            shown = [
                {r: reply.get("result") for r, reply in zip(kept, answers, strict=True)}
                for answers in (
                    rpc.batch(url, [("tasks.tree", {"task_id": r}) for r in kept]) for url in urls
                )
            ]
            rpc.close()
            codes = [s.stop() for s in servers]
        finally:
            for server in servers:
                if server.alive():
                    server.kill()
        print(dict(sorted(clients.outcomes.items())), clients.counter)  # shown with -s

        assert clients.problems == []
        errors = [e for s in servers for e in s.errors]
        spurious = [e for e in errors if "ReadModelsAhead" in e and "the log ends at" in e]
        assert [e for e in errors if e not in spurious] == [], "\n".join(errors)
        assert set(codes) <= {0, -signal.SIGTERM}, codes
        assert all(s in ENDED for s in statuses.values()), statuses
        for health in healths:
            assert (health["projector_lag"], health["running"]["trees"]) == (0, 0), health
        assert clients.not_found <= clients.deleted  # -32001 only for a task that was deleted
        for wanted in ("update: applied", "delete: applied", "copy: applied", "cancel: cancelled"):
            assert clients.outcomes[wanted], (wanted, clients.outcomes)  # every kind applied

        ledger = Ledger(store.settings)
        try:
            recorder: Any = ledger.recorder
            topic = ledger.mapper.topic_of(ev.Created)  # type: ignore[attr-defined]
            stored = {
                UUID(str(n.originator_id))
                for n in recorder.select_notifications(start=1, limit=10**9, topics=[topic])
            }
            roots = clients.roots + clients.copies
            tree_ids = {root: ledger.tree_id_of(root, removed_too=True) for root in roots}
            assert stored == set(tree_ids.values())
            tally: Counter[str] = Counter()
            for root, tree_id in tree_ids.items():
                events = ledger.history(root)
                problems = check_history(events, tally, ended=root in clients.roots, foreign=True)
                assert problems == [], (root, problems)
                replayed = ledger.replay(tree_id)
                if root in clients.deleted:  # the whole tree, while it was all pending
                    assert replayed.tasks == ledger.load(tree_id).tasks == {}, root
                    continue
                assert normal(tree_json(ledger.load(tree_id))) == normal(tree_json(replayed))
                for seen in shown:  # both servers show exactly the replay of the log
                    assert seen[root] == normal(tree_json(replayed)), root
            for gone in clients.deleted:
                assert all(gone not in ledger.replay(t).tasks for t in tree_ids.values())
            check_read_models(store, ledger, list(tree_ids.values()), report)
        finally:
            ledger.close()
        assert report.problems == []
        assert spurious == [], spurious


def test_another_projector_moving_on_is_not_a_lost_log(ledger: Ledger, tmp_path: Path) -> None:
    """Two processes project into the same read models (two servers; a server and a CLI
    command catching up). `catch_up` takes the head first, then the tracking row: if the
    other projector commits a batch in between, the position is past that (old) head and
    `_check_anchor` raises ReadModelsAhead. The live projector then logs an error telling
    the operator to rebuild, reports "degraded" and stops answering read-your-writes
    waits for a backoff of 1 s (doubling while it repeats)."""
    engine = create_read_engine(ledger.settings)
    try:
        ledger.create_tree([{"id": "p-a", "name": "a"}])
        first, other = Projector(ledger, engine), Projector(ledger, engine)
        first.catch_up()
        head = first.head
        moved: list[int] = []

        def head_then_the_other_projects() -> int:
            found = head()
            if not moved:  # once: between this read and the tracking row's
                ledger.create_tree([{"id": "p-b", "name": "b"}])
                other.catch_up()
                moved.append(other.position())
            return found

        first.head = head_then_the_other_projects  # type: ignore[method-assign]
        first.catch_up()  # was: ReadModelsAhead
        assert first.position() == moved[0] == head()
        assert not first.progress().ahead
    finally:
        engine.dispose()


@dataclass
class HeldRun:
    """A Runner on its own event loop thread (as a server's), its ledger's step saves held
    at a gate, and a second Ledger on the same store (another process)."""

    ledger: Ledger
    other: Ledger
    runner: Runner
    loop: asyncio.AbstractEventLoop
    entered: threading.Event  # a step save has begun
    gate: threading.Event  # set: the held saves go on

    def on_loop(self, coroutine: Any) -> Any:
        """Run `coroutine` on the runner's loop and return its result (bounded)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(DEADLINE_S)


@contextlib.contextmanager
def held_run(settings: Settings, concurrency: int) -> Iterator[HeldRun]:
    ledger, other = Ledger(settings), Ledger(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="runner-loop", daemon=True)
    thread.start()
    entered, gate = threading.Event(), threading.Event()
    commit = ledger.store_step

    def slow_store_step(*args: Any) -> None:  # a save that takes a moment
        entered.set()
        gate.wait(DEADLINE_S)
        commit(*args)

    ledger.store_step = slow_store_step  # type: ignore[method-assign]
    held = HeldRun(ledger, other, Runner(ledger, concurrency=concurrency), loop, entered, gate)
    try:
        held.on_loop(held.runner.__aenter__())
        yield held
    finally:
        gate.set()
        with contextlib.suppress(Exception):
            held.on_loop(held.runner.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(DEADLINE_S)
        loop.close()
        ledger.close()
        other.close()


def test_a_foreign_change_noticed_during_a_save_does_not_hang_the_loop(
    store_settings: Settings,
) -> None:
    """Found by the two-server race on PostgreSQL: a server stopped answering (every request
    timed out); py-spy showed its event loop busy in TreeRun.run (tree_run.py:119, the
    `is_terminal` test) and never idle.

    The loop: while a step is in flight (`inflight` set, its save not done),
    `foreign_change(v)` with v newer than the tree in memory (the watcher saw another
    process's events: here real ones, five updates written by a second Ledger) sets
    `reload_requested`. The loop does not reload while a step is in flight, decides an
    empty step, appends it to the inflight steps, and, since `_quiet()` is False, skips
    `await self._wake.wait()` and goes round again: no await at all, so the executor
    future of the save can never complete on the loop. It spins for ever."""
    tasks = [{"id": "spin-root", "name": "root"}] + [
        {"id": f"spin-{i}", "name": f"t{i}", "parent_id": "spin-root"}
        | {"params": {"executor_id": "noop"}}
        for i in range(6)
    ]
    with held_run(store_settings, concurrency=1) as h:
        tree_id = h.ledger.create_tree(tasks).id
        job = h.on_loop(h.runner.start(tree_id))
        assert h.entered.wait(DEADLINE_S)  # the first step is being stored
        run = h.runner.runs[tree_id]
        for i in range(1, 6):  # another process changes the tree meanwhile
            h.other.update_task(f"spin-{i}", parse_changes({"priority": 3}))
        stored_version = h.other.load(tree_id).version
        assert stored_version > run.tree.version  # newer than the tree in memory
        h.loop.call_soon_threadsafe(run.foreign_change, stored_version)  # what _watch does
        try:
            on_loop_alive = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), h.loop)
            on_loop_alive.result(5)  # a bound on a loop that should answer at once
            answered = True
        except TimeoutError:
            answered = False
        finally:
            run.reload_requested = False  # frees a spinning loop (it reads this each turn)
            h.gate.set()
        h.on_loop(asyncio.wait_for(asyncio.shield(job), DEADLINE_S))
        assert answered, "the event loop never came back from TreeRun.run"
        assert h.other.load(tree_id).is_terminal


def test_a_tree_removed_by_another_process_before_its_first_step_ends_its_run(
    store_settings: Settings,
) -> None:
    """Found by the two-server race: a client deleted the root of a tree asked to run whose
    first step was not stored yet (so all its tasks were pending, and removing it is
    allowed). The run's save then conflicts, the run reloads the tree, and loading an
    empty tree raised TaskNotFound: the run's task died with "exception never retrieved".
    Now the run reloads the empty tree, which is terminal, and ends."""
    tasks = [{"id": "gone-root", "name": "root"}] + [
        {"id": f"gone-{i}", "name": f"t{i}", "parent_id": "gone-root"}
        | {"params": {"executor_id": "noop"}}
        for i in range(3)
    ]
    with held_run(store_settings, concurrency=2) as h:
        tree_id = h.ledger.create_tree(tasks, run=True).id
        job = h.on_loop(h.runner.start(tree_id))
        assert h.entered.wait(DEADLINE_S)  # its first step (the first starts) is being stored
        assert h.other.remove_task("gone-root") == ("gone-root", "gone-0", "gone-1", "gone-2")
        h.gate.set()
        ended = h.on_loop(asyncio.wait_for(asyncio.shield(job), DEADLINE_S))
        assert ended.is_empty
        assert ended.is_terminal
        assert tree_id not in h.runner.runs
        assert h.other.load(tree_id, removed_too=True).is_empty
        assert [type(e).__name__ for e in h.other.events.get(tree_id)] == [
            "Created",
            "RunRequested",
            "TaskRemoved",
        ]
        assert h.on_loop(h.runner.resume([tree_id])) == {}  # nothing left to run or raise


def test_two_processes_open_a_fresh_sqlite_store_at_once(tmp_path: Path) -> None:
    """Found by starting the two race servers together on a new home: one exited 3,
    "cannot open the event store ...: database is locked", from eventsourcing's
    `PRAGMA journal_mode=WAL` in SQLiteConnectionPool._create_connection (reached through
    application/sqlite_store.py's _Pool) while the other created its tables. Once the
    store is in WAL mode the same open succeeds; only a new store fails."""
    home = tmp_path / "home"
    home.mkdir()
    other = sqlite3.connect(home / "events.sqlite3", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other process, creating its tables
    other.execute("CREATE TABLE IF NOT EXISTS other_process (x)")
    done = threading.Timer(0.5, other.execute, ("COMMIT",))  # ...which takes a moment
    done.start()
    try:
        ledger = Ledger(Settings(home=home))  # was: "database is locked"
        ledger.close()
    finally:
        done.join()
        other.close()
