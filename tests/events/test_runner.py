"""The store and the projection runner, proved with toy projections (tests/events/toy.py)."""

import ast
import inspect
import threading
import time
import uuid

import pytest
from django.db import OperationalError, connection, transaction

import events.runner
import events.services
from events.exceptions import StoreBusy, StoreUnavailable
from events.models import Checkpoint, Event
from events.projections import projection_names
from events.runner import (
    live_checkpoint,
    projection_status_list,
    projections_catch_up_all,
    projections_wait,
    read_your_writes,
    read_your_writes_enabled,
)
from events.services import APPEND_LOCK_KEY, event_append
from tests.events.toy import counted, new_stream
from tests.threads import run_threads

META = {"actor": "test", "source": "cli"}


def _append(stream: uuid.UUID, version: int, *events) -> list:
    return event_append(stream_id=stream, expected_version=version, events=list(events), metadata=META)


# ----------------------------------------------------------------------------------------------
# The shape: the store knows nothing of projections
# ----------------------------------------------------------------------------------------------
def test_the_store_imports_nothing_of_projections_settings_of_projections_or_celery():
    source = inspect.getsource(events.services)
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not {name for name in imported if name and ("projection" in name or "runner" in name)}
    assert not {name for name in imported if name and (name.startswith("celery") or name == "events.tasks")}
    assert "PROJECTION_" not in source


def test_with_no_hooks_registered_an_append_is_stored_and_no_view_moves(
    toys, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(events.services, "_hooks", None)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        [stored] = _append(new_stream(), 0, counted())

    assert Event.objects.filter(position=stored.position).exists()
    assert callbacks == []
    assert live_checkpoint(toys.tally.name).position == 0


# ----------------------------------------------------------------------------------------------
# Inline apply, catch-up, read-your-writes
# ----------------------------------------------------------------------------------------------
def test_an_append_applies_itself_to_every_caught_up_view_in_its_transaction_and_queues_nothing(
    toys, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: queued.append("catch-up"))
    for name in projection_names():  # every view caught up (with the empty log)
        live_checkpoint(name)
    stream = new_stream()
    with django_capture_on_commit_callbacks(execute=True):
        stored = _append(stream, 0, counted(), counted())

    for toy in (toys.tally, toys.fragile):
        assert live_checkpoint(toy.name).position == stored[-1].position
        assert toy.count(generation=live_checkpoint(toy.name).generation) == {str(stream): 2}
    assert queued == []


def test_the_inline_views_apply_in_registration_order_whatever_order_the_claim_returns(
    toys, monkeypatch, django_capture_on_commit_callbacks
):
    # The claim's UPDATE ... RETURNING gives the rows in the table's physical order, which a
    # rebuild's swap changes; the runner must not follow it (a view's waiting write,
    # rows_joined, counts on the next view's statement).
    for name in projection_names():
        live_checkpoint(name)
    claim = events.runner._checkpoints_claim
    monkeypatch.setattr(events.runner, "_checkpoints_claim", lambda *a, **k: claim(*a, **k)[::-1])
    applied = []
    for toy in (toys.tally, toys.fragile):
        original = toy.apply
        monkeypatch.setattr(
            toy,
            "apply",
            lambda events, *, generation, o=original, n=toy.name: (
                applied.append(n),
                o(events, generation=generation),
            ),
        )
    with django_capture_on_commit_callbacks(execute=True):
        _append(new_stream(), 0, counted())

    assert applied == [name for name in projection_names() if name in {toys.tally.name, toys.fragile.name}]
    assert len(applied) == 2


def test_a_view_behind_is_left_alone_inside_the_append_and_caught_up_by_the_writer_after_commit(
    toys, settings, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: queued.append("catch-up"))
    stream = new_stream()
    with read_your_writes(False), django_capture_on_commit_callbacks(execute=True):
        _append(stream, 0, counted())
    assert live_checkpoint(toys.tally.name).position == 0 and queued == ["catch-up"]

    with django_capture_on_commit_callbacks(execute=True):
        [second] = _append(stream, 1, counted())

    assert live_checkpoint(toys.tally.name).position == second.position
    assert toys.tally.count(generation=1) == {str(stream): 2}
    assert queued == ["catch-up", "catch-up"]


def test_read_your_writes_switched_off_in_one_thread_stays_on_in_the_others():
    inside, release = threading.Event(), threading.Event()
    seen_elsewhere: list[bool] = []

    def bulk() -> None:
        with read_your_writes(False):
            inside.set()
            release.wait(5)

    def other() -> None:
        inside.wait(5)
        seen_elsewhere.append(read_your_writes_enabled())
        release.set()

    run_threads([bulk, other])
    assert seen_elsewhere == [True]


@pytest.mark.django_db
def test_bulk_writes_turns_read_your_writes_off_for_its_own_thread_only(settings):
    from agents_app.importing import bulk_writes

    inside, release = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def other() -> None:
        inside.wait(5)
        seen["setting"] = settings.PROJECTION_READ_YOUR_WRITES
        seen["enabled"] = read_your_writes_enabled()
        release.set()

    worker = threading.Thread(target=other)
    worker.start()
    with bulk_writes():
        seen["inside"] = read_your_writes_enabled()
        inside.set()
        release.wait(5)
    worker.join(5)

    assert seen == {"inside": False, "setting": True, "enabled": True}
    assert read_your_writes_enabled()


def test_a_writer_applies_at_most_the_wait_bound_of_a_backlog_and_leaves_the_rest(
    toys, settings, monkeypatch
):
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: None)
    settings.PROJECTION_WAIT_MAX_EVENTS = 5
    stream = new_stream()
    with read_your_writes(False):
        stored = _append(stream, 0, *[counted() for _ in range(20)])

    assert projections_wait(position=stored[-1].position, timeout=1) is False

    # The budget is for the whole request, over every projection (the agent ones lag too).
    applied = {
        name: Event.objects.filter(position__lte=live_checkpoint(name).position).count()
        for name in projection_names()
    }
    assert sum(applied.values()) == 5, applied
    assert projections_catch_up_all()[toys.tally.name] is not None
    assert live_checkpoint(toys.tally.name).position == stored[-1].position


# ----------------------------------------------------------------------------------------------
# A projection that cannot apply an event
# ----------------------------------------------------------------------------------------------
def test_a_projection_that_fails_on_an_event_records_it_and_the_write_and_the_other_views_go_on(
    toys, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: None)
    stream = new_stream()
    with django_capture_on_commit_callbacks(execute=True):
        [good] = _append(stream, 0, counted())
    with django_capture_on_commit_callbacks(execute=True):
        [bad] = _append(stream, 1, counted(bad=True))
    with django_capture_on_commit_callbacks(execute=True):
        [after] = _append(stream, 2, counted())

    # Every write is stored; the healthy view has all three, the fragile one stops before the bad event.
    assert list(Event.objects.filter(stream_id=stream).values_list("position", flat=True)) == [
        good.position,
        bad.position,
        after.position,
    ]
    assert toys.tally.count(generation=1) == {str(stream): 3}
    assert toys.fragile.count(generation=1) == {str(stream): 1}
    fragile = live_checkpoint(toys.fragile.name)
    assert fragile.position == good.position
    assert fragile.failed_position == bad.position
    assert f"toy cannot count event {bad.position}" in fragile.failed_error

    [status] = [s for s in projection_status_list() if s.name == toys.fragile.name]
    assert (status.failed_position, status.lag_events) == (bad.position, 2)
    assert "toy cannot count" in status.failed_error
    assert projections_catch_up_all()[toys.fragile.name] is None  # still failing, and the others ran

    toys.fragile.refuse_bad = False  # the bug is fixed
    projections_catch_up_all()
    fragile = live_checkpoint(toys.fragile.name)
    assert (fragile.position, fragile.failed_position, fragile.failed_error) == (after.position, None, "")
    assert toys.fragile.count(generation=1) == {str(stream): 3}


def test_a_failing_batch_is_replayed_one_event_at_a_time_to_name_the_bad_event(toys, monkeypatch):
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: None)
    stream = new_stream()
    with read_your_writes(False):
        stored = _append(stream, 0, counted(), counted(), counted(bad=True), counted())

    assert projections_wait(position=stored[-1].position, timeout=1) is False

    fragile = live_checkpoint(toys.fragile.name)
    assert (fragile.position, fragile.failed_position) == (stored[1].position, stored[2].position)
    assert toys.fragile.count(generation=1) == {str(stream): 2}
    assert live_checkpoint(toys.tally.name).position == stored[-1].position


# ----------------------------------------------------------------------------------------------
# Database errors leave the store as its own errors
# ----------------------------------------------------------------------------------------------
def test_a_lost_connection_during_an_append_is_store_unavailable_and_stores_nothing(toys):
    def cut(execute, sql, params, many, context):
        if sql.startswith("INSERT INTO") and "events_event" in sql:
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    stream = new_stream()
    with connection.execute_wrapper(cut), pytest.raises(StoreUnavailable):
        _append(stream, 0, counted())
    assert not Event.objects.filter(stream_id=stream).exists()


@pytest.mark.postgres
def test_a_writer_waits_at_most_the_append_lock_timeout_and_gets_store_busy(toys_committed, settings):
    settings.APPEND_LOCK_TIMEOUT_SECONDS = 0.3
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}
    stream = new_stream()

    def holder() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK_KEY])
            holding.set()
            release.wait(10)
        connection.close()

    def writer() -> None:
        holding.wait(5)
        started = time.monotonic()
        try:
            _append(stream, 0, counted())
        except StoreBusy as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started
        release.set()
        connection.close()

    run_threads([holder, writer])

    assert isinstance(outcome.get("error"), StoreBusy), outcome
    assert outcome["seconds"] < 3
    assert not Event.objects.filter(stream_id=stream).exists()
    assert not Checkpoint.objects.filter(failed_position__isnull=False).exists()
