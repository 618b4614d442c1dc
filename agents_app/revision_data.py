"""What a content event's data (agent.created, .revised, .reverted) says about its revision.

`content` is the raw file. Two more keys exist since a second dialect (issue 15); events are
never rewritten, so their absence keeps its old meaning:

* `dialect`: the rules the stream's documents follow; written in every content event of a
  stream whose dialect is not the default; absent means `claude-code` (every older event).
* `name`: the agent's name when the content has none (a copilot file without `name`: the
  name came from the file name or the request, or, for later revisions, is the one the
  stream had). Absent when the content names the agent, which then is the name.

Services write these keys (`revision_data`), projections and readers use the rest.
"""

from collections.abc import Mapping
from typing import Any

from agents_app.dialects import DEFAULT_DIALECT
from agents_app.document import AgentDocument, parse_agent_document


def event_dialect(data: Mapping[str, Any]) -> str:
    return data.get("dialect") or DEFAULT_DIALECT


def event_document(data: Mapping[str, Any]) -> AgentDocument:
    """The parsed content of a content event, read with its stream's dialect (or DocumentInvalid)."""
    return parse_agent_document(data["content"], dialect=event_dialect(data))


def event_name(data: Mapping[str, Any], document: AgentDocument | None = None) -> str:
    """The agent's name at this revision: the content's, else the one the event carries."""
    document = document or event_document(data)
    return document.name or data.get("name") or ""


def revision_data(document: AgentDocument, *, revision: int, name: str, **extra: Any) -> dict[str, Any]:
    """The data of a content event storing `document` as `revision` of an agent named `name`."""
    data: dict[str, Any] = {"content": document.content, "revision": revision, **extra}
    if document.dialect != DEFAULT_DIALECT:
        data["dialect"] = document.dialect
    if not document.name:
        data["name"] = name
    return data
