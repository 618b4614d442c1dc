"""Commands on agents: the events they append and the views those events produce.

The test transaction never commits, so the read-your-writes catch-up queued with
`transaction.on_commit` would never run; `commit` runs a write and then its on-commit hooks,
as a real COMMIT does, so the selectors see the write just as a client would.
"""

import datetime as dt
import threading
import time
import uuid

import pytest
from django.db import connection, transaction

from agents_app.exceptions import (
    AgentArchived,
    AgentNotFound,
    DocumentInvalid,
    InvalidCommand,
    NameTaken,
    StatusUnchanged,
)
from agents_app.models import AgentNameClaim
from agents_app.selectors import agent_get, revision_get, revision_list
from agents_app.services import (
    ChangeContext,
    agent_archive,
    agent_create,
    agent_label_move,
    agent_restore,
    agent_revert,
    agent_revise,
)
from events.exceptions import ConcurrencyConflict
from events.models import Event
from events.services import event_append
from events.types import NewEvent
from tests.agents_app.test_document import INVALID_DOCUMENTS

pytestmark = pytest.mark.django_db


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Call a write service, then run what it queued for after COMMIT (the projection catch-up)."""

    def run(service, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return service(**kwargs)

    return run


@pytest.fixture
def agent(commit, context, make_agent_text, unique_name):
    """An active agent at revision 1 (stream version 1)."""
    return commit(agent_create, content=make_agent_text(unique_name), context=context)


@pytest.fixture
def revise_body(commit, context, make_agent_text):
    """Store a new revision of `agent` that differs from the fixture's only in its body."""

    def run(agent, body: str):
        text = make_agent_text(agent.name, body=body)
        return commit(agent_revise, agent_id=agent.agent_id, content=text, context=context)

    return run


def stream(agent_id: uuid.UUID) -> list[Event]:
    return list(Event.objects.filter(stream_id=agent_id).order_by("stream_version"))


def stored_state() -> tuple[list[int], list[tuple[str, uuid.UUID]]]:
    """Every event position and every name claim: equal before and after means nothing was stored."""
    positions = list(Event.objects.order_by("position").values_list("position", flat=True))
    claims = sorted(AgentNameClaim.objects.values_list("name", "agent_id"))
    return positions, claims


METADATA = {"actor": "alice", "source": "cli", "reason": "test change"}

# ---------------------------------------------------------------------------------------
# Create, revise, revert
# ---------------------------------------------------------------------------------------


def test_create_appends_agent_created_with_revision_1_and_the_change_metadata(
    commit, context, make_agent_text, unique_name
):
    text = make_agent_text(unique_name, extra="tools: Read, Grep\nmodel: sonnet\n")

    change = commit(agent_create, content=text, context=context)

    [event] = stream(change.agent_id)
    assert (event.type, event.stream_version, event.schema_version) == ("agent.created", 1, 1)
    assert event.data == {"content": text, "revision": 1}
    assert event.metadata == METADATA
    assert (change.name, change.revision, change.stream_version, change.changed) == (unique_name, 1, 1, True)
    assert change.position == event.position

    current = agent_get(name=unique_name)
    assert current.agent_id == change.agent_id
    assert (current.status, current.revision, current.stream_version) == ("active", 1, 1)
    assert current.content == text
    assert current.tools == ["Read", "Grep"]
    assert current.model == "sonnet"
    assert current.labels == {}
    assert current.created_by == current.updated_by == "alice"

    [row] = revision_list(agent_id=change.agent_id)
    assert (row.revision, row.event_type, row.name, row.content) == (1, "agent.created", unique_name, text)
    assert (row.actor, row.source, row.reason) == ("alice", "cli", "test change")
    assert AgentNameClaim.objects.get(name=unique_name).agent_id == change.agent_id


def test_create_records_business_time_and_request_ids_in_the_metadata(commit, make_agent_text, unique_name):
    occurred = dt.datetime(2024, 3, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    context = ChangeContext(
        actor="git:bob",
        source="git",
        reason="import from main",
        occurred_at=occurred,
        request_id="req-1",
        correlation_id="corr-1",
    )

    change = commit(agent_create, content=make_agent_text(unique_name), context=context)

    [event] = stream(change.agent_id)
    assert event.metadata == {
        "actor": "git:bob",
        "source": "git",
        "reason": "import from main",
        "occurred_at": "2024-03-01T10:30:00+00:00",
        "request_id": "req-1",
        "correlation_id": "corr-1",
    }
    assert revision_get(agent_id=change.agent_id, revision=1).occurred_at == occurred


def test_create_keeps_the_exact_bytes_of_a_crlf_file_without_final_newline(commit, context, unique_name):
    raw = f"---\r\nname: {unique_name}\r\ndescription: Explains — SQL\r\n---\r\nBody ✓".encode()

    change = commit(agent_create, content=raw, context=context)

    assert stream(change.agent_id)[0].data["content"].encode() == raw
    assert agent_get(agent_id=change.agent_id).content.encode() == raw
    assert revision_get(agent_id=change.agent_id, revision=1).content.encode() == raw


def test_revise_appends_agent_revised_with_revision_2(commit, context, agent, make_agent_text):
    text = make_agent_text(agent.name, description="Reviews code and tests")
    reviser = ChangeContext(actor="bob", source="api", reason="cover tests too")

    change = commit(agent_revise, agent_id=agent.agent_id, content=text, context=reviser)

    created, revised = stream(agent.agent_id)
    assert (revised.type, revised.stream_version) == ("agent.revised", 2)
    assert revised.data == {"content": text, "revision": 2}
    assert revised.metadata == {"actor": "bob", "source": "api", "reason": "cover tests too"}
    assert created.type == "agent.created"
    assert (change.revision, change.stream_version, change.changed) == (2, 2, True)

    current = agent_get(agent_id=agent.agent_id)
    assert (current.revision, current.stream_version, current.description) == (2, 2, "Reviews code and tests")
    assert (current.created_by, current.updated_by) == ("alice", "bob")
    assert [row.revision for row in revision_list(agent_id=agent.agent_id)] == [1, 2]
    second = revision_get(agent_id=agent.agent_id, revision=2)
    assert (second.event_type, second.content, second.actor, second.source) == (
        "agent.revised",
        text,
        "bob",
        "api",
    )
    assert second.changed_keys == ["description"]
    assert revision_get(agent_id=agent.agent_id, revision=1).content == make_agent_text(agent.name)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the service's own transaction, not a savepoint in the test's
def test_a_revision_takes_the_append_lock_once_and_one_savepoint_for_all_views(
    commit, context, agent, make_agent_text
):
    # Issue 14: event_append joins the transaction in which the service took the lock (no
    # second lock, no savepoint of its own); the inline views share one savepoint.
    statements: list[str] = []

    def record(execute, sql, params, many, execution_context):
        statements.append(sql)
        return execute(sql, params, many, execution_context)

    text = make_agent_text(agent.name, description="Counted")
    with connection.execute_wrapper(record):
        change = commit(agent_revise, agent_id=agent.agent_id, content=text, context=context)

    assert change.changed and agent_get(agent_id=agent.agent_id).description == "Counted"
    assert sum("pg_advisory_xact_lock" in sql for sql in statements) == 1
    # Some round trips carry several statements (the lock with the head and name reads, the
    # checkpoint claim with the savepoint): count the statements, not the round trips.
    each = [statement.strip() for sql in statements for statement in sql.split("; ")]
    assert sum(statement.startswith("SAVEPOINT") for statement in each) == 1
    assert not any("SET LOCAL" in sql or "RELEASE SAVEPOINT" in sql for sql in statements)
    # The stream's head and the name claim are read in the lock's round trip (issue 14).
    (locked,) = [sql for sql in statements if "pg_advisory_xact_lock" in sql]
    assert "events_event" in locked and "agents_app_agentnameclaim" in locked


def test_revising_with_identical_content_stores_nothing(commit, context, agent, make_agent_text):
    before = stored_state()
    same = make_agent_text(agent.name).encode()

    change = commit(agent_revise, agent_id=agent.agent_id, content=same, context=context)

    assert stored_state() == before
    assert (change.changed, change.revision, change.stream_version, change.events) == (False, 1, 1, [])
    assert change.position is None
    assert agent_get(agent_id=agent.agent_id).revision == 1
    assert revision_list(agent_id=agent.agent_id).count() == 1


def test_content_differing_only_in_line_endings_is_a_new_revision(commit, context, agent, make_agent_text):
    crlf = make_agent_text(agent.name).replace("\n", "\r\n")

    change = commit(agent_revise, agent_id=agent.agent_id, content=crlf, context=context)

    assert (change.changed, change.revision) == (True, 2)
    assert stream(agent.agent_id)[-1].data["content"] == crlf


def test_revert_to_1_appends_agent_reverted_with_the_old_content(
    commit, context, agent, revise_body, make_agent_text
):
    first = make_agent_text(agent.name)
    revise_body(agent, "v2\n")

    change = commit(agent_revert, agent_id=agent.agent_id, to_revision=1, context=context)

    reverted = stream(agent.agent_id)[-1]
    assert (reverted.type, reverted.stream_version) == ("agent.reverted", 3)
    assert reverted.data == {"content": first, "revision": 3, "reverted_to": 1}
    assert reverted.metadata == METADATA
    assert (change.revision, change.stream_version, change.changed) == (3, 3, True)
    assert agent_get(agent_id=agent.agent_id).content == first
    row = revision_get(agent_id=agent.agent_id, revision=3)
    assert (row.event_type, row.reverted_to, row.content) == ("agent.reverted", 1, first)


def test_reverting_to_the_current_content_stores_nothing(commit, context, agent):
    before = stored_state()

    change = commit(agent_revert, agent_id=agent.agent_id, to_revision=1, context=context)

    assert change.changed is False
    assert stored_state() == before


@pytest.mark.parametrize("to_revision", [0, 2, -1])
def test_reverting_to_a_revision_that_does_not_exist_stores_nothing(commit, context, agent, to_revision):
    before = stored_state()

    with pytest.raises(AgentNotFound, match=f"no revision {to_revision}"):
        commit(agent_revert, agent_id=agent.agent_id, to_revision=to_revision, context=context)

    assert stored_state() == before


def test_commands_on_an_unknown_agent_are_not_found_and_store_nothing(commit, context, make_agent_text):
    before = stored_state()
    unknown = uuid.uuid4()

    with pytest.raises(AgentNotFound):
        commit(agent_revise, agent_id=unknown, content=make_agent_text(), context=context)
    with pytest.raises(AgentNotFound):
        commit(agent_archive, agent_id=unknown, context=context)

    assert stored_state() == before


def test_creating_with_an_agent_id_already_in_use_is_refused(
    commit, context, agent, make_agent_text, unique_name
):
    before = stored_state()

    with pytest.raises(InvalidCommand, match="already exists"):
        commit(
            agent_create,
            content=make_agent_text(unique_name + "-2"),
            context=context,
            agent_id=agent.agent_id,
        )

    assert stored_state() == before


# ---------------------------------------------------------------------------------------
# Archive and restore
# ---------------------------------------------------------------------------------------


def test_archive_and_restore_append_their_events_and_change_the_status_not_the_revision(commit, agent):
    archiving = ChangeContext(actor="carol", source="admin", reason="replaced by v2 agent")

    archived = commit(agent_archive, agent_id=agent.agent_id, context=archiving)

    event = stream(agent.agent_id)[-1]
    assert (event.type, event.stream_version, event.data) == (
        "agent.archived",
        2,
        {"reason": "replaced by v2 agent"},
    )
    assert event.metadata == {"actor": "carol", "source": "admin", "reason": "replaced by v2 agent"}
    assert (archived.revision, archived.stream_version) == (1, 2)
    current = agent_get(agent_id=agent.agent_id)
    assert (current.status, current.revision, current.stream_version, current.updated_by) == (
        "archived",
        1,
        2,
        "carol",
    )
    assert not AgentNameClaim.objects.filter(agent_id=agent.agent_id).exists()

    restoring = ChangeContext(actor="carol", source="admin", reason="still needed")
    restored = commit(agent_restore, agent_id=agent.agent_id, context=restoring)

    event = stream(agent.agent_id)[-1]
    assert (event.type, event.stream_version, event.data) == ("agent.restored", 3, {"reason": "still needed"})
    assert (restored.revision, restored.stream_version) == (1, 3)
    assert agent_get(agent_id=agent.agent_id).status == "active"
    assert AgentNameClaim.objects.get(agent_id=agent.agent_id).name == agent.name
    assert revision_list(agent_id=agent.agent_id).count() == 1


def test_archiving_twice_is_an_invalid_command_and_stores_nothing(commit, context, agent):
    commit(agent_archive, agent_id=agent.agent_id, context=context)
    before = stored_state()

    with pytest.raises(StatusUnchanged, match="already archived"):
        commit(agent_archive, agent_id=agent.agent_id, context=context)

    assert stored_state() == before


def test_restoring_an_active_agent_is_an_invalid_command_and_stores_nothing(commit, context, agent):
    before = stored_state()

    with pytest.raises(StatusUnchanged, match="already active"):
        commit(agent_restore, agent_id=agent.agent_id, context=context)

    assert stored_state() == before


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(lambda agent, text: {"service": agent_revise, "content": text}, id="revise"),
        pytest.param(lambda agent, text: {"service": agent_revert, "to_revision": 1}, id="revert"),
        pytest.param(
            lambda agent, text: {"service": agent_label_move, "label": "production", "revision": 1},
            id="label",
        ),
    ],
)
def test_changing_an_archived_agent_is_refused_and_stores_nothing(
    commit, context, agent, revise_body, make_agent_text, command
):
    revise_body(agent, "v2\n")
    commit(agent_archive, agent_id=agent.agent_id, context=context)
    before = stored_state()
    kwargs = command(agent, make_agent_text(agent.name, body="v3\n"))

    with pytest.raises(AgentArchived, match="restore it first"):
        commit(kwargs.pop("service"), agent_id=agent.agent_id, context=context, **kwargs)

    assert stored_state() == before
    assert agent_get(agent_id=agent.agent_id).revision == 2


# ---------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------


def test_moving_a_label_appends_label_moved_and_shows_it_on_the_agent(commit, context, agent):
    change = commit(
        agent_label_move, agent_id=agent.agent_id, label="production", revision=1, context=context
    )

    event = stream(agent.agent_id)[-1]
    assert (event.type, event.stream_version) == ("agent.label_moved", 2)
    assert event.data == {"label": "production", "revision": 1}
    assert event.metadata == METADATA
    assert (change.revision, change.stream_version, change.changed) == (1, 2, True)
    assert agent_get(agent_id=agent.agent_id).labels == {"production": 1}


def test_moving_a_label_again_points_it_at_the_new_revision(commit, context, agent, revise_body):
    commit(agent_label_move, agent_id=agent.agent_id, label="production", revision=1, context=context)
    commit(agent_label_move, agent_id=agent.agent_id, label="staging", revision=1, context=context)
    revise_body(agent, "v2\n")

    commit(agent_label_move, agent_id=agent.agent_id, label="production", revision=2, context=context)

    assert [(e.type, e.data.get("label"), e.data["revision"]) for e in stream(agent.agent_id)] == [
        ("agent.created", None, 1),
        ("agent.label_moved", "production", 1),
        ("agent.label_moved", "staging", 1),
        ("agent.revised", None, 2),
        ("agent.label_moved", "production", 2),
    ]
    current = agent_get(agent_id=agent.agent_id)
    assert current.labels == {"production": 2, "staging": 1}
    assert (current.revision, current.stream_version) == (2, 5)


def test_moving_a_label_to_where_it_already_points_stores_nothing(commit, context, agent):
    commit(agent_label_move, agent_id=agent.agent_id, label="production", revision=1, context=context)
    before = stored_state()

    change = commit(
        agent_label_move, agent_id=agent.agent_id, label="production", revision=1, context=context
    )

    assert change.changed is False
    assert stored_state() == before


def test_removing_a_label_appends_label_moved_with_a_null_revision(commit, context, agent):
    commit(agent_label_move, agent_id=agent.agent_id, label="production", revision=1, context=context)
    commit(agent_label_move, agent_id=agent.agent_id, label="staging", revision=1, context=context)

    commit(agent_label_move, agent_id=agent.agent_id, label="production", revision=None, context=context)

    event = stream(agent.agent_id)[-1]
    assert (event.type, event.stream_version, event.data) == (
        "agent.label_moved",
        4,
        {"label": "production", "revision": None},
    )
    assert agent_get(agent_id=agent.agent_id).labels == {"staging": 1}


@pytest.mark.parametrize("history", ["never-set", "already-removed"])
def test_removing_a_label_the_agent_does_not_have_is_not_found_and_stores_nothing(
    commit, context, agent, history
):
    if history == "already-removed":
        commit(agent_label_move, agent_id=agent.agent_id, label="production", revision=1, context=context)
        commit(agent_label_move, agent_id=agent.agent_id, label="production", revision=None, context=context)
    before = stored_state()

    with pytest.raises(AgentNotFound, match="no label 'production'"):
        commit(agent_label_move, agent_id=agent.agent_id, label="production", revision=None, context=context)

    assert stored_state() == before


@pytest.mark.parametrize("revision", [0, 2, 99])
def test_a_label_on_a_revision_that_does_not_exist_is_not_found_and_stores_nothing(
    commit, context, agent, revision
):
    before = stored_state()

    with pytest.raises(AgentNotFound, match=f"no revision {revision}"):
        commit(
            agent_label_move, agent_id=agent.agent_id, label="production", revision=revision, context=context
        )

    assert stored_state() == before
    assert agent_get(agent_id=agent.agent_id).labels == {}


@pytest.mark.parametrize("label", ["Prod", "latest", "1x", "", "-prod", "prod label", "a" * 65])
def test_a_bad_label_name_is_an_invalid_command_and_stores_nothing(commit, context, agent, label):
    before = stored_state()

    with pytest.raises(InvalidCommand, match="label must be"):
        commit(agent_label_move, agent_id=agent.agent_id, label=label, revision=1, context=context)

    assert stored_state() == before


@pytest.mark.parametrize("label", ["prod", "canary-2", "v1.2_rc", "a" * 64])
def test_label_names_of_letters_digits_dots_underscores_and_hyphens_are_accepted(
    commit, context, agent, label
):
    commit(agent_label_move, agent_id=agent.agent_id, label=label, revision=1, context=context)

    assert agent_get(agent_id=agent.agent_id).labels == {label: 1}


# ---------------------------------------------------------------------------------------
# Names: at most one active agent per name
# ---------------------------------------------------------------------------------------


def test_a_revision_with_a_new_name_renames_and_frees_the_old_name(
    commit, context, agent, make_agent_text, unique_name
):
    new_name = unique_name + "-renamed"

    change = commit(agent_revise, agent_id=agent.agent_id, content=make_agent_text(new_name), context=context)

    assert (change.name, change.revision) == (new_name, 2)
    assert stream(agent.agent_id)[-1].data["content"] == make_agent_text(new_name)
    assert agent_get(name=new_name).agent_id == agent.agent_id
    with pytest.raises(AgentNotFound):
        agent_get(name=unique_name)
    assert [row.name for row in revision_list(agent_id=agent.agent_id)] == [unique_name, new_name]
    assert list(AgentNameClaim.objects.values_list("name", "agent_id")) == [(new_name, agent.agent_id)]

    newcomer = commit(agent_create, content=make_agent_text(unique_name), context=context)

    assert newcomer.agent_id != agent.agent_id
    assert agent_get(name=unique_name).agent_id == newcomer.agent_id


def test_reverting_to_a_revision_with_the_old_name_renames_back(
    commit, context, agent, make_agent_text, unique_name
):
    commit(
        agent_revise, agent_id=agent.agent_id, content=make_agent_text(unique_name + "-new"), context=context
    )

    commit(agent_revert, agent_id=agent.agent_id, to_revision=1, context=context)

    assert agent_get(agent_id=agent.agent_id).name == unique_name
    assert AgentNameClaim.objects.get(agent_id=agent.agent_id).name == unique_name


def test_renaming_onto_a_name_another_active_agent_has_raises_name_taken_and_stores_nothing(
    commit, context, agent, make_agent_text, unique_name
):
    other = commit(agent_create, content=make_agent_text(unique_name + "-other"), context=context)
    before = stored_state()

    with pytest.raises(NameTaken) as caught:
        commit(agent_revise, agent_id=agent.agent_id, content=make_agent_text(other.name), context=context)

    assert caught.value.name == other.name
    assert stored_state() == before
    assert agent_get(agent_id=agent.agent_id).name == unique_name
    assert agent_get(name=other.name).agent_id == other.agent_id


def test_reverting_onto_a_name_another_agent_took_meanwhile_raises_name_taken(
    commit, context, agent, make_agent_text, unique_name
):
    commit(
        agent_revise, agent_id=agent.agent_id, content=make_agent_text(unique_name + "-new"), context=context
    )
    commit(agent_create, content=make_agent_text(unique_name), context=context)
    before = stored_state()

    with pytest.raises(NameTaken):
        commit(agent_revert, agent_id=agent.agent_id, to_revision=1, context=context)

    assert stored_state() == before


def test_creating_with_a_name_an_active_agent_has_raises_name_taken_and_stores_nothing(
    commit, context, agent, make_agent_text, unique_name
):
    before = stored_state()

    with pytest.raises(NameTaken, match=f"an active agent named '{unique_name}' already exists"):
        commit(agent_create, content=make_agent_text(unique_name, body="Another body\n"), context=context)

    assert stored_state() == before
    assert Event.objects.filter(type="agent.created").count() == 1


def test_an_archived_agents_name_can_be_reused_and_restoring_the_old_agent_is_then_name_taken(
    commit, context, agent, make_agent_text, unique_name
):
    commit(agent_archive, agent_id=agent.agent_id, context=context)

    newcomer = commit(agent_create, content=make_agent_text(unique_name, body="New body\n"), context=context)

    assert newcomer.agent_id != agent.agent_id
    assert agent_get(name=unique_name).agent_id == newcomer.agent_id
    assert AgentNameClaim.objects.get(name=unique_name).agent_id == newcomer.agent_id
    before = stored_state()

    with pytest.raises(NameTaken):
        commit(agent_restore, agent_id=agent.agent_id, context=context)

    assert stored_state() == before
    assert agent_get(agent_id=agent.agent_id).status == "archived"
    assert [event.type for event in stream(agent.agent_id)] == ["agent.created", "agent.archived"]


# ---------------------------------------------------------------------------------------
# Optimistic concurrency
# ---------------------------------------------------------------------------------------

COMMANDS_WITH_EXPECTED_VERSION = [
    pytest.param(lambda agent, text: {"service": agent_revise, "content": text}, id="revise"),
    pytest.param(lambda agent, text: {"service": agent_revert, "to_revision": 1}, id="revert"),
    pytest.param(lambda agent, text: {"service": agent_archive}, id="archive"),
    pytest.param(
        lambda agent, text: {"service": agent_label_move, "label": "staging", "revision": 2}, id="label"
    ),
]


@pytest.mark.parametrize("command", COMMANDS_WITH_EXPECTED_VERSION)
@pytest.mark.parametrize("expected_version", [1, 3])
def test_a_stale_expected_version_is_a_conflict_and_stores_nothing(
    commit, context, agent, revise_body, make_agent_text, command, expected_version
):
    revise_body(agent, "v2\n")
    before = stored_state()
    kwargs = command(agent, make_agent_text(agent.name, body="v3\n"))

    with pytest.raises(ConcurrencyConflict) as caught:
        commit(
            kwargs.pop("service"),
            agent_id=agent.agent_id,
            context=context,
            expected_version=expected_version,
            **kwargs,
        )

    assert (caught.value.expected_version, caught.value.actual_version) == (expected_version, 2)
    assert caught.value.stream_id == agent.agent_id
    assert stored_state() == before


@pytest.mark.parametrize("command", COMMANDS_WITH_EXPECTED_VERSION)
def test_the_current_expected_version_lets_the_command_through(
    commit, context, agent, revise_body, make_agent_text, command
):
    revise_body(agent, "v2\n")
    kwargs = command(agent, make_agent_text(agent.name, body="v3\n"))

    change = commit(
        kwargs.pop("service"), agent_id=agent.agent_id, context=context, expected_version=2, **kwargs
    )

    assert (change.changed, change.stream_version) == (True, 3)
    assert len(stream(agent.agent_id)) == 3


# ---------------------------------------------------------------------------------------
# Nothing invalid is ever stored
# ---------------------------------------------------------------------------------------

SOME_INVALID_DOCUMENTS = {
    key: INVALID_DOCUMENTS[key][0]
    for key in (
        "no-frontmatter",
        "unterminated-frontmatter",
        "missing-name",
        "missing-description",
        "name-uppercase",
        "empty-file",
        "yaml-alias-bomb",
        "invalid-utf8-in-body",
        "nul-byte-in-body",
        "tools-an-integer",
        "frontmatter-a-list",
        "lenient-fallback-still-fails",
    )
}


@pytest.mark.parametrize("raw", SOME_INVALID_DOCUMENTS.values(), ids=SOME_INVALID_DOCUMENTS.keys())
def test_creating_from_an_invalid_document_appends_nothing(commit, context, raw):
    before = stored_state()

    with pytest.raises(DocumentInvalid):
        commit(agent_create, content=raw, context=context)

    assert stored_state() == before


@pytest.mark.parametrize("raw", SOME_INVALID_DOCUMENTS.values(), ids=SOME_INVALID_DOCUMENTS.keys())
def test_revising_with_an_invalid_document_appends_nothing(commit, context, agent, raw):
    before = stored_state()

    with pytest.raises(DocumentInvalid):
        commit(agent_revise, agent_id=agent.agent_id, content=raw, context=context)

    assert stored_state() == before
    assert agent_get(agent_id=agent.agent_id).revision == 1


def test_a_document_over_the_size_limit_appends_nothing(
    commit, context, settings, make_agent_text, unique_name
):
    settings.AGENT_MAX_BYTES = 200
    before = stored_state()

    with pytest.raises(DocumentInvalid, match="the limit is 200 bytes"):
        commit(agent_create, content=make_agent_text(unique_name, body="x" * 300), context=context)

    assert stored_state() == before


BAD_CONTEXTS = {
    "unknown-source": (ChangeContext(actor="alice", source="email"), "source must be one of"),
    "empty-actor": (ChangeContext(actor="", source="cli"), "actor must be 1 to 200 characters"),
    "over-long-actor": (ChangeContext(actor="a" * 201, source="cli"), "actor must be 1 to 200 characters"),
    "over-long-reason": (ChangeContext(actor="alice", source="cli", reason="r" * 2001), "the limit is 2000"),
    "naive-occurred-at": (
        ChangeContext(actor="alice", source="cli", occurred_at=dt.datetime(2024, 1, 1)),
        "time zone",
    ),
}
COMMANDS = [
    pytest.param(lambda agent, text: {"service": agent_create, "content": text}, id="create"),
    pytest.param(
        lambda agent, text: {"service": agent_revise, "agent_id": agent.agent_id, "content": text},
        id="revise",
    ),
    pytest.param(
        lambda agent, text: {"service": agent_revert, "agent_id": agent.agent_id, "to_revision": 1},
        id="revert",
    ),
    pytest.param(lambda agent, text: {"service": agent_archive, "agent_id": agent.agent_id}, id="archive"),
    pytest.param(
        lambda agent, text: {
            "service": agent_label_move,
            "agent_id": agent.agent_id,
            "label": "prod",
            "revision": 1,
        },
        id="label",
    ),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("bad_context", "message"), BAD_CONTEXTS.values(), ids=BAD_CONTEXTS.keys())
def test_a_bad_change_context_is_an_invalid_command_and_stores_nothing(
    commit, context, agent, revise_body, make_agent_text, unique_name, command, bad_context, message
):
    revise_body(agent, "v2\n")
    before = stored_state()
    kwargs = command(agent, make_agent_text(unique_name + "-x", body="v3\n"))

    with pytest.raises(InvalidCommand, match=message):
        commit(kwargs.pop("service"), context=bad_context, **kwargs)

    assert stored_state() == before


def test_a_reason_of_exactly_2000_characters_is_accepted(commit, make_agent_text, unique_name):
    context = ChangeContext(actor="alice", source="api", reason="r" * 2000)

    change = commit(agent_create, content=make_agent_text(unique_name), context=context)

    assert stream(change.agent_id)[0].metadata["reason"] == "r" * 2000


# ---------------------------------------------------------------------------------------
# Concurrent creates (PostgreSQL: SQLite serialises all writers anyway)
# ---------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("threads", range(2, 9))
def test_concurrent_creates_of_one_name_let_exactly_one_through(make_agent_text, unique_name, threads):
    barrier = threading.Barrier(threads)
    outcomes: list[object] = [None] * threads

    def create(index: int) -> None:
        try:
            context = ChangeContext(actor=f"writer-{index}", source="api", reason="race")
            text = make_agent_text(unique_name, body=f"Written by thread {index}.\n")
            barrier.wait(timeout=30)
            outcomes[index] = agent_create(content=text, context=context)
        except Exception as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    workers = [threading.Thread(target=create, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert not any(worker.is_alive() for worker in workers)
    winners = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(loser, NameTaken) for loser in losers), losers
    assert len(losers) == threads - 1
    [winner] = winners
    created = [
        event
        for event in Event.objects.filter(type="agent.created")
        if event.data["content"].startswith(f"---\nname: {unique_name}\n")
    ]
    assert [event.stream_id for event in created] == [winner.agent_id]
    assert list(AgentNameClaim.objects.values_list("name", "agent_id")) == [(unique_name, winner.agent_id)]
    assert agent_get(name=unique_name).agent_id == winner.agent_id


def test_an_agent_whose_stream_was_written_without_the_services_can_be_revised_and_archived(
    commit, context, make_agent_text, unique_name
):
    # A bulk load appends a whole history straight to the store: no name claim is written.
    agent_id = uuid.uuid4()
    commit(
        event_append,
        stream_id=agent_id,
        expected_version=0,
        events=[
            NewEvent(type="agent.created", data={"content": make_agent_text(unique_name), "revision": 1}),
            NewEvent(
                type="agent.revised",
                data={"content": make_agent_text(unique_name, body="v2\n"), "revision": 2},
            ),
        ],
        metadata=context.metadata(),
    )
    assert not AgentNameClaim.objects.filter(agent_id=agent_id).exists()

    change = commit(
        agent_revise, agent_id=agent_id, content=make_agent_text(unique_name, body="v3\n"), context=context
    )
    assert (change.name, change.revision, change.stream_version) == (unique_name, 3, 3)
    commit(agent_archive, agent_id=agent_id, context=context)
    with pytest.raises(AgentArchived, match=f"agent '{unique_name}' is archived"):
        commit(
            agent_revise,
            agent_id=agent_id,
            content=make_agent_text(unique_name, body="v4\n"),
            context=context,
        )
    assert [e.stream_version for e in Event.objects.filter(stream_id=agent_id)] == [1, 2, 3, 4]


def _waiting_for_the_append_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return cursor.fetchone()[0] > 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["revise", "archive"])
def test_a_writer_queued_on_the_append_lock_reads_the_head_and_claim_the_holder_committed(
    context, make_agent_text, unique_name, change
):
    # The lock, the stream's head and the name claim are one round trip (issue 14): the reads
    # must see what the lock's holder committed while this writer waited. Had they been read
    # with the snapshot of before the wait, the revise would conflict with an unseen version,
    # or (claim read stale) append to an agent archived meanwhile.
    from events.services import append_lock

    agent = agent_create(content=make_agent_text(unique_name), context=context)
    locked, done = threading.Event(), threading.Event()
    outcome: list[object] = [None]

    def holder() -> None:
        try:
            with transaction.atomic():
                append_lock()
                locked.set()
                deadline = time.monotonic() + 30
                while not _waiting_for_the_append_lock() and time.monotonic() < deadline:
                    time.sleep(0.01)
                if change == "revise":
                    agent_revise(
                        agent_id=agent.agent_id,
                        content=make_agent_text(unique_name, body="By the holder.\n"),
                        context=context,
                    )
                else:
                    agent_archive(agent_id=agent.agent_id, context=context)
        finally:
            connection.close()
            done.set()

    def waiter() -> None:
        try:
            locked.wait(timeout=30)
            outcome[0] = agent_revise(
                agent_id=agent.agent_id,
                content=make_agent_text(unique_name, body="By the waiter.\n"),
                context=context,
            )
        except Exception as exc:
            outcome[0] = exc
        finally:
            connection.close()

    workers = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert not any(worker.is_alive() for worker in workers)
    types = [event.type for event in stream(agent.agent_id)]
    if change == "revise":
        assert not isinstance(outcome[0], Exception), outcome[0]
        assert (outcome[0].revision, outcome[0].stream_version) == (3, 3)
        assert types == ["agent.created", "agent.revised", "agent.revised"]
        assert stream(agent.agent_id)[-1].data["content"].endswith("By the waiter.\n")
    else:
        assert isinstance(outcome[0], AgentArchived), outcome[0]
        assert types == ["agent.created", "agent.archived"]
