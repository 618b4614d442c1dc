"""Admin: label policies as events, a protected label's move becomes a request, the Promotions page."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from agents_app.promotions.models import LabelPolicy, PromotionRequest
from agents_app.promotions.services import label_policy_set
from agents_app.selectors import agent_get
from agents_app.services import ChangeContext, agent_create, agent_revise
from events.models import Event
from tests.agents_app.test_admin import Browser, opened
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db

PROMOTIONS = "/admin/agents_app/promotionrequest/"


@pytest.fixture
def people(django_user_model):
    def make(name, groups, **flags):
        user = django_user_model.objects.create_user(username=name, is_staff=True, **flags)
        user.groups.set(Group.objects.filter(name__in=groups))
        return user

    return {
        "paula": make("paula", ["Agent publishers"]),
        "quinn": make("quinn", ["Agent publishers"]),
        "victor": make("victor", ["Agent viewers"]),
        "root": make("root", [], is_superuser=True),
    }


@pytest.fixture
def as_user(client, django_capture_on_commit_callbacks):
    return lambda user: Browser(client, django_capture_on_commit_callbacks, user)


@pytest.fixture
def reviewer(django_capture_on_commit_callbacks):
    context = ChangeContext(actor="setup", source="cli")
    with django_capture_on_commit_callbacks(execute=True):
        change = agent_create(content=agent_text("reviewer", extra="tools: Read\n"), context=context)
        agent_revise(
            agent_id=change.agent_id,
            content=agent_text("reviewer", extra="tools: Read, Bash\n"),
            context=context,
        )
        label_policy_set(label="production", protected=True, approvals=1, context=context)
    return agent_get(name="reviewer")


def labels_url(agent) -> str:
    return reverse("admin:agents_app_agentcurrent_labels", args=[agent.agent_id])


def test_a_superuser_sets_a_policy_in_the_admin_as_a_registry_event(as_user, people):
    response = as_user(people["root"]).post(
        "/admin/agents_app/labelpolicy/add/",
        {
            "label": "staging",
            "protected": "on",
            "approvals": 2,
            "approvals_when_widened": 3,
            "reason": "audit",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert LabelPolicy.objects.get(label="staging").approvals_when_widened == 3
    event = Event.objects.get(type="registry.label_policy_set")
    assert (event.metadata["actor"], event.metadata["source"], event.metadata["reason"]) == (
        "root",
        "admin",
        "audit",
    )


def test_a_policy_with_fewer_widened_approvals_is_refused_in_the_admin(as_user, people):
    response = as_user(people["root"]).post(
        "/admin/agents_app/labelpolicy/add/",
        {"label": "staging", "protected": "on", "approvals": 3, "approvals_when_widened": 2},
    )
    assert response.status_code == 200 and "At least as many as approvals" in response.content.decode()
    assert not Event.objects.filter(type="registry.label_policy_set").exists()


def test_moving_a_protected_label_in_the_admin_requests_a_promotion_shown_on_both_pages(
    as_user, people, reviewer
):
    paula = as_user(people["paula"])
    shown = paula.get(labels_url(reviewer))
    response = paula.post(
        labels_url(reviewer),
        {"label": "production", "revision": 2, "reason": "ship", "opened": opened(shown)},
    )

    assert response.status_code == 302
    assert agent_get(name="reviewer").labels == {}
    row = PromotionRequest.objects.get()
    assert (row.requested_by, row.status, row.widened) == ("paula", "pending", True)
    labels_page = paula.get(labels_url(reviewer)).content.decode()
    assert 'id="promotion-requests"' in labels_page and "<strong>pending</strong>" in labels_page
    page = paula.get(PROMOTIONS).content.decode()
    assert f'id="promotion-{row.pk}"' in page and "Withdraw" in page
    assert "the label pointed at no revision: everything this revision may do is new" in page
    assert "Approve" not in page  # the requester gets no approve button


def test_another_publisher_approves_with_a_comment_and_the_label_moves(as_user, people, reviewer):
    paula = as_user(people["paula"])
    shown = paula.get(labels_url(reviewer))
    paula.post(
        labels_url(reviewer),
        {"label": "production", "revision": 2, "reason": "ship", "opened": opened(shown)},
    )
    row = PromotionRequest.objects.get()
    quinn = as_user(people["quinn"])
    decide = reverse("admin:agents_app_promotionrequest_decide", args=[row.pk])

    without_comment = quinn.post(decide, {f"{row.pk}-decision": "approve", f"{row.pk}-comment": " "})
    assert without_comment.status_code == 302 and PromotionRequest.objects.get().status == "pending"
    assert "Approve" in quinn.get(PROMOTIONS).content.decode()
    quinn.post(decide, {f"{row.pk}-decision": "approve", f"{row.pk}-comment": "checked Bash"})

    assert PromotionRequest.objects.get().status == "applied"
    assert agent_get(name="reviewer").labels == {"production": 2}
    moved = Event.objects.get(type="agent.label_moved")
    assert moved.metadata["actor"] == "quinn" and moved.metadata["promotion_request"] == str(row.pk)
    assert "checked Bash" in quinn.get(PROMOTIONS).content.decode()


def test_a_viewer_sees_the_promotions_page_but_cannot_decide(
    as_user, people, reviewer, django_capture_on_commit_callbacks
):
    from agents_app.promotions.services import promotion_request

    with django_capture_on_commit_callbacks(execute=True):
        row = promotion_request(
            agent_id=reviewer.agent_id,
            label="production",
            revision=2,
            context=ChangeContext(actor="paula", source="api"),
        )
    victor = as_user(people["victor"])
    assert "Approving needs the publish permission" in victor.get(PROMOTIONS).content.decode()
    decide = reverse("admin:agents_app_promotionrequest_decide", args=[row.pk])
    assert victor.post(decide, {f"{row.pk}-decision": "approve", f"{row.pk}-comment": "x"}).status_code == 403
    assert PromotionRequest.objects.get().status == "pending"
