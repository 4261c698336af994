"""A big flat tree end to end: created in one transaction, run with no-op executors, reloaded
(snapshot vs. full replay) and queried through the read models, with the memory it takes.

Run: python -m bench.big_tree [--sizes 1000,10000,100000] [--concurrency 16]
     [--database-url postgresql://...] [--json FILE]
Embedded SQLite by default (a temporary FLOWLEDGER_HOME per size); with --database-url each
size uses a fresh PostgreSQL schema, dropped after. `python -m bench all` runs each size in
a process of its own, so each peak RSS is that size's alone.

The tree: a grouping root and size-1 children running the noop executor (bench.scheduler's
flat shape). For each size:
- create s: ledger.create_tree (validation, the Created event and one task-id claim per task).
  One transaction, checked three ways: the event store's insert calls (one per transaction
  in eventsourcing's recorders) and, on SQLite, the COMMITs the connections issued; the log
  positions it took (size + 1 entries, contiguous); on PostgreSQL also the number of
  distinct transaction ids (xmin) among those rows.
- run s: `async with Runner(...)` around runner.run (bench.scheduler.run_tree), concurrency
  --concurrency; the tree is checked completed in memory and as reloaded. end to end s is
  create s + run s (target < 30 s at 100,000 tasks on SQLite).
- reload: ledger.load (latest snapshot + the events after it; best of 3) vs. ledger.replay
  (every event; once), of the tree as the run left it.
- read models: a Projector catches up from an empty read model (every entry of the log),
  then, best of 3: tasks.tree (ReadModel.tree of the root, encoded to JSON as the server
  would), tasks.children of the root, tasks.get of one child.
- memory: RSS when the store is open (before anything is built), the peak after create,
  after the run, and at the end; growth per task = (peak after run - start RSS) / size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from application.config import Settings
from application.ledger import Ledger
from bench.reload import best_of, fresh_schema
from bench.scheduler import check_completed, dependencies, machine, run_tree, tree_payload

QUERY_REPEAT = 3


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextlib.contextmanager
def counting_transactions(ledger: Ledger) -> Iterator[dict[str, int]]:
    """Count, while inside, the event store's insert calls (each is one transaction in
    eventsourcing's recorders) and, on SQLite, the COMMITs issued on its connections."""
    counts = {"insert_calls": 0, "snapshot_insert_calls": 0, "sqlite_commits": 0}
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, key: str) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return original(*args, **kwargs)

        patched.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, counted)

    wrap(ledger.recorder, "insert_events", "insert_calls")
    if ledger.snapshots is not None:
        wrap(ledger.snapshots.recorder, "insert_events", "snapshot_insert_calls")
    if ledger.settings.database_url is None:
        from eventsourcing.sqlite import SQLiteConnection

        wrap(SQLiteConnection, "commit", "sqlite_commits")
    try:
        yield counts
    finally:
        for owner, name, before in reversed(patched):
            if before is None:
                delattr(owner, name)
            else:
                setattr(owner, name, before)


def creation_log(ledger: Ledger, first: int, last: int) -> dict[str, Any]:
    """What the log holds between two positions: entries, whether contiguous, topics, and on
    PostgreSQL the number of distinct transactions (xmin) that wrote them."""
    recorder: Any = ledger.recorder
    found = recorder.select_notifications(first, last - first + 1, stop=last)
    ids = [n.id for n in found]
    topics: dict[str, int] = {}
    for n in found:
        topic = n.topic.split("/")[0]
        topics[topic] = topics.get(topic, 0) + 1
    out: dict[str, Any] = {
        "first_position": first,
        "last_position": last,
        "entries": len(ids),
        "contiguous": ids == list(range(first, last + 1)),
        "topics": topics,
    }
    settings = ledger.settings
    if settings.database_url is not None:
        import psycopg

        table = f'"{settings.database_schema}"."{recorder.events_table_name}"'
        with psycopg.connect(settings.database_url) as conn:
            row = conn.execute(
                f"SELECT count(DISTINCT xmin::text) FROM {table} "
                "WHERE notification_id BETWEEN %s AND %s",
                (first, last),
            ).fetchone()
        out["postgres_transactions"] = int(row[0]) if row else None
    return out


def timed(func: Callable[[], Any], repeat: int = QUERY_REPEAT) -> tuple[float, Any]:
    """Best time of `repeat` calls (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def query_read_models(ledger: Ledger, size: int) -> dict[str, Any]:
    from projections.projector import Projector
    from projections.queries import ReadModel
    from projections.schema import create_read_engine

    engine = create_read_engine(ledger.settings)
    try:
        projector = Projector(ledger, engine)
        start = time.perf_counter()
        applied = projector.catch_up()
        catch_up_s = time.perf_counter() - start
        reads = engine
        if ledger.settings.database_url is not None:  # as the server reads (orchestrator.py)
            reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        model = ReadModel(reads)
        encode = msgspec.json.encode
        tree_s, tree_json = timed(lambda: encode(model.tree("root")))
        children_s, children = timed(lambda: model.children("root"))
        get_s, _ = timed(lambda: model.task(f"t{size // 2}"))
    finally:
        engine.dispose()
    if len(children) != size - 1:
        raise SystemExit(f"FAILED: tasks.children gave {len(children)} of {size - 1}")
    return {
        "read_models_catch_up_s": round(catch_up_s, 3),
        "read_models_events_applied": applied,
        "read_models_events_per_s": round(applied / catch_up_s) if catch_up_s else None,
        "tasks_tree_ms": round(tree_s * 1e3, 2),
        "tasks_tree_json_mib": round(len(tree_json) / 2**20, 2),
        "tasks_children_ms": round(children_s * 1e3, 2),
        "tasks_get_ms": round(get_s * 1e3, 3),
    }


def measure(
    size: int, concurrency: int, database_url: str | None, schema: str | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), database_url=database_url, database_schema=schema)
        ledger = Ledger(settings)
        try:
            gc.collect()
            rss_start = current_rss_mib()
            payload = tree_payload(dependencies("flat", size))
            head_before = ledger.recorder.max_notification_id() or 0
            gc.collect()
            with counting_transactions(ledger) as counts:
                start = time.perf_counter()
                tree = ledger.create_tree(payload)
                create_s = time.perf_counter() - start
            head_after = ledger.recorder.max_notification_id() or 0
            peak_after_create = peak_rss_mib()
            del payload
            gc.collect()
            log = creation_log(ledger, head_before + 1, head_after)
            one_transaction = (
                counts["insert_calls"] == 1
                and log["entries"] == size + 1
                and log["contiguous"]
                and (database_url is not None or counts["sqlite_commits"] == 1)
                and log.get("postgres_transactions", 1) == 1
            )
            ran, run_s, saves = asyncio.run(run_tree(ledger, tree.id, concurrency))
            peak_after_run = peak_rss_mib()
            check_completed(ran, size, f"flat {size}, as run")
            events = ran.version
            del tree, ran
            gc.collect()
            snapshot_s = best_of(3, lambda: ledger.load(ledger.tree_id_of("root")))
            check_completed(ledger.load(ledger.tree_id_of("root")), size, f"flat {size}, reloaded")
            replay_s = best_of(1, lambda: ledger.replay(ledger.tree_id_of("root")))
            gc.collect()
            queries = query_read_models(ledger, size)
        finally:
            ledger.close()
    growth = max(0.0, peak_after_run - rss_start)
    return {
        "tasks": size,
        "create_s": round(create_s, 3),
        "create_transactions": {**counts, **log, "one_transaction": one_transaction},
        "run_s": round(run_s, 3),
        "end_to_end_s": round(create_s + run_s, 3),
        "run_us_per_task": round(run_s / size * 1e6, 1),
        "events": events,
        "run_commits": saves,
        "reload_snapshot_ms": round(snapshot_s * 1e3, 2),
        "replay_ms": round(replay_s * 1e3, 2),
        **queries,
        "rss_start_mib": round(rss_start, 1),
        "peak_rss_after_create_mib": round(peak_after_create, 1),
        "peak_rss_after_run_mib": round(peak_after_run, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_growth_kib_per_task": round(growth * 1024 / size, 2),
    }


HEADER = (
    f"{'tasks':>7} {'create s':>9} {'1 txn':>5} {'run s':>7} {'e2e s':>7} {'commits':>7} "
    f"{'snapshot ms':>11} {'replay ms':>10} {'RM catch-up s':>13} {'tree ms':>8} "
    f"{'children ms':>11} {'peak MiB':>8} {'KiB/task':>8}"
)


def format_row(r: dict[str, Any]) -> str:
    return (
        f"{r['tasks']:>7} {r['create_s']:>9.2f} "
        f"{'yes' if r['create_transactions']['one_transaction'] else 'NO':>5} "
        f"{r['run_s']:>7.2f} {r['end_to_end_s']:>7.2f} {r['run_commits']:>7} "
        f"{r['reload_snapshot_ms']:>11.1f} {r['replay_ms']:>10.1f} "
        f"{r['read_models_catch_up_s']:>13.2f} {r['tasks_tree_ms']:>8.1f} "
        f"{r['tasks_children_ms']:>11.1f} {r['peak_rss_mib']:>8.0f} "
        f"{r['rss_growth_kib_per_task']:>8.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--database-url", help="PostgreSQL URL; each size uses a fresh schema, dropped after"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE as JSON")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if any(size < 2 for size in sizes) or args.concurrency < 1:
        parser.error("sizes must be at least 2 and the concurrency at least 1")
    store = "postgresql" if args.database_url else "sqlite"
    info = machine()
    print(
        f"store: {store}  concurrency: {args.concurrency}  cpus: {info['cpus']}  "
        f"python {info['python']}  sqlite {info['sqlite']}"
    )
    print(HEADER, flush=True)
    rows = []
    for size in sizes:
        with fresh_schema(args.database_url) as schema:
            row = measure(size, args.concurrency, args.database_url, schema)
        rows.append(row)
        print(format_row(row), flush=True)
    if args.json:
        document = {
            "benchmark": "big_tree",
            "store": store,
            "concurrency": args.concurrency,
            "machine": info,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if not all(r["create_transactions"]["one_transaction"] for r in rows):
        print("FAILED: a creation took more than one transaction", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
