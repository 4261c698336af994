"""Run one flat tree of no-op tasks through aipartnerupflow 0.9.0's own API; print one JSON line.

Not for flowledger's venv: bench.apf_compare runs it with the Python of a venv that has
aipartnerupflow 0.9.0 installed (it imports nothing from flowledger).

Run: <that venv>/bin/python -P bench/apf_flat.py SIZE DB_PATH
The tree: a root and SIZE-1 children (parent_id root), every task on a registered no-op
executor (aipartnerupflow runs a parent's executor too; flowledger's root is a grouping node
with none). Timed: TaskExecutor().execute_tasks(tasks), which creates the tree in its store
(DuckDB at DB_PATH, its default kind of store) and runs it to its end; that is what its
JSON-RPC tasks.execute calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
import time
from typing import Any


def main() -> None:
    size, db_path = int(sys.argv[1]), sys.argv[2]
    os.environ["AIPARTNERUPFLOW_DB_PATH"] = db_path
    logging.disable(logging.WARNING)

    from aipartnerupflow import __version__
    from aipartnerupflow.core.base import BaseTask
    from aipartnerupflow.core.execution.task_executor import TaskExecutor
    from aipartnerupflow.core.extensions.decorators import executor_register

    @executor_register()
    class BenchNoop(BaseTask):  # type: ignore[misc]
        id = "bench_noop"
        name = "bench noop"
        description = "does nothing"
        cancelable = False

        @property
        def type(self) -> str:
            return "core"

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"ok": True}

        def get_input_schema(self) -> dict[str, Any]:
            return {}

    executor = {"schemas": {"method": "bench_noop"}, "params": {"executor_id": "bench_noop"}}
    tasks: list[dict[str, Any]] = [
        {"id": "root", "name": "root", "user_id": "bench", "priority": 2, **executor}
    ]
    tasks += [
        {
            "id": f"t{i}",
            "name": f"t{i}",
            "parent_id": "root",
            "user_id": "bench",
            "priority": 2,
            **executor,
        }
        for i in range(1, size)
    ]

    async def run() -> dict[str, Any]:
        start = time.perf_counter()
        result = await TaskExecutor().execute_tasks(tasks)
        return {"seconds": time.perf_counter() - start, "result": result}

    found = asyncio.run(run())
    print(
        json.dumps(
            {
                "aipartnerupflow": __version__,
                "tasks": size,
                "seconds": round(found["seconds"], 3),
                "status": found["result"].get("status"),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
