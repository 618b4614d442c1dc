"""Effective permissions, document warnings and names through the REST API (API.md "Agents")."""

import pytest

from agents_app.models import AgentCurrent, AgentRevision
from events.models import Event
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENTS = "/api/v1/agents/"


def create(api, content: str):
    response = api.post(AGENTS, {"content": content, "reason": "test"})
    assert response.status_code == 201, response.content
    return response.json()


def test_the_agent_json_carries_its_dialect_and_effective_permissions(editor_api):
    body = create(editor_api, agent_text("reviewer", extra="tools: Read, Bash\ndisallowedTools: Bash\n"))

    assert body["dialect"] == "claude-code"
    assert body["permissions"]["tools"] == ["Read"]
    assert body["permissions"]["denied"] == ["Bash"]
    assert body["permissions"]["mode"] == "default"
    assert editor_api.get(f"{AGENTS}reviewer/").json()["permissions"] == body["permissions"]
    revision = editor_api.get(f"{AGENTS}reviewer/revisions/1/").json()
    assert (revision["dialect"], revision["permissions"]) == ("claude-code", body["permissions"])
    stored = AgentRevision.objects.get(name="reviewer")
    assert stored.permissions == body["permissions"]


def test_create_returns_document_warnings_with_lines_and_suggestions_and_stores_the_document(editor_api):
    body = create(
        editor_api,
        agent_text("reviewer", extra="allowedTools: Read, Grep\npermissionMode: manual\ncolor: magenta\n"),
    )

    assert body["warnings"] == [
        {
            "code": "unknown_key",
            "message": "Claude Code ignores 'allowedTools', so the agent gets every tool;"
            " did you mean 'tools'?",
            "line": 4,
            "suggestion": "tools",
        },
        {
            "code": "invalid_value",
            "message": "permissionMode 'manual' is not a mode Claude Code knows (plan, dontAsk, default,"
            " acceptEdits, auto, bypassPermissions); it falls back to 'default'",
            "line": 5,
            "suggestion": "default",
        },
        {
            "code": "invalid_value",
            "message": "color 'magenta' is not one of red, blue, green, yellow, purple, orange, pink, cyan",
            "line": 6,
        },
    ]
    assert body["permissions"]["tools"] == "all"
    assert AgentCurrent.objects.get(name="reviewer").warnings == body["warnings"]


def test_revise_and_patch_return_the_warnings_of_the_new_revision(editor_api):
    create(editor_api, agent_text("reviewer"))

    revised = editor_api.put(
        f"{AGENTS}reviewer/",
        {"content": agent_text("reviewer", extra="maxturns: 3\n")},
        HTTP_IF_MATCH='"1"',
    )
    patched = editor_api.patch(
        f"{AGENTS}reviewer/", {"frontmatter": {"memory": "everywhere"}}, HTTP_IF_MATCH='"2"'
    )

    assert revised.status_code == 200, revised.content
    assert [(w["code"], w.get("suggestion")) for w in revised.json()["warnings"]] == [
        ("unknown_key", "maxTurns")
    ]
    assert patched.status_code == 200, patched.content
    assert ("invalid_value", "memory 'everywhere' is not one of user, project, local") in [
        (w["code"], w["message"]) for w in patched.json()["warnings"]
    ]


@pytest.mark.parametrize("name", ["dotnet-framework-4.8-expert", "powershell-5.1-expert", "code_reviewer"])
def test_a_name_with_a_dot_or_underscore_works_everywhere_with_a_name_format_warning(editor_api, name):
    body = create(editor_api, agent_text(name))
    editor_api.put(f"{AGENTS}{name}/", {"content": agent_text(name, body="Again.\n")}, HTTP_IF_MATCH='"1"')

    assert body["name"] == name
    assert [w["code"] for w in body["warnings"]] == ["name_format"]
    assert editor_api.get(f"{AGENTS}{name}/").json()["name"] == name
    raw = editor_api.get(f"{AGENTS}{name}/", HTTP_ACCEPT="text/markdown")
    assert raw.status_code == 200 and raw.content.startswith(b"---\nname: " + name.encode())
    assert editor_api.get(f"{AGENTS}{name}/revisions/").status_code == 200
    diff = editor_api.get(f"/api/v1/diff/?left={name}@1&right={name}@2")
    assert diff.status_code == 200, diff.content
    unified = editor_api.get(f"{AGENTS}{name}/diff/?format=unified")
    assert unified.content.startswith(f"--- a/{name}.md\n+++ b/{name}.md\n".encode())


@pytest.mark.parametrize(
    "name",
    ["a" * 65, "a/b", "a..b", "Reviewer", "..", ".md"],
    ids=["65", "slash", "dots", "upper", "dotdot", "dot"],
)
def test_a_hostile_name_is_refused_and_nothing_is_stored(editor_api, name):
    response = editor_api.post(AGENTS, {"content": agent_text("x").replace("name: x", f"name: '{name}'")})

    problem = assert_problem(response, 422 if response.status_code == 422 else 400)
    assert problem["errors"][0]["field"] == "name"
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ("hooks: echo hi\n", "invalid_value"),
        ("tools: Read, Agent(reviewer\n", "invalid_value"),
        ("mcpServers:\n  db:\n    command: [a, b]\n", "invalid_value"),
        ("mcpServers: 5\n", "invalid_value"),
        ("model: opus\nmodel: haiku\n", "duplicate_key"),
    ],
    ids=["hooks-string", "agent-unclosed", "mcp-command-list", "mcp-number", "duplicate-key"],
)
def test_a_hostile_document_the_runtime_takes_is_stored_with_a_warning(editor_api, extra, code):
    body = create(editor_api, agent_text("reviewer", extra=extra))

    assert code in [warning["code"] for warning in body["warnings"]]
    assert Event.objects.count() == 1


@pytest.mark.parametrize("extra", ["tools:\n  Read: true\n", "tools: 5\n"], ids=["mapping", "number"])
def test_tools_of_the_wrong_shape_are_refused_and_nothing_is_stored(editor_api, extra):
    response = editor_api.post(AGENTS, {"content": agent_text("reviewer", extra=extra)})

    problem = assert_problem(response, response.status_code)
    assert 400 <= response.status_code < 500
    assert problem["errors"][0]["field"] == "tools"
    assert Event.objects.count() == 0


def test_ten_thousand_tools_are_stored_and_filtered(editor_api):
    names = ", ".join(f"Tool{index}" for index in range(10_000))
    body = create(editor_api, agent_text("big", extra=f"tools: {names}, Bash\n"))

    assert len(body["permissions"]["tools"]) == 10_001
    assert [row["name"] for row in editor_api.get(f"{AGENTS}?can=Bash").json()["results"]] == ["big"]


def test_can_lists_the_agents_effectively_granted_a_tool(editor_api):
    create(editor_api, agent_text("everything"))
    create(editor_api, agent_text("declares-bash", extra="tools: Read, Bash\n"))
    create(editor_api, agent_text("read-only", extra="tools: Read\n"))
    create(editor_api, agent_text("bash-denied", extra="disallowedTools: Bash\n"))
    create(editor_api, agent_text("bash-output", extra="tools: BashOutput\n"))

    names = [row["name"] for row in editor_api.get(f"{AGENTS}?can=Bash").json()["results"]]
    declared = [row["name"] for row in editor_api.get(f"{AGENTS}?tool=Bash").json()["results"]]

    assert names == ["declares-bash", "everything"]
    assert declared == ["declares-bash"]


def test_can_applies_to_the_registry_as_it_was(editor_api):
    import datetime as dt

    create(editor_api, agent_text("everything"))
    create(editor_api, agent_text("read-only", extra="tools: Read\n"))
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat().replace("+", "%2B")

    names = [row["name"] for row in editor_api.get(f"{AGENTS}?can=Bash&at={later}").json()["results"]]

    assert names == ["everything"]


def test_the_permissions_report_answers_who_can_use_what_and_what_widened(editor_api):
    create(editor_api, agent_text("everything", extra="permissionMode: acceptEdits\nallowedTools: Read\n"))
    create(editor_api, agent_text("reviewer", extra="tools: Read, Bash\nmcpServers: [github]\n"))
    editor_api.put(
        f"{AGENTS}reviewer/",
        {"content": agent_text("reviewer", extra="mcpServers: [github]\n"), "reason": "needs more"},
        HTTP_IF_MATCH='"1"',
    )

    report = editor_api.get("/api/v1/permissions/report/").json()

    assert report["every_tool"] == [
        {"agent": "everything", "denied": []},
        {"agent": "reviewer", "denied": []},
    ]
    assert report["modes"] == {"acceptEdits": ["everything"], "default": ["reviewer"]}
    assert report["mcp_servers"] == {"github": ["reviewer"]}
    assert [entry["agent"] for entry in report["warnings"]] == ["everything"]
    [widened] = report["widened"]
    assert (widened["agent"], widened["revision"], widened["actor"], widened["reason"]) == (
        "reviewer",
        2,
        "editor",
        "needs more",
    )
    assert widened["changes"][0]["detail"] == "every tool is now granted: the tools line was removed"
    assert report["truncated"] is False


@pytest.mark.parametrize("path", ["/api/v1/permissions/report/", "/api/v1/events/"])
def test_an_until_before_since_is_a_400_naming_until_not_an_empty_answer(api, users, path):
    query = "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"
    response = api.as_user(users["admin"]).get(f"{path}?{query}")

    body = assert_problem(response, 400, "invalid-parameter")
    assert body["errors"] == [{"field": "until", "message": "is before since: nothing can match"}]


@pytest.mark.parametrize("path", ["/api/v1/permissions/report/", "/api/v1/events/"])
def test_since_equal_to_until_is_accepted(api, users, path):
    query = "since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z"
    response = api.as_user(users["admin"]).get(f"{path}?{query}")

    assert response.status_code == 200, response.content
