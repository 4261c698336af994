"""flowledger and aipartnerupflow 0.9.0 side by side on the same flat trees, in one run.

Run: python -m bench.apf_compare [--sizes 100,300] [--venv DIR] [--json FILE]

aipartnerupflow 0.9.0 does not install beside flowledger (it needs sqlalchemy<2.1,
a2a-sdk<0.4, duckdb<1.5, starlette<0.50, fastapi<0.123 and an undeclared greenlet), so it
gets a venv of its own, built on first use under --venv (default
~/.cache/flowledger-bench/aipartnerupflow-venv, pip from PyPI) and reused after.

For each size, in this order, each in a fresh process: flowledger (bench.scheduler's flat
tree: create_tree then a Runner at concurrency 16, no-op executors; end to end = create s +
run s), then aipartnerupflow (bench/apf_flat.py: TaskExecutor().execute_tasks on the same
flat tree, which creates and runs it; its default DuckDB store in a temporary directory).
Reported: seconds for each, and the ratio aipartnerupflow / flowledger.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_VENV = Path.home() / ".cache" / "flowledger-bench" / "aipartnerupflow-venv"
REQUIREMENTS = [
    "aipartnerupflow[a2a]==0.9.0",
    "sqlalchemy<2.1",
    "a2a-sdk<0.4",
    "duckdb<1.5",
    "starlette<0.50",
    "fastapi<0.123",
    "greenlet",
]
MARKER = "flowledger-bench-requirements.txt"
RUNNER = Path(__file__).with_name("apf_flat.py")
COUNT_COMPLETED = (
    "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
    "print(c.execute(\"SELECT count(*) FROM apflow_tasks WHERE status = 'completed'\")"
    ".fetchone()[0])"
)
INSTALL_TIMEOUT_S = 900
RUN_TIMEOUT_S = 1800


def ensure_venv(venv: Path, log: Any = sys.stderr) -> Path:
    """The venv's python, building the venv first unless it holds REQUIREMENTS already."""
    python = venv / "bin" / "python"
    marker = venv / MARKER
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"building {venv} (pip install {' '.join(REQUIREMENTS)})", file=log, flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *REQUIREMENTS,
        ],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    marker.write_text(wanted)
    return python


def run_flowledger(size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scheduler.json"
        command = [sys.executable, "-m", "bench.scheduler", "--sizes", str(size)]
        command += ["--shapes", "flat", "--json", str(out)]
        subprocess.run(
            command, check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).parent.parent
        )
        row: dict[str, Any] = json.loads(out.read_text())["rows"][0]
    return {
        "tasks": size,
        "seconds": round(row["create_s"] + row["run_s"], 4),
        "create_s": row["create_s"],
        "run_s": row["run_s"],
        "peak_rss_mib": row["peak_rss_mib"],
    }


def run_aipartnerupflow(python: Path, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run(
            [str(python), "-P", str(RUNNER), str(size), str(Path(tmp) / "apf.duckdb")],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            cwd=tmp,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(
                f"aipartnerupflow run failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        # Counted in another process: DuckDB refuses a second connection in the same one.
        counted = subprocess.run(
            [str(python), "-P", "-c", COUNT_COMPLETED, str(Path(tmp) / "apf.duckdb")],
            capture_output=True,
            text=True,
            check=True,
        )
        found["completed"] = int(counted.stdout.strip())
    found["process_wall_s"] = round(wall, 2)
    return found


def compare(sizes: list[int], venv: Path) -> dict[str, Any]:
    python = ensure_venv(venv)
    rows = []
    for size in sizes:
        ours = run_flowledger(size)
        theirs = run_aipartnerupflow(python, size)
        rows.append(
            {
                "tasks": size,
                "flowledger_s": ours["seconds"],
                "aipartnerupflow_s": theirs["seconds"],
                "ratio": round(theirs["seconds"] / ours["seconds"], 1),
                "aipartnerupflow_completed": theirs["completed"],
                "aipartnerupflow_status": theirs["status"],
                "flowledger_peak_rss_mib": ours["peak_rss_mib"],
                "aipartnerupflow_peak_rss_mib": theirs["peak_rss_mib"],
            }
        )
        print(
            f"{size:>6} tasks: flowledger {ours['seconds']:.3f} s, aipartnerupflow "
            f"{theirs['seconds']:.2f} s ({theirs['completed']} completed): "
            f"x{rows[-1]['ratio']:,.0f}",
            flush=True,
        )
    return {"benchmark": "aipartnerupflow", "venv": str(venv), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,300")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE as JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    doc = compare(sizes, args.venv)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
