"""Rebuilds in phases, proved with toy projections (tests/events/toy.py): verify without stalling
writes, a failed cleanup never touches the live view, one rebuild at a time, cleanup of what a
killed one left, no swap over a log that fails verification."""

import datetime as dt
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from events.exceptions import RebuildAlreadyRunning
from events.models import Checkpoint, Event, ProjectionRun
from events.rebuild import REBUILD_LOCK_CLASS, projection_rebuild, projections_cleanup
from events.runner import live_checkpoint, projections_catch_up_all
from events.services import event_append
from events.tasks import projection_rebuild_task
from tests.events.toy import TABLE, counted, new_stream
from tests.threads import run_threads

META = {"actor": "test", "source": "cli"}


def _history(streams: int, events_each: int) -> list[str]:
    """Toy events in `streams` streams, one stream after the other, the views caught up; the stream ids."""
    ids = []
    for _ in range(streams):
        stream = new_stream()
        event_append(
            stream_id=stream,
            expected_version=0,
            events=[counted() for _ in range(events_each)],
            metadata=META,
        )
        ids.append(str(stream))
    projections_catch_up_all()
    return ids


def _generations(name: str) -> dict[int, bool]:
    return dict(Checkpoint.objects.filter(projection=name).values_list("generation", "is_live"))


@pytest.fixture
def quiet(monkeypatch):
    """No Celery catch-up queued after appends (the writers and the test catch up themselves)."""
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda *args, **kwargs: None)


# ----------------------------------------------------------------------------------------------
# Defect 2: a verifying rebuild does not stall writes
# ----------------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_writes_during_the_compare_of_a_verifying_rebuild_answer_at_once_with_their_own_event(
    toys_committed, quiet, settings
):
    settings.PROJECTION_WAIT_SECONDS = 5
    toy = toys_committed.tally
    streams = _history(20, 100)  # 2,000 events
    live_before = live_checkpoint(toy.name).generation
    comparing, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def hold_the_compare(execute, sql, params, many, context):
        # The comparison reads the toy rows in key order: hold it there, wherever it runs.
        if sql.startswith(f"SELECT stream_id, events, last_position FROM {TABLE}"):
            comparing.set()
            release.wait(30)
        return execute(sql, params, many, context)

    def rebuild() -> None:
        with connection.execute_wrapper(hold_the_compare):
            outcome["result"] = projection_rebuild(name=toy.name, verify=True)

    def write() -> None:
        try:
            assert comparing.wait(30), "the rebuild never reached its compare"
            started = time.monotonic()
            [stored] = event_append(
                stream_id=new_stream(), expected_version=0, events=[counted()], metadata=META
            )
            outcome["seconds"] = time.monotonic() - started
            outcome["position"] = stored.position
            outcome["checkpoint"] = live_checkpoint(toy.name).position
        finally:
            release.set()

    run_threads([rebuild, write])

    # The write answered within a bound far below the wait, with its own event applied.
    assert outcome["seconds"] < 1.0, outcome
    assert outcome["checkpoint"] >= outcome["position"], outcome
    result = outcome["result"]
    assert result.differences == [] and result.swapped
    live = live_checkpoint(toy.name)
    assert live.generation != live_before and live.position >= outcome["position"]
    assert len(toy.count(generation=live.generation)) == len(streams) + 1
    assert [run.result for run in ProjectionRun.objects.filter(projection=toy.name)] == ["ok"]


def test_a_verifying_rebuild_compares_both_generations_at_one_position_and_names_a_difference(toys, quiet):
    toy = toys.tally
    [stream] = _history(1, 3)
    with connection.cursor() as cursor:  # a live row altered by hand
        cursor.execute(f"UPDATE {TABLE} SET events = 99 WHERE projection = %s", [toy.name])

    result = projection_rebuild(name=toy.name, verify=True)

    assert result.differences == [f"toy.tally: row {stream} field 'events': live 99 != rebuilt 3"]
    assert toy.count(generation=live_checkpoint(toy.name).generation) == {stream: 3}
    assert ProjectionRun.objects.get(projection=toy.name).result == ProjectionRun.Result.DIFFERENCES


# ----------------------------------------------------------------------------------------------
# Defect 3: a failure after the swap never touches the live generation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_a_rebuild_interrupted_in_its_cleanup_after_the_swap_keeps_every_live_row(toys, quiet, failure):
    toy = toys.tally
    streams = _history(5, 4)
    old = live_checkpoint(toy.name).generation

    def fail_the_cleanup(execute, sql, params, many, context):
        # The first delete of the old generation's rows: the cleanup after the swap.
        if sql.startswith(f"DELETE FROM {TABLE}") and params[1] == old:
            raise failure("interrupted while deleting the old generation")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_the_cleanup):
        if failure is KeyboardInterrupt:
            with pytest.raises(KeyboardInterrupt):
                projection_rebuild(name=toy.name, verify=True)
        else:  # best effort: logged, the rebuild still succeeds
            assert projection_rebuild(name=toy.name, verify=True).swapped

    live = live_checkpoint(toy.name)
    assert live.generation != old and live.position == Event.objects.latest("position").position
    assert toy.count(generation=live.generation) == dict.fromkeys(streams, 4)
    [run] = ProjectionRun.objects.filter(projection=toy.name)
    assert run.result == ProjectionRun.Result.OK and run.finished_at is not None
    # The old generation is left behind, not live; the cleanup task removes it.
    assert _generations(toy.name) == {old: False, live.generation: True}
    assert projections_cleanup().generations == {toy.name: [old]}
    assert _generations(toy.name) == {live.generation: True}
    assert toy.count(generation=old) == {}
    assert toy.count(generation=live.generation) == dict.fromkeys(streams, 4)


def test_a_rebuild_that_fails_before_the_swap_discards_only_its_own_generation(toys, quiet):
    toy = toys.tally
    streams = _history(2, 2)
    live = live_checkpoint(toy.name).generation

    def fail(label: str) -> None:
        if label == "swap":
            raise RuntimeError("the swap was never reached")

    with pytest.raises(RuntimeError):
        projection_rebuild(name=toy.name, verify=True, on_phase=fail)

    assert _generations(toy.name) == {live: True}
    assert toy.count(generation=live) == dict.fromkeys(streams, 2)
    [run] = ProjectionRun.objects.filter(projection=toy.name)
    assert run.result == ProjectionRun.Result.FAILED and "the swap was never reached" in run.detail


# ----------------------------------------------------------------------------------------------
# Defect 4: one rebuild per projection, and nothing left behind
# ----------------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_a_second_rebuild_while_one_holds_the_lock_does_nothing_and_says_already_running(
    toys_committed, quiet, monkeypatch
):
    monkeypatch.setattr("events.rebuild.LOCK_WAIT_SECONDS", 0.2)
    toy = toys_committed.tally
    _history(2, 2)
    live = live_checkpoint(toy.name)
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def holder() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", [REBUILD_LOCK_CLASS, toy.name])
            holding.set()
            release.wait(10)
            cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", [REBUILD_LOCK_CLASS, toy.name])

    def second() -> None:
        holding.wait(5)
        try:
            try:
                projection_rebuild(name=toy.name)
            except RebuildAlreadyRunning as exc:
                outcome["error"] = exc
            outcome["task"] = projection_rebuild_task.run(toy.name, verify=True)
            outcome["cleanup"] = projections_cleanup()
        finally:
            release.set()

    run_threads([holder, second])

    assert isinstance(outcome.get("error"), RebuildAlreadyRunning), outcome
    assert outcome["task"] == {"name": toy.name, "skipped": f"a rebuild of {toy.name} is already running"}
    assert toy.name in outcome["cleanup"].busy
    assert _generations(toy.name) == {live.generation: True}
    assert not ProjectionRun.objects.filter(projection=toy.name).exists()


@pytest.mark.skipif(
    "connection.vendor == 'postgresql'", reason="SQLite's rebuild lock is the run's heartbeat"
)
def test_on_sqlite_a_rebuild_with_a_fresh_heartbeat_keeps_a_second_one_out(toys, quiet):
    toy = toys.tally
    _history(1, 2)
    ProjectionRun.objects.create(projection=toy.name, heartbeat_at=timezone.now())

    with pytest.raises(RebuildAlreadyRunning):
        projection_rebuild(name=toy.name)
    assert projections_cleanup().busy == [toy.name]
    assert ProjectionRun.objects.get(projection=toy.name).result == ProjectionRun.Result.RUNNING


def test_the_cleanup_removes_a_killed_rebuilds_generation_and_fails_its_run_but_not_the_live_view(
    toys, quiet
):
    toy = toys.tally
    streams = _history(3, 2)
    live = live_checkpoint(toy.name)
    # What a SIGKILLed rebuild leaves: a half-built generation and a run "running" for ever.
    orphan = live.generation + 1
    Checkpoint.objects.create(projection=toy.name, generation=orphan, position=2)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (projection, generation, stream_id, events, last_position)"
            " VALUES (%s, %s, 'half-built', 1, 1)",
            [toy.name, orphan],
        )
    stale = timezone.now() - dt.timedelta(hours=2)
    ProjectionRun.objects.create(projection=toy.name, heartbeat_at=stale)

    cleaned = projections_cleanup()

    assert cleaned.generations == {toy.name: [orphan]} and cleaned.runs_failed == 1
    assert _generations(toy.name) == {live.generation: True}
    assert toy.count(generation=orphan) == {}
    assert toy.count(generation=live.generation) == dict.fromkeys(streams, 2)
    run = ProjectionRun.objects.get(projection=toy.name)
    assert run.result == ProjectionRun.Result.FAILED and "abandoned" in run.detail


def test_a_task_of_a_killed_worker_is_handed_out_again_within_minutes(
    settings,
):
    # Acknowledged when done, put back when the pool process dies; handed out again after
    # the visibility timeout when the whole worker died. A duplicate delivered while the
    # first still runs is stopped by the rebuild lock (the test above).
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert options["visibility_timeout"] <= 600
    assert (
        options["visibility_timeout"]
        + options["unacked_restore_interval"] * options["unacked_restore_throttle"]
        <= 900
    )


@pytest.mark.django_db
def test_the_cleanup_runs_on_beat():
    task = PeriodicTask.objects.get(task="events.tasks.projections_cleanup_task")
    assert task.enabled and task.interval.every * {"seconds": 1, "minutes": 60}[task.interval.period] <= 600


# ----------------------------------------------------------------------------------------------
# Defect 7 (the rebuild's part): no swap over a log that fails verification
# ----------------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_a_rebuild_over_a_tampered_log_refuses_to_swap_records_why_and_the_command_exits_1(toys, quiet):
    toy = toys.tally
    streams = _history(2, 3)
    live = live_checkpoint(toy.name).generation
    with connection.cursor() as cursor:  # a database superuser rewrites an event past the triggers
        cursor.execute("ALTER TABLE events_event DISABLE TRIGGER ALL")
        cursor.execute(
            "UPDATE events_event SET data = %s WHERE position = (SELECT min(position) FROM events_event)",
            ['{"forged": true}'],
        )
        cursor.execute("ALTER TABLE events_event ENABLE TRIGGER ALL")

    result = projection_rebuild(name=toy.name, verify=True)

    assert not result.swapped and "failed verification" in result.problem
    assert _generations(toy.name) == {live: True}
    assert toy.count(generation=live) == dict.fromkeys(streams, 3)
    run = ProjectionRun.objects.get(projection=toy.name)
    assert run.result == ProjectionRun.Result.FAILED and "failed verification" in run.detail

    with pytest.raises(CommandError, match="failed verification") as raised:
        call_command("rebuild_projections", toy.name, "--verify")
    assert raised.value.returncode == 1
    assert _generations(toy.name) == {live: True}
