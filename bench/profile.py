"""Where the time goes: record a benchmark with py-spy and summarise the samples.

Run: python -m bench.profile record OUT [--rate 500] [--native] -- python -m bench.scheduler ...
     python -m bench.profile summary OUT [--only REGEX ...] [--top 20]

py-spy (a dev tool: `pip install py-spy`, not a dependency of flowledger) samples every
thread; `record` keeps the raw collapsed stacks (one line per distinct stack: the frames,
root first, separated by ';', then the sample count), thread names included. Samples of
idle threads (waiting on a lock, a socket, epoll) are not recorded, so the percentages are
shares of the CPU time the process used. bench.many_trees --py-spy FILE records a served
process the same way.

`summary` prints, over the samples kept (--only: stacks matching any of the regular
expressions, say the run phase of a benchmark and the store thread), the share of each
thread, the "self" time by source file and by function (the innermost Python frame: time in
C code, such as sqlite3 or psycopg waiting on the server, shows on the Python line calling
it), and the inclusive time of the functions that appear most. With --native, py-spy stops
the threads to unwind their C stacks and its samples pile up on system calls (getpid() in
asyncio.get_running_loop showed 17 % of one profile, yet takes 0.14 µs): use it to see the
garbage collector and C libraries, and the default mode for the shares. Samples whose innermost
frame is a known wait (a pool thread waiting for work, the event loop in epoll) are
counted apart as "waiting" and left out of the shares.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Innermost frames that mean a thread is waiting, not working (py-spy without --native
# cannot tell a blocking C call from work): counted apart, as "waiting".
WAITING = (
    "_worker (concurrent/futures/thread.py)",
    "EpollSelector.select (selectors.py)",
    "Condition.wait (threading.py)",
    "Event.wait (threading.py)",
    "Thread._wait_for_tstate_lock (threading.py)",
    # uvloop (the server's loop) is C: its epoll wait shows as the line that started it
    "Runner.run (asyncio/runners.py)",
)
# With --native: C frames that mean the same (a lock, the GIL, a condition, epoll).
WAITING_NATIVE = (
    "PyThread_acquire_lock_timed",
    "pthread_cond_timedwait",
    "pthread_cond_wait",
    "epoll_wait",
    "epoll_pwait",
    "select_epoll_poll_impl",
)
# Categories, tried from the innermost frame outwards: the first frame that matches one
# gives the sample its category (frames matching none, C internals say, pass it on).
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("garbage collector", re.compile(r"^(gc_collect_main|gc_collect\w*|collect_with\w*) ")),
    (
        "SQLite: execute, commit, fsync",
        re.compile(r"eventsourcing/sqlite\.py|application/sqlite_store\.py|libsqlite3|_sqlite3"),
    ),
    (
        "PostgreSQL: psycopg, waiting on the server",
        re.compile(r"psycopg|eventsourcing/postgres\.py|application/postgres_store\.py|libpq"),
    ),
    (
        "encoding/decoding events (msgspec, codec)",
        re.compile(r"application/codec\.py|msgspec|eventsourcing/persistence\.py"),
    ),
    ("read models (projector, SQLAlchemy)", re.compile(r"projections/|sqlalchemy/")),
    ("domain: tree state, readiness, validation", re.compile(r"\(domain/")),
    (
        "runner: steps, slots, attempts",
        re.compile(r"application/runner/|application/logcontext|application/secrets"),
    ),
    ("executors (noop)", re.compile(r"application/executors/")),
    ("ledger (load, save)", re.compile(r"application/ledger\.py|application/snapshots")),
    ("JSON-RPC layer (interfaces)", re.compile(r"\(interfaces/")),
    ("HTTP server (uvicorn, Litestar)", re.compile(r"uvicorn|litestar|httptools|h11|anyio")),
    (
        "asyncio and threads (event loop, wake-ups, futures)",
        re.compile(
            r"asyncio/|_asynciomodule|selectors\.py|socketmodule|concurrent/futures|"
            r"threading\.py|_weakrefset|contextvars|uvloop"
        ),
    ),
    ("benchmark driver", re.compile(r"\(bench/")),
]
# Threads whose poll() is waiting for something to happen, not for an answer: PostgreSQL
# LISTEN in the live projector.
LISTENERS = ("LiveProjector._listen",)
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: pip install py-spy (a dev tool)")
    return found


def record(out: str, rate: int, command: list[str], native: bool = False) -> int:
    argv = [py_spy(), "record", "--rate", str(rate), "--threads", "--format", "raw"]
    argv += ["--native"] if native else []
    argv += ["--output", out, "--", *command]
    return subprocess.call(argv)


def short_file(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def parse(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def frame_parts(frame: str) -> tuple[str, str]:
    """(function, short file) of one frame."""
    found = FRAME.match(frame)
    if found is None:
        return frame, ""
    return found["func"], short_file(found["file"])


def _waiting(frames: list[str]) -> bool:
    func, file = frame_parts(frames[-1])
    if f"{func} ({file})" in WAITING:
        return True
    if func in ("poll", "select", "epoll_wait") and any(w in f for f in frames for w in LISTENERS):
        return True
    return any(frame_parts(f)[0] in WAITING_NATIVE for f in frames[-4:])


def categorise(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def summary(path: str, only: list[str], top: int) -> None:
    patterns = [re.compile(p) for p in only]
    stacks = [
        (frames, n)
        for frames, n in parse(path)
        if not patterns or any(p.search(";".join(frames)) for p in patterns)
    ]
    kept = sum(n for _, n in stacks)
    waiting = sum(n for frames, n in stacks if _waiting(frames))
    stacks = [(frames, n) for frames, n in stacks if not _waiting(frames)]
    total = kept - waiting
    if not total:
        raise SystemExit("no samples kept")
    threads: Counter[str] = Counter()
    self_file: Counter[str] = Counter()
    self_func: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    category: Counter[str] = Counter()
    for frames, n in stacks:
        first = frames[0]
        if first.startswith("thread ("):
            threads[first.split(": ", 1)[-1]] += n
            frames = frames[1:]
        if not frames:
            continue
        category[categorise(frames)] += n
        func, file = frame_parts(frames[-1])
        self_file[file] += n
        self_func[f"{func} ({file})"] += n
        seen = set()
        for frame in frames:
            func, file = frame_parts(frame)
            key = f"{func} ({file})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n

    def show(title: str, counts: Counter[str], limit: int) -> None:
        print(f"\n{title}")
        for key, n in counts.most_common(limit):
            print(f"  {100 * n / total:5.1f}%  {key}")

    print(f"{kept:,} samples kept, {waiting:,} of them waiting: shares of the other {total:,}")
    show("threads", threads, 10)
    show("by category (innermost frame that fits one)", category, len(CATEGORIES) + 1)
    show("self time by file", self_file, top)
    show("self time by function", self_func, top)
    show("inclusive time by function", inclusive, top * 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True)
    rec = sub.add_parser("record", help="run a command under py-spy")
    rec.add_argument("out")
    rec.add_argument("--rate", type=int, default=500, help="samples per second")
    rec.add_argument("--native", action="store_true", help="C frames too (slower sampling)")
    summ = sub.add_parser("summary", help="summarise a raw py-spy file")
    summ.add_argument("file")
    summ.add_argument("--only", action="append", default=[], help="keep stacks matching")
    summ.add_argument("--top", type=int, default=20)
    argv = sys.argv[1:]
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    if args.action == "record":
        if not command:
            parser.error("record: give the command after --")
        raise SystemExit(record(args.out, args.rate, command, args.native))
    summary(args.file, args.only, args.top)


if __name__ == "__main__":
    main()
