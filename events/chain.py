"""The hash chain that makes tampering with the log evident.

hash(event) = SHA-256( previous event's hash in the same stream (or "" for the first)
                       + canonical JSON of the event as stored ).
The canonical JSON covers every stored column but `position` and `hash` itself, with
`data` as stored (before any upcasting), so a changed byte anywhere shows.

A stream chain cannot show a whole stream deleted, its newest events deleted, or events
moved between positions; seals (`SealHasher`, events.sealing) cover the whole log in
position order for that.
"""

import datetime as dt
import hashlib
import json
import uuid
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def timestamp_text(moment: dt.datetime) -> str:
    """UTC, microseconds, always the same spelling whichever database returned it."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(
    *,
    event_id: uuid.UUID,
    stream_id: uuid.UUID,
    stream_version: int,
    type: str,
    schema_version: int,
    data: dict[str, Any],
    metadata: dict[str, Any],
    recorded_at: dt.datetime,
) -> str:
    """The canonical JSON of one event that its chain hash covers (everything but position and hash)."""
    return canonical_json(
        {
            "event_id": str(event_id),
            "stream_id": str(stream_id),
            "stream_version": stream_version,
            "type": type,
            "schema_version": schema_version,
            "data": data,
            "metadata": metadata,
            "recorded_at": timestamp_text(recorded_at),
        }
    )


# The event's fields its chain hash covers (event_body's arguments): the append writes these
# columns, verification reads them back with position and hash.
HASHED_FIELDS = (
    "event_id",
    "stream_id",
    "stream_version",
    "type",
    "schema_version",
    "data",
    "metadata",
    "recorded_at",
)


def row_body(event: Any) -> str:
    """event_body of anything that has the event's fields as attributes (an Event row, a StoredEvent)."""
    return event_body(**{name: getattr(event, name) for name in HASHED_FIELDS})


def chain_hash(previous_hash: str, body: str) -> str:
    """SHA-256, as hex, of the UTF-8 of the previous hash followed by the event's body.

    The append computes the same in PostgreSQL when the previous hash is only read there
    (events.services, `encode(sha256(convert_to(previous || body, 'UTF8')), 'hex')`): keep both
    in step.
    """
    return hashlib.sha256((previous_hash + body).encode("utf-8")).hexdigest()


def event_hash(
    *,
    previous_hash: str,
    event_id: uuid.UUID,
    stream_id: uuid.UUID,
    stream_version: int,
    type: str,
    schema_version: int,
    data: dict[str, Any],
    metadata: dict[str, Any],
    recorded_at: dt.datetime,
) -> str:
    """The chain hash of one event given the hash of the one before it in its stream."""
    body = event_body(
        event_id=event_id,
        stream_id=stream_id,
        stream_version=stream_version,
        type=type,
        schema_version=schema_version,
        data=data,
        metadata=metadata,
        recorded_at=recorded_at,
    )
    return chain_hash(previous_hash, body)


class SealHasher:
    """The hash of one seal, fed the events of its range one by one (the range can be long).

    hash(seal) = SHA-256( canonical JSON of {previous seal's hash, after_position, end_position}
                          + for each event in the range, in position order,
                            "\\n<position> <stream_id> <stream_version> <event hash>" ).
    The event hash stands for the event's content (and, through the stream chain, for every
    earlier event of its stream); the position, stream and version tie it to its place in
    the whole log, which the stream chains alone do not cover.
    """

    def __init__(self, *, previous_hash: str, after_position: int, end_position: int) -> None:
        head = {
            "previous_hash": previous_hash,
            "after_position": after_position,
            "end_position": end_position,
        }
        self._digest = hashlib.sha256(canonical_json(head).encode("utf-8"))
        self.events = 0

    def add(self, *, position: int, stream_id: uuid.UUID, stream_version: int, hash: str) -> None:
        self._digest.update(f"\n{position} {stream_id} {stream_version} {hash}".encode())
        self.events += 1

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
