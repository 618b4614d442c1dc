"""Blame: which revision last changed each body line and each frontmatter key.

Lines are carried forward like `git blame` does it, one revision pair at a time: difflib's
opcodes between consecutive bodies say which lines survived (they keep the revision that
wrote them) and which were inserted or replaced (they belong to the newer revision). So a
line deleted and written again, or a revert, is blamed on the revision that wrote it back.

A frontmatter key is blamed on the last revision in which its parsed value appeared or
changed; removing a key forgets its history, so a key added back starts afresh.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from typing import Any, Protocol

from agents_app.document import body_lines


class _RevisionLike(Protocol):
    revision: int
    actor: str
    recorded_at: datetime
    reason: str
    frontmatter: dict[str, Any]
    body: str


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
        )

    def attribution(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "actor": self.actor,
            "recorded_at": self.recorded_at.isoformat(),
            "reason": self.reason,
        }


def _carry_lines(old: list[str], new: list[str], origins: list[int], newest: int) -> list[int]:
    """Origins of the lines of `new`, given the origins of the lines of `old`."""
    # Cut the common head and tail first: a typical revision edits a few lines in the middle,
    # so SequenceMatcher (quadratic at worst) only ever sees the changed region, and a long
    # history stays linear in the number of lines.
    head = 0
    limit = min(len(old), len(new))
    while head < limit and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and old[len(old) - 1 - tail] == new[len(new) - 1 - tail]:
        tail += 1
    carried = origins[:head]
    old_middle = old[head : len(old) - tail]
    new_middle = new[head : len(new) - tail]
    if new_middle:
        middle = [newest] * len(new_middle)
        if old_middle:
            matcher = SequenceMatcher(None, old_middle, new_middle, autojunk=False)
            for tag, old_from, old_to, new_from, _ in matcher.get_opcodes():
                if tag == "equal":
                    middle[new_from : new_from + old_to - old_from] = origins[head + old_from : head + old_to]
        carried.extend(middle)
    carried.extend(origins[len(origins) - tail :] if tail else [])
    return carried


def _fingerprint(value: Any) -> str:
    """Compare values as JSON does: `1`, `1.0` and `true` differ, mapping key order does not matter."""
    return json.dumps(value, sort_keys=True, default=str)


def _in_file_order(revision: BlameRevision) -> list[str]:
    """The frontmatter keys in the order the file writes them."""

    def position(key: str) -> int:
        found = re.search(rf"^{re.escape(key)}\s*:", revision.content, re.MULTILINE)
        return found.start() if found else len(revision.content)

    keys = list(revision.frontmatter)
    return sorted(keys, key=lambda key: (position(key), keys.index(key)))


def blame(revisions: Sequence[BlameRevision]) -> dict[str, Any]:
    """Blame the last of `revisions` (oldest first, the whole history up to it)."""
    if not revisions:
        raise ValueError("blame needs at least one revision")
    line_origins: list[int] = []  # index into `revisions` of the revision that wrote each line
    lines: list[str] = []
    key_origins: dict[str, int] = {}
    key_values: dict[str, str] = {}
    for index, revision in enumerate(revisions):
        new_lines = body_lines(revision.body)
        if index == 0:
            line_origins = [0] * len(new_lines)
        elif new_lines != lines:
            line_origins = _carry_lines(lines, new_lines, line_origins, index)
        lines = new_lines

        values = {key: _fingerprint(value) for key, value in revision.frontmatter.items()}
        for key, value in values.items():
            if key_values.get(key) != value:
                key_origins[key] = index
        key_values = values

    last = revisions[-1]
    attributions = [revision.attribution() for revision in revisions]
    return {
        "revision": last.revision,
        "lines": [
            {"line": number, "text": text.removesuffix("\r"), **attributions[origin]}
            for number, (text, origin) in enumerate(zip(lines, line_origins, strict=True), start=1)
        ],
        "frontmatter": [{"key": key, **attributions[key_origins[key]]} for key in _in_file_order(last)],
    }
