"""Webhook delivery against a real local HTTP receiver: order, signatures, retries, pauses, safety."""

import socket
import threading

import pytest
from django.test import Client
from django.utils import timezone

from agents_app.services import agent_create, agent_label_move, agent_revise
from agents_app.webhooks.models import WebhookDelivery, WebhookSubscription
from agents_app.webhooks.services import (
    WebhookInvalid,
    webhook_create,
    webhook_deliver,
    webhook_redeliver_send,
    webhook_update,
    webhooks_dispatch,
)
from events.selectors import head_position
from tests.agents_app.webhooks.receiver import wait_until

pytestmark = pytest.mark.django_db

# Tests with a second thread that uses the database need committed data, and so a database
# that can be emptied between tests: PostgreSQL (the append-only trigger refuses SQLite's DELETE).
threaded = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def eager_threads(settings):
    settings.WEBHOOK_EAGER_THREADS = True


def _threaded(test):
    for mark in reversed(threaded):
        test = mark(test)
    return test


def _subscribe(url: str, **kwargs) -> tuple[WebhookSubscription, str]:
    return webhook_create(url=url, event_types=kwargs.pop("event_types", ["*"]), **kwargs)


def _due_now(subscription: WebhookSubscription) -> None:
    """Skip the rest of the backoff (the tests do not wait it out)."""
    WebhookSubscription.objects.filter(pk=subscription.pk).update(next_attempt_at=timezone.now())


def _write(context, make_agent_text, name: str, revisions: int = 0) -> list[int]:
    created = agent_create(content=make_agent_text(name), context=context)
    for n in range(revisions):
        agent_revise(
            agent_id=created.agent_id,
            content=make_agent_text(name, body=f"Version {n + 2}.\n"),
            expected_version=n + 1,
            context=context,
        )
    return list(range(head_position() - revisions, head_position() + 1))


def test_events_are_delivered_in_log_order_signed_and_shaped_as_documented(
    allow_local, receiver, context, make_agent_text
):
    subscription, secret = _subscribe(receiver.url)
    positions = _write(context, make_agent_text, "reviewer", revisions=3)

    result = webhook_deliver(subscription_id=subscription.pk)

    assert result.delivered == 4
    assert receiver.positions() == positions
    bodies = receiver.verified(secret)  # raises unless every request is signed with the secret
    assert [b["type"] for b in bodies] == ["agent.created", "agent.revised", "agent.revised", "agent.revised"]
    first = bodies[0]["data"]
    assert first["agent"] == "reviewer" and first["revision"] == 1 and first["stream_version"] == 1
    assert first["actor"] == "alice" and first["source"] == "cli" and first["reason"] == "test change"
    assert set(first) >= {"position", "event_id", "agent_id", "occurred_at"}
    subscription.refresh_from_db()
    assert subscription.checkpoint == positions[-1]
    log = list(WebhookDelivery.objects.filter(subscription=subscription).order_by("id"))
    assert [(d.position, d.status_code, d.succeeded, d.attempt) for d in log] == [
        (p, 200, True, 1) for p in positions
    ]


def test_a_subscription_starts_at_the_head_and_filters_by_type_and_agent(
    allow_local, receiver, context, make_agent_text
):
    _write(context, make_agent_text, "before")
    subscription, _ = _subscribe(receiver.url, event_types=["agent.revised"], agent_names=["wanted"])
    wanted = _write(context, make_agent_text, "wanted", revisions=2)
    _write(context, make_agent_text, "other", revisions=1)

    webhook_deliver(subscription_id=subscription.pk)

    assert receiver.positions() == wanted[1:]  # the revisions of `wanted`, not its creation
    subscription.refresh_from_db()
    assert subscription.checkpoint == head_position()  # skipped past what it does not want


def test_a_500_then_a_200_gets_the_event_again_with_the_same_webhook_id(
    allow_local, receiver, context, make_agent_text
):
    subscription, secret = _subscribe(receiver.url)
    receiver.answer(500, body=b"boom")
    [position] = _write(context, make_agent_text, "reviewer")

    first = webhook_deliver(subscription_id=subscription.pk)
    subscription.refresh_from_db()
    assert first.delivered == 0 and first.retry_at is not None
    assert subscription.checkpoint == position - 1 and subscription.failures == 1
    _due_now(subscription)
    webhook_deliver(subscription_id=subscription.pk)

    assert receiver.positions() == [position, position]
    ids = [request.headers["webhook-id"] for request in receiver.requests]
    assert ids[0] == ids[1]
    assert receiver.requests[0].body == receiver.requests[1].body
    receiver.verified(secret)
    log = list(WebhookDelivery.objects.filter(subscription=subscription).order_by("id"))
    assert [(d.attempt, d.status_code, d.succeeded, d.response_body) for d in log] == [
        (1, 500, False, "boom"),
        (2, 200, True, "ok"),
    ]
    subscription.refresh_from_db()
    assert subscription.checkpoint == position and subscription.failures == 0


def test_a_receiver_down_for_a_while_gets_everything_in_order_when_it_returns(
    allow_local, make_receiver, context, make_agent_text
):
    receiver = make_receiver()
    port, url = receiver.port, receiver.url
    subscription, _ = _subscribe(url)
    receiver.stop()  # connection refused from now on
    positions = _write(context, make_agent_text, "reviewer", revisions=4)

    for _ in range(3):
        webhook_deliver(subscription_id=subscription.pk)
        _due_now(subscription)
    subscription.refresh_from_db()
    assert subscription.checkpoint == positions[0] - 1 and subscription.failures == 3
    errors = set(WebhookDelivery.objects.filter(subscription=subscription).values_list("error", flat=True))
    assert all("Connection" in error or "refused" in error.lower() for error in errors), errors

    back = make_receiver(port)
    webhook_deliver(subscription_id=subscription.pk)

    assert back.positions() == positions  # nothing lost, nothing out of order, nothing twice
    subscription.refresh_from_db()
    assert subscription.checkpoint == positions[-1] and subscription.failures == 0


def test_a_subscription_is_paused_after_the_maximum_attempts_and_resumes_from_its_checkpoint(
    allow_local, receiver, context, make_agent_text
):
    allow_local.WEBHOOK_MAX_ATTEMPTS = 3
    subscription, _ = _subscribe(receiver.url)
    for _ in range(3):
        receiver.answer(503)
    positions = _write(context, make_agent_text, "reviewer", revisions=1)

    for _ in range(5):  # more runs than attempts: the paused subscription gets no more
        webhook_deliver(subscription_id=subscription.pk)
        _due_now(subscription)

    subscription.refresh_from_db()
    assert not subscription.active and subscription.paused_at is not None
    assert "3 failed attempts" in subscription.paused_reason and "503" in subscription.paused_reason
    assert len(receiver.requests) == 3
    assert webhooks_dispatch() == []

    webhook_update(subscription_id=subscription.pk, changes={"active": True})
    subscription.refresh_from_db()
    assert subscription.active and subscription.failures == 0 and subscription.paused_reason == ""
    webhook_deliver(subscription_id=subscription.pk)

    assert receiver.positions() == [positions[0]] * 4 + [positions[1]]
    subscription.refresh_from_db()
    assert subscription.checkpoint == positions[-1]


def test_a_redirect_is_a_failure_and_is_not_followed(allow_local, make_receiver, context, make_agent_text):
    receiver, elsewhere = make_receiver(), make_receiver()
    receiver.answer(302, {"Location": elsewhere.url})
    subscription, _ = _subscribe(receiver.url)
    _write(context, make_agent_text, "reviewer")

    webhook_deliver(subscription_id=subscription.pk)

    assert len(receiver.requests) == 1 and elsewhere.requests == []
    delivery = WebhookDelivery.objects.get(subscription=subscription)
    assert delivery.status_code == 302 and not delivery.succeeded and "not followed" in delivery.error


def test_at_most_one_kib_of_the_answer_is_read_and_stored(allow_local, receiver, context, make_agent_text):
    receiver.answer(200, body=b"x" * 100_000)
    subscription, _ = _subscribe(receiver.url)
    _write(context, make_agent_text, "reviewer")

    webhook_deliver(subscription_id=subscription.pk)

    assert WebhookDelivery.objects.get(subscription=subscription).response_body == "x" * 1024


def test_a_timeout_is_a_failure_that_is_retried(allow_local, receiver, context, make_agent_text):
    allow_local.WEBHOOK_READ_TIMEOUT = 0.3
    receiver.hold = threading.Event()
    receiver.hold_only_first = True
    subscription, _ = _subscribe(receiver.url)
    [position] = _write(context, make_agent_text, "reviewer")

    webhook_deliver(subscription_id=subscription.pk)
    receiver.hold.set()
    first = WebhookDelivery.objects.get(subscription=subscription)
    assert first.status_code is None and "timed out" in first.error.lower()
    _due_now(subscription)
    webhook_deliver(subscription_id=subscription.pk)

    subscription.refresh_from_db()
    assert subscription.checkpoint == position and receiver.positions() == [position, position]


def test_manual_redelivery_sends_the_event_once_more_and_leaves_the_checkpoint(
    allow_local, receiver, context, make_agent_text
):
    subscription, _ = _subscribe(receiver.url)
    positions = _write(context, make_agent_text, "reviewer", revisions=1)
    webhook_deliver(subscription_id=subscription.pk)

    webhook_redeliver_send(subscription_id=subscription.pk, position=positions[0])

    assert receiver.positions() == [positions[0], positions[1], positions[0]]
    subscription.refresh_from_db()
    assert subscription.checkpoint == positions[1]
    last = WebhookDelivery.objects.filter(subscription=subscription).first()  # newest first
    assert last.redelivery and last.attempt == 2 and last.position == positions[0]


@_threaded
def test_two_runners_never_deliver_one_subscription_at_once(allow_local, receiver, context, make_agent_text):
    receiver.hold = threading.Event()
    subscription, _ = _subscribe(receiver.url)
    positions = _write(context, make_agent_text, "reviewer", revisions=1)
    first = threading.Thread(target=lambda: webhook_deliver(subscription_id=subscription.pk))
    first.start()
    try:
        assert receiver.got_request.wait(10)
        # The first runner is inside the POST of the first event, holding the lease.
        second = webhook_deliver(subscription_id=subscription.pk)
        assert second.delivered == 0
        assert len(receiver.requests) == 1
    finally:
        receiver.hold.set()
        first.join(10)
    assert receiver.positions() == positions


def test_a_private_address_is_refused_at_creation_unless_allowed(settings, monkeypatch):
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    for url in (
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/",
        "https://192.168.0.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://100.64.0.1/",
    ):
        with pytest.raises(WebhookInvalid) as caught:
            webhook_create(url=url, event_types=["*"])
        assert caught.value.errors[0][0] == "url" and "not a public address" in caught.value.errors[0][1], url
    _resolve(monkeypatch, {"hooks.example.test": "10.0.0.7"})
    with pytest.raises(WebhookInvalid, match="not a public address"):
        webhook_create(url="https://hooks.example.test/", event_types=["*"])
    assert WebhookSubscription.objects.count() == 0

    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    webhook_create(url="https://hooks.example.test/", event_types=["*"])
    webhook_create(url="https://169.254.169.254/", event_types=["*"])
    assert WebhookSubscription.objects.count() == 2


def _resolve(monkeypatch, answers: dict[str, str]) -> None:
    """socket.getaddrinfo answering `answers` for those names (the DNS of the test)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_dns_answer_changed_to_a_private_address_is_refused_at_delivery(
    settings, monkeypatch, receiver, context, make_agent_text
):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    _resolve(monkeypatch, {"hooks.example.test": "93.184.216.34"})  # public at creation
    subscription, _ = webhook_create(url=f"http://hooks.example.test:{receiver.port}/hook", event_types=["*"])
    [position] = _write(context, make_agent_text, "reviewer")

    for rebound in ("127.0.0.1", "169.254.169.254"):
        _resolve(monkeypatch, {"hooks.example.test": rebound})
        webhook_deliver(subscription_id=subscription.pk)
        _due_now(subscription)

    assert receiver.requests == []  # the receiver on 127.0.0.1 never heard of it
    errors = list(WebhookDelivery.objects.filter(subscription=subscription).values_list("error", flat=True))
    assert len(errors) == 2 and all("refused" in e and "not a public address" in e for e in errors)
    assert "169.254.169.254" in errors[0] and "127.0.0.1" in errors[1]
    subscription.refresh_from_db()
    assert subscription.checkpoint == position - 1

    # Allowed, the connection goes to the address that was checked, with the name as Host.
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    _resolve(monkeypatch, {"hooks.example.test": "127.0.0.1"})
    webhook_deliver(subscription_id=subscription.pk)
    assert receiver.positions() == [position]
    assert receiver.requests[0].headers["host"] == f"hooks.example.test:{receiver.port}"


@_threaded
def test_a_slow_receiver_does_not_slow_writes_in_the_embedded_mode(
    allow_local, eager_threads, receiver, users_staff_client, make_agent_text
):
    assert allow_local.CELERY_TASK_ALWAYS_EAGER
    receiver.hold = threading.Event()
    subscription, secret = _subscribe(receiver.url)

    response = users_staff_client.post(
        "/api/v1/agents/", {"content": make_agent_text("reviewer")}, content_type="application/json"
    )
    # The write answered while no delivery attempt had finished: the receiver holds every
    # request until the end of the test, so a write that waited for its delivery would have
    # waited out the read timeout and left a failed attempt behind.
    assert response.status_code == 201, response.content
    assert not WebhookDelivery.objects.exists()
    # The middleware started the delivery after the commit, in a thread: it reaches the
    # receiver, which holds it, while the write has already answered.
    assert receiver.got_request.wait(10)
    response = users_staff_client.post(
        "/api/v1/agents/", {"content": make_agent_text("writer")}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert not WebhookDelivery.objects.exists()  # the first delivery is still held
    receiver.hold.set()

    wait_until(lambda: len(receiver.requests) == 2, what="both events delivered")
    assert [body["data"]["agent"] for body in receiver.verified(secret)] == ["reviewer", "writer"]
    wait_until(
        lambda: WebhookSubscription.objects.get(pk=subscription.pk).checkpoint == head_position(),
        what="checkpoint at the head",
    )


@_threaded
def test_one_dead_subscription_does_not_delay_another(
    allow_local, eager_threads, make_receiver, context, make_agent_text
):
    dead, alive = make_receiver(), make_receiver()
    dead.hold = threading.Event()  # takes the whole read timeout to fail
    allow_local.WEBHOOK_READ_TIMEOUT = 5.0
    dead_subscription, _ = _subscribe(dead.url)
    _subscribe(alive.url)
    [position] = _write(context, make_agent_text, "reviewer")

    webhooks_dispatch()  # embedded mode: one background thread per subscription
    wait_until(lambda: alive.positions() == [position], what="the live receiver got the event")
    # The live one was served while the dead one's attempt was still held open: had the two
    # been delivered one after the other, the dead one's attempt would have ended (and been
    # logged) first.
    assert dead.got_request.wait(5)
    assert not WebhookDelivery.objects.filter(subscription=dead_subscription).exists()
    dead.hold.set()
    wait_until(
        lambda: WebhookSubscription.objects.get(pk=dead_subscription.pk).checkpoint == position,
        what="the slow one delivered too",
    )


@pytest.fixture
def users_staff_client(django_user_model) -> Client:
    user = django_user_model.objects.create_user(username="editor-staff", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def test_label_moves_carry_the_label_and_the_current_agent_name(
    allow_local, receiver, context, make_agent_text
):
    subscription, secret = _subscribe(receiver.url, event_types=["agent.label_moved"])
    created = agent_create(content=make_agent_text("reviewer"), context=context)
    agent_label_move(agent_id=created.agent_id, label="production", revision=1, context=context)

    webhook_deliver(subscription_id=subscription.pk)

    [body] = receiver.verified(secret)
    assert body["type"] == "agent.label_moved"
    assert body["data"]["agent"] == "reviewer" and body["data"]["label"] == "production"


def test_a_pause_while_an_event_is_in_flight_stops_the_run_after_that_event(
    allow_local, receiver, context, make_agent_text, monkeypatch
):
    subscription, _ = _subscribe(receiver.url)
    positions = _write(context, make_agent_text, "reviewer", revisions=2)
    import agents_app.webhooks.delivery as delivery_module

    real_post = delivery_module.post

    def post_then_pause(**kwargs):
        attempt = real_post(**kwargs)
        # An operator pauses it while the first POST is in flight.
        webhook_update(subscription_id=subscription.pk, changes={"active": False})
        return attempt

    monkeypatch.setattr(delivery_module, "post", post_then_pause)
    webhook_deliver(subscription_id=subscription.pk)

    assert receiver.positions() == positions[:1]  # the rest of the batch was not sent
    subscription.refresh_from_db()
    assert subscription.checkpoint == positions[0] and not subscription.active
    assert subscription.paused_reason == "paused by an operator"


def test_tls_certificates_are_verified_against_the_host_name(allow_local, tmp_path, context, make_agent_text):
    import http.server
    import ssl
    import subprocess
    import threading as threads

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threads.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subscription, _ = _subscribe(f"https://127.0.0.1:{server.server_address[1]}/hook")
        [position] = _write(context, make_agent_text, "reviewer")
        webhook_deliver(subscription_id=subscription.pk)
    finally:
        server.shutdown()
        server.server_close()

    delivery = WebhookDelivery.objects.get(subscription=subscription)
    assert delivery.status_code is None and "CERTIFICATE_VERIFY_FAILED" in delivery.error
    subscription.refresh_from_db()
    assert subscription.checkpoint == position - 1
