"""Reads of agent state: always from the live generation of the projections, never the event log."""

import uuid

from django.db.models import QuerySet, Subquery

from agents_app.exceptions import AgentNotFound
from agents_app.models import AgentCurrent, AgentRevision
from agents_app.projections import CURRENT, REVISIONS
from events.models import Checkpoint


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
