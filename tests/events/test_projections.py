"""Projections: the views equal a fold of the log, apply exactly once in effect, rebuild online.

`fold` below is written from the event table alone (ARCHITECTURE.md, "Events"), without
the projection code, so that "the view equals the fold" checks the projections against an
independent reading of the same history.
"""

import io
import re
import threading
import time
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError

from agents_app.models import AgentCurrent
from agents_app.projections import BULK_ROWS, CURRENT, REVISIONS
from agents_app.selectors import agent_revisions, agents_current
from agents_app.services import (
    ChangeContext,
    agent_archive,
    agent_create,
    agent_label_move,
    agent_restore,
    agent_revert,
    agent_revise,
)
from events.exceptions import ProjectionFailed, StoreUnavailable
from events.models import Checkpoint, Event, ProjectionRun
from events.projections import projection_get, projection_names
from events.rebuild import projection_rebuild
from events.runner import (
    live_checkpoint,
    projection_catch_up,
    projection_status_list,
    projections_catch_up_all,
)
from events.selectors import events_after, head_position
from events.services import event_append
from events.types import NewEvent
from tests.conftest import agent_text
from tests.threads import run_threads

CONTENT_TYPES = {"agent.created", "agent.revised", "agent.reverted"}
NAME_LINE = re.compile(r"^name:[ \t]*(\S+)[ \t]*$", re.MULTILINE)
TIMEOUT = 60.0


# --- the independent fold --------------------------------------------------------------------------


def fold() -> tuple[dict[uuid.UUID, dict[str, Any]], dict[tuple[uuid.UUID, int], dict[str, Any]]]:
    """(agents, revisions) as the stored events say they should be, from scratch."""
    agents: dict[uuid.UUID, dict[str, Any]] = {}
    revisions: dict[tuple[uuid.UUID, int], dict[str, Any]] = {}
    for event in Event.objects.order_by("position").values().iterator():
        stream, data, metadata = event["stream_id"], event["data"], event["metadata"]
        if event["type"] in CONTENT_TYPES:
            agent = agents.setdefault(stream, {"status": "active", "labels": {}})
            # The test documents put `name:` on a line of its own; this is all the parsing needed.
            agent["name"] = NAME_LINE.search(data["content"]).group(1)
            agent["revision"] = data["revision"]
            agent["content"] = data["content"]
            revisions[(stream, data["revision"])] = {
                "content": data["content"],
                "actor": metadata["actor"],
                "reason": metadata["reason"],
            }
        elif event["type"] == "agent.archived":
            agents[stream]["status"] = "archived"
        elif event["type"] == "agent.restored":
            agents[stream]["status"] = "active"
        elif event["type"] == "agent.label_moved":
            if data["revision"] is None:
                agents[stream]["labels"].pop(data["label"])
            else:
                agents[stream]["labels"][data["label"]] = data["revision"]
        agents[stream]["stream_version"] = event["stream_version"]
    return agents, revisions


def assert_views_equal_fold() -> None:
    agents, revisions = fold()
    current = {
        row.pop("agent_id"): row
        for row in agents_current().values(
            "agent_id", "name", "status", "revision", "content", "labels", "stream_version"
        )
    }
    revision_rows = {
        (row.pop("agent_id"), row.pop("revision")): row
        for row in agent_revisions().values("agent_id", "revision", "content", "actor", "reason")
    }
    assert current == agents
    assert revision_rows == revisions


# --- a scripted history --------------------------------------------------------------------------------


def ctx(actor: str, reason: str) -> ChangeContext:
    return ChangeContext(actor=actor, source="cli", reason=reason)


def script_history() -> dict[str, uuid.UUID]:
    """Five agents through every kind of change: revise, rename, revert, archive, restore, labels."""
    reviewer = agent_create(content=agent_text("reviewer"), context=ctx("alice", "first draft")).agent_id
    agent_revise(
        agent_id=reviewer,
        content=agent_text("reviewer", body="Review carefully.\nCheck the tests.\n"),
        context=ctx("bob", "ask for tests"),
    )
    agent_revise(
        agent_id=reviewer,
        content=agent_text(
            "reviewer", description="Reviews Python", body="Review carefully.\nCheck the tests.\n"
        ),
        context=ctx("alice", "narrow the scope"),
    )
    agent_label_move(agent_id=reviewer, label="production", revision=2, context=ctx("carol", "ship r2"))
    agent_label_move(agent_id=reviewer, label="staging", revision=3, context=ctx("carol", "try r3"))
    agent_revise(
        agent_id=reviewer,
        content=agent_text("code-reviewer", description="Reviews Python", extra="model: opus\n"),
        context=ctx("carol", "rename"),
    )
    agent_label_move(agent_id=reviewer, label="production", revision=4, context=ctx("carol", "ship r4"))
    agent_label_move(agent_id=reviewer, label="staging", revision=None, context=ctx("carol", "drop staging"))

    planner = agent_create(
        content=agent_text("planner", description="Plans work"), context=ctx("bob", "new")
    ).agent_id
    agent_revise(
        agent_id=planner,
        content=agent_text("planner", description="Plans work", extra="tools: Read, Grep\n"),
        context=ctx("bob", "give it tools"),
    )
    agent_revert(agent_id=planner, to_revision=1, context=ctx("alice", "tools were a mistake"))
    agent_archive(agent_id=planner, context=ctx("alice", "pause"))
    agent_restore(agent_id=planner, context=ctx("bob", "resume"))
    agent_revise(
        agent_id=planner,
        content=agent_text("planner", description="Plans work", body="Plan in small steps.\n"),
        context=ctx("bob", "smaller steps"),
    )
    agent_label_move(agent_id=planner, label="production", revision=3, context=ctx("bob", "ship"))

    scratch = agent_create(content=agent_text("scratch"), context=ctx("dave", "try")).agent_id
    agent_archive(agent_id=scratch, context=ctx("dave", "not needed"))

    writer = agent_create(
        content=agent_text("writer", description="Writes docs"), context=ctx("erin", "new")
    ).agent_id
    agent_revise(
        agent_id=writer,
        content=agent_text("writer", description="Writes docs", body="Short sentences.\n"),
        context=ctx("erin", "style"),
    )
    agent_label_move(agent_id=writer, label="staging", revision=1, context=ctx("erin", "try r1"))
    agent_archive(agent_id=writer, context=ctx("erin", "replaced"))
    # The archived writer's name is free again: a new agent takes it.
    new_writer = agent_create(
        content=agent_text("writer", description="Writes better docs"), context=ctx("frank", "replacement")
    ).agent_id
    agent_revise(
        agent_id=new_writer,
        content=agent_text("writer", description="Writes better docs", body="Plain words.\n"),
        context=ctx("frank", "tone"),
    )
    return {
        "reviewer": reviewer,
        "planner": planner,
        "scratch": scratch,
        "writer": writer,
        "new_writer": new_writer,
    }


class _NoBroker:
    @staticmethod
    def delay(*args, **kwargs) -> None:
        return None


@pytest.fixture
def catch_up_off(settings, monkeypatch):
    """Appends neither queue a catch-up nor wait for one (the broker is down, read-your-writes off)."""
    settings.PROJECTION_READ_YOUR_WRITES = False
    monkeypatch.setattr("events.tasks.projections_catch_up", _NoBroker())


def live_generation(name: str) -> int:
    return Checkpoint.objects.get(projection=name, is_live=True).generation


# --- projection equals fold ------------------------------------------------------------------------


@pytest.mark.django_db
def test_views_equal_an_independent_fold_of_the_log_after_catch_up_and_after_a_rebuild(catch_up_off):
    ids = script_history()
    projections_catch_up_all()

    assert_views_equal_fold()
    agents, _ = fold()
    assert agents[ids["reviewer"]]["name"] == "code-reviewer"  # the history really has what it claims
    assert agents[ids["reviewer"]]["labels"] == {"production": 4}
    assert agents[ids["planner"]]["revision"] == 4
    assert agents[ids["writer"]]["status"] == agents[ids["scratch"]]["status"] == "archived"

    generations = {name: live_generation(name) for name in projection_names()}
    out = io.StringIO()
    call_command("rebuild_projections", stdout=out)

    assert_views_equal_fold()
    events = Event.objects.count()
    assert [line.split(" events in ")[0] for line in out.getvalue().splitlines()] == [
        f"{CURRENT}: {events}",
        f"{REVISIONS}: {events}",
    ]
    assert all(live_generation(name) > generations[name] for name in projection_names())
    assert not Checkpoint.objects.filter(is_live=False).exists()  # the old generations are gone


# --- idempotence and exactly-once in effect ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", [CURRENT, REVISIONS])
def test_applying_the_same_events_twice_changes_nothing(catch_up_off, name):
    script_history()
    projection = projection_get(name)
    handled = [
        event for batch in events_after(position=0) for event in batch if event.type in projection.event_types
    ]
    once, overlapped = 901, 902
    if name == REVISIONS:  # the whole history is a batch that goes in by COPY (on PostgreSQL)
        assert len(handled) >= BULK_ROWS > len(handled) // 2

    projection.apply(handled, generation=once)
    rows_once = list(projection.rows(generation=once))
    projection.apply(handled, generation=once)
    projection.apply(handled[: len(handled) // 2], generation=overlapped)
    projection.apply(handled, generation=overlapped)

    assert rows_once
    assert list(projection.rows(generation=once)) == rows_once
    assert list(projection.rows(generation=overlapped)) == rows_once


@pytest.mark.django_db
def test_a_crash_between_the_rows_and_the_checkpoint_loses_and_doubles_nothing(catch_up_off, monkeypatch):
    script_history()
    projections_catch_up_all()
    reviewer = agents_current().get(name="code-reviewer").agent_id
    agent_revise(
        agent_id=reviewer,
        content=agent_text("code-reviewer", body="After the crash.\n"),
        context=ctx("a", "r5"),
    )
    agent_label_move(agent_id=reviewer, label="canary", revision=5, context=ctx("a", "canary"))
    checkpoints_before = {name: live_checkpoint(name).position for name in projection_names()}
    real_save = Checkpoint.save

    def crash_on_checkpoint_save(self, *args, **kwargs):
        if "position" in (kwargs.get("update_fields") or ()):
            raise RuntimeError("worker killed after applying rows, before saving the checkpoint")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Checkpoint, "save", crash_on_checkpoint_save)
    for name in projection_names():
        with pytest.raises(ProjectionFailed, match="worker killed"):
            projection_catch_up(name=name)

    # The batch's transaction rolled back: neither the rows nor the checkpoint moved.
    assert {name: live_checkpoint(name).position for name in projection_names()} == checkpoints_before
    assert agents_current().get(agent_id=reviewer).revision == 4
    assert not agent_revisions().filter(agent_id=reviewer, revision=5).exists()

    monkeypatch.setattr(Checkpoint, "save", real_save)
    projections_catch_up_all()

    assert_views_equal_fold()
    assert agents_current().get(agent_id=reviewer).labels == {"canary": 5, "production": 4}
    assert agent_revisions().filter(agent_id=reviewer).count() == 5
    assert {name: live_checkpoint(name).position for name in projection_names()} == dict.fromkeys(
        projection_names(), head_position()
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runners_at_once_on_one_projection_one_applies_and_the_other_returns_none(
    catch_up_off, monkeypatch
):
    script_history()
    live_checkpoint(CURRENT)
    projection = projection_get(CURRENT)
    real_apply = projection.apply
    first_runner_inside = threading.Event()
    second_runner_done = threading.Event()

    def apply_slowly(events, *, generation):
        # Hold the checkpoint row lock until the other runner has tried and given up.
        first_runner_inside.set()
        second_runner_done.wait(timeout=TIMEOUT)
        real_apply(events, generation=generation)

    monkeypatch.setattr(projection, "apply", apply_slowly)

    def first_runner():
        return projection_catch_up(name=CURRENT)

    def second_runner():
        try:
            assert first_runner_inside.wait(timeout=TIMEOUT)
            return projection_catch_up(name=CURRENT)
        finally:
            second_runner_done.set()

    first, second = run_threads([first_runner, second_runner])

    assert first == Event.objects.count()
    assert second is None
    assert live_checkpoint(CURRENT).position == head_position()
    projection_catch_up(name=REVISIONS)
    assert_views_equal_fold()


# --- rebuild --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rebuild_with_verify_names_a_row_altered_by_hand_and_exits_1(catch_up_off):
    ids = script_history()
    projections_catch_up_all()
    AgentCurrent.objects.filter(generation=live_generation(CURRENT), agent_id=ids["planner"]).update(
        description="edited by hand"
    )
    out = io.StringIO()

    with pytest.raises(CommandError) as failure:
        call_command("rebuild_projections", CURRENT, "--verify", stdout=out)

    assert failure.value.returncode == 1
    assert "1 difference between" in str(failure.value)
    assert (
        f"row ('{ids['planner']}',) field 'description': live 'edited by hand' != rebuilt 'Plans work'"
        in (out.getvalue())
    )
    assert ProjectionRun.objects.get(projection=CURRENT).result == ProjectionRun.Result.DIFFERENCES
    # The rebuilt view, derived from the log, replaced the altered one.
    assert agents_current().get(agent_id=ids["planner"]).description == "Plans work"


@pytest.mark.django_db
def test_rebuild_with_verify_of_untouched_views_reports_no_difference(catch_up_off):
    script_history()
    projections_catch_up_all()
    out = io.StringIO()

    call_command("rebuild_projections", "--verify", "--batch-size", "7", stdout=out)

    assert out.getvalue().count(", 0 differences") == len(projection_names())
    assert set(ProjectionRun.objects.values_list("result", flat=True)) == {ProjectionRun.Result.OK}
    assert_views_equal_fold()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["agents.current", "agents.nope"], "no projection named 'agents.nope'; known: agents.current"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_rebuild_with_bad_arguments_exits_2_and_rebuilds_nothing(arguments, message):
    with pytest.raises(CommandError, match=re.escape(message)) as failure:
        call_command("rebuild_projections", *arguments, stdout=io.StringIO())

    assert failure.value.returncode == 2
    assert not ProjectionRun.objects.exists()


BULK_AGENTS = 50
BULK_REVISIONS = 100


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rebuild_keeps_serving_reads_and_includes_a_write_made_during_it(catch_up_off):
    agent_ids = [uuid.uuid4() for _ in range(BULK_AGENTS)]
    for number, agent_id in enumerate(agent_ids):
        name = f"bulk-{number:02d}"
        event_append(
            stream_id=agent_id,
            expected_version=0,
            events=[
                NewEvent("agent.created", {"content": agent_text(name, body="Revision 1\n"), "revision": 1})
            ]
            + [
                NewEvent(
                    "agent.revised", {"content": agent_text(name, body=f"Revision {r}\n"), "revision": r}
                )
                for r in range(2, BULK_REVISIONS + 1)
            ],
            metadata={"actor": "bulk", "source": "import", "reason": ""},
        )
    projection_catch_up(name=CURRENT)
    old_generation = live_generation(CURRENT)

    stop = threading.Event()
    reads: list[int] = []  # agents missing from each read

    def reader() -> None:
        expected = set(agent_ids)
        while not stop.is_set():
            reads.append(len(expected - set(agents_current().values_list("agent_id", flat=True))))

    mid_rebuild: dict[str, Any] = {}

    def progress(count: int, head: int) -> None:
        if not mid_rebuild:
            mid_rebuild["created"] = agent_create(
                content=agent_text("mid-rebuild"), context=ctx("zoe", "new")
            )
            mid_rebuild["revised"] = agent_revise(
                agent_id=agent_ids[0],
                content=agent_text("bulk-00", body="Changed mid-rebuild\n"),
                context=ctx("zoe", "r"),
            )

    def rebuild():
        try:
            return projection_rebuild(name=CURRENT, batch_size=500, progress=progress)
        finally:
            stop.set()

    started = time.monotonic()
    result, reader_result = run_threads([rebuild, reader])
    seconds = time.monotonic() - started

    assert not isinstance(result, BaseException), result
    assert reader_result is None, reader_result
    assert result.events == BULK_AGENTS * BULK_REVISIONS + 2
    assert len(reads) > 5, f"the reader should have read throughout the {seconds:.1f}s rebuild"
    assert reads == [0] * len(reads), "some read during the rebuild missed an agent"
    assert live_generation(CURRENT) > old_generation
    rebuilt = {row.agent_id: row for row in agents_current()}
    assert len(rebuilt) == BULK_AGENTS + 1
    assert rebuilt[mid_rebuild["created"].agent_id].name == "mid-rebuild"
    assert rebuilt[agent_ids[0]].revision == BULK_REVISIONS + 1
    assert rebuilt[agent_ids[0]].body == "Changed mid-rebuild\n"
    assert {rebuilt[agent_id].revision for agent_id in agent_ids[1:]} == {BULK_REVISIONS}


# --- status ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_reports_lag_while_catch_up_is_off_and_none_after_catch_up(catch_up_off, context):
    script_history()
    projections_catch_up_all()
    assert {status.lag_events for status in projection_status_list()} == {0}
    agent_create(content=agent_text("late-1"), context=context)
    agent_create(content=agent_text("late-2"), context=context)

    behind = projection_status_list()

    assert [status.name for status in behind] == projection_names()
    assert {status.lag_events for status in behind} == {2}
    assert all(status.checkpoint < status.head == head_position() for status in behind)
    assert all(status.lag_seconds >= 0 for status in behind)

    projections_catch_up_all()
    caught_up = projection_status_list()

    assert {status.lag_events for status in caught_up} == {0}
    assert {status.lag_seconds for status in caught_up} == {0.0}
    assert all(status.checkpoint == status.head for status in caught_up)


# --- read-your-writes inside the append ------------------------------------------------------------


@pytest.mark.django_db
def test_a_write_applies_itself_to_every_live_view_in_its_own_transaction_and_queues_nothing(
    django_capture_on_commit_callbacks, context, monkeypatch
):
    queued: list[str] = []
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: queued.append("catch-up"))
    with django_capture_on_commit_callbacks(execute=True):
        agent_id = agent_create(content=agent_text("inline"), context=context).agent_id  # checkpoints made
    queued.clear()  # the very first write finds no checkpoint to move, and leaves the views to others
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        change = agent_revise(agent_id=agent_id, content=agent_text("inline", body="Two.\n"), context=context)
        # Before COMMIT and before any hook: the rows and the checkpoints moved with the event.
        assert {c.projection: c.position for c in Checkpoint.objects.filter(is_live=True)} == {
            CURRENT: change.position,
            REVISIONS: change.position,
        }
        assert agents_current().get(agent_id=agent_id).revision == 2
        assert agent_revisions().filter(agent_id=agent_id).count() == 2
    for callback in callbacks:
        callback()
    assert queued == []  # a catch-up would have found nothing to apply


@pytest.mark.django_db
def test_a_write_behind_a_lagging_view_brings_it_up_after_commit_and_queues_a_catch_up(
    django_capture_on_commit_callbacks, context, settings, monkeypatch
):
    queued: list[str] = []
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: queued.append("catch-up"))
    with django_capture_on_commit_callbacks(execute=True):
        agent_id = agent_create(content=agent_text("behind"), context=context).agent_id
    settings.PROJECTION_READ_YOUR_WRITES = False
    with django_capture_on_commit_callbacks(execute=True):  # a bulk import: left to the workers
        agent_revise(agent_id=agent_id, content=agent_text("behind", body="Imported.\n"), context=context)
    assert agents_current().get(agent_id=agent_id).revision == 1
    settings.PROJECTION_READ_YOUR_WRITES = True
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        change = agent_revise(
            agent_id=agent_id, content=agent_text("behind", body="Mine.\n"), context=context
        )
        # The views had not applied everything before this event: the append leaves them be.
        assert agents_current().get(agent_id=agent_id).revision == 1
    queued.clear()
    for callback in callbacks:
        callback()
    assert queued == ["catch-up"]
    assert agents_current().get(agent_id=agent_id).revision == 3
    assert live_checkpoint(CURRENT).position == live_checkpoint(REVISIONS).position == change.position


@pytest.mark.django_db
def test_a_view_that_fails_on_a_write_does_not_fail_the_write_is_left_behind_and_the_other_view_applies_it(
    django_capture_on_commit_callbacks, context, monkeypatch, caplog
):
    with django_capture_on_commit_callbacks(execute=True):
        agent_id = agent_create(content=agent_text("fragile"), context=context).agent_id
    before = live_checkpoint(REVISIONS).position

    def broken(self, events, *, generation):
        AgentCurrent.objects.filter(generation=generation).update(description="half-applied")
        raise RuntimeError("a bug in a projection")

    monkeypatch.setattr(type(projection_get(REVISIONS)), "apply", broken)
    monkeypatch.setattr("events.runner.projections_wait", lambda **kwargs: False)
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: None)
    with django_capture_on_commit_callbacks(execute=True):
        change = agent_revise(
            agent_id=agent_id, content=agent_text("fragile", body="Two.\n"), context=context
        )

    # The event is stored; the broken view was rolled back to its savepoint (nothing
    # half-applied) and records the failing event; the other view applied it.
    assert [e.stream_version for e in Event.objects.filter(stream_id=agent_id)] == [1, 2]
    assert change.stream_version == 2
    failed = live_checkpoint(REVISIONS)
    assert failed.position == before
    assert failed.failed_position == before + 1 and "a bug in a projection" in failed.failed_error
    assert live_checkpoint(CURRENT).position == before + 1
    assert agents_current().get(agent_id=agent_id).revision == 2
    assert not agents_current().filter(description="half-applied").exists()
    assert "projections failed on events" in caplog.text and "a bug in a projection" in caplog.text


def _behind(django_capture_on_commit_callbacks, context, settings, monkeypatch, name: str) -> uuid.UUID:
    """An agent whose views lag one event behind the log (a write with read-your-writes off,
    its catch-up never run)."""
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: None)
    with django_capture_on_commit_callbacks(execute=True):
        agent_id = agent_create(content=agent_text(name), context=context).agent_id
    settings.PROJECTION_READ_YOUR_WRITES = False
    with django_capture_on_commit_callbacks(execute=True):
        agent_revise(agent_id=agent_id, content=agent_text(name, body="Imported.\n"), context=context)
    settings.PROJECTION_READ_YOUR_WRITES = True
    return agent_id


@pytest.mark.django_db
def test_a_connection_lost_while_a_write_waits_for_the_views_reaches_the_writer(
    django_capture_on_commit_callbacks, context, settings, monkeypatch
):
    agent_id = _behind(django_capture_on_commit_callbacks, context, settings, monkeypatch, "lost")

    def lost(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("events.runner.projections_wait", lost)
    with pytest.raises(StoreUnavailable), django_capture_on_commit_callbacks(execute=True):
        agent_revise(agent_id=agent_id, content=agent_text("lost", body="Mine.\n"), context=context)

    # Told it failed, as the store's own error, not an ORM one (the API makes it a 503), yet
    # the event is stored: a retry with If-Match gets a 412.
    assert [e.stream_version for e in Event.objects.filter(stream_id=agent_id)] == [1, 2, 3]


@pytest.mark.django_db
def test_a_projection_error_while_a_write_waits_for_the_views_is_logged_and_the_write_returns(
    django_capture_on_commit_callbacks, context, settings, monkeypatch, caplog
):
    agent_id = _behind(django_capture_on_commit_callbacks, context, settings, monkeypatch, "buggy")

    def buggy(**kwargs):
        raise RuntimeError("a bug in a projection")

    monkeypatch.setattr("events.runner.projections_wait", buggy)
    with django_capture_on_commit_callbacks(execute=True):
        change = agent_revise(agent_id=agent_id, content=agent_text("buggy", body="Mine.\n"), context=context)

    assert change.stream_version == 3
    assert (
        "the views could not be brought up to position" in caplog.text
        and "a bug in a projection" in caplog.text
    )
