"""Commands on agents: each validates, then appends events to the agent's stream.

Every service takes the append lock first thing in its transaction (events.services.
append_lock, or append_lock_and_head, which also reads the stream's head and the name claim
under it in the same round trip), so the state it reads from the stream cannot change before
it appends, and name reservations are decided in that same serial order.
"""

import contextlib
import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from django.db import connection, transaction

from agents_app import event_types as types
from agents_app import selectors
from agents_app.dialects import DEFAULT_DIALECT, dialect_problem
from agents_app.document import AgentDocument, agent_name, name_problem, parse_agent_document
from agents_app.exceptions import (
    AgentArchived,
    AgentNotFound,
    DocumentInvalid,
    InvalidCommand,
    InvalidField,
    NameTaken,
    StatusUnchanged,
)
from agents_app.labels import LABEL_PATTERN, RESERVED_LABELS
from agents_app.models import AgentNameClaim
from agents_app.promotions.exceptions import LabelProtected
from agents_app.promotions.selectors import label_is_protected
from agents_app.revision_data import event_dialect, event_name, revision_data
from events.exceptions import ConcurrencyConflict
from events.selectors import (
    event_by_id,
    stream_event_at,
    stream_last,
    stream_page,
    stream_version,
)
from events.services import LockedRead, append_lock, append_lock_and_head, event_append
from events.types import NewEvent, StoredEvent

SOURCES = frozenset({"admin", "api", "cli", "import", "git", "system"})
MAX_REASON = 2000
MAX_ACTOR = 200

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ChangeContext:
    """Who makes a change, through what, why, and the ids that tie it to a request."""

    actor: str
    source: str
    reason: str = ""
    occurred_at: dt.datetime | None = None
    request_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    extra: dict[str, str] | None = None

    def metadata(self) -> dict[str, object]:
        if not self.actor or len(self.actor) > MAX_ACTOR:
            raise InvalidCommand(f"actor must be 1 to {MAX_ACTOR} characters")
        if self.source not in SOURCES:
            raise InvalidCommand(f"source must be one of {', '.join(sorted(SOURCES))}; got {self.source!r}")
        if len(self.reason) > MAX_REASON:
            raise InvalidCommand(f"reason is {len(self.reason)} characters; the limit is {MAX_REASON}")
        metadata: dict[str, object] = {"actor": self.actor, "source": self.source, "reason": self.reason}
        if self.occurred_at is not None:
            if self.occurred_at.tzinfo is None:
                raise InvalidCommand("occurred_at must carry a time zone")
            metadata["occurred_at"] = self.occurred_at.astimezone(dt.UTC).isoformat()
        for key in ("request_id", "correlation_id", "causation_id"):
            if (value := getattr(self, key)) is not None:
                metadata[key] = value
        metadata.update(self.extra or {})
        return metadata


@dataclass(frozen=True)
class AgentChange:
    """What a command did: `changed` is False when it stored nothing (e.g. identical content)."""

    agent_id: uuid.UUID
    name: str
    revision: int
    stream_version: int
    changed: bool
    events: list[StoredEvent]

    @property
    def position(self) -> int | None:
        return self.events[-1].position if self.events else None


@dataclass(frozen=True)
class _AgentState:
    agent_id: uuid.UUID
    version: int
    revision: int
    content: str
    name: str
    archived: bool
    dialect: str  # the stream's, fixed when it was created
    # What append_lock() returned: the append joins the transaction holding the lock.
    locked_at: dt.datetime


def _load(agent_id: uuid.UUID) -> _AgentState:
    """Take the append lock and read the write model of one agent from its stream under it."""
    # An active agent holds the claim on its name (written with each create, rename, archive
    # and restore): one indexed row instead of parsing the content and searching the stream
    # for its last archive or restore, which has to pass every revision of a long history.
    # It is read with the lock and the stream's head, in their round trip (issue 14).
    head = append_lock_and_head(stream_id=agent_id, types=types.CONTENT_EVENTS, also=_claim_read(agent_id))
    last_content = head.last
    if last_content is None:
        raise AgentNotFound(f"no agent with id {agent_id}")
    if head.rows:
        name, archived = head.rows[0][0], False
    else:  # archived, or a stream written without the services (a bulk load)
        last_status = stream_last(stream_id=agent_id, types=frozenset({types.ARCHIVED, types.RESTORED}))
        name = event_name(last_content.data)
        archived = last_status is not None and last_status.type == types.ARCHIVED
    return _AgentState(
        agent_id=agent_id,
        version=head.version,
        revision=last_content.data["revision"],
        content=last_content.data["content"],
        name=name,
        archived=archived,
        dialect=event_dialect(last_content.data),
        locked_at=head.locked_at,
    )


def _claim_read(agent_id: uuid.UUID) -> LockedRead:
    """The name an agent holds, if any: one indexed row, read on every write (so as SQL)."""
    key = AgentNameClaim._meta.get_field("agent_id").get_db_prep_value(agent_id, connection)
    table = connection.ops.quote_name(AgentNameClaim._meta.db_table)
    return LockedRead(sql=f"SELECT name FROM {table} WHERE agent_id = %s", params=[key])  # noqa: S608 - no input in it


def _labels(state: _AgentState) -> dict[str, int]:
    """The agent's labels now: the current view's, plus the label moves it has not applied yet."""
    # Reading every label move of the stream would grow with the history; the view holds
    # the labels as of a stream version, and only the moves after it (the view's lag) are
    # read from the log, under the append lock, so nothing can move a label meanwhile.
    labels, version = selectors.labels_snapshot(agent_id=state.agent_id) or ({}, 0)
    labels = dict(labels)
    if version > state.version:  # a view ahead of the log it was built from: trust the log only
        labels, version = {}, 0
    if version == state.version:
        return labels
    moves = stream_page(
        stream_id=state.agent_id,
        types=frozenset({types.LABEL_MOVED}),
        after_version=version,
        limit=state.version - version,
    )
    for move in moves:
        if move.data["revision"] is None:
            labels.pop(move.data["label"], None)
        else:
            labels[move.data["label"]] = move.data["revision"]
    return labels


def _load_active(agent_id: uuid.UUID, expected_version: int | None) -> _AgentState:
    """Take the append lock, read the write model, and refuse a stale version or an archived agent.

    The lock comes first (inside the caller's transaction): what is read here is then the
    stream's newest state, and nothing can be appended between reading it and the append.
    """
    state = _load(agent_id)
    _check_version(state, expected_version)
    if state.archived:
        raise AgentArchived(f"agent {state.name!r} is archived; restore it first")
    return state


def _check_version(state: _AgentState, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != state.version:
        raise ConcurrencyConflict(
            stream_id=state.agent_id, expected_version=expected_version, actual_version=state.version
        )


def _claim(name: str, agent_id: uuid.UUID) -> None:
    # Serialised by the append lock the caller holds, so check-then-insert cannot race; the
    # primary key on `name` would still refuse a second claim if it somehow did.
    holder = AgentNameClaim.objects.filter(name=name).values_list("agent_id", flat=True).first()
    if holder is not None and holder != agent_id:
        raise NameTaken(name)
    if holder is None:
        AgentNameClaim.objects.filter(agent_id=agent_id).delete()
        AgentNameClaim.objects.create(name=name, agent_id=agent_id)


def _claim_new(name: str, agent_id: uuid.UUID) -> None:
    """Claim `name` for an agent whose id was just made (it holds no name yet), or raise NameTaken.

    One INSERT ... ON CONFLICT DO NOTHING RETURNING instead of _claim's read, delete and
    insert (issue 14: three round trips of every create): no row back means the primary key
    on `name` refused it, i.e. another agent holds the name. Under the caller's append lock,
    as _claim.
    """
    claim = AgentNameClaim(name=name, agent_id=agent_id)
    fields = AgentNameClaim._meta.concrete_fields
    values = [field.get_db_prep_save(field.pre_save(claim, True), connection) for field in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(AgentNameClaim._meta.db_table)} ({columns})"  # noqa: S608 - names from the model
            f" VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT DO NOTHING RETURNING {quote('name')}",
            values,
        )
        if cursor.fetchone() is None:
            raise NameTaken(name)


def _new_revision(
    state: _AgentState, document: AgentDocument, event: NewEvent, context: ChangeContext
) -> AgentChange:
    # A document without a name (copilot) is named by its event's data (revision_data).
    name = event_name(event.data, document)
    if name != state.name:
        _claim(name, state.agent_id)
    stored = event_append(
        stream_id=state.agent_id,
        expected_version=state.version,
        events=[event],
        metadata=context.metadata(),
        locked_at=state.locked_at,
    )
    return AgentChange(
        agent_id=state.agent_id,
        name=name,
        revision=event.data["revision"],
        stream_version=stored[-1].stream_version,
        changed=True,
        events=stored,
    )


def _append(state: _AgentState, event: NewEvent, metadata: dict[str, object]) -> AgentChange:
    """Append one event that keeps the revision (archive, restore, label move)."""
    stored = event_append(
        stream_id=state.agent_id,
        expected_version=state.version,
        events=[event],
        metadata=metadata,
        locked_at=state.locked_at,
    )
    return AgentChange(
        agent_id=state.agent_id,
        name=state.name,
        revision=state.revision,
        stream_version=stored[-1].stream_version,
        changed=True,
        events=stored,
    )


def _unchanged(state: _AgentState) -> AgentChange:
    return AgentChange(
        agent_id=state.agent_id,
        name=state.name,
        revision=state.revision,
        stream_version=state.version,
        changed=False,
        events=[],
    )


def agent_create(
    *,
    content: bytes | str,
    context: ChangeContext,
    agent_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    dialect: str = DEFAULT_DIALECT,
    name: str | None = None,
    name_from: str = "the request",
) -> AgentChange:
    """Create an agent from a document of `dialect`; its name must not belong to another active agent.

    `name` is the name given beside the document (a request's, a copilot file's): it must
    agree with the frontmatter's, and names an agent whose document has none (agent_name).
    `name_from` says where it came from, for the error.
    """
    if (problem := dialect_problem(dialect)) is not None:
        raise InvalidField("dialect", problem)
    document = parse_agent_document(content, dialect=dialect)
    name = agent_name(document, given=name, given_as=name_from)
    metadata = context.metadata()
    # An id made here is new: no stream has it and no claim names it, so neither is read for
    # it (two round trips of every create, issue 14). A caller's id is checked under the lock.
    id_given = agent_id is not None
    agent_id = agent_id or uuid.uuid4()
    event = NewEvent(
        type=types.CREATED,
        data=revision_data(document, revision=1, name=name),
        event_id=event_id or uuid.uuid4(),
    )
    with transaction.atomic():
        locked_at = append_lock()
        if event_id is not None and (earlier := event_by_id(event_id=event_id)) is not None:
            if earlier.type != types.CREATED:
                raise InvalidCommand(f"event id {event_id} was already used for a {earlier.type} event")
            # A retry of a create that went through: answer as before, store nothing.
            return AgentChange(
                agent_id=earlier.stream_id,
                name=event_name(earlier.data),
                revision=1,
                stream_version=1,
                changed=False,
                events=[earlier],
            )
        if id_given and stream_version(stream_id=agent_id):
            raise InvalidCommand(f"an agent with id {agent_id} already exists")
        if id_given:
            _claim(name, agent_id)
        else:
            _claim_new(name, agent_id)
        stored = event_append(
            stream_id=agent_id, expected_version=0, events=[event], metadata=metadata, locked_at=locked_at
        )
    return AgentChange(
        agent_id=agent_id, name=name, revision=1, stream_version=1, changed=True, events=stored
    )


def agent_revise(
    *,
    agent_id: uuid.UUID,
    content: bytes | str,
    context: ChangeContext,
    expected_version: int | None = None,
    dialect: str | None = None,
    name_if_unnamed: str | None = None,
) -> AgentChange:
    """Store new content as the next revision; identical content stores nothing; a new name renames.

    The content follows the stream's dialect; `dialect`, when given (an import knows it from
    the file name), must be that one: a file cannot turn an agent into another runtime's.
    A document without a name keeps the agent's, or takes `name_if_unnamed` (a git replay's
    file name: a renamed copilot file renames its agent, as the runtime would).
    """
    if name_if_unnamed is not None and (problem := name_problem(name_if_unnamed)) is not None:
        raise InvalidField("name", f"{problem} (from the file name)")
    # Parsed before the lock (every writer waits on it) by the dialect the caller names, else
    # the default; the stream's own dialect comes with the locked read of its head. Reading it
    # before the lock cost every revise a round trip (issue 14); a stream of another dialect
    # than the guess (a copilot agent revised over REST) is parsed again under the lock, and a
    # document the guess refuses is judged only by its stream's rules.
    guessed = dialect or DEFAULT_DIALECT
    document: AgentDocument | None = None
    with contextlib.suppress(DocumentInvalid):  # judged again below, by the stream's dialect
        document = parse_agent_document(content, dialect=guessed)
    context.metadata()
    with transaction.atomic():
        state = _load_active(agent_id, expected_version)
        if dialect is not None and dialect != state.dialect:
            raise InvalidField("dialect", f"the agent is a {state.dialect} agent; this document is {dialect}")
        if document is None or state.dialect != guessed:
            document = parse_agent_document(content, dialect=state.dialect)
        unnamed_as = name_if_unnamed or state.name
        # The same bytes under another file name (a nameless copilot file renamed) still rename.
        if document.content == state.content and (document.name or unnamed_as) == state.name:
            return _unchanged(state)
        event = NewEvent(
            type=types.REVISED,
            data=revision_data(document, revision=state.revision + 1, name=unnamed_as),
        )
        return _new_revision(state, document, event, context)


def agent_revert(
    *,
    agent_id: uuid.UUID,
    to_revision: int,
    context: ChangeContext,
    expected_version: int | None = None,
) -> AgentChange:
    """Store an earlier revision's content as a new revision (nothing when it is already current)."""
    context.metadata()
    with transaction.atomic():
        state = _load_active(agent_id, expected_version)
        if not 1 <= to_revision <= state.revision:
            raise AgentNotFound(
                f"agent {state.name!r} has no revision {to_revision} (it has 1 to {state.revision})"
            )
        target = _revision_event(state, to_revision)
        if target.data["content"] == state.content:
            return _unchanged(state)
        document = parse_agent_document(target.data["content"], dialect=state.dialect)
        event = NewEvent(
            type=types.REVERTED,
            data=revision_data(
                document, revision=state.revision + 1, name=state.name, reverted_to=to_revision
            ),
        )
        return _new_revision(state, document, event, context)


def _revision_event(state: _AgentState, revision: int) -> StoredEvent:
    """The content event of one revision, read from the log through its unique (stream, version) key.

    Reading the stream's content events until the wanted one held the append lock for as
    long as the history is long (every write waits on it). The revisions view knows where
    each revision sits in the stream; the event found there is checked against the log, so
    a view that is wrong cannot make the command store other content. A view that lags (its
    rows are applied after this revision's event in worker mode) gives the nearest revision
    below, and only the events between it and the wanted one are read: bounded by the lag.
    """
    located = selectors.revision_locate(agent_id=state.agent_id, revision=revision)
    known_revision, known_version = located or (0, 0)
    if known_revision == revision:
        event = stream_event_at(stream_id=state.agent_id, stream_version=known_version)
        if event is not None and event.type in types.CONTENT_EVENTS and event.data["revision"] == revision:
            return event
        # The view disagrees with the log (a projection bug): search the log from its start.
        logger.error(
            "revisions view: agent %s revision %s is not at version %s",
            state.agent_id,
            revision,
            known_version,
        )
        known_revision, known_version = 0, 0
    # Each content event adds exactly one revision: the wanted one is at most this many
    # content events after the one the view knows (from the start if the view was wrong).
    for after_version, count in ((known_version, revision - known_revision), (0, revision)):
        candidates = stream_page(
            stream_id=state.agent_id, types=types.CONTENT_EVENTS, after_version=after_version, limit=count
        )
        found = next((event for event in candidates if event.data["revision"] == revision), None)
        if found is not None:
            return found
    raise AgentNotFound(f"agent {state.name!r} has no revision {revision} in its stream")


def _status_change(
    *, agent_id: uuid.UUID, context: ChangeContext, expected_version: int | None, archive: bool
) -> AgentChange:
    metadata = context.metadata()
    with transaction.atomic():
        state = _load(agent_id)
        _check_version(state, expected_version)
        if state.archived == archive:
            raise StatusUnchanged(f"agent {state.name!r} is already {'archived' if archive else 'active'}")
        if archive:
            AgentNameClaim.objects.filter(agent_id=agent_id).delete()
        else:
            _claim(state.name, agent_id)
        event = NewEvent(type=types.ARCHIVED if archive else types.RESTORED, data={"reason": context.reason})
        return _append(state, event, metadata)


def agent_archive(
    *, agent_id: uuid.UUID, context: ChangeContext, expected_version: int | None = None
) -> AgentChange:
    """Soft-delete an agent: it keeps its history and its name becomes free."""
    return _status_change(agent_id=agent_id, context=context, expected_version=expected_version, archive=True)


def agent_restore(
    *, agent_id: uuid.UUID, context: ChangeContext, expected_version: int | None = None
) -> AgentChange:
    """Undo an archive; fails if another active agent took the name meanwhile."""
    return _status_change(
        agent_id=agent_id, context=context, expected_version=expected_version, archive=False
    )


def agent_label_move(
    *,
    agent_id: uuid.UUID,
    label: str,
    revision: int | None,
    context: ChangeContext,
    expected_version: int | None = None,
) -> AgentChange:
    """Point a label (e.g. `production`) at a revision, or remove it with `revision=None`."""
    if not LABEL_PATTERN.fullmatch(label) or label in RESERVED_LABELS:
        raise InvalidCommand(
            f"label must be lowercase letters, digits, '.', '_' or '-', starting with a letter, at most 64"
            f" characters, and not 'latest'; got {label!r}"
        )
    metadata = context.metadata()
    with transaction.atomic():
        state = _load_active(agent_id, expected_version)
        # Under the lock, so a policy set meanwhile cannot let a move through (promotions).
        if label_is_protected(label):
            raise LabelProtected(
                f"label {label!r} is protected: moving it needs an approved promotion request"
                + ("" if revision is not None else "; to remove it, unprotect it first (its policy)")
            )
        if revision is not None and not 1 <= revision <= state.revision:
            raise AgentNotFound(
                f"agent {state.name!r} has no revision {revision} (it has 1 to {state.revision})"
            )
        current = _labels(state).get(label)
        if current == revision:
            if revision is None:
                raise AgentNotFound(f"agent {state.name!r} has no label {label!r}")
            return _unchanged(state)
        event = NewEvent(type=types.LABEL_MOVED, data={"label": label, "revision": revision})
        return _append(state, event, metadata)


# ----------------------------------------------------------------------------------------------
# PATCH: a merge patch applied to the write model (issue 13, defect 1). Its imports are here,
# not at the top, only to keep this block apart from concurrent edits of the rest of the file.
# ----------------------------------------------------------------------------------------------
from collections.abc import Mapping  # noqa: E402
from typing import Any  # noqa: E402

from agents_app.document_edit import document_patch  # noqa: E402


def agent_patch(
    *,
    agent_id: uuid.UUID,
    frontmatter: Mapping[str, Any] | None = None,
    body: str | None = None,
    context: ChangeContext,
    expected_version: int | None = None,
) -> AgentChange:
    """Change some frontmatter keys (JSON merge patch: None removes a key) and/or the body.

    The patch is applied to the content read from the stream under the append lock, never to
    a view's copy: a view may lag behind the log, and a patch applied to its older content
    would store that content plus the patch, silently undoing the revisions in between (a lost
    update) although the version check against the log passes. Every byte the patch does not
    name is kept (document_edit.document_patch).
    """
    frontmatter = dict(frontmatter or {})
    context.metadata()
    with transaction.atomic():
        # The lock first (_load_active): the content patched below is the stream's newest.
        state = _load_active(agent_id, expected_version)
        content = document_patch(
            state.content,
            set_keys={key: value for key, value in frontmatter.items() if value is not None},
            remove_keys=[key for key, value in frontmatter.items() if value is None],
            body=body,
            dialect=state.dialect,
        )
        document = parse_agent_document(content, dialect=state.dialect)
        if document.content == state.content:
            return _unchanged(state)
        event = NewEvent(
            type=types.REVISED,
            data=revision_data(document, revision=state.revision + 1, name=state.name),
        )
        return _new_revision(state, document, event, context)
