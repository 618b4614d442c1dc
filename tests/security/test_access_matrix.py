"""Who may do what: every API operation and every admin page against every role, in two tables.

Each cell is its own test on a fresh registry (the agent `reviewer` at revision 2 with the
label `staging`, the archived agent `retired`), so an allowed write in one cell cannot change
the answer of another. A refused request (401, 403, 405, login) must also store nothing.

Then: expired, revoked and orphaned tokens are refused everywhere; no table holds a token in
clear; the recorded actor is always the authenticated user, whatever the request claims; and
password logins are throttled.
"""

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client, RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from agents_app.admin import opened_token
from agents_app.models import ApiToken, WebhookDelivery
from agents_app.promotions.services import label_policy_set, promotion_request
from agents_app.selectors import agent_get
from agents_app.services import ChangeContext, agent_archive, agent_create, agent_label_move, agent_revise
from agents_app.tokens import PREFIX_LENGTH, api_token_create, api_token_revoke
from agents_app.webhooks.services import webhook_create
from events.models import Event, LogVerification, ProjectionRun
from events.runner import projections_catch_up_all
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db

ROLES = ("anon", "viewer", "editor", "publisher", "auditor", "staff", "super")
GROUPS = {
    "viewer": "Agent viewers",
    "editor": "Agent editors",
    "publisher": "Agent publishers",
    "auditor": "Auditors",
}
LOGIN = "login"  # a 302 to the admin login page, with ?next= the page asked for
ADMIN = "/admin"
AGENT = f"{ADMIN}/agents_app/agentcurrent"
EVENT = f"{ADMIN}/events/event"
RUNS = f"{ADMIN}/events/projectionrun"


@dataclass(frozen=True)
class Row:
    """One operation: a method on a path, and the answer each role gets (in ROLES order)."""

    method: str
    path: str
    codes: tuple[int | str, ...]
    body: dict[str, Any] | Callable[["World"], dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    def expected(self, role: str) -> int | str:
        return self.codes[ROLES.index(role)]


def row(method: str, path: str, *codes: int | str, body=None, **headers: str) -> Row:
    assert len(codes) == len(ROLES), (method, path)
    return Row(method, path, codes, body, headers)


REASON = {"reason": "access matrix"}
NEW_FILE = {"content": agent_text("new-agent"), **REASON}
REVISED_FILE = {"content": agent_text("reviewer", body="Revision three.\n"), **REASON}


# The REST API. The groups' users here have no staff flag (API users need none); `staff` is a
# staff user in no group, `super` a superuser. Placeholders: {event} is the first event's position.
# fmt: off
API_MATRIX = [
    #   method    path                                            anon viewer editor publ audit staff super
    row("GET",    "/api/v1/agents/",                               401, 200, 200, 200, 200, 403, 200),
    row("POST",   "/api/v1/agents/",                               401, 403, 201, 403, 403, 403, 201,
        body=NEW_FILE),
    row("DELETE", "/api/v1/agents/",                               401, 405, 405, 405, 405, 405, 405),
    row("GET",    "/api/v1/agents/reviewer/",                      401, 200, 200, 200, 200, 403, 200),
    row("PUT",    "/api/v1/agents/reviewer/",                      401, 403, 200, 403, 403, 403, 200,
        body=REVISED_FILE, HTTP_IF_MATCH='"3"'),
    row("PATCH",  "/api/v1/agents/reviewer/",                      401, 403, 200, 403, 403, 403, 200,
        body={"frontmatter": {"model": "opus"}, **REASON}, HTTP_IF_MATCH='"3"'),
    row("DELETE", "/api/v1/agents/reviewer/",                      401, 403, 200, 403, 403, 403, 200,
        body=REASON),
    row("POST",   "/api/v1/agents/reviewer/",                      401, 405, 405, 405, 405, 405, 405),
    row("POST",   "/api/v1/agents/retired/restore/",               401, 403, 200, 403, 403, 403, 200,
        body=REASON),
    row("POST",   "/api/v1/agents/reviewer/revert/",               401, 403, 200, 403, 403, 403, 200,
        body={"to": "1", **REASON}),
    row("GET",    "/api/v1/agents/reviewer/revisions/",            401, 200, 200, 200, 200, 403, 200),
    row("GET",    "/api/v1/agents/reviewer/revisions/1/",          401, 200, 200, 200, 200, 403, 200),
    row("GET",    "/api/v1/agents/reviewer/diff/",                 401, 200, 200, 200, 200, 403, 200),
    row("GET",    "/api/v1/agents/reviewer/blame/",                401, 200, 200, 200, 200, 403, 200),
    row("GET",    "/api/v1/agents/reviewer/labels/",               401, 200, 200, 200, 200, 403, 200),
    row("PUT",    "/api/v1/agents/reviewer/labels/production/",    401, 403, 403, 200, 403, 403, 200,
        body={"revision": 1, **REASON}),
    row("DELETE", "/api/v1/agents/reviewer/labels/staging/",       401, 403, 403, 200, 403, 403, 200,
        body=REASON),
    row("GET",    "/api/v1/agents/reviewer/labels/staging/",       401, 405, 405, 405, 405, 405, 405),
    row("GET",    "/api/v1/diff/?left=reviewer@1&right=reviewer@2", 401, 200, 200, 200, 200, 403, 200),
    row("GET",    "/api/v1/permissions/report/",                   401, 200, 200, 200, 200, 403, 200),
    row("GET",    "/api/v1/events/",                               401, 403, 403, 403, 200, 403, 200),
    row("POST",   "/api/v1/events/",                               401, 405, 405, 405, 405, 405, 405),
    row("GET",    "/api/v1/events/{event}/",                       401, 403, 403, 403, 200, 403, 200),
    row("GET",    "/api/v1/projections/",                          401, 403, 403, 403, 403, 200, 200),
    row("POST",   "/api/v1/projections/agents.current/rebuild/",   401, 403, 403, 403, 403, 202, 202),
    row("GET",    "/api/v1/projections/agents.current/rebuild/",   401, 403, 403, 403, 403, 405, 405),
    row("GET",    "/api/v1/webhooks/",                             401, 403, 403, 403, 403, 200, 200),
    row("POST",   "/api/v1/webhooks/",                             401, 403, 403, 403, 403, 201, 201,
        body={"url": "https://93.184.216.34/hook", "events": ["*"], "description": "matrix"}),
    row("GET",    "/api/v1/webhooks/{webhook}/",                   401, 403, 403, 403, 403, 200, 200),
    row("PATCH",  "/api/v1/webhooks/{webhook}/",                   401, 403, 403, 403, 403, 200, 200,
        body={"description": "changed"}),
    row("DELETE", "/api/v1/webhooks/{webhook}/",                   401, 403, 403, 403, 403, 204, 204),
    row("GET",    "/api/v1/webhooks/{webhook}/deliveries/",        401, 403, 403, 403, 403, 200, 200),
    row("POST",   "/api/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver/",
                                                                   401, 403, 403, 403, 403, 202, 202),
    row("GET",    "/api/v1/labels/prod/policy/",                   401, 403, 403, 403, 403, 200, 200),
    row("PUT",    "/api/v1/labels/prod/policy/",                   401, 403, 403, 403, 403, 200, 200,
        body={"protected": True, "approvals": 2, **REASON}),
    row("PUT",    "/api/v1/agents/reviewer/labels/canary/",        401, 403, 403, 202, 403, 403, 202,
        body={"revision": 2, **REASON}),
    row("GET",    "/api/v1/promotions/",                           401, 200, 200, 200, 200, 403, 200),
    row("GET",    "/api/v1/promotions/{promotion}/",               401, 200, 200, 200, 200, 403, 200),
    row("POST",   "/api/v1/promotions/{promotion}/approve/",       401, 403, 403, 200, 403, 403, 200,
        body={"comment": "matrix"}),
    row("POST",   "/api/v1/promotions/{promotion}/reject/",        401, 403, 403, 200, 403, 403, 200,
        body={"comment": "matrix"}),
    # Only the requester (`setup`, a user of no role here) withdraws: everyone else is refused.
    row("POST",   "/api/v1/promotions/{promotion}/withdraw/",      401, 403, 403, 403, 403, 403, 403,
        body={}),
    row("GET",    "/healthz",                                      200, 200, 200, 200, 200, 200, 200),
    row("GET",    "/readyz",                                       200, 200, 200, 200, 200, 200, 200),
    row("GET",    "/api/v1/healthz",                               200, 200, 200, 200, 200, 200, 200),
    row("GET",    "/api/v1/readyz",                                200, 200, 200, 200, 200, 200, 200),
    row("POST",   "/readyz",                                       405, 405, 405, 405, 405, 405, 405),
    row("GET",    "/api/v1/schema/",                               200, 200, 200, 200, 200, 200, 200),
    row("GET",    "/api/v1/docs/",                                 200, 200, 200, 200, 200, 200, 200),
]

# The admin. The groups' users here are staff (the admin lets in no one else; see
# test_a_user_without_the_staff_flag_is_sent_to_the_login_page_by_every_admin_page).
# Placeholders: {agent} is reviewer's id, {retired} the archived agent's, {event} a position.
ADMIN_MATRIX = [
    #   method  path                                          anon   viewer editor publ   audit  staff  super
    row("GET",  f"{ADMIN}/",                                  LOGIN, 200,   200,   200,   200,   200,   200),
    row("GET",  f"{AGENT}/",                                  LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/add/",                              LOGIN, 403,   200,   403,   403,   403,   200),
    row("POST", f"{AGENT}/add/",                              LOGIN, 403,   302,   403,   403,   403,   302,
        body=NEW_FILE),
    row("GET",  f"{AGENT}/{{agent}}/change/",                 LOGIN, 200,   200,   200,   200,   403,   200),
    row("POST", f"{AGENT}/{{agent}}/change/",                 LOGIN, 403,   302,   403,   403,   403,   302,
        body=lambda world: {**REVISED_FILE, "opened": opened_token(world.reviewer)}),
    row("GET",  f"{AGENT}/{{agent}}/history/",                LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/{{agent}}/compare/?a=1&b=2",        LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/{{agent}}/blame/",                  LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/{{agent}}/change/?at=2030-01-01T00:00:00",
                                                              LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/?at=2030-01-01T00:00:00",           LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/{{agent}}/revisions/1/raw/",        LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/{{agent}}/revisions/1/",            LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/permissions/",                      LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/permissions/?since=2026-01-01T00:00&until=2030-01-01T00:00",
                                                              LOGIN, 200,   200,   200,   200,   403,   200),
    row("GET",  f"{AGENT}/{{agent}}/revisions/1/revert/",     LOGIN, 403,   200,   403,   403,   403,   200),
    row("POST", f"{AGENT}/{{agent}}/revisions/1/revert/",     LOGIN, 403,   302,   403,   403,   403,   302,
        body=lambda world: {**REASON, "opened": opened_token(world.reviewer)}),
    row("GET",  f"{AGENT}/{{agent}}/archive/",                LOGIN, 403,   200,   403,   403,   403,   200),
    row("POST", f"{AGENT}/{{agent}}/archive/",                LOGIN, 403,   302,   403,   403,   403,   302,
        body=lambda world: {**REASON, "opened": opened_token(world.reviewer)}),
    row("GET",  f"{AGENT}/{{retired}}/restore/",              LOGIN, 403,   200,   403,   403,   403,   200),
    row("POST", f"{AGENT}/{{retired}}/restore/",              LOGIN, 403,   302,   403,   403,   403,   302,
        body=lambda world: {**REASON, "opened": opened_token(world.retired)}),
    row("GET",  f"{AGENT}/{{agent}}/labels/",                 LOGIN, 200,   200,   200,   200,   403,   200),
    row("POST", f"{AGENT}/{{agent}}/labels/",                 LOGIN, 403,   403,   302,   403,   403,   302,
        body=lambda world: {"label": "production", "revision": "1", **REASON,
                            "opened": opened_token(world.reviewer)}),
    row("GET",  f"{AGENT}/{{agent}}/labels/staging/remove/",  LOGIN, 403,   403,   200,   403,   403,   200),
    row("POST", f"{AGENT}/{{agent}}/labels/staging/remove/",  LOGIN, 403,   403,   302,   403,   403,   302,
        body=lambda world: {**REASON, "opened": opened_token(world.reviewer)}),
    row("GET",  f"{AGENT}/{{agent}}/delete/",                 LOGIN, 403,   403,   403,   403,   403,   403),
    row("GET",  f"{EVENT}/",                                  LOGIN, 403,   403,   403,   200,   403,   200),
    row("GET",  f"{EVENT}/{{event}}/change/",                 LOGIN, 403,   403,   403,   200,   403,   200),
    row("POST", f"{EVENT}/{{event}}/change/",                 LOGIN, 403,   403,   403,   403,   403,   403,
        body={"type": "agent.forged"}),
    row("GET",  f"{EVENT}/add/",                              LOGIN, 403,   403,   403,   403,   403,   403),
    row("POST", f"{EVENT}/add/",                              LOGIN, 403,   403,   403,   403,   403,   403,
        body={"type": "agent.forged"}),
    row("GET",  f"{EVENT}/{{event}}/delete/",                 LOGIN, 403,   403,   403,   403,   403,   403),
    row("POST", f"{EVENT}/{{event}}/delete/",                 LOGIN, 403,   403,   403,   403,   403,   403,
        body={"post": "yes"}),
    row("GET",  f"{RUNS}/",                                   LOGIN, 200,   200,   200,   200,   200,   200),
    row("GET",  f"{RUNS}/status/",                            LOGIN, 200,   200,   200,   200,   200,   200),
    row("POST", f"{RUNS}/status/",                            LOGIN, 302,   302,   302,   302,   302,   302,
        body={"projection": "agents.current"}),
    row("POST", f"{RUNS}/status/verify/",                     LOGIN, 302,   302,   302,   302,   302,   302),
    row("GET",  f"{RUNS}/status/verify/",                     LOGIN, 405,   405,   405,   405,   405,   405),
    row("GET",  f"{ADMIN}/events/logverification/",          LOGIN, 200,   200,   200,   200,   200,   200),
    row("GET",  f"{ADMIN}/agents_app/apitoken/",              LOGIN, 403,   403,   403,   403,   403,   200),
    row("GET",  f"{ADMIN}/agents_app/apitoken/add/",          LOGIN, 403,   403,   403,   403,   403,   200),
    row("POST", f"{ADMIN}/agents_app/apitoken/add/",          LOGIN, 403,   403,   403,   403,   403,   302,
        body=lambda world: {"user": world.users["super"].pk, "name": "ci", "days": "7"}),
    row("GET",  f"{ADMIN}/django_celery_beat/periodictask/",  LOGIN, 403,   403,   403,   403,   403,   200),
    row("GET",  f"{ADMIN}/agents_app/webhooksubscription/",   LOGIN, 403,   403,   403,   403,   403,   200),
    row("GET",  f"{ADMIN}/agents_app/webhooksubscription/{{webhook}}/change/",
                                                              LOGIN, 403,   403,   403,   403,   403,   200),
    row("GET",  f"{ADMIN}/agents_app/webhookdelivery/",       LOGIN, 403,   403,   403,   403,   403,   200),
    row("GET",  f"{ADMIN}/agents_app/labelpolicy/",           LOGIN, 403,   403,   403,   403,   403,   200),
    row("GET",  f"{ADMIN}/agents_app/labelpolicy/add/",       LOGIN, 403,   403,   403,   403,   403,   200),
    row("GET",  f"{ADMIN}/agents_app/promotionrequest/",      LOGIN, 200,   200,   200,   200,   403,   200),
    row("POST", f"{ADMIN}/agents_app/promotionrequest/{{promotion}}/decide/",
                                                              LOGIN, 403,   403,   302,   403,   403,   302,
        body=lambda world: {f"{world.promotion}-decision": "approve", f"{world.promotion}-comment": "ok"}),
    row("GET",  f"{ADMIN}/auth/user/",                        LOGIN, 403,   403,   403,   403,   403,   200),
]
# fmt: on


# ----------------------------------------------------------------------------------------------
# The registry each cell starts from
# ----------------------------------------------------------------------------------------------
@dataclass
class World:
    users: dict[str, Any]  # role -> user; the admin table uses "<role>-staff" for the groups
    reviewer: Any
    retired: Any
    event: int
    webhook: int
    delivery: int
    promotion: str

    def path(self, template: str) -> str:
        return template.format(
            agent=self.reviewer.agent_id,
            retired=self.retired.agent_id,
            event=self.event,
            webhook=self.webhook,
            delivery=self.delivery,
            promotion=self.promotion,
        )


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # API throttles and login failures are counted there
    yield
    cache.clear()


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """The registry, made once for the module in a transaction rolled back at its end.

    What Django's TestCase.setUpTestData does: each test runs in a savepoint inside this
    transaction and is rolled back to it, so a cell that archives `reviewer` does not change
    the next cell; the hundreds of cells cost their requests only.
    """
    with django_db_blocker.unblock(), transaction.atomic():
        user_model = get_user_model()
        users: dict[str, Any] = {
            "staff": user_model.objects.create_user(username="staff", is_staff=True),
            "super": user_model.objects.create_superuser(username="root", email=None, password=None),
        }
        for role, group in GROUPS.items():
            for suffix, is_staff in (("", False), ("-staff", True)):
                user = user_model.objects.create_user(username=f"{role}{suffix}", is_staff=is_staff)
                user.groups.set([Group.objects.get(name=group)])
                users[f"{role}{suffix}"] = user
        context = ChangeContext(actor="setup", source="cli", reason="matrix setup")
        reviewer = agent_create(content=agent_text("reviewer"), context=context)
        agent_revise(
            agent_id=reviewer.agent_id, content=agent_text("reviewer", body="Two.\n"), context=context
        )
        agent_label_move(agent_id=reviewer.agent_id, label="staging", revision=1, context=context)
        retired = agent_create(content=agent_text("retired"), context=context)
        agent_archive(agent_id=retired.agent_id, context=context)
        # `prod` is protected with a request pending (by `setup`); `canary` protected, no request.
        label_policy_set(label="prod", protected=True, approvals=1, context=context)
        label_policy_set(label="canary", protected=True, approvals=1, context=context)
        # On an agent of its own: a request is an event in the agent's stream (its version moves).
        candidate = agent_create(content=agent_text("candidate"), context=context)
        agent_revise(
            agent_id=candidate.agent_id, content=agent_text("candidate", body="Two.\n"), context=context
        )
        promotion = promotion_request(agent_id=candidate.agent_id, label="prod", revision=2, context=context)
        projections_catch_up_all()  # what the writes' on-commit hooks would have done
        webhook, _ = webhook_create(url="https://93.184.216.34/hook", event_types=["*"])
        first = Event.objects.order_by("position").first()
        delivery = WebhookDelivery.objects.create(
            subscription=webhook,
            position=first.position,
            event_id=first.event_id,
            event_type=first.type,
            webhook_id="msg_matrix",
            attempt=1,
            status_code=500,
        )
        yield World(
            users=users,
            reviewer=agent_get(name="reviewer"),
            retired=agent_get(agent_id=retired.agent_id),
            event=first.position,
            webhook=webhook.pk,
            delivery=delivery.pk,
            promotion=str(promotion.pk),
        )
        transaction.set_rollback(True)


def send(client, world: World, cell: Row, capture, *, json_body: bool, **extra: str):
    body = cell.body(world) if callable(cell.body) else cell.body
    kwargs: dict[str, Any] = {**cell.headers, **extra}
    if body is not None:
        kwargs["data"] = body
        if json_body:
            kwargs["format"] = "json"
    with capture(execute=True):  # what a committed request would run: catch-up, queued tasks
        return getattr(client, cell.method.lower())(world.path(cell.path), **kwargs)


def changes() -> tuple[int, int, int, int]:
    """What a refused request must not have changed."""
    return (
        Event.objects.count(),
        ProjectionRun.objects.count(),
        LogVerification.objects.count(),
        ApiToken.objects.count(),
    )


def assert_cell(response, expected: int | str, world: World, cell: Row) -> None:
    where = f"{cell.id}: {response.status_code} {response.get('Location', '')} {response.content[:300]!r}"
    if expected == LOGIN:
        assert response.status_code == 302, where
        assert response["Location"].startswith("/admin/login/?next="), where
        return
    assert response.status_code == expected, where
    if expected == 302:  # done, and sent on: never to the login page
        assert not response["Location"].startswith("/admin/login/"), where
    if expected == 401:
        assert response["WWW-Authenticate"] == 'Bearer realm="api"', where
    if expected in (401, 403, 405) and cell.path.startswith("/api/"):
        assert response["Content-Type"].startswith("application/problem+json"), where


def api_cells() -> list:
    """Each row x role, signed in by session and by bearer token (anonymous: neither)."""
    return [
        pytest.param(cell, role, auth, id=f"{cell.id} {role} {auth}")
        for cell in API_MATRIX
        for role in ROLES
        for auth in (("none",) if role == "anon" else ("session", "token"))
    ]


def admin_cells() -> list:
    return [pytest.param(cell, role, id=f"{cell.id} {role}") for cell in ADMIN_MATRIX for role in ROLES]


# ----------------------------------------------------------------------------------------------
# The two tables
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cell", "role", "auth"), api_cells())
def test_every_api_operation_answers_each_role_as_the_matrix_says(
    world, cell, role, auth, django_capture_on_commit_callbacks
):
    client = APIClient()
    extra = {}
    if auth == "session":
        client.force_login(world.users[role])
    elif auth == "token":
        _, token = api_token_create(user=world.users[role], name="matrix")
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    before = changes()

    response = send(client, world, cell, django_capture_on_commit_callbacks, json_body=True, **extra)

    expected = cell.expected(role)
    assert_cell(response, expected, world, cell)
    if expected in (401, 403, 405):
        assert changes() == before, "a refused request changed something"


@pytest.mark.parametrize(("cell", "role"), admin_cells())
def test_every_admin_page_answers_each_role_as_the_matrix_says(
    world, cell, role, django_capture_on_commit_callbacks
):
    client = Client()
    if role != "anon":
        client.force_login(world.users[f"{role}-staff" if role in GROUPS else role])
    before = changes()

    response = send(client, world, cell, django_capture_on_commit_callbacks, json_body=False)

    expected = cell.expected(role)
    assert_cell(response, expected, world, cell)
    if expected in (LOGIN, 403, 405):
        assert changes() == before, "a refused request changed something"


@pytest.mark.parametrize("cell", ADMIN_MATRIX, ids=lambda cell: cell.id)
def test_a_user_without_the_staff_flag_is_sent_to_the_login_page_by_every_admin_page(
    world, cell, django_capture_on_commit_callbacks
):
    before = changes()
    for role in GROUPS:  # every permission the groups give, none of it worth anything here
        client = Client()
        client.force_login(world.users[role])

        response = send(client, world, cell, django_capture_on_commit_callbacks, json_body=False)

        assert_cell(response, LOGIN, world, cell)
    assert changes() == before


def test_the_matrices_cover_every_api_route_and_every_admin_model():
    from django.contrib import admin
    from django.urls import get_resolver

    covered = {cell.path.split("?")[0] for cell in API_MATRIX}
    patterns = get_resolver("agents_app.api.urls").url_patterns
    for pattern in patterns:
        route = str(pattern.pattern)
        assert any(_route_matches(route, path) for path in covered), f"no row for /api/v1/{route}"
    admin_paths = {cell.path for cell in ADMIN_MATRIX}
    for model in admin.site._registry:
        changelist = f"{ADMIN}/{model._meta.app_label}/{model._meta.model_name}/"
        # django-celery-beat's schedules and auth's groups share their sibling's permission model.
        if model._meta.app_label in ("agents_app", "events") or model._meta.model_name in (
            "periodictask",
            "user",
        ):
            assert changelist in admin_paths, f"no row for {changelist}"


def _route_matches(route: str, path: str) -> bool:
    parts = path.removeprefix("/api/v1/").split("/")
    pattern = route.split("/")
    return len(parts) == len(pattern) and all(
        want.startswith("<") or want == got for want, got in zip(pattern, parts, strict=True)
    )


# ----------------------------------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------------------------------
AUTHENTICATED_ROWS = [cell for cell in API_MATRIX if cell.expected("anon") == 401]


def _spoil(token: ApiToken, how: str) -> None:
    if how == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    elif how == "revoked":
        api_token_revoke(token=token)
    else:  # the owner was deactivated: the token dies with the account
        type(token.user).objects.filter(pk=token.user_id).update(is_active=False)


@pytest.mark.parametrize("how", ["expired", "revoked", "owner-deactivated"])
@pytest.mark.parametrize("cell", AUTHENTICATED_ROWS, ids=lambda cell: cell.id)
def test_an_expired_revoked_or_orphaned_token_is_refused_on_every_endpoint(
    world, cell, how, django_capture_on_commit_callbacks
):
    # A superuser's token: the token itself is the only reason left to refuse.
    row_, token = api_token_create(user=world.users["super"], name=how)
    _spoil(row_, how)
    before = changes()

    response = send(
        APIClient(),
        world,
        cell,
        django_capture_on_commit_callbacks,
        json_body=True,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert_cell(response, 401, world, cell)
    assert response.json()["detail"] == "invalid, expired or revoked token"  # the same for every cause
    assert changes() == before


def test_a_bad_bearer_token_is_refused_even_alongside_a_valid_session(
    world, django_capture_on_commit_callbacks
):
    row_, token = api_token_create(user=world.users["super"])
    api_token_revoke(token=row_)
    client = APIClient()
    client.force_login(world.users["super"])

    before = changes()

    response = send(
        client,
        world,
        API_MATRIX[1],  # POST /api/v1/agents/
        django_capture_on_commit_callbacks,
        json_body=True,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert response.status_code == 401
    assert changes() == before


def test_a_write_riding_a_session_cookie_needs_the_csrf_token_and_a_bearer_token_does_not(
    world, django_capture_on_commit_callbacks
):
    browser = APIClient(enforce_csrf_checks=True)  # what a page on another site can make a browser send
    browser.force_login(world.users["editor"])
    script = APIClient(enforce_csrf_checks=True)
    _, token = api_token_create(user=world.users["editor"])
    before = changes()
    cell = API_MATRIX[1]  # POST /api/v1/agents/

    forged = send(browser, world, cell, django_capture_on_commit_callbacks, json_body=True)
    refused = changes()
    tokened = send(
        script,
        world,
        cell,
        django_capture_on_commit_callbacks,
        json_body=True,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
    assert refused == before
    assert tokened.status_code == 201


def _every_stored_text() -> list[str]:
    """Every value of every row of every table, as text; sessions decoded as well."""
    texts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for values in cursor.fetchall():
                for value in values:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("latin-1")
                    texts.append(str(value))
    for session in Session.objects.all():
        texts.append(json.dumps(SessionStore().decode(session.session_data)))
    return texts


def test_no_table_holds_an_api_token_in_clear(world, django_capture_on_commit_callbacks, capsys):
    tokens = [api_token_create(user=world.users["editor"], name="by the service")[1]]
    call_command("create_api_token", "publisher", "--name", "by the command")
    tokens.append(capsys.readouterr().out.strip())
    admin = Client()
    admin.force_login(world.users["super"])
    with django_capture_on_commit_callbacks(execute=True):
        added = admin.post(
            f"{ADMIN}/agents_app/apitoken/add/",
            {"user": world.users["super"].pk, "name": "by the admin", "days": "7"},
            follow=True,
        )
    # The admin shows the new token once, in a message on the page it redirects to.
    shown = [str(message) for message in added.context["messages"]]
    tokens.append(next(word for text in shown for word in text.split() if word.startswith("ar_")))
    for number, token in enumerate(tokens):  # used once each: last-used time, idempotency record
        with django_capture_on_commit_callbacks(execute=True):
            response = APIClient().post(
                "/api/v1/agents/",
                {"content": agent_text(f"token-{number}")},
                format="json",
                HTTP_AUTHORIZATION=f"Bearer {token}",
                HTTP_IDEMPOTENCY_KEY=f"key-{number}",
            )
        assert response.status_code in (201, 403), response.content  # the publisher may not create

    stored = "\n".join(_every_stored_text())

    assert len(tokens) == 3 and all(token.startswith("ar_") for token in tokens)
    for token in tokens:
        assert token[:PREFIX_LENGTH] in stored  # the scan does read the token table
        assert token[PREFIX_LENGTH:] not in stored, "a token's secret part is stored in clear"
        assert ApiToken.objects.filter(prefix=token[:PREFIX_LENGTH]).exclude(digest__contains=token).exists()


# ----------------------------------------------------------------------------------------------
# The recorded actor
# ----------------------------------------------------------------------------------------------
MALLORY = "mallory"
CLAIMS = {
    "actor": MALLORY,
    "user": MALLORY,
    "source": "git",
    "metadata": {"actor": MALLORY, "source": "git", "request_id": MALLORY},
}
CLAIM_HEADERS = {
    "HTTP_X_ACTOR": MALLORY,
    "HTTP_X_FORWARDED_USER": MALLORY,
    "HTTP_X_REMOTE_USER": MALLORY,
    "HTTP_REMOTE_USER": MALLORY,
    "REMOTE_USER": MALLORY,  # what a front server's auth would set; no middleware here trusts it
    "HTTP_X_USER": MALLORY,
}
# (role, method, path, body)
WRITES = [
    ("editor", "POST", "/api/v1/agents/", {"content": agent_text("claimed"), **REASON}),
    ("editor", "PUT", "/api/v1/agents/reviewer/", {**REVISED_FILE, "expected_version": 3}),
    (
        "editor",
        "PATCH",
        "/api/v1/agents/reviewer/",
        {"frontmatter": {"model": "opus"}, "expected_version": 3},
    ),
    ("editor", "DELETE", "/api/v1/agents/reviewer/", REASON),
    ("editor", "POST", "/api/v1/agents/retired/restore/", REASON),
    ("editor", "POST", "/api/v1/agents/reviewer/revert/", {"to": "1"}),
    ("publisher", "PUT", "/api/v1/agents/reviewer/labels/production/", {"revision": 2}),
    ("publisher", "DELETE", "/api/v1/agents/reviewer/labels/staging/", {}),
]


def _assert_recorded_actor(username: str, source: str, after: int) -> None:
    (event,) = Event.objects.filter(position__gt=after)
    assert event.metadata["actor"] == username
    assert event.metadata["source"] == source
    assert MALLORY not in json.dumps(event.metadata)


@pytest.mark.parametrize("auth", ["session", "token"])
@pytest.mark.parametrize(
    ("role", "method", "path", "body"), WRITES, ids=[f"{m} {p}" for _, m, p, _ in WRITES]
)
def test_the_recorded_actor_is_the_authenticated_user_whatever_the_request_claims(
    world, role, method, path, body, auth, django_capture_on_commit_callbacks
):
    client = APIClient()
    headers = dict(CLAIM_HEADERS)
    if auth == "session":
        client.force_login(world.users[role])
    else:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {api_token_create(user=world.users[role])[1]}"
    after = Event.objects.order_by("-position").values_list("position", flat=True).first()
    cell = Row(method, path, (), {**body, **CLAIMS}, headers)

    response = send(client, world, cell, django_capture_on_commit_callbacks, json_body=True)

    assert response.status_code in (200, 201), response.content
    _assert_recorded_actor(role, "api", after)


def test_a_raw_file_upload_records_the_authenticated_user_not_one_named_in_the_file_or_headers(
    world, django_capture_on_commit_callbacks
):
    client = APIClient()
    client.force_login(world.users["editor"])
    after = Event.objects.order_by("-position").values_list("position", flat=True).first()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/agents/",
            agent_text("raw-upload", extra=f"actor: {MALLORY}\n"),
            content_type="text/markdown",
            HTTP_X_CHANGE_REASON="raw",
            **CLAIM_HEADERS,
        )

    assert response.status_code == 201, response.content
    (event,) = Event.objects.filter(position__gt=after)
    assert (event.metadata["actor"], event.metadata["source"]) == ("editor", "api")


def test_the_admin_records_the_logged_in_user_whatever_the_form_claims(
    world, django_capture_on_commit_callbacks
):
    client = Client()
    client.force_login(world.users["editor-staff"])
    after = Event.objects.order_by("-position").values_list("position", flat=True).first()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{AGENT}/add/",
            {"content": agent_text("from-admin"), "reason": "r", "actor": MALLORY, "source": "git"},
            **CLAIM_HEADERS,
        )

    assert response.status_code == 302
    _assert_recorded_actor("editor-staff", "admin", after)


# ----------------------------------------------------------------------------------------------
# Login throttling
# ----------------------------------------------------------------------------------------------
LOGIN_URL = "/admin/login/"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def admins(django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
    settings.LOGIN_FAILURE_LIMIT = 5
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 900
    return {
        name: django_user_model.objects.create_user(username=name, password=PASSWORD, is_staff=True)
        for name in ("alice", "bob")
    }


def attempt(username: str, password: str, *, address: str = "203.0.113.7"):
    """One login through the admin's form; (status, logged in?, page text)."""
    client = Client(REMOTE_ADDR=address)
    response = client.post(LOGIN_URL, {"username": username, "password": password, "next": "/admin/"})
    return response.status_code, "_auth_user_id" in client.session, response.content.decode()


def test_the_sixth_login_attempt_is_refused_even_with_the_right_password(admins):
    failures = [attempt("alice", "wrong") for _ in range(5)]

    status, logged_in, page = attempt("alice", PASSWORD)

    assert [(code, ok) for code, ok, _ in failures] == [(200, False)] * 5
    assert all("correct username and password" in text for _, _, text in failures)
    assert (status, logged_in) == (200, False)
    assert "Too many failed login attempts for this account from your address" in page
    assert "Try again in 15 minute(s)" in page


def test_a_throttled_login_is_refused_by_the_backend_too_not_only_the_admin_form(admins):
    for _ in range(5):
        attempt("alice", "wrong")

    def login_elsewhere(address: str):  # as any other login form would: authenticate(request, ...)
        request = RequestFactory(REMOTE_ADDR=address).post("/some/other/login/")
        return authenticate(request, username="alice", password=PASSWORD)

    assert login_elsewhere("203.0.113.7") is None
    assert login_elsewhere("198.51.100.9") == admins["alice"]


def test_another_user_or_another_address_is_not_affected_by_a_throttled_one(admins):
    for _ in range(6):
        attempt("alice", "wrong")

    assert attempt("bob", PASSWORD)[:2] == (302, True)
    assert attempt("alice", PASSWORD, address="198.51.100.9")[:2] == (302, True)
    assert attempt("alice", PASSWORD)[:2] == (200, False)


def test_a_successful_login_resets_the_count_of_failures(admins):
    for _ in range(4):
        attempt("alice", "wrong")
    assert attempt("alice", PASSWORD)[:2] == (302, True)

    again = [attempt("alice", "wrong") for _ in range(4)]

    assert attempt("alice", PASSWORD)[:2] == (302, True)  # 8 failures in all, never 5 in a row
    assert all(not logged_in for _, logged_in, _ in again)


def test_a_throttled_user_may_log_in_again_once_the_window_has_passed(admins, monkeypatch):
    for _ in range(5):
        attempt("alice", "wrong")
    assert attempt("alice", PASSWORD)[:2] == (200, False)
    now = time.time()

    monkeypatch.setattr(time, "time", lambda: now + 901)  # the cache expires by the same clock

    assert attempt("alice", PASSWORD)[:2] == (302, True)


def test_usernames_differing_only_in_case_share_one_count(admins):
    for name in ("alice", "ALICE", "Alice", "aLiCe", "alicE"):
        attempt(name, "wrong")

    assert attempt("alice", PASSWORD)[:2] == (200, False)
