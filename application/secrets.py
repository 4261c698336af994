"""Secret values: looked up when an attempt starts, for the references in its inputs
(domain/secrets.py), and scrubbed from whatever the attempt reports (result, error,
progress message) before it is recorded, so no value reaches the event log, the read models
or the logs. The default source is the environment: FLOWLEDGER_SECRET_<NAME>."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from domain.secrets import secret_name

SecretSource = Callable[[str], str | None]
ENV_PREFIX = "FLOWLEDGER_SECRET_"


def from_environment(name: str) -> str | None:
    return os.environ.get(ENV_PREFIX + name)


class SecretMissing(Exception):
    """An input names a secret the source does not have."""


def reveal(value: Any, source: SecretSource, revealed: dict[str, str]) -> Any:
    """`value` with each {"$secret": NAME} replaced by the secret's value; every value
    given out is noted in `revealed` (NAME -> value). SecretMissing names an unknown one."""
    name = secret_name(value)
    if name is not None:
        found = source(name)
        if found is None:
            raise SecretMissing(f"secret {name} is not set ({ENV_PREFIX}{name})")
        revealed[name] = found
        return found
    if isinstance(value, dict):
        return {k: reveal(v, source, revealed) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v, source, revealed) for v in value]
    return value


def scrub(value: Any, revealed: Mapping[str, str]) -> Any:
    """`value` with every occurrence of a revealed secret (in strings and keys) replaced
    by [secret NAME]."""
    if not revealed:
        return value
    if isinstance(value, str):
        for name, secret in sorted(revealed.items(), key=lambda item: -len(item[1])):
            if secret:
                value = value.replace(secret, f"[secret {name}]")
        return value
    if isinstance(value, dict):
        return {scrub(k, revealed): scrub(v, revealed) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, revealed) for v in value]
    return value
