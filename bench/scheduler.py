"""Scheduling overhead of the Runner: no-op trees run by flowledger vs. a bare asyncio loop.

Run: python -m bench.scheduler [--sizes 1000,10000,100000] [--shapes flat,chain,layered]
     [--concurrency 16] [--budget-s 120] [--database-url postgresql://...] [--json FILE]
Embedded SQLite by default (a temporary FLOWLEDGER_HOME per case); with --database-url each
case uses a fresh PostgreSQL schema, dropped after.

Shapes (n tasks in all, the root included; every task but the root runs the noop executor):
  flat     a grouping root with n-1 children
  chain    children of the root, each depending on the previous one
  layered  children of the root in 10 layers; task j of a layer depends on tasks j and j+1
           (mod the width) of the layer above

For each case: create s is ledger.create_tree; run s is the whole `async with Runner(...)`
block around runner.run (the tree's lock, the store thread and the watcher included); the
baseline schedules the same graph in memory (a ready heap by priority then creation order,
at most C asyncio tasks each awaiting a no-op coroutine; best of 3). Overhead per task is
(run s - baseline s) / n. Peak RSS is the process's high-water mark so far (sizes run in
ascending order). A case whose time, estimated from the previous size of its shape, exceeds
--budget-s is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import json
import os
import platform
import resource
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from application.config import Settings
from application.ledger import Ledger
from application.runner import Runner
from bench.reload import fresh_schema
from domain.status import TaskStatus, TreeStatus

SHAPES = ("flat", "chain", "layered")
LAYERS = 10
BASELINE_REPEAT = 3


# -- the trees ------------------------------------------------------------------------------
def _task(i: int, deps: list[int]) -> dict[str, object]:
    return {
        "id": f"t{i}",
        "name": f"t{i}",
        "parent_id": "root",
        "priority": i % 4,
        "schemas": {"method": "noop"},
        "dependencies": [f"t{d}" for d in deps],
    }


def layer_widths(children: int) -> list[int]:
    """`children` tasks spread over LAYERS layers (widths differ by at most one)."""
    base, extra = divmod(children, LAYERS)
    return [w for w in (base + (k < extra) for k in range(LAYERS)) if w]


def dependencies(shape: str, size: int) -> list[list[int]]:
    """deps[i] = the task numbers (1..size-1) that task i depends on; deps[0] is the root."""
    deps: list[list[int]] = [[] for _ in range(size)]
    if shape == "flat":
        return deps
    if shape == "chain":
        for i in range(2, size):
            deps[i] = [i - 1]
        return deps
    if shape == "layered":
        first = 1
        above: tuple[int, int] | None = None  # (first task number, width) of the layer above
        for width in layer_widths(size - 1):
            if above is not None:
                top, top_width = above
                for j in range(width):
                    pair = {top + j % top_width, top + (j + 1) % top_width}
                    deps[first + j] = sorted(pair)
            above = (first, width)
            first += width
        return deps
    raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")


def tree_payload(deps: list[list[int]]) -> list[dict[str, object]]:
    tasks: list[dict[str, object]] = [{"id": "root", "name": "root"}]
    tasks += [_task(i, deps[i]) for i in range(1, len(deps))]
    return tasks


# -- the baseline: the same scheduling, in memory -------------------------------------------
async def noop() -> None:
    return None


async def baseline(deps: list[list[int]], concurrency: int) -> float:
    """Run the graph (task 0 a grouping node done at once, the others a no-op coroutine)
    with at most `concurrency` running; return the wall time in seconds."""
    start = time.perf_counter()
    size = len(deps)
    priority = [2] + [i % 4 for i in range(1, size)]
    waiting = [len(d) for d in deps]
    dependents: list[list[int]] = [[] for _ in range(size)]
    for i, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(i)
    ready = [(priority[i], i) for i in range(size) if not waiting[i]]
    heapq.heapify(ready)
    finished: list[int] = []
    wake = asyncio.Event()
    running = 0
    done = 0

    def complete(i: int) -> None:
        nonlocal done
        done += 1
        for k in dependents[i]:
            waiting[k] -= 1
            if not waiting[k]:
                heapq.heappush(ready, (priority[k], k))

    def ended(i: int) -> None:
        finished.append(i)
        wake.set()

    async def attempt(i: int) -> None:
        await noop()
        ended(i)

    jobs: set[asyncio.Task[None]] = set()
    while True:
        while ready and running < concurrency:
            _, i = heapq.heappop(ready)
            if i == 0:  # the grouping root: no executor, done at once
                complete(i)
                continue
            running += 1
            job = asyncio.create_task(attempt(i))
            jobs.add(job)
            job.add_done_callback(jobs.discard)
        if done == size:
            break
        if not finished:
            if not running:
                raise RuntimeError(f"baseline stalled after {done} of {size} tasks")
            await wake.wait()
        wake.clear()
        batch, finished[:] = finished[:], []
        for i in batch:
            running -= 1
            complete(i)
    return time.perf_counter() - start


# -- one case -------------------------------------------------------------------------------
@dataclass
class Case:
    shape: str
    tasks: int
    create_s: float
    run_s: float
    baseline_s: float
    events: int
    saves: int
    peak_rss_mib: float

    @property
    def total_s(self) -> float:
        return self.create_s + self.run_s + self.baseline_s

    def row(self) -> dict[str, Any]:
        n = self.tasks
        return {
            "shape": self.shape,
            "tasks": n,
            "create_s": round(self.create_s, 4),
            "run_s": round(self.run_s, 4),
            "baseline_s": round(self.baseline_s, 5),
            "overhead_us_per_task": round((self.run_s - self.baseline_s) / n * 1e6, 2),
            "flowledger_us_per_task": round(self.run_s / n * 1e6, 2),
            "baseline_us_per_task": round(self.baseline_s / n * 1e6, 3),
            "ratio": round(self.run_s / self.baseline_s, 1),
            "events": self.events,
            "saves": self.saves,
            "peak_rss_mib": round(self.peak_rss_mib, 1),
        }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_completed(tree: Any, size: int, where: str) -> None:
    """Fail loudly unless the tree completed with every one of its `size` tasks."""
    counts = Counter(task.status for task in tree.tasks.values())
    if (
        tree.status is not TreeStatus.COMPLETED
        or len(tree.tasks) != size
        or counts[TaskStatus.COMPLETED] != size
    ):
        shown = {str(s): n for s, n in counts.items()}
        raise SystemExit(
            f"FAILED ({where}): tree {tree.id} is {tree.status}, "
            f"{len(tree.tasks)} tasks (expected {size}), statuses {shown}"
        )


async def run_tree(ledger: Ledger, tree_id: Any, concurrency: int) -> tuple[Any, float, int]:
    saves = 0

    def count(tree: Any, events: list[Any]) -> None:
        nonlocal saves
        saves += 1

    start = time.perf_counter()
    async with Runner(ledger, concurrency=concurrency) as runner:
        runner.listeners.append(count)
        tree = await runner.run(tree_id)
    return tree, time.perf_counter() - start, saves


def measure(
    shape: str,
    size: int,
    concurrency: int,
    database_url: str | None,
    schema: str | None,
    synchronous: str = "NORMAL",
) -> Case:
    deps = dependencies(shape, size)
    payload = tree_payload(deps)
    with tempfile.TemporaryDirectory() as home:
        ledger = Ledger(
            Settings(
                home=Path(home),
                database_url=database_url,
                database_schema=schema,
                sqlite_synchronous=synchronous,
            )
        )
        try:
            gc.collect()
            start = time.perf_counter()
            tree = ledger.create_tree(payload)
            created = time.perf_counter() - start
            del payload
            gc.collect()
            ran, run_s, saves = asyncio.run(run_tree(ledger, tree.id, concurrency))
            check_completed(ran, size, f"{shape} {size}, as run")
            check_completed(ledger.load(tree.id), size, f"{shape} {size}, reloaded")
            events = ran.version
        finally:
            ledger.close()
    del tree, ran
    gc.collect()
    base = min(asyncio.run(baseline(deps, concurrency)) for _ in range(BASELINE_REPEAT))
    return Case(shape, size, created, run_s, base, events, saves, peak_rss_mib())


# -- output ---------------------------------------------------------------------------------
HEADER = (
    f"{'shape':<8} {'tasks':>7} {'create s':>9} {'run s':>8} {'overhead us/task':>17} "
    f"{'flowledger us/task':>19} {'baseline us/task':>17} {'run/baseline':>13} "
    f"{'events':>7} {'saves':>7} {'peak RSS MiB':>13}"
)


def format_row(r: dict[str, Any]) -> str:
    return (
        f"{r['shape']:<8} {r['tasks']:>7} {r['create_s']:>9.2f} {r['run_s']:>8.2f} "
        f"{r['overhead_us_per_task']:>17.0f} {r['flowledger_us_per_task']:>19.0f} "
        f"{r['baseline_us_per_task']:>17.1f} {r['ratio']:>13.0f} "
        f"{r['events']:>7} {r['saves']:>7} {r['peak_rss_mib']:>13.0f}"
    )


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=120.0,
        help="skip a case estimated (from the previous size of its shape) to take longer",
    )
    parser.add_argument(
        "--database-url", help="PostgreSQL URL; each case uses a fresh schema, dropped after"
    )
    parser.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="NORMAL",
        help="SQLite PRAGMA synchronous (FLOWLEDGER_SQLITE_SYNCHRONOUS); NORMAL is the default",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE as JSON")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for shape in shapes:
        if shape not in SHAPES:
            parser.error(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    if any(size < 2 for size in sizes) or args.concurrency < 1:
        parser.error("sizes must be at least 2 and the concurrency at least 1")

    store = "postgresql" if args.database_url else "sqlite"
    info = machine()
    print(
        f"store: {store}  synchronous: {args.synchronous}  concurrency: {args.concurrency}  "
        f"cpus: {info['cpus']}  "
        f"python {info['python']}  sqlite {info['sqlite']}"
    )
    print(HEADER, flush=True)
    rows: list[dict[str, Any]] = []
    last: dict[str, Case] = {}
    for size in sizes:
        for shape in shapes:
            previous = last.get(shape)
            if previous is not None:
                estimate = previous.total_s * size / previous.tasks
                if estimate > args.budget_s:
                    print(f"{shape:<8} {size:>7} skipped (estimated {estimate:.0f} s)", flush=True)
                    rows.append(
                        {
                            "shape": shape,
                            "tasks": size,
                            "skipped": True,
                            "estimate_s": round(estimate, 1),
                        }
                    )
                    continue
            with fresh_schema(args.database_url) as schema:
                case = measure(
                    shape, size, args.concurrency, args.database_url, schema, args.synchronous
                )
            last[shape] = case
            row = case.row()
            rows.append(row)
            print(format_row(row), flush=True)
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    if args.json:
        document = {
            "benchmark": "scheduler",
            "store": store,
            "concurrency": args.concurrency,
            "machine": info,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
