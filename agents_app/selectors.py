"""Reads of agent state: always from the live generation of the projections, never the event log."""

import datetime as dt
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery

from agents_app import event_types as agent_event_types
from agents_app.blame import attribution, blame_of
from agents_app.exceptions import AgentNotFound, InvalidReference
from agents_app.labels import LABEL_PATTERN
from agents_app.models import AgentCurrent, AgentRevision
from agents_app.projections import CURRENT, REVISIONS
from agents_app.provenance import provenance_from_metadata
from events.models import Checkpoint, Event
from events.rows import rows_from_cursor
from events.selectors import stream_headers, stream_of_types, stream_page
from events.timefmt import iso_from_json
from events.types import StoredEvent

# "Current at time T" is the newest by business time (`occurred_at`, e.g. a git commit date),
# ties broken by revision: commit dates need not grow with the stream. Used by revision_at
# (one agent) and registry_at (all of them); archive state follows the same rule.
AS_OF_ORDER = ("-occurred_at", "-revision")


def _live(projection: str) -> Subquery:
    return Subquery(Checkpoint.objects.filter(projection=projection, is_live=True).values("generation")[:1])


def agents_current() -> QuerySet[AgentCurrent]:
    """Every agent (active and archived) in the live current view."""
    return AgentCurrent.objects.filter(generation=_live(CURRENT))


def agents_current_dated() -> QuerySet[AgentCurrent]:
    """agents_current() with `revised_at` and `revised_recorded_at`: when the agent's current
    revision was made (occurred_at, business time: a git commit's landing) and stored.

    The current view's `updated_at` is when its last event (a label move too) was stored;
    people reading "when" want the revision's time. A correlated lookup per row in the
    revisions view's unique (generation, agent_id, revision) index: a page of the list is
    50 index probes.
    """
    revision = agent_revisions().filter(agent_id=OuterRef("agent_id"), revision=OuterRef("revision"))
    return agents_current().annotate(
        revised_at=Subquery(revision.values("occurred_at")[:1]),
        revised_recorded_at=Subquery(revision.values("recorded_at")[:1]),
    )


def agent_stream_labels(stream_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    """(name, admin page) of the agents among `stream_ids`, in one query: the event log's
    labeller (events.labelling), called with a page of events' streams."""
    from django.urls import reverse

    rows = agents_current().filter(agent_id__in=list(stream_ids)).values_list("agent_id", "name")
    return {
        agent_id: (name, reverse("admin:agents_app_agentcurrent_change", args=[agent_id]))
        for agent_id, name in rows
    }


def agent_revisions() -> QuerySet[AgentRevision]:
    """Every revision row in the live revisions view."""
    return AgentRevision.objects.filter(generation=_live(REVISIONS))


# The reads behind every request about an agent, as whole statements written once: the ORM
# took several times longer to build them than the database took to answer. Each reads the
# live generation of its view (the one the projection's live checkpoint names).
_LIVE_GENERATION = "SELECT generation FROM {checkpoints} WHERE projection = %s AND is_live"
_AGENT_BY_ID = "SELECT * FROM {table} WHERE generation = ({live}) AND agent_id = %s LIMIT 1"
# "active" sorts before "archived": the active agent of a name before an archived namesake.
_AGENT_BY_NAME = (
    "SELECT * FROM {table} WHERE generation = ({live}) AND name = %s ORDER BY status, updated_at DESC LIMIT 1"
)
_REVISION = "SELECT * FROM {table} WHERE generation = ({live}) AND agent_id = %s AND revision = %s"
# Two exact-key reads, not `revision IN (%s, %s)`: without statistics PostgreSQL planned the IN
# list as a filter over the agent's whole history (tests/agents_app/test_revision_plans.py).
_REVISION_PAIR = f"{_REVISION} UNION ALL {_REVISION}"


def _statement(template: str, model: type[AgentCurrent] | type[AgentRevision]) -> str:
    quote = connection.ops.quote_name
    live = _LIVE_GENERATION.format(checkpoints=quote(Checkpoint._meta.db_table))
    return template.format(table=quote(model._meta.db_table), live=live)


AGENT_BY_ID = _statement(_AGENT_BY_ID, AgentCurrent)
AGENT_BY_NAME = _statement(_AGENT_BY_NAME, AgentCurrent)
REVISION = _statement(_REVISION, AgentRevision)
REVISION_PAIR = _statement(_REVISION_PAIR, AgentRevision)
# Blame's attribution of the revisions a document's lines name: on PostgreSQL one exact
# (generation, agent, revision) probe of the unique key per named revision, in one statement.
# `revision IN (...)` let the planner, on rows without statistics, scan the agent's whole
# history through the key's prefix and filter (5.3 ms for 6 revisions of 10,000, issue 13);
# a LATERAL exact-key lookup has no other plan. Its LIMIT 1 (the key is unique) keeps
# PostgreSQL from flattening it into a join, which it then also planned as a scan of the
# agent's history. SQLite plans the IN list by the key.
# A blame names up to one revision per line (W5: 41 at revision 10,000 against 9 at 10), so
# the cost per named revision is what makes a deep blame slower than a shallow one. Formatting
# the instants with to_char on the server cost about 7 us per revision, Django's timestamptz
# loader about as much on the client: the statement answers one JSON array whose instants
# PostgreSQL writes in ISO 8601 whatever the session's DateStyle, and events.timefmt.
# iso_from_json gives them the API's form. About 4 us per named revision instead of 10
# (probe of the W5 database, issue 13).
ATTRIBUTIONS = _statement(
    "SELECT json_agg(json_build_array(named.revision, actor, occurred_at AT TIME ZONE 'UTC',"
    " recorded_at AT TIME ZONE 'UTC', coalesce(reason, '')))"
    " FROM unnest(%s::integer[]) AS wanted(revision) CROSS JOIN LATERAL ("
    "SELECT revision, actor, occurred_at, recorded_at, reason FROM {table}"
    " WHERE generation = ({live}) AND agent_id = %s AND revision = wanted.revision LIMIT 1) AS named",
    AgentRevision,
)


def _uuid(value: uuid.UUID) -> object:
    return AgentCurrent._meta.get_field("agent_id").get_db_prep_value(value, connection)


def agent_get(*, name: str | None = None, agent_id: uuid.UUID | None = None) -> AgentCurrent:
    """One agent by id, or by name (the active one if an archived agent had the same name)."""
    if agent_id is not None:
        agent = next(iter(AgentCurrent.objects.raw(AGENT_BY_ID, [CURRENT, _uuid(agent_id)])), None)
    elif name is not None:
        agent = next(iter(AgentCurrent.objects.raw(AGENT_BY_NAME, [CURRENT, name])), None)
    else:
        raise ValueError("agent_get needs a name or an agent_id")
    if agent is None:
        raise AgentNotFound(
            f"no agent named {name!r}" if agent_id is None else f"no agent with id {agent_id}"
        )
    return agent


def revision_get(*, agent_id: uuid.UUID, revision: int) -> AgentRevision:
    """One revision: a single indexed row whatever the length of the history."""
    row = next(iter(AgentRevision.objects.raw(REVISION, [REVISIONS, _uuid(agent_id), revision])), None)
    if row is None:
        raise AgentNotFound(f"agent {agent_id} has no revision {revision}")
    return row


def revision_locate(*, agent_id: uuid.UUID, revision: int) -> tuple[int, int] | None:
    """(revision, stream version) of the newest revision at or below `revision` in the live view.

    Where a revision sits in the agent's stream, for commands that read it from the log: one
    indexed row without its content. Below `revision` when the view has not applied it yet.
    """
    return (
        agent_revisions()
        .filter(agent_id=agent_id, revision__lte=revision)
        .order_by("-revision")
        .values_list("revision", "stream_version")
        .first()
    )


def labels_snapshot(*, agent_id: uuid.UUID) -> tuple[dict[str, int], int] | None:
    """The agent's labels in the live current view and the stream version they reflect."""
    return agents_current().filter(agent_id=agent_id).values_list("labels", "stream_version").first()


def revision_list(*, agent_id: uuid.UUID) -> QuerySet[AgentRevision]:
    """An agent's history, oldest first."""
    return agent_revisions().filter(agent_id=agent_id).order_by("revision")


def revision_at(*, agent_id: uuid.UUID, at: dt.datetime) -> AgentRevision:
    """The revision that was current at an instant (by business time, `occurred_at`)."""
    row = agent_revisions().filter(agent_id=agent_id, occurred_at__lte=at).order_by(*AS_OF_ORDER).first()
    if row is None:
        raise AgentNotFound(f"agent {agent_id} had no revision yet at {at.isoformat()}")
    return row


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 timestamp with a time zone, in UTC; ValueError saying what is wrong."""
    try:
        # A "+" in an unencoded query string arrives as a space: read it back as the offset sign.
        at = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ValueError("is not a timestamp; use e.g. 2026-11-01T12:00:00Z") from None
    if at.tzinfo is None:
        raise ValueError("needs a time zone, e.g. Z or +01:00")
    try:
        # In UTC: PostgreSQL refuses offsets beyond ±15:59 that Python accepts.
        return at.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("is out of range") from None


def parse_ref(ref: str) -> int | str | dt.datetime:
    """A revision reference: a number, `latest`, a label name, or `@<ISO 8601 timestamp>`."""
    ref = ref.strip()
    if ref.startswith("@"):
        try:
            return parse_instant(ref[1:])
        except ValueError as exc:
            raise InvalidReference(ref, str(exc)) from None
    if ref.isdigit() and ref.isascii():
        if len(ref) > 9 or int(ref) < 1:
            raise InvalidReference(ref, "is not a revision number (1 or more)")
        return int(ref)
    if ref == "latest" or LABEL_PATTERN.fullmatch(ref):
        return ref
    raise InvalidReference(ref, "is not a revision number, 'latest', a label or @timestamp")


def _revision_number(*, agent: AgentCurrent, ref: str) -> int:
    """The revision number a reference names for one agent (a query only for a timestamp)."""
    target = parse_ref(ref)
    if isinstance(target, dt.datetime):
        return revision_at(agent_id=agent.agent_id, at=target).revision
    if target == "latest":
        return agent.revision
    if isinstance(target, str):
        if target not in agent.labels:
            raise AgentNotFound(f"agent {agent.name!r} has no label {target!r}")
        return agent.labels[target]
    if target > agent.revision:
        raise AgentNotFound(f"agent {agent.name!r} has no revision {target} (it has 1 to {agent.revision})")
    return target


def revision_resolve(*, agent: AgentCurrent, ref: str) -> AgentRevision:
    """The revision a reference names for one agent."""
    target = parse_ref(ref)
    if isinstance(target, dt.datetime):  # the row that answers the instant is the one wanted
        return revision_at(agent_id=agent.agent_id, at=target)
    return revision_get(agent_id=agent.agent_id, revision=_revision_number(agent=agent, ref=ref))


def revision_provenance(*, agent_id: uuid.UUID, versions: list[int]) -> dict[int, dict[str, Any] | None]:
    """stream version -> the `provenance` of the revision that event stored (API.md, "Import
    provenance"), for a page of revisions, in one query.

    Read from the events' metadata by (stream_id, stream_version), the log's unique index,
    rather than copied into the revisions view: the metadata is the record, a view column
    would need a migration and a rebuild of every installation's view to fill, and a page
    names at most a few hundred events. Callers pass a bounded page (the API's limit, the
    admin history's 500).
    """
    if not versions:
        return {}
    rows = Event.objects.filter(stream_id=agent_id, stream_version__in=versions).values_list(
        "stream_version", "metadata"
    )
    return {version: provenance_from_metadata(metadata) for version, metadata in rows}


# Revisions named per query by blame: well under SQLite's limit of bound parameters.
BLAME_BATCH = 500


def revision_blame(*, agent: AgentCurrent, ref: str) -> dict[str, Any]:
    """The blame of the revision `ref` names (API.md): `revision`, `lines` and `frontmatter`.

    Reads the blamed row, whose origins the revisions projection stored, then only the
    attribution columns of the revisions those origins name: the work depends on the
    blamed document, not on the length of the history before it.
    """
    row = revision_resolve(agent=agent, ref=ref)
    line_origins, key_origins = row.line_origins or [], row.key_origins or {}
    named = sorted({*line_origins[0::2], *key_origins.values()})
    attributions = revision_attributions(agent_id=agent.agent_id, revisions=named)
    return blame_of(
        revision=row.revision,
        frontmatter=row.frontmatter,
        body=row.body,
        content=row.content,
        line_origins=line_origins,
        key_origins=key_origins,
        attributions=attributions,
    )


def revision_attributions(*, agent_id: uuid.UUID, revisions: list[int]) -> dict[int, dict[str, Any]]:
    """Blame's attribution (blame.attribution) of each of `revisions` of one agent, by revision."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            params: list[Any] = [revisions, REVISIONS, _uuid(agent_id)]
            cursor.execute(ATTRIBUTIONS, params)
            (found,) = cursor.fetchone()
        if isinstance(found, str):
            found = json.loads(found)
        return {
            revision: attribution(
                revision=revision,
                actor=actor,
                occurred_at=iso_from_json(occurred_at),
                recorded_at=iso_from_json(recorded_at),
                reason=reason,
            )
            for revision, actor, occurred_at, recorded_at, reason in found or ()
        }
    columns = ("revision", "actor", "occurred_at", "recorded_at", "reason")
    return {
        values["revision"]: attribution(**values)
        for start in range(0, len(revisions), BLAME_BATCH)
        for values in agent_revisions()
        .filter(agent_id=agent_id, revision__in=revisions[start : start + BLAME_BATCH])
        .values(*columns)
    }


def _revisions_two(*, agent_id: uuid.UUID, first: int, second: int) -> dict[int, AgentRevision]:
    """Two revisions of one agent by their keys, in one statement: revision -> row (those found)."""
    key = _uuid(agent_id)
    rows = AgentRevision.objects.raw(REVISION_PAIR, [REVISIONS, key, first, REVISIONS, key, second])
    return {row.revision: row for row in rows}


def revision_pair(
    *, agent: AgentCurrent, from_ref: str | None, to_ref: str | None
) -> tuple[AgentRevision, AgentRevision]:
    """The two revisions a diff compares, read in one query: `to_ref` (default latest) and
    `from_ref` (default the revision before it; the first revision compares with itself)."""
    new = _revision_number(agent=agent, ref=to_ref or "latest")
    old = _revision_number(agent=agent, ref=from_ref) if from_ref else max(new - 1, 1)
    rows = _revisions_two(agent_id=agent.agent_id, first=old, second=new)
    for number in (old, new):
        if number not in rows:
            raise AgentNotFound(f"agent {agent.agent_id} has no revision {number}")
    return rows[old], rows[new]


# The diff endpoint's reads in one statement (issue 14, W4): the agent by name (the active one
# before an archived namesake, as AGENT_BY_NAME), the numbers its two references name, and
# both revisions by their exact keys (LATERAL with LIMIT 1, as ATTRIBUTIONS), with only the
# columns a diff uses. agent_get and revision_pair took two statements and Django's raw-model
# loading of every column of three rows: 1.36 ms against 0.48 ms (probe of the W4 database).
# PostgreSQL only; it answers the successful case, and anything else (no such agent, a
# timestamp reference, a label or revision the agent does not have) goes the general way,
# which says why.
# In the model's field order, as rows_from_cursor needs for a subset of the columns.
_DIFF_FIELDS = [
    field
    for field in AgentRevision._meta.concrete_fields
    if field.column in {
        "id", "generation", "agent_id", "name", "revision", "content", "sha256", "actor", "recorded_at",
        "frontmatter", "body_start", "tools", "dialect",
    }
]  # fmt: skip
DIFF_COLUMNS = tuple(field.column for field in _DIFF_FIELDS)
# A side: (number, label, latest). The number or the label when given; else the agent's latest
# revision for `to` and for `from=latest`, and the revision before `to` for a missing `from`.
_SIDE = (
    "CASE WHEN %s::integer IS NOT NULL THEN %s::integer"
    " WHEN %s::text IS NOT NULL THEN (labels ->> %s::text)::integer"
    " WHEN %s::boolean THEN latest ELSE {otherwise} END"
)


def _diff_statement() -> str:
    quote = connection.ops.quote_name
    live = _LIVE_GENERATION.format(checkpoints=quote(Checkpoint._meta.db_table))
    columns = ", ".join(f"named.{quote(column)}" for column in DIFF_COLUMNS)
    return (
        "WITH agent AS (SELECT agent_id, revision AS latest, labels"  # noqa: S608 - no input in it
        f" FROM {quote(AgentCurrent._meta.db_table)} WHERE generation = ({live}) AND name = %s"
        " ORDER BY status, updated_at DESC LIMIT 1),"
        f" newest AS (SELECT agent.*, {_SIDE.format(otherwise='latest')} AS new FROM agent),"
        f" pair AS (SELECT newest.*, {_SIDE.format(otherwise='greatest(new - 1, 1)')} AS old FROM newest)"
        f" SELECT pair.latest, {columns} FROM pair"
        " CROSS JOIN unnest(ARRAY[pair.old, pair.new]) WITH ORDINALITY AS side(revision, n)"
        f" LEFT JOIN LATERAL (SELECT * FROM {quote(AgentRevision._meta.db_table)}"
        f" WHERE generation = ({live}) AND agent_id = pair.agent_id AND revision = side.revision LIMIT 1)"
        " AS named ON true ORDER BY side.n"
    )


DIFF_PAIR = _diff_statement()


def _side_params(ref: str | None) -> list[Any] | None:
    """The five parameters of _SIDE for a reference; None for a timestamp (not answered here).
    No reference or an empty one is the default, as revision_pair takes it."""
    target = parse_ref(ref) if ref else None
    if isinstance(target, dt.datetime):
        return None
    number = target if isinstance(target, int) else None
    label = target if isinstance(target, str) and target != "latest" else None
    return [number, number, label, label, target == "latest"]


def revision_pair_by_name(
    *, name: str, from_ref: str | None, to_ref: str | None
) -> tuple[AgentRevision, AgentRevision] | None:
    """revision_pair of the agent `name` names (as agent_get), in one statement; None when the
    statement cannot answer and the caller should take agent_get and revision_pair instead.

    The rows hold DIFF_COLUMNS only (reading another field would load it with a query).
    """
    sides = (_side_params(from_ref), _side_params(to_ref or "latest"))
    if connection.vendor != "postgresql" or sides[0] is None or sides[1] is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(DIFF_PAIR, [CURRENT, name, *sides[1], *sides[0], REVISIONS])
        rows = rows_from_cursor(AgentRevision, cursor)
    # The agent's latest revision comes as the attribute `latest` (the statement's first column).
    if len(rows) != 2 or any(row.id is None or row.revision > row.latest for row in rows):  # type: ignore[attr-defined]
        return None
    return rows[0], rows[1]


# The columns the lists return: never `content`, `body` or `frontmatter` (up to 256 KiB each,
# for up to 1,000 rows a page).
LIST_COLUMNS = (
    "id", "agent_id", "name", "revision", "status", "description", "model", "tools", "labels",
    "sha256", "updated_by", "updated_at",
)  # fmt: skip
LIST_AT_COLUMNS = (
    "id", "agent_id", "name", "revision", "description", "model", "tools", "sha256", "actor",
    "occurred_at",
)  # fmt: skip

ListCursor = tuple[str, uuid.UUID]


def _after(rows: QuerySet, after: ListCursor | None) -> QuerySet:
    """Keyset pagination on (name, agent_id), the order of both lists: names repeat (an archived
    agent and the active one holding its name, or two agents that had one name at different
    times), so a cursor of the name alone skipped rows; the agent id, unique within a list and
    stable across rebuilds, breaks the tie."""
    if after is None:
        return rows
    name, agent_id = after
    return rows.filter(Q(name__gt=name) | Q(name=name, agent_id__gt=agent_id))


def agent_list(
    *,
    status: str = "active",
    q: str = "",
    model: str = "",
    tool: str = "",
    can: str = "",
    label: str = "",
    after: ListCursor | None = None,
) -> QuerySet[AgentCurrent]:
    """The current view filtered: `status` is active, archived or all; `tool` matches declared tools,
    `can` effectively granted ones.

    Rows carry only LIST_COLUMNS, by (name, agent_id), after the `after` cursor."""
    rows = agents_current()
    if status != "all":
        rows = rows.filter(status=status)
    if label:
        rows = rows.filter(labels__has_key=label)
    rows = _after(_filtered(rows, q=q, model=model, tool=tool, can=can), after)
    return rows.only(*LIST_COLUMNS).order_by("name", "agent_id")


@dataclass(frozen=True)
class RegistryAt:
    """The registry as it was at an instant (business time): the one answer to "as of time T".

    `rows`: per agent that existed then, the revision current then (archived ones included),
    by name; `archived`: the agents that were archived then. The REST list `?at=`, export
    `--at` and every other "as of" read take it from here.
    """

    at: dt.datetime
    rows: QuerySet[AgentRevision]
    archived: frozenset[uuid.UUID]

    def active(self) -> QuerySet[AgentRevision]:
        """The agents that were active then."""
        return self.rows.exclude(agent_id__in=self.archived)


def registry_at(
    *, at: dt.datetime, q: str = "", model: str = "", tool: str = "", can: str = ""
) -> RegistryAt:
    """The registry as it was at `at`: each agent's revision current then, and which were archived."""
    # Revisions and archive state both by AS_OF_ORDER: by business time, then stream order.
    revisions = agent_revisions().filter(occurred_at__lte=at)
    latest = revisions.filter(agent_id=OuterRef("agent_id")).order_by(*AS_OF_ORDER)
    rows = revisions.filter(revision=Subquery(latest.values("revision")[:1]))
    archived = frozenset(
        stream_id
        for stream_id, event_type in _last_status_events(at)
        if event_type == agent_event_types.ARCHIVED
    )
    return RegistryAt(
        at=at,
        rows=_filtered(rows, q=q, model=model, tool=tool, can=can).order_by("name", "id"),
        archived=archived,
    )


def agent_list_at(
    *,
    at: dt.datetime,
    q: str = "",
    model: str = "",
    tool: str = "",
    can: str = "",
    after: ListCursor | None = None,
) -> QuerySet[AgentRevision]:
    """The agents that were active at an instant, each at the revision current then (REST `?at=`).

    Rows carry only LIST_AT_COLUMNS, by (name, agent_id), after the `after` cursor."""
    rows = _after(registry_at(at=at, q=q, model=model, tool=tool, can=can).active(), after)
    return rows.only(*LIST_AT_COLUMNS).order_by("name", "agent_id")


def _last_status_events(at: dt.datetime) -> list[tuple[uuid.UUID, str]]:
    """Per stream, the type of its newest archive/restore event by business time up to `at`."""
    # Archive state is not part of the revisions view: read it from the log, by type through
    # its index (archives and restores are few). Business time lives in the metadata, so the
    # events are compared here rather than in SQL.
    newest: dict[uuid.UUID, tuple[dt.datetime, int, str]] = {}
    rows = Event.objects.filter(type__in=(agent_event_types.ARCHIVED, agent_event_types.RESTORED))
    for stream_id, version, event_type, metadata, recorded_at in rows.values_list(
        "stream_id", "stream_version", "type", "metadata", "recorded_at"
    ).iterator():
        occurred = metadata.get("occurred_at") if isinstance(metadata, dict) else None
        when = dt.datetime.fromisoformat(occurred) if occurred else recorded_at
        if when <= at and (stream_id not in newest or newest[stream_id][:2] < (when, version)):
            newest[stream_id] = (when, version, event_type)
    return [(stream_id, event_type) for stream_id, (_, _, event_type) in newest.items()]


def agents_that_can(rows: QuerySet, *, tool: str) -> QuerySet:
    """The rows (of either view) whose effective permissions grant `tool` (REST `?can=`, admin filter)."""
    return _filtered(rows, q="", model="", tool="", can=tool)


def _filtered(rows: QuerySet, *, q: str, model: str, tool: str, can: str = "") -> QuerySet:
    if q:
        rows = rows.filter(Q(name__icontains=q) | Q(description__icontains=q))
    if model:
        rows = rows.filter(model=model)
    if tool:
        # tools is a JSON list; its text form contains the JSON-quoted name on SQLite and PostgreSQL
        # alike (jsonb `?` / `contains` are PostgreSQL-only).
        rows = rows.filter(tools__icontains=json.dumps(tool))
    if can:
        # Effective, not declared (API.md "Permissions"): no tools key grants every tool, and
        # disallowedTools removes. Both are in `permissions`, computed when the revision was
        # applied. A row whose document is no longer valid has no permissions and never matches.
        quoted = json.dumps(can)
        rows = rows.filter(Q(permissions__tools="all") | Q(permissions__tools__icontains=quoted)).exclude(
            permissions__denied__icontains=quoted
        )
    return rows


def agent_ids_named(*, name: str) -> list[uuid.UUID]:
    """Every agent that has, or ever had, this name (one indexed read of the revisions view)."""
    return list(agent_revisions().filter(name=name).values_list("agent_id", flat=True).distinct())


def agent_find_renamed(*, name: str) -> AgentCurrent | None:
    """The agent that was called `name` before a rename, if no agent has that name now."""
    if agents_current().filter(name=name).exists():
        return None
    agent_id = (
        agent_revisions()
        .filter(name=name)
        .order_by("-recorded_at")
        .values_list("agent_id", flat=True)
        .first()
    )
    if agent_id is None:
        return None
    agent = agents_current().filter(agent_id=agent_id).first()
    return agent if agent is not None and agent.name != name else None


LABEL_PAGE = 50


@dataclass(frozen=True)
class LabelMovesPage:
    """Label moves newest first, and the stream version to pass as `before` for the older ones."""

    moves: list[StoredEvent]
    older_before: int | None


def label_moves_page(
    *, agent_id: uuid.UUID, before: int | None = None, limit: int = LABEL_PAGE
) -> LabelMovesPage:
    """One page of an agent's label moves, newest first, before stream version `before`."""
    # Filtered by type in the database and limited: the content events of a long history
    # (whole documents) are never loaded to find the few label moves among them.
    moves = stream_page(
        stream_id=agent_id,
        types=frozenset({agent_event_types.LABEL_MOVED}),
        before_version=before,
        newest_first=True,
        limit=limit + 1,
    )
    older = moves[limit - 1].stream_version if len(moves) > limit else None
    return LabelMovesPage(moves=moves[:limit], older_before=older)


@dataclass(frozen=True)
class StreamChange:
    """One event of an agent's stream as a listing shows it: who, what, when, why, which revision."""

    stream_version: int
    type: str
    actor: str
    reason: str
    recorded_at: dt.datetime
    revision: int | None


def changes_since(*, agent_id: uuid.UUID, version: int, revision: int, limit: int) -> list[StreamChange]:
    """At most `limit` events after stream version `version` (at revision `revision`), without content."""
    changes = []
    for header in stream_headers(stream_id=agent_id, after_version=version, limit=limit):
        if header.type in agent_event_types.CONTENT_EVENTS:
            # Every content event adds exactly one revision: numbered without reading its data.
            revision += 1
        changes.append(
            StreamChange(
                stream_version=header.stream_version,
                type=header.type,
                actor=header.metadata.get("actor", ""),
                reason=header.metadata.get("reason", ""),
                recorded_at=header.recorded_at,
                revision=revision if header.type in agent_event_types.CONTENT_EVENTS else None,
            )
        )
    return changes


def label_history(*, agent_id: uuid.UUID) -> list[StoredEvent]:
    """Every label move of one agent, oldest first (the history lives in the events)."""
    return stream_of_types(stream_id=agent_id, types=frozenset({agent_event_types.LABEL_MOVED}))


# At most this many revisions are classified per report: the newest in the range.
REPORT_MAX_REVISIONS = 500


def permission_changes_between(
    *, before: dict[str, Any] | str | None, after: dict[str, Any], dialect: str
) -> list[dict[str, Any]]:
    """Every classified permission change from one stored frontmatter to the next (as JSON).

    The one classification (agents_app.dialects), read from the revisions view's stored
    frontmatter: the report, the admin history's badges and the admin's note after a save
    all call it, so they never disagree with the diff.
    """
    from agents_app.dialects import permission_changes

    # A subquery's JSON comes back as text on some backends.
    old = json.loads(before) if isinstance(before, str) else before
    return [change.as_json() for change in permission_changes(old or {}, after, dialect=dialect)]


def revision_history(*, agent_id: uuid.UUID, limit: int) -> list[tuple[AgentRevision, list[dict[str, Any]]]]:
    """The newest `limit` revisions of an agent, newest first, each with its permission changes:
    how it changed the effective permissions of the revision before it (revision 1: none).

    One query of `limit` + 1 rows: revisions are numbered without gaps, so each row's
    predecessor is the next row, and the extra one is the predecessor of the oldest shown.
    """
    rows = list(
        revision_list(agent_id=agent_id)
        .order_by("-revision")
        .defer("content", "line_origins", "key_origins")[: limit + 1]
    )
    return [
        (
            row,
            permission_changes_between(before=before.frontmatter, after=row.frontmatter, dialect=row.dialect)
            if before is not None and before.revision == row.revision - 1
            else [],
        )
        for row, before in zip(rows[:limit], [*rows[1:], None], strict=False)
    ]


@dataclass(frozen=True)
class RevisionNotes:
    """One revision, its document warnings and its permission changes against the revision
    before it: what the admin says after a save and on the revision's page."""

    row: AgentRevision
    warnings: list[dict[str, Any]]
    changes: list[dict[str, Any]]


def revision_notes(*, agent_id: uuid.UUID, revision: int) -> RevisionNotes | None:
    """A revision with its notes, from the revisions view (it and its predecessor in one query);
    None when the view does not have it (not applied yet, or no such revision)."""
    rows = _revisions_two(agent_id=agent_id, first=max(revision - 1, 1), second=revision)
    new = rows.get(revision)
    if new is None:
        return None
    old = rows.get(revision - 1)
    changes = (
        permission_changes_between(before=old.frontmatter, after=new.frontmatter, dialect=new.dialect)
        if old is not None
        else []
    )
    return RevisionNotes(row=new, warnings=list(new.warnings or []), changes=changes)


def permissions_report(*, since: dt.datetime | None, until: dt.datetime | None) -> dict[str, Any]:
    """The registry-wide security view (GET /permissions/report/, API.md "Permissions").

    Who can use each tool, mode and MCP server (active agents, from the stored effective
    permissions); agents whose documents carry warnings; revisions in [since, until] whose
    change widened permissions, with who and why. Each previous revision's frontmatter comes
    in the same statement (a subquery), and at most REPORT_MAX_REVISIONS are classified.

    `agent_ids` (active agent name -> id) and each widened entry's `agent_id` let the admin
    page link the agents; the REST serializer leaves `agent_ids` out.
    """
    tools: dict[str, list[str]] = {}
    every_tool: list[dict[str, Any]] = []
    modes: dict[str, list[str]] = {}
    servers: dict[str, list[str]] = {}
    warned: list[dict[str, Any]] = []
    agent_ids: dict[str, uuid.UUID] = {}
    rows = agents_current().filter(status=AgentCurrent.Status.ACTIVE).order_by("name", "agent_id")
    for name, agent_id, permissions, warnings in rows.values_list(
        "name", "agent_id", "permissions", "warnings"
    ).iterator(2000):
        agent_ids[name] = agent_id
        if permissions:
            if permissions.get("tools") == "all":
                every_tool.append({"agent": name, "denied": permissions.get("denied", [])})
            else:
                for tool in permissions.get("tools", []):
                    tools.setdefault(tool, []).append(name)
            if "mode" in permissions:  # a copilot agent has no permission mode
                modes.setdefault(permissions["mode"], []).append(name)
            for server in permissions.get("mcp_servers", []):
                servers.setdefault(server, []).append(name)
        if warnings:
            warned.append({"agent": name, "warnings": warnings})
    revisions = agent_revisions().filter(revision__gt=1)
    if since is not None:
        revisions = revisions.filter(recorded_at__gte=since)
    if until is not None:
        revisions = revisions.filter(recorded_at__lte=until)
    previous = agent_revisions().filter(agent_id=OuterRef("agent_id"), revision=OuterRef("revision") - 1)
    revisions = revisions.annotate(previous=Subquery(previous.values("frontmatter")[:1])).order_by(
        "-recorded_at", "-id"
    )
    page = list(
        revisions.values(
            "agent_id",
            "name",
            "revision",
            "actor",
            "reason",
            "recorded_at",
            "frontmatter",
            "dialect",
            "previous",
        )[: REPORT_MAX_REVISIONS + 1]
    )
    widened = []
    for row in page[:REPORT_MAX_REVISIONS]:
        changes = [
            change
            for change in permission_changes_between(
                before=row["previous"], after=row["frontmatter"], dialect=row["dialect"]
            )
            if change["kind"] == "widened"
        ]
        if changes:
            widened.append(
                {
                    "agent": row["name"],
                    "agent_id": row["agent_id"],
                    "revision": row["revision"],
                    "actor": row["actor"],
                    "reason": row["reason"],
                    "recorded_at": row["recorded_at"],
                    "changes": changes,
                }
            )
    return {
        "tools": dict(sorted(tools.items())),
        "every_tool": every_tool,
        "modes": dict(sorted(modes.items())),
        "mcp_servers": dict(sorted(servers.items())),
        "warnings": warned,
        "widened": widened,
        "truncated": len(page) > REPORT_MAX_REVISIONS,
        "agent_ids": agent_ids,
    }
