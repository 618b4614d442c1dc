"""Seals cover the whole log (invariant 4): tampering that every stream chain survives is found.

Each tampering here leaves every stream's hash chain valid: a whole stream deleted, a
stream's newest events deleted in the middle of the log, positions swapped across streams,
a well-forged event inserted in a gap, a seal changed or deleted. Done as a hostile database
superuser would (every trigger off, tests/security/tampering.py), on PostgreSQL and SQLite.
"""

import io
import threading
import uuid
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from events.chain import SealHasher, event_hash
from events.models import Event, LogSeal, LogVerification
from events.sealing import log_seal
from events.services import event_append
from events.tasks import events_seal_task
from events.types import NewEvent, StoredEvent
from events.verification import events_verify, events_verify_recorded
from tests.security.tampering import skip_a_position, triggers_disabled

pytestmark = pytest.mark.django_db

METADATA = {"actor": "alice", "source": "cli", "reason": "seal test"}
STATUS = "/admin/events/projectionrun/status/"


def append(stream_id: uuid.UUID, version: int) -> StoredEvent:
    (stored,) = event_append(
        stream_id=stream_id,
        expected_version=version - 1,
        events=[NewEvent("test.note", {"n": version})],
        metadata=METADATA,
    )
    return stored


@pytest.fixture
def log(settings) -> dict[str, StoredEvent]:
    """Streams A, B, C, D interleaved, a gap after A2, sealed three events a seal:

    seal 1: A1 B1 A2 | seal 2: (gap) C1 B2 A3 | seal 3: C2 D1 A4
    """
    settings.EVENT_SEAL_MAX_EVENTS = 3
    streams = {name: uuid.uuid4() for name in "ABCD"}
    events = {}
    for name in ("A1", "B1", "A2", "gap", "C1", "B2", "A3", "C2", "D1", "A4"):
        if name == "gap":
            skip_a_position()
            continue
        events[name] = append(streams[name[0]], int(name[1]))
    assert events["C1"].position == events["A2"].position + 2
    assert len(log_seal()) == 3
    return events


def seals() -> list[LogSeal]:
    return list(LogSeal.objects.order_by("end_position"))


def delete(cursor, *events: StoredEvent) -> None:
    for event in events:
        cursor.execute("DELETE FROM events_event WHERE position = %s", [event.position])
        assert cursor.rowcount == 1


def _delete_stream(cursor, log):
    delete(cursor, log["B1"], log["B2"])
    return 0, "sealed 3 events in positions", "the log holds 2 there: events were deleted or inserted"


def _delete_newest_events_of_a_stream(cursor, log):
    delete(cursor, log["B2"])  # B's newest; A3, C2, D1 and A4 come after it
    return 1, "sealed 3 events", "the log holds 2 there"


def _swap_positions_across_streams(cursor, log):
    b2, a3 = log["B2"], log["A3"]  # each stream's own order stays the same
    update = "UPDATE events_event SET position = %s WHERE position = %s"
    for new, old in ((2**40, b2.position), (b2.position, a3.position), (a3.position, 2**40)):
        cursor.execute(update, [new, old])
        assert cursor.rowcount == 1
    return 1, "are not the ones sealed", "moved between positions or streams"


def _insert_forged_event(cursor, log):
    # A new stream with a correct chain hash, at the position a rolled-back append left free.
    forged = {
        "event_id": uuid.uuid4(),
        "stream_id": uuid.uuid4(),
        "stream_version": 1,
        "type": "test.note",
        "schema_version": 1,
        "data": {"n": 1},
        "metadata": METADATA,
        "recorded_at": log["A2"].recorded_at,
    }
    Event.objects.bulk_create(
        [Event(position=log["A2"].position + 1, hash=event_hash(previous_hash="", **forged), **forged)]
    )
    return 1, "sealed 3 events", "the log holds 4 there"


def _change_a_seal(cursor, log):
    cursor.execute("UPDATE events_logseal SET hash = %s WHERE id = %s", ["0" * 64, seals()[1].pk])
    return 1, "are not the ones sealed", "or the seal was changed"


def _delete_a_seal(cursor, log):
    cursor.execute("DELETE FROM events_logseal WHERE id = %s", [seals()[1].pk])
    return 2, "but the seal before it ends at position", "a seal between them was deleted"


TAMPERINGS = {
    "a whole stream deleted": _delete_stream,
    "a stream's newest event deleted in the middle of the log": _delete_newest_events_of_a_stream,
    "positions swapped across streams": _swap_positions_across_streams,
    "a forged event inserted": _insert_forged_event,
    "a seal changed": _change_a_seal,
    "a seal deleted": _delete_a_seal,
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_tampering_every_stream_chain_survives_is_named_by_seal_in_verify_readyz_and_the_admin(
    log, tampering, django_user_model
):
    assert events_verify().ok
    before = seals()
    with triggers_disabled() as cursor:
        index, *phrases = TAMPERINGS[tampering](cursor, log)
    bad = before[index]

    result = events_verify()
    with pytest.raises(CommandError) as failure:
        call_command("verify_events", stdout=io.StringIO())

    # Every stream chain was walked to its end intact: only the seals see this tampering.
    assert result.events == Event.objects.count() and result.problem is not None
    assert result.problem.seal == bad.pk and result.problem.position == bad.after_position + 1
    message = str(result.problem)
    assert message.startswith(f"seal {bad.pk}: "), message
    assert all(phrase in message for phrase in phrases), message
    assert failure.value.returncode == 1 and message in str(failure.value)
    stored = LogVerification.objects.order_by("-started_at", "-pk").first()
    assert (stored.result, stored.problem_position) == ("problem", bad.after_position + 1)
    response = APIClient().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["log_integrity"]["tamper"]["problem"] == message
    browser = django_user_model.objects.create_user(username="operator", is_staff=True)
    client = APIClient()
    client.force_login(browser)
    page = client.get(STATUS).content.decode()
    assert "TAMPERING DETECTED" in page and f"seal {bad.pk}: " in page


def test_the_newest_seals_removed_with_the_newest_events_are_named_by_the_seal_head_recorded_before(log):
    recorded, _ = events_verify_recorded(source="test")
    newest = seals()[-1]
    with triggers_disabled() as cursor:
        cursor.execute("DELETE FROM events_logseal WHERE id = %s", [newest.pk])
        delete(cursor, log["A4"])  # the head of the log: every chain and seal left is valid

    result = events_verify()  # seals C2 and D1 again, under a new end

    assert recorded.ok and recorded.seal_end_position == log["A4"].position
    assert result.problem is not None and result.problem.position == log["A4"].position
    assert f"the seal ending at position {log['A4'].position} with hash {newest.hash}" in str(result.problem)
    assert "gone or changed" in str(result.problem)


def test_an_intact_log_verifies_with_its_seals_and_the_seal_head_is_stored_and_printed(log):
    out = io.StringIO()
    call_command("verify_events", stdout=out)

    row = LogVerification.objects.get()
    head = seals()[-1]
    assert (row.result, row.events_checked, row.streams_checked, row.seals_checked) == ("ok", 9, 4, 3)
    assert (row.seal_end_position, row.seal_hash, row.events_unsealed) == (head.end_position, head.hash, 0)
    assert f"seal head: position {head.end_position}, hash {head.hash}" in out.getvalue()
    assert out.getvalue().endswith("9 events in 4 streams and 3 seals verified\n")


def test_the_status_page_shows_the_seals_checked_the_unsealed_events_and_the_seal_head(log, admin_client):
    events_verify_recorded(source="test")
    append(uuid.uuid4(), 1)
    LogVerification.objects.filter(source="test").update(
        events_unsealed=1
    )  # as if it arrived during the walk

    page = " ".join(admin_client.get(STATUS).content.decode().split())

    head = seals()[-1]
    assert 'data-result="ok"' in page and "3 seals" in page and "1 newer event not yet sealed" in page
    assert f'Seal head: position {head.end_position}, hash <code class="seal-hash">{head.hash}</code>' in page


def test_events_past_the_newest_seal_are_reported_as_not_yet_sealed_not_as_a_failure(log):
    stream = uuid.uuid4()
    append(stream, 1)
    append(stream, 2)

    unsealed = events_verify(seal=False)
    sealed = events_verify()

    assert (unsealed.ok, unsealed.unsealed, unsealed.events) == (True, 2, 11)
    assert (sealed.ok, sealed.unsealed, sealed.seals) == (True, 0, 4)


def test_seals_chain_cover_consecutive_ranges_and_hash_what_the_range_holds(log):
    first, second, third = seals()
    expected = SealHasher(
        previous_hash=first.hash, after_position=first.end_position, end_position=second.end_position
    )
    for name in ("C1", "B2", "A3"):
        event = log[name]
        expected.add(
            position=event.position,
            stream_id=event.stream_id,
            stream_version=event.stream_version,
            hash=event.hash,
        )

    assert (first.after_position, first.previous_hash, first.end_position) == (0, "", log["A2"].position)
    assert (second.after_position, second.previous_hash, second.events) == (first.end_position, first.hash, 3)
    assert second.end_position == log["A3"].position and second.hash == expected.hexdigest()
    assert (third.after_position, third.end_position) == (second.end_position, log["A4"].position)
    assert log_seal() == []  # nothing new: no empty seal


def test_two_sealers_that_read_the_same_newest_seal_write_one_seal(log):
    stream = uuid.uuid4()
    append(stream, 1)
    raced = []

    def seal_first_from_inside(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if 'FROM "events_logseal"' in sql and not raced:
            raced.append([])
            raced[0] = log_seal()  # after this sealer read the newest seal, the other one writes first
        return result

    with connection.execute_wrapper(seal_first_from_inside):
        mine = log_seal()

    assert mine == [] and [len(written) for written in raced] == [1]
    assert LogSeal.objects.count() == 4 and events_verify().ok


def test_sealing_and_verifying_read_the_log_in_batches_never_all_of_it_at_once(log, settings):
    settings.EVENT_VERIFY_BATCH_SIZE = 2
    stream = uuid.uuid4()
    for version in range(1, 6):
        append(stream, version)

    with CaptureQueriesContext(connection) as queries:
        result = events_verify()

    reads = [q["sql"] for q in queries.captured_queries if 'FROM "events_event"' in q["sql"]]
    rows = [sql for sql in reads if "COUNT(" not in sql and "MAX(" not in sql]
    assert result.ok and result.events == 14
    assert not [sql for sql in rows if " LIMIT " not in sql], "a query without a LIMIT reads the whole log"
    assert all(int(sql.rsplit("LIMIT ", 1)[1].split()[0]) <= 2 for sql in rows), rows
    # The chains walk 14 events two at a time (about 8 batches), the seals 14 again.
    assert 14 <= len(rows) <= 40, len(rows)


def test_the_seal_task_runs_on_beat_and_seals_new_events(log):
    schedule = PeriodicTask.objects.get(task="events.tasks.events_seal_task")
    append(uuid.uuid4(), 1)

    outcome = events_seal_task.delay().get()

    assert schedule.enabled and schedule.interval.period == "seconds"
    assert schedule.interval.every == django_settings.EVENT_SEAL_SECONDS  # what the migration read
    assert outcome == {"seals": 1, "end_position": Event.objects.order_by("-position").first().position}


def test_the_database_refuses_to_update_or_delete_a_seal(log):
    seal = seals()[0]
    for statement in (
        "UPDATE events_logseal SET hash = 'x' WHERE id = %s",
        "DELETE FROM events_logseal WHERE id = %s",
    ):
        with (
            pytest.raises(Exception, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, [seal.pk])

    assert LogSeal.objects.get(pk=seal.pk).hash == seal.hash


def test_the_tampering_helper_puts_every_trigger_back(log):
    with triggers_disabled():
        pass

    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM events_logseal")
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM events_event")


# ----------------------------------------------------------------------------------------------
# SQLite: no statement rewrites a stored row, INSERT OR REPLACE included
# ----------------------------------------------------------------------------------------------


def stored_rows() -> list[dict[str, Any]]:
    return list(Event.objects.order_by("position").values())


@pytest.fixture
def one_event(db) -> StoredEvent:
    return append(uuid.uuid4(), 1)


def _replace(statement: str, values: dict[str, Any]) -> None:
    columns = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    with connection.cursor() as cursor:
        cursor.execute(f"{statement} INTO events_event ({columns}) VALUES ({marks})", list(values.values()))


def _forged_row(event: StoredEvent, **changes: Any) -> dict[str, Any]:
    row = {
        "event_id": uuid.uuid4().hex,
        "stream_id": uuid.uuid4().hex,
        "stream_version": 1,
        "type": "test.forged",
        "schema_version": 1,
        "data": '{"evil": true}',
        "metadata": "{}",
        "recorded_at": "2020-01-01 00:00:00",
        "hash": "0" * 64,
    }
    return {**row, **changes}


@pytest.mark.skipif("connection.vendor != 'sqlite'")
@pytest.mark.parametrize("statement", ["INSERT OR REPLACE", "REPLACE"])
@pytest.mark.parametrize("clash", ["position", "event_id", "stream_id and stream_version"])
def test_insert_or_replace_over_a_stored_event_changes_nothing_on_sqlite(one_event, statement, clash):
    before = stored_rows()
    changes = {
        "position": {"position": one_event.position},
        "event_id": {"event_id": one_event.event_id.hex},
        "stream_id and stream_version": {"stream_id": one_event.stream_id.hex, "stream_version": 1},
    }[clash]

    _replace(statement, _forged_row(one_event, **changes))

    assert stored_rows() == before
    assert events_verify().ok


def test_an_upsert_over_a_stored_event_changes_nothing(one_event):
    before = stored_rows()
    row = _forged_row(one_event, position=one_event.position)
    if connection.vendor == "postgresql":
        row = {**row, "event_id": str(uuid.uuid4()), "stream_id": str(uuid.uuid4())}
    columns, marks = ", ".join(row), ", ".join(["%s"] * len(row))
    upsert = (
        f"INSERT INTO events_event ({columns}) VALUES ({marks})"
        " ON CONFLICT (position) DO UPDATE SET data = excluded.data, hash = excluded.hash"
    )

    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(upsert, list(row.values()))
    except Exception as refused:  # PostgreSQL: the UPDATE it turns into meets the trigger
        assert connection.vendor == "postgresql" and "append-only" in str(refused)
    else:  # SQLite: the insert guard skips the row before the conflict is seen
        assert connection.vendor == "sqlite"

    assert stored_rows() == before


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_insert_or_replace_over_a_stored_seal_is_refused_on_sqlite(log):
    seal = seals()[0]
    with (
        pytest.raises(IntegrityError, match="a seal over this range exists already"),
        connection.cursor() as c,
    ):
        c.execute(
            "INSERT OR REPLACE INTO events_logseal (id, after_position, end_position, events, previous_hash,"
            " hash, sealed_at) VALUES (%s, 0, %s, 0, '', 'x', '2020-01-01')",
            [seal.pk, seal.end_position],
        )

    assert LogSeal.objects.get(pk=seal.pk).hash == seal.hash


# ----------------------------------------------------------------------------------------------
# Sealing never seals a range in which an earlier position can still commit (PostgreSQL)
# ----------------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sealing_waits_for_an_append_in_flight_and_then_covers_it(settings):
    settings.PROJECTION_READ_YOUR_WRITES = False
    inserted, release = threading.Event(), threading.Event()
    appended: list[Any] = []

    def pause_after_insert(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith('INSERT INTO "events_event"'):
            inserted.set()
            assert release.wait(30)
        return result

    def writer() -> None:
        try:
            with connection.execute_wrapper(pause_after_insert):
                appended.append(append(uuid.uuid4(), 1))
        finally:
            connection.close()

    first = append(uuid.uuid4(), 1)
    thread = threading.Thread(target=writer)
    thread.start()
    assert inserted.wait(30)  # the writer holds the append lock and a position, uncommitted
    sealed: list[Any] = []
    sealer = threading.Thread(target=lambda: (sealed.append(log_seal()), connection.close()))
    sealer.start()
    sealer.join(0.5)
    waiting = sealer.is_alive()
    release.set()
    thread.join(30)
    sealer.join(30)

    assert waiting, "sealing read the head while an append was in flight"
    (in_flight,) = appended
    assert in_flight.position > first.position
    assert [seal.end_position for seal in sealed[0]] == [in_flight.position]
    assert events_verify().ok
