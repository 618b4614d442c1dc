"""The event store: append and read, concurrency and idempotency rules, append-only, hash chain, upcasting."""

import importlib
import io
import itertools
import uuid
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from events.chain import event_hash
from events.exceptions import ConcurrencyConflict, EventIdReused, InvalidEvent
from events.models import Event
from events.rows import RETURNING_CHUNK
from events.selectors import events_after, head_position, stream_last_and_version, stream_read
from events.services import append_lock, event_append
from events.types import NewEvent
from events.upcasting import register_upcaster, unregister_upcaster

pytestmark = pytest.mark.django_db

NOTE = "test.note"
GREETING = "test.greeting"
METADATA = {"actor": "alice", "source": "cli", "reason": "test"}

append_only_triggers = importlib.import_module("events.migrations.0002_append_only_triggers")


def append(stream_id: uuid.UUID, expected_version: int, *payloads: dict, **new_event_fields):
    return event_append(
        stream_id=stream_id,
        expected_version=expected_version,
        events=[NewEvent(type=NOTE, data=payload, **new_event_fields) for payload in payloads],
        metadata=METADATA,
    )


def stream_with(count: int) -> uuid.UUID:
    stream_id = uuid.uuid4()
    append(stream_id, 0, *({"n": n} for n in range(1, count + 1)))
    return stream_id


@contextmanager
def append_only_triggers_off():
    """Let the test tamper with the log, inside its own transaction, then put the triggers back."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE events_event DISABLE TRIGGER USER")
        else:
            for statement in append_only_triggers.SQLITE_DOWN:
                cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("ALTER TABLE events_event ENABLE TRIGGER USER")
            else:
                for statement in append_only_triggers.SQLITE_UP:
                    cursor.execute(statement)


def tamper(sql: str, params: list) -> None:
    with append_only_triggers_off(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert cursor.rowcount == 1


def verify_events_failure() -> str:
    with pytest.raises(CommandError) as failure:
        call_command("verify_events", stdout=io.StringIO())
    assert failure.value.returncode == 1
    return str(failure.value)


# --- append and read ------------------------------------------------------------------------------


def test_appended_events_read_back_in_version_order_with_their_stored_fields():
    stream_id = uuid.uuid4()
    event_id = uuid.uuid4()
    first = event_append(
        stream_id=stream_id,
        expected_version=0,
        events=[
            NewEvent(type=NOTE, data={"text": "héllo", "nested": {"b": [1, 2], "a": None}}, event_id=event_id)
        ],
        metadata=METADATA,
    )
    append(stream_id, 1, {"n": 2}, {"n": 3})

    events = stream_read(stream_id=stream_id)

    assert [event.stream_version for event in events] == [1, 2, 3]
    assert events[0] == first[0]
    assert events[0].event_id == event_id
    assert events[0].data == {"text": "héllo", "nested": {"b": [1, 2], "a": None}}
    assert events[0].metadata == METADATA
    assert events[0].recorded_at is not None
    assert len(events[0].hash) == 64
    assert [event.data for event in events[1:]] == [{"n": 2}, {"n": 3}]


def test_a_long_append_returns_every_event_with_the_position_it_was_stored_at():
    stream_id = uuid.uuid4()
    count = 2 * RETURNING_CHUNK + 50  # several INSERT ... RETURNING statements

    returned = append(stream_id, 0, *({"n": n} for n in range(1, count + 1)))

    assert returned == stream_read(stream_id=stream_id)
    assert [event.data["n"] for event in returned] == list(range(1, count + 1))
    assert [event.stream_version for event in returned] == list(range(1, count + 1))
    positions = [event.position for event in returned]
    assert positions == sorted(positions) and len(set(positions)) == count


def test_stream_read_to_version_stops_at_that_version():
    stream_id = stream_with(5)

    assert [event.stream_version for event in stream_read(stream_id=stream_id, to_version=3)] == [1, 2, 3]
    assert stream_read(stream_id=uuid.uuid4()) == []


def test_events_after_returns_every_later_event_once_in_batches_of_the_given_size():
    start = head_position()
    streams = [uuid.uuid4(), uuid.uuid4()]
    for version in range(4):  # interleave two streams: 8 events
        for stream_id in streams:
            append(stream_id, version, {"n": version + 1})

    batches = list(events_after(position=start, batch_size=3))

    assert [len(batch) for batch in batches] == [3, 3, 2]
    positions = [event.position for batch in batches for event in batch]
    assert positions == sorted(set(positions))
    assert positions == list(
        Event.objects.filter(position__gt=start).order_by("position").values_list("position", flat=True)
    )
    assert [len(batch) for batch in events_after(position=positions[4], batch_size=3)] == [3]


def test_positions_strictly_increase_across_streams_in_append_order():
    start = head_position()
    appended = []
    for n in range(6):
        appended += append(uuid.uuid4(), 0, {"n": n})
    appended += append(uuid.uuid4(), 0, {"n": 6}, {"n": 7}, {"n": 8})

    positions = [event.position for event in appended]

    assert positions[0] > start
    assert all(later > earlier for earlier, later in itertools.pairwise(positions))


# --- concurrency and idempotency ---------------------------------------------------------------------


def test_stale_expected_version_is_a_conflict_and_stores_nothing():
    stream_id = stream_with(2)
    before = Event.objects.count()

    with pytest.raises(ConcurrencyConflict) as conflict:
        append(stream_id, 1, {"n": "late"}, {"n": "later"})

    assert (conflict.value.expected_version, conflict.value.actual_version) == (1, 2)
    assert Event.objects.count() == before
    assert [event.data for event in stream_read(stream_id=stream_id)] == [{"n": 1}, {"n": 2}]


def test_a_retried_append_with_the_same_event_id_is_stored_once_and_returns_the_stored_event():
    stream_id = uuid.uuid4()
    event_id = uuid.uuid4()
    first = append(stream_id, 0, {"n": 1}, event_id=event_id)

    retried = append(stream_id, 0, {"n": 1}, event_id=event_id)

    assert retried == first
    assert Event.objects.filter(event_id=event_id).count() == 1
    assert Event.objects.filter(stream_id=stream_id).count() == 1


def test_a_retry_sent_after_re_reading_the_head_it_moved_returns_the_stored_event_and_stores_nothing():
    # The first try went through but its answer was lost; the client re-read the stream (now
    # at version 1, its own event) and sent the same event again with that as its expectation.
    stream_id = uuid.uuid4()
    event_id = uuid.uuid4()
    first = append(stream_id, 0, {"n": 1}, event_id=event_id)

    retried = append(stream_id, 1, {"n": 1}, event_id=event_id)

    assert retried == first
    assert [event.stream_version for event in stream_read(stream_id=stream_id)] == [1]


def test_a_batch_whose_ids_are_partly_stored_is_refused_whole():
    stored_id = uuid.uuid4()
    stream_id = uuid.uuid4()
    append(stream_id, 0, {"n": 1}, event_id=stored_id)
    head = head_position()
    batch = [NewEvent(type=NOTE, data={"n": 2}), NewEvent(type=NOTE, data={"n": 1}, event_id=stored_id)]

    with pytest.raises(EventIdReused), transaction.atomic():
        event_append(stream_id=stream_id, expected_version=1, events=batch, metadata=METADATA)

    assert head_position() == head
    assert [event.data for event in stream_read(stream_id=stream_id)] == [{"n": 1}]


def test_a_refused_batch_in_the_lock_holders_transaction_cannot_commit_even_if_the_caller_goes_on():
    # With locked_at the append runs in the caller's transaction without a savepoint of its
    # own: the rows it inserted before finding an id already stored must not commit with it.
    stored_id = uuid.uuid4()
    stream_id = uuid.uuid4()
    append(stream_id, 0, {"n": 1}, event_id=stored_id)
    head = head_position()
    batch = [NewEvent(type=NOTE, data={"n": 2}), NewEvent(type=NOTE, data={"n": 1}, event_id=stored_id)]

    with transaction.atomic():
        locked_at = append_lock()
        with pytest.raises(EventIdReused):
            event_append(
                stream_id=stream_id, expected_version=1, events=batch, metadata=METADATA, locked_at=locked_at
            )

    assert head_position() == head
    assert [event.data for event in stream_read(stream_id=stream_id)] == [{"n": 1}]


def test_a_conflict_in_the_lock_holders_transaction_leaves_it_usable():
    stream_id = stream_with(1)

    with transaction.atomic():
        locked_at = append_lock()
        with pytest.raises(ConcurrencyConflict):
            event_append(
                stream_id=stream_id,
                expected_version=0,
                events=[NewEvent(type=NOTE, data={"n": 9})],
                metadata=METADATA,
                locked_at=locked_at,
            )
        (stored,) = event_append(
            stream_id=stream_id,
            expected_version=1,
            events=[NewEvent(type=NOTE, data={"n": 2})],
            metadata=METADATA,
            locked_at=locked_at,
        )

    assert [event.data for event in stream_read(stream_id=stream_id)] == [{"n": 1}, {"n": 2}]
    assert stored.recorded_at == locked_at


def test_an_event_id_reused_for_another_stream_is_refused_and_stores_nothing():
    event_id = uuid.uuid4()
    append(uuid.uuid4(), 0, {"n": 1}, event_id=event_id)
    other_stream = uuid.uuid4()

    with pytest.raises(EventIdReused):
        append(other_stream, 0, {"n": 1}, event_id=event_id)

    assert Event.objects.filter(event_id=event_id).count() == 1
    assert not Event.objects.filter(stream_id=other_stream).exists()


@pytest.mark.parametrize(
    ("data", "metadata"),
    [
        ({"text": "before\x00after"}, METADATA),
        ({"list": ["fine", {"deep": "\x00"}]}, METADATA),
        ({"key\x00": "value"}, METADATA),
        ({"text": "fine"}, {**METADATA, "reason": "nul \x00 here"}),
    ],
    ids=["data", "nested-data", "key", "metadata"],
)
def test_a_nul_character_anywhere_in_the_event_is_invalid_and_stores_nothing(data, metadata):
    stream_id = uuid.uuid4()

    with pytest.raises(InvalidEvent, match="NUL"):
        event_append(
            stream_id=stream_id,
            expected_version=0,
            events=[NewEvent(type=NOTE, data=data)],
            metadata=metadata,
        )

    assert not Event.objects.filter(stream_id=stream_id).exists()


def test_a_lone_surrogate_in_the_event_is_invalid_and_stores_nothing():
    stream_id = uuid.uuid4()

    with pytest.raises(InvalidEvent, match="plain JSON"):
        append(stream_id, 0, {"text": "half a pair \ud800"})

    assert not Event.objects.filter(stream_id=stream_id).exists()


@pytest.mark.parametrize("number", [1e20, -0.0, 1.5e300, 2.0, 0.1, 1e-7, 2**70])
def test_numbers_the_database_spells_its_own_way_are_returned_as_read_and_verify(number):
    # PostgreSQL's jsonb gives 1e20 back as 100000000000000000000 and -0.0 as 0.
    stream_id = uuid.uuid4()

    (appended,) = append(stream_id, 0, {"number": number, "list": [number]})

    (read,) = stream_read(stream_id=stream_id)
    assert appended.data == read.data
    assert float(appended.data["number"]) == number
    call_command("verify_events", stdout=io.StringIO())


def test_the_newest_event_of_some_types_is_found_below_newer_events_of_other_types():
    stream_id = uuid.uuid4()
    append(stream_id, 0, {"n": 1}, {"n": 2})
    event_append(
        stream_id=stream_id,
        expected_version=2,
        events=[NewEvent(type=GREETING, data={"hi": 1}), NewEvent(type=GREETING, data={"hi": 2})],
        metadata=METADATA,
    )

    note, version = stream_last_and_version(stream_id=stream_id, types=frozenset({NOTE}))
    greeting, _ = stream_last_and_version(stream_id=stream_id, types=frozenset({GREETING}))

    assert (note.data, note.stream_version, version) == ({"n": 2}, 2, 4)
    assert (greeting.data, greeting.stream_version) == ({"hi": 2}, 4)
    assert stream_last_and_version(stream_id=stream_id, types=frozenset({"test.other"})) == (None, 4)
    assert stream_last_and_version(stream_id=uuid.uuid4(), types=frozenset({NOTE})) == (None, 0)


def test_a_single_event_is_hashed_as_the_verifier_recomputes_it_whatever_its_characters():
    # On PostgreSQL one event's hash is computed in the INSERT (the previous hash read there):
    # it must be the bytes events.chain hashes, for text beyond ASCII and JSON escapes too.
    stream_id = uuid.uuid4()
    texts = ["héllo wörld", "日本語 \U0001f600", 'quote " backslash \\ tab \t', "\u2028 line sep"]

    stored = [append(stream_id, version, {"text": text})[0] for version, text in enumerate(texts)]

    previous = ""
    for event in stored:
        expected = event_hash(
            previous_hash=previous,
            event_id=event.event_id,
            stream_id=event.stream_id,
            stream_version=event.stream_version,
            type=event.type,
            schema_version=event.schema_version,
            data=event.data,
            metadata=event.metadata,
            recorded_at=event.recorded_at,
        )
        assert event.hash == expected
        previous = expected
    assert [event.hash for event in stream_read(stream_id=stream_id)] == [event.hash for event in stored]
    call_command("verify_events", stdout=io.StringIO())


# --- append-only (invariant 1) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events_event SET data = %s WHERE position = %s",
        "DELETE FROM events_event WHERE position = %s",
    ],
    ids=["update", "delete"],
)
def test_the_database_refuses_update_and_delete_on_the_event_table(sql):
    stream_id = stream_with(1)
    stored = Event.objects.filter(stream_id=stream_id).values().get()
    params = ['{"n": 999}', stored["position"]] if sql.startswith("UPDATE") else [stored["position"]]

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)

    assert Event.objects.filter(stream_id=stream_id).values().get() == stored


# --- tamper evidence (invariant 4) -------------------------------------------------------------------


def test_verify_events_passes_on_a_clean_log_and_counts_events_and_streams(capsys):
    before = Event.objects.count()
    before_streams = Event.objects.values("stream_id").distinct().count()
    for count in (1, 3, 5):
        stream_with(count)

    call_command("verify_events")

    *_, summary = capsys.readouterr().out.strip().splitlines()
    assert summary == f"{before + 9} events in {before_streams + 3} streams and 1 seal verified"


def test_verify_events_names_the_position_of_an_event_whose_data_was_changed():
    stream_with(3)
    target = stream_with(4)
    stream_with(2)
    tampered = Event.objects.get(stream_id=target, stream_version=3)

    tamper("UPDATE events_event SET data = %s WHERE position = %s", ['{"n": 333}', tampered.position])

    message = verify_events_failure()
    assert f"position {tampered.position} " in message
    assert f"stream {target}, version 3" in message
    assert "hash mismatch" in message


def test_verify_events_names_an_event_whose_metadata_was_changed():
    target = stream_with(2)
    tampered = Event.objects.get(stream_id=target, stream_version=1)

    tamper(
        "UPDATE events_event SET metadata = %s WHERE position = %s",
        ['{"actor": "mallory", "source": "cli", "reason": "test"}', tampered.position],
    )

    assert f"position {tampered.position} " in verify_events_failure()


def test_verify_events_detects_an_event_deleted_from_the_middle_of_a_stream():
    target = stream_with(5)
    deleted = Event.objects.get(stream_id=target, stream_version=3)
    following = Event.objects.get(stream_id=target, stream_version=4)

    tamper("DELETE FROM events_event WHERE position = %s", [deleted.position])

    message = verify_events_failure()
    assert f"position {following.position} " in message
    assert "version 4 follows version 2: version 3 is missing" in message


def test_verify_events_detects_a_stream_whose_first_event_was_deleted():
    target = stream_with(3)
    first = Event.objects.get(stream_id=target, stream_version=1)

    tamper("DELETE FROM events_event WHERE position = %s", [first.position])

    assert "starts at version 2: versions 1 to 1 are missing" in verify_events_failure()


def test_verify_events_detects_events_moved_to_another_position_in_the_stream():
    target = stream_with(3)
    moved = Event.objects.get(stream_id=target, stream_version=2)
    new_position = head_position() + 10

    tamper("UPDATE events_event SET position = %s WHERE position = %s", [new_position, moved.position])

    message = verify_events_failure()
    assert f"position {Event.objects.get(stream_id=target, stream_version=3).position} " in message
    assert "out of order" in message


def test_verify_events_detects_the_newest_events_deleted_when_a_projection_had_applied_them():
    from events.models import Checkpoint

    stream_with(2)
    target = stream_with(3)
    head = head_position()
    Checkpoint.objects.create(projection="test.tail", generation=1, position=head, is_live=True)

    tamper(
        "DELETE FROM events_event WHERE position = %s",
        [Event.objects.get(stream_id=target, stream_version=3).position],
    )

    message = verify_events_failure()
    assert f"position {head}" in message
    assert "newest events are missing" in message


# --- upcasting (invariant 6) -----------------------------------------------------------------------------


@pytest.fixture
def greeting_v2():
    """test.greeting v1 had `text`; v2 splits it into `message` and `language`."""

    @register_upcaster(GREETING, 1)
    def upcast_v1(data):
        return {"message": data.pop("text"), "language": "en"}

    yield
    unregister_upcaster(GREETING, 1)


def test_an_old_stored_event_is_upcast_on_read_while_the_stored_row_is_unchanged(greeting_v2):
    stream_id = uuid.uuid4()
    event_append(
        stream_id=stream_id,
        expected_version=0,
        events=[NewEvent(type=GREETING, data={"text": "hello"}, schema_version=1)],
        metadata=METADATA,
    )

    (read,) = stream_read(stream_id=stream_id)
    (tailed,) = [event for batch in events_after(position=read.position - 1) for event in batch]

    assert (read.schema_version, read.data) == (2, {"message": "hello", "language": "en"})
    assert (tailed.schema_version, tailed.data) == (2, {"message": "hello", "language": "en"})
    stored = Event.objects.filter(stream_id=stream_id).values("schema_version", "data").get()
    assert stored == {"schema_version": 1, "data": {"text": "hello"}}
    call_command(
        "verify_events", stdout=io.StringIO()
    )  # the hash covers the stored shape, not the upcast one
