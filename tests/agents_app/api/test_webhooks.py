"""REST API of webhooks: staff only, the secret shown once, bad input for every field a 4xx naming it."""

import socket

import pytest
from standardwebhooks import Webhook

from agents_app.webhooks.models import WebhookDelivery, WebhookSubscription
from tests.agents_app.api.conftest import assert_problem

pytestmark = pytest.mark.django_db

GOOD = {"url": "https://93.184.216.34/hook", "events": ["agent.revised"], "description": "CI"}


@pytest.fixture
def staff_api(api, users):
    return api.as_user(users["staff"])


@pytest.fixture
def public_dns(monkeypatch):
    """Test names resolve without the network: hooks.example.test public, inside.example.test private."""
    answers = {"hooks.example.test": "93.184.216.34", "inside.example.test": "192.168.1.20"}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        if host.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_staff_create_a_webhook_and_get_its_secret_once(staff_api, users, public_dns):
    response = staff_api.post("/api/v1/webhooks/", {**GOOD, "url": "https://hooks.example.test/in"})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    Webhook(body["secret"])  # a valid Standard Webhooks secret
    assert body["url"] == "https://hooks.example.test/in" and body["events"] == ["agent.revised"]
    assert body["agents"] == [] and body["active"] is True and body["created_by"] == "staff"
    stored = WebhookSubscription.objects.get()
    assert stored.secret == body["secret"] and stored.created_by == users["staff"]
    assert response["Location"] == f"/api/v1/webhooks/{stored.pk}/"

    for path in ("/api/v1/webhooks/", f"/api/v1/webhooks/{stored.pk}/"):
        read = staff_api.get(path)
        assert read.status_code == 200
        assert "secret" not in read.content.decode() and body["secret"] not in read.content.decode()


def test_only_staff_may_use_webhooks(api, users):
    subscription = WebhookSubscription.objects.create(url=GOOD["url"], event_types=["*"], secret="whsec_AAAA")
    for role in ("viewer", "editor", "publisher"):
        api.as_user(users[role])
        assert_problem(api.get("/api/v1/webhooks/"), 403)
        assert_problem(api.post("/api/v1/webhooks/", GOOD), 403)
        assert_problem(api.delete(f"/api/v1/webhooks/{subscription.pk}/"), 403)
    api.anonymous()
    assert api.get("/api/v1/webhooks/").status_code in (401, 403)
    assert WebhookSubscription.objects.count() == 1


BAD = [
    ({"events": ["*"]}, "url", "is required"),
    ({"url": GOOD["url"]}, "events", "is required"),
    ({**GOOD, "url": 5}, "url", "non-empty string"),
    ({**GOOD, "url": ""}, "url", "non-empty string"),
    ({**GOOD, "url": "not a url"}, "url", "not a valid"),
    ({**GOOD, "url": "ftp://93.184.216.34/"}, "url", "not a valid"),
    ({**GOOD, "url": "https://" + "a" * 2000 + ".com/"}, "url", "at most 2000"),
    ({**GOOD, "url": "http://93.184.216.34/"}, "url", "http is not allowed"),
    ({**GOOD, "url": "https://127.0.0.1/"}, "url", "not a public address"),
    ({**GOOD, "url": "https://169.254.169.254/latest/"}, "url", "not a public address"),
    ({**GOOD, "url": "https://10.0.0.1/"}, "url", "not a public address"),
    ({**GOOD, "url": "https://[::1]/"}, "url", "not a public address"),
    ({**GOOD, "url": "https://inside.example.test/"}, "url", "not a public address"),
    ({**GOOD, "url": "https://nowhere.example.test/"}, "url", "does not resolve"),
    ({**GOOD, "url": "https://user:pw@hooks.example.test/"}, "url", "user name or password"),
    ({**GOOD, "events": []}, "events", "list of 1 to 50"),
    ({**GOOD, "events": "agent.revised"}, "events", "list of 1 to 50"),
    ({**GOOD, "events": ["agent.exploded"]}, "events", "unknown event type"),
    ({**GOOD, "events": [3]}, "events", "unknown event type"),
    ({**GOOD, "events": ["*"] * 51}, "events", "list of 1 to 50"),
    ({**GOOD, "agents": "reviewer"}, "agents", "list of at most"),
    ({**GOOD, "agents": [""]}, "agents", "1 to 200 characters"),
    ({**GOOD, "agents": [7]}, "agents", "1 to 200 characters"),
    ({**GOOD, "agents": ["x\x00"]}, "agents", "1 to 200 characters"),
    ({**GOOD, "description": "d" * 501}, "description", "at most 500"),
    ({**GOOD, "description": 5}, "description", "at most 500"),
    ({**GOOD, "active": "yes"}, "active", "true or false"),
    ({**GOOD, "secret": "whsec_mine"}, "secret", "not a field"),
    ([GOOD], "body", "JSON object"),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD, ids=[f"{f}-{m}" for _, f, m in BAD])
def test_bad_input_for_every_field_is_a_422_naming_it_and_stores_nothing(
    staff_api, public_dns, body, field, message
):
    response = staff_api.post("/api/v1/webhooks/", body)

    problem = assert_problem(response, 422)
    assert any(e["field"] == field and message in e["message"] for e in problem["errors"]), problem
    assert WebhookSubscription.objects.count() == 0


def test_http_and_private_addresses_are_accepted_when_the_settings_allow_them(staff_api, settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True

    response = staff_api.post("/api/v1/webhooks/", {**GOOD, "url": "http://127.0.0.1:9/hook"})

    assert response.status_code == 201, response.content


@pytest.fixture
def subscription(staff_api):
    response = staff_api.post("/api/v1/webhooks/", GOOD)
    assert response.status_code == 201, response.content
    return WebhookSubscription.objects.get(pk=response.json()["id"])


def test_patch_changes_the_fields_given_and_bad_input_changes_nothing(staff_api, subscription, public_dns):
    path = f"/api/v1/webhooks/{subscription.pk}/"
    response = staff_api.patch(path, {"events": ["*"], "agents": ["reviewer"], "description": "all"})
    assert response.status_code == 200, response.content
    assert response.json()["events"] == ["*"] and response.json()["agents"] == ["reviewer"]

    for body, field in (
        ({"url": "https://127.0.0.1/"}, "url"),
        ({"events": ["nope"]}, "events"),
        ({"active": None}, "active"),
        ({"description": "ok", "agents": "x"}, "agents"),
        ({"id": 9}, "id"),
    ):
        problem = assert_problem(staff_api.patch(path, body), 422)
        assert problem["errors"][0]["field"] == field
    subscription.refresh_from_db()
    assert (
        subscription.url == GOOD["url"]
        and subscription.event_types == ["*"]
        and subscription.description == "all"
    )


def test_patch_active_false_pauses_and_true_resumes_a_paused_subscription(staff_api, subscription):
    path = f"/api/v1/webhooks/{subscription.pk}/"
    paused = staff_api.patch(path, {"active": False}).json()
    assert paused["active"] is False and paused["paused_reason"] == "paused by an operator"
    WebhookSubscription.objects.filter(pk=subscription.pk).update(failures=10)

    resumed = staff_api.patch(path, {"active": True}).json()

    assert resumed["active"] is True and resumed["paused_reason"] == "" and resumed["failures"] == 0
    assert resumed["checkpoint"] == subscription.checkpoint


def test_delete_removes_the_subscription_and_its_log(staff_api, subscription):
    _log(subscription, 3)
    assert staff_api.delete(f"/api/v1/webhooks/{subscription.pk}/").status_code == 204
    assert not WebhookSubscription.objects.exists() and not WebhookDelivery.objects.exists()
    assert_problem(staff_api.delete(f"/api/v1/webhooks/{subscription.pk}/"), 404, "not-found")


def _log(subscription, count: int) -> list[WebhookDelivery]:
    return [
        WebhookDelivery.objects.create(
            subscription=subscription,
            position=n,
            event_id=f"00000000-0000-0000-0000-{n:012d}",
            event_type="agent.revised",
            webhook_id=f"msg_{n}",
            attempt=1,
            status_code=200,
            succeeded=True,
        )
        for n in range(1, count + 1)
    ]


def test_the_delivery_log_is_paginated_newest_first(staff_api, subscription):
    _log(subscription, 5)
    path = f"/api/v1/webhooks/{subscription.pk}/deliveries/"

    first = staff_api.get(path + "?limit=2").json()
    second = staff_api.get(first["next"]).json()
    third = staff_api.get(second["next"]).json()

    assert [d["position"] for d in first["results"]] == [5, 4]
    assert [d["position"] for d in second["results"]] == [3, 2]
    assert [d["position"] for d in third["results"]] == [1] and third["next"] is None
    assert set(first["results"][0]) >= {"attempt", "status_code", "latency_ms", "error", "webhook_id"}
    for bad in ("?limit=0", "?limit=501", "?before=x", "?before=-1"):
        assert_problem(staff_api.get(path + bad), 400, "invalid-parameter")


def test_redeliver_queues_the_event_of_a_logged_delivery(staff_api, subscription, monkeypatch):
    [logged] = _log(subscription, 1)
    queued = []
    monkeypatch.setattr(
        "agents_app.webhooks.services._redeliver_soon",
        lambda *, subscription_id, position: queued.append((subscription_id, position)),
    )

    response = staff_api.post(f"/api/v1/webhooks/{subscription.pk}/deliveries/{logged.pk}/redeliver/")

    assert response.status_code == 202, response.content
    assert response.json()["position"] == 1 and queued == [(subscription.pk, 1)]


def test_unknown_webhooks_and_deliveries_are_404(staff_api, subscription):
    [logged] = _log(subscription, 1)
    other = WebhookSubscription.objects.create(url=GOOD["url"], event_types=["*"], secret="whsec_AAAA")
    for method, path in (
        ("get", "/api/v1/webhooks/999999/"),
        ("get", f"/api/v1/webhooks/{2**70}/"),
        ("patch", "/api/v1/webhooks/999999/"),
        ("delete", "/api/v1/webhooks/999999/"),
        ("get", "/api/v1/webhooks/999999/deliveries/"),
        ("post", f"/api/v1/webhooks/{subscription.pk}/deliveries/999999/redeliver/"),
        ("post", f"/api/v1/webhooks/{subscription.pk}/deliveries/{2**70}/redeliver/"),
        ("post", f"/api/v1/webhooks/{other.pk}/deliveries/{logged.pk}/redeliver/"),  # not its own
    ):
        call = getattr(staff_api, method)
        response = call(path, {}) if method == "patch" else call(path)
        assert_problem(response, 404, "not-found")
