"""Tamper evidence end to end: an event row altered, deleted or reordered behind the application's
back is named by `verify_events`, fails /readyz and shows on the admin's projection status page;
put back, the log verifies again and /readyz recovers.

The tampering is done as a hostile database superuser would: with every trigger of the event
table switched off (tests/security/tampering.py), on PostgreSQL and SQLite alike. Tampering
that every stream chain survives, which only the seals show, is in test_seals.py.
"""

import datetime as dt
import io
import json
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from agents_app.services import ChangeContext, agent_create, agent_revise
from events.models import Checkpoint, Event, LogVerification
from events.runner import projections_catch_up_all
from events.services import event_append
from events.tasks import events_verify_task
from events.types import NewEvent
from events.verification import events_verify, events_verify_recorded
from project.celery import app as celery_app
from tests.conftest import agent_text
from tests.security.tampering import triggers_disabled

pytestmark = pytest.mark.django_db

STATUS = "/admin/events/projectionrun/status/"
VERIFY_NOW = "/admin/events/projectionrun/status/verify/"
CONTEXT = ChangeContext(actor="alice", source="cli", reason="tamper test")


@pytest.fixture
def log(django_capture_on_commit_callbacks) -> dict[int, Event]:
    """Two agents; `reviewer` at revision 3. Returns reviewer's events by stream version."""
    with django_capture_on_commit_callbacks(execute=True):
        reviewer = agent_create(content=agent_text("reviewer"), context=CONTEXT)
        for body in ("Two.\n", "Three.\n"):
            agent_revise(
                agent_id=reviewer.agent_id, content=agent_text("reviewer", body=body), context=CONTEXT
            )
        agent_create(content=agent_text("writer"), context=CONTEXT)
    return {event.stream_version: event for event in Event.objects.filter(stream_id=reviewer.agent_id)}


@pytest.fixture
def staff_browser(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="operator", is_staff=True))
    return client


def verify_events_fails() -> str:
    """Run the command: it must exit 1; its message."""
    with pytest.raises(CommandError) as failure:
        call_command("verify_events", stdout=io.StringIO())
    assert failure.value.returncode == 1
    return str(failure.value)


def verify_events_passes() -> None:
    out = io.StringIO()
    call_command("verify_events", stdout=out)
    assert out.getvalue().endswith("verified\n")


def readyz() -> tuple[int, dict[str, Any]]:
    response = APIClient().get("/readyz")
    return response.status_code, response.json()["checks"]["log_integrity"]


# ----------------------------------------------------------------------------------------------
# A hostile database superuser
# ----------------------------------------------------------------------------------------------
def sql(cursor, statement: str, *params: Any) -> None:
    cursor.execute(statement, params)
    assert cursor.rowcount == 1, statement


def swap(cursor, column: str, a: Event, b: Event) -> None:
    """Swap one column of two rows (found by event id), through a value nobody uses: the column
    is under a unique constraint, checked row by row."""
    key = Event._meta.get_field("event_id")
    a_id, b_id = (key.get_db_prep_value(event.event_id, connection) for event in (a, b))
    values = {}
    for event_id in (a_id, b_id):
        cursor.execute(f"SELECT {column} FROM events_event WHERE event_id = %s", [event_id])
        (values[event_id],) = cursor.fetchone()
    parked = 2**40 if column == "position" else 2**30
    update = f"UPDATE events_event SET {column} = %s WHERE event_id = %s"
    sql(cursor, update, parked, a_id)
    sql(cursor, update, values[a_id], b_id)
    sql(cursor, update, values[b_id], a_id)


def put(cursor, column: str, value: Any, position: int) -> None:
    sql(cursor, f"UPDATE events_event SET {column} = %s WHERE position = %s", value, position)


def _change_data(cursor, events):
    target = events[2]
    put(cursor, "data", json.dumps({**target.data, "content": "x"}), target.position)

    def restore(c):
        put(c, "data", json.dumps(target.data), target.position)

    return target.position, "hash mismatch", restore


def _change_actor(cursor, events):
    target = events[2]
    put(cursor, "metadata", json.dumps({**target.metadata, "actor": "mallory"}), target.position)

    def restore(c):
        put(c, "metadata", json.dumps(target.metadata), target.position)

    return target.position, "hash mismatch", restore


def _delete_row(cursor, events):
    target = events[2]
    row = Event.objects.filter(position=target.position).values().get()
    sql(cursor, "DELETE FROM events_event WHERE position = %s", target.position)

    def restore(c):
        Event.objects.bulk_create([Event(**row)])  # INSERT: the one thing the triggers allow anyway

    return events[3].position, "version 3 follows version 1: version 2 is missing", restore


def _swap_versions(cursor, events):
    swap(cursor, "stream_version", events[2], events[3])
    # Version 2 is now the row at version 3's position, hashed as version 3.
    return events[3].position, "hash mismatch", lambda c: swap(c, "stream_version", events[2], events[3])


def _swap_positions(cursor, events):
    swap(cursor, "position", events[2], events[3])
    # The hash does not cover the position: only the order check sees this one.
    return events[2].position, "out of order", lambda c: swap(c, "position", events[2], events[3])


def _change_hash(cursor, events):
    target = events[2]
    put(cursor, "hash", "0" * 64, target.position)

    def restore(c):
        put(c, "hash", target.hash, target.position)

    return target.position, "hash mismatch", restore


TAMPERINGS = {
    "data changed": _change_data,
    "actor rewritten": _change_actor,
    "row deleted": _delete_row,
    "stream versions swapped": _swap_versions,
    "positions swapped": _swap_positions,
    "hash changed": _change_hash,
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_tampering_is_named_by_verify_events_fails_readyz_and_shows_in_the_admin_until_put_back(
    log, staff_browser, tampering
):
    verify_events_passes()
    assert readyz()[0] == 200

    with triggers_disabled() as cursor:
        bad_position, problem, restore = TAMPERINGS[tampering](cursor, log)

    message = verify_events_fails()
    status, check = readyz()
    page = staff_browser.get(STATUS).content.decode()

    assert f"event at position {bad_position} " in message and problem in message
    assert status == 503
    assert check["ok"] is False
    assert check["tamper"]["position"] == bad_position and problem in check["tamper"]["problem"]
    assert 'data-result="problem"' in page and "TAMPERING DETECTED" in page
    assert f"event at position {bad_position} " in page
    stored = LogVerification.objects.order_by("-started_at", "-pk").first()
    assert (stored.source, stored.result, stored.problem_position) == ("command", "problem", bad_position)

    with triggers_disabled() as cursor:
        restore(cursor)

    verify_events_passes()
    status, check = readyz()
    assert (status, check["ok"]) == (200, True)
    assert "tamper" not in check
    assert 'data-result="ok"' in staff_browser.get(STATUS).content.decode()


def test_verify_now_in_the_admin_finds_tampering_and_readyz_reports_it(
    log, staff_browser, django_capture_on_commit_callbacks
):
    with triggers_disabled() as cursor:
        _change_actor(cursor, log)

    with django_capture_on_commit_callbacks(execute=True):  # the task runs when the request commits
        response = staff_browser.post(VERIFY_NOW)

    assert response.status_code == 302 and response["Location"] == STATUS
    stored = LogVerification.objects.get()
    assert (stored.source, stored.result) == ("admin (operator)", "problem")
    assert readyz()[0] == 503
    assert f"event at position {log[2].position} " in staff_browser.get(STATUS).content.decode()


def test_the_append_only_triggers_are_back_after_the_tampering_helper(log):
    with triggers_disabled():
        pass

    with pytest.raises(Exception, match="append-only"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM events_event WHERE position = %s", [log[1].position])


# ----------------------------------------------------------------------------------------------
# Stored verification results (every database)
# ----------------------------------------------------------------------------------------------
def stored(result: str, *, hours_ago: float = 0, **fields: Any) -> LogVerification:
    row = LogVerification.objects.create(source="test", result=result, **fields)
    when = timezone.now() - dt.timedelta(hours=hours_ago)
    LogVerification.objects.filter(pk=row.pk).update(started_at=when, finished_at=when)
    row.refresh_from_db()
    return row


def test_verify_events_stores_its_result_with_the_counts(log):
    verify_events_passes()

    (row,) = LogVerification.objects.all()
    assert (row.source, row.result, row.events_checked, row.streams_checked) == ("command", "ok", 4, 2)
    assert row.finished_at >= row.started_at and row.problem_position is None and row.first_problem == ""


def test_readyz_reports_the_latest_verification_and_its_age_and_fails_only_on_a_problem(db):
    assert readyz() == (200, {"ok": True, "verified": False})  # never verified: not a reason to stop

    stored("ok", hours_ago=30, events_checked=12)
    status, check = readyz()
    assert status == 200 and check["ok"] and check["events_checked"] == 12
    assert 30 * 3600 - 60 < check["age_seconds"] < 30 * 3600 + 60  # old: reported, not fatal

    problem = "event at position 7 (...): hash mismatch"
    stored("problem", hours_ago=2, problem_position=7, first_problem=problem)
    status, check = readyz()
    assert status == 503 and check["ok"] is False
    assert check["tamper"] == {"position": 7, "problem": problem}

    stored("running", hours_ago=1)  # neither a walk in progress
    stored("failed", hours_ago=0.5, first_problem="the verification did not finish: OperationalError()")
    assert readyz()[0] == 503  # ... nor one that crashed hides the problem found

    stored("ok", hours_ago=0.1)
    assert readyz()[0] == 200


def test_a_crashed_verification_is_stored_as_failed_and_the_last_result_stands(log, monkeypatch):
    stored("ok", hours_ago=1)

    def crash(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("events.verification.events_verify", crash)
    with pytest.raises(RuntimeError):
        events_verify_recorded(source="test crash")

    failed = LogVerification.objects.get(source="test crash")
    assert (failed.result, failed.finished_at is not None) == ("failed", True)
    assert "disk on fire" in failed.first_problem
    assert readyz()[0] == 200


def test_the_status_page_shows_the_latest_result_and_a_verify_now_button(db, staff_browser):
    never = staff_browser.get(STATUS).content.decode()
    stored("ok", hours_ago=3, events_checked=42, streams_checked=5)
    verified = staff_browser.get(STATUS).content.decode()
    stored("problem", problem_position=9, first_problem="event at position 9 (x): <script>bad</script>")
    tampered = staff_browser.get(STATUS).content.decode()

    assert 'data-result="never"' in never and "have not been verified yet" in never
    assert f'action="{VERIFY_NOW}"' in never and 'value="Verify now"' in never
    assert 'data-result="ok"' in verified and "42 events in 5 streams" in verified
    assert "3\xa0hours ago" in verified
    assert 'data-result="problem"' in tampered and "event at position 9 (x)" in tampered
    assert "<script>bad</script>" not in tampered  # escaped like everything else shown there


def test_verify_now_queues_the_task_which_stores_a_result_named_after_the_operator(
    log, staff_browser, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_browser.post(VERIFY_NOW, follow=True)

    assert response.redirect_chain == [(STATUS, 302)]
    assert "verification of the event log was queued" in response.content.decode()
    (row,) = LogVerification.objects.all()
    assert (row.source, row.result, row.events_checked) == ("admin (operator)", "ok", 4)
    assert staff_browser.get(VERIFY_NOW).status_code == 405  # a GET starts nothing
    assert LogVerification.objects.count() == 1


def test_the_verification_runs_hourly_on_beat_and_stores_its_result(log):
    schedule = PeriodicTask.objects.get(task="events.tasks.events_verify_task")

    result = events_verify_task.delay()

    assert schedule.enabled and schedule.crontab.minute == "17" and schedule.crontab.hour == "*"
    assert "events.tasks.events_verify_task" in celery_app.tasks
    assert result.get()["ok"] is True
    assert LogVerification.objects.get().source == "schedule"


def test_an_append_applied_between_the_final_reads_is_not_taken_for_a_cut_off_log(log):
    """verify's last check compares the furthest checkpoint with the head of the log. A write that
    commits and is applied by a projection between those two reads must not look like events
    removed from the end (a false alarm /readyz would turn into an outage)."""
    raced = False

    def append_and_apply_after_first_final_read(execute, sql_text, params, many, context):
        nonlocal raced
        result = execute(sql_text, params, many, context)
        final_read = "events_checkpoint" in sql_text or 'MAX("events_event"."position")' in sql_text
        if final_read and not raced:
            raced = True
            (stored_event,) = event_append(
                stream_id=uuid.uuid4(),
                expected_version=0,
                events=[NewEvent(type="test.note", data={})],
                metadata={"actor": "bob", "source": "cli"},
            )
            Checkpoint.objects.filter(is_live=True).update(position=stored_event.position)
        return result

    projections_catch_up_all()
    with connection.execute_wrapper(append_and_apply_after_first_final_read):
        result = events_verify()

    assert raced
    assert result.ok, result.problem
