"""Rebuild of the read models (Projector.rebuild) from a realistic event log of ~N events.

Run: python -m bench.projections [--events 1000000] [--tree-size 50] [--store DIR]
     [--database-url postgresql://... [--schema fl_bench_proj] [--analyze] [--drop]]
     [--json]
     [--cprofile FILE]
Embedded SQLite by default (events and read models in --store DIR); with --database-url
both live in PostgreSQL, in their own schema (--schema, created by the Ledger).

The log: trees of --tree-size tasks (a root, stage nodes under it, leaves under the stages;
each leaf of a stage requires a leaf of the stage before, and every fourth leaf also
optionally waits for a second one), created by ledger.create_tree (Created plus one task-id
claim per task), then run with the TaskTree's commands as the Runner would: RunRequested,
then steps that finish the attempts started by the previous step (Completed; Failed, which
skips the tasks that require it, for --fail-rate of them; AttemptFailed and a new Started
for --retry-rate) and start up to --step ready tasks (a grouping node is started and
completed at once). Each step is saved in its own transaction (ledger.save_trees), and
--interleave trees take turns, so the log interleaves trees as concurrent runs do; a
finished tree is replaced by a new one until the log holds about --events notifications.

Generation runs in a child process (its time and peak RSS are reported apart) and is
cached: DIR/generated.json records the parameters and the log's head, and a later run with
the same parameters whose store still ends at that head reuses it. Otherwise the store
(the SQLite files in DIR, or the PostgreSQL schema) is emptied and generated again.

Measured: Projector.rebuild() (empty the read models and replay the whole log into them
in one transaction, reading 20,000 tree events at a time and writing each tree's rows once
it has finished), wall time, notifications/s (every log entry covered,
task-id claims included, though the projector skips those unread) and tree events/s,
the peak RSS of this process (which only rebuilds), the time inside the projector's steps
(reading notifications, decoding, prefetching stored rows, writing rows, and the rest:
folding, the position and the commit), and the read models' row counts, checked against what the
generator recorded.
On SQLite the read-model file is deleted first (a rebuild into fresh tables); on
PostgreSQL the rebuild empties the tables a previous run left (in its transaction).
PostgreSQL runs share one schema whatever --events: a run with other parameters empties
it and generates again. Whether the events table has planner statistics is shown: a
server without autovacuum (or before it ran) plans the projector's range reads badly;
--analyze runs ANALYZE on it first.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import platform
import pstats
import random
import resource
import shutil
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from application.config import Settings
from application.ledger import Ledger
from domain.state import Task
from domain.status import TaskStatus
from domain.tree import TaskTree
from projections import schema as rm
from projections.projector import REBUILD_BATCH, Projector
from projections.schema import create_read_engine

MARKER = "generated.json"
GENERATOR_VERSION = 1  # bump when the generated log changes shape: caches are then rebuilt
PROGRESS_EVERY = 100_000
STAGE_WIDTH = 10  # about one stage node per this many tasks


# -- the trees ------------------------------------------------------------------------------
def tree_payload(size: int, number: int, user: str) -> list[dict[str, Any]]:
    """A tree of `size` tasks named (ids are generated): root > stages > leaves."""
    tasks: list[dict[str, Any]] = [
        {
            "name": "root",
            "user_id": user,
            "inputs": {"batch": number, "source": f"s3://bench/in/{number:08d}"},
        }
    ]
    if size == 1:
        return tasks
    stages = max(1, (size - 1) // STAGE_WIDTH) if size > 2 else 1
    leaves = size - 1 - stages
    widths = [leaves // stages + (k < leaves % stages) for k in range(stages)]
    for s in range(stages):
        tasks.append({"name": f"stage-{s}", "parent_id": "root", "priority": 1})
    for s, width in enumerate(widths):
        previous = widths[s - 1] if s else 0
        for j in range(width):
            deps: list[Any] = []
            if previous:
                deps.append(f"s{s - 1}.l{j % previous}")
                if j % 4 == 0 and previous > 1:
                    deps.append({"id": f"s{s - 1}.l{(j + 1) % previous}", "required": False})
            tasks.append(
                {
                    "name": f"s{s}.l{j}",
                    "parent_id": f"stage-{s}",
                    "priority": j % 4,
                    "schemas": {"method": "noop"},
                    "inputs": {"stage": s, "index": j, "path": f"part-{j:04d}.parquet"},
                    "dependencies": deps,
                }
            )
    return tasks


class TreeRun:
    """One tree being run: the attempts started by the previous step, and the retries due."""

    def __init__(self, tree: TaskTree) -> None:
        self.tree = tree
        self.running: list[str] = []
        self.retrying: list[str] = []

    def step(self, rng: random.Random, size: int, fail_rate: float, retry_rate: float) -> None:
        tree = self.tree
        tree.request_run()  # a no-op after the first step
        for task_id in self.running:
            task = tree.tasks[task_id]
            draw = rng.random()
            if draw < fail_rate:
                tree.fail(task_id, "ValueError: bad record at line 1234")
            elif draw < fail_rate + retry_rate and task.attempts == 1:
                tree.fail_attempt(task_id, "TimeoutError: no answer within 30 s", 0.0)
                self.retrying.append(task_id)
            else:
                tree.complete(task_id, {"rows": rng.randrange(100_000), "ok": True})
        self.running = []
        for task_id in self.retrying:
            task = tree.tasks[task_id]
            tree.start(task_id, task.attempts + 1, task.inputs)
            self.running.append(task_id)
        self.retrying = []
        slots = size - len(self.running)
        while slots > 0:
            ready = tree.ready_tasks(slots)
            if not ready:
                break
            for task in ready:
                tree.start(task.id, 1, task.inputs)
                if _grouping(task):  # done at once, as the Runner does
                    tree.complete(task.id, None)
                else:
                    self.running.append(task.id)
                    slots -= 1

    @property
    def done(self) -> bool:
        return not self.running and not self.retrying and self.tree.is_terminal


def _grouping(task: Task) -> bool:
    return not task.schemas.get("method")


# -- the store -------------------------------------------------------------------------------
def settings_for(args: argparse.Namespace) -> Settings:
    return Settings(
        home=Path(args.store),
        database_url=args.database_url,
        database_schema=args.schema if args.database_url else None,
        sqlite_synchronous="NORMAL",
    )


def parameters(args: argparse.Namespace) -> dict[str, Any]:
    """What the generated log depends on (a cached store is reused only if they match)."""
    return {
        "generator": GENERATOR_VERSION,
        "events": args.events,
        "tree_size": args.tree_size,
        "interleave": args.interleave,
        "step": args.step,
        "fail_rate": args.fail_rate,
        "retry_rate": args.retry_rate,
        "seed": args.seed,
        "store": store_name(args),
    }


def store_name(args: argparse.Namespace) -> str:
    if not args.database_url:
        return "sqlite"
    parts = urlsplit(args.database_url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(("postgresql", netloc, parts.path, "", "")) + f"#{args.schema}"


def log_counts(settings: Settings, ledger: Ledger) -> Counter[str]:
    """Notifications in the log by topic (one GROUP BY on the events table)."""
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    if settings.database_url is None:
        with sqlite3.connect(settings.sqlite_path) as conn:
            rows = conn.execute(f'SELECT topic, count(*) FROM "{table}" GROUP BY topic').fetchall()
    else:
        import psycopg

        qualified = f'"{settings.database_schema}"."{table}"'
        with psycopg.connect(settings.database_url) as conn:
            rows = conn.execute(
                f"SELECT topic, count(*) FROM {qualified} GROUP BY topic"
            ).fetchall()
    return Counter(dict(rows))


def head_of(settings: Settings) -> int:
    """The log's last notification id, 0 if there is no store yet."""
    if settings.database_url is None:
        if not settings.sqlite_path.exists():
            return 0
    elif not _schema_exists(settings):
        return 0
    ledger = Ledger(settings)
    try:
        return ledger.recorder.max_notification_id() or 0
    finally:
        ledger.close()


def _schema_exists(settings: Settings) -> bool:
    import psycopg

    assert settings.database_url is not None
    with psycopg.connect(settings.database_url) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
            (settings.database_schema,),
        ).fetchone()
    return found is not None


def drop_schema(settings: Settings) -> None:
    import psycopg

    assert settings.database_url is not None
    assert settings.database_schema
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')


def clear_store(settings: Settings) -> None:
    """Empty the bench's store: the SQLite files in its home, or its PostgreSQL schema."""
    (settings.home / MARKER).unlink(missing_ok=True)
    if settings.database_url is None:
        for name in ("events.sqlite3", "readmodels.sqlite3"):
            for suffix in ("", "-wal", "-shm"):
                (settings.home / f"{name}{suffix}").unlink(missing_ok=True)
    else:
        drop_schema(settings)


def cached(args: argparse.Namespace, settings: Settings) -> dict[str, Any] | None:
    """The generator's record if the store holds the log it describes, else None."""
    marker = settings.home / MARKER
    if not marker.exists():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if record.get("parameters") != parameters(args):
        return None
    if head_of(settings) != record.get("head"):
        return None
    return record


def generate(args: argparse.Namespace) -> None:
    """Write a log of about args.events notifications and its record (in a child process)."""
    settings = settings_for(args)
    rng = random.Random(args.seed)
    ledger = Ledger(settings)
    per_tree = 3 * args.tree_size + 2  # Created, the claims, RunRequested, Started, Completed
    started = time.perf_counter()
    active: list[TreeRun] = []
    trees = tasks = 0
    statuses: Counter[str] = Counter()
    reported = 0

    def expected_head() -> int:
        left = 0
        for run in active:
            counts = run.tree.status_counts()
            left += 2 * counts[TaskStatus.PENDING] + counts[TaskStatus.IN_PROGRESS]
        return ledger.last_position + left

    def add_tree() -> None:
        nonlocal trees, tasks
        payload = tree_payload(args.tree_size, trees, f"user-{trees % 7}")
        tree = ledger.create_tree(payload)
        active.append(TreeRun(tree))
        trees += 1
        tasks += len(tree.tasks)

    try:
        while True:
            while len(active) < args.interleave and expected_head() + per_tree // 2 < args.events:
                add_tree()
            if not active:
                break
            for run in list(active):
                run.step(rng, args.step, args.fail_rate, args.retry_rate)
                ledger.save_trees(run.tree)
                if run.done:
                    statuses[run.tree.status.value] += 1
                    active.remove(run)
            if ledger.last_position - reported >= PROGRESS_EVERY:
                reported = ledger.last_position
                seconds = time.perf_counter() - started
                print(
                    f"generate: {reported:>10,} notifications, {trees:,} trees, "
                    f"{seconds:6.1f} s, {reported / seconds:,.0f}/s",
                    file=sys.stderr,
                    flush=True,
                )
        seconds = time.perf_counter() - started
        head = ledger.recorder.max_notification_id() or 0
        topics = log_counts(settings, ledger)
    finally:
        ledger.close()
    record = {
        "parameters": parameters(args),
        "head": head,
        "notifications": sum(topics.values()),
        "tree_events": sum(n for t, n in topics.items() if t.startswith("tree.")),
        "topics": dict(sorted(topics.items())),
        "trees": trees,
        "tasks": tasks,
        "tree_statuses": dict(sorted(statuses.items())),
        "generate_s": round(seconds, 2),
        "generate_peak_rss_mib": round(peak_rss_mib(), 1),
    }
    (settings.home / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def prepare(args: argparse.Namespace, settings: Settings) -> tuple[dict[str, Any], bool]:
    """The generator's record, generating the store first unless a cached one fits."""
    settings.home.mkdir(parents=True, exist_ok=True)
    record = cached(args, settings)
    if record is not None:
        return record, True
    clear_store(settings)
    child = multiprocessing.get_context("fork").Process(target=generate, args=(args,))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"FAILED: the generator exited with {child.exitcode}")
    record = cached(args, settings)
    if record is None:
        raise SystemExit("FAILED: the generated store does not match its record")
    return record, False


# -- the rebuild -----------------------------------------------------------------------------
class Timers:
    """Seconds spent in named calls, by wrapping them on the instances (not the classes)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        func = getattr(owner, attribute)
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start

        setattr(owner, attribute, timed)


def read_model_rows(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        counts = {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (*rm.READ_MODELS, rm.positions)
        }
        by_status = conn.execute(
            sa.select(rm.trees.c.status, sa.func.count()).group_by(rm.trees.c.status)
        ).all()
        counted = conn.execute(sa.select(sa.func.sum(rm.task_counts.c.count))).scalar()
    return {
        "rows": counts,
        "tree_statuses": dict(sorted(by_status)),
        "task_counts_total": int(counted or 0),
    }


def check(record: dict[str, Any], rows: dict[str, Any], applied: int, position: int) -> list[str]:
    problems = []
    if applied != record["tree_events"] or position != record["head"]:
        problems.append(
            f"applied {applied} tree events up to {position}; the log holds "
            f"{record['tree_events']} up to {record['head']}"
        )
    if rows["rows"]["fl_trees"] != record["trees"]:
        problems.append(f"{rows['rows']['fl_trees']} tree rows for {record['trees']} trees")
    if rows["rows"]["fl_tasks"] != record["tasks"]:
        problems.append(f"{rows['rows']['fl_tasks']} task rows for {record['tasks']} tasks")
    if rows["task_counts_total"] != record["tasks"]:
        problems.append(f"fl_task_counts adds up to {rows['task_counts_total']}")
    if rows["tree_statuses"] != record["tree_statuses"]:
        problems.append(f"tree statuses {rows['tree_statuses']} != {record['tree_statuses']}")
    return problems


def events_analyzed(settings: Settings, ledger: Ledger, analyze: bool) -> bool | None:
    """PostgreSQL: whether the events table has planner statistics (ANALYZE it first when
    `analyze`); None on SQLite. Without them (a server whose autovacuum has not run since
    the log grew), the planner may misjudge the projector's range queries."""
    if settings.database_url is None:
        return None
    import psycopg

    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        if analyze:
            conn.execute(f'ANALYZE "{settings.database_schema}"."{table}"')
        found = conn.execute(
            "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL "
            "FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
            (settings.database_schema, table),
        ).fetchone()
    return bool(found and found[0])


def measure_rebuild(
    settings: Settings, record: dict[str, Any], profile: str | None, analyze: bool = False
) -> dict[str, Any]:
    if settings.database_url is None:  # fresh read models: no large tables to drop first
        for suffix in ("", "-wal", "-shm"):
            (settings.home / f"readmodels.sqlite3{suffix}").unlink(missing_ok=True)
    ledger = Ledger(settings)
    analyzed = events_analyzed(settings, ledger, analyze)
    engine = create_read_engine(settings)
    try:
        projector = Projector(ledger, engine)
        timers = Timers()
        timers.wrap(ledger.recorder, "select_notifications", "read notifications")
        timers.wrap(projector, "_decode", "decode")
        timers.wrap(projector, "_prefetch", "prefetch")
        timers.wrap(projector, "_write", "write")
        head = projector.head()
        marks: dict[str, float] = {}
        read = ledger.recorder.select_notifications

        def first_read(*args: Any, **kwargs: Any) -> Any:
            marks.setdefault("first read", time.perf_counter())
            return read(*args, **kwargs)

        ledger.recorder.select_notifications = first_read  # type: ignore[method-assign]
        on_batch = progress_printer(head)
        profiler = cProfile.Profile() if profile else None
        rss_before = current_rss_mib()
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        applied = projector.rebuild(on_batch=on_batch)
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - start
        position = projector.last_position
        rows = read_model_rows(engine)
    finally:
        engine.dispose()
        ledger.close()
    if profiler is not None and profile:
        profiler.dump_stats(profile)
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats(25)
    t = timers.seconds
    steps = {
        "lock, empty the tables": marks.get("first read", start) - start,
        "read notifications": t["read notifications"],
        "decode": t["decode"],
        "prefetch": t["prefetch"],
        "write rows": t["write"],
    }
    # the fold in memory, the rows of removed tasks, the position and the one commit
    steps["fold, position, commit"] = seconds - sum(steps.values())
    result = {
        "notifications": position,  # every log entry up to here was covered
        "tree_events": applied,  # the ones read and applied (task-id claims are skipped)
        "rebuild_s": round(seconds, 3),
        "notifications_per_s": round(position / seconds),
        "tree_events_per_s": round(applied / seconds),
        "batch": REBUILD_BATCH,
        "steps_s": {k: round(v, 3) for k, v in steps.items()},
        "events_table_analyzed": analyzed,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_before_mib": round(rss_before, 1),
        "read_models": rows,
    }
    problems = check(record, rows, applied, position)
    result["check"] = problems or "ok"
    return result


def progress_printer(head: int) -> Callable[[int, int], None]:
    start = time.perf_counter()
    state = {"done": 0, "shown": 0}

    def on_batch(position: int, applied: int) -> None:
        state["done"] += applied
        if state["done"] - state["shown"] >= PROGRESS_EVERY or position >= head:
            state["shown"] = state["done"]
            seconds = time.perf_counter() - start
            print(
                f"rebuild: {state['done']:>10,} tree events (position {position:,} of "
                f"{head:,}), {seconds:6.1f} s, {position / seconds:,.0f} log entries/s, "
                f"RSS {current_rss_mib():,.0f} MiB",
                file=sys.stderr,
                flush=True,
            )

    return on_batch


# -- output ---------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sa.__version__,
        "platform": platform.platform(),
    }


def print_report(doc: dict[str, Any]) -> None:
    g, r = doc["generation"], doc["rebuild"]
    m = doc["machine"]
    print(
        f"store: {doc['store']}  dir: {doc['dir']}  cpus: {m['cpus']}  python {m['python']}  "
        f"sqlite {m['sqlite']}  sqlalchemy {m['sqlalchemy']}"
    )
    how = "reused (cached)" if g["cached"] else f"generated in {g['generate_s']:.1f} s"
    print(
        f"log: {g['notifications']:,} notifications ({g['tree_events']:,} tree events, "
        f"{g['notifications'] - g['tree_events']:,} task-id claims), {g['trees']:,} trees of "
        f"{doc['parameters']['tree_size']} tasks ({g['tasks']:,} tasks); {how}"
        + ("" if g["cached"] else f", generator peak RSS {g['generate_peak_rss_mib']:.0f} MiB")
    )
    print("topics: " + ", ".join(f"{t} {n:,}" for t, n in g["topics"].items()))
    print()
    print(
        f"{'notifications':>13} {'tree events':>11} {'rebuild s':>10} {'notif/s':>9} "
        f"{'tree ev/s':>9} {'peak RSS MiB':>13} {'tasks rows':>10} {'trees rows':>10} "
        f"{'count rows':>10}"
    )
    rows = r["read_models"]["rows"]
    print(
        f"{r['notifications']:>13,} {r['tree_events']:>11,} {r['rebuild_s']:>10.2f} "
        f"{r['notifications_per_s']:>9,} {r['tree_events_per_s']:>9,} "
        f"{r['peak_rss_mib']:>13.0f} {rows['fl_tasks']:>10,} {rows['fl_trees']:>10,} "
        f"{rows['fl_task_counts']:>10,}"
    )
    print()
    print("time inside the rebuild:")
    for name, seconds in r["steps_s"].items():
        print(f"  {name:<40} {seconds:8.2f} s  {seconds / r['rebuild_s']:6.1%}")
    print(f"tree statuses: {r['read_models']['tree_statuses']}")
    if r["events_table_analyzed"] is not None:
        print(f"events table analyzed (planner statistics): {r['events_table_analyzed']}")
    print(f"check: {r['check'] if r['check'] == 'ok' else '; '.join(r['check'])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="notifications wanted")
    parser.add_argument("--tree-size", type=int, default=50, help="tasks per tree")
    parser.add_argument("--interleave", type=int, default=8, help="trees running at once")
    parser.add_argument("--step", type=int, default=16, help="attempts started per step")
    parser.add_argument("--fail-rate", type=float, default=0.002, help="attempts that fail")
    parser.add_argument(
        "--retry-rate", type=float, default=0.01, help="first attempts that fail and retry"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--store",
        metavar="DIR",
        help="the store's home, reused when it holds the same log "
        "(default /tmp/flowledger-bench-projections/<events>-<tree-size>[-<schema>])",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL: events and read models in --schema")
    parser.add_argument("--schema", default="fl_bench_proj", help="PostgreSQL schema")
    parser.add_argument(
        "--drop", action="store_true", help="drop the PostgreSQL schema (and cache) at the end"
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="PostgreSQL: ANALYZE the events table before the rebuild (as autovacuum would)",
    )
    parser.add_argument(
        "--cprofile", metavar="FILE", help="profile the rebuild: stats to FILE, top to stderr"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    if args.events < 1 or args.tree_size < 1 or args.interleave < 1 or args.step < 1:
        parser.error("--events, --tree-size, --interleave and --step must be positive")
    if min(args.fail_rate, args.retry_rate) < 0 or args.fail_rate + args.retry_rate >= 1:
        parser.error("--fail-rate and --retry-rate are fractions adding up to less than 1")
    if args.store is None:
        name = f"{args.events}-{args.tree_size}"
        if args.database_url:
            name += f"-{args.schema}"
        args.store = f"/tmp/flowledger-bench-projections/{name}"

    settings = settings_for(args)
    record, reused = prepare(args, settings)
    try:
        result = measure_rebuild(settings, record, args.cprofile, args.analyze)
    finally:
        if args.drop and args.database_url:
            drop_schema(settings)
            shutil.rmtree(settings.home, ignore_errors=True)
    doc = {
        "benchmark": "projections",
        "store": "postgresql" if args.database_url else "sqlite",
        "dir": str(settings.home),
        "parameters": parameters(args),
        "machine": machine(),
        "generation": {
            "cached": reused,
            **{k: v for k, v in record.items() if k != "parameters"},
        },
        "rebuild": result,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_report(doc)
    if result["check"] != "ok":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
