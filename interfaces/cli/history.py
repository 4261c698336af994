"""`flowledger history`: a tree's events (tasks.history), and the tree as it stood at a
version or instant (tasks.replay)."""

from __future__ import annotations

from typing import Any

import click

from interfaces.cli.calls import rpc
from interfaces.cli.main import cli, emit, json_option
from interfaces.cli.render import print_history, print_tree


@cli.command("history", short_help="A tree's events, or the tree at a version or time.")
@click.argument("task_id")
@click.option(
    "--at",
    "at",
    help="Show the tree as of this version number (e.g. 5) or ISO 8601 time "
    "(e.g. 2026-11-24T10:00:00Z; no zone means UTC) instead.",
)
@click.option("--after-version", type=int, help="Only events after this version.")
@click.option("--limit", type=int, help="At most this many events.")
@json_option
def history(
    task_id: str, at: str | None, after_version: int | None, limit: int | None, as_json: bool
) -> None:
    """Print the events of the tree holding TASK_ID, oldest first (tasks.history); with
    --at, the tree as it stood then (tasks.replay). Deleted tasks keep their history.

    \b
    Examples:
      flowledger history 3f2a...
      flowledger history 3f2a... --after-version 10 --limit 5 --json
      flowledger history 3f2a... --at 5
      flowledger history 3f2a... --at 2026-11-24T10:00:00Z

    Exit status: 0 shown, 1 no such task, 2 bad --at, --after-version or --limit.
    """
    if at is None:
        params: dict[str, Any] = {"task_id": task_id}
        if after_version is not None:
            params["after_version"] = after_version
        if limit is not None:
            params["limit"] = limit
        entries = rpc("tasks.history", params)
        emit(entries, as_json, lambda: print_history(entries))
        return
    if after_version is not None or limit is not None:
        raise click.UsageError("--at shows one state: it takes no --after-version or --limit")
    key = "version" if at.isascii() and at.isdigit() else "at"
    data = rpc("tasks.replay", {"task_id": task_id, key: int(at) if key == "version" else at})
    emit(data, as_json, lambda: print_tree(data))
