"""The value objects the event store takes and returns (no ORM objects cross its boundary)."""

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its id may be chosen by the caller so that a retry is stored once."""

    type: str
    data: dict[str, Any]
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the log (already upcast to the current shape)."""

    position: int
    event_id: uuid.UUID
    stream_id: uuid.UUID
    stream_version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: dt.datetime
    hash: str
