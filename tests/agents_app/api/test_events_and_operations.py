"""`/api/v1/events/` (audit), `/api/v1/projections/` (staff), health probes and unknown URLs."""

import threading
import time
import uuid
from types import SimpleNamespace
from urllib.parse import urlencode

import kombu.exceptions
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import events.tasks
from agents_app import services
from events.models import Checkpoint, Event, ProjectionRun
from events.services import event_append
from events.types import NewEvent
from events.upcasting import register_upcaster, unregister_upcaster
from project.celery import app as celery_app
from project.celery import background_wait
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENTS = "/api/v1/agents/"
EVENTS = "/api/v1/events/"
PROJECTIONS = "/api/v1/projections/"
PROJECTION_NAMES = ["agents.current", "agents.revisions"]


def pause() -> None:
    time.sleep(0.003)  # SQLite records milliseconds: keep each event's instant distinct


@pytest.fixture
def log(api, users, django_capture_on_commit_callbacks):
    """Six events over two agents, three actors and two sources, oldest first:

    1 alpha created (editor, api)   2 alpha revised (editor, api)   3 beta created (admin, api)
    4 alpha label moved (publisher) 5 alpha renamed to gamma (editor) 6 beta revised (cli, alice)
    """
    api.as_user(users["editor"])
    alpha = api.post(AGENTS, {"content": agent_text("alpha"), "reason": "new"}).json()
    pause()
    api.put(f"{AGENTS}alpha/", {"content": agent_text("alpha", body="v2\n")}, HTTP_IF_MATCH='"1"')
    pause()
    beta = api.as_user(users["admin"]).post(AGENTS, {"content": agent_text("beta")}).json()
    pause()
    api.as_user(users["publisher"]).put(f"{AGENTS}alpha/labels/production/", {"revision": 2})
    pause()
    api.as_user(users["editor"]).put(
        f"{AGENTS}alpha/", {"content": agent_text("gamma", body="v2\n")}, HTTP_IF_MATCH='"3"'
    )
    pause()
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_revise(
            agent_id=uuid.UUID(beta["id"]),
            content=agent_text("beta", body="from the command line\n"),
            context=services.ChangeContext(actor="alice", source="cli", reason="script"),
        )
    api.as_user(users["auditor"])
    events = list(Event.objects.order_by("position"))
    assert [event.type for event in events] == [
        "agent.created",
        "agent.revised",
        "agent.created",
        "agent.label_moved",
        "agent.revised",
        "agent.revised",
    ]
    return {"alpha": alpha["id"], "beta": beta["id"], "events": events}


def positions(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [event["position"] for event in response.json()["results"]]


def at(position: int, log) -> str:
    return next(event for event in log["events"] if event.position == position).recorded_at.isoformat()


# ---------------------------------------------------------------------------------------
# /events/
# ---------------------------------------------------------------------------------------


def test_the_event_log_lists_every_event_oldest_first_without_content(api, log):
    response = api.get(EVENTS)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["next"] is None
    assert [event["position"] for event in body["results"]] == [event.position for event in log["events"]]
    first, stored = body["results"][0], log["events"][0]
    assert first["event_id"] == str(stored.event_id) and first["stream_id"] == log["alpha"]
    assert (first["stream_version"], first["type"], first["schema_version"]) == (1, "agent.created", 1)
    assert first["data"] == {"revision": 1}  # content left out
    assert first["metadata"]["actor"] == "editor" and first["metadata"]["reason"] == "new"
    assert first["hash"] == stored.hash and first["recorded_at"]
    assert all("content" not in event["data"] for event in body["results"])
    assert body["results"][3]["data"] == {"label": "production", "revision": 2}


def test_include_content_adds_the_stored_file_to_content_events(api, log):
    body = api.get(f"{EVENTS}?include=content").json()

    contents = [event["data"].get("content") for event in body["results"]]
    assert contents == [event.data.get("content") for event in log["events"]]
    assert contents[0] == agent_text("alpha") and contents[3] is None
    assert_problem(api.get(f"{EVENTS}?include=everything"), 400, "invalid-parameter")


def test_events_filter_by_agent_name_any_former_name_and_id(api, log):
    alpha = [log["events"][i].position for i in (0, 1, 3, 4)]
    beta = [log["events"][i].position for i in (2, 5)]

    assert positions(api.get(f"{EVENTS}?agent=alpha")) == alpha
    assert positions(api.get(f"{EVENTS}?agent=gamma")) == alpha  # the name it has now
    assert positions(api.get(f"{EVENTS}?agent={log['alpha']}")) == alpha
    assert positions(api.get(f"{EVENTS}?agent={log['beta']}")) == beta
    assert positions(api.get(f"{EVENTS}?agent=ghost")) == []
    assert positions(api.get(f"{EVENTS}?agent={uuid.uuid4()}")) == []
    body = assert_problem(api.get(f"{EVENTS}?agent=Not%20A%20Name"), 400, "invalid-parameter")
    assert body["errors"][0]["field"] == "agent"


def test_events_filter_by_type_actor_and_source(api, log):
    events = log["events"]

    assert positions(api.get(f"{EVENTS}?type=agent.created")) == [events[0].position, events[2].position]
    both = [events[0].position, events[2].position, events[3].position]
    assert positions(api.get(f"{EVENTS}?type=agent.created,agent.label_moved")) == both
    assert positions(api.get(f"{EVENTS}?type=agent.created&type=agent.label_moved")) == both
    assert positions(api.get(f"{EVENTS}?type=agent.exploded")) == []
    assert positions(api.get(f"{EVENTS}?actor=admin")) == [events[2].position]
    assert positions(api.get(f"{EVENTS}?actor=publisher")) == [events[3].position]
    assert positions(api.get(f"{EVENTS}?source=cli")) == [events[5].position]
    assert positions(api.get(f"{EVENTS}?source=api")) == [event.position for event in events[:5]]
    assert positions(api.get(f"{EVENTS}?actor=editor&type=agent.revised&agent=gamma")) == [
        events[1].position,
        events[4].position,
    ]


def test_events_filter_by_time_since_inclusive_until_exclusive(api, log):
    events = log["events"]
    query = urlencode(
        {"since": events[1].recorded_at.isoformat(), "until": events[4].recorded_at.isoformat()}
    )
    assert "%2B00%3A00" in query

    between = positions(api.get(f"{EVENTS}?{query}"))
    since_z = positions(api.get(f"{EVENTS}?since={events[5].recorded_at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"))
    # An unencoded "+" arrives as a space and is read back as the offset sign.
    until_plain = positions(api.get(f"{EVENTS}?until={events[1].recorded_at.isoformat()}"))

    assert between == [event.position for event in events[1:4]]
    assert since_z == [events[5].position]
    assert until_plain == [events[0].position]


def test_events_page_by_position_with_after_and_next(api, log):
    all_positions = [event.position for event in log["events"]]

    seen, url, pages = [], f"{EVENTS}?limit=2&type=agent.created,agent.revised,agent.label_moved", 0
    while url:
        response = api.get(url)
        page = response.json()
        assert response.status_code == 200 and len(page["results"]) <= 2
        seen += [event["position"] for event in page["results"]]
        url, pages = page["next"], pages + 1
        if url:
            assert url.startswith("http://testserver/api/v1/events/?")
            assert f"after={seen[-1]}" in url and "limit=2" in url and "type=" in url

    assert seen == all_positions and pages == 3
    assert positions(api.get(f"{EVENTS}?after={all_positions[3]}")) == all_positions[4:]
    assert positions(api.get(f"{EVENTS}?after={all_positions[-1]}")) == []
    assert positions(api.get(f"{EVENTS}?after=0&limit=1")) == all_positions[:1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=x", "after"),
        ("after=-1", "after"),
        ("after=1.5", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("since=yesterday", "since"),
        ("since=2026-01-01T00:00:00", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
    ],
)
def test_bad_event_list_parameters_are_400_naming_the_parameter(api, users, log, query, field):
    body = assert_problem(api.get(f"{EVENTS}?{query}"), 400, "invalid-parameter")

    assert body["errors"][0]["field"] == field


def test_the_event_log_is_for_auditors_only(api, users, log):
    for role in ("viewer", "editor", "publisher", "nobody", "staff"):
        assert_problem(api.as_user(users[role]).get(EVENTS), 403, "permission-denied")
        assert_problem(api.get(f"{EVENTS}{log['events'][0].position}/"), 403, "permission-denied")
    assert api.as_user(users["admin"]).get(EVENTS).status_code == 200
    for path in (EVENTS, f"{EVENTS}{log['events'][0].position}/"):
        response = api.anonymous().get(path)
        assert_problem(response, 401, "not-authenticated")
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'


# ---------------------------------------------------------------------------------------
# /events/{position}/
# ---------------------------------------------------------------------------------------


def test_one_event_has_its_content_hash_and_no_previous_hash_at_stream_version_one(api, log):
    first = log["events"][0]

    response = api.get(f"{EVENTS}{first.position}/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["position"] == first.position and body["stream_version"] == 1
    assert body["hash"] == first.hash and len(body["hash"]) == 64
    assert body["previous_hash"] is None
    assert body["data"]["content"] == agent_text("alpha")  # the whole event


def test_one_event_names_the_hash_of_the_event_before_it_in_its_stream(api, log):
    events = log["events"]
    # beta's second event follows alpha's events in the log, but chains to beta's first.
    for event, before in ((events[1], events[0]), (events[3], events[1]), (events[5], events[2])):
        body = api.get(f"{EVENTS}{event.position}/").json()
        assert body["stream_version"] == before.stream_version + 1
        assert body["previous_hash"] == before.hash != body["hash"]
    # The first event of the second stream starts a new chain.
    assert api.get(f"{EVENTS}{events[2].position}/").json()["previous_hash"] is None


def test_an_unknown_event_position_is_a_404_problem(api, log):
    assert_problem(api.get(f"{EVENTS}{log['events'][-1].position + 1}/"), 404, "not-found")
    assert_problem(api.get(f"{EVENTS}0/"), 404, "not-found")
    assert_problem(api.get(f"{EVENTS}99999999999999999999999/"), 404, "not-found")


# ---------------------------------------------------------------------------------------
# /projections/
# ---------------------------------------------------------------------------------------


def test_staff_see_each_projection_with_its_checkpoint_and_lag(api, users, log):
    head = log["events"][-1].position

    response = api.as_user(users["staff"]).get(PROJECTIONS)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [row["name"] for row in results] == PROJECTION_NAMES
    for row in results:
        assert set(row) == {
            "name",
            "generation",
            "position",
            "head_position",
            "lag_events",
            "lag_seconds",
            "failed_position",
            "failed_error",
            "last_run",
        }
        assert (row["generation"], row["position"], row["head_position"]) == (1, head, head)
        assert row["lag_events"] == 0 and row["lag_seconds"] == 0
        assert row["last_run"] is None


def test_projection_lag_counts_the_events_not_yet_applied(api, users, log, settings):
    settings.PROJECTION_READ_YOUR_WRITES = False  # the append leaves the views to the workers
    event_append(
        stream_id=uuid.uuid4(),
        expected_version=0,
        events=[NewEvent(type="test.noted", data={})],
        metadata={"actor": "t", "source": "system"},
    )  # outside the capture: no catch-up runs

    results = api.as_user(users["admin"]).get(PROJECTIONS).json()["results"]

    assert [(row["lag_events"], row["head_position"] - row["position"]) for row in results] == [
        (1, 1),
        (1, 1),
    ]
    assert all(row["lag_seconds"] >= 0 for row in results)


def test_projections_are_for_staff_only(api, users, log):
    for role in ("viewer", "editor", "publisher", "auditor", "nobody"):
        api.as_user(users[role])
        assert_problem(api.get(PROJECTIONS), 403, "permission-denied")
        assert_problem(api.post(f"{PROJECTIONS}agents.current/rebuild/"), 403, "permission-denied")
    response = api.anonymous().get(PROJECTIONS)
    assert_problem(response, 401, "not-authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert_problem(api.post(f"{PROJECTIONS}agents.current/rebuild/"), 401, "not-authenticated")
    assert ProjectionRun.objects.count() == 0


# The rebuild runs on another thread, so it must see a committed log: a transactional test,
# which only PostgreSQL can flush (SQLite's append-only triggers refuse the DELETE). The flush
# also empties the groups of migration 0003: the writes are a superuser's.
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rebuild_is_accepted_with_202_and_runs_after_the_request_commits(api, users, background_tasks):
    api.as_user(users["admin"])
    api.post(AGENTS, {"content": agent_text("gamma")})
    api.put(f"{AGENTS}gamma/", {"content": agent_text("gamma", body="v2\n")}, HTTP_IF_MATCH='"1"')
    api.put(f"{AGENTS}gamma/labels/production/", {"revision": 2})
    stored = Event.objects.count()
    assert stored == 3

    response = api.as_user(users["staff"]).post(f"{PROJECTIONS}agents.current/rebuild/")
    background_wait()

    assert response.status_code == 202, response.content
    assert response.json() == {"projection": "agents.current", "queued": True, "status": PROJECTIONS}
    run = ProjectionRun.objects.get()
    assert (run.projection, run.verified, run.result) == ("agents.current", True, ProjectionRun.Result.OK)
    assert run.events == stored and run.finished_at is not None
    live = Checkpoint.objects.get(projection="agents.current", is_live=True).generation
    listed = {row["name"]: row for row in api.get(PROJECTIONS).json()["results"]}
    assert listed["agents.current"]["generation"] == live > 1
    assert listed["agents.current"]["last_run"]["result"] == "ok"
    assert listed["agents.current"]["last_run"]["events"] == stored
    assert listed["agents.revisions"]["last_run"] is None
    # The rebuilt view answers reads as the old one did.
    assert api.as_user(users["admin"]).get(f"{AGENTS}gamma/").json()["labels"] == {"production": 2}


def test_a_rebuild_is_accepted_with_202_and_its_run_and_new_generation_are_listed(api, users, log):
    # The rebuild runs in the test (TASKS_EAGER_IN_BACKGROUND off, tests/conftest.py).
    api.as_user(users["staff"])

    response = api.post(f"{PROJECTIONS}agents.current/rebuild/")

    assert response.status_code == 202, response.content
    assert response.json() == {"projection": "agents.current", "queued": True, "status": PROJECTIONS}
    run = ProjectionRun.objects.get()
    assert (run.projection, run.verified, run.result) == ("agents.current", True, ProjectionRun.Result.OK)
    assert run.events == len(log["events"]) and run.finished_at is not None
    assert Checkpoint.objects.get(projection="agents.current", is_live=True).generation == 2
    listed = {row["name"]: row for row in api.get(PROJECTIONS).json()["results"]}
    assert listed["agents.current"]["generation"] == 2
    assert listed["agents.current"]["last_run"]["result"] == "ok"
    assert listed["agents.current"]["last_run"]["events"] == len(log["events"])
    assert listed["agents.revisions"]["last_run"] is None
    # The rebuilt view answers reads as the old one did.
    assert api.as_user(users["viewer"]).get(f"{AGENTS}gamma/").json()["labels"] == {"production": 2}


def test_rebuilding_an_unknown_projection_is_404_and_queues_nothing(api, users, log):
    assert_problem(
        api.as_user(users["staff"]).post(f"{PROJECTIONS}agents.nothing/rebuild/"), 404, "not-found"
    )
    assert ProjectionRun.objects.count() == 0


# ---------------------------------------------------------------------------------------
# Health probes and unknown URLs
# ---------------------------------------------------------------------------------------


@pytest.fixture
def no_broker(settings):
    settings.REDIS_URL = ""  # no broker to check: only the database and the projections
    return settings


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/healthz"])
def test_healthz_answers_anonymous_callers(api, path):
    response = api.anonymous().get(path)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/readyz", "/api/v1/readyz"])
def test_readyz_answers_anonymous_callers_when_the_views_keep_up(api, users, no_broker, path):
    api.as_user(users["editor"]).post(AGENTS, {"content": agent_text("alpha")})

    response = api.anonymous().get(path)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "status": "ready",
        "checks": {
            "database": {"ok": True},
            "projections": {
                "ok": True,
                "lag_events": {"agents.current": 0, "agents.revisions": 0},
                "max_lag_events": no_broker.READY_MAX_LAG_EVENTS,
            },
            # No verification stored yet: reported, not a reason to stop (tests/security/test_tamper.py).
            "log_integrity": {"ok": True, "verified": False},
        },
    }


def test_readyz_is_503_when_the_projections_lag_beyond_the_threshold(api, no_broker):
    no_broker.READY_MAX_LAG_EVENTS = 0
    event_append(
        stream_id=uuid.uuid4(),
        expected_version=0,
        events=[NewEvent(type="test.noted", data={})],
        metadata={"actor": "t", "source": "system"},
    )  # outside the capture: no catch-up runs

    response = api.anonymous().get("/readyz")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["projections"] == {
        "ok": False,
        "lag_events": {"agents.current": 1, "agents.revisions": 1},
        "max_lag_events": 0,
    }


@pytest.mark.parametrize(
    "path", ["/api/v1/no-such-thing/", "/api/v1/agents/reviewer/nope/", "/api/v1/events/x/", "/nowhere/"]
)
def test_an_unknown_url_is_a_404_problem(api, users, settings, path):
    settings.DEBUG = False  # with DEBUG on, Django shows its technical 404 page instead

    for client in (api.anonymous(), api.as_user(users["viewer"])):
        body = assert_problem(client.get(path), 404, "not-found")
        assert body["detail"] == f"nothing at {path}"


def test_no_event_in_the_list_claims_a_null_previous_hash_when_its_stream_has_an_earlier_event(api, log):
    hashes = {(event.stream_id, event.stream_version): event.hash for event in log["events"]}

    results = api.get(EVENTS).json()["results"]

    for event in results:
        if event["stream_version"] > 1 and "previous_hash" in event:
            before = hashes[(uuid.UUID(event["stream_id"]), event["stream_version"] - 1)]
            assert event["previous_hash"] == before, event


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_probes_answer_over_plain_http_even_when_https_is_enforced(api, no_broker, path):
    no_broker.SECURE_SSL_REDIRECT = True

    response = api.anonymous().get(path)

    assert response.status_code == 200, (response.status_code, response.get("Location"))


def _event_page_select(api, url: str) -> str:
    """The SELECT list of the query that reads the page of events."""
    with CaptureQueriesContext(connection) as queries:
        response = api.get(url)
    assert response.status_code == 200, response.content
    table = Event._meta.db_table
    [page_query] = [q["sql"] for q in queries.captured_queries if f'FROM "{table}"' in q["sql"]]
    return page_query.split(f' FROM "{table}"')[0]


def test_the_events_list_leaves_content_out_at_the_database_unless_asked(api, log):
    lean = _event_page_select(api, EVENTS)
    whole = _event_page_select(api, f"{EVENTS}?include=content")

    # Without include=content, `data` is only read through the expression that drops the key.
    assert lean.count('"data"') == 1 and ("json_remove" in lean or "::text" in lean), lean
    assert "json_remove" not in whole and "::text" not in whole, whole


def test_an_event_an_upcaster_needs_whole_is_upcast_from_its_whole_data_then_listed_without_content(api, log):
    first = log["events"][0]

    # A newer shape of created events, computed from the key the list leaves out.
    @register_upcaster(first.type, first.schema_version)
    def _length_from_content(data):
        return {**data, "length": len(data["content"])}

    try:
        body = api.get(f"{EVENTS}?limit=2").json()
    finally:
        unregister_upcaster(first.type, first.schema_version)

    assert body["results"][0]["data"] == {"revision": 1, "length": len(agent_text("alpha"))}
    assert body["results"][1]["data"] == {"revision": 2}


def test_the_202_of_a_rebuild_comes_before_the_rebuild_runs_in_the_embedded_mode(
    api, users, monkeypatch, background_tasks
):
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def blocked_rebuild(*, name, verify, **kwargs):
        started.set()
        release.wait(10)
        finished.set()
        return SimpleNamespace(events=0, differences=[])

    monkeypatch.setattr(events.tasks, "projection_rebuild", blocked_rebuild)
    try:
        response = api.as_user(users["staff"]).post(f"{PROJECTIONS}agents.current/rebuild/")
        assert response.status_code == 202, response.content
        assert not finished.is_set()  # answered while the rebuild had not run
        assert started.wait(10)  # it runs, on a background thread
    finally:
        release.set()
        background_wait()
    assert finished.is_set()


# Transactional: the request runs in autocommit as in production, so the queueing happens
# while the view still answers (inside the test's transaction it would wait for a commit).
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rebuild_the_broker_refuses_is_a_503_problem_and_nothing_runs(api, users, monkeypatch):
    def refused(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Error 111 connecting to redis. Connection refused.")

    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    monkeypatch.setattr(events.tasks.projection_rebuild_task, "apply_async", refused)

    response = api.as_user(users["staff"]).post(f"{PROJECTIONS}agents.current/rebuild/")

    body = assert_problem(response, 503, "queue-unavailable")
    assert "not queued" in body["detail"] and response["Retry-After"]
    assert ProjectionRun.objects.count() == 0
