"""Event export for archives and auditors: one JSON object per line, per event.

A line is {"format", "tree_id", "version", "type", "topic", "timestamp", "task_id", "data"}:
`topic` names the stored event type and its version (e.g. "tree.Started", or
"tree.Started/v2" after a change), so `read_export` can rebuild the exact event objects,
upcasting older versions, whatever flowledger version reads the file later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import StoredEvent

from application.codec import EventCodec
from application.ledger import Ledger
from application.views import event_json
from domain.errors import FieldError, InvalidSpec
from domain.events import TreeEvent

FORMAT = "flowledger.events/1"


def export_lines(ledger: Ledger, task_id: str) -> Iterator[bytes]:
    """The events of the tree holding `task_id` (removed tasks too), oldest first, each as
    one line of JSON (newline included)."""
    tree_id = ledger.tree_id_of(task_id, removed_too=True)
    encode = msgspec.json.Encoder().encode
    codec = ledger.mapper
    assert isinstance(codec, EventCodec)
    for event in ledger.events.get(tree_id):
        line = {
            "format": FORMAT,
            "tree_id": str(tree_id),
            **event_json(event),  # type: ignore[arg-type]
            "topic": codec.topic_of(type(event)),
        }
        yield encode(line) + b"\n"


class _Line(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    tree_id: UUID
    version: int
    type: str
    topic: str
    timestamp: str
    task_id: str | None
    data: dict[str, Any]


def read_export(lines: Iterable[bytes | str], codec: EventCodec) -> list[TreeEvent]:
    """The events of an export, as objects; a bad line is refused naming its number."""
    decoder = msgspec.json.Decoder(_Line)
    tree_topics = {t for t in codec.topics("tree.") if not t.startswith("tree.Snapshot")}
    events: list[TreeEvent] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        field = f"line {number}"
        try:
            line = decoder.decode(raw)
            if line.format != FORMAT:
                raise ValueError(f"format {line.format!r} is not {FORMAT!r}")
            if line.topic not in tree_topics:
                raise ValueError(f"topic {line.topic!r} is not a tree event")
            if line.topic.removeprefix("tree.").split("/")[0] != line.type:
                raise ValueError(f"type {line.type!r} does not match topic {line.topic!r}")
            state = dict(line.data, timestamp=line.timestamp)
            state |= {"originator_id": str(line.tree_id), "originator_version": line.version}
            if line.task_id is not None:
                state["task_id"] = line.task_id
            stored = StoredEvent(
                originator_id=line.tree_id,
                originator_version=line.version,
                topic=line.topic,
                state=msgspec.json.encode(state),
            )
            events.append(codec.to_domain_event(stored))
        except (msgspec.DecodeError, msgspec.ValidationError, LookupError, ValueError) as exc:
            raise InvalidSpec(f"{field}: {exc}", fields=[FieldError(field, str(exc))]) from exc
    return events
