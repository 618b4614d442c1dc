"""Reads of agent state: always from the live generation of the projections, never the event log."""

import datetime as dt
import re
import uuid

from django.db.models import QuerySet, Subquery

from agents_app.exceptions import AgentNotFound, InvalidReference
from agents_app.models import AgentCurrent, AgentRevision
from agents_app.projections import CURRENT, REVISIONS
from events.models import Checkpoint

LABEL_REF = re.compile(r"[a-z][a-z0-9._-]{0,63}")


def _live(projection: str) -> Subquery:
    return Subquery(Checkpoint.objects.filter(projection=projection, is_live=True).values("generation")[:1])


def agents_current() -> QuerySet[AgentCurrent]:
    """Every agent (active and archived) in the live current view."""
    return AgentCurrent.objects.filter(generation=_live(CURRENT))


def agent_revisions() -> QuerySet[AgentRevision]:
    """Every revision row in the live revisions view."""
    return AgentRevision.objects.filter(generation=_live(REVISIONS))


def agent_get(*, name: str | None = None, agent_id: uuid.UUID | None = None) -> AgentCurrent:
    """One agent by id, or by name (the active one if an archived agent had the same name)."""
    rows = agents_current()
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    elif name is not None:
        rows = rows.filter(name=name).order_by("status", "-updated_at")  # "active" sorts first
    else:
        raise ValueError("agent_get needs a name or an agent_id")
    agent = rows.first()
    if agent is None:
        raise AgentNotFound(
            f"no agent named {name!r}" if agent_id is None else f"no agent with id {agent_id}"
        )
    return agent


def revision_get(*, agent_id: uuid.UUID, revision: int) -> AgentRevision:
    """One revision: a single indexed row whatever the length of the history."""
    row = agent_revisions().filter(agent_id=agent_id, revision=revision).first()
    if row is None:
        raise AgentNotFound(f"agent {agent_id} has no revision {revision}")
    return row


def revision_list(*, agent_id: uuid.UUID) -> QuerySet[AgentRevision]:
    """An agent's history, oldest first."""
    return agent_revisions().filter(agent_id=agent_id).order_by("revision")


def revision_at(*, agent_id: uuid.UUID, at: dt.datetime) -> AgentRevision:
    """The revision that was current at an instant (by business time, `occurred_at`)."""
    row = (
        agent_revisions()
        .filter(agent_id=agent_id, occurred_at__lte=at)
        .order_by("-occurred_at", "-revision")
        .first()
    )
    if row is None:
        raise AgentNotFound(f"agent {agent_id} had no revision yet at {at.isoformat()}")
    return row


def parse_ref(ref: str) -> int | str | dt.datetime:
    """A revision reference: a number, `latest`, a label name, or `@<ISO 8601 timestamp>`."""
    ref = ref.strip()
    if ref.startswith("@"):
        try:
            at = dt.datetime.fromisoformat(ref[1:].replace("Z", "+00:00"))
        except ValueError:
            raise InvalidReference(ref, "is not a timestamp; use @2026-11-01T12:00:00Z") from None
        if at.tzinfo is None:
            raise InvalidReference(ref, "needs a time zone, e.g. Z or +01:00")
        return at
    if ref.isdigit() and ref.isascii():
        if len(ref) > 9 or int(ref) < 1:
            raise InvalidReference(ref, "is not a revision number (1 or more)")
        return int(ref)
    if ref == "latest" or LABEL_REF.fullmatch(ref):
        return ref
    raise InvalidReference(ref, "is not a revision number, 'latest', a label or @timestamp")


def revision_resolve(*, agent: AgentCurrent, ref: str) -> AgentRevision:
    """The revision a reference names for one agent."""
    target = parse_ref(ref)
    if isinstance(target, dt.datetime):
        return revision_at(agent_id=agent.agent_id, at=target)
    if target == "latest":
        return revision_get(agent_id=agent.agent_id, revision=agent.revision)
    if isinstance(target, str):
        if target not in agent.labels:
            raise AgentNotFound(f"agent {agent.name!r} has no label {target!r}")
        return revision_get(agent_id=agent.agent_id, revision=agent.labels[target])
    if target > agent.revision:
        raise AgentNotFound(f"agent {agent.name!r} has no revision {target} (it has 1 to {agent.revision})")
    return revision_get(agent_id=agent.agent_id, revision=target)
