"""The cursor of `GET /agents/`: opaque to clients, the keyset (name, agent id) inside.

Opaque so that clients pass back what they were given instead of building one from a name (a
cursor of the name alone skipped every row after the first of a repeated name). It is not
signed: a forged cursor that decodes is only a position in the list, and shows nothing the
caller could not list anyway; one that does not decode is a 400 naming the parameter.
"""

import base64
import binascii
import uuid

from agents_app.api.errors import InvalidParameter
from agents_app.document import NAME_PATTERN
from agents_app.selectors import ListCursor

CURSOR_PARAMETER = "after"


def next_page_token(row) -> str:
    """The cursor after `row` (an AgentCurrent or AgentRevision row of a list)."""
    raw = f"{row.name}/{row.agent_id.hex}".encode("ascii")  # names are ASCII (NAME_PATTERN)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def page_token_parse(cursor: str) -> ListCursor | None:
    """The (name, agent id) a cursor holds; None for no cursor; InvalidParameter if it is not one."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        name, _, agent_id = raw.partition("/")
        if not NAME_PATTERN.fullmatch(name) or len(agent_id) != 32:
            raise ValueError(raw)
        return name, uuid.UUID(hex=agent_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidParameter(
            CURSOR_PARAMETER, "is not a cursor of this list; pass the `next` link of the previous page"
        ) from None
