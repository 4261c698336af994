"""The whole command tree: a man-style --help with examples for every command, --version,
shell completion scripts that complete, and `flowledger executors list`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from interfaces.cli.main import cli, register_commands

ROOT = Path(__file__).resolve().parents[2]
TASK_COMMANDS = (
    *("create", "get", "tree", "children", "list", "count"),
    *("update", "delete", "copy", "execute", "cancel", "watch"),
)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in [n for n in os.environ if n.startswith("FLOWLEDGER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FLOWLEDGER_HOME", str(tmp_path / "home"))
    register_commands()  # as main() does

    runner = CliRunner()

    def invoke(*args: str, **kwargs: Any) -> Result:
        return runner.invoke(cli, list(args), prog_name="flowledger", **kwargs)

    return invoke


def commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def test_every_command_has_a_man_style_help_with_examples(run: Any) -> None:
    every = dict(commands(cli))
    wanted = {
        ("run",),
        ("serve",),
        ("history",),
        ("completion",),
        ("events", "export"),
        ("executors", "list"),
        ("projections", "rebuild"),
        ("projections", "status"),
        *(("tasks", name) for name in TASK_COMMANDS),
    }
    assert wanted <= set(every)
    for path, command in [((), cli), *every.items()]:
        shown = run(*path, "--help")
        assert shown.exit_code == 0, (path, shown.output)
        assert "Examples:" in shown.output, path
        assert f"flowledger {' '.join(path)}".rstrip() in shown.output, path
        if not isinstance(command, click.Group):
            assert "Exit status" in shown.output, path
    assert "--custom-ids" in run("tasks", "copy", "--help").output


def test_version(run: Any) -> None:
    shown = run("--version")
    assert shown.exit_code == 0
    assert shown.output.strip() == f"flowledger, version {version('flowledger')}"


def test_unknown_commands_and_options_exit_2(run: Any) -> None:
    assert run("tasks", "frobnicate").exit_code == 2
    assert run("tasks", "list", "--colour").exit_code == 2
    assert run("completion", "powershell").exit_code == 2


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_shell_script(run: Any, shell: str) -> None:
    shown = run("completion", shell)
    assert shown.exit_code == 0, shown.output
    assert "_FLOWLEDGER_COMPLETE" in shown.output
    assert f"{shell}_complete" in shown.output


def test_the_completion_script_completes_commands_and_options(run: Any) -> None:
    def complete(words: str, shell: str = "bash") -> str:
        env = {
            "_FLOWLEDGER_COMPLETE": f"{shell}_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        done = run(env=env)
        assert done.exit_code == 0, done.output
        return str(done.output)

    assert complete("flowledger tasks ex").splitlines() == ["plain,execute"]
    assert "plain,--mode" in complete("flowledger tasks copy x --mo").splitlines()
    assert "plain,zsh" in complete("flowledger completion z").splitlines()
    assert "execute" in complete("flowledger tasks ex", "zsh")


def test_bash_sources_the_script(run: Any, tmp_path: Path) -> None:
    """The printed script is valid bash and registers the completion function."""
    printed = run("completion", "bash")
    assert printed.exit_code == 0, printed.output
    script = tmp_path / "complete.bash"
    script.write_text(printed.stdout)
    checked = subprocess.run(
        ["bash", "-c", f"source {script} && complete -p flowledger"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert "_flowledger_completion" in checked.stdout


def test_executors_list(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = run("executors", "list", "--json")
    assert listed.exit_code == 0, listed.output
    found = {e["id"]: e for e in json.loads(listed.stdout)}
    assert {"noop", "echo", "sleep", "fail", "command", "http", "aggregate_results"} <= set(found)
    assert set(found["echo"]) == {"id", "name", "description", "source", "input_schema", "enabled"}
    assert found["echo"]["source"] == "decorator"
    assert found["http"]["source"].startswith("entry point")
    assert found["command"]["enabled"] is False
    monkeypatch.setenv("COLUMNS", "200")  # a table as wide as its text, whatever the terminal
    human = run("executors", "list")
    assert human.exit_code == 0
    assert "command (off)" in human.stdout
    assert "Returns its resolved inputs" in human.stdout

    monkeypatch.setenv("FLOWLEDGER_ALLOW_COMMANDS", "1")
    monkeypatch.setenv("FLOWLEDGER_PLUGINS", "tests.plugins.gates")
    found = {e["id"]: e for e in json.loads(run("executors", "list", "--json").stdout)}
    assert found["command"]["enabled"] is True
    assert found["test.gate"]["description"] == "Waits for inputs.path to exist."

    monkeypatch.setenv("FLOWLEDGER_PLUGINS", "no.such.plugin")
    broken = run("executors", "list")
    assert broken.exit_code == 2
    assert "cannot import 'no.such.plugin'" in broken.stderr
    assert "Traceback" not in broken.output
