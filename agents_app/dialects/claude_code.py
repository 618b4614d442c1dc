"""Claude Code subagents (`.claude/agents/<name>.md`): effective permissions and their changes.

Rules (API.md, "Permissions"): no `tools` key, an empty one or `*` grants every tool;
`disallowedTools` removes from whatever is granted; `Agent` (or the older `Task`) without a
list lets the agent spawn every subagent, `Agent(a, b)` only those; a missing
`permissionMode` is `default`; a missing `model` is `inherit`.

Each function only reads the frontmatter as JSON and guards every shape it did not expect
(the parser stores documents the runtime would take, whatever their extra keys hold), and
every loop is linear in the size of the frontmatter, which is itself bounded by the size
limit of a document.
"""

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from agents_app.dialects.notes import document_note

# permissionMode, narrow to wide (API.md).
FILE_SUFFIX = ".md"  # `.claude/agents/<name>.md`
NAME_REQUIRED = True
PERMISSION_MODES = ("plan", "dontAsk", "default", "acceptEdits", "auto", "bypassPermissions")
DEFAULT_MODE = "default"
MEMORY_SCOPES = ("user", "project", "local")
SUBAGENT_TOOLS = ("Agent", "Task")  # Task is the older name of Agent
# Granting one of these is a high-severity widening: they run commands, write files or reach out.
RISKY_TOOLS = frozenset({"Bash", "Write", "Edit", "NotebookEdit", "WebFetch"})
_DELIMITERS = re.compile(r"[(),]")


def split_entries(value: Any) -> list[str]:
    """Tool entries as written: a comma-separated string or a list; commas inside (...) kept.

    `tools: Agent(reviewer, tester), Read` is two entries, not three. An unclosed `(` runs
    to the end of the text (one entry), which is what a reader of the line would assume.
    """
    if isinstance(value, list):
        return [
            str(item).strip() for item in value if isinstance(item, str | int | float) and str(item).strip()
        ]
    if not isinstance(value, str):
        return []
    if "(" not in value:  # the common case, at C speed
        return [entry for entry in (part.strip() for part in value.split(",")) if entry]
    entries: list[str] = []
    depth = 0
    start = 0
    for match in _DELIMITERS.finditer(value):  # only the delimiters, not every character
        char, index = match.group(), match.start()
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == "," and depth == 0:
            entries.append(value[start:index].strip())
            start = index + 1
    entries.append(value[start:].strip())
    return [entry for entry in entries if entry]


def tool_name(entry: str) -> str:
    """`Bash(git diff:*)` -> `Bash`; `Agent(a, b)` -> `Agent`."""
    return entry.split("(", 1)[0].strip()


def _unique_sorted(names: list[str]) -> list[str]:
    return sorted(set(names))


def _grants_every_tool(value: Any) -> bool:
    if value is None:
        return True
    entries = split_entries(value)
    return not entries or entries == ["*"]


def _subagents(entries: list[str] | None, denied: list[str]) -> str | list[str]:
    if any(name in denied for name in SUBAGENT_TOOLS):  # two lookups in a sorted list
        return []
    if entries is None:
        return "all"
    names: list[str] = []
    for entry in entries:
        if tool_name(entry) not in SUBAGENT_TOOLS:
            continue
        inner = entry[len(tool_name(entry)) :].strip()
        if not inner:
            return "all"
        inner = inner[1:].rstrip(")") if inner.startswith("(") else inner
        names += [part.strip() for part in inner.split(",") if part.strip()]
    return _unique_sorted(names)


def _mcp_servers(value: Any) -> tuple[list[str], list[str], dict[str, Any]]:
    """(names, names of inline servers that run a command, name -> inline config)."""
    names: list[str] = []
    commands: list[str] = []
    configs: dict[str, Any] = {}

    def inline(name: str, config: Any) -> None:
        names.append(name)
        configs[name] = config
        if isinstance(config, dict) and "command" in config:
            commands.append(name)

    if isinstance(value, str):
        names += [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, dict):
        for name, config in value.items():
            inline(str(name), config)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str) and item.strip():
                names.append(item.strip())
            elif isinstance(item, dict):
                for name, config in item.items():
                    inline(str(name), config)
    return _unique_sorted(names), _unique_sorted(commands), configs


def _hook_events(value: Any) -> list[str]:
    return sorted(str(key) for key in value) if isinstance(value, dict) else []


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return _unique_sorted([part.strip() for part in value.split(",") if part.strip()])
    if isinstance(value, list):
        return _unique_sorted([str(item).strip() for item in value if isinstance(item, str) and item.strip()])
    return []


def effective_permissions(frontmatter: dict[str, Any]) -> dict[str, Any]:
    """What a Claude Code subagent with this frontmatter may effectively do (API.md shape).

    Two additions to the contract's keys: `mcp_commands` (inline MCP servers that start a
    command) and `max_turns`, both compared by the diff.
    """
    denied = _unique_sorted([tool_name(entry) for entry in split_entries(frontmatter.get("disallowedTools"))])
    raw_tools = frontmatter.get("tools")
    if _grants_every_tool(raw_tools):
        entries = None
        tools: str | list[str] = "all"
    else:
        entries = split_entries(raw_tools)
        refused = set(denied)  # a set: 10,000 tools against 10,000 denied names stays linear
        tools = [
            name for name in _unique_sorted([tool_name(entry) for entry in entries]) if name not in refused
        ]
    servers, commands, _ = _mcp_servers(frontmatter.get("mcpServers"))
    mode = frontmatter.get("permissionMode")
    model = frontmatter.get("model")
    memory = frontmatter.get("memory")
    max_turns = frontmatter.get("maxTurns")
    return {
        "tools": tools,
        "denied": denied,
        "mode": mode if isinstance(mode, str) and mode else DEFAULT_MODE,
        "subagents": _subagents(entries, denied),
        "mcp_servers": servers,
        "mcp_commands": commands,
        "hooks": _hook_events(frontmatter.get("hooks")),
        "skills": _names(frontmatter.get("skills")),
        "memory": memory if isinstance(memory, str) and memory else None,
        "model": model if isinstance(model, str) and model else "inherit",
        "max_turns": max_turns if isinstance(max_turns, int) and not isinstance(max_turns, bool) else None,
    }


def can(permissions: dict[str, Any], tool: str) -> bool:
    """Whether effective permissions grant `tool` (`GET /agents/?can=`)."""
    if tool in permissions.get("denied", ()):
        return False
    granted = permissions.get("tools", "all")
    return granted == "all" or tool in granted


# ---------------------------------------------------------------------------------------
# Comparing two revisions
# ---------------------------------------------------------------------------------------


@dataclass
class Change:
    """One classified permission change; `warnings` are the diff's widening codes it implies."""

    field: str
    kind: str  # widened | narrowed | changed
    severity: str  # high | medium | low
    detail: str
    added: list[str] | None = None
    removed: list[str] | None = None
    warnings: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "field": self.field,
            "kind": self.kind,
            "severity": self.severity,
            "detail": self.detail,
        }
        if self.added is not None:
            data["added"] = self.added
        if self.removed is not None:
            data["removed"] = self.removed
        return data


def _tool_severity(names: list[str]) -> str:
    return "high" if any(name in RISKY_TOOLS or name.startswith("mcp__") for name in names) else "medium"


def _listed(names: list[str]) -> str:
    return ", ".join(names)


def _shown(value: Any) -> str:
    if value is None:
        return "(not set)"
    return str(value)


def _tools_changes(before: dict[str, Any], after: dict[str, Any], old: dict, new: dict) -> list[Change]:
    was, now = old["tools"], new["tools"]
    if was == now:
        return []
    if now == "all":
        how = (
            "the tools line was removed"
            if "tools" not in after
            else f"tools is now {_shown(after['tools'])!r}"
        )
        return [
            Change(
                "tools",
                "widened",
                "high",
                f"every tool is now granted: {how}",
                warnings=[("tools_removed", "no tools key: every tool is granted")],
            )
        ]
    if was == "all":
        shown = _listed(now) if now else "none"
        return [
            Change(
                "tools", "narrowed", "medium", f"only these tools are granted now, not every tool: {shown}"
            )
        ]
    added = sorted(set(now) - set(was))
    removed = sorted(set(was) - set(now))
    declared_before, declared_after = _declared(before), _declared(after)
    changes = []
    if added:
        changes.append(
            Change(
                "tools",
                "widened",
                _tool_severity(added),
                f"newly granted: {_listed(added)}",
                added=added,
                # Only a tool the author declared is a `tool_added`: one that was denied and no
                # longer is reports as `disallowed_tool_removed` below.
                warnings=[
                    ("tool_added", name)
                    for name in added
                    if name in declared_after and name not in declared_before
                ],
            )
        )
    if removed:
        changes.append(
            Change("tools", "narrowed", "low", f"no longer granted: {_listed(removed)}", removed=removed)
        )
    return changes


def _declared(frontmatter: dict[str, Any]) -> set[str]:
    return {tool_name(entry) for entry in split_entries(frontmatter.get("tools"))}


def _denied_changes(old: dict, new: dict) -> list[Change]:
    lifted = sorted(set(old["denied"]) - set(new["denied"]))
    imposed = sorted(set(new["denied"]) - set(old["denied"]))
    changes = []
    if lifted:
        changes.append(
            Change(
                "denied",
                "widened",
                _tool_severity(lifted),
                f"no longer denied: {_listed(lifted)}",
                removed=lifted,
                warnings=[("disallowed_tool_removed", name) for name in lifted],
            )
        )
    if imposed:
        changes.append(Change("denied", "narrowed", "low", f"now denied: {_listed(imposed)}", added=imposed))
    return changes


def _mode_changes(old: dict, new: dict) -> list[Change]:
    was, now = old["mode"], new["mode"]
    if was == now:
        return []
    detail = f"{was} -> {now}"
    if was in PERMISSION_MODES and now in PERMISSION_MODES:
        if PERMISSION_MODES.index(now) > PERMISSION_MODES.index(was):
            severity = "high" if now == "bypassPermissions" else "medium"
            return [
                Change(
                    "mode",
                    "widened",
                    severity,
                    f"permission mode loosened: {detail}",
                    warnings=[("permission_mode_loosened", detail)],
                )
            ]
        return [Change("mode", "narrowed", "low", f"permission mode tightened: {detail}")]
    # A mode the runtime does not know could mean anything: a reviewer should look.
    return [
        Change(
            "mode",
            "changed",
            "medium",
            f"permission mode changed to or from a value Claude Code does not know: {detail}",
            warnings=[("permission_mode_changed", detail)],
        )
    ]


def _set_or_all_changes(name: str, what: str, was: Any, now: Any, severity: str) -> list[Change]:
    """Subagents and skills: classified like tools, but not among API.md's warning codes."""
    if was == now:
        return []
    if now == "all":
        return [Change(name, "widened", severity, f"every {what} is now allowed")]
    if was == "all":
        shown = _listed(now) if now else "none"
        return [Change(name, "narrowed", "low", f"only these {what}s are allowed now: {shown}")]
    added = sorted(set(now) - set(was))
    removed = sorted(set(was) - set(now))
    changes = []
    if added:
        changes.append(
            Change(
                name,
                "widened",
                severity,
                f"newly allowed {what}s: {_listed(added)}",
                added=added,
            )
        )
    if removed:
        changes.append(
            Change(name, "narrowed", "low", f"no longer allowed {what}s: {_listed(removed)}", removed=removed)
        )
    return changes


def _hooks_changes(before: dict[str, Any], after: dict[str, Any], old: dict, new: dict) -> list[Change]:
    if "hooks" not in after or after.get("hooks") == before.get("hooks"):
        removed = sorted(set(old["hooks"]) - set(new["hooks"]))
        if removed:
            return [Change("hooks", "narrowed", "low", f"hooks removed: {_listed(removed)}", removed=removed)]
        return []
    # Hooks run shell commands: any addition or edit is a high-severity widening.
    code_detail = "hooks added" if "hooks" not in before else "hooks changed"
    added = sorted(set(new["hooks"]) - set(old["hooks"]))
    events = _listed(new["hooks"]) or "none"
    detail = (
        f"hooks added for {_listed(added)}: they run commands"
        if added
        else f"hooks changed ({events}): they run commands"
    )
    return [
        Change(
            "hooks", "widened", "high", detail, added=added or None, warnings=[("hooks_changed", code_detail)]
        )
    ]


def _mcp_changes(before: dict[str, Any], after: dict[str, Any], old: dict, new: dict) -> list[Change]:
    _, _, old_configs = _mcp_servers(before.get("mcpServers"))
    _, _, new_configs = _mcp_servers(after.get("mcpServers"))
    added = sorted(set(new["mcp_servers"]) - set(old["mcp_servers"]))
    removed = sorted(set(old["mcp_servers"]) - set(new["mcp_servers"]))
    edited = sorted(
        name
        for name in set(new["mcp_servers"]) & set(old["mcp_servers"])
        if old_configs.get(name) != new_configs.get(name)
    )
    code_detail = "mcpServers added" if "mcpServers" not in before else "mcpServers changed"
    changes = []
    if added:
        commands = set(new["mcp_commands"])
        runs = [name for name in added if name in commands]
        detail = f"MCP servers added: {_listed(added)}"
        if runs:
            detail += f" ({_listed(runs)} start a local command)"
        changes.append(
            Change(
                "mcp_servers",
                "widened",
                "high" if runs else "medium",
                detail,
                added=added,
                warnings=[("mcp_servers_changed", code_detail)],
            )
        )
    if edited:
        changes.append(
            Change(
                "mcp_servers",
                "changed",
                "high" if set(edited) & set(new["mcp_commands"]) else "medium",
                f"MCP server configuration changed: {_listed(edited)}",
                warnings=[] if added else [("mcp_servers_changed", code_detail)],
            )
        )
    if removed:
        changes.append(
            Change(
                "mcp_servers", "narrowed", "low", f"MCP servers removed: {_listed(removed)}", removed=removed
            )
        )
    return changes


def _value_change(name: str, label: str, was: Any, now: Any, warning: tuple[str, str] | None) -> list[Change]:
    if was == now:
        return []
    return [
        Change(
            name,
            "changed",
            "medium" if name == "model" else "low",
            f"{label} changed: {_shown(was)} -> {_shown(now)}",
            warnings=[warning] if warning else [],
        )
    ]


def permission_changes(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Every change of effective permissions from one frontmatter to the other, in a fixed order."""
    old, new = effective_permissions(before), effective_permissions(after)
    model_warning = ("model_changed", f"{_shown(before.get('model'))} -> {_shown(after.get('model'))}")
    return [
        *_tools_changes(before, after, old, new),
        *_denied_changes(old, new),
        *_mode_changes(old, new),
        *_set_or_all_changes("subagents", "subagent", old["subagents"], new["subagents"], "medium"),
        *_hooks_changes(before, after, old, new),
        *_mcp_changes(before, after, old, new),
        *_set_or_all_changes("skills", "skill", old["skills"], new["skills"], "low"),
        *_value_change("memory", "memory", old["memory"], new["memory"], None),
        *_value_change("max_turns", "maxTurns", old["max_turns"], new["max_turns"], None),
        *_value_change("model", "model", old["model"], new["model"], model_warning),
    ]


# ---------------------------------------------------------------------------------------
# Document warnings: what the runtime ignores or does not know (stored, never refused)
# ---------------------------------------------------------------------------------------

# The frontmatter fields of the Claude Code subagent documentation.
KNOWN_KEYS = frozenset(
    {
        "name",
        "description",
        "tools",
        "disallowedTools",
        "model",
        "permissionMode",
        "maxTurns",
        "skills",
        "mcpServers",
        "hooks",
        "memory",
        "background",
        "effort",
        "isolation",
        "initialPrompt",
        "color",
    }
)
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "cyan")
# Keys seen in real files that the runtime ignores, and what their authors meant.
SUGGESTIONS = {
    "allowedTools": ("tools", "so the agent gets every tool"),
    "allowed-tools": ("tools", "so the agent gets every tool"),
    "allowed_tools": ("tools", "so the agent gets every tool"),
    "deniedTools": ("disallowedTools", "so nothing is denied"),
    "disallowed-tools": ("disallowedTools", "so nothing is denied"),
    "mcp-servers": ("mcpServers", "so no MCP server is configured"),
    "mcp_servers": ("mcpServers", "so no MCP server is configured"),
}
_BY_FOLDED = {key.lower().replace("-", "").replace("_", ""): key for key in KNOWN_KEYS}


def _unknown_key(key: str, line: int | None) -> dict[str, Any]:
    if key in SUGGESTIONS:
        suggestion, consequence = SUGGESTIONS[key]
        return document_note(
            "unknown_key",
            f"Claude Code ignores {key!r}, {consequence}; did you mean {suggestion!r}?",
            line,
            suggestion,
        )
    folded = _BY_FOLDED.get(key.lower().replace("-", "").replace("_", ""))
    if folded is not None:
        return document_note(
            "unknown_key", f"Claude Code ignores {key!r}; did you mean {folded!r}?", line, folded
        )
    return document_note("unknown_key", f"Claude Code ignores {key!r}", line)


def document_warnings(frontmatter: dict[str, Any], key_lines: dict[str, int]) -> list[dict[str, Any]]:
    """Keys the runtime ignores and values it does not know, in the order of the file."""
    notes: list[dict[str, Any]] = []
    for key in sorted(frontmatter, key=lambda item: key_lines.get(item, 0)):
        if key not in KNOWN_KEYS:
            notes.append(_unknown_key(key, key_lines.get(key)))

    def invalid(key: str, message: str, suggestion: str | None = None) -> None:
        notes.append(document_note("invalid_value", message, key_lines.get(key), suggestion))

    mode = frontmatter.get("permissionMode")
    if "permissionMode" in frontmatter and mode not in PERMISSION_MODES:
        invalid(
            "permissionMode",
            f"permissionMode {mode!r} is not a mode Claude Code knows ({', '.join(PERMISSION_MODES)});"
            " it falls back to 'default'",
            DEFAULT_MODE,
        )
    color = frontmatter.get("color")
    if "color" in frontmatter and color not in COLORS:
        invalid("color", f"color {color!r} is not one of {', '.join(COLORS)}")
    memory = frontmatter.get("memory")
    if "memory" in frontmatter and memory not in MEMORY_SCOPES:
        invalid("memory", f"memory {memory!r} is not one of {', '.join(MEMORY_SCOPES)}")
    turns = frontmatter.get("maxTurns")
    if "maxTurns" in frontmatter and not (
        isinstance(turns, int) and not isinstance(turns, bool) and turns > 0
    ):
        invalid("maxTurns", f"maxTurns must be a positive whole number; got {turns!r}")
    if "hooks" in frontmatter and not isinstance(frontmatter["hooks"], dict):
        invalid(
            "hooks", "hooks must be a mapping of hook event names to handlers; the runtime ignores this one"
        )
    servers = frontmatter.get("mcpServers")
    if "mcpServers" in frontmatter:
        if not isinstance(servers, list | dict | str):
            invalid("mcpServers", "mcpServers must be a list of server names or inline servers")
        else:
            _, _, configs = _mcp_servers(servers)
            for name, config in configs.items():
                command = config.get("command") if isinstance(config, dict) else None
                if command is not None and not isinstance(command, str):
                    invalid("mcpServers", f"MCP server {name!r}: command must be text; got {command!r}")
    for key in ("tools", "disallowedTools"):
        entries = split_entries(frontmatter.get(key))
        if any(entry.count("(") != entry.count(")") for entry in entries):
            invalid(key, f"{key} has an unclosed '(': it was read to the end of the line")
    return notes
