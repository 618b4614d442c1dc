"""Who may do what over HTTP: authentication, permissions by role, throttling, CORS, idempotency."""

import pytest
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.throttling import SimpleRateThrottle

from agents_app.api.views import ApiView
from agents_app.models import IdempotencyRecord
from agents_app.permissions import VIEW
from agents_app.tokens import api_token_create, api_token_revoke
from events.models import Event
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENTS = "/api/v1/agents/"
READS = [
    AGENTS,
    "/api/v1/agents/reviewer/",
    "/api/v1/agents/reviewer/revisions/",
    "/api/v1/agents/reviewer/revisions/1/",
    "/api/v1/agents/reviewer/diff/",
    "/api/v1/agents/reviewer/blame/",
    "/api/v1/agents/reviewer/labels/",
    "/api/v1/diff/?left=reviewer@1&right=reviewer@1",
]


@pytest.mark.parametrize("path", [*READS, "/api/v1/events/", "/api/v1/events/1/", "/api/v1/projections/"])
def test_anonymous_requests_get_401_with_a_bearer_challenge(api, created, path):
    response = api.anonymous().get(path)

    assert_problem(response, 401)
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/v1/schema/", "/api/v1/docs/"])
def test_health_schema_and_docs_need_no_login(api, path):
    assert api.anonymous().get(path).status_code == 200


@pytest.mark.parametrize("path", READS)
def test_a_user_without_the_view_permission_gets_403_on_every_read(api, users, created, path):
    assert_problem(api.as_user(users["nobody"]).get(path), 403)


@pytest.mark.parametrize("role", ["viewer", "auditor", "publisher", "editor", "admin"])
def test_every_role_with_view_permission_reads_agents(api, users, created, role):
    assert api.as_user(users[role]).get("/api/v1/agents/reviewer/").status_code == 200


# role -> may it (create, revise, move a label, archive, read events, see projections)?
MATRIX = {
    "viewer": (False, False, False, False, False, False),
    "editor": (True, True, False, True, False, False),
    "publisher": (False, False, True, False, False, False),
    "auditor": (False, False, False, False, True, False),
    "staff": (False, False, False, False, False, True),
    "admin": (True, True, True, True, True, True),
}


@pytest.mark.parametrize("role", MATRIX)
def test_each_operation_checks_its_own_permission(api, users, created, role):
    client = api.as_user(users[role])
    allowed = MATRIX[role]
    outcomes = (
        client.post(AGENTS, {"content": agent_text(f"new-{role}")}).status_code,
        client.put(
            "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body=role)}, HTTP_IF_MATCH="*"
        ).status_code,
        client.put("/api/v1/agents/reviewer/labels/production/", {"revision": 1}).status_code,
        client.delete("/api/v1/agents/reviewer/").status_code,
        client.get("/api/v1/events/").status_code,
        client.get("/api/v1/projections/").status_code,
    )

    assert [code != 403 for code in outcomes] == list(allowed), outcomes
    assert all(code in (200, 201, 403) for code in outcomes), outcomes


def test_a_refused_write_stores_nothing(api, users, created):
    api.as_user(users["viewer"]).put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="x")}, HTTP_IF_MATCH='"1"'
    )
    api.as_user(users["publisher"]).delete("/api/v1/agents/reviewer/")

    assert Event.objects.count() == 1


def test_a_bearer_token_authenticates_and_its_user_is_the_recorded_actor(api, users):
    _, token = api_token_create(user=users["editor"], name="ci")
    api.anonymous()

    response = api.post(AGENTS, {"content": agent_text("tokened")}, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 201, response.content
    assert Event.objects.get().metadata["actor"] == "editor"


def test_revoked_and_unknown_tokens_get_401_and_store_nothing(api, users):
    row, token = api_token_create(user=users["editor"])
    api_token_revoke(token=row)
    api.anonymous()

    revoked = api.post(AGENTS, {"content": agent_text("x")}, HTTP_AUTHORIZATION=f"Bearer {token}")
    unknown = api.get(AGENTS, HTTP_AUTHORIZATION="Bearer ar_not-a-real-token")

    assert_problem(revoked, 401)
    assert_problem(unknown, 401)
    assert Event.objects.count() == 0


def test_requests_over_the_user_rate_get_429_with_retry_after(api, users, monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "3/min"})
    client = api.as_user(users["viewer"])

    codes = [client.get(AGENTS).status_code for _ in range(4)]

    assert codes == [200, 200, 200, 429]
    response = client.get(AGENTS)
    body = assert_problem(response, 429)
    assert int(response["Retry-After"]) > 0 and "throttled" in body["detail"].lower()
    assert api.as_user(users["editor"]).get(AGENTS).status_code == 200  # per user, not global


def test_cors_is_closed_unless_origins_are_configured(api, users, settings):
    client = api.as_user(users["viewer"])

    closed = client.get(AGENTS, HTTP_ORIGIN="https://evil.example")
    settings.CORS_ALLOWED_ORIGINS = ["https://tools.example"]
    opened = client.get(AGENTS, HTTP_ORIGIN="https://tools.example")

    assert "Access-Control-Allow-Origin" not in closed
    assert opened["Access-Control-Allow-Origin"] == "https://tools.example"


def test_a_retry_with_the_same_idempotency_key_replays_the_first_answer(editor_api):
    body = {"content": agent_text("once"), "reason": "r"}

    first = editor_api.post(AGENTS, body, **{"Idempotency-Key": "create-once-1"})
    retry = editor_api.post(AGENTS, body, **{"Idempotency-Key": "create-once-1"})

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry["Location"] == first["Location"] and retry["ETag"] == first["ETag"]
    assert retry["Idempotent-Replayed"] == "true"
    assert Event.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_422_and_stores_nothing(editor_api):
    editor_api.post(AGENTS, {"content": agent_text("once")}, **{"Idempotency-Key": "k-1"})

    response = editor_api.post(AGENTS, {"content": agent_text("other")}, **{"Idempotency-Key": "k-1"})

    assert_problem(response, 422, "idempotency-key-reused")
    assert Event.objects.count() == 1


def test_idempotent_put_stores_one_revision_for_two_sends(editor_api, created):
    body = {"content": agent_text("reviewer", body="v2\n")}

    first = editor_api.put(
        "/api/v1/agents/reviewer/", body, HTTP_IF_MATCH='"1"', **{"Idempotency-Key": "put-1"}
    )
    retry = editor_api.put(
        "/api/v1/agents/reviewer/", body, HTTP_IF_MATCH='"1"', **{"Idempotency-Key": "put-1"}
    )

    assert first.status_code == retry.status_code == 200
    assert retry.json()["revision"] == 2
    assert Event.objects.count() == 2


def test_idempotency_keys_belong_to_one_user(api, users):
    body = {"content": agent_text("mine")}
    api.as_user(users["editor"]).post(AGENTS, body, **{"Idempotency-Key": "shared"})

    other = api.as_user(users["admin"]).post(AGENTS, body, **{"Idempotency-Key": "shared"})

    assert_problem(other, 409, "name-taken")  # not a replay of the editor's answer
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\tkey"])
def test_a_malformed_idempotency_key_is_400(editor_api, key):
    response = editor_api.post(AGENTS, {"content": agent_text("k")}, **{"Idempotency-Key": key})

    body = assert_problem(response, 400)
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert Event.objects.count() == 0


def test_a_failed_request_does_not_burn_its_idempotency_key(editor_api):
    editor_api.post(AGENTS, {"content": "not a document"}, **{"Idempotency-Key": "retry-me"})

    fixed = editor_api.post(AGENTS, {"content": "not a document"}, **{"Idempotency-Key": "retry-me"})

    assert_problem(fixed, 422, "invalid-document")
    assert IdempotencyRecord.objects.count() == 0


def test_an_oversized_body_is_413(editor_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = editor_api.post(AGENTS, {"content": agent_text("big", body="x" * 5000)})

    assert_problem(response, 413)
    assert Event.objects.count() == 0


def test_every_response_carries_a_request_id_and_a_sane_one_is_echoed(api, users):
    client = api.as_user(users["viewer"])

    generated = client.get(AGENTS)
    echoed = client.get(AGENTS, HTTP_X_REQUEST_ID="trace-123")
    refused = client.get(AGENTS, HTTP_X_REQUEST_ID="bad id\n")

    assert len(generated["X-Request-ID"]) == 32
    assert echoed["X-Request-ID"] == "trace-123"
    assert refused["X-Request-ID"] != "bad id\n"


@pytest.fixture
def views_stuck(settings, monkeypatch):
    """The views never catch up: the write leaves its event to workers that do not come."""
    settings.PROJECTION_READ_YOUR_WRITES = False
    settings.PROJECTION_WAIT_SECONDS = 0
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda: None)
    monkeypatch.setattr("agents_app.api.views.base.projections_wait", lambda **kwargs: False)


def test_a_write_the_views_do_not_catch_up_with_is_a_503_naming_the_stored_version(
    editor_api, created, views_stuck
):
    body = {"content": agent_text("reviewer", body="v2\n")}

    response = editor_api.put("/api/v1/agents/reviewer/", body, HTTP_IF_MATCH='"1"')

    problem = assert_problem(response, 503, "views-behind")
    assert problem["stored_version"] == 2 and "stored as version 2" in problem["detail"]
    assert int(response["Retry-After"]) > 0
    assert Event.objects.count() == 2  # the write went through; only its answer could not be read


def test_an_idempotent_write_the_views_do_not_catch_up_with_stores_nothing_and_can_be_retried(
    editor_api, created, views_stuck, settings, monkeypatch
):
    body = {"content": agent_text("reviewer", body="v2\n")}

    def send():
        return editor_api.put(
            "/api/v1/agents/reviewer/", body, HTTP_IF_MATCH='"1"', **{"Idempotency-Key": "stuck-1"}
        )

    problem = assert_problem(send(), 503, "views-behind")

    assert "was not stored" in problem["detail"] and "stored_version" not in problem
    assert Event.objects.count() == 1 and not IdempotencyRecord.objects.exists()
    settings.PROJECTION_READ_YOUR_WRITES = True
    monkeypatch.undo()  # the views move again: the retry with the same key goes through
    assert send().status_code == 200
    assert Event.objects.count() == 2


class _ForgotToMapPost(ApiView):
    """A view that implements POST and DELETE but maps a permission for GET only."""

    permissions = {"GET": VIEW}

    def get(self, request):
        return Response({"read": True})

    def post(self, request):
        return Response({"written": True})

    def delete(self, request):
        return Response({"deleted": True})


@pytest.mark.parametrize(
    ("method", "status"),
    [("get", 200), ("head", 200), ("options", 200), ("post", 403), ("delete", 403), ("put", 405)],
)
def test_a_method_the_view_implements_but_does_not_map_is_refused(users, method, status):
    request = getattr(APIRequestFactory(), method)("/anything/")
    force_authenticate(request, user=users["admin"])  # a superuser: every permission, still refused

    response = _ForgotToMapPost.as_view()(request)

    assert response.status_code == status, response.data
