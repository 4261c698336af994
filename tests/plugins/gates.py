"""`test.gate`: waits until the file inputs.path exists, logging each attempt to inputs.log.

A test holds the gate closed to keep a task running (then kills or cancels its process)
and opens it by creating the file. Waiting here is the product's executor doing its job,
not the test synchronising on time."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from application.executors import TaskContext, executor


@executor("test.gate", description="Waits for inputs.path to exist.")
async def gate(inputs: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    log = inputs.get("log")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps({"task_id": context.task_id, "attempt": context.attempt}) + "\n")
    print(f"gate entered {context.task_id} attempt {context.attempt}", file=sys.stderr, flush=True)
    path = Path(inputs["path"])
    while not path.exists():
        await asyncio.sleep(0.01)
    return {"opened": str(path), "attempt": context.attempt}
