"""The agent projections: `agents.current` (one row per agent) and `agents.revisions` (one per revision).

Both are idempotent: an event already reflected in a row (by stream version or revision)
is skipped, so applying a batch twice changes nothing.
"""

import datetime as dt
import difflib
import uuid
from collections.abc import Iterator
from typing import Any

from agents_app import event_types as types
from agents_app.document import body_lines, parse_agent_document
from agents_app.exceptions import DocumentInvalid
from agents_app.models import AgentCurrent, AgentRevision
from events.projections import Projection
from events.types import StoredEvent

CURRENT = "agents.current"
REVISIONS = "agents.revisions"


def parsed_fields(content: str) -> dict[str, Any]:
    """The structured fields stored beside the raw content in both views."""
    try:
        document = parse_agent_document(content)
    except DocumentInvalid as exc:  # stored under older rules: keep the row, say why it has no fields
        return {
            "frontmatter": {},
            "body": content,
            "description": "",
            "model": "",
            "tools": None,
            "warnings": [f"no longer valid: {exc}"],
            "sha256": "",
            "name": None,
        }
    return {
        "frontmatter": document.frontmatter,
        "body": document.body,
        "description": document.description,
        "model": document.model or "",
        "tools": document.tools,
        "warnings": document.warnings,
        "sha256": document.sha256,
        "name": document.name,
    }


def body_line_changes(old: str, new: str) -> tuple[int, int]:
    """(lines added, lines removed) between two bodies."""
    added = removed = 0
    matcher = difflib.SequenceMatcher(None, body_lines(old), body_lines(new), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added += j2 - j1
    return added, removed


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(key for key in old.keys() | new.keys() if old.get(key, ...) != new.get(key, ...))


def _rows_by_key(queryset, key_fields: tuple[str, ...]) -> Iterator[tuple[Any, dict[str, Any]]]:
    skip = {"id", "generation"}
    for values in queryset.order_by(*key_fields).values().iterator(chunk_size=1000):
        key = tuple(str(values[field]) if field == "agent_id" else values[field] for field in key_fields)
        yield key, {name: value for name, value in values.items() if name not in skip}


class CurrentProjection(Projection):
    """One row per agent: latest revision, parsed fields, status, labels, who and when."""

    name = CURRENT
    event_types = types.ALL

    def apply(self, events: list[StoredEvent], *, generation: int) -> None:
        agent_ids = {event.stream_id for event in events}
        rows = {
            row.agent_id: row
            for row in AgentCurrent.objects.filter(generation=generation, agent_id__in=agent_ids)
        }
        new_ids: set[uuid.UUID] = set()
        changed_ids: set[uuid.UUID] = set()
        reparse: set[uuid.UUID] = set()
        for event in events:
            row = rows.get(event.stream_id)
            if row is not None and row.stream_version >= event.stream_version:
                continue  # already applied
            actor = event.metadata.get("actor", "")
            if event.type == types.CREATED:
                fields = parsed_fields(event.data["content"])
                row = AgentCurrent(
                    generation=generation,
                    agent_id=event.stream_id,
                    name=fields.pop("name") or "",
                    revision=event.data["revision"],
                    content=event.data["content"],
                    labels={},
                    created_by=actor,
                    created_at=event.recorded_at,
                    **fields,
                )
                rows[event.stream_id] = row
                new_ids.add(event.stream_id)
            elif row is None:
                continue  # a stream without its created event cannot be shown
            elif event.type in types.CONTENT_EVENTS:
                # Parsed once per agent and batch, below: only the last content counts.
                row.content = event.data["content"]
                row.revision = event.data["revision"]
                reparse.add(event.stream_id)
            elif event.type == types.ARCHIVED:
                row.status = AgentCurrent.Status.ARCHIVED
            elif event.type == types.RESTORED:
                row.status = AgentCurrent.Status.ACTIVE
            elif event.type == types.LABEL_MOVED:
                labels = dict(row.labels)
                if event.data["revision"] is None:
                    labels.pop(event.data["label"], None)
                else:
                    labels[event.data["label"]] = event.data["revision"]
                row.labels = dict(sorted(labels.items()))
            row.stream_version = event.stream_version
            row.position = event.position
            row.updated_by = actor
            row.updated_at = event.recorded_at
            changed_ids.add(event.stream_id)
        for agent_id in reparse:
            row = rows[agent_id]
            fields = parsed_fields(row.content)
            row.name = fields.pop("name") or row.name
            for key, value in fields.items():
                setattr(row, key, value)
        AgentCurrent.objects.bulk_create([rows[agent_id] for agent_id in new_ids])
        existing = [rows[agent_id] for agent_id in changed_ids - new_ids]
        if existing:
            fields = [
                f.name
                for f in AgentCurrent._meta.concrete_fields
                if f.name not in ("id", "generation", "agent_id")
            ]
            AgentCurrent.objects.bulk_update(existing, fields)

    def reset(self, *, generation: int) -> None:
        AgentCurrent.objects.filter(generation=generation).delete()

    def rows(self, *, generation: int) -> Iterator[tuple[Any, dict[str, Any]]]:
        return _rows_by_key(AgentCurrent.objects.filter(generation=generation), ("agent_id",))


class RevisionsProjection(Projection):
    """One row per agent revision, with what changed against the revision before it."""

    name = REVISIONS
    event_types = types.CONTENT_EVENTS

    def apply(self, events: list[StoredEvent], *, generation: int) -> None:
        previous: dict[uuid.UUID, AgentRevision | None] = {}
        new_rows: list[AgentRevision] = []
        for event in events:
            revision = event.data["revision"]
            if event.stream_id not in previous:
                previous[event.stream_id] = (
                    AgentRevision.objects.filter(
                        generation=generation, agent_id=event.stream_id, revision__lt=revision
                    )
                    .order_by("-revision")
                    .first()
                )
            prior = previous[event.stream_id]
            if prior is not None and prior.revision >= revision:
                continue
            fields = parsed_fields(event.data["content"])
            name = fields.pop("name") or (prior.name if prior else "")
            if prior is None:
                keys, (added, removed) = sorted(fields["frontmatter"]), (len(body_lines(fields["body"])), 0)
            else:
                keys = changed_keys(prior.frontmatter, fields["frontmatter"])
                added, removed = body_line_changes(prior.body, fields["body"])
            occurred = event.metadata.get("occurred_at")
            row = AgentRevision(
                generation=generation,
                agent_id=event.stream_id,
                revision=revision,
                name=name,
                event_type=event.type,
                reverted_to=event.data.get("reverted_to"),
                content=event.data["content"],
                actor=event.metadata.get("actor", ""),
                reason=event.metadata.get("reason", ""),
                source=event.metadata.get("source", ""),
                recorded_at=event.recorded_at,
                occurred_at=dt.datetime.fromisoformat(occurred) if occurred else event.recorded_at,
                changed_keys=keys,
                lines_added=added,
                lines_removed=removed,
                stream_version=event.stream_version,
                position=event.position,
                **fields,
            )
            new_rows.append(row)
            previous[event.stream_id] = row
        # ignore_conflicts: a row already there came from the same immutable event.
        AgentRevision.objects.bulk_create(new_rows, ignore_conflicts=True)

    def reset(self, *, generation: int) -> None:
        AgentRevision.objects.filter(generation=generation).delete()

    def rows(self, *, generation: int) -> Iterator[tuple[Any, dict[str, Any]]]:
        return _rows_by_key(AgentRevision.objects.filter(generation=generation), ("agent_id", "revision"))
