"""API test fixtures: one user per role and a client whose writes commit as they would in production."""

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.conftest import agent_text

ROLES = {
    "viewer": ["Agent viewers"],
    "editor": ["Agent editors"],
    "publisher": ["Agent publishers"],
    "auditor": ["Auditors"],
    "nobody": [],
}


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()  # throttle counters live in the cache; each test starts from zero
    yield
    cache.clear()


@pytest.fixture
def users(django_user_model) -> dict[str, Any]:
    made = {}
    for role, groups in ROLES.items():
        user = django_user_model.objects.create_user(username=role)  # no password: no slow hashing
        user.groups.set(Group.objects.filter(name__in=groups))
        made[role] = user
    made["staff"] = django_user_model.objects.create_user(username="staff", is_staff=True)
    made["admin"] = django_user_model.objects.create_superuser(username="admin", email=None, password=None)
    return made


class Api:
    """An APIClient that runs each request's on-commit hooks (the projections' catch-up) as a
    committed request would: tests run inside one transaction that never commits."""

    def __init__(self, capture) -> None:
        self.client = APIClient()
        self.capture = capture

    def as_user(self, user) -> "Api":
        self.client.force_login(user)
        return self

    def anonymous(self) -> "Api":
        self.client.logout()
        return self

    def call(self, method: str, path: str, body: Any = None, *, content_type: str | None = None, **headers):
        # HTTP_* keys are WSGI environ entries (HTTP_IF_MATCH=...), others header names.
        kwargs: dict[str, Any] = {key: value for key, value in headers.items() if key.startswith("HTTP_")}
        named = {key: value for key, value in headers.items() if not key.startswith("HTTP_")}
        if named:
            kwargs["headers"] = named
        if body is not None:
            if content_type is None:
                kwargs["format"] = "json"
                kwargs["data"] = body
            else:
                kwargs["data"] = body
                kwargs["content_type"] = content_type
        with self.capture(execute=True):
            return getattr(self.client, method.lower())(path, **kwargs)

    def get(self, path: str, **headers):
        return self.call("GET", path, **headers)

    def post(self, path: str, body: Any = None, **kwargs):
        return self.call("POST", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs):
        return self.call("PUT", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs):
        return self.call("PATCH", path, body, **kwargs)

    def delete(self, path: str, body: Any = None, **kwargs):
        return self.call("DELETE", path, body, **kwargs)


@pytest.fixture
def api(db, django_capture_on_commit_callbacks) -> Api:
    return Api(django_capture_on_commit_callbacks)


@pytest.fixture
def editor_api(api, users) -> Api:
    return api.as_user(users["editor"])


@pytest.fixture
def created(editor_api):
    """An agent `reviewer` created through the API (revision 1, stream version 1)."""
    response = editor_api.post("/api/v1/agents/", {"content": agent_text("reviewer"), "reason": "first"})
    assert response.status_code == 201, response.content
    return response.json()


def assert_problem(response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and type code)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
    body = response.json()
    assert body["status"] == status
    assert body["title"] and isinstance(body["detail"], str)
    if code is not None:
        assert body["type"] == f"urn:agent-registry:problem:{code}", body
    return body
