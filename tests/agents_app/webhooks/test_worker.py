"""Webhook delivery by a real Celery worker process over Redis and PostgreSQL.

The test process publishes to a queue of its own (tests/events/test_celery_worker.py's
machinery) and plays beat: it calls webhooks_dispatch(), which queues one delivery task per
due subscription. The worker posts to a real receiver on 127.0.0.1 (allowed through the
worker's environment).
"""

import os
import signal
import threading
import time

import pytest

from agents_app.services import agent_create, agent_revise
from agents_app.webhooks.models import WebhookDelivery, WebhookSubscription
from agents_app.webhooks.services import webhook_create, webhooks_dispatch
from events.selectors import head_position
from tests.agents_app.webhooks.receiver import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

CONNECT_TIMEOUT, READ_TIMEOUT = 1, 4
LEASE_SECONDS = CONNECT_TIMEOUT + READ_TIMEOUT + 5  # services.LEASE_MARGIN_SECONDS


@pytest.fixture
def worker_allows_local(monkeypatch, settings):
    """The worker (started with this process's environment) and this process: http to 127.0.0.1."""
    for name, value in (
        ("WEBHOOK_ALLOW_HTTP", "1"),
        ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "1"),
        ("WEBHOOK_CONNECT_TIMEOUT", str(CONNECT_TIMEOUT)),
        ("WEBHOOK_READ_TIMEOUT", str(READ_TIMEOUT)),
        ("WEBHOOK_BACKOFF_BASE_SECONDS", "0.1"),
        ("WEBHOOK_BACKOFF_MAX_SECONDS", "0.5"),
    ):
        monkeypatch.setenv(name, value)
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_CONNECT_TIMEOUT = CONNECT_TIMEOUT
    settings.WEBHOOK_READ_TIMEOUT = READ_TIMEOUT


def _write(context, make_agent_text, name: str, revisions: int) -> list[int]:
    created = agent_create(content=make_agent_text(name), context=context)
    for n in range(revisions):
        agent_revise(
            agent_id=created.agent_id,
            content=make_agent_text(name, body=f"Version {n + 2}.\n"),
            expected_version=n + 1,
            context=context,
        )
    return list(range(head_position() - revisions, head_position() + 1))


def _beat_until(check, *, what: str, timeout: float = 30.0) -> None:
    """Play beat (dispatch every half second) until `check()` holds."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not true after {timeout} s")
        webhooks_dispatch()
        time.sleep(0.5)


def test_a_worker_delivers_every_event_in_order_and_signed(
    publish_to_redis, worker_allows_local, start_worker, receiver, context, make_agent_text
):
    start_worker()
    subscription, secret = webhook_create(url=receiver.url, event_types=["*"])
    positions = _write(context, make_agent_text, "reviewer", revisions=9)

    _beat_until(lambda: len(receiver.requests) >= len(positions), what="all events delivered")

    assert receiver.positions() == positions
    assert [body["data"]["position"] for body in receiver.verified(secret)] == positions
    wait_until(
        lambda: WebhookSubscription.objects.get(pk=subscription.pk).checkpoint == positions[-1],
        what="checkpoint at the last event",
    )


def test_a_worker_killed_mid_delivery_leaves_the_checkpoint_and_the_next_worker_sends_the_event_again(
    publish_to_redis, worker_allows_local, start_worker, receiver, context, make_agent_text
):
    receiver.hold = threading.Event()
    receiver.hold_only_first = True
    first_worker = start_worker()
    subscription, secret = webhook_create(url=receiver.url, event_types=["*"])
    [position] = _write(context, make_agent_text, "reviewer", revisions=0)

    webhooks_dispatch()
    assert receiver.got_request.wait(20), first_worker.log()
    # The worker is waiting for the receiver's answer: kill it there.
    os.kill(first_worker.process.pid, signal.SIGKILL)
    first_worker.process.wait(timeout=10)
    subscription.refresh_from_db()
    assert subscription.checkpoint == position - 1  # not moved: no 2xx was seen
    assert not WebhookDelivery.objects.filter(subscription=subscription).exists()

    killed_at = time.monotonic()
    start_worker()
    _beat_until(lambda: len(receiver.requests) >= 2, what="the event sent again", timeout=LEASE_SECONDS + 20)

    assert time.monotonic() - killed_at >= LEASE_SECONDS - 1  # the dead worker's lease ran out first
    first, again = receiver.requests[:2]
    assert again.headers["webhook-id"] == first.headers["webhook-id"] and again.body == first.body
    receiver.verified(secret)
    wait_until(
        lambda: WebhookSubscription.objects.get(pk=subscription.pk).checkpoint == position,
        what="checkpoint moved after the 2xx",
    )
    [logged] = WebhookDelivery.objects.filter(subscription=subscription)
    assert logged.succeeded and logged.position == position
