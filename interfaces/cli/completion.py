"""`flowledger completion bash|zsh|fish`: the shell completion script (Click's)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from interfaces.cli.main import cli

SHELLS = ("bash", "zsh", "fish")


@cli.command("completion", short_help="Print a shell completion script (bash, zsh, fish).")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the script that makes SHELL complete flowledger's commands and options.

    \b
    Examples:
      eval "$(flowledger completion bash)"        # in ~/.bashrc
      eval "$(flowledger completion zsh)"         # in ~/.zshrc
      flowledger completion fish > ~/.config/fish/completions/flowledger.fish

    Exit status: 0 printed, 2 an unknown shell.
    """
    cls = get_completion_class(shell)
    assert cls is not None  # every SHELLS entry is one of Click's
    script = cls(cli, {}, "flowledger", "_FLOWLEDGER_COMPLETE").source()
    click.echo(script)
