"""Secret inputs: a task names a secret, {"$secret": "NAME"}, and never holds its value.
The reference is what the event log, history and read models keep; the value is looked up
only when an attempt starts (application/secrets.py) and scrubbed from what the attempt
reports. An input its schema marks secret ("secret": true, "writeOnly": true or
"format": "password") must be such a reference, so its value cannot reach the log."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from domain.errors import FieldError

SECRET_KEY = "$secret"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
HOW = 'give {"$secret": "NAME"} (its value is looked up when the task runs), never the value'


def secret_name(value: Any) -> str | None:
    """NAME if `value` is a well-formed reference {"$secret": "NAME"}, else None."""
    if isinstance(value, dict) and len(value) == 1 and SECRET_KEY in value:
        name = value[SECRET_KEY]
        if isinstance(name, str) and NAME.match(name):
            return name
    return None


def references(value: Any) -> Iterator[tuple[str, Any]]:
    """(path, value) of every {"$secret": ...} object in `value`, well-formed or not."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            if SECRET_KEY in node:
                yield path, node
                continue
            stack.extend((f"{path}.{k}", v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(node))


def marked_secret(schemas: Mapping[str, Any]) -> tuple[str, ...]:
    """The input names schemas.input_schema marks secret."""
    schema = schemas.get("input_schema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return ()
    return tuple(
        name
        for name, spec in properties.items()
        if isinstance(spec, dict)
        and (
            spec.get("secret") is True
            or spec.get("writeOnly") is True
            or spec.get("format") == "password"
        )
    )


def secret_problems(
    inputs: Mapping[str, Any], schemas: Mapping[str, Any], where: str
) -> list[FieldError]:
    """Malformed references anywhere in `inputs`, and inputs marked secret that hold a
    value rather than a reference."""
    prefix = f"{where}.inputs" if where else "inputs"
    problems = [
        FieldError(
            f"{prefix}{path}",
            'a secret reference is {"$secret": "NAME"}, NAME a letter or _ then letters, '
            "digits or _ (at most 128)",
        )
        for path, ref in references(dict(inputs))
        if secret_name(ref) is None
    ]
    for name in marked_secret(schemas):
        value = inputs.get(name)
        if name in inputs and not (isinstance(value, dict) and SECRET_KEY in value):
            problems.append(FieldError(f"{prefix}.{name}", f"is marked secret: {HOW}"))
    return problems
