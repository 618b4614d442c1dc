"""Faults of the store and the views as the API reports them: a projection that cannot apply a
write (503 naming the stored version, retry-safe, the failure on /projections/), and an append
lock that stays taken (503 with Retry-After)."""

import threading
import uuid

import pytest
from django.db import connection, transaction

from agents_app.projections import CURRENT, REVISIONS
from agents_app.selectors import revision_get
from events.models import Event
from events.projections import projection_get
from events.services import APPEND_LOCK_KEY
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENTS = "/api/v1/agents/"
PROJECTIONS = "/api/v1/projections/"


@pytest.fixture
def current_refuses_bodies_with_boom(monkeypatch):
    """A bug in the current view: it cannot apply a revision whose content holds BOOM."""
    projection = projection_get(CURRENT)
    real_apply = type(projection).apply

    def apply(self, events, *, generation):
        if any("BOOM" in event.data.get("content", "") for event in events):
            raise ValueError("the current view cannot parse BOOM")
        return real_apply(self, events, generation=generation)

    monkeypatch.setattr(type(projection), "apply", apply)
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda *args, **kwargs: None)


def assert_current_alone_failed(response, staff_api, created: dict, error: str) -> None:
    """The write answered 503 naming its stored version 2; the current view recorded the failure
    (the event and `error`); the revisions view applied the event."""
    problem = assert_problem(response, 503, "views-behind")
    assert problem["stored_version"] == 2
    assert response["Retry-After"]
    assert "agents.current failed on the event at position" in problem["detail"]
    [stored] = Event.objects.filter(stream_id=created["id"], stream_version=2)
    assert "BOOM" in revision_get(agent_id=uuid.UUID(created["id"]), revision=2).content
    status = {row["name"]: row for row in staff_api.get(PROJECTIONS).json()["results"]}
    assert status[CURRENT]["failed_position"] == stored.position
    assert error in status[CURRENT]["failed_error"]
    assert status[REVISIONS]["failed_position"] is None and status[REVISIONS]["lag_events"] == 0


@pytest.mark.parametrize("idempotency_key", [None, "revise-with-boom-1"])
def test_a_write_a_view_cannot_apply_is_stored_and_answers_503_naming_the_version_and_the_failure(
    editor_api, created, users, current_refuses_bodies_with_boom, idempotency_key
):
    headers = {"HTTP_IF_MATCH": '"1"'}
    if idempotency_key:
        headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    body = {"content": agent_text("reviewer", body="BOOM\n"), "reason": "a view cannot take it"}

    response = editor_api.put(f"{AGENTS}reviewer/", body, **headers)

    assert_current_alone_failed(
        response, editor_api.as_user(users["staff"]), created, "the current view cannot parse BOOM"
    )

    # A retry stores nothing new: with the key it gets the same answer, with If-Match a 412.
    retry = editor_api.as_user(users["editor"]).put(f"{AGENTS}reviewer/", body, **headers)
    if idempotency_key:
        assert_problem(retry, 503, "views-behind")
        assert retry.json()["stored_version"] == 2 and retry["Idempotent-Replayed"] == "true"
    else:
        assert_problem(retry, 412)
    assert Event.objects.filter(stream_id=created["id"]).count() == 2


@pytest.fixture
def current_write_fails_in_the_database_on_boom(monkeypatch):
    """The current view's UPDATE fails in the database (not in Python) for content holding BOOM.

    Inside the inline apply that UPDATE waits to go with the revisions view's INSERT
    (events.rows.rows_joined): the error then comes back with the other view's statement."""
    import agents_app.projections as projections
    from events.rows import rows_execute

    def failing(sql, params):
        if any(isinstance(param, str) and "BOOM" in param for param in params):
            sql = sql.replace(" WHERE ", " WHERE no_such_column = 1 AND ", 1)
        rows_execute(sql, params)

    monkeypatch.setattr(projections, "rows_execute", failing)
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda *args, **kwargs: None)


# PostgreSQL: only there do the views' writes share a round trip (elsewhere each goes at once;
# and SQLite reports an unknown column as an OperationalError, which the runner takes for a
# lost database).
@pytest.mark.postgres
def test_a_view_whose_write_fails_in_the_database_is_the_one_recorded_as_failed(
    editor_api, created, users, current_write_fails_in_the_database_on_boom
):
    body = {"content": agent_text("reviewer", body="BOOM\n"), "reason": "the database refuses it"}

    response = editor_api.put(f"{AGENTS}reviewer/", body, HTTP_IF_MATCH='"1"')

    assert_current_alone_failed(response, editor_api.as_user(users["staff"]), created, "no_such_column")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_write_that_cannot_get_the_append_lock_in_time_answers_503_with_retry_after_and_stores_nothing(
    settings, users
):
    from tests.agents_app.api.conftest import Api

    settings.APPEND_LOCK_TIMEOUT_SECONDS = 0.3
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK_KEY])
            holding.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(5)
        api = Api(_run_now).as_user(users["admin"])  # groups do not survive a transactional flush
        response = api.post(AGENTS, {"content": agent_text("late"), "reason": "while the lock is held"})
    finally:
        release.set()
        thread.join(10)

    assert_problem(response, 503, "store-busy")
    assert response["Retry-After"] == "2"
    assert not Event.objects.exists()


class _run_now:
    """Stands in for django_capture_on_commit_callbacks where commits are real (transaction=True)."""

    def __init__(self, execute: bool = True) -> None:
        pass

    def __enter__(self):
        return []

    def __exit__(self, *exc):
        return False
