"""agent_patch (issue 13, defect 1): the patch is applied to the stream's newest content, read
under the append lock, so a revision that commits while the patch waits for the lock survives."""

import threading

import pytest
from django.db import connection, transaction

from agents_app.exceptions import AgentArchived, DocumentInvalid
from agents_app.services import ChangeContext, agent_archive, agent_create, agent_patch, agent_revise
from events.models import Event
from tests.conftest import agent_text

OTHER = ChangeContext(actor="other", source="api", reason="theirs")
PATCHER = ChangeContext(actor="patcher", source="api", reason="mine")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_patch_waiting_for_the_lock_applies_to_the_revision_committed_meanwhile(unique_name):
    agent = agent_create(content=agent_text(unique_name), context=OTHER)
    appended, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def revise_and_hold_the_lock() -> None:
        try:
            with transaction.atomic():  # the append lock is held until this commits
                agent_revise(
                    agent_id=agent.agent_id,
                    content=agent_text(unique_name, description="Their description"),
                    context=OTHER,
                )
                appended.set()
                release.wait(30)
        finally:
            connection.close()

    def patch() -> None:
        try:
            outcome["change"] = agent_patch(
                agent_id=agent.agent_id, body="My body.\n", context=PATCHER, expected_version=None
            )
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connection.close()
            outcome["done"] = True

    holder = threading.Thread(target=revise_and_hold_the_lock)
    holder.start()
    assert appended.wait(30)
    patcher = threading.Thread(target=patch)
    patcher.start()
    patcher.join(0.5)
    blocked = patcher.is_alive()  # waiting for the lock the revision holds, not reading before it
    release.set()
    holder.join(30)
    patcher.join(30)

    assert blocked and "error" not in outcome, outcome
    contents = [
        event.data["content"] for event in Event.objects.filter(stream_id=agent.agent_id).order_by("position")
    ]
    assert contents[-1] == agent_text(unique_name, description="Their description", body="My body.\n")
    assert len(contents) == 3


def test_a_patch_stores_nothing_when_it_changes_nothing_and_refuses_an_archived_agent(db, unique_name):
    agent = agent_create(content=agent_text(unique_name, extra="model: opus\n"), context=OTHER)

    same = agent_patch(agent_id=agent.agent_id, frontmatter={"model": "opus"}, context=PATCHER)
    with pytest.raises(DocumentInvalid):
        agent_patch(agent_id=agent.agent_id, frontmatter={"name": None}, context=PATCHER)
    agent_archive(agent_id=agent.agent_id, context=OTHER)
    with pytest.raises(AgentArchived):
        agent_patch(agent_id=agent.agent_id, body="x\n", context=PATCHER)

    assert same.changed is False
    assert [event.type for event in Event.objects.order_by("position")] == ["agent.created", "agent.archived"]
