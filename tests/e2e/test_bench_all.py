"""`python -m bench all --quick` as a real process (SQLite only): it runs every benchmark and
writes the markdown with a row for each figure and the machine it ran on. Nothing here
judges a timing: the figures only have to be there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 170  # a bound on waiting for the process, never a measured duration

FIGURES = [
    ("scheduler, flat", "overhead µs/task"),
    ("scheduler, layered", "overhead µs/task"),
    ("scheduler, chain", "overhead µs/task"),
    ("scheduler, flat", "ratio run / bare-asyncio baseline"),
    ("big flat tree", "create s"),
    ("big flat tree", "end to end s"),
    ("big flat tree", "reload from snapshot ms"),
    ("big flat tree", "reload by full replay ms"),
    ("big flat tree", "tasks.tree ms"),
    ("big flat tree", "RSS growth KiB per task"),
    ("many trees", "throughput: trees/s, tasks/s"),
    ("many trees", "most executor tasks in progress at once"),
    ("many trees", "overtaken by later trees"),
    ("projection rebuild", "log entries/s"),
    ("API", "tasks.get"),
    ("live projection", "same Ledger"),
]


def table_rows(markdown: str) -> list[list[str]]:
    rows = []
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| benchmark |"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.timeout(DEADLINE_S + 10)
def test_bench_all_quick_writes_every_figure_and_the_machine(tmp_path: Path) -> None:
    out, results = tmp_path / "benchmarks.md", tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    command = [sys.executable, "-m", "bench", "all", "--quick", "--no-postgres"]
    command += ["--out", str(out), "--json", str(results), "--cache", str(tmp_path / "cache")]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert done.returncode == 0, done.stderr[-4000:]

    text = out.read_text(encoding="utf-8")
    rows = table_rows(text)
    for bench, figure in FIGURES:
        found = [r for r in rows if r[0].startswith(bench) and r[1].startswith(figure)]
        assert found, f"no row {bench!r} / {figure!r}"
        sqlite, postgresql = found[0][2], found[0][3]
        assert any(ch.isdigit() for ch in sqlite), f"{bench} / {figure}: {sqlite!r}"
        assert postgresql == "not run"
    one_txn = next(r for r in rows if r[1].startswith("creation in one transaction"))
    assert set(one_txn[2].split(" / ")) == {"yes"}

    assert "## Machine" in text
    for label in ("| CPU |", "| RAM |", "| Python |", "| SQLite |", "| PostgreSQL |", "| date |"):
        assert label in text
    assert "## How to reproduce" in text
    assert "## Where the time goes" in text

    doc = json.loads(results.read_text(encoding="utf-8"))
    assert doc["stores"] == ["sqlite"]
    assert not [key for key, found in doc["results"].items() if "error" in found]
