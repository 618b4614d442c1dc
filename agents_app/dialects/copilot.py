"""GitHub Copilot custom agents (`.github/agents/<name>.agent.md`): effective permissions.

Rules (API.md, "Permissions"): `tools` omitted or `["*"]` grants every tool, `[]` none;
`mcp-servers` counts like Claude Code's `mcpServers`; `disable-model-invocation` going from
true to false widens (the model may then pick the agent by itself). Same interface as
`claude_code`; the change records are the same `Change` so the diff treats both alike.
"""

from typing import Any

from agents_app.dialects.claude_code import (
    Change,
    _mcp_changes,
    _mcp_servers,
    _tools_changes,
    _unique_sorted,
    _value_change,
    split_entries,
    tool_name,
)
from agents_app.dialects.notes import document_note

KNOWN_KEYS = frozenset(
    {
        "name",
        "description",
        "tools",
        "model",
        "target",
        "mcp-servers",
        "disable-model-invocation",
        "infer",
        "handoffs",
        "argument-hint",
        "metadata",
    }
)
TARGETS = ("vscode", "github-copilot")
FILE_SUFFIX = ".agent.md"  # `.github/agents/<name>.agent.md`
# The runtime names an agent after its file when the frontmatter has no `name`.
NAME_REQUIRED = False


def _tools(value: Any) -> str | list[str]:
    if value is None:
        return "all"
    entries = split_entries(value)
    if "*" in entries:
        return "all"
    return _unique_sorted([tool_name(entry) for entry in entries])


def _as_claude(frontmatter: dict[str, Any]) -> dict[str, Any]:
    """The keys the shared comparisons read, under their Claude Code spelling."""
    tools = frontmatter.get("tools")
    return {
        # An explicit `[]` is "no tools", which Claude Code's reading would take as "every tool":
        # spell it as a list holding nothing grantable.
        **(
            {"tools": ["*"] if _tools(tools) == "all" else (_tools(tools) or [""])}
            if "tools" in frontmatter
            else {}
        ),
        **({"mcpServers": frontmatter["mcp-servers"]} if "mcp-servers" in frontmatter else {}),
    }


def effective_permissions(frontmatter: dict[str, Any]) -> dict[str, Any]:
    servers, commands, _ = _mcp_servers(frontmatter.get("mcp-servers"))
    model = frontmatter.get("model")
    target = frontmatter.get("target")
    return {
        "tools": _tools(frontmatter.get("tools")),
        "denied": [],
        "mcp_servers": servers,
        "mcp_commands": commands,
        "model_invocation": frontmatter.get("disable-model-invocation") is not True,
        "model": model if isinstance(model, str) and model else "inherit",
        "target": target if isinstance(target, str) and target else "all",
    }


def permission_changes(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    old, new = effective_permissions(before), effective_permissions(after)
    old_c, new_c = _as_claude(before), _as_claude(after)
    tools = _tools_changes(
        old_c if "tools" in before else {},
        new_c if "tools" in after else {},
        {"tools": old["tools"]},
        {"tools": new["tools"]},
    )
    for change in tools:
        change.detail = change.detail.replace("the tools line was removed", "the tools key was removed")
    invocation: list[Change] = []
    if old["model_invocation"] != new["model_invocation"]:
        invocation.append(
            Change(
                "model_invocation",
                "widened" if new["model_invocation"] else "narrowed",
                "medium" if new["model_invocation"] else "low",
                "the model may now pick this agent by itself (disable-model-invocation removed or false)"
                if new["model_invocation"]
                else "only a user can pick this agent now (disable-model-invocation: true)",
            )
        )
    model_warning = ("model_changed", f"{old['model']} -> {new['model']}")
    return [
        *tools,
        *invocation,
        *_mcp_changes(old_c, new_c, old, new),
        *_value_change("model", "model", old["model"], new["model"], model_warning),
        *_value_change("target", "target", old["target"], new["target"], None),
    ]


def document_warnings(frontmatter: dict[str, Any], key_lines: dict[str, int]) -> list[dict[str, Any]]:
    notes = [
        document_note("unknown_key", f"GitHub Copilot ignores {key!r}", key_lines.get(key))
        for key in sorted(frontmatter, key=lambda item: key_lines.get(item, 0))
        if key not in KNOWN_KEYS
    ]
    target = frontmatter.get("target")
    if "target" in frontmatter and target not in TARGETS:
        notes.append(
            document_note(
                "invalid_value",
                f"target {target!r} is not one of {', '.join(TARGETS)}",
                key_lines.get("target"),
            )
        )
    return notes
