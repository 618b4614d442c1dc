"""Work per command and per page does not grow with an agent's history (issue 13, defect 9).

Each test runs the same command or page on a short and on a long history (300 revisions or
label moves) and counts the rows read from the event log (every row the store reads leaves
through `stored_event_from_row`); reading whole streams would make the counts differ.
"""

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents_app import event_types
from agents_app.admin import CONFLICT_CHANGES
from agents_app.models import AgentRevision
from agents_app.selectors import LABEL_PAGE, agent_get, revision_get
from agents_app.services import agent_create, agent_label_move, agent_revert, agent_revise
from events import selectors as event_selectors
from events.models import Event
from tests.conftest import run_after_commit

pytestmark = pytest.mark.django_db

LONG = 300
SHORT = 10


class LogReads:
    """Rows of the event log turned into events, and the statements that read the log."""

    def __init__(self, monkeypatch) -> None:
        self.rows = 0
        original = event_selectors.stored_event_from_row

        def counted(row):
            self.rows += 1
            return original(row)

        monkeypatch.setattr(event_selectors, "stored_event_from_row", counted)
        self.queries = CaptureQueriesContext(connection)

    def __enter__(self) -> "LogReads":
        self.rows = 0
        self.queries.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.queries.__exit__(*exc)

    def unbounded(self) -> list[str]:
        """SELECTs of the event table with neither a LIMIT nor an aggregate: they read a whole stream."""
        return [
            query["sql"]
            for query in self.queries.captured_queries
            if query["sql"].lstrip().upper().startswith("SELECT")
            and "events_event" in query["sql"]
            and "LIMIT" not in query["sql"].upper()
            and "MAX(" not in query["sql"].upper()
        ]


@pytest.fixture
def log_reads(monkeypatch):
    return LogReads(monkeypatch)


@pytest.fixture(autouse=True)
def _commit(monkeypatch, django_capture_on_commit_callbacks):
    """Each write runs what it queued for after COMMIT (the views' catch-up), as a real COMMIT does."""
    run_after_commit(
        monkeypatch,
        django_capture_on_commit_callbacks,
        globals(),
        ("agent_create", "agent_revise", "agent_revert", "agent_label_move"),
    )


def make_history(context, make_agent_text, revisions: int) -> uuid.UUID:
    """An agent with `revisions` revisions whose bodies are `revision <n>`."""
    name = f"deep-{uuid.uuid4().hex[:8]}"
    agent_id = agent_create(content=make_agent_text(name, body="revision 1\n"), context=context).agent_id
    for number in range(2, revisions + 1):
        agent_revise(
            agent_id=agent_id, content=make_agent_text(name, body=f"revision {number}\n"), context=context
        )
    return agent_id


def revert_reads(context, make_agent_text, log_reads, revisions: int) -> int:
    agent_id = make_history(context, make_agent_text, revisions)
    with log_reads:
        change = agent_revert(agent_id=agent_id, to_revision=1, context=context)
    assert change.revision == revisions + 1
    assert agent_get(agent_id=agent_id).body == "revision 1\n"
    assert log_reads.unbounded() == []
    return log_reads.rows


def test_revert_reads_the_same_rows_of_the_log_at_300_revisions_as_at_10(context, make_agent_text, log_reads):
    short = revert_reads(context, make_agent_text, log_reads, SHORT)
    long = revert_reads(context, make_agent_text, log_reads, LONG)

    assert long == short
    assert short <= 3  # the write model's newest content event, the target event


def test_revert_while_the_revisions_view_lags_reads_only_the_events_it_has_not_applied(
    context, make_agent_text, log_reads
):
    agent_id = make_history(context, make_agent_text, 40)
    # The view has applied revisions 1 to 35 only (as when a worker applies it later).
    AgentRevision.objects.filter(agent_id=agent_id, revision__gt=35).delete()

    with log_reads:
        change = agent_revert(agent_id=agent_id, to_revision=38, context=context)

    assert change.revision == 41
    [reverted] = Event.objects.filter(stream_id=agent_id, stream_version=41)
    assert reverted.data["reverted_to"] == 38 and reverted.data["content"].endswith("revision 38\n")
    assert log_reads.rows <= 1 + 3  # the write model's newest event, revisions 36 to 38


def test_revert_checks_the_revisions_view_against_the_log_and_stores_the_asked_revision(
    context, make_agent_text
):
    agent_id = make_history(context, make_agent_text, 5)
    # A wrong view row: revision 2 claims to be where revision 4 is.
    AgentRevision.objects.filter(agent_id=agent_id, revision=2).update(stream_version=4)

    agent_revert(agent_id=agent_id, to_revision=2, context=context)

    [reverted] = Event.objects.filter(stream_id=agent_id, stream_version=6)
    assert reverted.data["reverted_to"] == 2 and reverted.data["content"].endswith("revision 2\n")


def label_move_reads(context, make_agent_text, log_reads, moves: int) -> int:
    agent_id = make_history(context, make_agent_text, 2)
    for number in range(moves):
        agent_label_move(agent_id=agent_id, label=f"l{number % 7}", revision=1 + number % 2, context=context)
    with log_reads:
        change = agent_label_move(agent_id=agent_id, label="production", revision=2, context=context)
    assert change.changed
    assert agent_get(agent_id=agent_id).labels["production"] == 2
    assert log_reads.unbounded() == []
    return log_reads.rows


def test_moving_a_label_reads_the_same_rows_after_300_label_moves_as_after_10(
    context, make_agent_text, log_reads
):
    short = label_move_reads(context, make_agent_text, log_reads, SHORT)
    long = label_move_reads(context, make_agent_text, log_reads, LONG)

    assert long == short


def test_moving_a_label_while_the_current_view_lags_sees_the_moves_the_view_has_not_applied(
    context, make_agent_text
):
    agent_id = make_history(context, make_agent_text, 2)
    agent_label_move(agent_id=agent_id, label="production", revision=1, context=context)
    snapshot = agent_get(agent_id=agent_id)
    agent_label_move(agent_id=agent_id, label="production", revision=2, context=context)
    # The current view goes back to before the second move (it lags).
    type(snapshot).objects.filter(pk=snapshot.pk).update(
        labels=snapshot.labels, stream_version=snapshot.stream_version
    )

    change = agent_label_move(agent_id=agent_id, label="production", revision=2, context=context)

    assert change.changed is False  # the label already points at 2: nothing stored
    assert Event.objects.filter(stream_id=agent_id, type=event_types.LABEL_MOVED).count() == 2
    assert revision_get(agent_id=agent_id, revision=2).revision == 2


# ---------------------------------------------------------------------------------------
# Admin pages
# ---------------------------------------------------------------------------------------


def admin_url(name: str, *args) -> str:
    return reverse(f"admin:agents_app_agentcurrent_{name}", args=args)


def test_the_admin_labels_page_reads_one_page_of_label_moves_and_no_content_events(
    admin_client, context, make_agent_text, log_reads
):
    agent_id = make_history(context, make_agent_text, LONG)
    for number in range(LABEL_PAGE + 10):
        agent_label_move(agent_id=agent_id, label=f"l{number}", revision=1 + number % 2, context=context)

    with log_reads:
        page = admin_client.get(admin_url("labels", agent_id)).content.decode()

    assert log_reads.unbounded() == []
    assert log_reads.rows <= LABEL_PAGE + 1  # label moves only: none of the 300 content events
    assert page.count("<td>l") == LABEL_PAGE + 10 + LABEL_PAGE  # every current label, the newest moves
    assert f"<td>l{LABEL_PAGE + 9}</td>" in page
    older = re.search(r'href="\?before=(\d+)" id="older-moves"', page)
    assert older is not None
    rest = admin_client.get(admin_url("labels", agent_id), {"before": older.group(1)}).content.decode()
    assert rest.count("<td>l") == LABEL_PAGE + 10 + 10  # current labels, then the 10 oldest moves
    assert "<td>l0</td>" in rest and 'id="older-moves"' not in rest


def test_the_admin_conflict_page_lists_a_bounded_number_of_changes_without_their_content(
    admin_client, context, make_agent_text, log_reads
):
    agent_id = make_history(context, make_agent_text, 2)
    name = agent_get(agent_id=agent_id).name
    editor = admin_client.get(admin_url("change", agent_id)).content.decode()
    token = re.search(r'name="opened" value="([^"]+)"', editor).group(1)
    for number in range(3, LONG + 3):  # someone else saves 300 revisions meanwhile
        agent_revise(
            agent_id=agent_id, content=make_agent_text(name, body=f"revision {number}\n"), context=context
        )

    with log_reads:
        response = admin_client.post(
            admin_url("change", agent_id),
            {"content": make_agent_text(name, body="mine\n"), "reason": "mine", "opened": token},
        )

    page = response.content.decode()
    assert response.status_code == 200 and 'id="conflict"' in page
    assert log_reads.unbounded() == []
    assert log_reads.rows <= 2  # the write model's newest event; no content event for the list
    assert page.count("<li><strong>alice</strong>") == CONFLICT_CHANGES
    assert "(revision 3)" in page and f"(revision {2 + CONFLICT_CHANGES})" in page
    assert f"(revision {3 + CONFLICT_CHANGES})" not in page
    assert f"and {LONG - CONFLICT_CHANGES} more changes" in page
    assert Event.objects.filter(stream_id=agent_id).count() == LONG + 2  # nothing stored


def test_revert_finds_the_revision_in_the_log_when_the_view_misplaces_the_one_below_it(
    context, make_agent_text
):
    agent_id = make_history(context, make_agent_text, 8)
    AgentRevision.objects.filter(agent_id=agent_id, revision__gt=5).delete()  # the view lags
    AgentRevision.objects.filter(agent_id=agent_id, revision=5).update(stream_version=7)  # and is wrong

    agent_revert(agent_id=agent_id, to_revision=6, context=context)

    [reverted] = Event.objects.filter(stream_id=agent_id, stream_version=9)
    assert reverted.data["reverted_to"] == 6 and reverted.data["content"].endswith("revision 6\n")


def test_a_revision_reads_the_same_rows_of_the_log_at_300_revisions_as_at_10(
    context, make_agent_text, log_reads
):
    counts = []
    for revisions in (SHORT, LONG):
        agent_id = make_history(context, make_agent_text, revisions)
        name = agent_get(agent_id=agent_id).name
        with log_reads:
            agent_revise(agent_id=agent_id, content=make_agent_text(name, body="next\n"), context=context)
        assert log_reads.unbounded() == []
        counts.append(log_reads.rows)

    assert counts[0] == counts[1] <= 2  # the write model: the newest content event


def test_a_revise_reads_the_log_once_under_the_lock_whatever_the_dialect(context, make_agent_text, log_reads):
    """One read of the stream's head gives the write model and its dialect: no read before the
    lock (every writer waits on it), and a copilot agent revised without naming its dialect is
    still judged by copilot's rules (its document has no name)."""
    for dialect, name_key in (("claude-code", True), ("copilot", False)):
        name = f"once-{uuid.uuid4().hex[:8]}"
        text = make_agent_text(name) if name_key else "---\ndescription: Plans\n---\nPlan.\n"
        agent_id = agent_create(content=text, context=context, dialect=dialect, name=name).agent_id
        revised = text.replace("\n---\n", "\nmodel: opus\n---\n", 1)
        with log_reads:
            change = agent_revise(agent_id=agent_id, content=revised, context=context)
        assert (change.revision, change.name) == (2, name)
        # The head read is the only event the revise reads (the dialect's own read made two).
        assert log_reads.rows == 1
