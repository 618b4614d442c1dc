"""The hash chain that makes tampering with the log evident.

hash(event) = SHA-256( previous event's hash in the same stream (or "" for the first)
                       + canonical JSON of the event as stored ).
The canonical JSON covers every stored column but `position` and `hash` itself, with
`data` as stored (before any upcasting), so a changed byte anywhere shows.
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
    body = canonical_json(
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
    return hashlib.sha256((previous_hash + body).encode("utf-8")).hexdigest()
