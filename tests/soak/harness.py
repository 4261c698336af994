"""Crash safety under SIGKILL (issue 9, item 1): a harness around real `flowledger serve`
processes.

It starts the server on a fresh store (an SQLite home, or a fresh PostgreSQL schema),
submits trees with mixed outcomes through JSON-RPC `tasks.execute`, SIGKILLs the server at
moments a seeded RNG picks, restarts it on the same store (which resumes unfinished trees)
and keeps submitting. After the last restart it waits until every tree has ended and checks,
from the event store itself and from what the server answered:

- every tree whose submission was accepted (or may have been: the answer was lost to a kill)
  is in the store, and nothing else is;
- every tree reaches a terminal state, the one its tasks' outcomes call for;
- each tree's history is a valid sequence (versions 1..n, legal transitions, attempts
  numbered one after the other, dependencies done before a dependent starts, the inputs
  and results each executor implies) and has no task with two terminal events;
- the aggregate replays it (from the events alone, and from snapshots) to the very tree the
  server shows; every history read over JSON-RPC before a kill is still a prefix of the
  final one (no event lost or rewritten);
- the live read models equal the events row for row, and an offline rebuild into a fresh
  database equals them.

Deterministic given the seed (the trees, the kill delays, which trees are probed), except
for where each kill falls in the server's progress; the checks hold whatever that is.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from msgspec import UNSET

from application.config import Settings
from application.ledger import Ledger
from application.views import event_json, tree_json
from domain import events as ev
from domain.inputs import unwrap
from domain.status import TERMINAL as TERMINAL_STATUSES
from domain.status import TaskStatus, can_transition
from interfaces.rpc.dispatch import MAX_BATCH
from projections.projector import Projector
from projections.schema import create_read_engine

ROOT = Path(__file__).resolve().parents[2]
FLOWLEDGER = str(Path(sys.executable).with_name("flowledger"))
READY = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
TERMINAL_TREE = frozenset({"completed", "failed", "cancelled"})
TERMINAL_EVENTS = (ev.Completed, ev.Failed, ev.Skipped, ev.Cancelled)
TARGET = {
    ev.Completed: TaskStatus.COMPLETED,
    ev.Failed: TaskStatus.FAILED,
    ev.Skipped: TaskStatus.SKIPPED,
    ev.Cancelled: TaskStatus.CANCELLED,
}
REQUEST_TIMEOUT_S = 30.0
POLL_S = 0.05  # the pace of polling observable state (never a wait for something to happen)


# -- configuration and stores ------------------------------------------------------------------
@dataclass(frozen=True)
class SoakConfig:
    seed: int = 1
    kills: int = 10
    trees: int = 8
    tasks_per_tree: int = 75
    postgres_url: str | None = None
    max_kill_delay_s: float = 1.2  # the longest a server lives before its kill
    early_kill_share: float = 0.15  # kills that come before the server says it is ready
    deadline_s: float = 90.0  # a bound on each wait (start-up, draining, the final run)
    log: Callable[[str], None] | None = None  # progress lines (the CLI prints them)

    @property
    def store_kind(self) -> str:
        return "postgresql" if self.postgres_url else "sqlite"


@dataclass
class Store:
    """A fresh store: the environment of the server processes, and Settings to check it."""

    env: dict[str, str]
    settings: Settings
    workdir: Path
    postgres_url: str | None
    schemas: list[str] = field(default_factory=list)  # PostgreSQL schemas to drop at the end

    def new_schema(self) -> str:
        name = f"fl_soak_{uuid.uuid4().hex[:12]}"
        self.schemas.append(name)
        return name

    def rebuild_settings(self) -> Settings:
        """Settings of another, empty read-model database (for the offline rebuild)."""
        home = self.workdir / f"rebuilt-{uuid.uuid4().hex[:8]}"
        if self.postgres_url is None:
            return Settings(home=home)
        return Settings(
            home=home, database_url=self.postgres_url, database_schema=self.new_schema()
        )


def drop_schemas(url: str, names: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextmanager
def fresh_store(config: SoakConfig, workdir: Path) -> Iterator[Store]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    home = workdir / "home"
    env |= {"FLOWLEDGER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    store = Store(env, Settings(home=home), workdir, config.postgres_url)
    if config.postgres_url is not None:
        schema = store.new_schema()
        env |= {
            "FLOWLEDGER_DATABASE_URL": config.postgres_url,
            "FLOWLEDGER_DATABASE_SCHEMA": schema,
        }
        store.settings = Settings(
            home=home, database_url=config.postgres_url, database_schema=schema
        )
    try:
        yield store
    finally:
        if config.postgres_url is not None:
            drop_schemas(config.postgres_url, store.schemas)


# -- the trees -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskPlan:
    id: str
    kind: str  # group, noop, echo, sleep, fail, timeout, fragile (sleep, on_interrupt fail)
    inputs: dict[str, Any]
    dependencies: tuple[tuple[str, bool], ...]  # (id, required)


@dataclass(frozen=True)
class TreePlan:
    index: int
    root_id: str
    items: list[dict[str, Any]]  # the task array sent to tasks.execute
    tasks: dict[str, TaskPlan]  # by id, in creation order


KINDS = ("group", "noop", "echo", "sleep", "fail", "timeout", "fragile")
SAFE_WEIGHTS = (8, 32, 22, 33, 0, 0, 5)  # a tree that should complete
MIXED_WEIGHTS = (8, 28, 20, 28, 10, 2, 4)  # a tree with failures (and their skip cascades)
SLEEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def plan_trees(config: SoakConfig) -> list[TreePlan]:
    """The trees of a run, from the seed alone."""
    rng = random.Random(f"trees:{config.seed}")
    return [plan_tree(rng, config, i) for i in range(config.trees)]


def plan_tree(rng: random.Random, config: SoakConfig, index: int) -> TreePlan:
    prefix = f"s{config.seed}-t{index:03d}"
    root = f"{prefix}-root"
    weights = MIXED_WEIGHTS if rng.random() < 0.5 else SAFE_WEIGHTS
    items: list[dict[str, Any]] = [{"id": root, "name": "root", "priority": 1}]
    plans = {root: TaskPlan(root, "group", {}, ())}
    feeders: list[str] = []  # tasks others may depend on (no echo: results would nest)
    for j in range(1, config.tasks_per_tree):
        task_id = f"{prefix}-{j:04d}"
        kind = rng.choices(KINDS, weights)[0]
        parent = root if j < 3 or rng.random() < 0.7 else rng.choice(list(plans))
        item: dict[str, Any] = {
            "id": task_id,
            "name": f"t{j}",
            "parent_id": parent,
            "priority": rng.randint(0, 3),
        }
        params: dict[str, Any] = {}
        inputs: dict[str, Any] = {}
        if kind == "noop":
            params["executor_id"] = "noop"
        elif kind == "echo":
            params["executor_id"] = "echo"
            inputs = {"i": j, "text": f"\u00e9cho {j} \u2713 \U0001f680"}
        elif kind in ("sleep", "fragile"):
            params["executor_id"] = "sleep"
            inputs = {"seconds": rng.choice(SLEEPS)}
            if kind == "fragile":
                params["on_interrupt"] = "fail"
            elif rng.random() < 0.2:
                params["retry"] = {"max_attempts": 2, "backoff_s": 0.05}
        elif kind == "fail":
            params["executor_id"] = "fail"
            inputs = {"message": f"planned failure {j}"}
            if rng.random() < 0.6:
                params["retry"] = {"max_attempts": rng.randint(2, 3), "backoff_s": 0.05}
        elif kind == "timeout":
            params["executor_id"] = "sleep"
            params["timeout_s"] = 0.05
            params["retry"] = {"max_attempts": 2, "backoff_s": 0.02}
            inputs = {"seconds": 5.0}
        if params:
            item["params"] = params
        if inputs:
            item["inputs"] = inputs
        dependencies: list[tuple[str, bool]] = []
        if feeders and rng.random() < 0.4:
            for dep in rng.sample(feeders, min(len(feeders), rng.randint(1, 2))):
                dependencies.append((dep, rng.random() < 0.8))
            item["dependencies"] = [{"id": d, "required": r} for d, r in dependencies]
        items.append(item)
        plans[task_id] = TaskPlan(task_id, kind, inputs, tuple(dependencies))
        if kind != "echo":
            feeders.append(task_id)
    return TreePlan(index, root, items, plans)


# -- the server process ----------------------------------------------------------------------
class Server:
    """One `flowledger serve` process on an ephemeral port; its stderr (one JSON object a
    line) is copied to a log file and watched for readiness and errors."""

    def __init__(self, store: Store, log_path: Path, incarnation: int) -> None:
        self.incarnation = incarnation
        self.log_path = log_path
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str] = []
        self.resumed: list[str] = []
        self.url: str | None = None
        self.process = subprocess.Popen(
            [FLOWLEDGER, "serve", "--port", "0", "--log-level", "info"],
            env=store.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.log_path.open("a", encoding="utf-8") as out:
            out.write(f"--- incarnation {self.incarnation} (pid {self.process.pid})\n")
            for line in self.process.stderr:
                out.write(line)
                out.flush()
                self._note(line)
                self.lines.put(line)
        self.lines.put(None)

    def _note(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip():
                self.errors.append(f"incarnation {self.incarnation}: not JSON: {line.strip()}")
            return
        if not isinstance(entry, dict):
            return
        if str(entry.get("level", "")).lower() in ("error", "critical"):
            self.errors.append(f"incarnation {self.incarnation}: {line.strip()[:2000]}")
        message = str(entry.get("message", ""))
        if "resumed" in message:
            self.resumed.append(message)

    def wait_ready(self, deadline_s: float) -> str:
        """The base URL, once uvicorn says it is serving (and the health endpoint answers)."""
        end = time.monotonic() + deadline_s
        while self.url is None:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise SoakError(f"server {self.incarnation} not ready in {deadline_s} s") from None
            if line is None:
                raise SoakError(
                    f"server {self.incarnation} exited ({self.process.wait()}) before it was "
                    f"ready; see {self.log_path}"
                )
            if found := READY.search(line):
                self.url = f"http://127.0.0.1:{found.group(1)}"
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            answer = client.get(f"{self.url}/system/health")
            if answer.status_code != 200:
                raise SoakError(f"GET /system/health answered {answer.status_code}")
        return self.url

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=REQUEST_TIMEOUT_S)
        self._reader.join(timeout=REQUEST_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM: uvicorn shuts down gracefully. The exit status (0 or -SIGTERM)."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=REQUEST_TIMEOUT_S)
        self._reader.join(timeout=REQUEST_TIMEOUT_S)
        return code

    def alive(self) -> bool:
        return self.process.poll() is None


class SoakError(RuntimeError):
    """The harness itself could not go on (a server that never starts, a deadline)."""


# -- talking to it ---------------------------------------------------------------------------
class Unanswered(Exception):
    """The request got no HTTP answer (the server died under it)."""


class Rpc:
    """JSON-RPC over one httpx client; counts requests."""

    def __init__(self, counter: Counter[str], timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.client = httpx.Client(timeout=timeout_s)
        self.counter = counter
        self.http_errors: list[str] = []

    def close(self) -> None:
        self.client.close()

    def call(self, url: str, method: str, params: Any) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        reply = self._post(url, body, 1)
        assert isinstance(reply, dict)
        return reply

    def batch(self, url: str, calls: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Several calls in JSON-RPC batches (of at most MAX_BATCH, the server's limit); the
        replies in the order of `calls`."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(calls), MAX_BATCH):
            body = [
                {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                for i, (method, params) in enumerate(calls[start : start + MAX_BATCH])
            ]
            replies = self._post(url, body, len(body))
            assert isinstance(replies, list), replies
            by_id = {r["id"]: r for r in replies}
            out.extend(by_id[i] for i in range(len(body)))
        return out

    def _post(self, url: str, body: Any, calls: int) -> Any:
        self.counter["requests"] += 1
        self.counter["calls"] += calls
        try:
            response = self.client.post(f"{url}/tasks", json=body)
        except httpx.TransportError as exc:
            raise Unanswered(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            self.http_errors.append(f"HTTP {response.status_code}: {response.text[:500]}")
            raise SoakError(f"HTTP {response.status_code} from {url}: {response.text[:500]}")
        return response.json()


class Live:
    """Which server is up (its URL and incarnation), shared by the threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.url: str | None = None
        self.generation = 0
        self.stopping = False

    def up(self, url: str) -> None:
        with self._cond:
            self.url = url
            self.generation += 1
            self._cond.notify_all()

    def down(self) -> None:
        with self._cond:
            self.url = None
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    def current(self, newer_than: int, deadline_s: float) -> tuple[str, int] | None:
        """The URL of a server of a generation after `newer_than`, once there is one
        (None when the run is stopping)."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self.stopping or (self.url is not None and self.generation > newer_than),
                timeout=deadline_s,
            )
            if not ok:
                raise SoakError(f"no server came up within {deadline_s} s")
            if self.stopping:
                return None
            assert self.url is not None
            return self.url, self.generation

    def is_current(self, generation: int) -> bool:
        with self._cond:
            return self.url is not None and self.generation == generation


@dataclass
class Submission:
    plan: TreePlan
    accepted: bool = False  # tasks.execute answered success (or the tree already ended)
    unanswered: int = 0  # attempts whose answer a kill swallowed
    answers: list[str] = field(default_factory=list)  # what each attempt got


class Submitter(threading.Thread):
    """Submits queued trees one after the other, each until its fate is known: an answer
    (success, or a refusal that says the tree exists), retrying after a kill as a careful
    client would (re-send the tree; if its ids are taken, execute it by its root id). When
    idle it reads histories of accepted trees (probes), to check later that nothing that
    was once answered is lost."""

    def __init__(self, live: Live, counter: Counter[str], config: SoakConfig) -> None:
        super().__init__(name="soak-submitter", daemon=True)
        self.live = live
        self.config = config
        self.rpc = Rpc(counter)
        self.rng = random.Random(f"probes:{config.seed}")
        self._cond = threading.Condition()
        self._todo: list[Submission] = []
        self.done: list[Submission] = []
        self.probes: list[tuple[str, list[dict[str, Any]]]] = []
        self.problems: list[str] = []
        self.failure: BaseException | None = None
        self.answered = 0  # tasks.execute calls that got an answer

    def wait_answered(self, count: int, deadline_s: float) -> bool:
        """Until `count` tasks.execute calls have been answered (or the submitter failed)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.answered >= count or self.failure is not None, timeout=deadline_s
            )

    def enqueue(self, plans: list[TreePlan]) -> None:
        with self._cond:
            self._todo.extend(Submission(p) for p in plans)
            self._cond.notify_all()

    def wait_idle(self, deadline_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._todo or self.failure is not None, timeout=deadline_s
            )

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.failure = exc
            with self._cond:
                self._cond.notify_all()
        finally:
            self.rpc.close()

    def _loop(self) -> None:
        after = 0  # the server to use must be of a generation after this one
        while True:
            with self._cond:
                todo = self._todo[0] if self._todo else None
            if todo is None:
                found = self.live.current(after, self.config.deadline_s * 10)
                if found is None:
                    return
                if self.done:
                    self._probe(*found)
                with self._cond:  # (the pace of the probes, not a synchronisation)
                    self._cond.wait_for(lambda: bool(self._todo), timeout=POLL_S * 2)
                continue
            found = self.live.current(after, self.config.deadline_s)
            if found is None:
                return
            url, generation = found
            if self._attempt(todo, url, generation):
                after = generation - 1  # the same server will do for the next one
                with self._cond:
                    self._todo.pop(0)
                    self.done.append(todo)
                    self._cond.notify_all()
            else:  # the server died under it: wait for the next one
                after = generation

    def _attempt(self, sub: Submission, url: str, generation: int) -> bool:
        """One try; True when the tree's fate is known."""
        exists = any(a.startswith("exists") for a in sub.answers)
        params: dict[str, Any] = (
            {"task_id": sub.plan.root_id} if exists else {"tasks": sub.plan.items}
        )
        try:
            reply = self.rpc.call(url, "tasks.execute", params)
        except Unanswered as exc:
            sub.unanswered += 1
            sub.answers.append(f"unanswered: {exc}")
            if self.live.is_current(generation):
                self.problems.append(
                    f"{sub.plan.root_id}: tasks.execute got no answer from a live server: {exc}"
                )
            return False
        with self._cond:
            self.answered += 1
            self._cond.notify_all()
        error = reply.get("error")
        if error is None:
            result = reply["result"]
            if result.get("success") is not True or result.get("root_task_id") != sub.plan.root_id:
                self.problems.append(f"{sub.plan.root_id}: unexpected execute result {result}")
            sub.accepted = True
            sub.answers.append(f"accepted: {result.get('message')}")
            return True
        data = error.get("data") or {}
        if error["code"] == -32010 and data.get("code") == "duplicate_id" and sub.unanswered:
            sub.answers.append("exists: its ids are taken (an earlier try was stored)")
            return self._attempt(sub, url, generation)
        if error["code"] == -32011 and exists:
            sub.accepted = True  # it was stored, asked to run, and has ended meanwhile
            sub.answers.append(f"accepted: {error['message']}")
            return True
        sub.answers.append(f"refused: {error}")
        self.problems.append(f"{sub.plan.root_id}: tasks.execute refused: {error}")
        return True

    def _probe(self, url: str, generation: int) -> None:
        accepted = [s.plan.root_id for s in self.done if s.accepted]
        if not accepted:
            return
        root = self.rng.choice(accepted)
        try:
            reply = self.rpc.call(url, "tasks.history", {"task_id": root})
        except Unanswered:
            return
        if "error" in reply:
            self.problems.append(f"{root}: tasks.history refused: {reply['error']}")
            return
        self.probes.append((root, reply["result"]))


# -- the run ---------------------------------------------------------------------------------
@dataclass
class Report:
    seed: int
    store: str
    kills: int = 0
    early_kills: int = 0  # before the server said it was ready
    kill_modes: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    requests: int = 0  # HTTP requests (a batch counts once)
    calls: int = 0  # JSON-RPC calls
    unanswered: int = 0  # tasks.execute attempts a kill swallowed
    trees: int = 0
    accepted: int = 0
    tasks: int = 0
    events: int = 0  # tree events in the store
    notifications: int = 0  # every entry of the log (task-id claims too)
    probes: int = 0
    probed_events: int = 0
    lost_events: int = 0  # probed events missing or changed in the final histories
    reruns: int = 0  # attempts started again after a kill interrupted them
    interrupted_failed: int = 0  # on_interrupt=fail tasks a kill ended
    retries: int = 0  # AttemptFailed events
    tree_statuses: Counter[str] = field(default_factory=Counter)
    task_statuses: Counter[str] = field(default_factory=Counter)
    resumed: int = 0  # "resumed N unfinished tree(s)" summed over restarts
    stranded: int = 0  # accepted trees never asked to run (see STRANDED)
    unfinished_at_end: dict[str, Any] = field(default_factory=dict)  # what the server said
    duration_s: float = 0.0
    log_path: str = ""
    problems: list[str] = field(default_factory=list)

    def numbers(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("problems")
        out["problems"] = len(self.problems)
        out["kill_modes"] = dict(sorted(self.kill_modes.items()))
        out["tree_statuses"] = dict(sorted(self.tree_statuses.items()))
        out["task_statuses"] = dict(sorted(self.task_statuses.items()))
        return out

    def summary(self) -> str:
        lines = [f"{k}: {v}" for k, v in self.numbers().items()]
        lines += [f"PROBLEM: {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"... and {len(self.problems) - 50} more problems")
        return "\n".join(lines)


KILL_MODES = ("early", "submitting", "answered", "running")


def kill_schedule(config: SoakConfig) -> list[tuple[str, float]]:
    """(mode, delay) per kill: how long after what a server gets its SIGKILL.

    early: after its start, before it says it is ready (during the resume); submitting:
    after its readiness, as the period's trees go in; answered: after the period's first
    tasks.execute answer (the first steps of a run just accepted); running: after its
    readiness, while trees run."""
    rng = random.Random(f"kills:{config.seed}")
    schedule = []
    for _ in range(config.kills):
        draw = rng.random()
        if draw < config.early_kill_share:
            schedule.append(("early", rng.uniform(0.0, 0.9)))
        elif draw < config.early_kill_share + 0.2:
            schedule.append(("submitting", rng.uniform(0.0, 0.05)))
        elif draw < config.early_kill_share + 0.45:
            schedule.append(("answered", rng.uniform(0.0, 0.03)))
        else:
            schedule.append(("running", rng.uniform(0.1, config.max_kill_delay_s)))
    return schedule


def run_soak(config: SoakConfig, workdir: Path) -> Report:
    """The whole experiment on a fresh store under `workdir`; the report lists problems
    rather than raising, so every finding of a run is seen at once."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = Report(seed=config.seed, store=config.store_kind)
    report.log_path = str(workdir / "servers.log")
    say = config.log or (lambda _line: None)
    plans = plan_trees(config)
    schedule = kill_schedule(config)
    periods = max(1, config.kills)
    waves: list[list[TreePlan]] = [[] for _ in range(periods)]
    for plan in plans:  # spread the submissions over the periods between kills
        waves[plan.index * periods // len(plans)].append(plan)
    started = time.monotonic()
    counter: Counter[str] = Counter()
    with fresh_store(config, workdir) as store:
        live = Live()
        submitter = Submitter(live, counter, config)
        submitter.start()
        servers: list[Server] = []
        try:
            for period, (mode, delay) in enumerate(schedule):
                server = Server(store, Path(report.log_path), len(servers))
                servers.append(server)
                if mode == "early":
                    report.early_kills += 1
                else:
                    live.up(server.wait_ready(config.deadline_s))
                    answered = submitter.answered
                    submitter.enqueue(waves[period])
                    if mode == "answered" and waves[period]:
                        submitter.wait_answered(answered + 1, config.deadline_s)
                    waves[period] = []
                time.sleep(delay)  # the experiment: a kill at a random moment
                if not server.alive():
                    raise SoakError(f"server {server.incarnation} exited on its own")
                live.down()
                server.kill()
                report.kills += 1
                report.kill_modes[mode] += 1
                say(f"kill {report.kills}/{config.kills} ({delay:.3f} s after {mode})")
            for wave in waves:  # the trees of early-killed periods
                submitter.enqueue(wave)
            final = Server(store, Path(report.log_path), len(servers))
            servers.append(final)
            live.up(final.wait_ready(config.deadline_s))
            report.restarts = len(servers) - 1
            if not submitter.wait_idle(config.deadline_s):
                raise SoakError("the submissions did not finish in time")
            if submitter.failure is not None:
                raise SoakError(f"the submitter failed: {submitter.failure!r}")
            say("all trees submitted; waiting for every tree to end")
            rpc = Rpc(counter)
            try:
                assert final.url is not None
                views = wait_and_read(final.url, rpc, submitter.done, config, report)
            finally:
                rpc.close()
                live.stop()
                submitter.join(timeout=REQUEST_TIMEOUT_S)
            code = final.stop()
            if code not in (0, -signal.SIGTERM):
                report.problems.append(f"the last server exited with {code}")
        finally:
            live.stop()
            for server in servers:
                if server.alive():
                    server.kill()
        for server in servers:
            report.problems += server.errors
            for message in server.resumed:
                if found := re.search(r"resumed (\d+)", message):
                    report.resumed += int(found.group(1))
        report.problems += submitter.problems
        report.unanswered = sum(s.unanswered for s in submitter.done)
        report.accepted = sum(s.accepted for s in submitter.done)
        report.requests, report.calls = counter["requests"], counter["calls"]
        say("checking the store")
        check_store(store, submitter.done, submitter.probes, views, report)
    report.duration_s = round(time.monotonic() - started, 1)
    return report


@dataclass
class ServerViews:
    trees: dict[str, dict[str, Any]]  # root id -> tasks.tree
    histories: dict[str, list[dict[str, Any]]]  # root id -> tasks.history


def wait_and_read(
    url: str, rpc: Rpc, submitted: list[Submission], config: SoakConfig, report: Report
) -> ServerViews:
    """Wait (bounded) until every tree whose submission may have been stored has ended and
    the read models are caught up; then read each tree and its history from the server."""
    roots = [s.plan.root_id for s in submitted]
    pending = list(roots)
    end = time.monotonic() + config.deadline_s
    statuses: dict[str, Any] = {}
    health: dict[str, Any] = {}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < end:
            rpc.counter["requests"] += 1
            health = client.get(f"{url}/system/health").json()
            quiet = health.get("projector_lag") == 0 and health["running"]["trees"] == 0
            if pending:
                replies = rpc.batch(url, [("tasks.get", {"task_id": r}) for r in pending])
                still = []
                for root, reply in zip(pending, replies, strict=True):
                    status = reply.get("result", {}).get("tree_status") or reply.get("error")
                    statuses[root] = status
                    if status not in TERMINAL_TREE:
                        still.append(root)
                pending = still
            if quiet:  # nothing runs any more (and nothing but a request starts a run)
                break
            time.sleep(POLL_S)  # polling observable state, within the deadline
        else:
            report.problems.append(f"the server still ran trees at the deadline: {health}")
    report.unfinished_at_end = {root: statuses.get(root) for root in pending}
    views = ServerViews({}, {})
    for chunk in range(0, len(roots), 10):
        part = roots[chunk : chunk + 10]
        calls = [("tasks.tree", {"task_id": r}) for r in part]
        calls += [("tasks.history", {"task_id": r}) for r in part]
        replies = rpc.batch(url, calls)
        for i, root in enumerate(part):
            tree, history = replies[i], replies[len(part) + i]
            if "result" in tree:
                views.trees[root] = tree["result"]
            if "result" in history:
                views.histories[root] = history["result"]
            for name, reply in (("tasks.tree", tree), ("tasks.history", history)):
                if "error" in reply:
                    report.problems.append(f"{root}: {name} refused: {reply['error']}")
    return views


# -- the checks ------------------------------------------------------------------------------
def check_store(
    store: Store,
    submitted: list[Submission],
    probes: list[tuple[str, list[dict[str, Any]]]],
    views: ServerViews,
    report: Report,
) -> None:
    problems = report.problems
    ledger = Ledger(store.settings)
    try:
        recorder: Any = ledger.recorder
        report.notifications = len(recorder.select_notifications(start=1, limit=10**9))
        created_topic = ledger.mapper.topic_of(ev.Created)  # type: ignore[attr-defined]
        stored = {
            UUID(str(n.originator_id))
            for n in recorder.select_notifications(start=1, limit=10**9, topics=[created_topic])
        }
        tree_ids: dict[str, UUID] = {}
        for sub in submitted:
            root = sub.plan.root_id
            try:
                tree_ids[root] = ledger.tree_id_of(root)
            except Exception as exc:
                if sub.accepted:
                    problems.append(f"{root}: accepted, but not in the store: {exc!r}")
                continue
            if not sub.accepted:
                problems.append(f"{root}: in the store, but never accepted: {sub.answers}")
        report.trees = len(tree_ids)
        if stored != set(tree_ids.values()):
            problems.append(
                f"the store holds trees nobody submitted: {stored - set(tree_ids.values())}"
            )
        for sub in submitted:
            if sub.plan.root_id in tree_ids:
                check_tree(ledger, sub, tree_ids[sub.plan.root_id], views, report)
        check_probes(probes, views, report)
        check_read_models(store, ledger, list(tree_ids.values()), report)
    finally:
        ledger.close()


def normal(value: Any) -> Any:
    """As it looks after a JSON round trip (tuples become lists)."""
    return json.loads(json.dumps(value))


STRANDED = "STRANDED"  # the prefix of the problem an accepted tree that never ran gives


def check_tree(
    ledger: Ledger, sub: Submission, tree_id: UUID, views: ServerViews, report: Report
) -> None:
    problems = report.problems
    plan, root = sub.plan, sub.plan.root_id
    events = ledger.history(root)
    report.events += len(events)
    try:
        replayed = ledger.replay(tree_id)
        loaded = ledger.load(tree_id)
    except Exception as exc:
        problems.append(f"{root}: the aggregate does not replay its history: {exc!r}")
        return
    status = replayed.status.value
    ended = status in TERMINAL_TREE
    tally: Counter[str] = Counter()
    for problem in check_history(events, tally, ended=ended):
        problems.append(f"{root}: {problem}")
    report.reruns += tally["reruns"]
    report.retries += tally["retries"]
    report.interrupted_failed += tally["interrupted_failed"]
    shown = normal(tree_json(replayed))
    if normal(tree_json(loaded)) != shown:
        problems.append(f"{root}: loading from a snapshot differs from a replay of the events")
    if views.trees.get(root) != shown:
        problems.append(f"{root}: the server's tasks.tree differs from a replay of the events")
    if views.histories.get(root) != normal([event_json(e) for e in events]):
        problems.append(f"{root}: the server's tasks.history differs from the event store")
    report.tasks += len(replayed.tasks)
    report.tree_statuses[status] += 1
    for task in replayed.tasks.values():
        report.task_statuses[task.status.value] += 1
        try:
            if ledger.tree_id_of(task.id) != tree_id:
                problems.append(f"{task.id}: its id is claimed by another tree")
        except Exception as exc:
            problems.append(f"{task.id}: its id has no claim: {exc!r}")
    if set(replayed.tasks) != set(plan.tasks):
        problems.append(f"{root}: the tree's tasks are not the ones submitted")
        return
    counts = Counter(t.status.value for t in replayed.tasks.values())
    if not ended:
        untouched = not replayed.state.run_requested and counts == {"pending": len(plan.tasks)}
        if untouched and sub.accepted:
            report.stranded += 1
            problems.append(
                f"{STRANDED} {root}: tasks.execute answered {sub.answers[-1]!r}, yet the tree "
                f"was never asked to run: {len(events)} event(s), no RunRequested, all "
                f"{len(plan.tasks)} tasks pending; no restart resumes it"
            )
        else:
            problems.append(
                f"{root}: did not end: {status} (run requested: "
                f"{replayed.state.run_requested}, tasks {dict(counts)}, server said "
                f"{report.unfinished_at_end.get(root)})"
            )
        return
    expected = expected_statuses(plan, {t.id: t.status for t in replayed.tasks.values()})
    for task_id, want in expected.items():
        task = replayed.tasks[task_id]
        if task.status not in want:
            problems.append(
                f"{task_id} ({plan.tasks[task_id].kind}): ended {task.status.value}, expected "
                f"{'/'.join(sorted(w.value for w in want))} (error: {task.error})"
            )
    completed = all(t.status is TaskStatus.COMPLETED for t in replayed.tasks.values())
    if (status == "completed") != completed or status == "cancelled":
        problems.append(f"{root}: tree status {status} does not follow from its tasks {counts}")


def expected_statuses(
    plan: TreePlan, actual: dict[str, TaskStatus]
) -> dict[str, frozenset[TaskStatus]]:
    """What each task must end as, from its kind and its dependencies' outcomes (ADR 0003).
    A task that fails when a kill interrupts it (on_interrupt fail) may end either way; its
    dependents are judged by what it did end as."""
    c, f, s = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.SKIPPED
    want: dict[str, frozenset[TaskStatus]] = {}
    outcome: dict[str, TaskStatus] = {}
    for task_id, task in plan.tasks.items():  # creation order: dependencies come first
        if any(req and outcome[dep] is not c for dep, req in task.dependencies):
            options = frozenset({s})
        elif task.kind in ("fail", "timeout"):
            options = frozenset({f})
        elif task.kind == "fragile":
            options = frozenset({c, f})
        else:
            options = frozenset({c})
        want[task_id] = options
        outcome[task_id] = actual[task_id] if actual[task_id] in options else min(options)
    return want


def check_history(
    events: list[Any], tally: Counter[str], *, ended: bool = True, foreign: bool = False
) -> list[str]:
    """What is wrong with a tree's history as a sequence (empty when it is valid).

    Per task: legal transitions only (domain/status.py), attempts numbered 1, 2, ... with
    AttemptFailed and Failed naming the running one, at most one terminal event, a start
    only once the run was requested and its dependencies allow it, with exactly the inputs
    the definition and the dependencies' results give, and the result its executor gives.
    With `ended`, the run was requested once and every task ended. Without `foreign`, no
    event that only a command from outside the run writes (cancel, update, remove, copy).
    Counts reruns (an attempt started again with no outcome for the previous one: a kill),
    retries and interrupted failures in `tally`."""
    problems: list[str] = []
    versions = [e.originator_version for e in events]
    if versions != list(range(1, len(events) + 1)):
        problems.append(f"versions are not 1..{len(events)}: {versions[:20]}...")
    if not events or not isinstance(events[0], ev.Created):
        return [*problems, "the history does not start with Created"]
    created = events[0]
    specs = {spec.id: spec for spec in created.tasks}
    status = dict.fromkeys(specs, TaskStatus.PENDING)
    inputs = {spec.id: spec.inputs for spec in created.tasks}
    deps = {spec.id: tuple(spec.dependencies) for spec in created.tasks}
    results: dict[str, Any] = {}
    for carried in created.carried:
        status[carried.task_id] = TaskStatus.COMPLETED
        results[carried.task_id] = carried.result
    attempts = dict.fromkeys(specs, 0)
    seen_inputs: dict[str, dict[str, Any]] = {}
    last: dict[str, Any] = {}  # each task's previous event
    finished: Counter[str] = Counter()
    run_requested = 0
    for e in events[1:]:
        where = f"v{e.originator_version} {type(e).__name__}"
        if isinstance(e, ev.RunRequested | ev.Copied):
            if isinstance(e, ev.Copied) and not foreign:
                problems.append(f"{where}: nobody copied anything in this run")
            run_requested += isinstance(e, ev.RunRequested)
            continue
        if not isinstance(e, ev.TaskEvent) or e.task_id not in status:
            problems.append(f"{where}: not an event of a task of this tree")
            continue
        task_id, now = e.task_id, status[e.task_id]
        where += f" {task_id}"
        outside = ev.TaskUpdated | ev.DependencyAdded | ev.TaskRemoved | ev.Cancelled
        if isinstance(e, outside) and not foreign:
            problems.append(f"{where}: nobody changed anything from outside in this run")
        if isinstance(e, ev.Started):
            if not run_requested:
                problems.append(f"{where}: started before the run was requested")
            if not can_transition(now, TaskStatus.IN_PROGRESS):
                problems.append(f"{where}: started while {now.value}")
            if e.attempt != attempts[task_id] + 1:
                problems.append(f"{where}: attempt {e.attempt} after {attempts[task_id]}")
            if now is TaskStatus.IN_PROGRESS and isinstance(last.get(task_id), ev.Started):
                tally["reruns"] += 1  # the previous attempt has no outcome: a kill ended it
            for dep in deps[task_id]:
                if status[dep.id] is not TaskStatus.COMPLETED and (
                    dep.required or status[dep.id] not in TERMINAL_STATUSES
                ):
                    problems.append(f"{where}: dependency {dep.id} is {status[dep.id].value}")
            wanted = dict(inputs[task_id])
            for dep in deps[task_id]:
                if status[dep.id] is TaskStatus.COMPLETED:
                    wanted[dep.id] = unwrap(results[dep.id])
            if normal(e.inputs) != normal(wanted):
                problems.append(f"{where}: inputs {e.inputs!r}, expected {wanted!r}")
            attempts[task_id] = e.attempt
            seen_inputs[task_id] = e.inputs
            status[task_id] = TaskStatus.IN_PROGRESS
        elif isinstance(e, ev.Progressed | ev.AttemptFailed):
            if now is not TaskStatus.IN_PROGRESS:
                problems.append(f"{where}: while {now.value}")
            if isinstance(e, ev.AttemptFailed):
                tally["retries"] += 1
                if e.attempt != attempts[task_id]:
                    problems.append(f"{where}: attempt {e.attempt}, running {attempts[task_id]}")
        elif isinstance(e, TERMINAL_EVENTS):
            finished[task_id] += 1
            target = TARGET[type(e)]
            if not can_transition(now, target):
                problems.append(f"{where}: {now.value} -> {target.value}")
            if isinstance(e, ev.Failed):
                if e.attempt != attempts[task_id]:
                    problems.append(f"{where}: attempt {e.attempt}, running {attempts[task_id]}")
                if e.error.startswith("Interrupted"):
                    tally["interrupted_failed"] += 1
                    if specs[task_id].params.get("on_interrupt") != "fail":
                        problems.append(f"{where}: interrupted, but on_interrupt is rerun")
            if isinstance(e, ev.Completed):
                results[task_id] = e.result
                problem = check_result(specs[task_id], seen_inputs.get(task_id), e.result)
                if problem:
                    problems.append(f"{where}: {problem}")
            status[task_id] = target
        elif isinstance(e, ev.TaskUpdated):
            if now is not TaskStatus.PENDING:
                problems.append(f"{where}: updated while {now.value}")
            if e.changes.inputs is not UNSET:
                inputs[task_id] = e.changes.inputs
            if e.changes.dependencies is not UNSET:
                deps[task_id] = tuple(e.changes.dependencies)
            if e.changes.params is not UNSET or e.changes.schemas is not UNSET:
                problems.append(f"{where}: this harness never changes params or schemas")
        elif isinstance(e, ev.DependencyAdded):
            if now is not TaskStatus.PENDING:
                problems.append(f"{where}: a dependency added while {now.value}")
            deps[task_id] = (*deps[task_id], e.dependency)
        elif isinstance(e, ev.TaskRemoved):
            for gone in e.removed_ids:
                if status.get(gone) is not TaskStatus.PENDING:
                    problems.append(f"{where}: removed {gone} while {status.get(gone)}")
                for other in (status, inputs, deps, attempts):
                    other.pop(gone, None)
                finished.pop(gone, None)
            continue
        else:
            problems.append(f"{where}: not an event a run writes")
        last[task_id] = e
    if run_requested > 1 or (ended and run_requested != 1):
        problems.append(f"RunRequested recorded {run_requested} times")
    problems += [f"{t}: {n} terminal events" for t, n in finished.items() if n > 1]
    never = [t for t, s in status.items() if s not in TERMINAL_STATUSES]
    if ended and never:
        problems.append(f"{len(never)} task(s) never ended, e.g. {never[:5]}")
    return problems


def check_result(spec: Any, inputs: dict[str, Any] | None, result: Any) -> str | None:
    """The result each built-in executor gives for the inputs its attempt was started with."""
    executor = spec.params.get("executor_id")
    if executor is None:
        return None if result is None else f"a grouping node's result is {result!r}"
    if inputs is None:
        return "completed without having started"
    if executor == "noop":
        expected: Any = None
    elif executor == "echo":
        expected = inputs
    elif executor == "sleep" and "timeout_s" not in spec.params:
        expected = {"slept": inputs["seconds"]}
    else:
        return f"a {executor} task completed (params {spec.params})"
    return None if normal(result) == normal(expected) else f"result {result!r}"


def check_probes(
    probes: list[tuple[str, list[dict[str, Any]]]], views: ServerViews, report: Report
) -> None:
    """Every history read over JSON-RPC during the run is a prefix of the final one."""
    report.probes = len(probes)
    for root, seen in probes:
        report.probed_events += len(seen)
        final = views.histories.get(root, [])
        lost = sum(1 for i, entry in enumerate(seen) if i >= len(final) or final[i] != entry)
        if lost:
            report.lost_events += lost
            report.problems.append(f"{root}: {lost} event(s) read during the run are gone")


def check_read_models(store: Store, ledger: Ledger, tree_ids: list[UUID], report: Report) -> None:
    """The live read models (as the killed servers left them, caught up by the last one)
    against the events, and against an offline rebuild into a fresh database."""
    from tests.integration.test_projection_equivalence import (
        all_rows,
        assert_read_model_matches,
    )

    live = create_read_engine(store.settings)
    try:
        projector = Projector(ledger, live)
        progress = projector.progress()
        if progress.lag or progress.ahead:
            report.problems.append(f"the live read models are behind the log: {progress}")
        try:
            assert_read_model_matches(ledger, live, tree_ids)
        except AssertionError as exc:
            report.problems.append(f"the live read models differ from the events: {exc}")
        live_rows = all_rows(live)
        other = create_read_engine(store.rebuild_settings())
        try:
            Projector(ledger, other).rebuild()
            rebuilt = all_rows(other)
        finally:
            other.dispose()
        for table, rows in live_rows.items():
            if rebuilt[table] != rows:
                differ = [(a, b) for a, b in zip(rows, rebuilt[table], strict=False) if a != b][:3]
                report.problems.append(
                    f"{table}: the live rows ({len(rows)}) differ from an offline rebuild "
                    f"({len(rebuilt[table])}); first differences: {differ}"
                )
    finally:
        live.dispose()
