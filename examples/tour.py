"""The rest of the demo, after `flowledger run examples/pipeline.json`: validation, a run that
fails (with a retry and a skip cascade), a copy that re-runs only the failed part after a
fix, the audit trail of the failed run, and the read models, on the embedded store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from application.ledger import Ledger
from application.runner import Runner
from application.views import event_json, tree_json
from domain.copying import CopyMode
from domain.errors import DomainError
from domain.specs import parse_changes
from domain.tree import TaskTree
from interfaces.cli.render import print_history, print_task_table, print_tree
from projections.projector import Projector
from projections.queries import ReadModel
from projections.schema import create_read_engine

EXAMPLE = Path(__file__).with_name("pipeline.json")
say = Console(highlight=False).print


def failing_refunds(payload: dict[str, Any]) -> dict[str, Any]:
    """The example with `fetch refunds` failing twice (it may retry once)."""
    for task in payload["tasks"]:
        if task["name"] == "fetch refunds":
            task["schemas"] = {"method": "fail"}
            task["inputs"] = {"message": "refunds API timed out"}
            task["params"] = {"retry": {"max_attempts": 2, "backoff_s": 0.1}}
    return payload


async def run(ledger: Ledger, tree: TaskTree) -> TaskTree:
    async with Runner(ledger) as runner:
        return await runner.run(tree.id)


def main() -> None:
    ledger = Ledger()
    say(f"[bold]Store:[/] {ledger.settings.store_kind} at {ledger.settings.store_location}\n")

    say("[bold]1. A tree is validated before anything is stored.[/]")
    for bad in (
        [
            {"name": "a", "dependencies": ["b"]},
            {"name": "b", "parent_id": "a", "dependencies": ["a"]},
        ],
        [{"name": "a"}, {"name": "b"}],
        [{"name": "a", "schemas": {"method": "shop.fetch"}}],
    ):
        try:
            ledger.create_tree(bad)
        except DomainError as exc:
            say(f"  refused ({exc.code}): {exc.message}")

    say("\n[bold]2. A run where 'fetch refunds' fails twice: its dependents are skipped.[/]")
    tree = ledger.create_tree(failing_refunds(json.loads(EXAMPLE.read_text())))
    failed = asyncio.run(run(ledger, tree))
    print_tree(tree_json(failed))

    refunds = next(t.id for t in failed.tasks.values() if t.name == "fetch refunds")
    copy = ledger.copy_tree(refunds, CopyMode.MINIMAL)
    fixed = next(t.id for t in copy.tasks.values() if t.original_task_id == refunds)
    ledger.update_task(
        fixed, parse_changes({"schemas": {"method": "echo"}, "inputs": {"rows": 40}, "params": {}})
    )
    say(
        "\n[bold]3. A minimal copy re-runs only the failed part (fixed); the completed "
        "upstream results are carried over.[/]"
    )
    print_tree(tree_json(asyncio.run(run(ledger, ledger.load(copy.id)))))

    say("\n[bold]4. The audit trail of the failed run.[/]")
    print_history([event_json(e) for e in ledger.history(refunds)])
    version = 4
    then = ledger.state_at(refunds, version=version)
    say(f"\n[bold]5. The failed tree as it stood at version {version}[/] ({then.status.value}):")
    print_tree(tree_json(then))

    say("\n[bold]6. The read models: the projector catches up, then queries need no replay.[/]")
    engine = create_read_engine(ledger.settings)
    projector = Projector(ledger, engine)
    applied = projector.catch_up()
    say(
        f"  applied {applied} new tree events; the read models are at log position "
        f"{projector.last_position} of {projector.head()}"
    )
    model = ReadModel(engine)
    print_task_table(model.list_tasks(limit=5))
    counts = model.count(user_id="demo")["by_status"]
    say("  tasks of user demo: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    engine.dispose()
    ledger.close()


if __name__ == "__main__":
    main()
