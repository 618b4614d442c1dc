"""Blame: which revision last changed each body line and each frontmatter key.

Lines are carried forward like `git blame` does it, one revision pair at a time: the line
matching every diff uses (agents_app.line_matching) says which lines survived (they keep
the revision that wrote them) and which were inserted or replaced (they belong to the newer
revision). So a line deleted and written again, or a revert, is blamed on the revision that
wrote it back.

A frontmatter key is blamed on the last revision in which its parsed value appeared or
changed; removing a key forgets its history, so a key added back starts afresh.

The revisions projection carries the origins when it applies each revision and stores them
on the row (`AgentRevision.line_origins`, `key_origins`): blaming any revision then reads
that one row and the few revisions its lines name, whatever the length of the history.
"""

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agents_app.document import body_lines
from agents_app.line_matching import Opcode, line_opcodes
from events.timefmt import iso


class _RevisionLike(Protocol):
    revision: int
    actor: str
    recorded_at: datetime
    reason: str
    frontmatter: dict[str, Any]

    @property
    def body(self) -> str: ...  # a property of AgentRevision (an offset into the content)


@dataclass(frozen=True)
class BlameRevision:
    """What blame needs of one revision of an agent definition."""

    revision: int
    actor: str
    recorded_at: datetime
    reason: str
    frontmatter: dict[str, Any]
    body: str
    content: str = ""  # the raw file: gives the keys their order (jsonb does not keep it)
    occurred_at: datetime | None = None  # business time; None: the same as recorded_at

    @classmethod
    def from_revision(cls, revision: _RevisionLike) -> "BlameRevision":
        """From an AgentRevision row (or anything with the same attributes)."""
        return cls(
            revision=revision.revision,
            actor=revision.actor,
            recorded_at=revision.recorded_at,
            reason=revision.reason or "",
            frontmatter=dict(revision.frontmatter or {}),
            body=revision.body,
            content=getattr(revision, "content", ""),
            occurred_at=getattr(revision, "occurred_at", None),
        )

    def attribution(self) -> dict[str, Any]:
        return attribution(
            revision=self.revision,
            actor=self.actor,
            occurred_at=self.occurred_at or self.recorded_at,
            recorded_at=self.recorded_at,
            reason=self.reason,
        )


def attribution(
    *, revision: int, actor: str, occurred_at: datetime | str, recorded_at: datetime | str, reason: str
) -> dict[str, Any]:
    """What blame says about the revision a line or key comes from (API.md, blame). Instants
    are datetimes, or already the API's text (the PostgreSQL read formats them: selectors)."""
    return {
        "revision": revision,
        "actor": actor,
        "occurred_at": occurred_at if isinstance(occurred_at, str) else iso(occurred_at),
        "recorded_at": recorded_at if isinstance(recorded_at, str) else iso(recorded_at),
        "reason": reason or "",
    }


# ---------------------------------------------------------------------------------------
# Origins, carried from one revision to the next
# ---------------------------------------------------------------------------------------


def carry_line_origins(opcodes: list[Opcode], new_count: int, origins: list[int], newest: int) -> list[int]:
    """The revisions that wrote the `new_count` lines of a body, given the opcodes from the body
    before, the origins of its lines, and the revision `newest` that made the change."""
    carried = [newest] * new_count
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            carried[j1:j2] = origins[i1:i2]
    return carried


def _fingerprint(value: Any) -> str:
    """Compare values as JSON does: `1`, `1.0` and `true` differ, mapping key order does not matter."""
    return json.dumps(value, sort_keys=True, default=str)


def carry_key_origins(
    old: Mapping[str, Any], new: Mapping[str, Any], origins: Mapping[str, int], newest: int
) -> dict[str, int]:
    """The revisions that last set the keys of `new`: a key added or changed belongs to `newest`."""
    return {
        key: origins[key]
        if key in old and key in origins and _fingerprint(old[key]) == _fingerprint(value)
        else newest
        for key, value in new.items()
    }


def origins_encode(origins: Iterable[int]) -> list[int]:
    """Line origins run-length encoded, flat: [revision, count, revision, count, ...].

    Lines come in runs from the same revision (a paragraph written at once), so a 4,000-line
    prompt stores a few dozen numbers, not 4,000.
    """
    encoded: list[int] = []
    for origin in origins:
        if encoded and encoded[-2] == origin:
            encoded[-1] += 1
        else:
            encoded += [origin, 1]
    return encoded


def origins_decode(encoded: Sequence[int]) -> list[int]:
    decoded: list[int] = []
    for index in range(0, len(encoded), 2):
        decoded += [encoded[index]] * encoded[index + 1]
    return decoded


def revision_origins(
    *,
    revision: int,
    frontmatter: Mapping[str, Any],
    body: str,
    previous: tuple[Mapping[str, Any], str, Sequence[int], Mapping[str, int]] | None,
    opcodes: list[Opcode] | None = None,
) -> tuple[list[int], dict[str, int]]:
    """(encoded line origins, key origins) of a revision, from the previous revision's
    (frontmatter, body, encoded line origins, key origins), or None for the first.

    `opcodes`: the line opcodes between the two bodies' `body_lines`, when the caller has
    them already (the projection counts the lines added and removed from the same ones).
    """
    lines = body_lines(body)
    if previous is None:
        return origins_encode([revision] * len(lines)), dict.fromkeys(frontmatter, revision)
    old_frontmatter, old_body, old_lines, old_keys = previous
    line_origins = origins_decode(old_lines)
    if old_body != body:
        if opcodes is None:
            opcodes = line_opcodes(body_lines(old_body), lines)
        line_origins = carry_line_origins(opcodes, len(lines), line_origins, revision)
    return origins_encode(line_origins), carry_key_origins(old_frontmatter, frontmatter, old_keys, revision)


# ---------------------------------------------------------------------------------------
# The blame of one revision
# ---------------------------------------------------------------------------------------


def _in_file_order(frontmatter: Mapping[str, Any], content: str) -> list[str]:
    """The frontmatter keys in the order the file writes them."""

    def position(key: str) -> int:
        found = re.search(rf"^{re.escape(key)}\s*:", content, re.MULTILINE)
        return found.start() if found else len(content)

    keys = list(frontmatter)
    return sorted(keys, key=lambda key: (position(key), keys.index(key)))


def blame_of(
    *,
    revision: int,
    frontmatter: Mapping[str, Any],
    body: str,
    content: str,
    line_origins: Sequence[int],
    key_origins: Mapping[str, int],
    attributions: Mapping[int, dict[str, Any]],
) -> dict[str, Any]:
    """The blame of one revision from its stored origins and the attributions of the revisions
    they name (`attribution(...)` by revision number)."""
    lines = body_lines(body)
    return {
        "revision": revision,
        "lines": [
            {"line": number, "text": text.removesuffix("\r"), **attributions[origin]}
            for number, (text, origin) in enumerate(
                zip(lines, origins_decode(line_origins), strict=True), start=1
            )
        ],
        "frontmatter": [
            {"key": key, **attributions[key_origins[key]]} for key in _in_file_order(frontmatter, content)
        ],
    }


def blame(revisions: Sequence[BlameRevision]) -> dict[str, Any]:
    """Blame the last of `revisions` (oldest first, the whole history up to it), carrying the
    origins through every revision as the revisions projection does when it stores them."""
    if not revisions:
        raise ValueError("blame needs at least one revision")
    previous = None
    for revision in revisions:
        line_origins, key_origins = revision_origins(
            revision=revision.revision,
            frontmatter=revision.frontmatter,
            body=revision.body,
            previous=previous,
        )
        previous = (revision.frontmatter, revision.body, line_origins, key_origins)
    last = revisions[-1]
    return blame_of(
        revision=last.revision,
        frontmatter=last.frontmatter,
        body=last.body,
        content=last.content,
        line_origins=line_origins,
        key_origins=key_origins,
        attributions={revision.revision: revision.attribution() for revision in revisions},
    )
