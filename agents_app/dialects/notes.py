"""A document warning as the API writes it: `{code, message, line?, suggestion?}` (API.md, Agents)."""

from typing import Any


def document_note(
    code: str, message: str, line: int | None = None, suggestion: str | None = None
) -> dict[str, Any]:
    note: dict[str, Any] = {"code": code, "message": message}
    if line is not None:
        note["line"] = line
    if suggestion is not None:
        note["suggestion"] = suggestion
    return note
