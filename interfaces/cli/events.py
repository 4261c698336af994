"""`flowledger events export`: a tree's events as JSON lines, for archives and auditors."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import click

from application.audit import export_lines
from interfaces.cli.main import cli, emit, fail, json_option, open_ledger


@cli.group()
def events() -> None:
    """Export the event history (the audit trail).

    \b
    Examples:
      flowledger events export 3f2a... -o tree.jsonl
    """


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

    With --output, print a summary ({tree_id, events, output} with --json). A file is
    written whole or not at all. Deleted tasks keep their events.

    \b
    Examples:
      flowledger events export 3f2a... > tree.jsonl
      flowledger events export 3f2a... -o tree.jsonl --json

    Exit status: 0 exported, 1 no such task, 2 the output cannot be written.
    """
    with open_ledger() as ledger:
        tree_id = ledger.tree_id_of(task_id, removed_too=True)
        lines = export_lines(ledger, task_id)
        try:
            count = _write(lines, output)
        except OSError as exc:
            fail(f"cannot write {output or 'standard output'}: {exc.strerror or exc}")
    if output is not None:
        summary = {"tree_id": str(tree_id), "events": count, "output": str(output)}
        emit(
            summary,
            as_json,
            lambda: click.echo(f"exported {count} events of tree {tree_id} to {output}"),
        )


def _write(lines: Iterable[bytes], output: Path | None) -> int:
    """Write the lines; a regular file appears whole or not at all (written aside, then
    renamed); standard output, a device or a pipe is written as it goes."""
    if output is None:
        return _copy(lines, sys.stdout.buffer)
    if output.exists() and not output.is_file():
        with output.open("wb") as target:
            return _copy(lines, target)
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("wb") as target:
            count = _copy(lines, target)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _copy(lines: Iterable[bytes], target: BinaryIO) -> int:
    count = 0
    for line in lines:
        target.write(line)
        count += 1
    target.flush()
    return count
