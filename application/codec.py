"""Store events and snapshots as msgspec JSON, under stable topic names.

A topic is the event's short name, with "/vN" appended when its class_version N > 1.
Reading an older version decodes to plain data, runs the event's `upcast_vN_vM`
functions in turn, then converts to the current type; the current version decodes
straight into its type.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder


class StaleSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot written by an older state schema: readers ignore it and replay."""

    originator_id: UUID
    originator_version: int


def _encode_other(obj: Any) -> Any:
    # datetime subclasses (freezegun's FakeDatetime, pendulum...) are not encoded natively.
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise NotImplementedError(f"cannot store a {type(obj).__name__}")


class JSONTranscoder(Transcoder):
    """msgspec JSON for anything the library itself asks to transcode."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder(enc_hook=_encode_other)

    def encode(self, obj: Any) -> bytes:
        return self._encoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        return msgspec.json.decode(data)


class EventCodec(Mapper[UUID]):
    """An eventsourcing Mapper for msgspec Structs registered by name."""

    def __init__(self, types: Iterable[tuple[str, type[Any]]], stale_prefixes: Iterable[str] = ()):
        super().__init__(transcoder=JSONTranscoder())
        self._encoder = msgspec.json.Encoder(enc_hook=_encode_other)
        self._topic: dict[type[Any], str] = {}
        self._current: dict[str, tuple[type[Any], msgspec.json.Decoder[Any]]] = {}
        self._older: dict[str, tuple[type[Any], int]] = {}
        self._stale_prefixes = tuple(stale_prefixes)
        for name, cls in types:
            version = getattr(cls, "class_version", 1)
            topic = name if version == 1 else f"{name}/v{version}"
            self._topic[cls] = topic
            self._current[topic] = (cls, msgspec.json.Decoder(cls))
            for old in range(1, version):
                self._older[name if old == 1 else f"{name}/v{old}"] = (cls, old)

    def topics(self, prefix: str) -> list[str]:
        """Every topic this codec reads (current and older versions) starting `prefix`."""
        return sorted(t for t in (*self._current, *self._older) if t.startswith(prefix))

    def topic_of(self, cls: type[Any]) -> str:
        return self._topic[cls]

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=self._topic[type(domain_event)],
            state=self._encoder.encode(domain_event),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        topic = stored_event.topic
        current = self._current.get(topic)
        if current is not None:
            return current[1].decode(stored_event.state)
        if topic in self._older:
            cls, version = self._older[topic]
            data = msgspec.json.decode(stored_event.state)
            while version < cls.class_version:
                getattr(cls, f"upcast_v{version}_v{version + 1}")(data)
                version += 1
            return msgspec.convert(data, cls)
        if topic.startswith(self._stale_prefixes):
            return StaleSnapshot(
                originator_id=UUID(str(stored_event.originator_id)),
                originator_version=stored_event.originator_version,
            )
        raise LookupError(f"no event type is registered for the stored topic {topic!r}")
