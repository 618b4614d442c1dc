"""Agent definition dialects: what a document lets its agent effectively do, and what it gets wrong.

One module per dialect behind one interface (`effective_permissions`, `document_warnings`,
`permission_changes`, and the constants `FILE_SUFFIX` and `NAME_REQUIRED`), so that a third
runtime (OpenCode, Codex) is one more module and one more entry in DIALECTS. Everything
here is a pure function of the parsed frontmatter: the projections store its result once per
revision (API.md, "Permissions"), and the diff recomputes it from the two sides' frontmatter
so that the JSON, the HTML and the warnings share one answer.
"""

from types import ModuleType
from typing import Any

from agents_app.dialects import claude_code, copilot

DEFAULT_DIALECT = "claude-code"
DIALECTS: dict[str, ModuleType] = {"claude-code": claude_code, "copilot": copilot}


# Dialects whose documents may leave `name` out (the file name or the request gives it).
NAME_OPTIONAL = frozenset(key for key, module in DIALECTS.items() if not module.NAME_REQUIRED)


def dialect_module(dialect: str) -> ModuleType:
    return DIALECTS.get(dialect, claude_code)


def dialect_problem(dialect: object) -> str | None:
    """What is wrong with a requested dialect, or None (REST `dialect`, the admin's choice)."""
    if isinstance(dialect, str) and dialect in DIALECTS:
        return None
    return f"must be one of {', '.join(DIALECTS)}; got {dialect!r}"


def dialect_of_file(file_name: str) -> tuple[str, str]:
    """(dialect, name from the file name) by the file's suffix: `x.agent.md` is copilot's `x`.

    The longest suffix wins, so `.agent.md` is not taken for the plain `.md` of Claude Code.
    """
    lowered = file_name.lower()
    for key, module in sorted(DIALECTS.items(), key=lambda item: -len(item[1].FILE_SUFFIX)):
        if lowered.endswith(module.FILE_SUFFIX):
            return key, file_name[: -len(module.FILE_SUFFIX)]
    return DEFAULT_DIALECT, file_name.rsplit(".", 1)[0]


def file_name_of(name: str, dialect: str) -> str:
    """The file name the dialect's runtime expects for an agent (export)."""
    return f"{name}{dialect_module(dialect).FILE_SUFFIX}"


def effective_permissions(frontmatter: dict[str, Any], *, dialect: str = DEFAULT_DIALECT) -> dict[str, Any]:
    return dialect_module(dialect).effective_permissions(frontmatter)


def permission_changes(
    old: dict[str, Any], new: dict[str, Any], *, dialect: str = DEFAULT_DIALECT
) -> list[claude_code.Change]:
    return dialect_module(dialect).permission_changes(old, new)


def document_warnings(
    frontmatter: dict[str, Any], key_lines: dict[str, int], *, dialect: str = DEFAULT_DIALECT
) -> list[dict[str, Any]]:
    return dialect_module(dialect).document_warnings(frontmatter, key_lines)
