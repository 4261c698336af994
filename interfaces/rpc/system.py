"""system.* methods: the health of this process's store, read models and runner."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from interfaces.rpc.calls import Call
from interfaces.rpc.params import NoParams


async def health(call: Call, _: NoParams) -> dict[str, Any]:
    o = call.orchestrator
    settings = o.settings
    lag = await o.io(o.projector_lag)
    error = o.live.last_error if o.live is not None else None
    runner = o.runner
    running_tasks = sum(len(run.running) for run in runner.runs.values()) if runner else 0
    return {
        "status": "ok" if lag is not None and error is None else "degraded",
        "version": version("flowledger"),
        "store": {"kind": settings.store_kind, "location": settings.store_location},
        "projector_lag": lag,
        "projector_error": None if error is None else f"{type(error).__name__}: {error}",
        "running": {
            "trees": len(runner.runs) if runner else 0,
            "tasks": running_tasks,
            "concurrency": runner.slots.limit if runner else None,
        },
    }
