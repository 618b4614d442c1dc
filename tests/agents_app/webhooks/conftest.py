"""Webhook test fixtures: a real local receiver, and settings that allow it (http on 127.0.0.1)."""

from collections.abc import Iterator

import pytest

from tests.agents_app.webhooks.receiver import Receiver

# The real-worker machinery (a queue of the test's own in Redis, publishing to it, workers).
from tests.events.test_celery_worker import publish_to_redis, queue, start_worker  # noqa: F401


@pytest.fixture
def allow_local(settings):
    """http and 127.0.0.1 allowed, short timeouts, and backoff short enough to wait out."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_CONNECT_TIMEOUT = 1.0
    settings.WEBHOOK_READ_TIMEOUT = 2.0
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 0.01
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 0.05
    return settings


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def make_receiver() -> Iterator:
    servers: list[Receiver] = []

    def make(port: int = 0) -> Receiver:
        server = Receiver(port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
