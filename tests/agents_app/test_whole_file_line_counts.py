"""The history's line counts cover the whole file (frontmatter and body), with the body's beside
them: a change to the frontmatter alone no longer reads "+0 -0"."""

import importlib

import pytest
from django.apps import apps
from django.urls import reverse

from agents_app.models import AgentRevision
from agents_app.selectors import revision_list
from agents_app.services import ChangeContext, agent_create, agent_revise
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db

CONTEXT = ChangeContext(actor="erin", source="cli", reason="r")


@pytest.fixture
def revised(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return _revised()


def _revised():
    made = agent_create(content=agent_text("counted", body="One.\nTwo.\n"), context=CONTEXT)
    # revision 2: the frontmatter alone (a tools line added); revision 3: one body line changed
    agent_revise(
        agent_id=made.agent_id,
        content=agent_text("counted", body="One.\nTwo.\n", extra="tools: Read\n"),
        context=CONTEXT,
    )
    agent_revise(
        agent_id=made.agent_id,
        content=agent_text("counted", body="One.\nThree.\n", extra="tools: Read\n"),
        context=CONTEXT,
    )
    return made.agent_id


def counts(agent_id):
    return [
        (row.file_lines_added, row.file_lines_removed, row.lines_added, row.lines_removed)
        for row in revision_list(agent_id=agent_id)
    ]


def test_a_frontmatter_only_change_counts_its_lines_in_the_whole_file(revised):
    first, frontmatter_only, body_only = counts(revised)

    head = len(agent_text("counted", body="").split("\n")) - 1  # the frontmatter block's lines
    assert first == (head + 2, 0, 2, 0)
    assert frontmatter_only == (1, 0, 0, 0)
    assert body_only == (1, 1, 1, 1)


def test_the_api_and_the_admin_history_show_both_counts(revised, client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser(username="root", email=None, password=None))

    rows = client.get("/api/v1/agents/counted/revisions/").json()["results"]
    history = client.get(reverse("admin:agents_app_agentcurrent_history", args=[revised])).content.decode()

    assert [(row["file_lines_added"], row["lines_added"]) for row in rows][1] == (1, 0)
    assert "lines: file <small>(body)</small>" in history
    minus = "\u2212"
    shown = f'<span class="agent-lines-added">+1</span> <span class="agent-lines-removed">{minus}0</span>\n'
    assert shown in history


def test_the_migration_fills_existing_rows_as_the_projection_computes_them(revised):
    expected = counts(revised)
    AgentRevision.objects.update(file_lines_added=0, file_lines_removed=0)
    migration = importlib.import_module("agents_app.migrations.0010_whole_file_line_counts")

    migration.fill_file_counts(apps, None)

    assert counts(revised) == expected
