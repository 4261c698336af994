"""The built-in executors: noop, echo, sleep, fail, command, aggregate_results, system_info.
(`http` lives in interfaces/ and arrives through the entry-point group like any plugin.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shlex
import shutil
import signal
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from application.config import command_allowlist
from application.executors.context import TaskContext
from application.executors.registry import executor

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout/stderr a command result keeps (the tail)
STDERR_TAIL = 2000  # characters of stderr quoted in a failed command's error


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


@executor("noop", description="Does nothing and returns null.")
async def noop(inputs: dict[str, Any]) -> None:
    return None


@executor("echo", description="Returns its resolved inputs.")
async def echo(inputs: dict[str, Any]) -> dict[str, Any]:
    return inputs


class SleepInputs(Open):
    seconds: float = Field(default=0.0, ge=0, le=7 * 24 * 3600, allow_inf_nan=False)


@executor("sleep", description="Waits inputs.seconds, then returns {slept: seconds}.")
class Sleep:
    id = "sleep"
    input_schema = SleepInputs

    async def execute(self, inputs: dict[str, Any]) -> dict[str, float]:
        await asyncio.sleep(inputs["seconds"])
        return {"slept": inputs["seconds"]}


class FailInputs(Open):
    message: str = "failed on purpose"


class RequestedFailure(Exception):
    """Raised by the `fail` executor."""


@executor("fail", description="Fails with inputs.message.", input_schema=FailInputs)
async def fail(inputs: dict[str, Any]) -> None:
    raise RequestedFailure(inputs["message"])


@executor(
    "aggregate_results",
    description="Returns {dependency id: result} of the dependencies that completed.",
)
async def aggregate_results(inputs: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    return dict(context.dependency_results)


class SystemInfoInputs(Open):
    resource: Literal["cpu", "memory", "disk", "all"] = "all"


def _memory() -> dict[str, int | None]:
    total = available = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo if ":" in line)
        total = int(fields["MemTotal"].split()[0]) * 1024
        available = int(fields["MemAvailable"].split()[0]) * 1024
    return {"total_bytes": total, "available_bytes": available}


@executor(
    "system_info",
    description="Reports cpu, memory and disk facts of the machine (inputs.resource).",
    input_schema=SystemInfoInputs,
)
def system_info(inputs: dict[str, Any]) -> dict[str, Any]:
    wanted = inputs["resource"]
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    if wanted in ("cpu", "all"):
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        info["cpu"] = {"count": os.cpu_count(), "load_average": load}
    if wanted in ("memory", "all"):
        info["memory"] = _memory()
    if wanted in ("disk", "all"):
        usage = shutil.disk_usage(os.getcwd())
        info["disk"] = {"total_bytes": usage.total, "free_bytes": usage.free}
    return info


class CommandInputs(Open):
    command: str = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    cwd: str | None = None


class CommandFailed(Exception):
    """A command exited with a non-zero status."""


class CommandRefused(Exception):
    """FLOWLEDGER_COMMAND_ALLOWLIST does not list the command's program."""


def allowed_argv(command: str, allowed: frozenset[str]) -> list[str]:
    """The command split as a shell would split words (no shell runs it: ; | > $() are
    plain text), if its program is in `allowed`; CommandRefused otherwise."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise CommandRefused(f"cannot split the command into words: {exc}") from None
    if not argv or argv[0] not in allowed:
        program = argv[0] if argv else ""
        raise CommandRefused(
            f"{program!r} is not in FLOWLEDGER_COMMAND_ALLOWLIST ({', '.join(sorted(allowed))})"
        )
    return argv


def _tail(data: bytes, limit: int = OUTPUT_LIMIT) -> str:
    return data[-limit:].decode("utf-8", errors="replace")


@executor(
    "command",
    description="Runs inputs.command in a shell (only with FLOWLEDGER_ALLOW_COMMANDS=1); "
    "a non-zero exit fails the task with the tail of stderr.",
)
class Command:
    id = "command"
    input_schema = CommandInputs

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None

    async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
        pipes: dict[str, Any] = {
            "stdout": asyncio.subprocess.PIPE,
            "stderr": asyncio.subprocess.PIPE,
            "stdin": asyncio.subprocess.DEVNULL,
            "cwd": inputs.get("cwd"),
            "start_new_session": True,  # its own process group: cancel() stops its children
        }
        allowed = command_allowlist()
        if allowed is None:
            self.process = await asyncio.create_subprocess_shell(inputs["command"], **pipes)
        else:
            self.process = await asyncio.create_subprocess_exec(
                *allowed_argv(inputs["command"], allowed), **pipes
            )
        try:
            async with asyncio.timeout(inputs.get("timeout")):
                stdout, stderr = await self.process.communicate()
        except TimeoutError:
            await self.cancel()
            raise TimeoutError(f"command timed out after {inputs['timeout']:g} s") from None
        except asyncio.CancelledError:
            await self.cancel()
            raise
        code = self.process.returncode
        if code != 0:
            tail = _tail(stderr).strip()[-STDERR_TAIL:]
            raise CommandFailed(f"exit status {code}" + (f": {tail}" if tail else ""))
        return {"returncode": code, "stdout": _tail(stdout), "stderr": _tail(stderr)}

    async def cancel(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(2):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
