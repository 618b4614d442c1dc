"""The agent projections: `agents.current` (one row per agent) and `agents.revisions` (one per revision).

Both are idempotent: an event already reflected in a row (by stream version or revision)
is skipped, so applying a batch twice changes nothing.
"""

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any, cast

from django.db import connection

from agents_app import event_types as types
from agents_app.blame import revision_origins
from agents_app.dialects import DEFAULT_DIALECT, effective_permissions
from agents_app.document import body_lines, parse_agent_document
from agents_app.exceptions import DocumentInvalid
from agents_app.line_matching import file_changes, line_opcodes, opcode_changes
from agents_app.models import AgentCurrent, AgentRevision
from agents_app.revision_data import event_dialect
from events.projections import Projection
from events.rows import rows_copy, rows_execute, rows_insert, rows_update
from events.types import StoredEvent

CURRENT = "agents.current"
REVISIONS = "agents.revisions"
# From this many events in one batch the revisions view writes its rows with COPY (events.rows).
BULK_ROWS = 8


def parsed_fields(content: str, *, dialect: str = DEFAULT_DIALECT) -> dict[str, Any]:
    """The structured fields stored beside the raw content in both views, read with `dialect`'s rules."""
    try:
        document = parse_agent_document(content, dialect=dialect)
    except DocumentInvalid as exc:  # stored under older rules: keep the row, say why it has no fields
        return {
            "frontmatter": {},
            "body_start": 0,
            "description": "",
            "model": "",
            "tools": None,
            "warnings": [{"code": "no_longer_valid", "message": f"no longer valid: {exc}"}],
            "dialect": dialect,
            "permissions": {},
            "sha256": "",
            "name": None,
        }
    return {
        "frontmatter": document.frontmatter,
        "body_start": len(document.content) - len(document.body),  # the body ends the content
        "description": document.description,
        "model": document.model or "",
        "tools": document.tools,
        "warnings": document.notes,
        # Computed once, when the revision is applied: `?can=` and the agent JSON read it.
        "dialect": dialect,
        "permissions": effective_permissions(document.frontmatter, dialect=dialect),
        "sha256": document.sha256,
        "name": document.name,
    }


def event_fields(event: StoredEvent) -> dict[str, Any]:
    """parsed_fields of a content event: its stream's dialect, and the name it carries when
    the content has none (agents_app.revision_data). `name` is None when neither names it
    (content no longer valid): the row keeps the name it has."""
    data = event.data
    fields = parsed_fields(data["content"], dialect=event_dialect(data))
    fields["name"] = fields["name"] or data.get("name") or None
    return fields


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(key for key in old.keys() | new.keys() if old.get(key, ...) != new.get(key, ...))


def _rows_by_key(queryset, key_fields: tuple[str, ...]) -> Iterator[tuple[Any, dict[str, Any]]]:
    skip = {"id", "generation"}
    for values in queryset.order_by(*key_fields).values().iterator(chunk_size=1000):
        key = tuple(str(values[field]) if field == "agent_id" else values[field] for field in key_fields)
        yield key, {name: value for name, value in values.items() if name not in skip}


_KEPT = ("id", "generation", "agent_id")
_UPDATED_FIELDS = [field for field in AgentCurrent._meta.concrete_fields if field.name not in _KEPT]
# What a revision changes in its agent's row; status, labels and created_* stay as they are.
_REVISION_FIELDS = [
    field
    for field in AgentCurrent._meta.concrete_fields
    if field.name
    in (
        "name",
        "revision",
        "stream_version",
        "content",
        "sha256",
        "frontmatter",
        "body_start",
        "description",
        "model",
        "tools",
        "warnings",
        "dialect",
        "permissions",
        "updated_by",
        "updated_at",
        "position",
    )
]


def _revision_values(event: StoredEvent) -> dict[str, Any]:
    """What a content event (create, revise, revert) decides in its agent's current row.

    The one rule for both ways of applying a revision (the in-place UPDATE of a writer's own
    revision, and the row-by-row batch): the content, its revision and its parsed fields.
    """
    values = {"revision": event.data["revision"], "content": event.data["content"]}
    values.update(event_fields(event))
    if not values["name"]:
        # Content no longer valid under today's rules has no name: the row keeps the one it has.
        del values["name"]
    return values


def _revise_in_place(event: StoredEvent, *, generation: int) -> None:
    """Write an agent's newest revision into its row, without reading the row first.

    `stream_version < %s` keeps it idempotent: a row that already shows this event (or a
    later one) is left alone.
    """
    values = {
        **_revision_values(event),
        "stream_version": event.stream_version,
        "updated_by": event.metadata.get("actor", ""),
        "updated_at": event.recorded_at,
        "position": event.position,
    }
    written = [field for field in _REVISION_FIELDS if field.name in values]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in written)
    params = [field.get_db_prep_save(values[field.name], connection) for field in written]
    agent_id = AgentCurrent._meta.get_field("agent_id").get_db_prep_value(event.stream_id, connection)
    # rows_execute: inside the inline apply this UPDATE goes with the revisions view's INSERT,
    # in its round trip (events.rows.rows_joined); nothing reads its result.
    rows_execute(
        f"UPDATE {quote(AgentCurrent._meta.db_table)} SET {assignments}"  # noqa: S608 - names from the model
        " WHERE generation = %s AND agent_id = %s AND stream_version < %s",
        [*params, generation, agent_id, event.stream_version],
    )


class CurrentProjection(Projection):
    """One row per agent: latest revision, parsed fields, status, labels, who and when."""

    name = CURRENT
    event_types = types.ALL

    def apply(self, events: list[StoredEvent], *, generation: int) -> None:
        by_agent: dict[uuid.UUID, list[StoredEvent]] = {}
        for event in events:
            by_agent.setdefault(event.stream_id, []).append(event)
        # An agent that only got new revisions (a writer's own event, mostly): only its
        # newest one counts, and it needs no read of the row.
        revised = {types.REVISED, types.REVERTED}
        general: list[StoredEvent] = []
        for agent_events in by_agent.values():
            if all(event.type in revised for event in agent_events):
                _revise_in_place(agent_events[-1], generation=generation)
            else:
                general += agent_events
        if general:
            self._apply_rows(general, generation=generation)

    def _apply_rows(self, events: list[StoredEvent], *, generation: int) -> None:
        agent_ids = {event.stream_id for event in events}
        rows = {
            row.agent_id: row
            for row in AgentCurrent.objects.filter(generation=generation, agent_id__in=agent_ids)
        }
        new_ids: set[uuid.UUID] = set()
        changed_ids: set[uuid.UUID] = set()
        # The newest content event of each agent in the batch: only it counts, parsed once below.
        newest_content: dict[uuid.UUID, StoredEvent] = {}
        for event in events:
            row = rows.get(event.stream_id)
            if row is not None and row.stream_version >= event.stream_version:
                continue  # already applied
            actor = event.metadata.get("actor", "")
            if event.type == types.CREATED:
                row = AgentCurrent(
                    generation=generation,
                    agent_id=event.stream_id,
                    name="",
                    labels={},
                    created_by=actor,
                    created_at=event.recorded_at,
                )
                rows[event.stream_id] = row
                new_ids.add(event.stream_id)
            elif row is None:
                continue  # a stream without its created event cannot be shown
            if event.type in types.CONTENT_EVENTS:
                newest_content[event.stream_id] = event
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
        for agent_id, event in newest_content.items():
            for key, value in _revision_values(event).items():
                setattr(rows[agent_id], key, value)
        rows_insert([rows[agent_id] for agent_id in new_ids])
        # The rows keep their ids (admin links use them); bulk_update would build a CASE per
        # field and row, which for one row costs more than the rest of the write.
        rows_update([rows[agent_id] for agent_id in changed_ids - new_ids], fields=_UPDATED_FIELDS)

    def reset(self, *, generation: int) -> None:
        AgentCurrent.objects.filter(generation=generation).delete()

    def rows(self, *, generation: int) -> Iterator[tuple[Any, dict[str, Any]]]:
        return _rows_by_key(AgentCurrent.objects.filter(generation=generation), ("agent_id",))


class RevisionsProjection(Projection):
    """One row per agent revision, with what changed against the revision before it."""

    name = REVISIONS
    event_types = types.CONTENT_EVENTS

    def apply(self, events: list[StoredEvent], *, generation: int) -> None:
        # Revisions run 1..N per agent, so the row before an agent's first event in the batch
        # is revision - 1: all of them in one query, with only what the comparison needs. A
        # batch of many events (a catch-up, a rebuild) goes in by COPY, which has no ON
        # CONFLICT: the same query then also finds the batch's rows already there (revisions
        # first..last), which are skipped. A writer's own event or two go in as INSERTs.
        bulk = len(events) >= BULK_ROWS
        first: dict[uuid.UUID, int] = {}
        last: dict[uuid.UUID, int] = {}
        for event in events:
            first.setdefault(event.stream_id, event.data["revision"])
            last[event.stream_id] = event.data["revision"]
        previous: dict[uuid.UUID, AgentRevision | None] = dict.fromkeys(first)
        present: dict[tuple[uuid.UUID, int], AgentRevision] = {}
        ranges = [
            (agent_id, revision - 1, last[agent_id] if bulk else revision - 1)
            for agent_id, revision in first.items()
            if bulk or revision > 1
        ]
        if ranges:
            agent_id_field = AgentRevision._meta.get_field("agent_id")
            quote = connection.ops.quote_name
            for row in AgentRevision.objects.raw(
                "SELECT id, agent_id, revision, name, frontmatter, content, body_start,"  # noqa: S608 - no input in it
                " line_origins, key_origins"
                f" FROM {quote(AgentRevision._meta.db_table)} WHERE generation = %s AND ("
                + " OR ".join(["(agent_id = %s AND revision BETWEEN %s AND %s)"] * len(ranges))
                + ")",
                [
                    generation,
                    *(
                        value
                        for agent_id, low, high in ranges
                        for value in (agent_id_field.get_db_prep_value(agent_id, connection), low, high)
                    ),
                ],
            ):
                if row.revision == first[row.agent_id] - 1:
                    previous[row.agent_id] = row
                else:
                    present[(row.agent_id, row.revision)] = row
        new_rows: list[AgentRevision] = []
        for event in events:
            revision = event.data["revision"]
            applied = present.get((event.stream_id, revision))
            if applied is not None:  # from the same immutable event: the next revision builds on it
                previous[event.stream_id] = applied
                continue
            prior = previous[event.stream_id]
            fields = event_fields(event)
            name = fields.pop("name") or (prior.name if prior else "")
            row_body = event.data["content"][fields["body_start"] :]
            opcodes = None
            if prior is None:
                keys, (added, removed) = sorted(fields["frontmatter"]), (len(body_lines(row_body)), 0)
            else:
                keys = changed_keys(prior.frontmatter, fields["frontmatter"])
                # Lines added and removed as the diff's hunks count them: the same line matching,
                # done once for the counts and the blame origins below.
                opcodes = line_opcodes(body_lines(prior.body), body_lines(row_body))
                added, removed = opcode_changes(opcodes)
            # The whole file's counts too (API.md; the admin's history): a change to the
            # frontmatter alone shows there, not as "+0 -0".
            head = body_lines(event.data["content"][: fields["body_start"]])
            prior_head = body_lines(prior.content[: prior.body_start]) if prior else []
            file_added, file_removed = file_changes(
                old_head=prior_head, new_head=head, body_changes=(added, removed)
            )
            # Each line's and key's origin, carried from the revision before: blame then reads
            # one row, whatever the length of the history (agents_app.blame).
            line_origins, key_origins = revision_origins(
                revision=revision,
                frontmatter=fields["frontmatter"],
                body=row_body,
                previous=None
                if prior is None
                # Never null: the projection writes both, migration 0005 filled older rows.
                else (
                    prior.frontmatter,
                    prior.body,
                    cast(list[int], prior.line_origins),
                    cast(dict[str, int], prior.key_origins),
                ),
                opcodes=opcodes,
            )
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
                file_lines_added=file_added,
                file_lines_removed=file_removed,
                line_origins=line_origins,
                key_origins=key_origins,
                stream_version=event.stream_version,
                position=event.position,
                **fields,
            )
            new_rows.append(row)
            previous[event.stream_id] = row
        if bulk:
            rows_copy(new_rows)
        else:  # ignore_conflicts: a row already there came from the same immutable event
            rows_insert(new_rows, ignore_conflicts=True)

    def reset(self, *, generation: int) -> None:
        AgentRevision.objects.filter(generation=generation).delete()

    def rows(self, *, generation: int) -> Iterator[tuple[Any, dict[str, Any]]]:
        return _rows_by_key(AgentRevision.objects.filter(generation=generation), ("agent_id", "revision"))
