"""The admin's permissions report (issue 15): who can use each tool, mode and MCP server,
documents with warnings, and the changes that widened permissions in a time range."""

import datetime as dt
import html

import pytest
from django.urls import reverse

from agents_app.selectors import agent_get, agent_revisions
from tests.agents_app.test_admin import as_user, opened, people, url  # noqa: F401 - fixtures
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db

REPORT = reverse("admin:agents_app_agentcurrent_permissions_report")


def section(page: str, element_id: str) -> str:
    """The part of the page from the element with this id to the end of its table."""
    start = page.index(f'id="{element_id}"')
    return page[start : page.index("</table>", start)]


def save(browser, name: str, content: str, reason: str) -> None:
    agent = agent_get(name=name)
    page = browser.get(url("change", agent.agent_id))
    response = browser.post(
        url("change", agent.agent_id), {"content": content, "reason": reason, "opened": opened(page)}
    )
    assert response.status_code == 302


def recorded(name: str, revision: int, when: dt.datetime) -> None:
    """Date one revision's storage: the report filters on the database clock's `recorded_at`,
    which a test cannot move, so the view's row is dated directly (the selector reads it)."""
    agent_revisions().filter(name=name, revision=revision).update(recorded_at=when)


@pytest.fixture
def registry(as_user, people):  # noqa: F811
    """shell (Read, Bash, an MCP server), warned (allowedTools: every tool) and widener, whose
    revision 2 (recorded in January) removed its tools line and revision 4 (in March) added Bash."""
    browser = as_user(people["editor"])
    for name, extra in (
        ("shell", "tools: Read, Bash\nmcpServers: [github]\npermissionMode: acceptEdits\n"),
        ("warned", "allowedTools: Read\n"),
        ("widener", "tools: Read\n"),
    ):
        response = browser.post(url("add"), {"content": agent_text(name, extra=extra), "reason": "first"})
        assert response.status_code == 302
    save(browser, "widener", agent_text("widener"), "needs everything")
    save(browser, "widener", agent_text("widener", extra="tools: Read\n"), "back to reading")
    save(browser, "widener", agent_text("widener", extra="tools: Read, Bash\n"), "runs the tests")
    recorded("widener", 2, dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC))
    recorded("widener", 3, dt.datetime(2026, 2, 10, 12, tzinfo=dt.UTC))
    recorded("widener", 4, dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC))
    return browser


def test_the_report_lists_an_agent_under_bash_a_warned_document_and_the_widened_changes(registry):
    page = registry.get(REPORT).content.decode()

    shell = agent_get(name="shell")
    bash = section(page, "report-tools").split('data-tool="Bash"')[1].split("</tr>")[0]
    assert f'<a href="{url("change", shell.agent_id)}">shell</a>' in bash
    assert "widener" in bash  # revision 4 granted it Bash
    assert "warned" not in bash  # every tool: listed once, in the first row
    assert ">warned</a>" in section(page, "report-tools").split('id="every-tool"')[1].split("</tr>")[0]
    assert ">shell</a>" in section(page, "report-mcp").split('data-server="github"')[1]
    assert ">shell</a>" in section(page, "report-modes").split('data-mode="acceptEdits"')[1]

    warned = section(page, "report-warnings")
    assert f'<a href="{url("change", agent_get(name="warned").agent_id)}">warned</a>' in warned
    assert "line 4: Claude Code ignores &#x27;allowedTools&#x27;" in warned
    assert "shell" not in warned

    widened = section(page, "widened")
    widener = agent_get(name="widener")
    assert f'href="{url("compare", widener.agent_id)}?a=1&amp;b=2"' in widened
    assert f'href="{url("compare", widener.agent_id)}?a=3&amp;b=4"' in widened
    assert "every tool is now granted: the tools line was removed" in widened
    assert "needs everything" in widened and "erin" in widened
    assert "back to reading" not in widened  # revision 3 narrowed
    assert '<tr class="widened high">' in widened  # never green
    assert widened.index("runs the tests") < widened.index("needs everything")  # newest first


def test_a_range_shows_the_widened_changes_recorded_in_it_and_not_the_others(registry):
    page = registry.get(REPORT, since="2026-02-01T00:00", until="2026-03-31T00:00:00").content.decode()

    widened = section(page, "widened")
    assert "runs the tests" in widened and "newly granted: Bash" in widened
    assert "needs everything" not in widened
    assert "from 2026-02-01 00:00:00 UTC until 2026-03-31 00:00:00 UTC" in page
    assert 'name="since" id="id_since" value="2026-02-01T00:00:00"' in page  # the pickers keep it

    january = registry.get(REPORT, since="2026-01-01T00:00:00Z", until="2026-01-31T01:00:00+01:00")
    widened = section(january.content.decode(), "widened")
    assert "needs everything" in widened and "runs the tests" not in widened
    assert 'name="until" id="id_until" value="2026-01-31T00:00:00"' in january.content.decode()  # in UTC


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "From: “yesterday” is not a timestamp; use e.g. 2026-11-01T12:00:00Z."),
        ({"until": "2026-13-40T00:00"}, "Until: “2026-13-40T00:00” is not a timestamp"),
        ({"since": "9999-12-31T23:59:59-05:00"}, "From: “9999-12-31T23:59:59-05:00” is out of range."),
        (
            {"since": "2026-03-01T00:00", "until": "2026-02-01T00:00"},
            "“From” is after “Until”: no change can be in that range.",
        ),
    ],
)
def test_a_bad_range_is_explained_on_the_page_and_lists_no_changes(registry, params, message):
    response = registry.get(REPORT, **params)

    page = html.unescape(response.content.decode())
    assert response.status_code == 200
    errors = page[page.index('id="range-errors"') :]
    assert message in errors
    assert 'id="widened"' not in page
    assert 'data-tool="Bash"' in page  # the rest of the report is still there


def test_a_range_longer_than_the_form_allows_is_refused_not_parsed(registry):
    response = registry.get(REPORT, since="2" * 100)

    assert response.status_code == 200
    assert "Ensure this value has at most 64 characters" in html.unescape(response.content.decode())


def test_the_widened_changes_are_capped_with_a_visible_note(registry, monkeypatch):
    monkeypatch.setattr("agents_app.selectors.REPORT_MAX_REVISIONS", 2)

    page = registry.get(REPORT).content.decode()

    assert "Only the newest 2 revisions in this range were examined" in page
    widened = section(page, "widened")
    assert "runs the tests" in widened and "needs everything" not in widened  # the newest two: r4, r3


def test_the_agents_per_tool_are_capped_and_the_rest_is_one_click_away(registry, monkeypatch):
    monkeypatch.setattr("agents_app.admin_permissions.REPORT_NAMES_SHOWN", 1)

    page = registry.get(REPORT).content.decode()

    bash = section(page, "report-tools").split('data-tool="Bash"')[1].split("</tr>")[0]
    assert ">shell</a>" in bash and ">widener</a>" not in bash
    assert f'and <a href="{url("changelist")}?can=Bash">1 more</a>' in bash


def test_a_user_without_the_view_permission_is_refused_and_the_anonymous_sent_to_log_in(
    as_user,  # noqa: F811
    people,  # noqa: F811
    client,
):
    assert client.get(REPORT).status_code == 302  # not logged in: the login page

    response = as_user(people["outsider"]).get(REPORT)

    assert response.status_code == 403


def test_the_index_links_the_report_for_those_who_may_see_it(as_user, people):  # noqa: F811
    index = reverse("admin:index")

    seen = as_user(people["viewer"]).get(index).content.decode()
    assert f'href="{REPORT}"' in seen.split('id="operations-module"')[1]

    unseen = as_user(people["outsider"]).get(index).content.decode()
    assert f'href="{REPORT}"' not in unseen


def test_the_agent_list_links_the_report(registry):
    assert f'href="{REPORT}"' in registry.get(url("changelist")).content.decode()
