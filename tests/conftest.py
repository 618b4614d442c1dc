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
