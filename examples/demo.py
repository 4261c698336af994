"""A tour of flowledger on the embedded store: validate, record a run, copy, audit, replay.

The scheduler that runs executors arrives next; until then this demo records a run's
events itself, step by step, through the same TaskTree commands the runner will use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from application.ledger import Ledger
from application.views import event_json, tree_json
from domain.copying import CopyMode
from domain.errors import DomainError
from domain.tree import TaskTree
from interfaces.cli.render import print_history, print_tree

EXAMPLE = Path(__file__).with_name("pipeline.json")
say = Console(highlight=False).print


def record_run(ledger: Ledger, tree: TaskTree, failing: str) -> TaskTree:
    """Start ready tasks by priority and record their results; the task named `failing` fails."""
    tree.request_run()
    while ready := tree.ready_tasks():
        for task in ready:
            inputs: dict[str, Any] = dict(task.inputs)
            inputs |= {d.id: tree.tasks[d.id].result for d in task.dependencies}
            tree.start(task.id, attempt=1, inputs=inputs)
            if task.name == failing:
                tree.fail(task.id, "ConnectionError: refunds API timed out")
            else:
                tree.complete(task.id, {"task": task.name, "saw": sorted(inputs)})
            say(f"  ran [bold]{task.name}[/] (priority {task.priority}): {task.status.value}")
        ledger.save_trees(tree)
    return tree


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
    ):
        try:
            ledger.create_tree(bad)
        except DomainError as exc:
            say(f"  refused ({exc.code}): {exc.message}")

    tree = ledger.create_tree(json.loads(EXAMPLE.read_text()))
    say(
        f"\n[bold]2. Created {EXAMPLE.name}[/]; ready now, most urgent first: "
        + ", ".join(t.name for t in tree.ready_tasks())
    )
    print_tree(tree_json(tree))

    say("\n[bold]3. A run, recorded event by event (refunds fails; its dependents skip).[/]")
    tree = record_run(ledger, tree, failing="fetch refunds")
    print_tree(tree_json(ledger.load(tree.id)))

    refunds = next(t.id for t in tree.tasks.values() if t.name == "fetch refunds")
    copy = ledger.copy_tree(refunds, CopyMode.MINIMAL)
    say(
        "\n[bold]4. A minimal copy re-runs the failed part; completed upstream results "
        "are carried.[/]"
    )
    print_tree(tree_json(copy))

    say("\n[bold]5. The audit trail of the original tree.[/]")
    print_history([event_json(e) for e in ledger.history(refunds)])
    version = 3
    then = ledger.state_at(refunds, version=version)
    say(
        f"\n[bold]6. The tree as it stood at version {version}[/] "
        f"({then.status.value}; {sum(t.status == 'completed' for t in then.tasks.values())} "
        "completed):"
    )
    print_tree(tree_json(then))
    ledger.close()


if __name__ == "__main__":
    main()
