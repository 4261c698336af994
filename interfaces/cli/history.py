"""`flowledger history`: a tree's events, and the tree as it stood at a version or instant."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from application.views import event_json, tree_json
from interfaces.cli.main import cli, emit, fail, json_option, open_ledger
from interfaces.cli.render import print_history, print_tree


def parse_at(value: str) -> tuple[int | None, datetime | None]:
    """A version number, or an ISO 8601 instant (naive means UTC)."""
    if value.isascii() and value.isdigit():
        return int(value), None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--at takes a version number or an ISO 8601 time, not {value!r}")
    return None, at if at.tzinfo else at.replace(tzinfo=UTC)


@cli.command("history")
@click.argument("task_id")
@click.option(
    "--at",
    "at",
    help="Show the tree as of this version number (e.g. 5) or ISO 8601 time "
    "(e.g. 2026-11-24T10:00:00Z) instead.",
)
@json_option
def history(task_id: str, at: str | None, as_json: bool) -> None:
    """Print the events of the tree holding TASK_ID, oldest first.

    Example: flowledger history 3f2a... --at 5
    """
    with open_ledger() as ledger:
        if at is None:
            entries = [event_json(e) for e in ledger.history(task_id)]
            emit(entries, as_json, lambda: print_history(entries))
            return
        version, instant = parse_at(at)
        data = tree_json(ledger.state_at(task_id, version=version, at=instant))
    emit(data, as_json, lambda: print_tree(data))
