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


class StoreUnavailable(EventStoreError):
    """The database could not be reached or the connection was lost; nothing is known to be stored.

    A write may have committed just before its connection was lost: retry with the same event
    ids (or If-Match / Idempotency-Key at the API), which stores a change at most once.
    """


class StoreBusy(EventStoreError):
    """The append lock was not free within APPEND_LOCK_TIMEOUT_SECONDS: nothing was stored; retry."""


class ProjectionFailed(EventStoreError):
    """A projection raised while applying the event at `position`; recorded on its checkpoint."""

    def __init__(self, *, name: str, position: int, error: str) -> None:
        self.name = name
        self.position = position
        self.error = error
        super().__init__(f"projection {name} failed on the event at position {position}: {error}")


class RebuildAlreadyRunning(EventStoreError):
    """Another rebuild of the same projection holds its rebuild lock: this one did nothing."""
