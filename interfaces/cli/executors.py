"""`flowledger executors list`: the executors this process can run tasks with."""

from __future__ import annotations

from typing import Any

import click

from application.config import ConfigError
from application.executors import loaded_registry
from interfaces.cli.calls import settings
from interfaces.cli.main import cli, emit, fail, json_option
from interfaces.cli.render import print_executors


@cli.group(short_help="The executors tasks can run with.")
def executors() -> None:
    """The executors tasks run with (built-ins, installed packages, FLOWLEDGER_PLUGINS).

    \b
    Examples:
      flowledger executors list
      FLOWLEDGER_PLUGINS=shop.tasks flowledger executors list --json
    """


@executors.command("list", short_help="List the registered executors.")
@json_option
def list_executors(as_json: bool) -> None:
    """List every registered executor: its id (what a task names in params.executor_id
    or schemas.method), where it comes from, and what it does.

    With --json: [{id, name, description, source, input_schema, enabled}]; `enabled` is
    false for an executor switched off here (`command` without FLOWLEDGER_ALLOW_COMMANDS=1).
    Plugins that fail to load are named on stderr.

    \b
    Examples:
      flowledger executors list
      flowledger executors list --json | jq -r '.[].id'

    Exit status: 0 listed, 2 a FLOWLEDGER_PLUGINS module cannot be imported.
    """
    configured = settings()
    try:
        registry = loaded_registry(configured.plugins)
    except ConfigError as exc:
        fail(str(exc))
    off = configured.disabled_executors
    found: list[dict[str, Any]] = [
        e.describe() | {"enabled": e.id not in off} for e in registry.entries()
    ]
    for problem in registry.load_errors:
        click.echo(f"warning: cannot load executor {problem}", err=True)
    emit(found, as_json, lambda: print_executors(found))
