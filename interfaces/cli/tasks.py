"""`flowledger tasks ...`: create, inspect, copy and cancel trees in the store."""

from __future__ import annotations

import click

from application.views import tree_json
from domain.copying import CopyMode, plan_as_tasks
from interfaces.cli.main import cli, emit, json_option, open_ledger, read_json
from interfaces.cli.projections import caught_up_read_model
from interfaces.cli.render import console, print_task_table, print_tree
from projections.queries import MAX_LIMIT, STATUSES


@cli.group()
def tasks() -> None:
    """Create and inspect task trees."""


@tasks.command("create")
@click.argument("source", metavar="FILE|-")
@json_option
def create(source: str, as_json: bool) -> None:
    """Create a tree from a JSON task array (or {"tasks": [...]}) without running it.

    Example: flowledger tasks create examples/pipeline.json
    """
    payload = read_json(source)
    with open_ledger() as ledger:
        data = tree_json(ledger.create_tree(payload))
    emit(data, as_json, lambda: print_tree(data))


@tasks.command("tree")
@click.argument("task_id")
@json_option
def show_tree(task_id: str, as_json: bool) -> None:
    """Show the whole tree that holds TASK_ID.

    Example: flowledger tasks tree 3f2a...
    """
    with open_ledger() as ledger:
        data = tree_json(ledger.tree_of(task_id))
    emit(data, as_json, lambda: print_tree(data))


@tasks.command("copy")
@click.argument("task_id")
@click.option(
    "--mode",
    type=click.Choice([m.value for m in CopyMode]),
    default=CopyMode.MINIMAL.value,
    show_default=True,
    help="minimal: the task, its subtree and its dependents; full: every task; "
    "custom: --custom-ids.",
)
@click.option("--custom-ids", default="", help="Comma-separated ids for --mode custom.")
@click.option("--children", is_flag=True, help="With custom: include each id's subtree.")
@click.option("--dry-run", is_flag=True, help="Print the new task array; save nothing.")
@json_option
def copy(
    task_id: str, mode: str, custom_ids: str, children: bool, dry_run: bool, as_json: bool
) -> None:
    """Copy part of TASK_ID's tree into a new tree, to run it again.

    Example: flowledger tasks copy load-step --mode minimal
    """
    ids = [i.strip() for i in custom_ids.split(",") if i.strip()]
    with open_ledger() as ledger:
        if dry_run:
            plan = ledger.plan_copy(task_id, CopyMode(mode), ids, children)
            planned = {"tasks": plan_as_tasks(plan), "saved": False}
            emit(planned, as_json, lambda: console().print_json(data=planned))
            return
        data = tree_json(ledger.copy_tree(task_id, CopyMode(mode), ids, children))
    emit(data, as_json, lambda: print_tree(data))


@tasks.command("cancel")
@click.argument("task_ids", nargs=-1, required=True)
@json_option
def cancel(task_ids: tuple[str, ...], as_json: bool) -> None:
    """Cancel tasks and their unfinished subtrees; dependents that required them are skipped.

    Example: flowledger tasks cancel 3f2a... 9b1c...
    """
    with open_ledger() as ledger:
        outcomes = ledger.cancel(task_ids, reason="cancelled from the CLI")

    def human() -> None:
        for o in outcomes:
            click.echo(f"{o['task_id']}: {o['status']} ({o['message']})")

    emit(outcomes, as_json, human)
    if any(o["status"] == "not_found" for o in outcomes):
        raise SystemExit(1)


@tasks.command("list")
@click.option("--user", "user_id", help="Only this user's tasks.")
@click.option("--status", type=click.Choice(STATUSES), help="Only tasks in this status.")
@click.option("--all", "all_tasks", is_flag=True, help="Every task, not only roots.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@json_option
def list_tasks(
    user_id: str | None,
    status: str | None,
    all_tasks: bool,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List trees (root tasks), newest first, from the read models (brought up to date
    first).

    Example: flowledger tasks list --status failed --limit 20
    """
    with caught_up_read_model() as model:
        found = model.list_tasks(
            user_id=user_id, status=status, root_only=not all_tasks, limit=limit, offset=offset
        )
    emit(found, as_json, lambda: print_task_table(found))


@tasks.command("count")
@click.option("--user", "user_id", help="Only this user's tasks.")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@json_option
def count(user_id: str | None, status: str | None, as_json: bool) -> None:
    """Count tasks by status, from the read models (brought up to date first).

    Example: flowledger tasks count --user alice
    """
    with caught_up_read_model() as model:
        counted = model.count(user_id=user_id, status=status)

    def human() -> None:
        for name, n in counted["by_status"].items():
            click.echo(f"{name:<12}{n:>10,}")
        click.echo(f"{'total':<12}{counted['total']:>10,}")

    emit(counted, as_json, human)
