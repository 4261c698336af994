"""Many small trees submitted at once through the server: they all run, never more tasks at
once than the concurrency limit (as the event log records it), and none starves: no tree
is overtaken by more than a few slots' worth of trees submitted after it (trees of one
priority take turns). bench/many_trees.py measures the same at 1,000 trees."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from application.config import Settings
from application.ledger import Ledger
from domain import events as ev
from interfaces.rpc.orchestrator import Orchestrator
from tests.conftest import POSTGRES_URL, postgres_schema
from tests.http.server import running_server

TREES = 150
LIMIT = 4
CLIENTS = 12
# Not starving: a tree is overtaken only by trees whose submissions raced its own (CLIENTS
# in flight) or that ran beside it (LIMIT slots); a scheduler letting later trees or one
# tree take the slots would leave early trees overtaken by most of the batch.
MOST_OVERTAKEN = CLIENTS + LIMIT
WAIT_S = 120  # a bound on waiting for the run, never a measured duration
ENDS = (ev.Completed, ev.Failed, ev.AttemptFailed, ev.Cancelled)


def tree(i: int) -> list[dict[str, Any]]:
    root = f"many-{i}"
    children = [
        {"id": f"{root}-{k}", "name": f"c{k}", "parent_id": root, "params": {"executor_id": "noop"}}
        for k in range(2)
    ]
    return [{"id": root, "name": root}, *children]


async def submit_all(url: str) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(TREES):
        queue.put_nowait(i)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"jsonrpc": "2.0", "id": i, "method": "tasks.execute"}
                body["params"] = {"tasks": tree(i)}
                reply = (await http.post("/tasks", json=body)).json()
                assert reply["result"]["success"] is True, reply

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


def wait_idle(url: str) -> None:
    """Until every tree has ended: each tasks.execute with wait answers at its end."""
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        for i in range(TREES):
            body = {"jsonrpc": "2.0", "id": i, "method": "tasks.get"}
            body["params"] = {"task_id": f"many-{i}"}
            for _ in range(10_000):  # bounded; each read waits on the server, not on us
                status = http.post("/tasks", json=body).json()["result"]["tree_status"]
                if status in ("completed", "failed", "cancelled"):
                    break
                http.get("/system/health")
            else:
                raise AssertionError(f"many-{i} did not end")


def log_order(ledger: Ledger) -> list[Any]:
    """Every tree event, in the order of the log."""
    found = ledger.recorder.select_notifications(start=1, limit=10_000_000)
    tree_topics = [n for n in found if n.topic.startswith("tree.")]
    return [ledger.mapper.to_domain_event(n) for n in tree_topics]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_many_trees_share_the_slots_fairly(backend: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    if backend == "postgres":
        if not POSTGRES_URL:
            pytest.skip("FLOWLEDGER_TEST_POSTGRES_URL is not set (CI sets it)")
        schemas = postgres_schema()
        settings = Settings(home=home, database_url=POSTGRES_URL, database_schema=next(schemas))
    else:
        schemas = None
        settings = Settings(home=home)
    try:
        orchestrator = Orchestrator(settings, concurrency=LIMIT)
        with running_server(settings, orchestrator=orchestrator) as live:
            asyncio.run(submit_all(live.url))
            wait_idle(live.url)
        ledger = Ledger(settings)
        try:
            events = log_order(ledger)
        finally:
            ledger.close()
    finally:
        if schemas is not None:
            schemas.close()

    running = most = 0
    created: dict[str, int] = {}  # root id -> submission rank
    tree_of: dict[Any, str] = {}
    left: dict[str, int] = {}
    finished: list[str] = []  # roots in completion order
    for event in events:
        if isinstance(event, ev.Created):
            root = next(t.id for t in event.tasks if t.parent_id is None)
            created[root] = len(created)
            tree_of[event.originator_id] = root
            left[root] = len(event.tasks)
        elif isinstance(event, ev.Started) and event.task_id not in created:
            running += 1  # an executor task took a slot (grouping roots take none)
            most = max(most, running)
        elif isinstance(event, ENDS) and event.task_id not in created:
            running -= 1
        if isinstance(event, ev.Completed | ev.Failed | ev.Skipped | ev.Cancelled):
            root = tree_of[event.originator_id]
            left[root] -= 1
            if left[root] == 0:
                finished.append(root)

    assert sorted(created) == sorted(f"many-{i}" for i in range(TREES))
    assert sorted(finished) == sorted(created), "every tree ends"
    assert 0 < most <= LIMIT, most
    place = {root: n for n, root in enumerate(finished)}
    overtaken = {
        root: sum(1 for other in created if created[other] > rank and place[other] < place[root])
        for root, rank in created.items()
    }
    worst = max(overtaken.values())
    assert worst <= MOST_OVERTAKEN, (
        worst,
        sorted(overtaken.items(), key=lambda kv: -kv[1])[:5],
    )
