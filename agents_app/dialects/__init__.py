"""Agent definition dialects: what a document lets its agent effectively do, and what it gets wrong.

One module per dialect behind one interface (`effective_permissions`, `document_warnings`,
`compare`), so that a third runtime (OpenCode, Codex) is one more module and one more entry
in DIALECTS. Everything here is a pure function of the parsed frontmatter: the projections
store its result once per revision (API.md, "Permissions"), and the diff recomputes it from
the two sides' frontmatter so that the JSON, the HTML and the warnings share one answer.
"""

from types import ModuleType
from typing import Any

from agents_app.dialects import claude_code, copilot

DEFAULT_DIALECT = "claude-code"
DIALECTS: dict[str, ModuleType] = {"claude-code": claude_code, "copilot": copilot}


def dialect_module(dialect: str) -> ModuleType:
    return DIALECTS.get(dialect, claude_code)


def effective_permissions(frontmatter: dict[str, Any], *, dialect: str = DEFAULT_DIALECT) -> dict[str, Any]:
    return dialect_module(dialect).effective_permissions(frontmatter)


def permission_changes(
    old: dict[str, Any], new: dict[str, Any], *, dialect: str = DEFAULT_DIALECT
) -> list[claude_code.Change]:
    return dialect_module(dialect).permission_changes(old, new)
