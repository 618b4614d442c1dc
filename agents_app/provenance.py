"""Where a revision came from, as the API and the admin show it (API.md, "Import provenance").

A git replay keeps its provenance in the event's metadata under "git" (agents_app.importing.git):
the commit that wrote the change, its author and date, every author a merge brought in, and
the commit that landed it on the replayed line. This turns that metadata into the API's
`provenance` object, so that a serializer or an admin page shows it with one call.
"""

from collections.abc import Mapping
from typing import Any

GIT_KEYS = (
    "commit",
    "author",
    "authored_at",
    "authors",
    "committer",
    "committed_at",
    "merge_commit",
    "merged_by",
)


def provenance_from_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`{"git": {...}}` for a git-imported revision's event metadata; None for any other change.

    Events of replays made before provenance was recorded have only `git_commit` and
    `git_authored_at` beside the commit author as actor: what they know is given, nothing
    is made up (no `committer`, no merge ids).
    """
    if not metadata:
        return None
    git = metadata.get("git")
    if isinstance(git, Mapping):
        return {"git": {key: git[key] for key in GIT_KEYS if key in git}}
    commit = metadata.get("git_commit")
    if not isinstance(commit, str):
        return None
    actor = str(metadata.get("actor", ""))
    author = actor.removeprefix("git:") if actor.startswith("git:") else None
    older: dict[str, Any] = {"commit": commit}
    if author is not None:
        older.update(author=author, authors=[author])
    if isinstance(metadata.get("git_authored_at"), str):
        older["authored_at"] = metadata["git_authored_at"]
    if isinstance(metadata.get("occurred_at"), str):
        older["committed_at"] = metadata["occurred_at"]
    return {"git": older}
