"""A tree whose Created event is several MB is stored in one transaction and reloaded, on
both stores. (On PostgreSQL the library's pipelined insert deadlocked at this size: see
application/postgres_store.py.)"""

from __future__ import annotations

import pytest

from application.ledger import Ledger
from domain.status import TaskStatus


def layered(n: int, width: int) -> list[dict[str, object]]:
    tasks: list[dict[str, object]] = [{"id": "big-root", "name": "root"}]
    for layer in range(n // width):
        for j in range(width):
            deps = (
                [] if layer == 0 else [f"big-{layer - 1}-{j}", f"big-{layer - 1}-{(j + 1) % width}"]
            )
            tasks.append(
                {
                    "id": f"big-{layer}-{j}",
                    "name": f"task {layer}/{j} with a longer name to weigh more",
                    "parent_id": "big-root",
                    "dependencies": deps,
                    "schemas": {"method": "noop"},
                    "inputs": {"note": "x" * 200},
                }
            )
    return tasks


@pytest.mark.timeout(120)
def test_a_tree_of_several_megabytes_is_stored_whole(ledger: Ledger) -> None:
    tasks = layered(8000, 800)
    tree = ledger.create_tree(tasks)
    loaded = ledger.load(tree.id)
    assert len(loaded.tasks) == len(tasks)
    assert {t.status for t in loaded.tasks.values()} == {TaskStatus.PENDING}
    assert ledger.tree_id_of("big-9-799") == tree.id
