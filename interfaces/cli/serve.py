"""`flowledger serve`: the HTTP server (JSON-RPC, SSE) under uvicorn."""

from __future__ import annotations

import ipaddress

import click

from application.config import ConfigError, Settings
from interfaces.cli.logs import configure as configure_logging
from interfaces.cli.main import cli, fail

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cli.command("serve", short_help="Serve JSON-RPC (and SSE) over HTTP.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--allow-remote-without-auth",
    is_flag=True,
    help="Bind a non-loopback address although FLOWLEDGER_JWT_SECRET is not set "
    "(anyone who can reach the port can then read and run every tree).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default="json",
    show_default=True,
    envvar="FLOWLEDGER_LOG_FORMAT",
    help="json: one object per line {ts, level, logger, message, tree_id, task_id, ...}.",
)
def serve(
    host: str, port: int, allow_remote_without_auth: bool, log_level: str, log_format: str
) -> None:
    """Serve JSON-RPC at POST /tasks and POST /system (OpenAPI at /schema), and A2A 1.0 at
    POST / (agent card at /.well-known/agent-card.json) on HOST:PORT.

    On start it opens the store, keeps the read models live and resumes unfinished trees.
    Auth: set FLOWLEDGER_JWT_SECRET (HS256 bearer tokens; sub = user id, roles may hold
    "admin"). Limits: FLOWLEDGER_RATE_LIMIT (e.g. 100/second per client address),
    FLOWLEDGER_MAX_BODY_BYTES (default 10 MiB), FLOWLEDGER_CORS_ORIGINS (comma-separated).

    \b
    Examples:
      flowledger serve --port 8000
      FLOWLEDGER_JWT_SECRET=... flowledger serve --host 0.0.0.0

    Exit status: 0 stopped, 2 bad configuration (or a non-loopback address without auth).
    """
    import uvicorn

    from interfaces.http.app import create_app
    from interfaces.http.config import ServerConfig

    try:
        settings = Settings.from_env()
        config = ServerConfig.from_env()
    except ConfigError as exc:
        fail(str(exc))
    if not is_loopback(host) and config.jwt_secret is None and not allow_remote_without_auth:
        fail(
            f"refusing to bind {host} without auth: set FLOWLEDGER_JWT_SECRET, bind "
            "127.0.0.1, or pass --allow-remote-without-auth"
        )
    configure_logging(log_level, "json" if log_format == "json" else "text")
    app = create_app(settings, config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=None, access_log=False)
