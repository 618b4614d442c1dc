"""The webhooks admin: add (the secret shown once), change, pause reason, delivery log, Redeliver."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents_app.webhooks.models import WebhookDelivery, WebhookSubscription

pytestmark = pytest.mark.django_db

ADD = "/admin/agents_app/webhooksubscription/add/"


@pytest.fixture
def admin_client_() -> Client:
    user = get_user_model().objects.create_superuser(username="root", email=None, password=None)
    client = Client()
    client.force_login(user)
    return client


def _add(client, **fields):
    data = {
        "url": "https://93.184.216.34/hook",
        "events": "agent.revised, agent.created",
        "agents": "",
        "description": "",
    }
    data.update(fields)
    return client.post(ADD, data)


def test_adding_a_webhook_shows_its_secret_once_on_the_page_after_saving(admin_client_):
    response = _add(admin_client_, active="on")

    subscription = WebhookSubscription.objects.get()
    change = f"/admin/agents_app/webhooksubscription/{subscription.pk}/change/"
    assert response.status_code == 302 and response["Location"] == change
    assert subscription.event_types == ["agent.created", "agent.revised"] and subscription.active
    first = admin_client_.get(change).content.decode()
    assert subscription.secret in first and "shown only this once" in first
    again = admin_client_.get(change).content.decode()
    assert subscription.secret not in again


def test_the_admin_refuses_bad_fields_with_the_services_messages(admin_client_):
    response = _add(admin_client_, url="https://127.0.0.1/", events="agent.exploded", agents="")

    assert response.status_code == 200
    text = response.content.decode()
    assert "not a public address" in text and "unknown event type" in text
    assert not WebhookSubscription.objects.exists()


def test_the_change_page_shows_the_pause_reason_and_the_recent_deliveries(admin_client_):
    subscription = WebhookSubscription.objects.create(
        url="https://93.184.216.34/hook",
        event_types=["*"],
        secret="whsec_AAAA",
        active=False,
        paused_reason="paused after 10 failed attempts in a row; the last: HTTP 500",
    )
    WebhookDelivery.objects.create(
        subscription=subscription,
        position=7,
        event_id="00000000-0000-0000-0000-000000000007",
        event_type="agent.revised",
        webhook_id="msg_x",
        attempt=10,
        status_code=500,
        error="HTTP 500",
    )

    page = admin_client_.get(
        f"/admin/agents_app/webhooksubscription/{subscription.pk}/change/"
    ).content.decode()
    log = admin_client_.get(
        f"/admin/agents_app/webhookdelivery/?subscription__id__exact={subscription.pk}"
    ).content.decode()

    assert "paused after 10 failed attempts" in page and "whsec_AAAA" not in page
    assert "Redeliver" in page and "HTTP 500" in page
    assert "Redeliver" in log and "agent.revised" in log


def test_redeliver_asks_then_queues_the_event_once_more(
    admin_client_, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(
        "agents_app.webhooks.services._redeliver_soon",
        lambda *, subscription_id, position: queued.append((subscription_id, position)),
    )
    subscription = WebhookSubscription.objects.create(
        url="https://93.184.216.34/", event_types=["*"], secret="s"
    )
    delivery = WebhookDelivery.objects.create(
        subscription=subscription,
        position=3,
        event_id="00000000-0000-0000-0000-000000000003",
        event_type="agent.created",
        webhook_id="msg_y",
        attempt=1,
        status_code=200,
        succeeded=True,
    )
    url = f"/admin/agents_app/webhookdelivery/{delivery.pk}/redeliver/"

    assert "once more" in admin_client_.get(url).content.decode() and queued == []
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(url)

    assert response.status_code == 302 and queued == [(subscription.pk, 3)]


def test_staff_without_the_webhook_permissions_cannot_see_or_redeliver(client, django_user_model):
    user = django_user_model.objects.create_user(username="plainstaff", is_staff=True)
    client.force_login(user)
    subscription = WebhookSubscription.objects.create(
        url="https://93.184.216.34/", event_types=["*"], secret="s"
    )
    delivery = WebhookDelivery.objects.create(
        subscription=subscription,
        position=3,
        event_id="00000000-0000-0000-0000-000000000003",
        event_type="agent.created",
        webhook_id="msg_y",
        attempt=1,
    )

    assert client.get("/admin/agents_app/webhooksubscription/").status_code == 403
    assert client.post(f"/admin/agents_app/webhookdelivery/{delivery.pk}/redeliver/").status_code == 403
