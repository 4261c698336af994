"""Create, record and reload big trees: reload from a snapshot vs. a full replay.

Run: python -m bench.reload [--sizes 1000,10000,100000] [--database-url postgresql://...]
Embedded SQLite by default. Prints one row per size, then the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from application.config import Settings
from application.ledger import Ledger


def flat_tree(size: int) -> list[dict[str, object]]:
    tasks: list[dict[str, object]] = [{"id": "root", "name": "root"}]
    tasks += [
        {"id": f"t{i}", "name": f"t{i}", "parent_id": "root", "priority": i % 4}
        for i in range(1, size)
    ]
    return tasks


def best_of(repeat: int, func: object) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def measure(size: int, database_url: str | None, schema: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        ledger = Ledger(
            Settings(home=Path(home), database_url=database_url, database_schema=schema)
        )
        start = time.perf_counter()
        tree = ledger.create_tree(flat_tree(size))
        created = time.perf_counter() - start
        # Record a run of every task (Started + Completed) in steps of 100 tasks a save.
        tree.request_run()
        ids = list(tree.tasks)
        start = time.perf_counter()
        for n, task_id in enumerate(ids, 1):
            tree.start(task_id, 1, {})
            tree.complete(task_id, None)
            if n % 100 == 0:
                ledger.save_trees(tree)
        ledger.save_trees(tree)
        recorded = time.perf_counter() - start
        events = tree.version
        snapshot = best_of(3, lambda: ledger.load(tree.id))
        replay = best_of(1, lambda: ledger.replay(tree.id))
        ledger.close()
    return {
        "create_s": created,
        "record_us_per_task": recorded / size * 1e6,
        "events": events,
        "reload_snapshot_ms": snapshot * 1e3,
        "replay_ms": replay * 1e3,
    }


@contextmanager
def fresh_schema(database_url: str | None) -> Iterator[str | None]:
    if database_url is None:
        yield None
        return
    import psycopg

    schema = f"fl_bench_{uuid.uuid4().hex[:8]}"  # the Ledger creates it
    try:
        yield schema
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument(
        "--database-url", help="PostgreSQL URL; the run uses a fresh schema, dropped after"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"store: {'postgresql' if args.database_url else 'sqlite'}")
    print(
        f"{'tasks':>8} {'events':>8} {'create s':>9} {'record us/task':>15} "
        f"{'reload (snapshot) ms':>21} {'full replay ms':>15}"
    )
    for size in sizes:
        with fresh_schema(args.database_url) as schema:
            r = measure(size, args.database_url, schema)
        print(
            f"{size:>8} {r['events']:>8.0f} {r['create_s']:>9.2f} "
            f"{r['record_us_per_task']:>15.0f} {r['reload_snapshot_ms']:>21.1f} "
            f"{r['replay_ms']:>15.1f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
