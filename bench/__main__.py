"""python -m bench all [options]: every benchmark, then docs/benchmarks.md (bench.suite).
python -m bench NAME [options]: one benchmark, as python -m bench.NAME would run it."""

from __future__ import annotations

import importlib
import sys

MODULES = (
    "scheduler",
    "big_tree",
    "many_trees",
    "projections",
    "api",
    "live_projection",
    "reload",
    "apf_compare",
    "profile",
)


def main() -> None:
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("NAME: all, " + ", ".join(MODULES))
        return
    name, rest = argv[0], argv[1:]
    if name == "all":
        from bench import suite

        suite.main(rest)
        return
    if name not in MODULES:
        raise SystemExit(f"unknown benchmark {name!r}; choose from all, {', '.join(MODULES)}")
    sys.argv = [f"bench.{name}", *rest]
    importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
