"""The webhooks admin in Chromium (as tests/agents_app/test_admin_browser.py): add a webhook and
see its secret once, then the list, the change page and the delivery log at 1400 and 900 px.

Screenshots go to artifacts/ (webhooks-*.png) for a person to look at.
"""

import pytest

from agents_app.services import agent_create, agent_revise
from agents_app.webhooks.models import WebhookSubscription
from agents_app.webhooks.services import webhook_create, webhook_deliver
from tests.agents_app.test_admin_browser import ARTIFACTS, PASSWORD, browser  # noqa: F401 (fixture)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(username="olga", email=None, password=PASSWORD)


def _page(browser, live_server, width: int):  # noqa: F811
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    return page


def test_the_webhooks_admin_in_a_browser(
    browser,  # noqa: F811
    live_server,
    operator,
    allow_local,
    receiver,
    make_receiver,
    context,
    make_agent_text,
):
    page = _page(browser, live_server, 1400)
    page.goto(f"{live_server.url}/admin/agents_app/webhooksubscription/add/")
    page.fill("#id_url", receiver.url)
    page.fill("#id_events", "*")
    page.fill("#id_description", "Deploy bot")
    page.click("input[name=_save]")
    page.wait_for_selector("#webhook-secret")
    added = WebhookSubscription.objects.get(description="Deploy bot")
    assert page.input_value("#webhook-secret") == added.secret
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webhooks-added-1400.png"), full_page=True)

    # Some history: one healthy webhook, one paused after failures.
    dead = make_receiver()
    for _ in range(3):
        dead.answer(500, body=b'{"error": "database unavailable"}')
    allow_local.WEBHOOK_MAX_ATTEMPTS = 3
    paused, _ = webhook_create(url=dead.url, event_types=["agent.revised"], description="Flaky receiver")
    created = agent_create(content=make_agent_text("reviewer"), context=context)
    for n in range(3):
        agent_revise(
            agent_id=created.agent_id,
            content=make_agent_text("reviewer", body=f"Version {n + 2}.\n"),
            expected_version=n + 1,
            context=context,
        )
    webhook_deliver(subscription_id=added.pk)
    for _ in range(3):
        webhook_deliver(subscription_id=paused.pk)
        WebhookSubscription.objects.filter(pk=paused.pk).update(next_attempt_at=None)

    for width in (1400, 900):
        page = _page(browser, live_server, width)
        page.goto(f"{live_server.url}/admin/agents_app/webhooksubscription/")
        assert page.is_visible("text=paused (3 failures)")
        page.screenshot(path=str(ARTIFACTS / f"webhooks-list-{width}.png"), full_page=True)
        page.goto(f"{live_server.url}/admin/agents_app/webhooksubscription/{paused.pk}/change/")
        assert page.is_visible("text=Tick “Active” and save to resume")
        assert added.secret not in page.content()
        page.screenshot(path=str(ARTIFACTS / f"webhooks-change-{width}.png"), full_page=True)
        page.goto(f"{live_server.url}/admin/agents_app/webhookdelivery/")
        assert page.locator("a.button", has_text="Redeliver").count() == 7
        page.screenshot(path=str(ARTIFACTS / f"webhooks-deliveries-{width}.png"), full_page=True)

    page.click("a.button:has-text('Redeliver') >> nth=0")
    page.click("input[value=Redeliver]")
    page.wait_for_selector("text=queued to be sent once more")
