"""Writes to the event store: `event_append` is the only way an event gets into the log.

The store knows nothing about projections. What runs inside an append's transaction and
after its COMMIT (the projection runner's inline apply and read-your-writes) is registered
with `append_hooks_register` (events/apps.py), so the dependency points from the runner to
the store, never back. Database errors leave here as events.exceptions errors.
"""

import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction

from events.chain import HASHED_FIELDS, canonical_json, chain_hash, row_body
from events.exceptions import (
    ConcurrencyConflict,
    EventIdReused,
    InvalidEvent,
    StoreBusy,
    StoreUnavailable,
)
from events.models import Event
from events.rows import rows_from_cursor, rows_insert
from events.selectors import (
    stored_event_from_row,
    stream_last_and_version,
    stream_last_from_newest,
    stream_newest_statement,
)
from events.types import NewEvent, StoredEvent

logger = logging.getLogger(__name__)

# Key of the PostgreSQL advisory lock that serialises appends (any constant unique to this app).
APPEND_LOCK_KEY = 7_004_281_530_915
# SQLSTATE of "lock_timeout expired" (psycopg's LockNotAvailable).
LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class AppendHooks:
    """What the store calls around an append, registered by the projection runner.

    `inline(events, head_before=...)` runs inside the append's transaction, under the append
    lock, after the INSERT; it returns True when nothing is left for after the COMMIT.
    `after_commit(position=..., applied=...)` runs after the COMMIT.
    """

    inline: Callable[..., bool]
    after_commit: Callable[..., None]


_hooks: AppendHooks | None = None


def append_hooks_register(*, inline: Callable[..., bool], after_commit: Callable[..., None]) -> None:
    """Tell the store what to run in and after each append (one registration; the last wins)."""
    global _hooks
    _hooks = AppendHooks(inline=inline, after_commit=after_commit)


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Translate database errors into the store's own (events.exceptions): callers never see ORM errors.

    A lost or refused connection is StoreUnavailable; an expired lock wait is StoreBusy; a
    unique violation (only something appending without the lock can cause one) is a
    conflict: another append took that stream version.
    """
    try:
        yield
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise StoreBusy(
                f"the append lock was not free within {settings.APPEND_LOCK_TIMEOUT_SECONDS} s; retry"
            ) from exc
        raise StoreUnavailable(f"the database is unavailable: {exc}") from exc
    except InterfaceError as exc:
        raise StoreUnavailable(f"the database connection was lost: {exc}") from exc


def append_lock() -> dt.datetime:
    """Take the log's append lock for the rest of the current transaction; return the database clock.

    No skipped events (invariant 3): positions come from a sequence, handed out at INSERT,
    but transactions commit in any order. Without this lock, writer A could take position 10,
    writer B position 11, B commit first, and a projector reading "position > 9" would apply
    11, move its checkpoint to 11 and never see 10 when A commits. Holding one lock from
    before the INSERT until COMMIT makes commit order equal position order, so everything at
    or below a visible position is already visible. The cost is that appends are serial;
    that is the write-throughput limit (README, "Scale-out"). We chose this over
    transaction-id visibility (pg_snapshot_xmin) because it is simple, works the same on
    SQLite (whose IMMEDIATE transactions are already serial), keeps the seals' head final
    (events.sealing._sealable_head) and its throughput is far above what people editing
    agent definitions produce: measured in issue 14, one database takes about 300 revisions
    a second through agent_revise with both views applied inline, and the same (no more)
    with 2 to 16 writers on different agents, because the lock is held for the whole write
    (2-core machine; README, "Scale-out", for the curve and what would replace the lock).

    Callers that must read state and then append (services deciding on the next revision)
    take it first thing in their transaction, so what they read cannot change before they
    write and they never wait on each other in a different order (no deadlock).

    The wait is bounded (APPEND_LOCK_TIMEOUT_SECONDS, PostgreSQL's lock_timeout for the
    rest of the transaction): without it a writer queued behind a stuck transaction waits
    for as long as that one lives, holding a web worker; with it the writer gets StoreBusy
    (the API's 503 with Retry-After) and nothing is stored. The timeout stays set for the
    rest of the transaction, which under this lock has nobody else's row lock to wait on
    (the projection checkpoints are taken with SKIP LOCKED), and costs no extra round trip
    to undo.

    One round trip (issue 14): the timeout is set by `set_config(..., is_local => true)`, the
    SET LOCAL of a function call, inside the lock call's own argument, so PostgreSQL must
    evaluate it before it starts waiting for the lock (a separate SET LOCAL statement cost a
    round trip per write; a setting per connection would bound every other lock wait too).
    `clock_timestamp()` comes after the lock call in the same row: the clock read once the
    lock is ours, so recorded_at grows with the position.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("append_lock() must be called inside transaction.atomic()")
    with store_errors(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(*_lock_statement())
            return cursor.fetchone()[1]
        # SQLite: the IMMEDIATE transaction (settings) already holds the single write lock.
        cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
        return dt.datetime.fromisoformat(cursor.fetchone()[0]).replace(tzinfo=dt.UTC)


def _lock_statement() -> tuple[str, list[Any]]:
    """PostgreSQL's append lock statement (append_lock's docstring): the lock, then the clock."""
    timeout_ms = str(int(settings.APPEND_LOCK_TIMEOUT_SECONDS * 1000))
    return (
        "SELECT pg_advisory_xact_lock(%s + 0 * length(set_config('lock_timeout', %s, true))),"
        " clock_timestamp()",
        [APPEND_LOCK_KEY, timeout_ms],
    )


@dataclass(frozen=True)
class LockedRead:
    """One whole SELECT of another app's table, sent in the round trip of append_lock_and_head;
    built by the module that owns that table (its SQL stays there), its rows returned as tuples."""

    sql: str
    params: Sequence[Any]


@dataclass(frozen=True)
class LockedHead:
    """What append_lock_and_head read once the lock was taken."""

    locked_at: dt.datetime  # what append_lock() returns: the append joins this transaction
    last: StoredEvent | None  # the stream's newest event of the asked types
    version: int  # the stream's version (0: no such stream)
    rows: list[tuple[Any, ...]]  # the LockedRead's rows


def append_lock_and_head(
    *, stream_id: uuid.UUID, types: frozenset[str], also: LockedRead | None = None
) -> LockedHead:
    """append_lock(), then the stream's newest event of `types`, its version, and `also`'s rows:
    on PostgreSQL in one round trip instead of three (issue 14: each cost a write 0.3-0.8 ms,
    under the lock every other writer waits on).

    The statements go as one multi-statement query (psycopg's client-side cursor uses the
    simple query protocol), never with the lock in the same statement as the reads: a
    statement's snapshot is taken when it starts, so a read in the lock's own statement would
    see the log as it was before the wait, without the events of the writer it waited for,
    and the service would decide on a stale head. Each statement of a multi-statement query
    takes its own snapshot when it starts (READ COMMITTED), and the server starts the reads
    only once the lock statement returned: what they see includes every append committed
    before the lock was ours, exactly as separate round trips would.
    An error in any of them (the lock's timeout: StoreBusy) ends the query there.
    """
    if connection.vendor != "postgresql":
        locked_at = append_lock()
        last, version = stream_last_and_version(stream_id=stream_id, types=types)
        rows: list[tuple[Any, ...]] = []
        if also is not None:
            with store_errors(), connection.cursor() as cursor:
                cursor.execute(also.sql, list(also.params))
                rows = list(cursor.fetchall())
        return LockedHead(locked_at=locked_at, last=last, version=version, rows=rows)
    if not connection.in_atomic_block:
        raise RuntimeError("append_lock_and_head() must be called inside transaction.atomic()")
    lock_sql, lock_params = _lock_statement()
    # The newest event by the (stream_id, stream_version) key: see stream_last_and_version.
    newest_sql, newest_params = stream_newest_statement(stream_id=stream_id)
    statements = [lock_sql, newest_sql]
    params: list[Any] = [*lock_params, *newest_params]
    if also is not None:
        statements.append(also.sql)
        params += also.params
    with store_errors(), connection.cursor() as cursor:
        cursor.execute("; ".join(statements), params)
        locked_at = cursor.fetchone()[1]
        cursor.nextset()
        newest = next(iter(rows_from_cursor(Event, cursor)), None)
        if also is not None:
            cursor.nextset()
            rows = list(cursor.fetchall())
        else:
            rows = []
    # One more query when the newest event is of another type (a label move, an archive).
    last, version = stream_last_from_newest(newest, types=types)
    return LockedHead(locked_at=locked_at, last=last, version=version, rows=rows)


def _reject_nul(value: Any, where: str) -> None:
    # PostgreSQL cannot store U+0000 in jsonb; refuse it the same way on every database.
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidEvent(f"{where} contains a NUL character")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _reject_nul(key, where)
            _reject_nul(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _reject_nul(item, f"{where}[{index}]")


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, Mapping):
        return any(_has_float(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_float(item) for item in value)
    return False


def _as_stored(values: list[Any]) -> list[Any]:
    """`values` as the event table will give them back, so that the hash covers what is read.

    PostgreSQL's jsonb keeps numbers as `numeric` and prints them its own way (1e20 comes back
    as the integer 100000000000000000000, -0.0 as 0): hashing the caller's spelling made an
    untouched event fail verification. Elsewhere a JSON round trip does the same for tuples
    and non-string keys. The stored, hashed and returned values are then all the same.
    """
    text = canonical_json(values)
    if connection.vendor != "postgresql" or not _has_float(values):
        return json.loads(text)  # strings, integers, booleans and null come back as they went in
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb", [text])
        stored = cursor.fetchone()[0]
    return json.loads(stored) if isinstance(stored, str) else stored


def _stream_head(stream_id: uuid.UUID) -> tuple[int, int, str]:
    """(head position of the whole log, the stream's version, its last hash), in one round trip.

    SQL rather than the ORM: this runs on every write, and building it took the ORM longer
    than PostgreSQL took to answer.
    """
    table = connection.ops.quote_name(Event._meta.db_table)
    key = Event._meta.get_field("stream_id").get_db_prep_value(stream_id, connection)
    newest = f"FROM {table} WHERE stream_id = %s ORDER BY stream_version DESC LIMIT 1"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT MAX(position) FROM {table}),"  # noqa: S608 - no input in it
            f" (SELECT stream_version {newest}), (SELECT hash {newest})",
            [key, key],
        )
        head, version, previous_hash = cursor.fetchone()
    return head or 0, version or 0, previous_hash or ""


def _already_stored(stream_id: uuid.UUID, events: Sequence[NewEvent]) -> list[StoredEvent] | None:
    """The stored events when all of `events` are in this stream already (a retry), else None.

    Raises EventIdReused when only some of the ids are stored, or elsewhere.
    """
    ids = [new.event_id for new in events]
    already = list(Event.objects.filter(event_id__in=ids).order_by("position"))
    if not already:
        return None
    if len(already) == len(ids) and all(
        row.stream_id == stream_id and row.event_id == new.event_id and row.type == new.type
        for row, new in zip(already, events, strict=True)
    ):
        return [stored_event_from_row(row) for row in already]
    raise EventIdReused(f"event ids {[str(r.event_id) for r in already]} are already stored")


def event_append(
    *,
    stream_id: uuid.UUID,
    expected_version: int,
    events: Sequence[NewEvent],
    metadata: Mapping[str, Any],
    locked_at: dt.datetime | None = None,
) -> list[StoredEvent]:
    """Append events to one stream if it is at `expected_version` (0 for a new stream).

    Raises ConcurrencyConflict (nothing stored) when the stream has moved on. Appending
    events whose ids are all stored already returns those events and stores nothing, so a
    retried request is harmless. The registered append hooks (events.runner) run in this
    transaction after the INSERT and after its COMMIT. Database errors come out as
    StoreUnavailable or StoreBusy.

    `locked_at`: what `append_lock()` returned to a caller that took the lock in the
    transaction it calls this in (the services do, to read state and append under one lock).
    The append then joins that transaction as it is: no second lock statement, no savepoint
    of its own (each a round trip per write); an error after a statement of it ran dooms the
    caller's transaction (Django's set_rollback), so nothing half-appended can commit.
    """
    if not events:
        raise InvalidEvent("nothing to append")
    metadata = dict(metadata)
    try:
        # encode(): a lone surrogate ("\ud800") is valid in a str but not in UTF-8 text.
        canonical_json(metadata).encode("utf-8")
        for new in events:
            canonical_json(new.data).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"event data and metadata must be plain JSON: {exc}") from exc
    _reject_nul(metadata, "metadata")
    for new in events:
        _reject_nul(new.data, "data")
    stored_metadata, *payloads = _as_stored([metadata, *(new.data for new in events)])

    try:
        return _append(stream_id, expected_version, events, stored_metadata, payloads, locked_at)
    except IntegrityError as exc:
        # The unique (stream_id, stream_version): only an append that skipped the lock can
        # take the version between our head read and our INSERT. Nothing of ours is stored.
        raise ConcurrencyConflict(
            stream_id=stream_id, expected_version=expected_version, actual_version=-1
        ) from exc


@contextlib.contextmanager
def _in_callers_transaction() -> Iterator[None]:
    """Run in the caller's transaction without a savepoint of its own. A conflict stored
    nothing (found by the head read, or an INSERT that inserted no row) and leaves it usable;
    any other error marks it for rollback, as leaving an atomic block would."""
    try:
        yield
    except ConcurrencyConflict:
        raise
    except BaseException:
        transaction.set_rollback(True)
        raise


def _append(
    stream_id: uuid.UUID,
    expected_version: int,
    events: Sequence[NewEvent],
    metadata: dict[str, Any],
    payloads: list[Any],
    locked_at: dt.datetime | None,
) -> list[StoredEvent]:
    if locked_at is not None and not connection.in_atomic_block:
        raise RuntimeError("event_append(locked_at=...) must run in the transaction that took the lock")
    with store_errors():
        with transaction.atomic() if locked_at is None else _in_callers_transaction():
            recorded_at = append_lock() if locked_at is None else locked_at
            if connection.vendor == "postgresql" and len(events) == 1:
                inserted = _insert_one(
                    stream_id, expected_version, events[0], metadata, payloads[0], recorded_at
                )
                if inserted is not None:
                    stored, head_before = inserted
                    _hooks_run(stored, head_before=head_before)
                    return stored
                # Nothing inserted: the plain path below reads the head and finds out why.
            head_before, version, previous_hash = _stream_head(stream_id)
            if version != expected_version:
                # A retry of an append that went through finds the stream moved on by itself.
                already = _already_stored(stream_id, events)
                if already is not None:
                    return already
                raise ConcurrencyConflict(
                    stream_id=stream_id, expected_version=expected_version, actual_version=version
                )

            rows = []
            for new, data in zip(events, payloads, strict=True):
                version += 1
                row = Event(
                    event_id=new.event_id,
                    stream_id=stream_id,
                    stream_version=version,
                    type=new.type,
                    schema_version=new.schema_version,
                    data=data,
                    metadata=metadata,
                    recorded_at=recorded_at,
                )
                row.hash = previous_hash = chain_hash(previous_hash, row_body(row))
                rows.append(row)
            # ON CONFLICT DO NOTHING instead of a savepoint to recover from the unique violation:
            # the event_id of a retry sent with an expected version that is the head again (the
            # client re-read after its first try went through), or ids used elsewhere. A row
            # left out that way means nothing of this append may stay: raising here rolls back
            # this block, and the unique (stream_id, stream_version), which only something
            # appending without the lock could hit, ends the same way.
            positions = rows_insert(rows, ignore_conflicts=True, returning="position")
            if not positions:
                already = _already_stored(stream_id, events)
                if already is not None:
                    return already
                raise ConcurrencyConflict(
                    stream_id=stream_id, expected_version=expected_version, actual_version=-1
                )
            if len(positions) < len(rows):
                raise EventIdReused(
                    f"some of the event ids {[str(new.event_id) for new in events]} are stored already"
                )
            for row, position in zip(rows, positions, strict=True):
                row.position = position
            stored = [stored_event_from_row(row) for row in rows]
            _hooks_run(stored, head_before=head_before)
        return stored


def _hooks_run(stored: list[StoredEvent], *, head_before: int) -> None:
    hooks = _hooks
    if hooks is not None:
        applied = hooks.inline(stored, head_before=head_before)
        last_position = stored[-1].position
        transaction.on_commit(lambda: hooks.after_commit(position=last_position, applied=applied))


def _insert_one(
    stream_id: uuid.UUID,
    expected_version: int,
    new: NewEvent,
    metadata: dict[str, Any],
    data: Any,
    recorded_at: dt.datetime,
) -> tuple[list[StoredEvent], int] | None:
    """PostgreSQL, one event: head check, previous hash, INSERT and the log's head before it in
    one statement (the round trip of a separate head read saved on every write); None when
    nothing was inserted (the stream is not at `expected_version`, or the event id is taken).

    Raw SQL on the hottest path (issue 14's profile), here in the module that writes the log.
    The chain hash is SHA-256 of the previous hash and the event's canonical JSON; the JSON
    (with the version the event gets if the stream is where the caller expects) is made here
    and the database only prefixes the previous hash it reads and hashes: the same bytes as
    events.chain.chain_hash, which verification recomputes for every event. The version check
    is in the WHERE: a stream at another version inserts no row (and a version taken anyway
    hits the unique key, ON CONFLICT DO NOTHING). The head before the INSERT is the log's
    MAX(position) as this statement's snapshot sees it, without its own row; the append lock
    holds the log still, so it is what the inline views need (runner, head_before).
    """
    row = Event(
        event_id=new.event_id,
        stream_id=stream_id,
        stream_version=expected_version + 1,
        type=new.type,
        schema_version=new.schema_version,
        data=data,
        metadata=metadata,
        recorded_at=recorded_at,
    )
    body = row_body(row)
    by_name = {field.name: field for field in Event._meta.concrete_fields}
    fields = [by_name[name] for name in _INSERTED]
    values = [field.get_db_prep_save(getattr(row, field.attname), connection) for field in fields]
    key = values[1]
    quote = connection.ops.quote_name
    table = quote(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(quote(field.column) for field in fields)}, hash)"  # noqa: S608 - names from the model
            f" SELECT {', '.join(['%s'] * len(fields))}, encode(sha256(convert_to(COALESCE("
            f"(SELECT hash FROM {table} WHERE stream_id = %s AND stream_version = %s), '')"
            " || %s, 'UTF8')), 'hex')"
            f" WHERE (SELECT COALESCE(MAX(stream_version), 0) FROM {table} WHERE stream_id = %s) = %s"
            " ON CONFLICT DO NOTHING"
            f" RETURNING position, hash, (SELECT COALESCE(MAX(position), 0) FROM {table})",
            [*values, key, expected_version, body, key, expected_version],
        )
        returned = cursor.fetchone()
    if returned is None:
        return None
    row.position, row.hash, head_before = returned
    return [stored_event_from_row(row)], head_before


# The columns _insert_one writes from the event (position comes from the sequence, hash from the chain).
_INSERTED = HASHED_FIELDS
