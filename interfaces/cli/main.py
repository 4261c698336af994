"""`flowledger`: the root command, shared options, and error handling (exit 0 / 1 / 2)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any, NoReturn, TypeVar

import click
import msgspec

from application.config import ConfigError, Settings
from application.ledger import Ledger
from domain.errors import Conflict, DomainError, TaskNotFound

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print exact JSON.")(func)


@contextmanager
def open_ledger() -> Iterator[Ledger]:
    """A Ledger on the configured store; configuration and domain errors exit with 2."""
    try:
        ledger = Ledger(Settings.from_env())
    except ConfigError as exc:
        fail(str(exc))
    try:
        yield ledger
    except TaskNotFound as exc:
        fail(str(exc), data=exc.as_dict(), code=1)
    except Conflict as exc:
        fail(str(exc), data=exc.as_dict(), code=1)
    except DomainError as exc:
        fail(str(exc), data=exc.as_dict())
    finally:
        ledger.close()


def fail(message: str, *, data: dict[str, Any] | None = None, code: int = 2) -> NoReturn:
    """The reason on stderr (and each bad field when there are several), then exit `code`."""
    click.echo(f"error: {message}", err=True)
    fields = (data or {}).get("fields", [])
    for field in fields if len(fields) > 1 else ():
        click.echo(f"  {field['field']}: {field['reason']}", err=True)
    sys.exit(code)


def read_json(source: str) -> Any:
    """Read JSON from a file path or "-" (stdin); bad JSON exits 2 naming the place."""
    try:
        text = sys.stdin.buffer.read() if source == "-" else open(source, "rb").read()  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror}")
    where = "stdin" if source == "-" else source
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        fail(f"{where} is not valid JSON: {exc}")
    except RecursionError:
        fail(f"{where} nests JSON too deeply to read")


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    """`data` as JSON (encoded as the server encodes it, indented), else for people."""
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(data), indent=2).decode())
    else:
        human()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(version("flowledger"), prog_name="flowledger")
def cli() -> None:
    """flowledger: event-sourced task trees that can explain every run.

    Every command prints for people by default (tables and trees, coloured on a terminal)
    and exact JSON with --json: the same JSON the server's JSON-RPC method answers.

    \b
    Environment:
      FLOWLEDGER_HOME           data directory (embedded SQLite store), default ~/.flowledger
      FLOWLEDGER_DATABASE_URL   PostgreSQL store instead, e.g. postgresql://u@host:5432/db
      FLOWLEDGER_PLUGINS        comma-separated modules that register executors
      FLOWLEDGER_CONCURRENCY    most tasks running at once in one process (16)
      FLOWLEDGER_ALLOW_COMMANDS 1 enables the `command` executor

    \b
    Exit status:
      0  success
      1  the work failed, or a task was not found, or its state does not allow it
      2  bad usage or bad input (the reason is on stderr)

    \b
    Examples:
      flowledger run examples/pipeline.json
      flowledger tasks list --status failed
      flowledger tasks watch 3f2a... --json
      eval "$(flowledger completion bash)"
    """


def register_commands() -> None:
    """Import every command module: each registers its commands on `cli`."""
    from interfaces.cli import (  # noqa: F401
        completion,
        events,
        executors,
        history,
        projections,
        run,
        serve,
        tasks,
        tasks_run,
    )


def main() -> None:
    register_commands()
    cli()
