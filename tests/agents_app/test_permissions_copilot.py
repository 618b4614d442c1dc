"""Effective permissions of a GitHub Copilot custom agent (`.agent.md`) and their changes.

Table-driven over the copilot rules of API.md's "Permissions" section. The dialect is not yet
wired into create/import (see the issue-15 report): these tests drive the module directly.
"""

import pytest
import yaml

from agents_app.dialects import effective_permissions, permission_changes

BASE = {"tools": "all", "denied": [], "mcp_servers": [], "mcp_commands": [], "model_invocation": True}


def fm(text: str) -> dict:
    return yaml.safe_load(f"description: d\n{text}") or {}


@pytest.mark.parametrize(
    ("frontmatter", "expected"),
    [
        ("", {}),
        ("tools: ['*']\n", {}),
        ("tools: []\n", {"tools": []}),
        ("tools: [read, edit, read]\n", {"tools": ["edit", "read"]}),
        ("mcp-servers:\n  db:\n    command: ./db\n", {"mcp_servers": ["db"], "mcp_commands": ["db"]}),
        ("disable-model-invocation: true\n", {"model_invocation": False}),
        ("model: gpt-5\ntarget: vscode\n", {"model": "gpt-5", "target": "vscode"}),
    ],
)
def test_copilot_effective_permissions(frontmatter, expected):
    got = effective_permissions(fm(frontmatter), dialect="copilot")
    assert got == {**BASE, "model": "inherit", "target": "all", **expected}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("tools: [read]\n", "", [("tools", "widened", "high")]),
        ("tools: [read]\n", "tools: ['*']\n", [("tools", "widened", "high")]),
        ("", "tools: []\n", [("tools", "narrowed", "medium")]),
        ("tools: []\n", "tools: [edit]\n", [("tools", "widened", "medium")]),
        ("tools: [read, edit]\n", "tools: [read]\n", [("tools", "narrowed", "low")]),
        ("disable-model-invocation: true\n", "", [("model_invocation", "widened", "medium")]),
        ("", "disable-model-invocation: true\n", [("model_invocation", "narrowed", "low")]),
        ("", "mcp-servers:\n  db:\n    command: ./db\n", [("mcp_servers", "widened", "high")]),
        ("mcp-servers:\n  db:\n    url: x\n", "", [("mcp_servers", "narrowed", "low")]),
        ("model: a\n", "model: b\n", [("model", "changed", "medium")]),
        ("", "target: vscode\n", [("target", "changed", "low")]),
    ],
)
def test_copilot_permission_transitions(old, new, expected):
    changes = permission_changes(fm(old), fm(new), dialect="copilot")
    assert [(c.field, c.kind, c.severity) for c in changes] == expected


def test_copilot_removing_tools_warns_like_claude_code():
    [change] = permission_changes(fm("tools: [read]\n"), fm(""), dialect="copilot")
    assert change.detail == "every tool is now granted: the tools key was removed"
    assert change.warnings == [("tools_removed", "no tools key: every tool is granted")]
