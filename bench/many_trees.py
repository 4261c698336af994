"""Many small trees at once through a served process: throughput, the concurrency limit as
the event log records it, and fairness across trees of the same priority.

Run: python -m bench.many_trees [--trees 1000] [--tree-size 3] [--concurrency 16]
     [--clients 16] [--database-url postgresql://...] [--json FILE] [--py-spy FILE]

Starts `flowledger serve` (bench.api.started_server: a free 127.0.0.1 port, a temporary
FLOWLEDGER_HOME, or with --database-url a fresh PostgreSQL schema dropped at the end) with
FLOWLEDGER_CONCURRENCY=--concurrency. --clients connections then send, back to back and
as fast as the server answers, one `tasks.execute` each for --trees trees (a grouping root
and --tree-size - 1 children running the noop executor, every task at the same priority),
without waiting for them to finish; then system.health is polled until no tree runs.

Then the event log (the server's own store, read by this process once the server is idle)
tells, for every tree: its submission (the Created event: log position and timestamp), its
first Started, and its completion (the event that made its last task terminal). Reported:
- throughput: trees/s and tasks/s over the makespan (first Created to last completion);
- the most executor tasks in progress at once, replaying Started (+1) and Completed,
  Failed, AttemptFailed, Cancelled (-1) in log order: it must never exceed the limit;
- fairness: each tree's latency (Created to completion), with p50/p99/max and Jain's
  index over the latencies; the completion order against the submission order (Spearman's
  rank correlation, and for each tree how many trees submitted after it finished before
  it: "overtaken by").
Not starving, in numbers: every tree completes, and no tree is overtaken by more than
OVERTAKE_FACTOR x the concurrency limit of later trees. With C slots at most C executor
tasks of different trees run side by side, so later trees can finish first only by about
that many; a scheduler that let later trees (or one tree) take the slots would leave an
early tree overtaken by hundreds. (Jain's index is 1 when all latencies are equal; a batch
served in submission order gives latencies spread evenly from ~0 to the makespan, about
0.75, which is fair too: it is shown, not judged.)
--py-spy FILE samples the server with py-spy (raw collapsed stacks, for bench.profile).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.api import (
    RawConnection,
    Server,
    cpu_model,
    drop_schema,
    rpc,
    rpc_body,
    started_server,
    wait_until_healthy,
)

OVERTAKE_FACTOR = 2
FINISH_TIMEOUT_S = 900.0
POLL_S = 0.1
PAGE = 10_000


# -- submitting -----------------------------------------------------------------------------
def tree_payload(prefix: str, number: int, size: int) -> list[dict[str, Any]]:
    root = f"{prefix}{number}"
    tasks: list[dict[str, Any]] = [{"id": root, "name": f"tree {number}", "user_id": "bench"}]
    tasks += [
        {
            "id": f"{root}.{k}",
            "name": f"task {k}",
            "parent_id": root,
            "schemas": {"method": "noop"},
            "inputs": {"k": k},
        }
        for k in range(1, size)
    ]
    return tasks


@dataclass
class Submitted:
    acked_s: dict[int, float] = field(default_factory=dict)  # tree number -> ack time
    errors: list[str] = field(default_factory=list)
    started_s: float = 0.0
    done_s: float = 0.0


async def submit(server: Server, prefix: str, trees: int, size: int, clients: int) -> Submitted:
    found = Submitted()
    numbers = iter(range(trees))
    clock = time.perf_counter
    decode = msgspec.json.decode

    async def worker() -> None:
        connection = RawConnection(server.url)
        try:
            for n in numbers:
                body = rpc_body("tasks.execute", {"tasks": tree_payload(prefix, n, size)})
                status, content = await connection.post("/tasks", body)
                reply = decode(content) if status == 200 else None
                if not isinstance(reply, dict) or "result" not in reply:
                    found.errors.append(f"tree {n}: {status} {content[:300]!r}")
                else:
                    found.acked_s[n] = clock() - found.started_s
        finally:
            await connection.close()

    found.started_s = clock()
    await asyncio.gather(*(worker() for _ in range(clients)))
    found.done_s = clock() - found.started_s
    return found


async def wait_idle(client: httpx.AsyncClient, timeout_s: float) -> tuple[float, int]:
    """Poll system.health until no tree runs; the time it took and the polls made."""
    start = time.perf_counter()
    polls = 0
    while True:
        health = await rpc(client, "/system", "system.health", {})
        polls += 1
        if health["running"]["trees"] == 0:
            return time.perf_counter() - start, polls
        if time.perf_counter() - start > timeout_s:
            raise SystemExit(f"FAILED: trees still running after {timeout_s:g} s: {health}")
        await asyncio.sleep(POLL_S)


def server_memory_mib(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                out[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


# -- reading the log ------------------------------------------------------------------------
@dataclass
class TreeTrace:
    created_pos: int
    created_at: float  # seconds (POSIX)
    tasks: int
    executor_tasks: frozenset[str]
    first_started_at: float | None = None
    terminal: int = 0
    done_pos: int | None = None
    done_at: float | None = None


def read_log(settings: Any) -> tuple[dict[Any, TreeTrace], dict[str, Any]]:
    """Every tree's trace, and the most executor tasks (and trees) in progress at once."""
    from application.ledger import Ledger
    from domain import events as ev

    ledger = Ledger(settings)
    try:
        mapper: Any = ledger.mapper
        recorder: Any = ledger.recorder
        topics = mapper.topics("tree.")
        traces: dict[Any, TreeTrace] = {}
        running: dict[Any, set[str]] = {}
        in_progress = max_in_progress = max_trees = 0
        ends = (ev.Completed, ev.Failed, ev.AttemptFailed, ev.Cancelled)
        terminal = (ev.Completed, ev.Failed, ev.Skipped, ev.Cancelled)
        start = 1
        while True:
            page = recorder.select_notifications(start, PAGE, topics=topics)
            for n in page:
                event = mapper.to_domain_event(n)
                tree_id = event.originator_id
                at = event.timestamp.timestamp()
                if isinstance(event, ev.Created):
                    traces[tree_id] = TreeTrace(
                        n.id,
                        at,
                        len(event.tasks),
                        frozenset(s.id for s in event.tasks if s.schemas.get("method")),
                    )
                    continue
                trace = traces[tree_id]
                if isinstance(event, ev.Started):
                    if trace.first_started_at is None:
                        trace.first_started_at = at
                    if event.task_id in trace.executor_tasks:
                        running.setdefault(tree_id, set()).add(event.task_id)
                        in_progress += 1
                        max_in_progress = max(max_in_progress, in_progress)
                        max_trees = max(max_trees, len(running))
                if isinstance(event, ends):
                    held = running.get(tree_id)
                    if held is not None and event.task_id in held:
                        held.discard(event.task_id)
                        in_progress -= 1
                        if not held:
                            del running[tree_id]
                if isinstance(event, terminal):
                    trace.terminal += 1
                    if trace.terminal == trace.tasks:
                        trace.done_pos, trace.done_at = n.id, at
            if len(page) < PAGE:
                break
            start = page[-1].id + 1
        found = {"max_in_progress": max_in_progress, "max_trees_in_progress": max_trees}
        if settings.database_url is not None:
            found["transactions"] = postgres_transactions(settings, recorder.events_table_name)
    finally:
        ledger.close()
    return traces, found


def postgres_transactions(settings: Any, table: str) -> int:
    """How many transactions wrote the log (distinct xmin): commits per tree, in effect."""
    import psycopg

    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            f'SELECT count(DISTINCT xmin::text) FROM "{settings.database_schema}"."{table}"'
        ).fetchone()
    return int(row[0]) if row else 0


def ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0] * len(values)
    for rank, i in enumerate(order):
        out[i] = rank
    return out


def spearman(a: list[int], b: list[int]) -> float:
    n = len(a)
    if n < 2:
        return 1.0
    d2 = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


def jain(values: list[float]) -> float:
    squares = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * squares) if squares else 1.0


def overtaken(submitted: list[int], completed: list[int]) -> list[int]:
    """For each tree, how many trees submitted after it completed before it (O(n^2) is
    fine for a few thousand trees)."""
    n = len(submitted)
    by_submission = sorted(range(n), key=submitted.__getitem__)
    out = [0] * n
    for pos, i in enumerate(by_submission):
        out[i] = sum(1 for j in by_submission[pos + 1 :] if completed[j] < completed[i])
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def analyse(traces: dict[Any, TreeTrace], concurrency: int) -> dict[str, Any]:
    done = [t for t in traces.values() if t.done_at is not None]
    if not done:
        return {"trees_completed": 0}
    first = min(t.created_at for t in traces.values())
    last = max(t.done_at for t in done if t.done_at is not None)
    makespan = last - first
    latency = [t.done_at - t.created_at for t in done if t.done_at is not None]
    service = [
        t.done_at - t.first_started_at
        for t in done
        if t.done_at is not None and t.first_started_at is not None
    ]
    waited = [t.first_started_at - t.created_at for t in done if t.first_started_at is not None]
    sub_rank = ranks([float(t.created_pos) for t in done])
    done_rank = ranks([float(t.done_pos or 0) for t in done])
    over = overtaken(sub_rank, done_rank)
    tasks = sum(t.tasks for t in traces.values())
    executed = sum(len(t.executor_tasks) for t in traces.values())
    bound = OVERTAKE_FACTOR * concurrency
    return {
        "trees_completed": len(done),
        "makespan_s": round(makespan, 3),
        "trees_per_s": round(len(done) / makespan, 1) if makespan else None,
        "tasks_per_s": round(tasks / makespan, 1) if makespan else None,
        "executor_tasks_per_s": round(executed / makespan, 1) if makespan else None,
        "latency_s": {
            "mean": round(statistics.fmean(latency), 3),
            "p50": round(pct(latency, 0.5), 3),
            "p90": round(pct(latency, 0.9), 3),
            "p99": round(pct(latency, 0.99), 3),
            "max": round(max(latency), 3),
        },
        "wait_to_first_start_s": {
            "p50": round(pct(waited, 0.5), 3),
            "max": round(max(waited), 3),
        },
        "service_s": {  # first Started to completion
            "p50": round(pct(service, 0.5), 4),
            "p99": round(pct(service, 0.99), 4),
            "max": round(max(service), 4),
        },
        "jain_latency": round(jain(latency), 4),
        "spearman_submission_vs_completion": round(spearman(sub_rank, done_rank), 4),
        "max_rank_displacement": max(abs(a - b) for a, b in zip(sub_rank, done_rank, strict=True)),
        "overtaken_by": {
            "mean": round(statistics.fmean(over), 2),
            "p99": pct([float(o) for o in over], 0.99),
            "max": max(over),
            "bound": bound,
            "trees_over_bound": sum(1 for o in over if o > bound),
        },
    }


# -- the run --------------------------------------------------------------------------------
def start_py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy if spy.exists() else "py-spy"), "record", "--pid", str(pid)]
    command += ["--rate", "250", "--threads", "--nonblocking", "--format", "raw", "--output", out]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attached before the load starts
    return process


def stop_py_spy(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def drive(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    timeout = httpx.Timeout(60.0)
    async with httpx.AsyncClient(base_url=server.url, timeout=timeout) as client:
        health = await wait_until_healthy(client, server)
        limit = health["running"]["concurrency"]
        if limit != args.concurrency:
            raise SystemExit(f"FAILED: the server runs with concurrency {limit}")
        spy = None
        if args.py_spy and server.process is not None:
            spy = start_py_spy(server.process.pid, args.py_spy)
        cpu_before = server.cpu_s()
        prefix = f"mt-{uuid.uuid4().hex[:6]}-"
        submitted = await submit(server, prefix, args.trees, args.tree_size, args.clients)
        idle_s, polls = await wait_idle(client, FINISH_TIMEOUT_S)
        cpu_after = server.cpu_s()
        if spy is not None:
            stop_py_spy(spy)
    wall = submitted.done_s + idle_s
    memory = server_memory_mib(server.process.pid) if server.process is not None else {}
    return {
        "submitted": len(submitted.acked_s),
        "submit_errors": len(submitted.errors),
        "first_submit_error": submitted.errors[0] if submitted.errors else None,
        "submit_s": round(submitted.done_s, 3),
        "submit_per_s": round(len(submitted.acked_s) / submitted.done_s, 1),
        "client_wall_s": round(wall, 3),
        "health_polls": polls,
        "server_cpu_s": None
        if cpu_before is None or cpu_after is None
        else round(cpu_after - cpu_before, 2),
        "server_peak_rss_mib": round(memory.get("VmHWM", 0.0), 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from application.config import Settings

    try:
        import uvloop

        loop_run: Any = uvloop.run
    except ImportError:
        loop_run = asyncio.run
    schema = f"fl_bench_{uuid.uuid4().hex[:10]}" if args.database_url else None
    try:
        env = {"FLOWLEDGER_CONCURRENCY": str(args.concurrency)}
        with started_server(args.database_url, schema, None, env) as server:
            found = loop_run(drive(server, args))
            assert server.home is not None
            settings = Settings(
                home=server.home, database_url=args.database_url, database_schema=schema
            )
            traces, concurrency = read_log(settings)
    finally:
        if schema is not None:
            drop_schema(args.database_url, schema)
    result = analyse(traces, args.concurrency)
    result |= concurrency
    result["within_limit"] = concurrency["max_in_progress"] <= args.concurrency
    over = result.get("overtaken_by", {})
    result["not_starving"] = bool(
        result["trees_completed"] == args.trees and over.get("trees_over_bound", 1) == 0
    )
    return {**found, **result}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trees", type=int, default=1000)
    parser.add_argument("--tree-size", type=int, default=3, help="tasks per tree, root included")
    parser.add_argument("--concurrency", type=int, default=16, help="FLOWLEDGER_CONCURRENCY")
    parser.add_argument("--clients", type=int, default=16, help="connections submitting")
    parser.add_argument("--database-url", help="PostgreSQL URL (a fresh schema, dropped after)")
    parser.add_argument("--json", metavar="FILE", help="also write the result to FILE as JSON")
    parser.add_argument("--py-spy", metavar="FILE", help="sample the server with py-spy (raw)")
    args = parser.parse_args()
    if min(args.trees, args.concurrency, args.clients) < 1 or args.tree_size < 2:
        parser.error("--trees, --concurrency, --clients must be positive, --tree-size >= 2")
    store = "postgresql" if args.database_url else "sqlite"
    print(
        f"store: {store}  trees: {args.trees} x {args.tree_size} tasks  concurrency: "
        f"{args.concurrency}  clients: {args.clients}  cpus: {os.cpu_count()} ({cpu_model()})",
        flush=True,
    )
    r = run(args)
    lat, over = r["latency_s"], r["overtaken_by"]
    print(
        f"submitted {r['submitted']:,} in {r['submit_s']:.2f} s ({r['submit_per_s']:,.0f}/s), "
        f"{r['submit_errors']} errors; completed {r['trees_completed']:,} trees; "
        f"makespan {r['makespan_s']:.2f} s: {r['trees_per_s']:,.0f} trees/s, "
        f"{r['tasks_per_s']:,.0f} tasks/s"
    )
    print(
        f"most executor tasks in progress at once: {r['max_in_progress']} "
        f"(limit {args.concurrency}: {'ok' if r['within_limit'] else 'EXCEEDED'}), "
        f"in {r['max_trees_in_progress']} trees"
    )
    print(
        f"latency s: p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  "
        f"max {lat['max']:.2f}; Jain {r['jain_latency']:.3f}; Spearman "
        f"{r['spearman_submission_vs_completion']:.3f}; overtaken by: mean {over['mean']}, "
        f"max {over['max']} (bound {over['bound']}): "
        f"{'not starving' if r['not_starving'] else 'STARVING'}"
    )
    print(f"server: CPU {r['server_cpu_s']} s, peak RSS {r['server_peak_rss_mib']:.0f} MiB")
    if "transactions" in r:
        print(
            f"the log was written by {r['transactions']:,} transactions "
            f"({r['transactions'] / args.trees:.1f} per tree)"
        )
    if args.json:
        doc = {"benchmark": "many_trees", "store": store, "parameters": vars(args), "result": r}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if r["submit_errors"] or not r["within_limit"] or not r["not_starving"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
