"""Admin of the event store: the read-only event log and the projections' status and rebuilds."""

import threading
import uuid
from types import SimpleNamespace

import kombu.exceptions
import pytest
from django.contrib.admin import site
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import events.tasks
from agents_app.projections import CURRENT, REVISIONS
from agents_app.services import ChangeContext, agent_create, agent_revise
from events.admin import EventLogPaginator
from events.models import Checkpoint, Event, ProjectionRun
from events.runner import live_checkpoint
from project.celery import app as celery_app
from project.celery import background_wait
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db

EVENTS = reverse("admin:events_event_changelist")
RUNS = reverse("admin:events_projectionrun_changelist")
STATUS = reverse("admin:events_projectionrun_status")
SCRIPT = "<script>alert(1)</script>"


def change_url(event: Event) -> str:
    return reverse("admin:events_event_change", args=[event.position])


def listed(response) -> list[int]:
    """Positions of the events on the changelist page, in order."""
    assert response.status_code == 200, response.content[:500]
    return [event.position for event in response.context["cl"].result_list]


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def users(django_user_model):
    made = {
        # No passwords: hashing is slow and force_login does not need one.
        "superuser": django_user_model.objects.create_superuser(username="root", email=None, password=None),
        "auditor": django_user_model.objects.create_user(username="auditor", is_staff=True),
        "staff": django_user_model.objects.create_user(username="staff", is_staff=True),
        "outsider": django_user_model.objects.create_user(username="outsider"),
    }
    made["auditor"].groups.set([Group.objects.get(name="Auditors")])
    # The one permission that opens the log, without the staff flag the admin requires.
    made["outsider"].groups.set([Group.objects.get(name="Auditors")])
    return made


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_superuser(users) -> Client:
    return client_for(users["superuser"])


@pytest.fixture
def log() -> dict[str, object]:
    """Three events in two streams by two actors through two sources."""
    reviewer = agent_create(
        content=agent_text("reviewer"),
        context=ChangeContext(actor="alice", source="cli", reason="first version of the reviewer"),
    )
    revised = agent_revise(
        agent_id=reviewer.agent_id,
        content=agent_text("reviewer", body="Review very carefully.\n"),
        context=ChangeContext(actor="alice", source="cli", reason="be more careful"),
    )
    writer = agent_create(
        content=agent_text("writer", description="Writes tests"),
        context=ChangeContext(actor="bob", source="api", reason="writer draft"),
    )
    return {
        "reviewer": reviewer.agent_id,
        "writer": writer.agent_id,
        "created": reviewer.events[0].position,
        "revised": revised.events[0].position,
        "writer_created": writer.events[0].position,
    }


# --- who sees the event log ---------------------------------------------------------------------


def test_a_superuser_sees_every_event_newest_first(as_superuser, log):
    response = as_superuser.get(EVENTS)

    assert listed(response) == [log["writer_created"], log["revised"], log["created"]]
    body = response.content.decode()
    assert "agent.revised" in body and "be more careful" in body
    assert str(log["reviewer"])[:8] in body
    assert "3 events" in body


def test_an_auditor_with_staff_access_sees_the_event_log(users, log):
    response = client_for(users["auditor"]).get(EVENTS)

    assert listed(response) == [log["writer_created"], log["revised"], log["created"]]


def test_staff_without_the_view_event_permission_are_refused(users, log):
    client = client_for(users["staff"])

    assert client.get(EVENTS).status_code == 403
    assert client.get(change_url(Event.objects.get(position=log["created"]))).status_code == 403


def test_a_user_who_is_not_staff_is_sent_to_the_login_page_even_with_the_permission(users, log):
    response = client_for(users["outsider"]).get(EVENTS)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_auditor_sees_the_event_log_on_the_admin_index_but_plain_staff_do_not(users):
    assert EVENTS in client_for(users["auditor"]).get(reverse("admin:index")).content.decode()
    assert EVENTS not in client_for(users["staff"]).get(reverse("admin:index")).content.decode()


# --- nobody writes --------------------------------------------------------------------------------


def test_the_add_page_is_refused_even_to_a_superuser(as_superuser, log):
    add = reverse("admin:events_event_add")
    before = Event.objects.count()

    assert as_superuser.get(add).status_code == 403
    posted = as_superuser.post(
        add,
        {
            "event_id": str(uuid.uuid4()),
            "stream_id": str(uuid.uuid4()),
            "stream_version": 1,
            "type": "agent.created",
            "data": "{}",
            "metadata": "{}",
        },
    )

    assert posted.status_code == 403
    assert Event.objects.count() == before


def test_posting_a_change_is_refused_even_to_a_superuser_and_changes_nothing(as_superuser, log):
    event = Event.objects.get(position=log["created"])
    stored = Event.objects.filter(pk=event.pk).values().get()

    page = as_superuser.get(change_url(event))
    posted = as_superuser.post(
        change_url(event),
        {"type": "agent.archived", "data": '{"reason": "forged"}', "metadata": '{"actor": "mallory"}'},
    )

    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    assert 'name="_save"' not in page.content.decode()
    assert posted.status_code == 403
    assert Event.objects.filter(pk=event.pk).values().get() == stored


def test_the_delete_page_is_refused_even_to_a_superuser_and_the_event_stays(as_superuser, log):
    event = Event.objects.get(position=log["created"])
    delete = reverse("admin:events_event_delete", args=[event.position])

    assert as_superuser.get(delete).status_code == 403
    assert as_superuser.post(delete, {"post": "yes"}).status_code == 403
    assert Event.objects.filter(pk=event.pk).exists()


def test_the_changelist_offers_no_actions_so_no_bulk_delete(as_superuser, log):
    response = as_superuser.get(EVENTS)
    posted = as_superuser.post(
        EVENTS, {"action": "delete_selected", "_selected_action": [log["created"]], "post": "yes"}
    )

    assert response.context["action_form"] is None
    assert "delete_selected" not in response.content.decode()
    assert posted.status_code in (200, 302)
    assert Event.objects.filter(pk=log["created"]).exists()
    assert Event.objects.count() == 3


# --- filters and search ------------------------------------------------------------------------------


def test_the_type_filter_lists_one_type_and_offers_every_type(as_superuser, log):
    response = as_superuser.get(EVENTS, {"type": "agent.revised"})

    assert listed(response) == [log["revised"]]
    type_filter = next(spec for spec in response.context["cl"].filter_specs if spec.parameter_name == "type")
    assert [value for value, _ in type_filter.lookup_choices] == ["agent.created", "agent.revised"]


def test_the_source_filter_lists_the_events_made_through_one_source(as_superuser, log):
    assert listed(as_superuser.get(EVENTS, {"source": "api"})) == [log["writer_created"]]
    assert listed(as_superuser.get(EVENTS, {"source": "cli"})) == [log["revised"], log["created"]]


def test_the_actor_filter_lists_one_actors_events_and_offers_recent_actors_newest_first(as_superuser, log):
    response = as_superuser.get(EVENTS, {"actor": "alice"})

    assert listed(response) == [log["revised"], log["created"]]
    actor_filter = next(
        spec for spec in response.context["cl"].filter_specs if spec.parameter_name == "actor"
    )
    assert [value for value, _ in actor_filter.lookup_choices] == ["bob", "alice"]


def test_the_actor_filter_offers_at_most_fifty_actors(as_superuser):
    for number in range(55):
        agent_create(
            content=agent_text(f"agent-{number}"),
            context=ChangeContext(actor=f"user-{number:02}", source="api"),
        )

    response = as_superuser.get(EVENTS, {"actor": "user-00"})

    actor_filter = next(
        spec for spec in response.context["cl"].filter_specs if spec.parameter_name == "actor"
    )
    offered = [value for value, _ in actor_filter.lookup_choices]
    # The 50 newest, plus the chosen one (older) so the filter still shows what is applied.
    assert offered == ["user-00"] + [f"user-{number:02}" for number in range(54, 4, -1)]
    assert len(listed(response)) == 1


def test_the_stream_filter_lists_one_agents_events_and_the_list_links_to_it(as_superuser, log):
    response = as_superuser.get(EVENTS, {"stream_id": str(log["reviewer"])})

    assert listed(response) == [log["revised"], log["created"]]
    assert f"?stream_id={log['reviewer']}" in as_superuser.get(EVENTS).content.decode()


def test_a_malformed_stream_id_shows_the_error_page_not_a_server_error(as_superuser, log):
    response = as_superuser.get(EVENTS, {"stream_id": "not-a-uuid"})

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_the_filters_combine(as_superuser, log):
    response = as_superuser.get(EVENTS, {"actor": "alice", "type": "agent.created"})

    assert listed(response) == [log["created"]]


def test_the_date_filter_keeps_todays_events(as_superuser, log):
    response = as_superuser.get(EVENTS)
    date_filter = next(
        spec
        for spec in response.context["cl"].filter_specs
        if getattr(spec, "field_path", "") == "recorded_at"
    )
    today = dict((title, params) for title, params in date_filter.links)["Today"]

    assert len(listed(as_superuser.get(EVENTS, today))) == 3
    assert (
        listed(
            as_superuser.get(
                EVENTS,
                {
                    "recorded_at__gte": "2000-01-01 00:00:00+00:00",
                    "recorded_at__lt": "2000-01-02 00:00:00+00:00",
                },
            )
        )
        == []
    )


def test_filtering_on_a_column_the_admin_does_not_offer_is_refused(as_superuser, log):
    response = as_superuser.get(EVENTS, {"data__content__icontains": "review"})

    assert response.status_code == 400


def test_search_finds_an_event_by_event_id_a_stream_by_stream_id_and_words_of_the_reason(as_superuser, log):
    created = Event.objects.get(position=log["created"])

    assert listed(as_superuser.get(EVENTS, {"q": str(created.event_id)})) == [log["created"]]
    assert listed(as_superuser.get(EVENTS, {"q": str(log["writer"])})) == [log["writer_created"]]
    assert listed(as_superuser.get(EVENTS, {"q": "More Careful"})) == [log["revised"]]
    assert listed(as_superuser.get(EVENTS, {"q": "nothing like this"})) == []
    assert "1 result" in as_superuser.get(EVENTS, {"q": "careful"}).content.decode()
    assert "result (" not in as_superuser.get(EVENTS).content.decode()  # no count without a search


# --- the detail page -----------------------------------------------------------------------------


def test_the_detail_page_escapes_html_found_in_event_data(as_superuser):
    change = agent_create(
        content=agent_text("xss", body=f"Be nice.\n{SCRIPT}\n"),
        context=ChangeContext(actor="alice", source="cli", reason=f"reason {SCRIPT}"),
    )

    body = as_superuser.get(change_url(Event.objects.get(position=change.position))).content.decode()

    assert SCRIPT not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<pre>" in body


def test_the_changelist_escapes_html_in_reasons_and_actors(as_superuser):
    agent_create(
        content=agent_text("xss"), context=ChangeContext(actor=f"eve{SCRIPT}", source="cli", reason=SCRIPT)
    )

    body = as_superuser.get(EVENTS).content.decode()

    assert SCRIPT not in body
    assert "&lt;script&gt;" in body


def test_the_detail_page_shows_every_field_the_previous_hash_and_a_good_chain(as_superuser, log):
    created = Event.objects.get(position=log["created"])
    revised = Event.objects.get(position=log["revised"])

    body = as_superuser.get(change_url(revised)).content.decode()

    for shown in (
        str(revised.event_id),
        str(revised.stream_id),
        revised.hash,
        created.hash,
        "be more careful",
    ):
        assert shown in body
    assert "&quot;revision&quot;: 2" in body  # data, pretty-printed and escaped
    assert "ok: the stored hash matches" in body
    first = as_superuser.get(change_url(created)).content.decode()
    assert "none: the first event of its stream" in first
    assert "ok: the stored hash matches" in first


# --- pagination that never counts the whole log ------------------------------------------------------


def test_counting_stops_at_the_cap_and_the_page_says_so(as_superuser, log, monkeypatch):
    monkeypatch.setattr(EventLogPaginator, "exact_up_to", 2)
    monkeypatch.setattr(EventLogPaginator, "estimate_from", 10**12)  # no estimate on PostgreSQL
    monkeypatch.setattr(site._registry[Event], "list_per_page", 1)

    response = as_superuser.get(EVENTS)
    cl = response.context["cl"]

    assert cl.result_count == 2
    assert cl.paginator.count_is_capped
    assert listed(response) == [log["writer_created"]]
    assert listed(as_superuser.get(EVENTS, {"p": 2})) == [log["revised"]]
    assert cl.full_result_count is None  # show_full_result_count is off: no COUNT(*) of the log
    assert "more than 2 events" in response.content.decode()


def test_the_list_runs_no_count_over_the_whole_log(as_superuser, log):
    with CaptureQueriesContext(connection) as queries:
        listed(as_superuser.get(EVENTS))

    counts = [query["sql"] for query in queries if "COUNT(" in query["sql"].upper()]
    assert counts, "the page counts its events"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


@pytest.mark.postgres
def test_on_postgresql_the_unfiltered_log_is_counted_by_the_planners_estimate(as_superuser, log, monkeypatch):
    monkeypatch.setattr(EventLogPaginator, "estimate_from", 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events_event")

    response = as_superuser.get(EVENTS)
    filtered = as_superuser.get(EVENTS, {"actor": "alice"})

    assert response.context["cl"].paginator.count_is_estimate
    assert response.context["cl"].result_count >= 1
    assert "about" in response.content.decode()
    assert not filtered.context["cl"].paginator.count_is_estimate
    assert filtered.context["cl"].result_count == 2


# --- projection runs and status ----------------------------------------------------------------------


def test_the_status_page_lists_both_projections_with_their_lag(users, log):
    response = client_for(users["staff"]).get(STATUS)

    assert response.status_code == 200
    statuses = {status.name: status for status in response.context["statuses"]}
    assert set(statuses) == {CURRENT, REVISIONS}
    for status in statuses.values():
        # The test's transaction never commits, so no catch-up ran: all three events wait.
        assert (status.checkpoint, status.head, status.lag_events) == (0, log["writer_created"], 3)
        assert status.lag_seconds >= 0
    body = response.content.decode()
    assert CURRENT in body and REVISIONS in body
    assert body.count("Queue rebuild") == 2
    assert "never rebuilt" in body


def test_queue_rebuild_hands_a_verified_rebuild_to_the_background_and_redirects_back_with_a_message(
    users, log, django_capture_on_commit_callbacks, monkeypatch, background_tasks
):
    # The rebuild itself runs on a background thread after the commit (project.celery.enqueue),
    # which cannot see this test's uncommitted log: it is recorded here, not run (the API's
    # PostgreSQL test runs a real one).
    started, release = threading.Event(), threading.Event()
    calls = []

    def recorded_rebuild(*, name, verify, **kwargs):
        calls.append((name, verify))
        started.set()
        release.wait(10)
        return SimpleNamespace(events=0, differences=[])

    monkeypatch.setattr(events.tasks, "projection_rebuild", recorded_rebuild)
    client = client_for(users["staff"])

    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = client.post(STATUS, {"projection": CURRENT})
        answered_before_the_rebuild_ended = not release.is_set()
        assert started.wait(10)
    finally:
        release.set()
        background_wait()

    assert response.status_code == 302
    assert response["Location"] == STATUS
    assert len(callbacks) == 1
    assert answered_before_the_rebuild_ended
    assert calls == [(CURRENT, True)]
    page = client.get(STATUS)
    assert any(f"A rebuild of {CURRENT}" in message for message in messages_of(page))


# Transactional (so PostgreSQL: SQLite's append-only triggers refuse the flush): the page runs in
# autocommit as in production, so the task is published while the page still answers.
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rebuild_button_the_broker_refuses_says_nothing_was_queued(django_user_model, monkeypatch):
    def refused(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Connection refused")

    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    monkeypatch.setattr(events.tasks.projection_rebuild_task, "apply_async", refused)
    monkeypatch.setattr(events.tasks.events_verify_task, "apply_async", refused)
    # Not the `users` fixture: an earlier transactional test's flush took the groups it needs.
    client = client_for(django_user_model.objects.create_user(username="staff", is_staff=True))

    rebuild = client.post(STATUS, {"projection": CURRENT}, follow=True)
    verify = client.post(reverse("admin:events_projectionrun_verify"), follow=True)

    for response in (rebuild, verify):
        assert response.status_code == 200
        assert any("Nothing was queued" in message for message in messages_of(response))
    assert not ProjectionRun.objects.exists()


def test_the_rebuild_button_is_csrf_protected(users, log, django_capture_on_commit_callbacks):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["staff"])

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(STATUS, {"projection": CURRENT})

    assert response.status_code == 403
    assert not ProjectionRun.objects.exists()


def test_an_unknown_projection_is_an_error_message_and_queues_nothing(
    users, log, django_capture_on_commit_callbacks
):
    client = client_for(users["staff"])

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(STATUS, {"projection": f"agents.{SCRIPT}"}, follow=True)

    assert response.status_code == 200
    assert callbacks == []
    assert not ProjectionRun.objects.exists()
    assert any("There is no projection named" in message for message in messages_of(response))
    assert SCRIPT not in response.content.decode()


def test_users_who_are_not_staff_can_neither_see_the_status_nor_queue_a_rebuild(
    users, log, django_capture_on_commit_callbacks
):
    client = client_for(users["outsider"])
    anonymous = Client()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for who in (client, anonymous):
            assert who.get(STATUS).status_code == 302
            posted = who.post(STATUS, {"projection": CURRENT})
            assert posted.status_code == 302
            assert posted["Location"].startswith(reverse("admin:login"))

    assert callbacks == []
    assert not ProjectionRun.objects.exists()


def test_the_runs_list_is_read_only_and_links_to_the_status_page(users, as_superuser):
    ProjectionRun.objects.create(projection=CURRENT, result=ProjectionRun.Result.DIFFERENCES, detail=SCRIPT)
    client = client_for(users["staff"])

    response = client.get(RUNS)
    run = ProjectionRun.objects.get()
    detail = client.get(reverse("admin:events_projectionrun_change", args=[run.pk]))

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [run]
    assert STATUS in response.content.decode()
    assert response.context["action_form"] is None
    assert SCRIPT not in response.content.decode() and SCRIPT not in detail.content.decode()
    assert "&lt;script&gt;" in detail.content.decode()
    assert as_superuser.get(reverse("admin:events_projectionrun_add")).status_code == 403
    assert (
        as_superuser.post(
            reverse("admin:events_projectionrun_delete", args=[run.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert ProjectionRun.objects.filter(pk=run.pk).exists()


def test_the_status_page_shows_the_event_a_projection_failed_on_and_why(users, log):
    Checkpoint.objects.filter(pk=live_checkpoint(REVISIONS).pk).update(
        failed_position=log["writer_created"], failed_error="ValueError: cannot parse the frontmatter"
    )

    response = client_for(users["staff"]).get(STATUS)

    statuses = {status.name: status for status in response.context["statuses"]}
    assert statuses[REVISIONS].failed_position == log["writer_created"]
    assert statuses[CURRENT].failed_position is None
    body = response.content.decode()
    assert body.count("stopped: cannot apply the event at position") == 1
    assert "ValueError: cannot parse the frontmatter" in body


def test_the_detail_page_shows_when_the_change_occurred_beside_when_it_was_recorded(as_superuser):
    import datetime as dt

    made = agent_create(
        content=agent_text("dated"),
        context=ChangeContext(
            actor="git:Ann <ann@example.com>",
            source="git",
            occurred_at=dt.datetime(2024, 1, 5, 10, 0, 7, tzinfo=dt.UTC),
        ),
    )
    event = Event.objects.get(stream_id=made.agent_id)

    page = as_superuser.get(change_url(event)).content.decode()

    assert "2024-01-05 10:00:07 UTC" in page
    assert f"{event.recorded_at:%Y-%m-%d %H:%M:%S} UTC" in page


def test_the_list_names_each_agent_and_links_its_page_with_one_query_per_page(
    as_superuser, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        made = [
            agent_create(
                content=agent_text(f"named-{number}"), context=ChangeContext(actor="a", source="cli")
            )
            for number in range(5)
        ]

    with CaptureQueriesContext(connection) as queries:
        page = as_superuser.get(EVENTS).content.decode()

    for number, change in enumerate(made):
        agent_page = reverse("admin:agents_app_agentcurrent_change", args=[change.agent_id])
        assert f'<a href="{agent_page}" title="the page of named-{number}">named-{number}</a><br>' in page
    # the agents' names are read in one query for the page, not one per event
    assert sum("agents_app_agentcurrent" in query["sql"] for query in queries) == 1


def test_the_list_and_detail_show_times_to_the_second_with_the_zone(as_superuser, log):
    event = Event.objects.get(position=log["created"])

    listing = as_superuser.get(EVENTS).content.decode()
    detail = as_superuser.get(change_url(event)).content.decode()

    assert f"{event.recorded_at:%Y-%m-%d}<br>{event.recorded_at:%H:%M:%S} UTC" in listing
    assert f"{event.recorded_at:%Y-%m-%d %H:%M:%S} UTC" in detail


def test_a_stream_no_labeller_knows_keeps_its_short_id_linked_to_its_events(as_superuser, log):
    # The log fixture's projections never ran: no agent row names these streams.
    page = as_superuser.get(EVENTS).content.decode()

    assert f"<code>{str(log['writer'])[:8]}</code>" in page
    assert f"?stream_id={log['writer']}" in page
