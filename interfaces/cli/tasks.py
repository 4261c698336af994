"""`flowledger tasks ...`: create, inspect, change, copy and cancel trees in the store.

Each command runs the server's JSON-RPC method (interfaces.cli.calls.rpc): the same
validation, the same errors, the same JSON. `execute` and `watch` are in tasks_run.py."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from interfaces.cli.calls import rpc
from interfaces.cli.main import cli, emit, fail, json_option, read_json
from interfaces.cli.projections import caught_up_read_model
from interfaces.cli.render import console, print_task, print_task_table, print_tree
from projections.queries import STATUSES


@cli.group()
def tasks() -> None:
    """Create, inspect, change, run, follow and cancel task trees.

    Each subcommand runs the JSON-RPC method of the same name (tasks.get, tasks.copy, ...)
    in this process, on the store the environment selects: the same checks, the same
    errors and, with --json, the same JSON as the server.

    \b
    Examples:
      flowledger tasks create examples/pipeline.json
      flowledger tasks execute 3f2a...
      flowledger tasks --help
    """


@tasks.command("create")
@click.argument("source", metavar="FILE|-")
@json_option
def create(source: str, as_json: bool) -> None:
    """Create a tree from FILE without running it (tasks.create).

    FILE holds a JSON task array, {"tasks": [...]} or one task; - reads stdin. Prints
    the new tree; run it with `flowledger tasks execute ROOT_ID`.

    \b
    Examples:
      flowledger tasks create examples/pipeline.json
      echo '[{"name": "hello", "schemas": {"method": "echo"}}]' | flowledger tasks create -

    Exit status: 0 created, 2 the tree was refused (the reason and each field on stderr).
    """
    data = rpc("tasks.create", read_json(source))
    emit(data, as_json, lambda: print_tree(data))


@tasks.command("get")
@click.argument("task_id")
@json_option
def get(task_id: str, as_json: bool) -> None:
    """Show one task, every field (tasks.get).

    \b
    Examples:
      flowledger tasks get 3f2a...
      flowledger tasks get 3f2a... --json | jq .result

    Exit status: 0 found, 1 no such task.
    """
    data = rpc("tasks.get", {"task_id": task_id})
    emit(data, as_json, lambda: print_task(data))


@tasks.command("tree", short_help="Show the whole tree holding a task.")
@click.argument("task_id")
@json_option
def show_tree(task_id: str, as_json: bool) -> None:
    """Show the whole tree that holds TASK_ID, from its root (tasks.tree).

    \b
    Examples:
      flowledger tasks tree 3f2a...
      flowledger tasks tree 3f2a... --json | jq .tree_status

    Exit status: 0 found, 1 no such task.
    """
    data = rpc("tasks.tree", {"task_id": task_id})
    emit(data, as_json, lambda: print_tree(data))


@tasks.command("children", short_help="List a task's direct children.")
@click.argument("task_id", required=False)
@click.option("--parent", "parent_id", metavar="TASK_ID", help="The parent (instead of TASK_ID).")
@json_option
def children(task_id: str | None, parent_id: str | None, as_json: bool) -> None:
    """List the direct children of a task, most urgent first (tasks.children).

    Give the parent as TASK_ID or as --parent (one of them).

    \b
    Examples:
      flowledger tasks children 3f2a...
      flowledger tasks children --parent 3f2a... --json

    Exit status: 0 found, 1 no such task, 2 bad usage.
    """
    params = {k: v for k, v in (("task_id", task_id), ("parent_id", parent_id)) if v is not None}
    found = rpc("tasks.children", params)
    emit(found, as_json, lambda: print_task_table(found))


@tasks.command("list", short_help="List trees (or every task), newest first.")
@click.option("--user", "user_id", help="Only this user's tasks.")
@click.option("--status", type=click.Choice(STATUSES), help="Only tasks in this status.")
@click.option("--all", "all_tasks", is_flag=True, help="Every task, not only roots.")
@click.option(
    "--limit", type=int, default=100, show_default=True, help="At most this many (up to 1000)."
)
@click.option("--offset", type=int, default=0, show_default=True, help="Skip this many first.")
@json_option
def list_tasks(
    user_id: str | None,
    status: str | None,
    all_tasks: bool,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List trees (root tasks; every task with --all), newest first (tasks.list).

    Reads the read models, brought up to date with the event log first, so runs of
    every process (a server's too) are seen.

    \b
    Examples:
      flowledger tasks list --status failed --limit 20
      flowledger tasks list --all --user alice --json

    Exit status: 0 listed (maybe nothing), 2 bad option or unusable read models.
    """
    params = {
        "user_id": user_id,
        "status": status,
        "root_only": not all_tasks,
        "limit": limit,
        "offset": offset,
    }
    found = rpc("tasks.list", params, read_model=True)
    emit(found, as_json, lambda: print_task_table(found))


@tasks.command("count", short_help="Count tasks by status.")
@click.option("--user", "user_id", help="Only this user's tasks.")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@json_option
def count(user_id: str | None, status: str | None, as_json: bool) -> None:
    """Count tasks by status, from the read models (brought up to date first).

    \b
    Examples:
      flowledger tasks count
      flowledger tasks count --user alice --json

    Exit status: 0 counted, 2 bad option or unusable read models.
    """
    with caught_up_read_model() as model:
        counted = model.count(user_id=user_id, status=status)

    def human() -> None:
        for name, n in counted["by_status"].items():
            click.echo(f"{name:<12}{n:>10,}")
        click.echo(f"{'total':<12}{counted['total']:>10,}")

    emit(counted, as_json, human)


def _json_value(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """A click callback: the option's value read as JSON (exit 2 naming it if it is not)."""
    if value is None:
        return None
    try:
        return msgspec.json.decode(value)
    except (msgspec.DecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise click.BadParameter(f"not valid JSON: {reason}") from None


UPDATABLE = ("name", "priority", "inputs", "params", "schemas", "dependencies")


@tasks.command("update", short_help="Change a pending task.")
@click.argument("task_id")
@click.argument("source", metavar="[FILE|-]", required=False)
@click.option("--name", help="The new name.")
@click.option("--priority", type=int, help="The new priority (lower runs first).")
@click.option("--inputs", callback=_json_value, help="New inputs (JSON object).")
@click.option("--params", callback=_json_value, help="New params (JSON object).")
@click.option("--schemas", callback=_json_value, help="New schemas (JSON object).")
@click.option(
    "--dependencies",
    callback=_json_value,
    help='New dependencies (JSON array: ["id", {"id": "x", "required": false}]).',
)
@json_option
def update(task_id: str, source: str | None, as_json: bool, **options: Any) -> None:
    """Change a pending task (tasks.update): its name, priority, inputs, params, schemas
    or dependencies. parent_id, user_id, status and result cannot be changed.

    The changes come from the options, or from FILE (- reads stdin) holding a JSON object
    such as {"priority": 1, "inputs": {"n": 2}}, or both (a field at most once).

    \b
    Examples:
      flowledger tasks update 3f2a... --priority 0 --inputs '{"day": "2026-01-31"}'
      echo '{"name": "load"}' | flowledger tasks update 3f2a... - --json

    Exit status: 0 changed, 1 no such task or it is not pending, 2 a bad field.
    """
    changes: dict[str, Any] = {}
    if source is not None:
        given = read_json(source)
        if not isinstance(given, dict):
            fail(f"{'stdin' if source == '-' else source} must hold a JSON object of changes")
        if "task_id" in given:
            fail("the task to change is the TASK_ID argument; remove task_id from the file")
        changes |= given
    for name in UPDATABLE:
        value = options[name]
        if value is None:
            continue
        if name in changes:
            fail(f"{name} is given twice: in the file and as --{name}")
        changes[name] = value
    data = rpc("tasks.update", {"task_id": task_id, **changes})
    emit(data, as_json, lambda: print_task(data))


@tasks.command("delete")
@click.argument("task_id")
@json_option
def delete(task_id: str, as_json: bool) -> None:
    """Delete a pending task and its subtree (tasks.delete).

    Only when the whole subtree is pending and no other task depends on it; the events
    stay in the history.

    \b
    Examples:
      flowledger tasks delete 3f2a...
      flowledger tasks delete 3f2a... --json | jq .deleted_count

    Exit status: 0 deleted, 1 no such task, or it is not pending, or something needs it.
    """
    data = rpc("tasks.delete", {"task_id": task_id})
    emit(
        data,
        as_json,
        lambda: click.echo(
            f"deleted {data['deleted_count']} task(s): {', '.join(data['deleted_ids'])}"
        ),
    )


@tasks.command("copy", short_help="Copy part of a tree into a new tree, to run again.")
@click.argument("task_id")
@click.option(
    "--mode",
    type=click.Choice(["minimal", "full", "custom"]),
    default="minimal",
    show_default=True,
    help="minimal: the task, its subtree and its dependents; full: every task; "
    "custom: --custom-ids.",
)
@click.option("--custom-ids", help="Comma-separated ids for --mode custom.")
@click.option("--children", is_flag=True, help="With custom: include each id's subtree.")
@click.option("--dry-run", is_flag=True, help="Print the new task array; save nothing.")
@json_option
def copy(
    task_id: str,
    mode: str,
    custom_ids: str | None,
    children: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Copy part of TASK_ID's tree into a new pending tree, to run it again (tasks.copy).

    Results of tasks outside the copy that it depends on are carried over.

    \b
    Examples:
      flowledger tasks copy 3f2a... --mode minimal
      flowledger tasks copy 3f2a... --mode custom --custom-ids a,b --children --dry-run

    Exit status: 0 copied, 1 no such task, 2 bad options.
    """
    params: dict[str, Any] = {
        "task_id": task_id,
        "copy_mode": mode,
        "children": children,
        "save": not dry_run,
    }
    if custom_ids is not None:
        params["custom_task_ids"] = [i.strip() for i in custom_ids.split(",") if i.strip()]
    data = rpc("tasks.copy", params)
    if dry_run:
        emit(data, as_json, lambda: console().print_json(data=data))
    else:
        emit(data, as_json, lambda: print_tree(data))


@tasks.command("cancel", short_help="Cancel tasks and their unfinished subtrees.")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--reason", default="cancelled from the CLI", show_default=True)
@click.option("--force", is_flag=True, help="Recorded with the cancel (as the server does).")
@json_option
def cancel(task_ids: tuple[str, ...], reason: str, force: bool, as_json: bool) -> None:
    """Cancel tasks and their unfinished subtrees (tasks.cancel); dependents that required
    them are skipped. A tree running in another process (a server, `flowledger run`)
    stops its executors there.

    Reports each id: cancelled, not_cancelable (already finished) or not_found.

    \b
    Examples:
      flowledger tasks cancel 3f2a... 9b1c...
      flowledger tasks cancel 3f2a... --reason "wrong day" --json

    Exit status: 0 each id was found, 1 an id was not found.
    """
    params = {"task_ids": list(task_ids), "reason": reason, "force": force}
    outcomes = rpc("tasks.cancel", params)

    def human() -> None:
        for o in outcomes:
            click.echo(f"{o['task_id']}: {o['status']} ({o['message']})")

    emit(outcomes, as_json, human)
    if any(o["status"] == "not_found" for o in outcomes):
        raise SystemExit(1)
