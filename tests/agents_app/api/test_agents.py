"""`/api/v1/agents/`: create, read, replace, edit, archive, restore, revert, rename redirects, lists."""

import datetime as dt

import pytest

from events.models import Event
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENTS = "/api/v1/agents/"


def test_create_answers_201_with_location_etag_and_the_parsed_agent(editor_api):
    response = editor_api.post(
        AGENTS, {"content": agent_text("reviewer", extra="tools: Read, Grep\n"), "reason": "r"}
    )

    assert response.status_code == 201
    assert response["Location"] == "/api/v1/agents/reviewer/"
    assert response["ETag"] == '"1"'
    body = response.json()
    assert body["name"] == "reviewer"
    assert body["revision"] == 1 and body["stream_version"] == 1 and body["status"] == "active"
    assert body["tools"] == ["Read", "Grep"]
    assert body["created_by"] == "editor" and body["updated_by"] == "editor"
    assert body["content"] == agent_text("reviewer", extra="tools: Read, Grep\n")
    event = Event.objects.get()
    assert event.metadata["actor"] == "editor" and event.metadata["source"] == "api"
    assert event.metadata["reason"] == "r" and event.metadata["request_id"]


def test_create_from_a_raw_markdown_body_takes_the_reason_from_a_header(editor_api):
    text = "---\r\nname: crlf\r\ndescription: d\r\n---\r\nbody é"
    response = editor_api.post(
        AGENTS, text.encode(), content_type="text/markdown", **{"X-Change-Reason": "raw"}
    )

    assert response.status_code == 201, response.content
    raw = editor_api.get("/api/v1/agents/crlf/", HTTP_ACCEPT="text/markdown")
    assert raw["Content-Type"].startswith("text/markdown")
    assert raw.content == text.encode()
    assert Event.objects.get().metadata["reason"] == "raw"


def test_the_actor_is_the_authenticated_user_whatever_the_body_claims(editor_api):
    editor_api.post(
        AGENTS, {"content": agent_text("reviewer"), "actor": "mallory", "metadata": {"actor": "x"}}
    )

    assert Event.objects.get().metadata["actor"] == "editor"


@pytest.mark.parametrize(
    ("content", "field", "line"),
    [
        ("no frontmatter at all\n", "content", 1),
        ("---\ndescription: d\n---\nbody\n", "name", None),
        ("---\nname: Bad Name\ndescription: d\n---\n", "name", 2),
    ],
)
def test_an_invalid_document_is_422_naming_field_and_line_and_stores_nothing(
    editor_api, content, field, line
):
    response = editor_api.post(AGENTS, {"content": content})

    body = assert_problem(response, 422, "invalid-document")
    assert any(error["field"] == field for error in body["errors"]), body
    if line is not None:
        assert any(error.get("line") == line for error in body["errors"]), body
    assert Event.objects.count() == 0


def test_a_body_that_is_not_an_object_or_lacks_content_is_422(editor_api):
    assert_problem(editor_api.post(AGENTS, ["x"]), 422)
    body = assert_problem(editor_api.post(AGENTS, {"reason": "no content"}), 422, "validation")
    assert body["errors"][0]["field"] == "content"
    assert Event.objects.count() == 0


def test_malformed_json_is_400_and_an_unknown_media_type_415(editor_api):
    assert_problem(editor_api.post(AGENTS, b"{nope", content_type="application/json"), 400)
    assert_problem(editor_api.post(AGENTS, b"x", content_type="application/xml"), 415)


def test_a_second_active_agent_with_the_same_name_is_409(editor_api, created):
    assert_problem(editor_api.post(AGENTS, {"content": agent_text("reviewer")}), 409, "name-taken")
    assert Event.objects.count() == 1


def test_get_returns_the_agent_with_its_etag_and_304_when_unchanged(editor_api, created):
    response = editor_api.get("/api/v1/agents/reviewer/")

    assert response.status_code == 200 and response["ETag"] == '"1"'
    assert response.json()["id"] == created["id"]
    assert editor_api.get("/api/v1/agents/reviewer/", HTTP_IF_NONE_MATCH='"1"').status_code == 304


def test_an_unknown_agent_is_a_404_problem(editor_api):
    assert_problem(editor_api.get("/api/v1/agents/nobody-here/"), 404, "not-found")
    assert_problem(editor_api.get("/api/v1/agents/..%2f..%2fetc/"), 404)


def test_put_with_if_match_makes_a_new_revision(editor_api, created):
    new = agent_text("reviewer", body="Review very carefully.\n")
    response = editor_api.put(
        "/api/v1/agents/reviewer/", {"content": new, "reason": "stricter"}, HTTP_IF_MATCH='"1"'
    )

    assert response.status_code == 200, response.content
    assert response["ETag"] == '"2"'
    assert response.json()["revision"] == 2 and response.json()["content"] == new


def test_put_without_if_match_is_428_and_stores_nothing(editor_api, created):
    response = editor_api.put("/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="x\n")})

    assert_problem(response, 428, "precondition-required")
    assert Event.objects.count() == 1


def test_put_with_a_stale_if_match_is_412_naming_the_version_and_who_changed_it(editor_api, created):
    editor_api.put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="a\n")}, HTTP_IF_MATCH='"1"'
    )

    response = editor_api.put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="b\n")}, HTTP_IF_MATCH='"1"'
    )

    body = assert_problem(response, 412, "stale-version")
    assert body["current_version"] == 2 and body["changed_by"] == "editor" and body["current_revision"] == 2
    assert Event.objects.count() == 2


def test_expected_version_in_the_body_stands_in_for_if_match(editor_api, created):
    ok = editor_api.put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="a\n"), "expected_version": 1}
    )
    stale = editor_api.put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="b\n"), "expected_version": 1}
    )

    assert ok.status_code == 200
    assert_problem(stale, 412)


@pytest.mark.parametrize("header", ['W/"1"', '"x"', "1, 2", '"99999999999"'])
def test_a_malformed_if_match_is_400(editor_api, created, header):
    response = editor_api.put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="a\n")}, HTTP_IF_MATCH=header
    )

    body = assert_problem(response, 400)
    assert body["errors"][0]["field"] == "If-Match"


def test_identical_content_is_a_200_no_op_without_an_event(editor_api, created):
    response = editor_api.put(
        "/api/v1/agents/reviewer/", {"content": created["content"]}, HTTP_IF_MATCH='"1"'
    )

    assert response.status_code == 200 and response["ETag"] == '"1"'
    assert Event.objects.count() == 1


def test_put_raw_markdown_with_if_match(editor_api, created):
    text = agent_text("reviewer", body="raw put\n")
    response = editor_api.put(
        "/api/v1/agents/reviewer/", text.encode(), content_type="text/markdown", HTTP_IF_MATCH='"1"'
    )

    assert response.status_code == 200, response.content
    assert response.json()["content"] == text


def test_patch_changes_named_keys_and_keeps_every_other_byte(editor_api):
    original = (
        "---\nname: patched  # the id\ndescription: >\n  Folded text\n  over lines\n"
        "tools: 'Read, Grep'\nmodel: sonnet\n---\nBody stays.\n"
    )
    editor_api.post(AGENTS, {"content": original})

    response = editor_api.patch(
        "/api/v1/agents/patched/",
        {"frontmatter": {"model": "opus", "color": "blue"}, "reason": "x"},
        HTTP_IF_MATCH='"1"',
    )

    assert response.status_code == 200, response.content
    content = response.json()["content"]
    assert content == original.replace("model: sonnet\n", "model: opus\ncolor: blue\n")


def test_patch_removes_a_key_with_null_and_replaces_the_body(editor_api, created):
    text = agent_text("reviewer", extra="model: opus\n")
    editor_api.put("/api/v1/agents/reviewer/", {"content": text}, HTTP_IF_MATCH='"1"')

    response = editor_api.patch(
        "/api/v1/agents/reviewer/",
        {"frontmatter": {"model": None}, "body": "New body.\n"},
        HTTP_IF_MATCH='"2"',
    )

    assert response.status_code == 200, response.content
    assert response.json()["content"] == agent_text("reviewer", body="New body.\n")


def test_patch_needs_if_match_something_to_change_and_a_valid_result(editor_api, created):
    assert_problem(editor_api.patch("/api/v1/agents/reviewer/", {"body": "x\n"}), 428)
    assert_problem(
        editor_api.patch("/api/v1/agents/reviewer/", {"reason": "nothing"}, HTTP_IF_MATCH='"1"'), 422
    )
    body = assert_problem(
        editor_api.patch("/api/v1/agents/reviewer/", {"frontmatter": {"name": None}}, HTTP_IF_MATCH='"1"'),
        422,
    )
    assert any("name" in error["field"] for error in body["errors"])
    assert Event.objects.count() == 1


def test_delete_archives_and_restore_undoes_it(editor_api, created):
    archived = editor_api.delete("/api/v1/agents/reviewer/", {"reason": "retired"})
    again = editor_api.delete("/api/v1/agents/reviewer/")
    restored = editor_api.post("/api/v1/agents/reviewer/restore/", {"reason": "back"})

    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    assert_problem(again, 409, "agent-state")
    assert restored.status_code == 200 and restored.json()["status"] == "active"
    assert restored["ETag"] == '"3"'
    assert list(Event.objects.values_list("type", flat=True).order_by("position")) == [
        "agent.created",
        "agent.archived",
        "agent.restored",
    ]


def test_changing_an_archived_agent_is_409(editor_api, created):
    editor_api.delete("/api/v1/agents/reviewer/")

    response = editor_api.put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="x\n")}, HTTP_IF_MATCH='"2"'
    )

    assert_problem(response, 409, "agent-state")


def test_revert_stores_an_old_revision_as_a_new_one(editor_api, created):
    editor_api.put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="v2\n")}, HTTP_IF_MATCH='"1"'
    )

    response = editor_api.post("/api/v1/agents/reviewer/revert/", {"to": "1", "reason": "v2 was wrong"})

    assert response.status_code == 200, response.content
    assert response.json()["revision"] == 3 and response.json()["content"] == created["content"]
    assert Event.objects.order_by("-position").first().data["reverted_to"] == 1


def test_revert_to_a_missing_revision_is_404_and_a_bad_ref_400(editor_api, created):
    assert_problem(editor_api.post("/api/v1/agents/reviewer/revert/", {"to": "7"}), 404)
    assert_problem(editor_api.post("/api/v1/agents/reviewer/revert/", {"to": "-1"}), 400, "invalid-reference")
    assert_problem(editor_api.post("/api/v1/agents/reviewer/revert/", {}), 422)


def test_a_renamed_agent_answers_301_under_its_old_name_until_the_name_is_taken(editor_api, created):
    editor_api.put("/api/v1/agents/reviewer/", {"content": agent_text("critic")}, HTTP_IF_MATCH='"1"')

    moved = editor_api.get("/api/v1/agents/reviewer/revisions/?limit=5")
    assert moved.status_code == 301
    assert moved["Location"] == "/api/v1/agents/critic/revisions/?limit=5"

    editor_api.post(AGENTS, {"content": agent_text("reviewer", description="a new one")})
    taken = editor_api.get("/api/v1/agents/reviewer/")
    assert taken.status_code == 200 and taken.json()["description"] == "a new one"


def test_get_with_a_ref_shows_that_revision_and_the_current_state(editor_api, created):
    editor_api.put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="v2\n")}, HTTP_IF_MATCH='"1"'
    )

    old = editor_api.get("/api/v1/agents/reviewer/?ref=1").json()
    raw = editor_api.get("/api/v1/agents/reviewer/?ref=1", HTTP_ACCEPT="text/markdown")

    assert old["revision"] == 1 and old["latest_revision"] == 2 and old["stream_version"] == 2
    assert raw.content.decode() == created["content"]
    assert_problem(editor_api.get("/api/v1/agents/reviewer/?ref=3"), 404)
    assert_problem(editor_api.get("/api/v1/agents/reviewer/?ref=@yesterday"), 400, "invalid-reference")


def test_time_travel_by_ref_and_by_listing_at_an_instant(editor_api, created):
    first = Event.objects.get().recorded_at
    editor_api.put(
        "/api/v1/agents/reviewer/", {"content": agent_text("reviewer", body="v2\n")}, HTTP_IF_MATCH='"1"'
    )
    second = Event.objects.order_by("-position").first().recorded_at
    between = first + (second - first) / 2

    at_first = editor_api.get(f"/api/v1/agents/reviewer/?ref=@{between.isoformat()}")
    at_second = editor_api.get(f"/api/v1/agents/reviewer/?ref=@{second.isoformat()}")
    before = editor_api.get(f"/api/v1/agents/reviewer/?ref=@{(first - dt.timedelta(days=1)).isoformat()}")
    listed = editor_api.get(f"{AGENTS}?at={between.isoformat().replace('+', '%2B')}")

    assert at_first.json()["revision"] == 1
    assert at_second.json()["revision"] == 2
    assert_problem(before, 404)
    assert [(row["name"], row["revision"]) for row in listed.json()["results"]] == [("reviewer", 1)]


def test_listing_at_an_instant_leaves_out_agents_archived_then(editor_api, created):
    editor_api.delete("/api/v1/agents/reviewer/")
    after = Event.objects.order_by("-position").first().recorded_at + dt.timedelta(seconds=1)

    listed = editor_api.get(f"{AGENTS}?at={after.isoformat().replace('+', '%2B')}")

    assert listed.json()["results"] == []


def test_list_filters_by_text_model_tool_status_and_label(editor_api, users):
    editor_api.post(
        AGENTS, {"content": agent_text("alpha", description="Finds bugs", extra="model: opus\ntools: Bash\n")}
    )
    editor_api.post(
        AGENTS, {"content": agent_text("beta", extra="model: sonnet\ntools: [Read, BashOutput]\n")}
    )
    editor_api.post(AGENTS, {"content": agent_text("gamma")})
    editor_api.delete("/api/v1/agents/gamma/")
    editor_api.as_user(users["admin"]).put("/api/v1/agents/beta/labels/production/", {"revision": 1})
    editor_api.as_user(users["editor"])

    def names(query: str) -> list[str]:
        response = editor_api.get(f"{AGENTS}{query}")
        assert response.status_code == 200, response.content
        return [row["name"] for row in response.json()["results"]]

    assert names("") == ["alpha", "beta"]
    assert names("?q=bugs") == ["alpha"]
    assert names("?model=sonnet") == ["beta"]
    assert names("?tool=Bash") == ["alpha"]
    assert names("?status=archived") == ["gamma"]
    assert names("?status=all") == ["alpha", "beta", "gamma"]
    assert names("?label=production") == ["beta"]
    assert_problem(editor_api.get(f"{AGENTS}?status=deleted"), 400)
    assert_problem(editor_api.get(f"{AGENTS}?limit=0"), 400)
    assert_problem(editor_api.get(f"{AGENTS}?at=tomorrow"), 400)


def test_list_pages_with_a_cursor(editor_api):
    for name in ("a1", "a2", "a3", "a4", "a5"):
        editor_api.post(AGENTS, {"content": agent_text(name)})

    seen, url = [], f"{AGENTS}?limit=2"
    while url:
        page = editor_api.get(url).json()
        seen += [row["name"] for row in page["results"]]
        url = page["next"]

    assert seen == ["a1", "a2", "a3", "a4", "a5"]


def test_revisions_list_and_one_revision_raw_and_json(editor_api, created):
    editor_api.put(
        "/api/v1/agents/reviewer/",
        {"content": agent_text("reviewer", body="v2\nmore\n"), "reason": "why"},
        HTTP_IF_MATCH='"1"',
    )

    history = editor_api.get("/api/v1/agents/reviewer/revisions/").json()["results"]
    second = editor_api.get("/api/v1/agents/reviewer/revisions/2/")
    raw = editor_api.get("/api/v1/agents/reviewer/revisions/1/", HTTP_ACCEPT="text/markdown")

    assert [row["revision"] for row in history] == [1, 2]
    assert history[1]["reason"] == "why" and history[1]["actor"] == "editor" and history[1]["source"] == "api"
    assert (history[1]["lines_added"], history[1]["lines_removed"]) == (2, 1)
    assert second.json()["content"] == agent_text("reviewer", body="v2\nmore\n")
    assert raw.content.decode() == created["content"]
    assert_problem(editor_api.get("/api/v1/agents/reviewer/revisions/3/"), 404)
    assert editor_api.get("/api/v1/agents/reviewer/revisions/99999999999999999999/").status_code == 404


def test_an_unsupported_accept_is_406(editor_api, created):
    assert_problem(editor_api.get("/api/v1/agents/reviewer/", HTTP_ACCEPT="image/png"), 406)
    assert_problem(editor_api.get("/api/v1/agents/reviewer/?format=pdf"), 406)
