"""`flowledger events export`: a tree's events as JSON lines, for archives and auditors."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from application.audit import export_lines
from interfaces.cli.main import cli, emit, fail, json_option, open_ledger


@cli.group()
def events() -> None:
    """Export the event history (the audit trail)."""


@events.command("export")
@click.argument("task_id")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the lines to this file instead of standard output.",
)
@json_option
def export(task_id: str, output: Path | None, as_json: bool) -> None:
    """Write every event of the tree holding TASK_ID, oldest first, one JSON object per line
    ({format, tree_id, version, type, topic, timestamp, task_id, data}).

    With --output, print a summary ({tree_id, events, output} with --json).
    Example: flowledger events export 3f2a... -o tree.jsonl
    """
    with open_ledger() as ledger:
        tree_id = ledger.tree_id_of(task_id, removed_too=True)
        count = 0
        try:
            target = sys.stdout.buffer if output is None else output.open("wb")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror}")
        try:
            for line in export_lines(ledger, task_id):
                target.write(line)
                count += 1
        finally:
            target.flush()
            if output is not None:
                target.close()
    if output is not None:
        summary = {"tree_id": str(tree_id), "events": count, "output": str(output)}
        emit(
            summary,
            as_json,
            lambda: click.echo(f"exported {count} events of tree {tree_id} to {output}"),
        )
