"""Shared fixtures: change contexts, sample documents, and service markers.

Tests marked `postgres` or `redis` need the real server: locally they skip with the reason,
in CI (CI=true) they fail, so a missing service can never pass for a green run.
"""

import os
import uuid

import pytest
import redis
from django.db import connection

from agents_app.services import ChangeContext

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(reason)


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(autouse=True)
def _require_services(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _missing("needs PostgreSQL: run with DATABASE_URL=postgres://... (see README)")
    if request.node.get_closest_marker("redis") and not redis_available():
        _missing(f"needs Redis at {TEST_REDIS_URL}")


@pytest.fixture(autouse=True)
def _queued_tasks_run_in_the_test(settings):
    """Embedded-mode tasks a request queues run after the (captured) commit on the test's own
    thread and connection: a background thread would write outside the test's transaction and
    leave rows behind for the tests after it. Tests of project.celery.enqueue turn it back on."""
    settings.TASKS_EAGER_IN_BACKGROUND = False


@pytest.fixture
def background_tasks(settings):
    """Embedded-mode tasks run on background threads, as in production (project.celery.enqueue)."""
    settings.TASKS_EAGER_IN_BACKGROUND = True


@pytest.fixture(autouse=True)
def _no_webhook_threads(settings):
    """No background webhook delivery (embedded mode) unless a test turns it on: such a thread
    would use the database while the test's own transaction holds it."""
    settings.WEBHOOK_EAGER_THREADS = False


@pytest.fixture
def context() -> ChangeContext:
    return ChangeContext(actor="alice", source="cli", reason="test change")


def agent_text(
    name: str = "reviewer",
    *,
    description: str = "Reviews code",
    body: str = "Review carefully.\n",
    extra: str = "",
) -> str:
    """A small valid agent definition."""
    return f"---\nname: {name}\ndescription: {description}\n{extra}---\n{body}"


@pytest.fixture
def make_agent_text():
    return agent_text


@pytest.fixture
def unique_name() -> str:
    return f"agent-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def permission_groups(django_db_setup):
    """The groups migration agents_app/0003 creates, made again if a transactional test's flush
    removed them (flush re-creates permissions through post_migrate, not data migrations)."""
    import importlib

    from django.contrib.auth.models import Group, Permission

    groups = importlib.import_module("agents_app.migrations.0003_permission_groups").GROUPS
    for name, codenames in groups.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            [
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
                for app_label, codename in codenames
            ]
        )
    return groups


def run_after_commit(monkeypatch, capture_on_commit, namespace: dict, services: tuple[str, ...]) -> None:
    """Make each of `services` in a test module's `namespace` run what it queued for after
    COMMIT (the views' catch-up) when it returns, as a real COMMIT does inside a test's
    transaction. `capture_on_commit` is pytest-django's django_capture_on_commit_callbacks."""

    def committed(service):
        def run(**kwargs):
            with capture_on_commit(execute=True):
                return service(**kwargs)

        return run

    for service in services:
        monkeypatch.setitem(namespace, service, committed(namespace[service]))
