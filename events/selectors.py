"""Reads from the event log. Every event leaves here upcast to its current shape."""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import NotSupportedError, connection
from django.db.models import F, Func, JSONField, Max, QuerySet, Value

from events.models import Event
from events.rows import rows_from_cursor
from events.types import StoredEvent
from events.upcasting import upcast, upcast_pending

T = TypeVar("T")


def stored_event_from_row(row: Event) -> StoredEvent:
    """The read-side value of a stored row, upcast to the current schema."""
    schema_version, data = upcast(row.type, row.schema_version, row.data)
    return StoredEvent(
        position=row.position,
        event_id=row.event_id,
        stream_id=row.stream_id,
        stream_version=row.stream_version,
        type=row.type,
        schema_version=schema_version,
        data=data,
        metadata=row.metadata,
        recorded_at=row.recorded_at,
        hash=row.hash,
    )


def stream_read(*, stream_id: uuid.UUID, to_version: int | None = None) -> list[StoredEvent]:
    """All events of one stream in version order, optionally only up to `to_version`."""
    rows = Event.objects.filter(stream_id=stream_id)
    if to_version is not None:
        rows = rows.filter(stream_version__lte=to_version)
    return [stored_event_from_row(row) for row in rows.order_by("stream_version")]


def events_after(
    *, position: int, batch_size: int = 500, types: frozenset[str] | None = None, up_to: int | None = None
) -> Iterator[list[StoredEvent]]:
    """Every event after `position` in position order, in batches of at most `batch_size`."""
    while True:
        rows = Event.objects.filter(position__gt=position)
        if up_to is not None:
            rows = rows.filter(position__lte=up_to)
        if types is not None:
            rows = rows.filter(type__in=types)
        batch = [stored_event_from_row(row) for row in rows.order_by("position")[:batch_size]]
        if not batch:
            return
        yield batch
        position = batch[-1].position


def head_position() -> int:
    """The position of the newest event in the log (0 when empty)."""
    return Event.objects.aggregate(head=Max("position"))["head"] or 0


def stream_version(*, stream_id: uuid.UUID) -> int:
    """The stream's current version (0 when it has no events)."""
    return Event.objects.filter(stream_id=stream_id).aggregate(v=Max("stream_version"))["v"] or 0


def stream_last(*, stream_id: uuid.UUID, types: frozenset[str]) -> StoredEvent | None:
    """The newest event of one of `types` in the stream, or None."""
    row = Event.objects.filter(stream_id=stream_id, type__in=types).order_by("-stream_version").first()
    return stored_event_from_row(row) if row else None


def stream_last_and_version(*, stream_id: uuid.UUID, types: frozenset[str]) -> tuple[StoredEvent | None, int]:
    """The newest event of one of `types` in the stream (or None) and the stream's version.

    Written as SQL: it runs on every write, and the ORM took longer to build this statement
    than PostgreSQL took to answer it. One query when the stream's newest event is of
    `types` (a writer's stream, nearly always): the newest event by the (stream_id,
    stream_version) key, a plan that cannot go wrong. Asking for "the newest of these types"
    directly let PostgreSQL, with statistics a little behind a growing log, intersect the
    stream's index with the type index and sort the stream: 1.4 ms instead of 0.06 on a log
    of 11,000 events (issue 14), growing with the log. Otherwise a second query searches
    below that version.
    """
    with connection.cursor() as cursor:
        cursor.execute(*stream_newest_statement(stream_id=stream_id))
        # rows_from_cursor, not Event.objects.raw(): RawQuerySet's setup cost more than the query.
        newest = next(iter(rows_from_cursor(Event, cursor)), None)
    return stream_last_from_newest(newest, types=types)


def stream_newest_statement(*, stream_id: uuid.UUID) -> tuple[str, list[Any]]:
    """The statement and parameters reading a stream's newest row by the (stream_id,
    stream_version) key (stream_last_and_version's first query; the append lock's round trip
    sends it too)."""
    table = connection.ops.quote_name(Event._meta.db_table)
    key = Event._meta.get_field("stream_id").get_db_prep_value(stream_id, connection)
    return f"SELECT * FROM {table} WHERE stream_id = %s ORDER BY stream_version DESC LIMIT 1", [key]  # noqa: S608 - no input in it


def stream_last_from_newest(newest: Event | None, *, types: frozenset[str]) -> tuple[StoredEvent | None, int]:
    """stream_last_and_version from the stream's newest row (None: no such stream), read already."""
    if newest is None:
        return None, 0
    if newest.type in types:
        return stored_event_from_row(newest), newest.stream_version
    version = newest.stream_version
    return stream_last_below(stream_id=newest.stream_id, version=version, types=types), version


def stream_last_below(*, stream_id: uuid.UUID, version: int, types: frozenset[str]) -> StoredEvent | None:
    """The newest event of one of `types` in the stream below `version` (stream_last_and_version's
    second query, for a stream whose newest event is of another type)."""
    table = connection.ops.quote_name(Event._meta.db_table)
    key = Event._meta.get_field("stream_id").get_db_prep_value(stream_id, connection)
    kinds = sorted(types)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM {table} WHERE stream_id = %s AND stream_version < %s"  # noqa: S608 - no input in it
            f" AND type IN ({', '.join(['%s'] * len(kinds))}) ORDER BY stream_version DESC LIMIT 1",
            [key, version, *kinds],
        )
        row = next(iter(rows_from_cursor(Event, cursor)), None)
    return stored_event_from_row(row) if row else None


def stream_of_types(*, stream_id: uuid.UUID, types: frozenset[str]) -> list[StoredEvent]:
    """The stream's events of `types`, oldest first."""
    rows = Event.objects.filter(stream_id=stream_id, type__in=types).order_by("stream_version")
    return [stored_event_from_row(row) for row in rows]


def event_by_id(*, event_id: uuid.UUID) -> StoredEvent | None:
    """The stored event with this id, if any (to answer a retried append)."""
    row = _by_key(Event.objects.filter(event_id=event_id))
    return stored_event_from_row(row) if row else None


def event_list(
    *,
    after: int = 0,
    limit: int = 100,
    stream_ids: list[uuid.UUID] | None = None,
    types: list[str] | None = None,
    actor: str | None = None,
    source: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    omit_data_key: str | None = None,
) -> list[StoredEvent]:
    """A page of the log after `position`, oldest first, filtered; at most `limit` events.

    `omit_data_key`: a top-level key of `data` left out, at the database (the audit list does
    not return agents' `content`, up to 256 KiB an event for up to 1,000 events a page)."""
    rows = Event.objects.filter(position__gt=after)
    if stream_ids is not None:
        rows = rows.filter(stream_id__in=stream_ids)
    if types:
        rows = rows.filter(type__in=types)
    if actor:
        rows = rows.filter(metadata__actor=actor)
    if source:
        rows = rows.filter(metadata__source=source)
    if since is not None:
        rows = rows.filter(recorded_at__gte=since)
    if until is not None:
        rows = rows.filter(recorded_at__lt=until)
    rows = rows.order_by("position")
    if omit_data_key is None:
        return [stored_event_from_row(row) for row in rows[:limit]]
    page = list(rows.defer("data").annotate(lean_data=_JSONWithoutKey("data", omit_data_key))[:limit])
    # An upcaster may need the key left out: the (rare) rows of an old schema version are read
    # whole, in one more query, upcast, and only then lose the key.
    old = [row.position for row in page if upcast_pending(row.type, row.schema_version)]
    whole = dict(Event.objects.filter(position__in=old).values_list("position", "data")) if old else {}
    events = []
    for row in page:
        row.data = whole.get(row.position, row.lean_data)
        event = stored_event_from_row(row)
        if omit_data_key in event.data:
            event = dataclasses.replace(
                event, data={key: value for key, value in event.data.items() if key != omit_data_key}
            )
        events.append(event)
    return events


class _JSONWithoutKey(Func):
    """A JSON column without one top-level key, computed by the database."""

    output_field = JSONField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__(F(column), Value(key))

    def as_sql(self, compiler, connection, *args, **extra_context):
        raise NotSupportedError(f"{connection.vendor} has no JSON key removal here")

    def as_postgresql(self, compiler, connection, **extra_context):
        column, key = self.source_expressions
        column_sql, column_params = compiler.compile(column)
        key_sql, key_params = compiler.compile(key)
        return f"({column_sql} - ({key_sql})::text)", [*column_params, *key_params]

    def as_sqlite(self, compiler, connection, **extra_context):
        column, key = self.source_expressions
        column_sql, column_params = compiler.compile(column)
        key_sql, key_params = compiler.compile(key)
        return f"json_remove({column_sql}, '$.' || {key_sql})", [*column_params, *key_params]


def _by_key(rows: QuerySet[Any, T]) -> T | None:
    """The one row of an exact unique-key filter, read without an ORDER BY.

    `.first()` adds ORDER BY position LIMIT 1, and with statistics that count many rows per
    stream (a long stream, many streams at the same version) PostgreSQL walked the primary key
    in position order filtering for the key: 5 ms instead of 0.05 at 10,000 events of one
    stream among 20,000 (issue 13, W5's revert). Without an order only the key's index fits.
    """
    return next(iter(rows.order_by()[:1]), None)


def event_get(*, position: int) -> StoredEvent | None:
    """One event by its position."""
    row = Event.objects.filter(position=position).first()
    return stored_event_from_row(row) if row else None


def event_previous_hash(*, stream_id: uuid.UUID, stream_version: int) -> str | None:
    """The hash of the event before `stream_version` in its stream (None for the first)."""
    rows = Event.objects.filter(stream_id=stream_id, stream_version=stream_version - 1)
    return _by_key(rows.values_list("hash", flat=True))


def stream_event_at(*, stream_id: uuid.UUID, stream_version: int) -> StoredEvent | None:
    """The event at one version of a stream: one row through the (stream_id, stream_version) key."""
    row = _by_key(Event.objects.filter(stream_id=stream_id, stream_version=stream_version))
    return stored_event_from_row(row) if row else None


def stream_page(
    *,
    stream_id: uuid.UUID,
    limit: int,
    types: frozenset[str] | None = None,
    after_version: int = 0,
    before_version: int | None = None,
    newest_first: bool = False,
) -> list[StoredEvent]:
    """At most `limit` events of a stream between the two versions, of `types`, oldest (or newest) first."""
    rows = Event.objects.filter(stream_id=stream_id, stream_version__gt=after_version)
    if before_version is not None:
        rows = rows.filter(stream_version__lt=before_version)
    if types is not None:
        rows = rows.filter(type__in=types)
    order = "-stream_version" if newest_first else "stream_version"
    return [stored_event_from_row(row) for row in rows.order_by(order)[:limit]]


@dataclass(frozen=True)
class EventHeader:
    """An event without its data: what a listing of who did what and when shows."""

    position: int
    stream_version: int
    type: str
    metadata: dict
    recorded_at: dt.datetime


def stream_headers(*, stream_id: uuid.UUID, after_version: int, limit: int) -> list[EventHeader]:
    """At most `limit` events of a stream after `after_version`, oldest first, without their data."""
    # `data` holds whole documents (up to 256 KiB each): a listing never loads it.
    rows = Event.objects.filter(stream_id=stream_id, stream_version__gt=after_version).order_by(
        "stream_version"
    )
    fields = ("position", "stream_version", "type", "metadata", "recorded_at")
    return [EventHeader(*values) for values in rows.values_list(*fields)[:limit]]
