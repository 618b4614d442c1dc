"""Protected labels: policies, promotion requests, four-eyes approval (API.md, "Promotions")."""

import threading
import uuid

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction

from agents_app.models import AgentCurrent
from agents_app.promotions.models import LabelPolicy, PromotionApproval, PromotionRequest
from agents_app.promotions.services import REGISTRY_STREAM, promotion_approve
from agents_app.services import ChangeContext
from agents_app.tokens import api_token_create
from events.models import Event
from events.services import append_lock
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENT = "/api/v1/agents/reviewer/"
PRODUCTION = "/api/v1/agents/reviewer/labels/production/"
POLICY = "/api/v1/labels/production/policy/"
PROMOTIONS = "/api/v1/promotions/"


@pytest.fixture
def publishers(django_user_model):
    """Three more users with the publish permission, so that requests can reach 2 or 3 approvals."""
    made = {}
    for name in ("alice", "bob", "carol"):
        user = django_user_model.objects.create_user(username=name)
        user.groups.set(Group.objects.filter(name="Agent publishers"))
        made[name] = user
    return made


@pytest.fixture
def two_revisions(editor_api, created):
    """`reviewer` at revision 2 (its body changed, no tools key in either)."""
    response = editor_api.put(AGENT, {"content": agent_text("reviewer", body="v2\n")}, HTTP_IF_MATCH='"1"')
    assert response.status_code == 200, response.content
    return editor_api


def protect(api, users, *, approvals=1, widened=None, label="production"):
    body = {"protected": True, "approvals": approvals, "reason": "four eyes"}
    if widened is not None:
        body["approvals_when_widened"] = widened
    response = api.as_user(users["staff"]).put(f"/api/v1/labels/{label}/policy/", body)
    assert response.status_code == 200, response.content
    return response.json()


def request_promotion(api, user, revision=2, reason="ship v2"):
    response = api.as_user(user).put(PRODUCTION, {"revision": revision, "reason": reason})
    assert response.status_code == 202, response.content
    return response


def events(type_: str) -> list[Event]:
    return list(Event.objects.filter(type=type_).order_by("position"))


# -- policies -------------------------------------------------------------------------------------
def test_staff_set_a_label_policy_as_an_event_in_the_registry_stream_with_actor_and_reason(api, users):
    body = protect(api, users, approvals=2, widened=3)

    assert body == {
        "label": "production",
        "protected": True,
        "approvals": 2,
        "approvals_when_widened": 3,
        "updated_by": "staff",
        "updated_at": body["updated_at"],
    }
    [event] = events("registry.label_policy_set")
    assert event.stream_id == REGISTRY_STREAM
    assert event.data == {
        "label": "production",
        "policy": {"protected": True, "approvals": 2, "approvals_when_widened": 3},
    }
    assert (event.metadata["actor"], event.metadata["reason"]) == ("staff", "four eyes")
    assert api.get(POLICY).json()["approvals"] == 2
    protect(api, users, approvals=1)
    assert [e.stream_version for e in events("registry.label_policy_set")] == [1, 2]


def test_an_unset_policy_reads_as_open(api, users):
    assert api.as_user(users["staff"]).get(POLICY).json()["protected"] is False


@pytest.mark.parametrize("role", ["publisher", "editor", "viewer", "admin_token_less_nonstaff"])
def test_only_staff_read_or_set_policies(api, users, django_user_model, role):
    user = users.get(role) or django_user_model.objects.create_user(username=role)
    caller = api.as_user(user)
    assert_problem(caller.get(POLICY), 403)
    assert_problem(caller.put(POLICY, {"protected": True, "approvals": 1}), 403)
    assert not LabelPolicy.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"approvals": 1}, "protected"),
        ({"protected": True}, "approvals"),
        ({"protected": "yes", "approvals": 1}, "protected"),
        ({"protected": True, "approvals": 0}, "approvals"),
        ({"protected": True, "approvals": 11}, "approvals"),
        ({"protected": True, "approvals": True}, "approvals"),
        ({"protected": True, "approvals": "2"}, "approvals"),
        ({"protected": True, "approvals": 2, "approvals_when_widened": 1}, "approvals_when_widened"),
        ({"protected": True, "approvals": 2, "approvals_when_widened": 11}, "approvals_when_widened"),
        ({"protected": True, "approvals": 1, "reason": 5}, "reason"),
        ({"protected": True, "approvals": 1, "reason": "x" * 2001}, "reason"),
        ({"protected": True, "approvals": 1, "colour": "red"}, "colour"),
        ([1, 2], "body"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field_and_stores_nothing(api, users, body, field):
    response = api.as_user(users["staff"]).put(POLICY, body)

    problem = assert_problem(response, 422)
    assert field in {error["field"] for error in problem.get("errors", [])} or field in problem["detail"], (
        problem
    )
    assert not LabelPolicy.objects.exists()
    assert not events("registry.label_policy_set")


def test_a_bad_label_in_the_policy_url_is_refused(api, users):
    problem = assert_problem(
        api.as_user(users["staff"]).put("/api/v1/labels/latest/policy/", {"protected": True, "approvals": 1}),
        400,
    )
    assert problem["errors"][0]["field"] == "label"


# -- requesting -----------------------------------------------------------------------------------
def test_moving_a_protected_label_answers_202_with_a_request_and_moves_nothing(api, users, two_revisions):
    protect(api, users)

    response = request_promotion(api, users["publisher"])

    body = response.json()
    assert response["Location"] == f"/api/v1/promotions/{body['id']}/"
    assert body["status"] == "pending"
    assert (body["agent"], body["label"], body["from_revision"], body["to_revision"]) == (
        "reviewer",
        "production",
        None,
        2,
    )
    assert (body["requested_by"], body["reason"], body["required_approvals"], body["approvals"]) == (
        "publisher",
        "ship v2",
        1,
        [],
    )
    assert set(body["permissions"]) == {"from", "to", "widened", "changes"}
    assert AgentCurrent.objects.get(name="reviewer").labels == {}
    assert not events("agent.label_moved")
    [event] = events("agent.promotion_requested")
    assert event.data["request_id"] == body["id"] and event.metadata["actor"] == "publisher"
    assert api.get(response["Location"]).json() == body


@pytest.mark.parametrize("role", ["viewer", "editor", "nobody"])
def test_only_publishers_request_a_promotion(api, users, two_revisions, role):
    protect(api, users)
    assert_problem(api.as_user(users[role]).put(PRODUCTION, {"revision": 2}), 403)
    assert not PromotionRequest.objects.exists()


def test_a_request_for_the_revision_the_label_already_points_at_is_refused_409(api, users, two_revisions):
    assert api.as_user(users["publisher"]).put(PRODUCTION, {"revision": 2}).status_code == 200
    protect(api, users)

    assert_problem(api.as_user(users["publisher"]).put(PRODUCTION, {"revision": 2}), 409, "promotion-state")
    assert not PromotionRequest.objects.exists()


def test_a_second_request_while_one_is_pending_is_refused_409(api, users, two_revisions):
    protect(api, users)
    request_promotion(api, users["publisher"])
    assert_problem(api.as_user(users["admin"]).put(PRODUCTION, {"revision": 1}), 409, "promotion-state")
    assert PromotionRequest.objects.count() == 1


def test_removing_a_protected_label_is_refused_409_until_it_is_unprotected(api, users, two_revisions):
    assert api.as_user(users["publisher"]).put(PRODUCTION, {"revision": 2}).status_code == 200
    protect(api, users)

    assert_problem(api.as_user(users["publisher"]).delete(PRODUCTION), 409, "label-protected")
    assert AgentCurrent.objects.get(name="reviewer").labels == {"production": 2}
    staff = api.as_user(users["staff"])
    assert staff.put(POLICY, {"protected": False, "approvals": 1}).status_code == 200
    assert api.as_user(users["publisher"]).delete(PRODUCTION).status_code == 200


def test_a_request_for_a_missing_revision_is_404_and_stores_nothing(api, users, two_revisions):
    protect(api, users)
    assert_problem(api.as_user(users["publisher"]).put(PRODUCTION, {"revision": 9}), 404)
    assert not PromotionRequest.objects.exists() and not events("agent.promotion_requested")


# -- approving ------------------------------------------------------------------------------------
def test_the_last_approval_moves_the_label_in_its_transaction_naming_the_request_as_cause(
    api, users, publishers, two_revisions
):
    protect(api, users, approvals=2)
    request_id = request_promotion(api, users["publisher"]).json()["id"]

    first = api.as_user(publishers["alice"]).post(
        f"{PROMOTIONS}{request_id}/approve/", {"comment": "looks fine"}
    )
    assert first.status_code == 200, first.content
    assert first.json()["status"] == "pending" and AgentCurrent.objects.get(name="reviewer").labels == {}
    second = api.as_user(publishers["bob"]).post(f"{PROMOTIONS}{request_id}/approve/", {"comment": "ok"})

    body = second.json()
    assert body["status"] == "applied"
    assert [(a["by"], a["comment"]) for a in body["approvals"]] == [("alice", "looks fine"), ("bob", "ok")]
    assert AgentCurrent.objects.get(name="reviewer").labels == {"production": 2}
    requested = events("agent.promotion_requested")[0]
    approvals = events("agent.promotion_approved")
    [moved] = events("agent.label_moved")
    assert [e.metadata["actor"] for e in approvals] == ["alice", "bob"]
    assert moved.data == {"label": "production", "revision": 2}
    assert moved.metadata["causation_id"] == str(requested.event_id)
    assert moved.metadata["promotion_request"] == request_id
    assert moved.metadata["actor"] == "bob"
    assert moved.stream_version == approvals[-1].stream_version + 1


@pytest.mark.parametrize("credential", ["session", "token"])
@pytest.mark.parametrize("who", ["publisher", "admin"])
def test_nobody_approves_their_own_request_superusers_and_tokens_included(
    api, users, two_revisions, credential, who
):
    protect(api, users)
    request_id = request_promotion(api, users[who]).json()["id"]
    url = f"{PROMOTIONS}{request_id}/approve/"

    if credential == "token":
        _, token = api_token_create(user=users[who])
        api.anonymous()
        response = api.post(url, {"comment": "mine"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    else:
        response = api.as_user(users[who]).post(url, {"comment": "mine"})

    assert_problem(response, 403, "four-eyes")
    assert not PromotionApproval.objects.exists() and not events("agent.promotion_approved")
    assert AgentCurrent.objects.get(name="reviewer").labels == {}


def test_nobody_approves_twice(api, users, publishers, two_revisions):
    protect(api, users, approvals=2)
    request_id = request_promotion(api, users["publisher"]).json()["id"]
    alice = api.as_user(publishers["alice"])
    assert alice.post(f"{PROMOTIONS}{request_id}/approve/", {"comment": "yes"}).status_code == 200

    assert_problem(alice.post(f"{PROMOTIONS}{request_id}/approve/", {"comment": "yes!"}), 403, "four-eyes")
    assert PromotionApproval.objects.count() == 1 and len(events("agent.promotion_approved")) == 1


@pytest.mark.parametrize("credential", ["session", "token"])
@pytest.mark.parametrize("role", ["viewer", "editor", "auditor", "nobody"])
def test_without_the_publish_permission_nobody_approves_or_rejects(
    api, users, two_revisions, credential, role
):
    protect(api, users)
    request_id = request_promotion(api, users["publisher"]).json()["id"]
    if credential == "token":
        _, token = api_token_create(user=users[role])
        api.anonymous()
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    else:
        api.as_user(users[role])
        headers = {}
    for action in ("approve", "reject"):
        assert_problem(api.post(f"{PROMOTIONS}{request_id}/{action}/", {"comment": "x"}, **headers), 403)
    assert PromotionRequest.objects.get().status == "pending"


def test_a_token_of_another_publisher_approves(api, users, publishers, two_revisions):
    protect(api, users)
    request_id = request_promotion(api, users["publisher"]).json()["id"]
    _, token = api_token_create(user=publishers["alice"])
    api.anonymous()
    response = api.post(
        f"{PROMOTIONS}{request_id}/approve/", {"comment": "ok"}, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.json()["status"] == "applied"
    assert events("agent.promotion_approved")[0].metadata["actor"] == "alice"


def test_a_widening_change_needs_approvals_when_widened(api, users, publishers, editor_api, created):
    # Revision 1 grants Read only; revision 2 adds Bash: a widening.
    assert (
        editor_api.put(
            AGENT, {"content": agent_text("reviewer", extra="tools: Read\n")}, HTTP_IF_MATCH='"1"'
        ).status_code
        == 200
    )
    assert (
        editor_api.put(
            AGENT, {"content": agent_text("reviewer", extra="tools: Read, Bash\n")}, HTTP_IF_MATCH='"2"'
        ).status_code
        == 200
    )
    assert api.as_user(users["publisher"]).put(PRODUCTION, {"revision": 2}).status_code == 200
    protect(api, users, approvals=1, widened=3)

    body = request_promotion(api, users["publisher"], revision=3).json()
    assert body["widened"] is True and body["required_approvals"] == 3
    [change] = body["permissions"]["changes"]
    assert (change["field"], change["kind"], change["severity"], change["added"]) == (
        "tools",
        "widened",
        "high",
        ["Bash"],
    )
    for name in ("alice", "bob"):
        api.as_user(publishers[name]).post(f"{PROMOTIONS}{body['id']}/approve/", {"comment": "ok"})
    assert AgentCurrent.objects.get(name="reviewer").labels == {"production": 2}
    done = api.as_user(publishers["carol"]).post(f"{PROMOTIONS}{body['id']}/approve/", {"comment": "ok"})
    assert done.json()["status"] == "applied"
    assert AgentCurrent.objects.get(name="reviewer").labels == {"production": 3}


def test_a_narrowing_change_needs_only_approvals(api, users, editor_api, created):
    assert (
        editor_api.put(
            AGENT, {"content": agent_text("reviewer", extra="tools: Read, Bash\n")}, HTTP_IF_MATCH='"1"'
        ).status_code
        == 200
    )
    assert (
        editor_api.put(
            AGENT, {"content": agent_text("reviewer", extra="tools: Read\n")}, HTTP_IF_MATCH='"2"'
        ).status_code
        == 200
    )
    assert api.as_user(users["publisher"]).put(PRODUCTION, {"revision": 2}).status_code == 200
    protect(api, users, approvals=1, widened=3)
    body = request_promotion(api, users["publisher"], revision=3).json()
    assert (body["widened"], body["required_approvals"]) == (False, 1)


# -- reject, withdraw, finished requests ----------------------------------------------------------
def test_another_publisher_rejects_with_a_comment_as_an_event(api, users, publishers, two_revisions):
    protect(api, users)
    request_id = request_promotion(api, users["publisher"]).json()["id"]
    assert_problem(
        api.as_user(users["publisher"]).post(f"{PROMOTIONS}{request_id}/reject/", {"comment": "no"}), 403
    )

    body = (
        api.as_user(publishers["alice"])
        .post(f"{PROMOTIONS}{request_id}/reject/", {"comment": "not yet"})
        .json()
    )

    assert (body["status"], body["decided_by"], body["decision_comment"]) == ("rejected", "alice", "not yet")
    [event] = events("agent.promotion_rejected")
    assert (event.metadata["actor"], event.data["comment"], event.data["request_id"]) == (
        "alice",
        "not yet",
        request_id,
    )


def test_only_the_requester_withdraws(api, users, publishers, two_revisions):
    protect(api, users)
    request_id = request_promotion(api, users["publisher"]).json()["id"]
    for other in (publishers["alice"], users["admin"]):
        assert_problem(api.as_user(other).post(f"{PROMOTIONS}{request_id}/withdraw/", {}), 403, "four-eyes")

    body = (
        api.as_user(users["publisher"])
        .post(f"{PROMOTIONS}{request_id}/withdraw/", {"comment": "oops"})
        .json()
    )

    assert body["status"] == "withdrawn"
    [event] = events("agent.promotion_withdrawn")
    assert event.metadata["actor"] == "publisher"


@pytest.mark.parametrize("finish", ["withdraw", "reject", "approve"])
@pytest.mark.parametrize("then", ["approve", "reject", "withdraw"])
def test_a_finished_request_answers_409_and_stores_nothing(
    api, users, publishers, two_revisions, finish, then
):
    protect(api, users)
    request_id = request_promotion(api, users["publisher"]).json()["id"]
    finisher = users["publisher"] if finish == "withdraw" else publishers["alice"]
    assert (
        api.as_user(finisher).post(f"{PROMOTIONS}{request_id}/{finish}/", {"comment": "done"}).status_code
        == 200
    )
    before = Event.objects.count()
    actor = users["publisher"] if then == "withdraw" else publishers["bob"]

    assert_problem(
        api.as_user(actor).post(f"{PROMOTIONS}{request_id}/{then}/", {"comment": "late"}),
        409,
        "promotion-finished",
    )
    assert Event.objects.count() == before
    assert PromotionApproval.objects.filter(by="bob").count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "comment"),
        ({"comment": ""}, "comment"),
        ({"comment": "  "}, "comment"),
        ({"comment": 3}, "comment"),
        ({"comment": "x" * 2001}, "comment"),
        ({"comment": "ok", "extra": 1}, "extra"),
        ([], "body"),
    ],
)
@pytest.mark.parametrize("action", ["approve", "reject"])
def test_a_bad_comment_is_refused_naming_the_field(
    api, users, publishers, two_revisions, body, field, action
):
    protect(api, users)
    request_id = request_promotion(api, users["publisher"]).json()["id"]
    problem = assert_problem(
        api.as_user(publishers["alice"]).post(f"{PROMOTIONS}{request_id}/{action}/", body), 422
    )
    assert problem["errors"][0]["field"] == field
    assert PromotionRequest.objects.get().status == "pending" and not PromotionApproval.objects.exists()


def test_unknown_or_malformed_request_ids_are_404(api, users):
    api.as_user(users["publisher"])
    assert_problem(api.get(f"{PROMOTIONS}not-a-uuid/"), 404)
    assert_problem(api.post(f"{PROMOTIONS}{uuid.uuid4()}/approve/", {"comment": "x"}), 404)


def test_the_list_filters_by_status_pending_first(api, users, publishers, two_revisions):
    protect(api, users)
    first = request_promotion(api, users["publisher"]).json()["id"]
    api.as_user(users["publisher"]).post(f"{PROMOTIONS}{first}/withdraw/", {})
    second = request_promotion(api, users["publisher"]).json()["id"]
    viewer = api.as_user(users["viewer"])
    assert [r["id"] for r in viewer.get(PROMOTIONS).json()["results"]] == [second, first]
    assert [r["id"] for r in viewer.get(f"{PROMOTIONS}?status=withdrawn").json()["results"]] == [first]
    assert_problem(viewer.get(f"{PROMOTIONS}?status=bogus"), 400)


# -- the race for the last slot -------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_approvals_racing_for_the_last_slot_move_the_label_once(django_user_model, publishers_tx):
    from agents_app import services
    from agents_app.promotions.services import label_policy_set, promotion_request

    staff = ChangeContext(actor="staff", source="api")
    change = services.agent_create(content=agent_text("reviewer"), context=staff)
    services.agent_revise(
        agent_id=change.agent_id, content=agent_text("reviewer", body="v2\n"), context=staff
    )
    label_policy_set(label="production", protected=True, approvals=2, context=staff)
    row = promotion_request(
        agent_id=change.agent_id,
        label="production",
        revision=2,
        context=ChangeContext(actor="publisher", source="api"),
    )
    promotion_approve(request_id=row.pk, comment="first", context=ChangeContext(actor="alice", source="api"))

    holding, release = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def hold_the_lock():
        try:
            with transaction.atomic():
                append_lock()
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    def approve(actor):
        try:
            results[actor] = promotion_approve(
                request_id=row.pk, comment="me too", context=ChangeContext(actor=actor, source="api")
            ).status
        except Exception as exc:  # the outcome is what the test compares
            results[actor] = type(exc).__name__
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(10)
    racers = [threading.Thread(target=approve, args=(actor,)) for actor in ("bob", "carol")]
    for racer in racers:
        racer.start()
    # Both approvals are now queued on the append lock behind the holder (they cannot pass it).
    racers[0].join(0.5)
    assert all(racer.is_alive() for racer in racers)
    release.set()
    holder.join(10)
    for racer in racers:
        racer.join(10)

    assert sorted(map(str, results.values())) == ["PromotionFinished", "applied"], results
    assert Event.objects.filter(type="agent.label_moved").count() == 1
    assert Event.objects.filter(type="agent.promotion_approved").count() == 2
    assert PromotionApproval.objects.count() == 2
    assert PromotionRequest.objects.get().status == "applied"


@pytest.fixture
def publishers_tx(transactional_db):
    return None


def test_the_list_filters_by_agent_and_an_unknown_agent_lists_nothing(api, users, two_revisions):
    protect(api, users)
    request_id = request_promotion(api, users["publisher"]).json()["id"]
    viewer = api.as_user(users["viewer"])
    assert [r["id"] for r in viewer.get(f"{PROMOTIONS}?agent=reviewer").json()["results"]] == [request_id]
    assert viewer.get(f"{PROMOTIONS}?agent=nobody-here").json()["results"] == []


def test_a_retried_request_with_the_same_idempotency_key_creates_one_request(api, users, two_revisions):
    protect(api, users)
    publisher = api.as_user(users["publisher"])
    first = publisher.put(PRODUCTION, {"revision": 2}, HTTP_IDEMPOTENCY_KEY="promote-1")
    again = publisher.put(PRODUCTION, {"revision": 2}, HTTP_IDEMPOTENCY_KEY="promote-1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert again["Location"] == first["Location"]
    assert PromotionRequest.objects.count() == 1 and len(events("agent.promotion_requested")) == 1
