"""Requests per second and latency of the JSON-RPC API, measured from another process.

Run: python -m bench.api [--duration 10] [--concurrency 16 | 4,8,16] [--methods get,create]
     [--database-url postgresql://...] [--url http://127.0.0.1:8000 [--server-pid PID]]
     [--client raw|httpx] [--json] [--server-cprofile FILE]

Unless --url names a running server, it starts `flowledger serve` as a subprocess on a free
127.0.0.1 port with a temporary FLOWLEDGER_HOME (SQLite), or with --database-url in a fresh
PostgreSQL schema fl_bench_<random> (dropped at the end), and waits until it answers
system.health; the server gets no other FLOWLEDGER_* setting from this environment (no auth,
no rate limit). This process is only the client: it seeds --trees trees of --tree-size tasks
(a root and its children, through tasks.create), then, for each method in turn and each
--concurrency, that many workers send requests back to back, each on its own keep-alive
connection, for --duration seconds (or --requests in all), after --warmup seconds not
counted. Each request is timed on its own, from sending it to its decoded answer; an answer
without a result counts as an error.

Client: `raw` (default) is a minimal HTTP/1.1 client on asyncio streams; `httpx` is one
shared httpx.AsyncClient. On a 2-core machine httpx itself tops out near 1,000 req/s (about
1 ms of client CPU a request, and worse with many connections in one pool) even against a
server that answers at once, so it would measure itself rather than the server.

Methods: get (tasks.get of a random seeded task), tree (tasks.tree of a random seeded
root), list (tasks.list, limit 20), create (tasks.create of a new tree of --create-size
tasks), health (system.health).
Reported per method and concurrency: requests, errors, req/s, p50/p90/p99/max latency in
ms, and the CPU used by the server, by this client and by everything else on the machine
(% of one core; a local PostgreSQL counts as "other"): on a small machine they compete, so
read "other" before trusting a figure. The target: tasks.get >= 1,000 req/s, p99 < 20 ms.
--server-cprofile FILE runs the server under cProfile (stats written when it stops, the top
functions to stderr); cProfile sees the event loop's thread only, and slows it down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 30.0
TARGET = {"method": "get", "req_per_s": 1_000, "p99_ms": 20.0}
METHODS = ("get", "tree", "list", "create", "health")

_encode = msgspec.json.encode
_decode = msgspec.json.decode


# -- the server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    pid: int | None = None
    home: Path | None = None  # the started server's FLOWLEDGER_HOME

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) the server process used so far (None if unknown)."""
        pid = self.process.pid if self.process is not None else self.pid
        if pid is None:
            return None
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def server_command(port: int, cprofile: str | None) -> list[str]:
    argv = ["flowledger", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--log-level", "warning"]
    if cprofile is None:
        code = f"import sys; sys.argv = {argv!r}; from interfaces.cli import main; main()"
    else:
        code = (
            f"import cProfile, sys; sys.argv = {argv!r}; from interfaces.cli import main; "
            f"cProfile.run('main()', {cprofile!r})"
        )
    return [sys.executable, "-c", code]


@contextmanager
def started_server(
    database_url: str | None,
    schema: str | None,
    cprofile: str | None,
    settings: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`flowledger serve` in a subprocess on a free port and a temporary home; `settings`
    are more FLOWLEDGER_* variables for it (say FLOWLEDGER_CONCURRENCY)."""
    home = Path(tempfile.mkdtemp(prefix="flowledger-bench-api-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env |= {"FLOWLEDGER_HOME": str(home / "home"), "PYTHONUNBUFFERED": "1"}
    if database_url:
        env |= {"FLOWLEDGER_DATABASE_URL": database_url, "FLOWLEDGER_DATABASE_SCHEMA": schema or ""}
    env |= settings or {}
    port = free_port()
    log = home / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            server_command(port, cprofile),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log, home=home / "home")
    try:
        yield server
    finally:
        stop_server(server)
        if cprofile is None:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"server log: {log}", file=sys.stderr)


def stop_server(server: Server) -> None:
    process = server.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully (and cProfile saves)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def drop_schema(database_url: str, schema: str) -> None:
    import psycopg

    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except psycopg.Error as exc:
        print(f"warning: could not drop schema {schema}: {exc}", file=sys.stderr)


# -- the client -------------------------------------------------------------------------------
def rpc_body(method: str, params: Any) -> bytes:
    return _encode({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})


async def rpc(client: httpx.AsyncClient, path: str, method: str, params: Any) -> Any:
    response = await client.post(path, content=rpc_body(method, params), headers=JSON_HEADERS)
    response.raise_for_status()
    reply = _decode(response.content)
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


JSON_HEADERS = {"content-type": "application/json"}


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on one asyncio stream: POST a JSON body, read
    the status and the body (Content-Length or chunked). Its cost per request is a small
    fraction of httpx's, which matters when client and server share a small machine."""

    def __init__(self, url: str) -> None:
        parts = httpx.URL(url)
        self.host, self.port = parts.host, parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (path.encode(), self.host.encode(), self.port, len(body), body)
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, closing = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                closing = True
        if chunked:
            content = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)  # the chunk and its CRLF
                if size == 0:
                    break
                content += chunk[:size]
        else:
            content = await reader.readexactly(length) if length else b""
        if closing:
            await self.close()
        return status, content

    async def close(self) -> None:
        """Close the connection (the next post opens a new one)."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxConnection:
    """The same interface on a shared httpx.AsyncClient (keep-alive pool)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self.client.post(path, content=body, headers=JSON_HEADERS)
        return response.status_code, response.content

    async def close(self) -> None:
        pass


Connection = RawConnection | HttpxConnection


async def wait_until_healthy(client: httpx.AsyncClient, server: Server) -> dict[str, Any]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if server.process is not None and server.process.poll() is not None:
            raise SystemExit(
                f"the server exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            health: dict[str, Any] = await rpc(client, "/system", "system.health", {})
            return health
        except (httpx.HTTPError, RuntimeError):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the server did not answer within {STARTUP_TIMEOUT_S:g} s:\n"
                    f"{server.log_tail()}"
                ) from None
            await asyncio.sleep(0.1)


def tree_payload(prefix: str, number: int, size: int) -> list[dict[str, Any]]:
    root = f"{prefix}t{number}"
    tasks: list[dict[str, Any]] = [{"id": root, "name": f"tree {number}", "user_id": "bench"}]
    for k in range(1, size):
        tasks.append(
            {
                "id": f"{root}.{k}",
                "name": f"task {k}",
                "parent_id": root,
                "priority": k % 4,
                "schemas": {"method": "noop"},
                "inputs": {"index": k, "path": f"part-{k:04d}.parquet"},
            }
        )
    return tasks


@dataclass
class Seeded:
    roots: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)


async def seed(
    client: httpx.AsyncClient, prefix: str, trees: int, size: int, concurrency: int
) -> Seeded:
    seeded = Seeded()
    numbers = iter(range(trees))

    async def worker() -> None:
        for n in numbers:
            root = await rpc(client, "/tasks", "tasks.create", tree_payload(prefix, n, size))
            seeded.roots.append(root["id"])
            seeded.tasks.append(root["id"])
            seeded.tasks.extend(child["id"] for child in root["children"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return seeded


def request_maker(
    method: str, seeded: Seeded, prefix: str, create_size: int, rng: random.Random
) -> tuple[str, Callable[[], bytes]]:
    """The path and a body builder for one benchmarked method."""
    if method == "get":
        ids = seeded.tasks
        return "/tasks", lambda: rpc_body("tasks.get", {"task_id": rng.choice(ids)})
    if method == "tree":
        roots = seeded.roots
        return "/tasks", lambda: rpc_body("tasks.tree", {"task_id": rng.choice(roots)})
    if method == "list":
        return "/tasks", lambda: rpc_body("tasks.list", {"limit": 20})
    if method == "create":
        numbers = itertools.count()
        return "/tasks", lambda: rpc_body(
            "tasks.create", tree_payload(f"{prefix}c", next(numbers), create_size)
        )
    if method == "health":
        return "/system", lambda: rpc_body("system.health", {})
    raise ValueError(method)


@dataclass
class Measured:
    method: str
    concurrency: int
    latencies_s: list[float]
    errors: int
    wall_s: float
    server_cpu_s: float | None
    client_cpu_s: float
    machine_cpu_s: float | None
    first_error: str | None = None

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        done = len(lat)

        def pct(q: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(done - 1, int(q * done))] * 1000, 3)

        return {
            "method": self.method,
            "concurrency": self.concurrency,
            "requests": done,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 3),
            "req_per_s": round(done / self.wall_s, 1) if self.wall_s else None,
            "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1000, 3) if lat else None,
            "server_cpu_pct": None
            if self.server_cpu_s is None
            else round(100 * self.server_cpu_s / self.wall_s, 1),
            "client_cpu_pct": round(100 * self.client_cpu_s / self.wall_s, 1),
            # everything else on the machine (other processes): a busy machine skews results
            "other_cpu_pct": None
            if self.machine_cpu_s is None
            else round(
                100
                * max(0.0, self.machine_cpu_s - self.client_cpu_s - (self.server_cpu_s or 0.0))
                / self.wall_s,
                1,
            ),
            "first_error": self.first_error,
        }


def machine_busy_s() -> float | None:
    """CPU seconds every process on the machine used so far (None if unknown)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(
    connect: Callable[[], Connection],
    path: str,
    make: Callable[[], bytes],
    *,
    concurrency: int,
    duration_s: float | None,
    requests: int | None,
    record: bool = True,
) -> tuple[list[float], int, float, str | None]:
    """`concurrency` workers, each on its own connection, sending back to back until the
    time or the count is up."""
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    issued = 0
    started = time.perf_counter()
    deadline = started + duration_s if duration_s is not None else float("inf")
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal errors, first_error, issued
        connection = connect()
        try:
            while clock() < deadline and (requests is None or issued < requests):
                issued += 1
                body = make()
                t0 = clock()
                reply: Any = None
                status: int | None = None
                try:
                    status, content = await connection.post(path, body)
                    reply = _decode(content) if status == 200 else None
                except (OSError, asyncio.IncompleteReadError, httpx.HTTPError) as exc:
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                except msgspec.DecodeError as exc:
                    first_error = first_error or f"undecodable answer: {exc}"
                elapsed = clock() - t0
                if isinstance(reply, dict) and "result" in reply:
                    if record:
                        latencies.append(elapsed)
                else:
                    errors += 1
                    if first_error is None:
                        first_error = f"{reply if reply is not None else status!r}"[:500]
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, clock() - started, first_error


async def measure(
    connect: Callable[[], Connection],
    server: Server,
    method: str,
    maker: Any,
    concurrency: int,
    args: Any,
) -> Measured:
    path, make = maker
    if args.warmup > 0:
        await drive(
            connect,
            path,
            make,
            concurrency=concurrency,
            duration_s=args.warmup,
            requests=None,
            record=False,
        )
    server_before, client_before, machine_before = (
        server.cpu_s(),
        client_cpu_s(),
        machine_busy_s(),
    )
    latencies, errors, wall, first_error = await drive(
        connect,
        path,
        make,
        concurrency=concurrency,
        duration_s=None if args.requests else args.duration,
        requests=args.requests,
    )
    server_after, client_after, machine_after = server.cpu_s(), client_cpu_s(), machine_busy_s()
    return Measured(
        method,
        concurrency,
        latencies,
        errors,
        wall,
        _delta(server_before, server_after),
        client_after - client_before,
        _delta(machine_before, machine_after),
        first_error,
    )


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


async def run_benchmark(server: Server, args: Any) -> dict[str, Any]:
    limits = httpx.Limits(
        max_connections=max(args.levels), max_keepalive_connections=max(args.levels)
    )
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=timeout) as client:
        health = await wait_until_healthy(client, server)
        prefix = f"bench-{uuid.uuid4().hex[:8]}-"
        started = time.perf_counter()
        seeded = await seed(client, prefix, args.trees, args.tree_size, max(args.levels))
        seed_s = time.perf_counter() - started
        rng = random.Random(args.seed)

        def connect() -> Connection:
            if args.client == "httpx":
                return HttpxConnection(client)
            return RawConnection(server.url)

        results = []
        for method in args.methods:
            maker = request_maker(method, seeded, prefix, args.create_size, rng)
            for level in args.levels:
                found = await measure(connect, server, method, maker, level, args)
                results.append(found.summary())
        after = await rpc(client, "/system", "system.health", {})
    return {
        "health": health,
        "health_after": after,
        "seeded": {"trees": len(seeded.roots), "tasks": len(seeded.tasks), "seconds": seed_s},
        "results": results,
    }


# -- output -----------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "httpx": httpx.__version__,
        "client_loop": loop,
    }


def meets_target(result: dict[str, Any]) -> bool:
    return bool(
        result["method"] == TARGET["method"]
        and result["requests"]
        and result["req_per_s"] >= TARGET["req_per_s"]
        and result["p99_ms"] < TARGET["p99_ms"]
        and result["errors"] == 0
    )


def target_met_at(results: list[dict[str, Any]]) -> list[int] | None:
    """The concurrencies at which tasks.get met the target (None if not measured)."""
    if not any(r["method"] == TARGET["method"] for r in results):
        return None
    return [r["concurrency"] for r in results if meets_target(r)]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_report(doc: dict[str, Any]) -> None:
    m, p, s = doc["machine"], doc["parameters"], doc["seeded"]
    store = doc["health"].get("store", {})
    print(
        f"server: {doc['server']}  store: {store.get('kind')} ({store.get('location')})  "
        f"flowledger {doc['health'].get('version')}"
    )
    client = "raw HTTP/1.1" if p["client"] == "raw" else f"httpx {m['httpx']}"
    print(
        f"machine: {m['cpus']} cpus ({m['cpu_model']})  python {m['python']}  "
        f"{m['platform']}  client: {client} on {m['client_loop']}"
    )
    print(
        f"seeded {s['trees']:,} trees of {p['tree_size']} tasks ({s['tasks']:,} tasks) in "
        f"{s['seconds']:.1f} s; "
        + (f"{p['requests']:,} requests" if p["requests"] else f"{p['duration_s']:g} s")
        + f" per method after {p['warmup_s']:g} s warm-up; create: trees of "
        f"{p['create_size']} tasks"
    )
    print()
    print(
        f"{'method':<8} {'conc':>4} {'requests':>9} {'errors':>6} {'req/s':>8} {'p50 ms':>8} "
        f"{'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU: server':>11} {'client':>6} "
        f"{'other':>6}"
    )
    for r in doc["results"]:
        print(
            f"{r['method']:<8} {r['concurrency']:>4} {r['requests']:>9,} {r['errors']:>6,} "
            f"{(r['req_per_s'] or 0):>8,.0f} {_ms(r['p50_ms']):>8} {_ms(r['p90_ms']):>8} "
            f"{_ms(r['p99_ms']):>8} {_ms(r['max_ms']):>8} {_pct(r['server_cpu_pct']):>11} "
            f"{_pct(r['client_cpu_pct']):>6} {_pct(r['other_cpu_pct']):>6}"
        )
        if r["first_error"]:
            print(f"         first error: {r['first_error']}")
    print("(CPU in % of one core; other: the rest of the machine, which skews the figures)")
    met = doc["target_met_at_concurrency"]
    if met is not None:
        where = f"met at concurrency {', '.join(map(str, met))}" if met else "MISSED"
        print(
            f"target tasks.get >= {TARGET['req_per_s']:,} req/s at p99 < {TARGET['p99_ms']:g} ms:"
            f" {where}"
        )


def print_profile(path: str, top: int = 40) -> None:
    import pstats

    if not Path(path).exists():
        print(f"no profile at {path} (did the server stop cleanly?)", file=sys.stderr)
        return
    stats = pstats.Stats(path, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running server to drive (nothing is started)")
    parser.add_argument(
        "--database-url", help="PostgreSQL URL for the started server (a fresh schema)"
    )
    parser.add_argument(
        "--methods",
        default="get,create",
        help=f"comma-separated, in order, from {', '.join(METHODS)} (default get,create)",
    )
    parser.add_argument(
        "--concurrency",
        default="16",
        help="client workers (connections); a comma-separated list measures each in turn",
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="raw: one minimal HTTP/1.1 keep-alive connection per worker (default); "
        "httpx: one shared httpx.AsyncClient (costs this process about 1 ms of CPU a request)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per method")
    parser.add_argument("--requests", type=int, help="requests per method (instead of time)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds, not counted")
    parser.add_argument("--trees", type=int, default=200, help="trees seeded first")
    parser.add_argument("--tree-size", type=int, default=10, help="tasks per seeded tree")
    parser.add_argument("--create-size", type=int, default=1, help="tasks per created tree")
    parser.add_argument("--seed", type=int, default=1, help="random seed (which ids are read)")
    parser.add_argument(
        "--server-pid", type=int, help="with --url: the server's process id (for its CPU)"
    )
    parser.add_argument(
        "--server-cprofile", metavar="FILE", help="run the started server under cProfile"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: unknown {', '.join(unknown) or '(none given)'}")
    try:
        args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--concurrency: not a list of integers: {args.concurrency!r}")
    if not args.levels or min(args.levels, default=0) < 1:
        parser.error("--concurrency must be positive")
    if min(args.trees, args.tree_size, args.create_size) < 1:
        parser.error("--trees, --tree-size and --create-size must be positive")
    if args.duration <= 0 or args.warmup < 0 or (args.requests is not None and args.requests < 1):
        parser.error("--duration must be positive, --warmup not negative, --requests >= 1")
    if args.url and (args.database_url or args.server_cprofile):
        parser.error("--database-url and --server-cprofile start a server: not with --url")

    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run

    schema = f"fl_bench_{uuid.uuid4().hex[:10]}" if args.database_url else None
    try:
        if args.url:
            server = Server(args.url.rstrip("/"), pid=args.server_pid)
            found = run(run_benchmark(server, args))
        else:
            cprofile = os.path.abspath(args.server_cprofile) if args.server_cprofile else None
            with started_server(args.database_url, schema, cprofile) as server:
                found = run(run_benchmark(server, args))
    finally:
        if schema is not None:
            drop_schema(args.database_url, schema)
    doc = {
        "benchmark": "api",
        "server": server.url if args.url else f"flowledger serve (subprocess) at {server.url}",
        "machine": machine(),
        "parameters": {
            "methods": args.methods,
            "concurrency": args.levels,
            "client": args.client,
            "duration_s": None if args.requests else args.duration,
            "requests": args.requests,
            "warmup_s": args.warmup,
            "trees": args.trees,
            "tree_size": args.tree_size,
            "create_size": args.create_size,
            "seed": args.seed,
            "postgres_schema": schema,
            "server_cprofile": args.server_cprofile,
        },
        **found,
        "target": TARGET,
        "target_met_at_concurrency": target_met_at(found["results"]),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_report(doc)
    if args.server_cprofile:
        print_profile(os.path.abspath(args.server_cprofile))


if __name__ == "__main__":
    main()
