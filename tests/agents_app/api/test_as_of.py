""" "As of time T" is one rule: the REST list `?at=` and `export_agents --at` give the same agents.

Business time (`occurred_at`, e.g. a git commit date) need not grow with the stream: a
restore can carry an earlier date than the archive before it. The rule is the newest by
business time, ties broken by stream order, as for revisions.
"""

import datetime as dt
import io
from pathlib import Path

import pytest
from django.core.management import call_command

from agents_app.services import ChangeContext, agent_archive, agent_create, agent_restore
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"
DAY = dt.timedelta(days=1)
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def at(days: float) -> dt.datetime:
    return START + days * DAY


def context(days: float) -> ChangeContext:
    return ChangeContext(actor="git:ann", source="git", reason="replay", occurred_at=at(days))


def listed_at(api, days: float) -> set[str]:
    response = api.get(f"{AGENTS}?at={at(days).isoformat().replace('+', '%2B')}")
    assert response.status_code == 200, response.content
    return {row["name"] for row in response.json()["results"]}


def exported_at(directory: Path, days: float) -> set[str]:
    call_command("export_agents", str(directory), "--at", at(days).isoformat(), stdout=io.StringIO())
    return {path.stem for path in directory.glob("*.md")}


@pytest.fixture
def histories(django_capture_on_commit_callbacks):
    """`steady` archived on day 2, restored on day 4; `dated` archived on day 6 by a change
    stored before its restore dated day 3 (commit dates out of stream order)."""
    with django_capture_on_commit_callbacks(execute=True):
        steady = agent_create(content=agent_text("steady"), context=context(0)).agent_id
        dated = agent_create(content=agent_text("dated"), context=context(0)).agent_id
    for service, agent_id, days in [
        (agent_archive, steady, 2),
        (agent_restore, steady, 4),
        (agent_archive, dated, 6),
        (agent_restore, dated, 3),
    ]:
        with django_capture_on_commit_callbacks(execute=True):
            service(agent_id=agent_id, context=context(days))


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (1, {"steady", "dated"}),
        (2.5, {"dated"}),  # steady archived on day 2
        (5, {"steady", "dated"}),  # steady restored on day 4; dated's restore (day 3) is its newest by then
        (7, {"steady"}),  # dated's archive (day 6) is newer by date than its restore (day 3)
    ],
)
def test_listing_and_export_at_an_instant_agree_on_agents_archived_and_restored_around_it(
    editor_api, histories, tmp_path, days, expected
):
    assert listed_at(editor_api, days) == expected
    assert exported_at(tmp_path / "export", days) == expected
