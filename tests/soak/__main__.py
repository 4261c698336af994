"""The long crash-safety run: `python -m tests.soak [--seed N] [--kills 30] [--trees 40]
[--tasks-per-tree 150] [--postgres-url URL] [--workdir DIR]`.

Prints progress on stderr, then the numbers (kills survived, requests, trees, tasks, events,
lost events, ...) and every problem found; exits 1 if there was any."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tests.soak.harness import SoakConfig, run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--trees", type=int, default=40)
    parser.add_argument("--tasks-per-tree", type=int, default=150)
    parser.add_argument("--max-kill-delay", type=float, default=1.5, help="seconds")
    parser.add_argument("--deadline", type=float, default=180.0, help="bound on each wait, s")
    parser.add_argument("--postgres-url", default=None, help="run on PostgreSQL (else SQLite)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store and logs here")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.trees < 1 or args.tasks_per_tree < 2:
        parser.error("--kills and --trees must be at least 1, --tasks-per-tree at least 2")

    config = SoakConfig(
        seed=args.seed,
        kills=args.kills,
        trees=args.trees,
        tasks_per_tree=args.tasks_per_tree,
        postgres_url=args.postgres_url,
        max_kill_delay_s=args.max_kill_delay,
        deadline_s=args.deadline,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.workdir is not None:
        report = run_soak(config, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="flowledger-soak-") as tmp:
            report = run_soak(config, Path(tmp))
    if args.json:
        print(json.dumps({**report.numbers(), "problem_list": report.problems}, indent=2))
    else:
        print(report.summary())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
