"""The `flowledger` command line (Click)."""

from interfaces.cli.main import cli, main

__all__ = ["cli", "main"]
