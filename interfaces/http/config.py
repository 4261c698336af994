"""Server settings from the environment (each also a `flowledger serve` option)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from application.config import ConfigError
from interfaces.rpc.callbacks import CallbackPolicy

Unit = Literal["second", "minute", "hour", "day"]
UNITS: tuple[Unit, ...] = ("second", "minute", "hour", "day")
DEFAULT_MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    jwt_secret: str | None = None
    rate_limit: tuple[Unit, int] | None = None  # e.g. ("second", 100), per client address
    max_body_bytes: int = DEFAULT_MAX_BODY
    cors_origins: tuple[str, ...] = ()
    public_url: str | None = None  # where clients reach the server (the agent card's URL)
    a2a_agent: str | None = None  # "module:attribute" of the A2A agent to serve
    callbacks: CallbackPolicy = field(default_factory=CallbackPolicy)  # webhook and push URLs

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        env = os.environ if environ is None else environ
        secret = env.get("FLOWLEDGER_JWT_SECRET") or None
        if secret is not None and len(secret) < 16:
            raise ConfigError("FLOWLEDGER_JWT_SECRET must be at least 16 characters long")
        body = env.get("FLOWLEDGER_MAX_BODY_BYTES") or str(DEFAULT_MAX_BODY)
        if not (body.isascii() and body.isdigit()) or int(body) < 1024:
            raise ConfigError(f"FLOWLEDGER_MAX_BODY_BYTES must be an integer >= 1024: {body!r}")
        origins = tuple(
            o.strip() for o in env.get("FLOWLEDGER_CORS_ORIGINS", "").split(",") if o.strip()
        )
        public = env.get("FLOWLEDGER_PUBLIC_URL") or None
        if public is not None and not public.startswith(("http://", "https://")):
            raise ConfigError(f"FLOWLEDGER_PUBLIC_URL must be an http(s) URL: {public!r}")
        agent = env.get("FLOWLEDGER_A2A_AGENT") or None
        if agent is not None and not _is_reference(agent):
            raise ConfigError(
                f"FLOWLEDGER_A2A_AGENT must look like package.module:attribute: {agent!r}"
            )
        return cls(
            callbacks=CallbackPolicy.from_env(env),
            a2a_agent=agent,
            public_url=public,
            jwt_secret=secret,
            rate_limit=parse_rate_limit(env.get("FLOWLEDGER_RATE_LIMIT") or None),
            max_body_bytes=int(body),
            cors_origins=origins,
        )


def parse_rate_limit(text: str | None) -> tuple[Unit, int] | None:
    """ "100/second" (or minute, hour, day) -> ("second", 100); None or "off" -> None."""
    if text is None or text.strip().lower() in ("", "off", "0"):
        return None
    count, _, unit = text.strip().partition("/")
    for known in UNITS:
        if unit.strip().lower() == known and count.strip().isdigit() and int(count) > 0:
            return known, int(count)
    raise ConfigError(
        f"FLOWLEDGER_RATE_LIMIT must look like 100/second (or /minute, /hour, /day): {text!r}"
    )


def _is_reference(text: str) -> bool:
    module, _, attribute = text.partition(":")
    parts = [*module.split("."), *attribute.split(".")]
    return bool(module and attribute) and all(p.isidentifier() for p in parts)
