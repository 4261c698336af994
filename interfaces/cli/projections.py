"""`flowledger projections rebuild|status`: the read models' position, lag and rebuild."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import SQLAlchemyError

from application.config import ConfigError
from application.ledger import Ledger
from interfaces.cli.main import cli, emit, fail, json_option, open_ledger
from interfaces.cli.render import console
from projections.projector import Projector
from projections.queries import ReadModel
from projections.schema import create_read_engine, read_model_url

REBUILD_HINT = " (if this persists: flowledger projections rebuild)"


@contextmanager
def projector_of(ledger: Ledger) -> Iterator[Projector]:
    """The projector of `ledger`'s read models (created if missing); a bad store exits 2."""
    try:
        engine = create_read_engine(ledger.settings)
    except ConfigError as exc:
        fail(str(exc))
    try:
        yield Projector(ledger, engine)
    except (LookupError, SQLAlchemyError) as exc:
        fail(f"the read models cannot be used: {exc}".split("\n")[0] + REBUILD_HINT)
    finally:
        engine.dispose()


@contextmanager
def open_projector() -> Iterator[Projector]:
    """The configured store's projector."""
    with open_ledger() as ledger, projector_of(ledger) as projector:
        yield projector


@contextmanager
def caught_up_read_model() -> Iterator[ReadModel]:
    """The read models, brought up to date with the event log first: a short-lived process
    never reads older data than the store holds when it starts."""
    with open_projector() as projector:
        projector.catch_up()
        yield ReadModel(projector.engine)


@cli.group(short_help="Inspect and rebuild the read models.")
def projections() -> None:
    """Inspect and rebuild the read models (the query side: lists, counts, trees).

    \b
    Examples:
      flowledger projections status
      flowledger projections rebuild
    """


@projections.command("status")
@json_option
def status(as_json: bool) -> None:
    """Show how far the read models have followed the event log.

    \b
    Examples:
      flowledger projections status
      flowledger projections status --json | jq .lag

    Exit status: 0 shown, 1 the read models hold events the log no longer has (rebuild
    them), 2 the read models cannot be used.
    """
    with open_projector() as projector:
        progress = projector.progress()
        data: dict[str, Any] = {
            "name": projector.name,
            "position": progress.position,
            "head": progress.head,
            "lag": progress.lag,
            "updated_at": progress.updated_at.isoformat() if progress.updated_at else None,
            "read_models": read_model_url(projector.ledger.settings).render_as_string(),
            "ahead": progress.ahead,
        }

    def human() -> None:
        state = "up to date" if not data["lag"] else f"{data['lag']} log entries behind"
        if data["ahead"]:
            state = "AHEAD of the event store, which lost or replaced events: rebuild them"
        click.echo(f"position {data['position']} of {data['head']}: {state}")
        click.echo(f"last applied {data['updated_at'] or 'never'}; tables in {data['read_models']}")

    emit(data, as_json, human)
    if progress.ahead:
        sys.exit(1)


@projections.command("rebuild")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
def rebuild(quiet: bool, as_json: bool) -> None:
    """Replace the read models by a replay of every event, in one transaction.

    Safe while a server runs: its readers keep seeing the old rows until the rebuild
    commits, and its projector waits for the rebuild (or, past its lock timeout, backs
    off and retries), then follows the events written meanwhile.

    \b
    Examples:
      flowledger projections rebuild
      flowledger projections rebuild --quiet --json

    Exit status: 0 rebuilt, 2 the read models cannot be used.
    """
    with open_projector() as projector:
        head = projector.head()
        started = time.perf_counter()
        show = not quiet and not as_json and sys.stderr.isatty()
        bar = Progress(
            TextColumn("rebuilding"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(stderr=True),
            disable=not show,
        )
        with bar:
            job = bar.add_task("events", total=head)
            applied = projector.rebuild(
                on_batch=lambda position, _n: bar.update(job, completed=position)
            )
        seconds = time.perf_counter() - started
        position = projector.last_position
        data = {
            "events": applied,  # tree events (the log also holds task-id claims)
            "position": position,
            "seconds": round(seconds, 3),
            "log_entries_per_second": round(position / seconds) if seconds > 0 else None,
        }

    def human() -> None:
        rate = f"{data['log_entries_per_second']:,} log entries/s" if seconds else "-"
        click.echo(
            f"rebuilt the read models: {applied:,} tree events of {data['position']:,} log "
            f"entries in {seconds:.2f} s ({rate})"
        )

    emit(data, as_json, human)
