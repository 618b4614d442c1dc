"""The copilot dialect over REST (API.md "Agents": `dialect`; issue 15 item 6): create with
`"dialect"` and, for a document without a name key, `"name"`; the agent keeps both."""

import pytest

from agents_app.models import AgentCurrent, AgentNameClaim, AgentRevision
from events.models import Event
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENTS = "/api/v1/agents/"


def copilot_text(
    *, name: str | None = None, tools: str | None = None, extra: str = "", body: str = "Plan.\n"
) -> str:
    lines = ["---"]
    if name is not None:
        lines.append(f"name: {name}")
    lines.append("description: Plans a change")
    if tools is not None:
        lines.append(f"tools: {tools}")
    return "\n".join(lines) + "\n" + extra + "---\n" + body


def create(api, body: dict, status: int = 201):
    response = api.post(AGENTS, {"reason": "test", **body})
    assert response.status_code == status, response.content
    return response.json()


def nothing_stored() -> bool:
    return (
        not Event.objects.exists()
        and not AgentCurrent.objects.exists()
        and not AgentNameClaim.objects.exists()
    )


def test_a_copilot_agent_without_a_name_key_is_created_under_the_name_of_the_request(editor_api):
    body = create(editor_api, {"content": copilot_text(), "dialect": "copilot", "name": "planner"})

    assert (body["name"], body["dialect"]) == ("planner", "copilot")
    assert body["permissions"]["tools"] == "all"
    event = Event.objects.get()
    assert event.data == {
        "content": copilot_text(),
        "revision": 1,
        "dialect": "copilot",
        "name": "planner",
    }
    shown = editor_api.get(f"{AGENTS}planner/").json()
    assert (shown["name"], shown["dialect"], shown["content"]) == ("planner", "copilot", copilot_text())
    revision = editor_api.get(f"{AGENTS}planner/revisions/1/").json()
    assert (revision["name"], revision["dialect"]) == ("planner", "copilot")


def test_a_copilot_agent_with_a_name_key_needs_no_name_in_the_request_and_stores_none_in_its_event(
    editor_api,
):
    body = create(
        editor_api, {"content": copilot_text(name="planner", tools="['read']"), "dialect": "copilot"}
    )

    assert (body["name"], body["dialect"], body["permissions"]["tools"]) == ("planner", "copilot", ["read"])
    assert Event.objects.get().data == {
        "content": copilot_text(name="planner", tools="['read']"),
        "revision": 1,
        "dialect": "copilot",
    }


def test_a_claude_code_agent_stores_no_dialect_in_its_event_and_shows_claude_code(editor_api):
    body = create(editor_api, {"content": agent_text("reviewer")})

    assert body["dialect"] == "claude-code"
    assert Event.objects.get().data == {"content": agent_text("reviewer"), "revision": 1}


@pytest.mark.parametrize(
    ("tools", "granted"),
    [(None, "all"), ("[]", []), ("['*']", "all"), ("['read', 'edit']", ["edit", "read"])],
)
def test_copilot_effective_tools_follow_copilot_rules(editor_api, tools, granted):
    body = create(editor_api, {"content": copilot_text(tools=tools), "dialect": "copilot", "name": "planner"})

    assert body["permissions"]["tools"] == granted
    assert AgentCurrent.objects.get().permissions["tools"] == granted
    assert AgentRevision.objects.get().permissions["tools"] == granted


def test_can_includes_a_copilot_agent_without_tools_and_excludes_one_with_an_empty_list(editor_api):
    create(editor_api, {"content": copilot_text(), "dialect": "copilot", "name": "every-tool"})
    create(editor_api, {"content": copilot_text(tools="[]"), "dialect": "copilot", "name": "no-tool"})
    create(editor_api, {"content": agent_text("reader", extra="tools: Read\n")})

    listed = editor_api.get(f"{AGENTS}?can=Bash").json()["results"]

    assert [row["name"] for row in listed] == ["every-tool"]


def test_copilot_keys_are_not_unknown_for_a_copilot_agent_but_claude_code_keys_are(editor_api):
    extra = "mcp-servers: {}\ndisable-model-invocation: true\ntarget: vscode\npermissionMode: plan\n"
    body = create(editor_api, {"content": copilot_text(extra=extra), "dialect": "copilot", "name": "planner"})

    assert [(note["code"], note.get("line")) for note in body["warnings"]] == [("unknown_key", 6)]
    assert "permissionMode" in body["warnings"][0]["message"]
    assert body["permissions"]["model_invocation"] is False


def test_a_raw_markdown_create_takes_the_dialect_and_name_from_headers(editor_api):
    response = editor_api.post(
        AGENTS,
        copilot_text().encode(),
        content_type="text/markdown",
        **{"X-Change-Reason": "raw", "X-Agent-Dialect": "copilot", "X-Agent-Name": "planner"},
    )

    assert response.status_code == 201, response.content
    assert (response.json()["name"], response.json()["dialect"]) == ("planner", "copilot")


def test_revising_a_nameless_copilot_document_keeps_the_name_and_the_dialect(editor_api):
    create(editor_api, {"content": copilot_text(), "dialect": "copilot", "name": "planner"})

    put = editor_api.put(
        f"{AGENTS}planner/", {"content": copilot_text(tools="[]"), "reason": "none"}, HTTP_IF_MATCH='"1"'
    )
    assert put.status_code == 200, put.content
    patched = editor_api.patch(
        f"{AGENTS}planner/", {"frontmatter": {"model": "gpt-5"}, "reason": "model"}, HTTP_IF_MATCH='"2"'
    )
    assert patched.status_code == 200, patched.content

    body = patched.json()
    assert (body["name"], body["dialect"], body["revision"]) == ("planner", "copilot", 3)
    assert body["permissions"]["tools"] == [] and body["permissions"]["model"] == "gpt-5"
    assert (
        list(AgentRevision.objects.order_by("revision").values_list("name", "dialect"))
        == [("planner", "copilot")] * 3
    )
    assert [event.data.get("name") for event in Event.objects.order_by("position")] == ["planner"] * 3
    assert AgentNameClaim.objects.get().name == "planner"


def test_a_diff_across_a_claude_code_and_a_copilot_agent_says_the_dialects_differ(editor_api):
    create(editor_api, {"content": agent_text("reviewer", extra="tools: Read\n")})
    create(editor_api, {"content": copilot_text(tools="[]"), "dialect": "copilot", "name": "planner"})

    response = editor_api.get("/api/v1/diff/?left=reviewer@1&right=planner@1")

    assert response.status_code == 200, response.content
    permissions = response.json()["permissions"]
    assert permissions["from"]["tools"] == ["Read"] and permissions["to"]["tools"] == []
    assert permissions["changes"][0]["field"] == "dialect"
    assert "claude-code -> copilot" in permissions["changes"][0]["detail"]
    html = editor_api.get("/api/v1/diff/?left=planner@1&right=reviewer@1&format=html")
    assert html.status_code == 200


# -- bad input: a 400 naming the field, nothing stored ------------------------------------------


def test_an_unknown_dialect_is_a_400_naming_the_field_and_the_known_ones(editor_api):
    response = editor_api.post(AGENTS, {"content": agent_text("reviewer"), "dialect": "opencode"})

    body = assert_problem(response, 400, "invalid-parameter")
    assert body["errors"] == [
        {"field": "dialect", "message": "must be one of claude-code, copilot; got 'opencode'"}
    ]
    assert nothing_stored()


def test_an_unknown_dialect_in_the_header_of_a_raw_create_is_a_400(editor_api):
    response = editor_api.post(
        AGENTS,
        agent_text("reviewer").encode(),
        content_type="text/markdown",
        **{"X-Agent-Dialect": "Copilot"},
    )

    assert assert_problem(response, 400)["errors"][0]["field"] == "dialect"
    assert nothing_stored()


def test_a_copilot_document_without_any_name_is_a_400_naming_name(editor_api):
    response = editor_api.post(AGENTS, {"content": copilot_text(), "dialect": "copilot"})

    body = assert_problem(response, 400, "invalid-parameter")
    assert body["errors"][0]["field"] == "name"
    assert "without a name key" in body["errors"][0]["message"]
    assert nothing_stored()


def test_a_claude_code_document_without_a_name_key_is_still_refused_even_with_a_name_in_the_request(
    editor_api,
):
    content = "---\ndescription: Reviews\n---\nBody.\n"

    response = editor_api.post(AGENTS, {"content": content, "name": "reviewer"})

    body = assert_problem(response, 422, "invalid-document")
    assert body["errors"][0]["field"] == "name"
    assert nothing_stored()


def test_a_name_in_the_request_that_disagrees_with_the_frontmatter_is_a_400(editor_api):
    response = editor_api.post(
        AGENTS, {"content": copilot_text(name="planner"), "dialect": "copilot", "name": "other"}
    )

    body = assert_problem(response, 400, "invalid-parameter")
    assert body["errors"][0]["field"] == "name"
    assert "'planner'" in body["errors"][0]["message"] and "'other'" in body["errors"][0]["message"]
    assert nothing_stored()


@pytest.mark.parametrize("name", ["Bad Name", "../etc", "a" * 65, "x/y", ""])
def test_a_name_in_the_request_follows_the_name_rule(editor_api, name):
    response = editor_api.post(AGENTS, {"content": copilot_text(), "dialect": "copilot", "name": name})

    body = assert_problem(response, 400, "invalid-parameter")
    assert body["errors"][0]["field"] == "name"
    assert nothing_stored()


def test_the_openapi_schema_lists_the_dialects_of_create(editor_api):
    schema = editor_api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    create_input = schema["components"]["schemas"]["CreateInputRequest"]["properties"]
    assert create_input["dialect"]["allOf"] == [{"$ref": "#/components/schemas/DialectEnum"}]
    assert schema["components"]["schemas"]["DialectEnum"]["enum"] == ["claude-code", "copilot"]
    assert "name" in create_input
    headers = {p["name"] for p in schema["paths"]["/api/v1/agents/"]["post"]["parameters"]}
    assert {"X-Agent-Dialect", "X-Agent-Name"} <= headers


def test_the_permissions_report_counts_copilot_agents_by_their_rules_and_gives_them_no_mode(editor_api):
    create(editor_api, {"content": copilot_text(), "dialect": "copilot", "name": "every-tool"})
    create(editor_api, {"content": copilot_text(tools="['read']"), "dialect": "copilot", "name": "reader"})
    create(editor_api, {"content": agent_text("reviewer", extra="tools: Read\n")})

    report = editor_api.get("/api/v1/permissions/report/").json()

    assert report["every_tool"] == [{"agent": "every-tool", "denied": []}]
    assert report["tools"] == {"Read": ["reviewer"], "read": ["reader"]}
    assert report["modes"] == {"default": ["reviewer"]}


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("put", {"content": copilot_text(tools="[]"), "dialect": "claude-code"}, "dialect"),
        ("put", {"content": copilot_text(tools="[]"), "name": "other"}, "name"),
        ("patch", {"frontmatter": {"model": "gpt-5"}, "dialect": "claude-code"}, "dialect"),
        ("patch", {"frontmatter": {"model": "gpt-5"}, "name": "other"}, "name"),
    ],
)
def test_a_revision_that_names_another_dialect_or_name_is_a_400_and_stores_nothing(
    editor_api, method, body, field
):
    create(editor_api, {"content": copilot_text(), "dialect": "copilot", "name": "planner"})

    response = getattr(editor_api, method)(
        f"{AGENTS}planner/", {"reason": "change", **body}, HTTP_IF_MATCH='"1"'
    )

    problem = assert_problem(response, 400, "invalid-parameter")
    assert [error["field"] for error in problem["errors"]] == [field]
    assert Event.objects.count() == 1
    assert AgentCurrent.objects.get().dialect == "copilot"


def test_a_revision_that_repeats_the_agents_dialect_and_name_is_stored(editor_api):
    create(editor_api, {"content": copilot_text(), "dialect": "copilot", "name": "planner"})

    response = editor_api.put(
        f"{AGENTS}planner/",
        {"content": copilot_text(tools="[]"), "dialect": "copilot", "name": "planner", "reason": "none"},
        HTTP_IF_MATCH='"1"',
    )

    assert response.status_code == 200, response.content
    assert response.json()["permissions"]["tools"] == []
