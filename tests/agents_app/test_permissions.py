"""Effective permissions of a Claude Code subagent and how a diff classifies their changes.

Table-driven over every field and transition of API.md's "Permissions" section.
"""

import pytest

from agents_app.dialects.claude_code import can, effective_permissions, split_entries
from agents_app.document import parse_agent_document
from tests.agents_app.test_diff import codes, diff_of, doc

NOTHING = {
    "tools": "all",
    "denied": [],
    "mode": "default",
    "subagents": "all",
    "mcp_servers": [],
    "mcp_commands": [],
    "hooks": [],
    "skills": [],
    "memory": None,
    "model": "inherit",
    "max_turns": None,
}


def effective(frontmatter: str) -> dict:
    return effective_permissions(parse_agent_document(doc(frontmatter)).frontmatter)


@pytest.mark.parametrize(
    ("frontmatter", "expected"),
    [
        ("", {}),
        ("tools:\n", {}),
        ("tools: '*'\n", {}),
        ("tools: Read, Grep\n", {"tools": ["Grep", "Read"], "subagents": []}),
        ("tools: [Read, Grep, Read]\n", {"tools": ["Grep", "Read"], "subagents": []}),
        ("tools: Read, Bash(git diff:*)\n", {"tools": ["Bash", "Read"], "subagents": []}),
        ("disallowedTools: Bash, Write\n", {"denied": ["Bash", "Write"]}),
        (
            "tools: Read, Bash\ndisallowedTools: [Bash]\n",
            {"tools": ["Read"], "denied": ["Bash"], "subagents": []},
        ),
        ("permissionMode: plan\n", {"mode": "plan"}),
        ("permissionMode: bypassPermissions\n", {"mode": "bypassPermissions"}),
        ("permissionMode: manual\n", {"mode": "manual"}),
        ("tools: Read, Agent\n", {"tools": ["Agent", "Read"], "subagents": "all"}),
        ("tools: Read, Task\n", {"tools": ["Read", "Task"], "subagents": "all"}),
        (
            "tools: Agent(tester, linter), Read\n",
            {"tools": ["Agent", "Read"], "subagents": ["linter", "tester"]},
        ),
        ("tools: ['Task(tester)', Read]\n", {"tools": ["Read", "Task"], "subagents": ["tester"]}),
        ("tools: Read, Agent(tester\n", {"tools": ["Agent", "Read"], "subagents": ["tester"]}),
        ("disallowedTools: Agent\n", {"denied": ["Agent"], "subagents": []}),
        ("mcpServers: [github, slack]\n", {"mcp_servers": ["github", "slack"]}),
        (
            "mcpServers:\n  - github\n  - local:\n      command: ./serve\n  - remote:\n      url: https://x\n",
            {"mcp_servers": ["github", "local", "remote"], "mcp_commands": ["local"]},
        ),
        (
            "mcpServers:\n  db:\n    command: [not, a, string]\n",
            {"mcp_servers": ["db"], "mcp_commands": ["db"]},
        ),
        ("hooks:\n  Stop: []\n  PreToolUse: []\n", {"hooks": ["PreToolUse", "Stop"]}),
        ("hooks: echo hi\n", {}),
        ("skills: [pdf, review]\n", {"skills": ["pdf", "review"]}),
        ("memory: project\n", {"memory": "project"}),
        ("model: opus\n", {"model": "opus"}),
        ("maxTurns: 5\n", {"max_turns": 5}),
    ],
)
def test_effective_permissions_follow_every_rule_of_the_contract(frontmatter, expected):
    assert effective(frontmatter) == {**NOTHING, **expected}


def test_commas_inside_parentheses_do_not_split_a_tool_entry():
    assert split_entries("Agent(a, b), Read") == ["Agent(a, b)", "Read"]
    assert split_entries("Read, Agent(a, b") == ["Read", "Agent(a, b"]


def test_ten_thousand_tools_are_read_in_linear_time():
    names = ", ".join(f"Tool{index}" for index in range(10_000))
    permissions = effective(f"tools: {names}\n")
    assert len(permissions["tools"]) == 10_000


@pytest.mark.parametrize(
    ("frontmatter", "tool", "expected"),
    [
        ("", "Bash", True),
        ("tools: Read\n", "Bash", False),
        ("tools: Read, Bash\n", "Bash", True),
        ("disallowedTools: Bash\n", "Bash", False),
        ("tools: Bash\ndisallowedTools: Bash\n", "Bash", False),
    ],
)
def test_can_answers_what_is_effectively_granted(frontmatter, tool, expected):
    assert can(effective(frontmatter), tool) is expected


def changes(old: str, new: str) -> list[tuple]:
    section = diff_of(doc(old), doc(new))["permissions"]
    return [
        (c["field"], c["kind"], c["severity"], c.get("added"), c.get("removed")) for c in section["changes"]
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # tools
        (
            "tools: Read\n",
            "",
            [("tools", "widened", "high", None, None), ("subagents", "widened", "medium", None, None)],
        ),
        (
            "",
            "tools: Read\n",
            [("tools", "narrowed", "medium", None, None), ("subagents", "narrowed", "low", None, None)],
        ),
        ("tools: Read\n", "tools: Read, Bash\n", [("tools", "widened", "high", ["Bash"], None)]),
        (
            "tools: Read\n",
            "tools: Read, mcp__github__issues\n",
            [("tools", "widened", "high", ["mcp__github__issues"], None)],
        ),
        ("tools: Read\n", "tools: Read, Grep\n", [("tools", "widened", "medium", ["Grep"], None)]),
        ("tools: Read, Grep\n", "tools: Read\n", [("tools", "narrowed", "low", None, ["Grep"])]),
        ("tools: Read, Grep\n", "tools: [Grep, Read]\n", []),
        # denied
        ("disallowedTools: Bash\n", "", [("denied", "widened", "high", None, ["Bash"])]),
        ("disallowedTools: Glob\n", "", [("denied", "widened", "medium", None, ["Glob"])]),
        ("", "disallowedTools: Bash\n", [("denied", "narrowed", "low", ["Bash"], None)]),
        # mode, in API.md's order plan < dontAsk < default < acceptEdits < auto < bypassPermissions
        ("permissionMode: plan\n", "permissionMode: dontAsk\n", [("mode", "widened", "medium", None, None)]),
        ("permissionMode: dontAsk\n", "", [("mode", "widened", "medium", None, None)]),
        ("", "permissionMode: acceptEdits\n", [("mode", "widened", "medium", None, None)]),
        (
            "permissionMode: acceptEdits\n",
            "permissionMode: auto\n",
            [("mode", "widened", "medium", None, None)],
        ),
        (
            "permissionMode: auto\n",
            "permissionMode: bypassPermissions\n",
            [("mode", "widened", "high", None, None)],
        ),
        (
            "permissionMode: bypassPermissions\n",
            "permissionMode: plan\n",
            [("mode", "narrowed", "low", None, None)],
        ),
        ("permissionMode: plan\n", "permissionMode: manual\n", [("mode", "changed", "medium", None, None)]),
        # subagents
        ("tools: Agent(a)\n", "tools: Agent(a, b)\n", [("subagents", "widened", "medium", ["b"], None)]),
        ("tools: Agent(a, b)\n", "tools: Agent(a)\n", [("subagents", "narrowed", "low", None, ["b"])]),
        ("tools: Agent(a)\n", "tools: Agent\n", [("subagents", "widened", "medium", None, None)]),
        # hooks (they run commands)
        ("", "hooks:\n  Stop: []\n", [("hooks", "widened", "high", ["Stop"], None)]),
        (
            "hooks:\n  Stop: []\n",
            "hooks:\n  Stop: [{matcher: x}]\n",
            [("hooks", "widened", "high", None, None)],
        ),
        ("hooks:\n  Stop: []\n", "", [("hooks", "narrowed", "low", None, ["Stop"])]),
        # MCP servers
        ("", "mcpServers: [github]\n", [("mcp_servers", "widened", "medium", ["github"], None)]),
        (
            "",
            "mcpServers:\n  - db:\n      command: ./db\n",
            [("mcp_servers", "widened", "high", ["db"], None)],
        ),
        (
            "mcpServers:\n  - db:\n      command: ./db\n",
            "mcpServers:\n  - db:\n      command: ./evil\n",
            [("mcp_servers", "changed", "high", None, None)],
        ),
        ("mcpServers: [github]\n", "", [("mcp_servers", "narrowed", "low", None, ["github"])]),
        # skills
        ("", "skills: [pdf]\n", [("skills", "widened", "low", ["pdf"], None)]),
        ("skills: [pdf]\n", "", [("skills", "narrowed", "low", None, ["pdf"])]),
        # changed, neither wider nor narrower
        ("", "memory: user\n", [("memory", "changed", "low", None, None)]),
        ("maxTurns: 3\n", "maxTurns: 30\n", [("max_turns", "changed", "low", None, None)]),
        ("model: sonnet\n", "model: opus\n", [("model", "changed", "medium", None, None)]),
        ("", "model: inherit\n", []),
    ],
)
def test_every_permission_transition_is_classified(old, new, expected):
    assert changes(old, new) == expected


def test_removing_the_tools_line_reads_as_the_escalation_it_is():
    diff = diff_of(doc("tools: Read, Grep, Bash\n"), doc())
    section = diff["permissions"]

    assert section["widened"] is True
    assert section["from"]["tools"] == ["Bash", "Grep", "Read"]
    assert section["to"]["tools"] == "all"
    assert section["changes"][0] == {
        "field": "tools",
        "kind": "widened",
        "severity": "high",
        "detail": "every tool is now granted: the tools line was removed",
    }
    assert codes(diff) == [("tools_removed", "no tools key: every tool is granted")]


def test_going_from_every_tool_to_a_list_narrows_and_does_not_warn():
    diff = diff_of(doc(), doc("tools: Read, Grep\n"))

    assert diff["permissions"]["widened"] is False
    assert {change["kind"] for change in diff["permissions"]["changes"]} == {"narrowed"}
    assert diff["warnings"] == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("tools: Read\n", ""),
        ("tools: Read\n", "tools: Read, Bash\n"),
        ("disallowedTools: Bash\n", ""),
        ("", "permissionMode: bypassPermissions\n"),
        ("", "hooks:\n  Stop: []\n"),
        ("", "mcpServers: [github]\n"),
        ("model: sonnet\n", "model: opus\n"),
        ("", "tools: Read\n"),
        ("permissionMode: auto\n", "permissionMode: plan\n"),
        ("hooks:\n  Stop: []\n", ""),
    ],
)
def test_warnings_never_disagree_with_the_permission_section(old, new):
    diff = diff_of(doc(old), doc(new))
    flagged = {change["field"] for change in diff["permissions"]["changes"] if change["kind"] != "narrowed"}
    warned_fields = {
        "tool_added": "tools",
        "tools_removed": "tools",
        "disallowed_tool_removed": "denied",
        "permission_mode_loosened": "mode",
        "permission_mode_changed": "mode",
        "hooks_changed": "hooks",
        "mcp_servers_changed": "mcp_servers",
        "model_changed": "model",
    }
    warned = {warned_fields[warning["code"]] for warning in diff["warnings"]}

    assert warned <= flagged
    assert bool(diff["warnings"]) == (flagged - {"subagents", "skills", "memory", "max_turns"} != set())


def html_of(old: str, new: str) -> str:
    from agents_app.diff import html_diff
    from tests.agents_app.test_diff import side

    return str(html_diff(old=side(doc(old), revision=1), new=side(doc(new), revision=2)))


def test_the_html_diff_puts_a_widening_above_the_lines_in_red_never_green():
    fragment = html_of("tools: Read, Grep, Bash\n", "")

    permissions = fragment.index('<div class="agent-diff-permissions widened">')
    assert permissions < fragment.index('<table class="agent-diff">')
    assert (
        '<li class="widened high"><span class="kind">widened (high)</span> <code>tools</code>:'
        " every tool is now granted: the tools line was removed</li>" in fragment
    )
    # The declared tools of the old side are not struck through as if they were taken away.
    assert "<del" not in fragment.split('<table class="agent-diff">')[0]
    assert '<tr class="changed tools widened">' in fragment


def test_the_html_diff_shows_a_narrowing_in_green_and_a_new_tool_as_a_widening():
    narrowed = html_of("", "tools: Read, Grep\n")
    assert '<li class="narrowed medium">' in narrowed
    assert "This change does not widen what the agent may do." in narrowed
    assert "<ins" not in narrowed.split('<table class="agent-diff">')[0]

    widened = html_of("tools: Read\n", "tools: Read, Bash\n")
    assert '<ins class="widened">Bash</ins>' in widened


def test_the_narrowing_and_widening_colours_are_in_the_admin_stylesheet():
    from agents_app.diff import DIFF_CSS

    assert ".agent-diff-permissions li.narrowed { background: #e6ffec;" in DIFF_CSS
    assert ".agent-diff-permissions li.widened.high { background: #ffebe9;" in DIFF_CSS
    assert "ins.widened { background: #ffd8a8;" in DIFF_CSS


def notes(frontmatter: str) -> list[tuple]:
    document = parse_agent_document(doc(frontmatter))
    return [(note["code"], note.get("line"), note.get("suggestion")) for note in document.notes]


@pytest.mark.parametrize(
    ("frontmatter", "expected"),
    [
        ("tools: Read\nmodel: opus\ncolor: blue\npermissionMode: plan\nmemory: user\nmaxTurns: 4\n", []),
        ("allowedTools: Read\n", [("unknown_key", 4, "tools")]),
        ("mcp_servers: [github]\n", [("unknown_key", 4, "mcpServers")]),
        ("PermissionMode: plan\n", [("unknown_key", 4, "permissionMode")]),
        ("favouriteFood: soup\n", [("unknown_key", 4, None)]),
        ("permissionMode: manual\n", [("invalid_value", 4, "default")]),
        ("color: magenta\n", [("invalid_value", 4, None)]),
        ("memory: global\n", [("invalid_value", 4, None)]),
        ("maxTurns: -1\n", [("invalid_value", 4, None)]),
        ("hooks: echo hi\n", [("invalid_value", 4, None)]),
        ("mcpServers:\n  db:\n    command: 5\n", [("invalid_value", 4, None)]),
        ("disallowedTools: Agent(x\n", [("invalid_value", 4, None)]),
        ("tools: Read, Read\n", [("duplicate_tool", 4, None)]),
        ("tools:\n", [("empty_tools", 4, None)]),
        ("model: a\nmodel: b\n", [("duplicate_key", 5, None)]),
    ],
)
def test_document_warnings_name_what_the_runtime_ignores_with_line_and_suggestion(frontmatter, expected):
    assert notes(frontmatter) == expected


def test_a_lenient_yaml_warning_names_the_line_that_strict_yaml_refused():
    raw = (
        "---\nname: reviewer\ndescription: Examples: <example>Context: x</example>\nmodel: opus\n---\nBody\n"
    )

    assert [(note["code"], note["line"]) for note in parse_agent_document(raw).notes] == [("lenient_yaml", 3)]


def test_a_name_outside_the_documented_set_is_stored_with_a_name_format_warning():
    document = parse_agent_document(doc().replace("name: reviewer", "name: dotnet-framework-4.8-expert"))

    assert document.name == "dotnet-framework-4.8-expert"
    assert [(note["code"], note["line"]) for note in document.notes] == [("name_format", 2)]


def test_a_diff_of_ten_thousand_tools_each_way_classifies_every_one():
    # The size a pathological document reaches; the work is linear (sets, not list scans), and
    # bench/, not this test, says how long it takes.
    many = ", ".join(f"Tool{index}" for index in range(10_000))
    other = ", ".join(f"Other{index}" for index in range(10_000))

    diff = diff_of(
        doc(f"tools: {many}\ndisallowedTools: {other}\n"), doc(f"tools: {other}\ndisallowedTools: {many}\n")
    )

    assert len(diff["warnings"]) == 10_000 + 10_000  # tool_added and disallowed_tool_removed per name
