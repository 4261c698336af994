"""`flowledger run`: create a tree from a file and run it here, or resume unfinished trees."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from uuid import UUID

import click
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import SQLAlchemyError

from application.config import ConfigError
from application.ledger import Ledger
from application.runner import Runner
from application.runner.runner import Listener
from application.views import tree_json
from domain import events as ev
from domain.status import TERMINAL, TaskStatus, TreeStatus
from domain.tree import TaskTree
from interfaces.cli.main import cli, emit, json_option, open_ledger, read_json
from interfaces.cli.render import print_tree
from projections.projector import Projector
from projections.queries import ReadModel
from projections.schema import create_read_engine

EXIT_INTERRUPTED = 130


def resumable(ledger: Ledger) -> list[UUID] | None:
    """Trees to resume, from the read models brought up to date (no scan of the log); None
    (the Runner then scans the log) if the read models cannot be used: recovery must not
    depend on them."""
    try:
        engine = create_read_engine(ledger.settings)
    except ConfigError as exc:
        click.echo(f"warning: {exc}; scanning the event log instead", err=True)
        return None
    try:
        projector = Projector(ledger, engine)
        projector.catch_up()
        return ReadModel(engine).resumable()
    except (LookupError, SQLAlchemyError) as exc:
        first = str(exc).split("\n")[0]
        click.echo(f"warning: read models unusable ({first}); scanning the event log", err=True)
        return None
    finally:
        engine.dispose()


def describe_event(tree: TaskTree, event: ev.TreeEvent) -> str | None:
    """One plain line for an event worth telling, else None."""
    task_id = getattr(event, "task_id", None)
    task = tree.tasks.get(task_id) if task_id else None
    who = f"{task.name} ({task_id})" if task else str(task_id)
    match event:
        case ev.RunRequested():
            return f"run {tree.id} ({len(tree.tasks)} tasks)"
        case ev.Started(attempt=attempt):
            return f"started {who}" + (f", attempt {attempt}" if attempt > 1 else "")
        case ev.Completed():
            return f"completed {who}"
        case ev.AttemptFailed(attempt=attempt, error=error, retry_in_s=delay):
            return f"attempt {attempt} of {who} failed: {error}; retrying in {delay:g} s"
        case ev.Failed(error=error):
            return f"failed {who}: {error}"
        case ev.Skipped(reason=reason):
            return f"skipped {who}: {reason}"
        case ev.Cancelled(reason=reason):
            return f"cancelled {who}: {reason}"
    return None


class PlainLines:
    """Progress as one line per event on stderr (for logs, pipes and scripts)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, tree: TaskTree, events: list[ev.TreeEvent]) -> None:
        for event in events:
            line = describe_event(tree, event)
            if line is not None:
                stamp = event.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3]
                self.console.print(f"{stamp} {line}", markup=False, highlight=False)


class LiveProgress:
    """A progress bar per tree and the tasks now running, on a terminal."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[running]}"),
            console=console,
        )
        self.bars: dict[UUID, Any] = {}
        self.live = Live(self.progress, console=console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def __call__(self, tree: TaskTree, events: list[ev.TreeEvent]) -> None:
        counts = tree.status_counts()
        done = sum(counts[s] for s in TERMINAL)
        running = [t.name for t in tree.tasks.values() if t.status is TaskStatus.IN_PROGRESS]
        shown = ", ".join(running[:3]) + (f" +{len(running) - 3}" if len(running) > 3 else "")
        bar = self.bars.get(tree.id)
        if bar is None:
            root = tree.tasks[tree.root_id].name
            bar = self.bars[tree.id] = self.progress.add_task(root, total=len(tree.tasks))
        self.progress.update(bar, completed=done, running=shown)
        for event in events:
            if isinstance(event, ev.Failed | ev.AttemptFailed | ev.Cancelled):
                line = describe_event(tree, event)
                if line:
                    self.progress.console.print(f"[red]{line}[/]", highlight=False)


def display(as_json: bool, quiet: bool) -> tuple[AbstractContextManager[Any], Listener | None]:
    """Progress on stderr: a live bar on a terminal, else plain lines (none when quiet)."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if quiet:
        return nullcontext(), None
    if err.is_terminal and not as_json:
        live = LiveProgress(err)
        return live, live
    return nullcontext(), PlainLines(err)


def _drive(
    ledger: Ledger,
    concurrency: int | None,
    listener: Listener | None,
    body: Callable[[Runner], Awaitable[list[TaskTree]]],
) -> list[TaskTree]:
    async def main() -> list[TaskTree]:
        async with Runner(ledger, concurrency=concurrency) as runner:
            if listener is not None:
                runner.listeners.append(listener)
            return await body(runner)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        click.echo(
            "interrupted: unfinished trees continue with `flowledger run --resume`", err=True
        )
        sys.exit(EXIT_INTERRUPTED)


@cli.command("run", short_help="Create a tree from a file and run it here; or --resume.")
@click.argument("source", metavar="FILE|-", required=False)
@click.option(
    "--resume",
    is_flag=True,
    help="Instead of a file, resume every tree a stopped process left unfinished.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 100_000),
    help="Most tasks running at once (default FLOWLEDGER_CONCURRENCY, else 16).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the final result.")
@json_option
def run(
    source: str | None, resume: bool, concurrency: int | None, quiet: bool, as_json: bool
) -> None:
    """Create a tree from FILE (a JSON task array or {"tasks": [...]}; - reads stdin) and
    run it in this process, showing progress on stderr; print the final tree.

    Interrupted or killed, the run continues with `flowledger run --resume` (which runs
    every unfinished tree that no other process is running).

    \b
    Examples:
      flowledger run examples/pipeline.json
      flowledger run - --json < tree.json | jq .tree_status
      flowledger run --resume

    Exit status: 0 the tree completed (every tree, with --resume), 1 it failed or was
    cancelled, 2 bad input (the reason and each bad field on stderr), 130 interrupted.
    """
    if (source is None) == (not resume):
        raise click.UsageError("give a FILE to run, or --resume (not both)")
    payload = read_json(source) if source is not None else None
    progress, listener = display(as_json, quiet)
    with open_ledger() as ledger:
        if payload is not None:
            created = ledger.create_tree(payload)

            async def body(runner: Runner) -> list[TaskTree]:
                return [await runner.run(created.id)]
        else:
            candidates = resumable(ledger)

            async def body(runner: Runner) -> list[TaskTree]:
                started = await runner.resume(candidates)
                if not started and not quiet:
                    click.echo("nothing to resume", err=True)
                return [await job for job in started.values()]

        with progress:
            finals = _drive(ledger, concurrency, listener, body)
    _report(finals, as_json, single=payload is not None)
    sys.exit(0 if all(t.status is TreeStatus.COMPLETED for t in finals) else 1)


def _report(finals: list[TaskTree], as_json: bool, *, single: bool) -> None:
    views = [tree_json(t) for t in finals]

    def human() -> None:
        for view in views:
            print_tree(view)

    emit(views[0] if single else views, as_json, human)
