"""Errors of the event store. Callers never see database or ORM errors from it."""

import uuid


class EventStoreError(Exception):
    """Base class of every event-store error."""


class ConcurrencyConflict(EventStoreError):
    """The stream moved on since the caller read it: nothing was stored."""

    def __init__(self, *, stream_id: uuid.UUID, expected_version: int, actual_version: int) -> None:
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"stream {stream_id} is at version {actual_version}, not the expected {expected_version}"
        )


class EventIdReused(EventStoreError):
    """An event id that is already stored was sent with a different stream or shape."""


class InvalidEvent(EventStoreError):
    """The event cannot be stored as given (e.g. a NUL character in a string)."""
