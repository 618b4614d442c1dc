"""The admin's add form picks the dialect (claude-code by default); the agent page shows it."""

import pytest

from agents_app.models import AgentNameClaim
from agents_app.selectors import agent_get
from events.models import Event
from tests.agents_app.test_admin import as_user, people, url  # noqa: F401 - fixtures
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db

NAMELESS = "---\ndescription: Plans a change\ntools: []\n---\nPlan.\n"


def test_the_add_form_offers_the_dialects_with_claude_code_chosen(as_user, people):  # noqa: F811
    page = as_user(people["editor"]).get(url("add")).content.decode()

    assert '<option value="claude-code" selected>claude-code</option>' in page
    assert '<option value="copilot">copilot</option>' in page


def test_adding_a_nameless_copilot_agent_with_the_name_field_creates_it_and_its_page_shows_the_dialect(
    as_user,  # noqa: F811
    people,  # noqa: F811
):
    browser = as_user(people["editor"])

    response = browser.post(
        url("add"), {"content": NAMELESS, "reason": "new", "dialect": "copilot", "name": "planner"}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    agent = agent_get(name="planner")
    assert (agent.dialect, agent.permissions["tools"]) == ("copilot", [])
    page = browser.get(url("change", agent.agent_id)).content.decode()
    assert 'dialect <span class="agent-dialect">copilot</span>' in page
    # The permissions panel shows copilot's fields, not Claude Code's mode and subagents.
    assert "<th>model may pick it</th><td>yes</td>" in page and "<th>target</th><td>all</td>" in page
    assert "<th>permission mode</th>" not in page


def test_an_agent_added_without_a_dialect_is_claude_code(as_user, people):  # noqa: F811
    browser = as_user(people["editor"])

    browser.post(url("add"), {"content": agent_text("reviewer"), "reason": "r"})

    assert agent_get(name="reviewer").dialect == "claude-code"
    assert "dialect" not in Event.objects.get().data


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"dialect": "copilot"}, "name", "without a name key"),
        ({"dialect": "copilot", "name": "Bad Name"}, "name", "must be lowercase"),
        ({"dialect": "opencode", "name": "planner"}, "dialect", "Select a valid choice"),
    ],
)
def test_a_bad_dialect_or_name_shows_next_to_its_field_and_stores_nothing(
    as_user,  # noqa: F811
    people,  # noqa: F811
    fields,
    field,
    message,
):
    response = as_user(people["editor"]).post(url("add"), {"content": NAMELESS, "reason": "r", **fields})

    page = response.content.decode()
    assert response.status_code == 200
    assert f'id="{field}-errors"' in page and message in page
    assert not Event.objects.exists() and not AgentNameClaim.objects.exists()
