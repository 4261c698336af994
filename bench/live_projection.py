"""How soon a write is visible in the read models with a LiveProjector running.

Run: python -m bench.live_projection [--writes 300] [--database-url postgresql://...]
     [--json FILE]

Three rounds of --writes small trees, each write timed until the read models include it
(`LiveProjector.wait_for(position)`):
- "same Ledger": the writer is the projector's own Ledger (the server's case): the Ledger's
  on_stored hook wakes the projector;
- "other Ledger": a second Ledger on the same store, as another process would write: on
  PostgreSQL the event store's NOTIFY wakes the projector (LISTEN), on SQLite its poll
  (--poll-ms, default 250) does;
- "other, waiting": the same, but the waiter asks the projector to look at once (what a
  server request does for read-your-writes: wait_for(position) with wake=True).
Nobody waits with wake=True in the first two, so they show how soon the projector notices.
Reported: p50, p90, p99 and max latency in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from application.config import Settings
from application.ledger import Ledger
from projections.live import LiveProjector
from projections.projector import Projector
from projections.schema import create_read_engine

WAIT_S = 30.0


def latencies(writer: Ledger, live: LiveProjector, writes: int, wake: bool) -> list[float]:
    found = []
    for n in range(writes):
        started = time.perf_counter()
        writer.create_tree([{"id": f"bench-{uuid.uuid4().hex}", "name": f"tree {n}"}])
        if not live.wait_for(writer.last_position, timeout=WAIT_S, wake=wake):
            raise SystemExit(f"write {n} not visible after {WAIT_S} s: {live.last_error!r}")
        found.append((time.perf_counter() - started) * 1000)
    return found


def figures(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "writes": len(values),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": round(ordered[-1], 3),
    }


def summary(name: str, values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100)
    return (
        f"{name:<14} {len(values):>6} {cuts[49]:>8.2f} {cuts[89]:>8.2f} {cuts[98]:>8.2f} "
        f"{max(values):>8.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--database-url")
    parser.add_argument("--poll-ms", type=float, default=250.0)
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        schema = f"fl_bench_live_{uuid.uuid4().hex[:8]}" if args.database_url else None
        settings = Settings(home=Path(home), database_url=args.database_url, database_schema=schema)
        ledger, other = Ledger(settings), Ledger(settings)
        engine = create_read_engine(settings)
        live = LiveProjector(
            Projector(ledger, engine),
            poll_interval_s=args.poll_ms / 1000,
            listen_url=args.database_url,
        )
        try:
            with live:
                own = latencies(ledger, live, args.writes, wake=False)
                foreign = latencies(other, live, args.writes, wake=False)
                waiting = latencies(other, live, args.writes, wake=True)
        finally:
            engine.dispose()
            ledger.close()
            other.close()
            if schema:
                import psycopg

                with psycopg.connect(args.database_url, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"store: {settings.store_kind}; poll {args.poll_ms:g} ms; write to visible, in ms")
    print(f"{'writer':<14} {'writes':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    print(summary("same Ledger", own))
    print(summary("other Ledger", foreign))
    print(summary("other, waiting", waiting))
    if args.json:
        doc = {
            "benchmark": "live_projection",
            "store": settings.store_kind,
            "poll_ms": args.poll_ms,
            "ms": {
                "same_ledger": figures(own),
                "other_ledger": figures(foreign),
                "other_waiting": figures(waiting),
            },
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
