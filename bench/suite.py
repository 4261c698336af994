"""`python -m bench all`: every benchmark on SQLite and PostgreSQL, then docs/benchmarks.md.

Run: python -m bench all [--quick] [--postgres-url URL | --no-postgres]
     [--with-aipartnerupflow] [--out docs/benchmarks.md] [--json FILE]
     python -m bench all --render FILE [--out docs/benchmarks.md]  (from saved results)

Each benchmark case runs in a process of its own (python -m bench.<name> ... --json), so
each has fresh memory and its own peak RSS; the results are gathered into one table with
the targets of issue 8, whether each is met, the baseline ratios, the machine and how to
reproduce. PostgreSQL runs when a URL is given (default: $FLOWLEDGER_TEST_POSTGRES_URL),
every case in a fresh schema dropped after. --quick runs small sizes (a smoke run of about
a minute): its verdicts are shown only where it measured the size a target names.
--with-aipartnerupflow also runs aipartnerupflow 0.9.0 on the same flat trees
(bench.apf_compare; its venv is built on first use). A section "## Where the time goes"
already in --out is kept as it is (it is written from profiles: python -m bench.profile).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JOB_TIMEOUT_S = 3600
PROFILE_HEADING = "## Where the time goes"
STORES = ("sqlite", "postgresql")
FIELD_NOTES_APF = {100: 19.4, 300: 141.0}  # seconds, FIELD-NOTES (not measured here)


# -- the plan -------------------------------------------------------------------------------
@dataclass
class Plan:
    scheduler_sizes: list[int]
    shapes: list[str]
    big_tree_sizes: list[int]
    projection_events: int
    api_duration: float
    api_warmup: float
    api_trees: int
    many_trees: int
    many_concurrency: int
    live_writes: int
    apf_sizes: list[int]


FULL = Plan(
    scheduler_sizes=[1_000, 10_000],
    shapes=["flat", "layered", "chain"],
    big_tree_sizes=[1_000, 10_000, 100_000],
    projection_events=1_000_000,
    api_duration=10.0,
    api_warmup=2.0,
    api_trees=200,
    many_trees=1_000,
    many_concurrency=16,
    live_writes=100,
    apf_sizes=[100, 300],
)
QUICK = Plan(
    scheduler_sizes=[1_000],
    shapes=["flat", "layered", "chain"],
    big_tree_sizes=[1_000, 5_000],
    projection_events=20_000,
    api_duration=2.0,
    api_warmup=0.5,
    api_trees=20,
    many_trees=100,
    many_concurrency=16,
    live_writes=8,
    apf_sizes=[20, 50],
)


@dataclass
class Job:
    key: str
    title: str
    argv: list[str]  # after python -m
    json_to: str = "file"  # "file": --json FILE; "stdout": --json prints it
    env: dict[str, str] = field(default_factory=dict)


def jobs_for(
    plan: Plan, store: str, url: str | None, work: Path, cache: Path | None = None
) -> list[Job]:
    db = ["--database-url", url] if url else []
    jobs = []
    for shape in plan.shapes:
        for size in plan.scheduler_sizes:
            jobs.append(
                Job(
                    f"scheduler/{store}/{shape}/{size}",
                    f"scheduler {shape} {size:,}",
                    ["bench.scheduler", "--sizes", str(size), "--shapes", shape, *db],
                )
            )
    for size in plan.big_tree_sizes:
        jobs.append(
            Job(
                f"big_tree/{store}/{size}",
                f"big tree {size:,}",
                ["bench.big_tree", "--sizes", str(size), *db],
            )
        )
    projections = ["bench.projections", "--events", str(plan.projection_events), "--json"]
    if url:
        schema = f"fl_bench_proj_{uuid.uuid4().hex[:8]}"
        projections += [*db, "--schema", schema, "--drop", "--store", str(work / schema)]
    elif cache is not None:
        projections += ["--store", str(cache / f"{plan.projection_events}-sqlite")]
    jobs.append(Job(f"projections/{store}", "projections rebuild", projections, "stdout"))
    jobs.append(
        Job(
            f"api/{store}",
            "api (tasks.get, tasks.tree, tasks.create)",
            [
                "bench.api",
                "--methods",
                "get,tree,create",
                "--duration",
                str(plan.api_duration),
                "--warmup",
                str(plan.api_warmup),
                "--trees",
                str(plan.api_trees),
                "--json",
                *db,
            ],
            "stdout",
        )
    )
    jobs.append(
        Job(
            f"many_trees/{store}",
            f"many trees ({plan.many_trees:,})",
            [
                "bench.many_trees",
                "--trees",
                str(plan.many_trees),
                "--concurrency",
                str(plan.many_concurrency),
                *db,
            ],
        )
    )
    jobs.append(
        Job(
            f"live_projection/{store}",
            "live projection",
            ["bench.live_projection", "--writes", str(plan.live_writes), *db],
        )
    )
    return jobs


def run_job(job: Job, work: Path, log: Any) -> dict[str, Any]:
    out = work / (job.key.replace("/", "-") + ".json")
    argv = [sys.executable, "-m", *job.argv]
    if job.json_to == "file":
        argv += ["--json", str(out)]
    started = time.perf_counter()
    print(f"  {job.key:<36} ", end="", file=log, flush=True)
    try:
        done = subprocess.run(
            argv,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
            env={**os.environ, **job.env},
        )
    except subprocess.TimeoutExpired:
        print(f"TIMEOUT after {JOB_TIMEOUT_S} s", file=log, flush=True)
        return {"error": f"timed out after {JOB_TIMEOUT_S} s"}
    seconds = time.perf_counter() - started
    result: dict[str, Any] | None = None
    try:
        if job.json_to == "file" and out.exists():
            result = json.loads(out.read_text())
        elif job.json_to == "stdout":
            result = json.loads(done.stdout)
    except ValueError:
        result = None
    if done.returncode != 0 or result is None:
        tail = (done.stderr or done.stdout)[-1500:]
        print(f"FAILED ({done.returncode}) in {seconds:.1f} s", file=log, flush=True)
        print(tail, file=log, flush=True)
        error = {"error": f"exit {done.returncode}: {tail.strip().splitlines()[-1:]}"}
        return {**(result or {}), **error}
    print(f"{seconds:6.1f} s", file=log, flush=True)
    result["_seconds"] = round(seconds, 2)
    return result


# -- the machine ----------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def postgres_version(url: str | None) -> str | None:
    if not url:
        return None
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else None
    except Exception as exc:
        return f"unreachable ({type(exc).__name__})"


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "unknown"


def machine(url: str | None) -> dict[str, Any]:
    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    return {
        "cpu_model": cpu.group(1).strip() if cpu else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(url),
        "platform": platform.platform(),
        "revision": git_revision(),
    }


def load_average() -> str:
    return " ".join(_read("/proc/loadavg").split()[:3]) or "unknown"


def leftover_schemas(url: str | None) -> list[str]:
    """fl_bench_* schemas still on the server (there should be none after a run)."""
    if not url:
        return []
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'fl\\_bench\\_%'"
            ).fetchall()
        return [r[0] for r in rows]
    except Exception:
        return []


# -- the table ------------------------------------------------------------------------------
def num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def size_label(size: int) -> str:
    return f"{size // 1000:,}k" if size >= 1000 and size % 1000 == 0 else f"{size:,}"


@dataclass
class Row:
    bench: str
    figure: str
    sqlite: str
    postgresql: str
    target: str = ""
    verdict: str = ""


class Results:
    def __init__(self, found: dict[str, dict[str, Any]], stores: list[str]) -> None:
        self.found = found
        self.stores = stores

    def get(self, key: str) -> dict[str, Any] | None:
        """A case's results; also those of a case that exited with an error after writing
        them (a check that failed: its figures still show, and its error is listed)."""
        doc = self.found.get(key)
        return None if doc is None or set(doc) <= {"error", "_seconds"} else doc

    def error(self, key: str) -> str | None:
        doc = self.found.get(key)
        return None if doc is None else doc.get("error")

    def row(self, bench: str, figure: str, value: Callable[[str], str]) -> Row:
        """A row with the same figure on both stores (no target)."""
        return Row(bench, figure, self.cell("sqlite", value), self.cell("postgresql", value))

    def cell(self, store: str, value: Callable[[str], str]) -> str:
        if store not in self.stores:
            return "not run"
        try:
            return value(store)
        except (KeyError, TypeError, IndexError, ZeroDivisionError):
            return "failed"


def verdict(pairs: list[tuple[str, bool | None]]) -> str:
    """'met' / 'not met' per store (None: not judged)."""
    shown = [(store, ok) for store, ok in pairs if ok is not None]
    if not shown:
        return "- (not measured at the target's size)"
    if len(shown) == 1 and len(pairs) == 1:
        return "met" if shown[0][1] else "**not met**"
    return ", ".join(f"{'met' if ok else '**not met**'} ({s})" for s, ok in shown)


def store_name(store: str) -> str:
    return "SQLite" if store == "sqlite" else "PostgreSQL"


def scheduler_rows(r: Results, plan: Plan) -> list[Row]:
    rows = []
    sizes = plan.scheduler_sizes
    labels = " / ".join(size_label(s) for s in sizes)
    limits = {"sqlite": 100, "postgresql": 500}

    def case(store: str, shape: str, size: int) -> dict[str, Any]:
        doc = r.get(f"scheduler/{store}/{shape}/{size}")
        if doc is None:
            raise KeyError(shape)
        row: dict[str, Any] = doc["rows"][0]
        return row

    def across(shape: str, name: str, digits: int = 0) -> Callable[[str], str]:
        def value(store: str) -> str:
            return " / ".join(num(case(store, shape, s)[name], digits) for s in sizes)

        return value

    for shape in plan.shapes:
        judged = []
        for store in r.stores:
            try:
                overhead = case(store, shape, 10_000)["overhead_us_per_task"]
                judged.append((store_name(store), bool(overhead <= limits[store])))
            except KeyError:
                judged.append((store_name(store), None))
        bench = f"scheduler, {shape}"
        rows += [
            Row(
                bench,
                f"overhead µs/task ({labels} tasks)",
                r.cell("sqlite", across(shape, "overhead_us_per_task")),
                r.cell("postgresql", across(shape, "overhead_us_per_task")),
                "≤ 100 (SQLite), ≤ 500 (PostgreSQL) at 10k",
                verdict(judged),
            ),
            Row(
                bench,
                f"run s ({labels})",
                r.cell("sqlite", across(shape, "run_s", 2)),
                r.cell("postgresql", across(shape, "run_s", 2)),
            ),
            Row(
                bench,
                f"create s ({labels})",
                r.cell("sqlite", across(shape, "create_s", 2)),
                r.cell("postgresql", across(shape, "create_s", 2)),
            ),
            Row(
                bench,
                f"commits during the run ({labels})",
                r.cell("sqlite", across(shape, "saves")),
                r.cell("postgresql", across(shape, "saves")),
            ),
            Row(
                bench,
                f"bare-asyncio baseline µs/task ({labels})",
                r.cell("sqlite", across(shape, "baseline_us_per_task", 1)),
                r.cell("postgresql", across(shape, "baseline_us_per_task", 1)),
            ),
            Row(
                bench,
                f"ratio run / bare-asyncio baseline ({labels})",
                r.cell("sqlite", across(shape, "ratio")),
                r.cell("postgresql", across(shape, "ratio")),
            ),
        ]
    return rows


def big_tree_rows(r: Results, plan: Plan) -> list[Row]:
    sizes = plan.big_tree_sizes
    labels = " / ".join(size_label(s) for s in sizes)

    def case(store: str, size: int) -> dict[str, Any]:
        doc = r.get(f"big_tree/{store}/{size}")
        if doc is None:
            raise KeyError(size)
        row: dict[str, Any] = doc["rows"][0]
        return row

    def across(name: str, digits: int = 0, pick: Callable[[Any], Any] | None = None) -> Any:
        def value(store: str) -> str:
            cells = []
            for s in sizes:
                found = case(store, s)
                cells.append(num(pick(found) if pick else found[name], digits))
            return " / ".join(cells)

        return value

    def one_txn(row: dict[str, Any]) -> str:
        t = row["create_transactions"]
        return "yes" if t["one_transaction"] else "NO"

    flat = []
    for store in r.stores:
        try:
            growth = [case(store, s)["rss_growth_kib_per_task"] for s in sizes]
            flat.append((store_name(store), bool(growth[-1] <= 1.25 * growth[0])))
        except KeyError:
            flat.append((store_name(store), None))
    e2e = []
    try:
        e2e.append(("SQLite", bool(case("sqlite", 100_000)["end_to_end_s"] < 30)))
    except KeyError:
        e2e.append(("SQLite", None))
    bench = "big flat tree"
    one = []
    for store in r.stores:
        try:
            one.append((store_name(store), all(one_txn(case(store, s)) == "yes" for s in sizes)))
        except KeyError:
            one.append((store_name(store), None))
    return [
        r.row(bench, f"create s ({labels} tasks)", across("create_s", 2)),
        Row(
            bench,
            "creation in one transaction (insert calls, commits, contiguous log positions"
            "; xmin on PostgreSQL)",
            r.cell("sqlite", across("", pick=one_txn)),
            r.cell("postgresql", across("", pick=one_txn)),
            "one transaction whatever the size",
            verdict(one),
        ),
        r.row(bench, f"run s, no-op executors, concurrency 16 ({labels})", across("run_s", 2)),
        Row(
            bench,
            f"end to end s = create + run ({labels})",
            r.cell("sqlite", across("end_to_end_s", 2)),
            r.cell("postgresql", across("end_to_end_s", 2)),
            "< 30 s at 100k (SQLite)",
            verdict(e2e),
        ),
        r.row(bench, f"commits during the run ({labels})", across("run_commits")),
        r.row(bench, f"reload from snapshot ms ({labels})", across("reload_snapshot_ms", 1)),
        r.row(bench, f"reload by full replay ms ({labels})", across("replay_ms", 0)),
        r.row(
            bench,
            f"read models catch up s, whole log ({labels})",
            across("read_models_catch_up_s", 2),
        ),
        r.row(bench, f"tasks.tree ms, read model + JSON ({labels})", across("tasks_tree_ms", 1)),
        r.row(bench, f"tasks.children of the root ms ({labels})", across("tasks_children_ms", 1)),
        r.row(bench, f"tasks.get ms ({labels})", across("tasks_get_ms", 2)),
        r.row(bench, f"peak RSS MiB ({labels})", across("peak_rss_mib")),
        Row(
            bench,
            f"RSS growth KiB per task, to the end of the run ({labels})",
            r.cell("sqlite", across("rss_growth_kib_per_task", 1)),
            r.cell("postgresql", across("rss_growth_kib_per_task", 1)),
            "flat per task: at the largest size at most 1.25 times the smallest",
            verdict(flat),
        ),
    ]


def projection_rows(r: Results) -> list[Row]:
    def rebuild(store: str) -> dict[str, Any]:
        doc = r.get(f"projections/{store}")
        if doc is None:
            raise KeyError(store)
        found: dict[str, Any] = doc["rebuild"]
        return found

    def judged(name: str) -> str:
        pairs = []
        for store in r.stores:
            try:
                pairs.append((store_name(store), bool(rebuild(store)[name] >= 50_000)))
            except KeyError:
                pairs.append((store_name(store), None))
        return verdict(pairs)

    bench = "projection rebuild"

    def entries(store: str) -> str:
        return (
            f"{num(rebuild(store)['notifications'])} entries in {rebuild(store)['rebuild_s']:.1f} s"
        )

    return [
        Row(bench, "log replayed", r.cell("sqlite", entries), r.cell("postgresql", entries)),
        Row(
            bench,
            "log entries/s (tree events and task-id claims)",
            r.cell("sqlite", lambda s: num(rebuild(s)["notifications_per_s"])),
            r.cell("postgresql", lambda s: num(rebuild(s)["notifications_per_s"])),
            "≥ 50,000 events/s",
            judged("notifications_per_s"),
        ),
        Row(
            bench,
            "tree events/s (decoded and applied; claims are skipped unread)",
            r.cell("sqlite", lambda s: num(rebuild(s)["tree_events_per_s"])),
            r.cell("postgresql", lambda s: num(rebuild(s)["tree_events_per_s"])),
            "≥ 50,000 if only these count",
            judged("tree_events_per_s"),
        ),
        r.row(bench, "peak RSS MiB", lambda s: num(rebuild(s)["peak_rss_mib"])),
    ]


def api_rows(r: Results) -> list[Row]:
    def result(store: str, method: str) -> dict[str, Any]:
        doc = r.get(f"api/{store}")
        if doc is None:
            raise KeyError(store)
        for found in doc["results"]:
            if found["method"] == method:
                return dict(found)
        raise KeyError(method)

    def cell(method: str) -> Callable[[str], str]:
        def value(store: str) -> str:
            found = result(store, method)
            errors = f", {found['errors']} errors" if found["errors"] else ""
            return (
                f"{num(found['req_per_s'])} req/s, p50 {num(found['p50_ms'], 1)} ms, "
                f"p99 {num(found['p99_ms'], 1)} ms{errors}"
            )

        return value

    pairs = []
    for store in r.stores:
        try:
            found = result(store, "get")
            ok = found["req_per_s"] >= 1_000 and found["p99_ms"] < 20 and not found["errors"]
            pairs.append((store_name(store), bool(ok)))
        except KeyError:
            pairs.append((store_name(store), None))
    bench = "API (bench.api, 16 clients)"
    return [
        Row(
            bench,
            "tasks.get",
            r.cell("sqlite", cell("get")),
            r.cell("postgresql", cell("get")),
            "≥ 1,000 req/s at p99 < 20 ms",
            verdict(pairs),
        ),
        r.row(bench, "tasks.tree (10-task trees)", cell("tree")),
        r.row(bench, "tasks.create (1-task trees)", cell("create")),
        Row(
            bench,
            "server CPU during tasks.get, % of one core (client; others)",
            r.cell(
                "sqlite",
                lambda s: (
                    f"{num(result(s, 'get')['server_cpu_pct'])}% "
                    f"({num(result(s, 'get')['client_cpu_pct'])}%; "
                    f"{num(result(s, 'get')['other_cpu_pct'])}%)"
                ),
            ),
            r.cell(
                "postgresql",
                lambda s: (
                    f"{num(result(s, 'get')['server_cpu_pct'])}% "
                    f"({num(result(s, 'get')['client_cpu_pct'])}%; "
                    f"{num(result(s, 'get')['other_cpu_pct'])}%)"
                ),
            ),
        ),
    ]


def many_rows(r: Results, plan: Plan) -> list[Row]:
    def res(store: str) -> dict[str, Any]:
        doc = r.get(f"many_trees/{store}")
        if doc is None:
            raise KeyError(store)
        found: dict[str, Any] = doc["result"]
        return found

    def judged(test: Callable[[dict[str, Any]], bool]) -> str:
        pairs = []
        for store in r.stores:
            try:
                pairs.append((store_name(store), bool(test(res(store)))))
            except KeyError:
                pairs.append((store_name(store), None))
        return verdict(pairs)

    limit = plan.many_concurrency
    bench = f"many trees ({plan.many_trees:,} x 3 tasks, served, limit {limit})"

    def both(func: Callable[[dict[str, Any]], str]) -> tuple[str, str]:
        return r.cell("sqlite", lambda s: func(res(s))), r.cell(
            "postgresql", lambda s: func(res(s))
        )

    def lat(x: dict[str, Any]) -> str:
        v = x["latency_s"]
        return f"{v['p50']:.2f} / {v['p99']:.2f} / {v['max']:.2f}"

    def over(x: dict[str, Any]) -> str:
        v = x["overtaken_by"]
        return f"mean {v['mean']}, max {v['max']}"

    return [
        Row(
            bench,
            "submitted (tasks.execute, 16 connections) per s",
            *both(lambda x: f"{num(x['submit_per_s'])} ({x['submit_errors']} errors)"),
        ),
        Row(
            bench,
            "throughput: trees/s, tasks/s (first Created to last completion)",
            *both(lambda x: f"{num(x['trees_per_s'])}, {num(x['tasks_per_s'])}"),
        ),
        Row(
            bench,
            "most executor tasks in progress at once (event log)",
            *both(lambda x: num(x["max_in_progress"])),
            f"never above {limit}",
            judged(lambda x: bool(x["within_limit"])),
        ),
        Row(bench, "latency per tree s: p50 / p99 / max", *both(lat)),
        Row(
            bench,
            "Jain's fairness index over latencies",
            *both(lambda x: num(x["jain_latency"], 3)),
        ),
        Row(
            bench,
            "Spearman, submission vs completion order",
            *both(lambda x: num(x["spearman_submission_vs_completion"], 3)),
        ),
        Row(
            bench,
            "overtaken by later trees",
            *both(over),
            f"all complete, none overtaken by > {2 * limit} (not starving)",
            judged(lambda x: bool(x["not_starving"])),
        ),
        Row(
            bench,
            "transactions that wrote the log, per tree (PostgreSQL: distinct xmin)",
            *both(
                lambda x: (
                    f"{num(x['transactions'])} ({x['transactions'] / plan.many_trees:.1f})"
                    if "transactions" in x
                    else "not counted"
                )
            ),
        ),
        Row(bench, "server peak RSS MiB", *both(lambda x: num(x["server_peak_rss_mib"]))),
    ]


def live_rows(r: Results) -> list[Row]:
    def ms(store: str, kind: str) -> str:
        doc = r.get(f"live_projection/{store}")
        if doc is None:
            raise KeyError(store)
        v = doc["ms"][kind]
        return f"{num(v['p50'], 1)} / {num(v['p99'], 1)}"

    bench = "live projection (write to visible, ms p50 / p99)"
    return [
        r.row(bench, "same Ledger (the server's case)", lambda s: ms(s, "same_ledger")),
        r.row(
            bench,
            "another process's write (NOTIFY on PostgreSQL, the 250 ms poll on SQLite)",
            lambda s: ms(s, "other_ledger"),
        ),
        r.row(
            bench,
            "another process's write, the reader waking the projector",
            lambda s: ms(s, "other_waiting"),
        ),
    ]


def apf_rows(r: Results, plan: Plan, wanted: bool) -> list[Row]:
    bench = "vs aipartnerupflow 0.9.0 (flat tree, no-op tasks)"
    doc = r.get("apf")
    rows = []
    if doc is not None:
        for row in doc["rows"]:
            rows.append(
                Row(
                    bench,
                    f"{row['tasks']} tasks: flowledger s / aipartnerupflow s (DuckDB) = ratio",
                    f"{row['flowledger_s']:.3f} / {row['aipartnerupflow_s']:.1f} = "
                    f"**x{row['ratio']:,.0f}**",
                    "not run",
                    "",
                    "measured in this run",
                )
            )
        return rows
    why = r.error("apf") or ("not requested (--with-aipartnerupflow)" if not wanted else "")
    for size, seconds in FIELD_NOTES_APF.items():
        rows.append(
            Row(
                bench,
                f"{size} tasks: aipartnerupflow s (FIELD-NOTES, not measured in this run)",
                f"{seconds:g}",
                "not run",
                "",
                why,
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | figure | SQLite | PostgreSQL | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.bench} | {row.figure} | {row.sqlite} | {row.postgresql} | {row.target} "
            f"| {row.verdict} |"
        )
    return "\n".join(lines)


# -- the document ---------------------------------------------------------------------------
def kept_profile_section(path: Path) -> str | None:
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    start = text.find(PROFILE_HEADING)
    if start < 0:
        return None
    end = text.find("\n## ", start + len(PROFILE_HEADING))
    return text[start : end if end >= 0 else len(text)].rstrip() + "\n"


def reproduce(args: argparse.Namespace) -> str:
    return f"""## How to reproduce

    .venv/bin/pip install -e '.[dev,postgres]'
    .venv/bin/python -m bench all{" --quick" if args.quick else ""} \\
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test] \\
        [--with-aipartnerupflow] [--out docs/benchmarks.md] [--json results.json]

Each case is one process (`python -m bench.<name> ... --json FILE`, the command lines are in
the --json output under "commands"), so any row can be run again alone, e.g.

    .venv/bin/python -m bench.scheduler --sizes 10000 --shapes flat [--database-url URL]
    .venv/bin/python -m bench.big_tree --sizes 100000 [--database-url URL]
    .venv/bin/python -m bench.many_trees --trees 1000 --concurrency 16 [--database-url URL]
    .venv/bin/python -m bench.projections --events 1000000 [--database-url URL --drop]
    .venv/bin/python -m bench.api --methods get,tree,create [--database-url URL]
    .venv/bin/python -m bench.live_projection --writes 200 [--database-url URL]
    .venv/bin/python -m bench.apf_compare --sizes 100,300   # builds its own venv once

Profiles (py-spy is a dev tool: `.venv/bin/pip install py-spy`):

    .venv/bin/python -m bench.profile record /tmp/sched.txt --native -- \\
        .venv/bin/python -m bench.scheduler --sizes 10000,10000,10000 --shapes flat
    .venv/bin/python -m bench.profile summary /tmp/sched.txt \\
        --only 'scheduler.py:258' --only flowledger-store
    .venv/bin/python -m bench.many_trees --trees 1000 --py-spy /tmp/server.txt
    .venv/bin/python -m bench.profile summary /tmp/server.txt

PostgreSQL cases each use a fresh schema `fl_bench_*`, dropped after. Measure on an idle
machine (`cat /proc/loadavg`): client, server and database share its cores.
"""


def document(
    args: argparse.Namespace,
    plan: Plan,
    results: Results,
    info: dict[str, Any],
    timing: dict[str, Any],
    profile: str | None,
) -> str:
    rows = (
        scheduler_rows(results, plan)
        + big_tree_rows(results, plan)
        + many_rows(results, plan)
        + projection_rows(results)
        + api_rows(results)
        + live_rows(results)
        + apf_rows(results, plan, args.with_aipartnerupflow)
    )
    failed = [f"`{key}`: {doc['error']}" for key, doc in results.found.items() if "error" in doc]
    mode = "quick (smoke-run sizes: not the figures to quote)" if args.quick else "full"
    pg = info["postgresql"] or "not run"
    parts = [
        "# Benchmarks\n",
        f"Written by `python -m bench all{' --quick' if args.quick else ''}` on "
        f"{timing['date']} ({mode}); every figure below was measured in that one run, each "
        "case in a process of its own. Regenerate it rather than editing the table.\n",
        "## Figures\n",
        "Cells with several values follow the sizes in the figure's name, in that order. "
        "Targets are issue 8's; a verdict is given only where the run measured the size "
        "the target names.\n",
        table(rows) + "\n",
    ]
    if failed:
        parts.append("Failed cases:\n\n" + "\n".join(f"- {f}" for f in failed) + "\n")
    parts.append(
        """### Reading the figures

- Scheduler overhead per task = (run s - the bare-asyncio baseline s) / tasks: the baseline
  schedules the same graph in memory (a ready heap, at most 16 asyncio tasks awaiting a no-op
  coroutine). Flat and layered trees start and finish up to 16 tasks per step, one commit
  each; a chain can only start one task per step, so its pace is the commit latency (every
  Started is stored before its executor is called), whatever the scheduler does.
- Big tree: create s includes validation, the Created event and one task-id claim per task,
  all in one transaction; end to end = create + run. The snapshot reload reads the latest
  snapshot and the events after it; the full replay folds every event. RSS growth per task
  is (peak RSS at the end of the run - RSS once the store was open) / tasks.
- Many trees: throughput and latencies come from the event log's own timestamps (Created
  to the event that made a tree's last task terminal); "overtaken by" counts, for each tree,
  the trees submitted after it that completed before it. Not starving means every tree
  completed and none was overtaken by more than twice the concurrency limit: at most that
  many trees hold slots side by side, so only a scheduler that lets later trees jump the
  queue can do worse. Jain's index is 1 when every tree waits the same; a batch served in
  submission order spreads latencies from ~0 to the makespan (about 0.75).
- Projection rebuild: the log holds tree events and one task-id claim per task; the
  projector skips claims by topic without decoding them. Both rates are shown.
- API: client (16 keep-alive connections, a minimal HTTP client) and server share the two
  cores; "others" is the CPU of every other process meanwhile (PostgreSQL itself on that
  store): read it before trusting a figure.
- aipartnerupflow 0.9.0 runs in a venv of its own (it does not install beside flowledger)
  through its Python API, `TaskExecutor().execute_tasks` (what its tasks.execute calls), on
  its default embedded store (DuckDB), every task, root included, on a registered no-op
  executor; flowledger's figure is bench.scheduler's flat tree of the same size (create +
  run, in-process, SQLite). Both are timed in the same run, one after the other.
"""
    )
    parts.append(
        f"""## Machine

| | |
|---|---|
| CPU | {info["cpu_model"]}, {info["cores"]} cores |
| RAM | {info["ram_gib"]} GiB |
| OS | {info["platform"]} |
| Python | {info["python"]} |
| SQLite | {info["sqlite"]} (WAL, synchronous=NORMAL: the default) |
| PostgreSQL | {pg} (localhost) |
| flowledger | {info["revision"]} |
| date | {timing["date"]} |
| load average (1, 5, 15 min) | {timing["load_before"]} before, {timing["load_after"]} after |
| wall time of the run | {timing["wall_s"]:.0f} s |
"""
    )
    parts.append(
        profile or f"{PROFILE_HEADING}\n\nNot profiled yet: see `python -m bench.profile` below.\n"
    )
    parts.append(reproduce(args))
    return "\n".join(parts)


def render(args: argparse.Namespace) -> None:
    """Write the document again from a run's --json results (its text may have changed)."""
    saved = json.loads(Path(args.render).read_text(encoding="utf-8"))
    args.quick = saved["quick"]
    args.with_aipartnerupflow = "apf" in saved["results"]
    plan = QUICK if args.quick else FULL
    out = Path(args.out)
    results = Results(saved["results"], saved["stores"])
    text = document(
        args, plan, results, saved["machine"], saved["timing"], kept_profile_section(out)
    )
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} from {args.render}", file=sys.stderr)


# -- main -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLOWLEDGER_TEST_POSTGRES_URL") or None,
        help="PostgreSQL to run on too (default: $FLOWLEDGER_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--with-aipartnerupflow",
        action="store_true",
        help="also run aipartnerupflow 0.9.0 on the same flat trees (bench.apf_compare)",
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", metavar="FILE", help="also write every result to FILE")
    parser.add_argument(
        "--cache",
        type=Path,
        help="where bench.projections keeps its generated SQLite log between runs "
        "(default: its own, /tmp/flowledger-bench-projections)",
    )
    parser.add_argument(
        "--render",
        metavar="RESULTS",
        help="run nothing: write --out again from the --json RESULTS of an earlier run",
    )
    args = parser.parse_args(argv)
    if args.render:
        render(args)
        return
    url = None if args.no_postgres else args.postgres_url
    plan = QUICK if args.quick else FULL
    stores = ["sqlite"] + (["postgresql"] if url else [])
    log = sys.stderr
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    info = machine(url)
    print(
        f"bench all ({'quick' if args.quick else 'full'}): {', '.join(stores)}; load {load_before}",
        file=log,
        flush=True,
    )
    started = time.perf_counter()
    found: dict[str, dict[str, Any]] = {}
    commands: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="flowledger-bench-all-") as tmp:
        work = Path(tmp)
        jobs: list[Job] = []
        for store in stores:
            db = url if store == "postgresql" else None
            jobs += jobs_for(plan, store, db, work, args.cache)
        if args.with_aipartnerupflow:
            jobs.append(
                Job(
                    "apf",
                    "aipartnerupflow side by side",
                    ["bench.apf_compare", "--sizes", ",".join(map(str, plan.apf_sizes))],
                )
            )
        for job in jobs:
            commands[job.key] = ["python", "-m", *job.argv]
            found[job.key] = run_job(job, work, log)
    wall = time.perf_counter() - started
    leftover = leftover_schemas(url)
    if leftover:
        print(f"warning: schemas left on PostgreSQL: {', '.join(leftover)}", file=log)
    timing = {
        "date": date,
        "load_before": load_before,
        "load_after": load_average(),
        "wall_s": wall,
    }
    out = Path(args.out)
    text = document(args, plan, Results(found, stores), info, timing, kept_profile_section(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} in {wall:.0f} s", file=log)
    if args.json:
        doc = {
            "machine": info,
            "timing": timing,
            "quick": args.quick,
            "stores": stores,
            "commands": {k: " ".join(shlex.quote(a) for a in v) for k, v in commands.items()},
            "results": found,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if any("error" in doc for doc in found.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
