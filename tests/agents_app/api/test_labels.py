"""`/api/v1/agents/{name}/labels/`: move, remove and list labels; labels as revision references."""

import pytest

from events.models import Event
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENT = "/api/v1/agents/reviewer/"
LABELS = "/api/v1/agents/reviewer/labels/"
PRODUCTION = "/api/v1/agents/reviewer/labels/production/"


@pytest.fixture
def three_revisions(editor_api, created):
    """`reviewer` at revisions 1..3 (stream version 3), all by the editor."""
    for version, body in ((1, "v2\n"), (2, "v3\n")):
        response = editor_api.put(
            AGENT, {"content": agent_text("reviewer", body=body)}, HTTP_IF_MATCH=f'"{version}"'
        )
        assert response.status_code == 200, response.content
    return editor_api


@pytest.fixture
def publisher_api(api, users, created):
    return api.as_user(users["publisher"])


def label_events() -> list[Event]:
    return list(Event.objects.filter(type="agent.label_moved").order_by("position"))


def test_a_publisher_moves_a_label_and_gets_the_labels_with_the_new_etag(publisher_api):
    response = publisher_api.put(PRODUCTION, {"revision": 1, "reason": "ship it"})

    assert response.status_code == 200, response.content
    assert response["ETag"] == '"2"'
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"agent": "reviewer", "labels": {"production": 1}, "stream_version": 2}
    [event] = label_events()
    assert event.data == {"label": "production", "revision": 1}
    assert event.metadata["actor"] == "publisher" and event.metadata["reason"] == "ship it"
    assert event.metadata["source"] == "api"
    agent = publisher_api.get(AGENT).json()
    assert agent["labels"] == {"production": 1} and agent["stream_version"] == 2


def test_moving_a_label_to_the_revision_it_names_already_stores_nothing(publisher_api):
    publisher_api.put(PRODUCTION, {"revision": 1})

    response = publisher_api.put(PRODUCTION, {"revision": 1})

    assert response.status_code == 200 and response["ETag"] == '"2"'
    assert response.json()["labels"] == {"production": 1}
    assert len(label_events()) == 1


def test_a_user_without_the_publish_permission_cannot_move_or_remove_a_label(api, users, created):
    for role in ("editor", "viewer", "auditor", "nobody"):
        api.as_user(users[role])
        assert_problem(api.put(PRODUCTION, {"revision": 1}), 403, "permission-denied")
        assert_problem(api.delete(PRODUCTION), 403, "permission-denied")
    assert label_events() == []


def test_anonymous_label_requests_are_401_with_a_challenge(api, created):
    api.anonymous()
    for response in (api.put(PRODUCTION, {"revision": 1}), api.delete(PRODUCTION), api.get(LABELS)):
        assert_problem(response, 401, "not-authenticated")
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert label_events() == []


def test_three_moves_show_as_current_labels_a_history_and_events(api, users, three_revisions):
    api.as_user(users["publisher"])
    for revision, reason in ((1, "first"), (3, "newest"), (2, "roll back")):
        assert api.put(PRODUCTION, {"revision": revision, "reason": reason}).status_code == 200

    listed = api.as_user(users["viewer"]).get(LABELS)
    events = api.as_user(users["auditor"]).get("/api/v1/events/?agent=reviewer&type=agent.label_moved")

    assert listed.status_code == 200, listed.content
    body = listed.json()
    assert body["agent"] == "reviewer" and body["labels"] == {"production": 2}
    assert [
        (move["label"], move["revision"], move["actor"], move["reason"], move["stream_version"])
        for move in body["history"]
    ] == [
        ("production", 1, "publisher", "first", 4),
        ("production", 3, "publisher", "newest", 5),
        ("production", 2, "publisher", "roll back", 6),
    ]
    assert all(move["recorded_at"] for move in body["history"])
    assert events.status_code == 200, events.content
    moves = events.json()["results"]
    assert [(move["data"], move["metadata"]["actor"], move["stream_version"]) for move in moves] == [
        ({"label": "production", "revision": 1}, "publisher", 4),
        ({"label": "production", "revision": 3}, "publisher", 5),
        ({"label": "production", "revision": 2}, "publisher", 6),
    ]
    assert [move["position"] for move in moves] == sorted(move["position"] for move in moves)
    assert events.json()["next"] is None


def test_several_labels_are_listed_side_by_side(api, users, three_revisions):
    api.as_user(users["publisher"])
    api.put(PRODUCTION, {"revision": 3})
    api.put(f"{LABELS}staging.eu-1/", {"revision": 2})

    body = api.get(LABELS).json()

    assert body["labels"] == {"production": 3, "staging.eu-1": 2}
    assert [move["label"] for move in body["history"]] == ["production", "staging.eu-1"]


def test_delete_removes_a_label_and_deleting_it_again_is_404(publisher_api):
    publisher_api.put(PRODUCTION, {"revision": 1})

    removed = publisher_api.delete(PRODUCTION, {"reason": "withdrawn"})
    again = publisher_api.delete(PRODUCTION)

    assert removed.status_code == 200, removed.content
    assert removed["ETag"] == '"3"'
    assert removed.json() == {"agent": "reviewer", "labels": {}, "stream_version": 3}
    assert_problem(again, 404, "not-found")
    assert [(event.data["revision"], event.metadata["reason"]) for event in label_events()] == [
        (1, ""),
        (None, "withdrawn"),
    ]
    listed = publisher_api.get(LABELS).json()
    assert listed["labels"] == {}
    assert [move["revision"] for move in listed["history"]] == [1, None]
    assert_problem(publisher_api.get(f"{AGENT}?ref=production"), 404, "not-found")


def test_deleting_a_label_that_never_existed_is_404(publisher_api):
    assert_problem(publisher_api.delete(f"{LABELS}staging/"), 404, "not-found")
    assert label_events() == []


def test_a_label_is_a_revision_reference_for_reading_and_diffing(api, users, three_revisions):
    api.as_user(users["publisher"]).put(PRODUCTION, {"revision": 2})
    api.as_user(users["viewer"])

    agent = api.get(f"{AGENT}?ref=production")
    raw = api.get(f"{AGENT}?ref=production", HTTP_ACCEPT="text/markdown")
    diff = api.get("/api/v1/agents/reviewer/diff/?from=production&to=latest")

    assert agent.status_code == 200, agent.content
    assert agent.json()["revision"] == 2 and agent.json()["latest_revision"] == 3
    assert agent.json()["labels"] == {"production": 2}
    assert raw.content == agent_text("reviewer", body="v2\n").encode()
    assert (diff.json()["from"]["revision"], diff.json()["to"]["revision"]) == (2, 3)
    assert diff.json()["body"]["unified"] == "@@ -1 +1 @@\n-v2\n+v3\n"


@pytest.mark.parametrize("label", ["Prod!", "latest", "PRODUCTION", "1st", "-x", "a" * 65])
def test_a_bad_label_name_is_422_and_stores_nothing(publisher_api, label):
    body = assert_problem(publisher_api.put(f"{LABELS}{label}/", {"revision": 1}), 422, "invalid-command")

    assert "label" in body["detail"]
    assert label_events() == []


def test_a_revision_beyond_the_latest_is_404(publisher_api):
    body = assert_problem(publisher_api.put(PRODUCTION, {"revision": 2}), 404, "not-found")

    assert "no revision 2" in body["detail"]
    assert label_events() == []


@pytest.mark.parametrize(
    "payload", [{"revision": 0}, {"revision": "x"}, {"revision": -1}, {}, {"revision": None}]
)
def test_a_missing_or_invalid_revision_is_422_naming_the_field(publisher_api, payload):
    body = assert_problem(publisher_api.put(PRODUCTION, payload), 422, "validation")

    assert body["errors"][0]["field"] == "revision"
    assert label_events() == []


def test_labels_of_an_archived_agent_cannot_move_and_of_an_unknown_agent_are_404(api, users, created):
    api.as_user(users["publisher"]).put(PRODUCTION, {"revision": 1})
    api.as_user(users["editor"]).delete(AGENT)
    api.as_user(users["publisher"])

    assert_problem(api.put(PRODUCTION, {"revision": 1}), 409, "agent-state")
    assert_problem(api.put(f"{LABELS}staging/", {"revision": 1}), 409, "agent-state")
    assert_problem(api.delete(PRODUCTION), 409, "agent-state")
    assert len(label_events()) == 1
    assert_problem(api.put("/api/v1/agents/ghost/labels/production/", {"revision": 1}), 404, "not-found")
    assert_problem(api.get("/api/v1/agents/ghost/labels/"), 404, "not-found")


def test_a_stale_if_match_on_a_label_move_is_412(publisher_api):
    response = publisher_api.put(PRODUCTION, {"revision": 1}, HTTP_IF_MATCH='"7"')
    current = publisher_api.put(PRODUCTION, {"revision": 1}, HTTP_IF_MATCH='"1"')

    body = assert_problem(response, 412, "stale-version")
    assert body["current_version"] == 1
    assert current.status_code == 200 and current["ETag"] == '"2"'


def test_listing_labels_needs_the_view_permission(api, users, created):
    assert_problem(api.as_user(users["nobody"]).get(LABELS), 403, "permission-denied")
    response = api.as_user(users["viewer"]).get(LABELS)
    assert response.status_code == 200
    assert response.json() == {"agent": "reviewer", "labels": {}, "history": []}
