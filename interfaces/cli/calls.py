"""The CLI's bridge to the JSON-RPC core: a command runs the very method the server runs
(interfaces.rpc.dispatch.call), in this process, on the configured store, so validation,
errors and results are the server's. JSON-RPC error codes become exit codes:

    -32602 invalid params, -32010 tree rejected, -32600 invalid request   -> 2 (bad input)
    -32001 not found, -32011 conflict, -32002 not cancelable, -32012, -32603 -> 1
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from application.config import ConfigError, Settings
from domain.errors import DomainError
from interfaces.cli.main import fail
from interfaces.rpc import dispatch
from interfaces.rpc.calls import Call
from interfaces.rpc.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    TREE_REJECTED,
    RpcError,
)
from interfaces.rpc.orchestrator import Orchestrator

R = TypeVar("R")

BAD_INPUT = frozenset(
    {INVALID_PARAMS, TREE_REJECTED, INVALID_REQUEST, PARSE_ERROR, METHOD_NOT_FOUND}
)
REBUILD_HINT = " (if this persists: flowledger projections rebuild)"


def exit_code(rpc_code: int) -> int:
    """2 for a refusal of the input itself, 1 for everything else (not found, conflict)."""
    return 2 if rpc_code in BAD_INPUT else 1


def fail_rpc(error: RpcError) -> NoReturn:
    """The error's reason (and each bad field) on stderr; exit 1 or 2."""
    fail(error.message, data=error.data, code=exit_code(error.code))


class ReadModelsUnusable(Exception):
    """The read models could not be brought up to date."""


def settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        fail(str(exc))


class _BriefStderr(logging.Handler):
    """Warnings of the store, projector and runner as one line each on the stderr of the
    moment (no tracebacks: a short-lived command is not a server with a log)."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f": {type(error).__name__}: {error}".split("\n")[0]
        sys.stderr.write(f"{record.levelname.lower()}: {text}\n")


def brief_logging() -> None:
    """Unless logging is configured already (a test runner, an embedding program)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = _BriefStderr(logging.WARNING)
        root.addHandler(handler)


def with_orchestrator(
    body: Callable[[Orchestrator], Awaitable[R]],
    *,
    live: bool = False,
    run_trees: bool = False,
    concurrency: int | None = None,
) -> R:
    """Run `body` on an Orchestrator of the configured store (no resume on start); any
    refusal exits 1 or 2 with its reason on stderr, never a traceback."""
    configured = settings()
    brief_logging()

    async def main() -> R:
        async with Orchestrator(
            configured, live=live, run_trees=run_trees, resume=False, concurrency=concurrency
        ) as orchestrator:
            return await body(orchestrator)

    try:
        return asyncio.run(main())
    except RpcError as exc:
        fail_rpc(exc)
    except DomainError as exc:
        fail_rpc(RpcError.from_domain(exc))
    except ConfigError as exc:
        fail(str(exc))
    except ReadModelsUnusable as exc:
        fail(f"the read models cannot be used: {exc}".split("\n")[0] + REBUILD_HINT)


async def catch_up(orchestrator: Orchestrator) -> None:
    """Bring the read models up to date before a query (a short-lived process never reads
    older data than the store holds when it starts); ReadModelsUnusable if they cannot be."""
    try:
        await orchestrator.io(orchestrator.projector.catch_up)
    except (LookupError, SQLAlchemyError) as exc:
        raise ReadModelsUnusable(str(exc)) from None


def rpc(method: str, params: Any, *, read_model: bool = False) -> Any:
    """The result of JSON-RPC `method` with `params`, exactly as the server would answer;
    with `read_model`, the read models must be usable (lists read nothing else)."""

    async def body(orchestrator: Orchestrator) -> Any:
        if read_model:
            await catch_up(orchestrator)
        return await dispatch.call(Call(orchestrator), method, params)

    return with_orchestrator(body)
