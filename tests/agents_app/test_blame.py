"""Blame of body lines and frontmatter keys (API.md, `GET /agents/{name}/blame/`)."""

import datetime as dt
import importlib
import random
import uuid
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_app.blame import BlameRevision, blame
from agents_app.models import AgentRevision
from agents_app.projections import REVISIONS
from agents_app.selectors import (
    agent_get,
    agent_revisions,
    revision_attributions,
    revision_blame,
    revision_list,
)
from agents_app.services import ChangeContext, agent_create, agent_revise
from events.models import Checkpoint
from events.rebuild import projection_rebuild
from events.timefmt import iso, iso_from_json
from tests.conftest import agent_text

START = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def history(*steps: tuple[dict, str]) -> list[BlameRevision]:
    """Revisions 1..n by actor-1..actor-n, an hour apart, from (frontmatter, body) pairs."""
    return [
        BlameRevision(
            revision=number,
            actor=f"actor-{number}",
            recorded_at=START + dt.timedelta(hours=number),
            reason=f"reason {number}",
            frontmatter=frontmatter,
            body=body,
        )
        for number, (frontmatter, body) in enumerate(steps, start=1)
    ]


def who(number: int) -> dict:
    return {
        "revision": number,
        "actor": f"actor-{number}",
        # without a business time of its own a revision occurred when it was recorded
        "occurred_at": iso(START + dt.timedelta(hours=number)),
        "recorded_at": iso(START + dt.timedelta(hours=number)),
        "reason": f"reason {number}",
    }


def line_revisions(result: dict) -> list[tuple[str, int]]:
    return [(line["text"], line["revision"]) for line in result["lines"]]


def key_revisions(result: dict) -> list[tuple[str, int]]:
    return [(key["key"], key["revision"]) for key in result["frontmatter"]]


BASE = {"name": "reviewer", "description": "Reviews code"}


def test_lines_and_keys_are_blamed_on_the_revision_that_last_changed_them():
    revisions = history(
        (BASE, "You review code.\nBe kind.\n"),
        (BASE, "You review code.\nCheck the tests.\nBe kind.\n"),
        ({**BASE, "model": "sonnet"}, "You review code.\nCheck the tests first.\nBe kind.\n"),
        ({**BASE, "model": "opus"}, "You review code.\nCheck the tests first.\nBe kind.\n"),
    )

    result = blame(revisions)

    assert result == {
        "revision": 4,
        "lines": [
            {"line": 1, "text": "You review code.", **who(1)},
            {"line": 2, "text": "Check the tests first.", **who(3)},
            {"line": 3, "text": "Be kind.", **who(1)},
        ],
        "frontmatter": [
            {"key": "name", **who(1)},
            {"key": "description", **who(1)},
            {"key": "model", **who(4)},
        ],
    }


def test_a_line_deleted_and_written_again_is_blamed_on_the_revision_that_wrote_it_back():
    revisions = history(
        (BASE, "one\ntwo\nthree\n"),
        (BASE, "one\nthree\n"),
        (BASE, "one\ntwo\nthree\n"),
    )

    assert line_revisions(blame(revisions)) == [("one", 1), ("two", 3), ("three", 1)]


def test_a_revert_is_blamed_for_the_lines_it_changes_back_and_nothing_else():
    revisions = history(
        (BASE, "a\nb\nc\n"),
        (BASE, "a\nB\nc\n"),
        (BASE, "a\nb\nc\n"),
    )

    assert line_revisions(blame(revisions)) == [("a", 1), ("b", 3), ("c", 1)]


def test_an_empty_body_has_no_lines_but_its_keys_are_still_blamed():
    revisions = history((BASE, "Something.\n"), ({**BASE, "color": "red"}, ""))

    result = blame(revisions)

    assert result["lines"] == []
    assert key_revisions(result) == [("name", 1), ("description", 1), ("color", 2)]


def test_lines_moved_below_an_insertion_keep_their_origin():
    revisions = history(
        (BASE, "\n".join(f"line {n}" for n in range(1, 6))),
        (BASE, "new top\n" + "\n".join(f"line {n}" for n in range(1, 6)) + "\nnew bottom"),
    )

    assert line_revisions(blame(revisions)) == [
        ("new top", 2),
        *[(f"line {n}", 1) for n in range(1, 6)],
        ("new bottom", 2),
    ]


def test_crlf_bodies_are_blamed_per_line_without_the_line_endings():
    revisions = history((BASE, "a\r\nb\r\n"), (BASE, "a\r\nc\r\n"))

    assert line_revisions(blame(revisions)) == [("a", 1), ("c", 2)]


def test_a_key_removed_and_added_back_with_the_same_value_is_blamed_on_the_revision_that_added_it_back():
    revisions = history(
        ({**BASE, "model": "sonnet"}, ""),
        (BASE, ""),
        ({**BASE, "model": "sonnet"}, ""),
        ({**BASE, "model": "sonnet", "color": "red"}, ""),
    )

    assert key_revisions(blame(revisions)) == [
        ("name", 1),
        ("description", 1),
        ("model", 3),
        ("color", 4),
    ]


def test_keys_follow_the_order_of_the_blamed_revision_and_type_changes_count_as_changes():
    revisions = history(
        ({"maxTurns": 1, **BASE, "hooks": {"a": 1, "b": 2}}, ""),
        ({**BASE, "hooks": {"b": 2, "a": 1}, "maxTurns": True}, ""),
    )

    assert key_revisions(blame(revisions)) == [
        ("name", 1),
        ("description", 1),
        ("hooks", 1),
        ("maxTurns", 2),
    ]


def test_a_revision_row_is_turned_into_a_blame_revision():
    row = SimpleNamespace(
        revision=7,
        actor="alice",
        recorded_at=START,
        reason="",
        frontmatter={"name": "reviewer"},
        body="x\n",
        content="---\nname: reviewer\n---\nx\n",
    )

    assert BlameRevision.from_revision(row) == BlameRevision(
        7, "alice", START, "", {"name": "reviewer"}, "x\n", "---\nname: reviewer\n---\nx\n"
    )


def test_frontmatter_keys_come_in_the_files_order_whatever_order_the_dict_has():
    content = "---\nname: r\nmodel: opus\ndescription: d\n---\n"
    revision = BlameRevision(
        1, "a", START, "", {"description": "d", "model": "opus", "name": "r"}, "", content
    )

    assert [entry["key"] for entry in blame([revision])["frontmatter"]] == ["name", "model", "description"]


def test_a_long_history_is_blamed_line_by_line():
    body = [f"line {n}" for n in range(100)]
    steps = []
    for number in range(1, 1001):
        body[number % 100] = f"line {number % 100} edited in {number}"
        steps.append(({**BASE, "maxTurns": number // 10}, "\n".join(body)))

    result = blame(history(*steps))

    assert result["revision"] == 1000
    assert [line["revision"] for line in result["lines"]] == [900 + n if n else 1000 for n in range(100)]
    assert key_revisions(result)[-1] == ("maxTurns", 1000)


def test_blame_needs_a_revision():
    with pytest.raises(ValueError, match="at least one revision"):
        blame([])


# ---------------------------------------------------------------------------------------
# Stored origins: blame reads one revision, whatever the length of the history
# ---------------------------------------------------------------------------------------

CONTEXT = ChangeContext(actor="alice", source="cli", reason="blame test")


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Call a write service, then run what it queued for after COMMIT (the projection catch-up)."""

    def run(service, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return service(**kwargs)

    return run


def edited_history(commit, revisions: int, *, seed: int = 7) -> uuid.UUID:
    """An agent whose revisions insert, delete, rewrite and restore lines and keys at random."""
    shuffle = random.Random(seed)
    lines = [f"line {n}" for n in range(12)]
    extra: dict[str, str] = {}
    agent_id = None
    for number in range(1, revisions + 1):
        if number > 1:
            edit = shuffle.choice(["insert", "delete", "rewrite", "restore", "key", "unkey"])
            at = shuffle.randrange(len(lines) + 1)
            if edit == "insert" or not lines:
                lines.insert(at, f"new in {number}")
            elif edit == "delete":
                del lines[min(at, len(lines) - 1)]
            elif edit == "rewrite":
                lines[min(at, len(lines) - 1)] = f"rewritten in {number}"
            elif edit == "restore":
                lines.insert(at, "line 3")  # a line that was there before comes back
            elif edit == "key":
                extra[shuffle.choice(["model", "color", "effort"])] = shuffle.choice(["opus", "red", "high"])
            else:
                extra.pop(shuffle.choice(["model", "color", "effort"]), None)
        keys = "".join(f"{key}: {value}\n" for key, value in extra.items())
        body = "".join(f"{line}\n" for line in lines) + f"rev {number}\n"
        content = agent_text("blamed", extra=keys, body=body)
        if agent_id is None:
            agent_id = commit(agent_create, content=content, context=CONTEXT).agent_id
        else:
            commit(agent_revise, agent_id=agent_id, content=content, context=CONTEXT)
    return agent_id


@pytest.mark.django_db
def test_blame_from_the_stored_origins_equals_replaying_the_whole_history(commit):
    agent_id = edited_history(commit, 40)
    agent = agent_get(agent_id=agent_id)
    rows = list(revision_list(agent_id=agent_id))

    for number in (1, 2, 17, 39, 40):
        replayed = blame([BlameRevision.from_revision(row) for row in rows[:number]])
        assert revision_blame(agent=agent, ref=str(number)) == replayed


@pytest.mark.django_db
def test_blame_reads_one_revision_row_and_the_attributions_it_names_whatever_the_history(commit, monkeypatch):
    agent_id = edited_history(commit, 60)
    agent = agent_get(agent_id=agent_id)
    loaded: list[int] = []
    from_db = AgentRevision.from_db.__func__

    def counting(cls, db, field_names, values):
        row = from_db(cls, db, field_names, values)
        loaded.append(row.revision)
        return row

    monkeypatch.setattr(AgentRevision, "from_db", classmethod(counting))

    def blamed(ref: str) -> tuple[int, list[int]]:
        loaded.clear()
        with CaptureQueriesContext(connection) as queries:
            result = revision_blame(agent=agent, ref=ref)
        assert result["revision"] == int(ref)
        return len(queries), list(loaded)

    early, late = blamed("5"), blamed("60")

    assert early == (2, [5]) and late == (2, [60])  # the row, then the attribution columns


@pytest.mark.django_db
def test_a_rebuild_recomputes_the_same_origins_and_verify_notices_altered_ones(commit):
    agent_id = edited_history(commit, 25)
    stored = list(agent_revisions().order_by("revision").values_list("line_origins", "key_origins"))
    live = Checkpoint.objects.get(projection=REVISIONS, is_live=True).generation
    AgentRevision.objects.filter(generation=live, agent_id=agent_id, revision=25).update(line_origins=[1, 1])

    result = projection_rebuild(name=REVISIONS, verify=True)

    assert len(result.differences) == 1 and "'line_origins'" in result.differences[0]
    assert list(agent_revisions().order_by("revision").values_list("line_origins", "key_origins")) == stored


@pytest.mark.django_db
def test_the_migration_fills_the_origins_of_existing_rows_as_the_projection_does(commit):
    edited_history(commit, 30, seed=11)
    edited_history_name_two = agent_text("other", body="x\ny\n")
    commit(agent_create, content=edited_history_name_two, context=CONTEXT)
    stored = list(AgentRevision.objects.order_by("id").values_list("line_origins", "key_origins"))
    AgentRevision.objects.update(line_origins=None, key_origins=None)
    migration = importlib.import_module("agents_app.migrations.0005_blame_origins_on_revisions")

    migration.fill_origins(django_apps, None)

    assert list(AgentRevision.objects.order_by("id").values_list("line_origins", "key_origins")) == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    "occurred_at",
    [
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 2, 3, 4, 5, 120, tzinfo=dt.UTC),
        dt.datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ],
)
def test_blame_writes_each_instant_as_the_api_does_whole_seconds_and_fractions_alike(commit, occurred_at):
    context = ChangeContext(actor="alice", source="cli", reason="then", occurred_at=occurred_at)
    agent_id = commit(
        agent_create, content=agent_text("instants", body="one\ntwo\n"), context=context
    ).agent_id
    row = agent_revisions().get(agent_id=agent_id, revision=1)

    blamed = revision_blame(agent=agent_get(agent_id=agent_id), ref="1")

    expected = (iso(occurred_at), iso(row.recorded_at))
    assert {(line["occurred_at"], line["recorded_at"]) for line in blamed["lines"]} == {expected}
    assert {(key["occurred_at"], key["recorded_at"]) for key in blamed["frontmatter"]} == {expected}


@pytest.mark.django_db
def test_blame_instants_do_not_depend_on_the_sessions_datestyle_or_time_zone(commit):
    """PostgreSQL writes the attributions' instants (selectors.ATTRIBUTIONS); a session set to
    another DateStyle or zone must not change what the API says."""
    if connection.vendor != "postgresql":
        pytest.skip("DateStyle and the session time zone are PostgreSQL's")
    occurred_at = dt.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=dt.UTC)
    context = ChangeContext(actor="alice", source="cli", reason="then", occurred_at=occurred_at)
    agent_id = commit(agent_create, content=agent_text("zones", body="one\n"), context=context).agent_id
    expected = revision_attributions(agent_id=agent_id, revisions=[1])
    with connection.cursor() as cursor:
        cursor.execute("SET DateStyle = 'SQL, DMY'")
        cursor.execute("SET TIME ZONE 'America/New_York'")
    try:
        # Only this read: psycopg itself cannot load a timestamptz written in DateStyle SQL.
        attributions = revision_attributions(agent_id=agent_id, revisions=[1])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET DateStyle")
            cursor.execute("SET TIME ZONE 'UTC'")

    assert attributions == expected
    assert attributions[1]["occurred_at"] == "2026-03-04T05:06:07.890000Z"
    recorded_at = agent_revisions().get(agent_id=agent_id, revision=1).recorded_at
    assert attributions[1]["recorded_at"] == iso(recorded_at)


@pytest.mark.parametrize(
    "instant",
    [
        dt.datetime(2026, 1, 2, 3, 4, 5),
        dt.datetime(2026, 1, 2, 3, 4, 5, 120),
        dt.datetime(2026, 1, 2, 3, 4, 5, 500000),
        dt.datetime(1000, 1, 1, 0, 0, 0, 999999),
    ],
)
def test_an_instant_as_postgresqls_json_writes_it_reads_as_the_api_writes_it(instant):
    # PostgreSQL's JSON drops the fraction's trailing zeros: .000120 is ".00012", .5 is ".5".
    json_text = instant.isoformat().rstrip("0").rstrip(".") if instant.microsecond else instant.isoformat()

    assert iso_from_json(json_text) == iso(instant.replace(tzinfo=dt.UTC))
