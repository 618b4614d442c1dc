"""The admin shows effective permissions and document warnings, and permission changes first."""

import pytest

from tests.agents_app.test_admin import agent, as_user, opened, people, url  # noqa: F401 - fixtures
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db


def test_the_agent_page_shows_effective_permissions_and_document_warnings(as_user, people):  # noqa: F811
    browser = as_user(people["editor"])
    content = agent_text("reviewer", extra="allowedTools: Read\ndisallowedTools: Bash\n")
    response = browser.post(url("add"), {"content": content, "reason": "first"})
    page = browser.get(response["Location"]).content.decode()

    permissions = page[page.index('id="permissions"') :]
    assert "<strong>every tool</strong> (no tools key)" in permissions
    assert "<tr><th>denied</th><td>Bash</td></tr>" in permissions
    assert "<code>unknown_key</code> line 4: Claude Code ignores &#x27;allowedTools&#x27;" in page
    assert "(suggestion: <code>tools</code>)" in page


def test_compare_puts_a_removed_tools_line_first_as_a_widening(as_user, people, agent):  # noqa: F811
    browser = as_user(people["editor"])
    page = browser.get(url("change", agent.agent_id))
    browser.post(
        url("change", agent.agent_id),
        {
            "content": agent_text("reviewer", extra="tools: Read, Bash\n"),
            "reason": "r",
            "opened": opened(page),
        },
    )
    page = browser.get(url("change", agent.agent_id))
    browser.post(
        url("change", agent.agent_id),
        {"content": agent_text("reviewer"), "reason": "all tools", "opened": opened(page)},
    )

    compare = browser.get(url("compare", agent.agent_id), a=2, b=3).content.decode()

    assert compare.index('class="agent-diff-permissions widened"') < compare.index(
        '<table class="agent-diff">'
    )
    assert "every tool is now granted: the tools line was removed" in compare


def test_the_list_filters_by_what_an_agent_can_effectively_do(as_user, people):  # noqa: F811
    browser = as_user(people["editor"])
    for name, extra in (
        ("everything", ""),
        ("read-only", "tools: Read\n"),
        ("no-bash", "disallowedTools: Bash\n"),
    ):
        browser.post(url("add"), {"content": agent_text(name, extra=extra), "reason": "r"})

    browser.get(url("changelist"))  # the "Created ..." messages are shown (and consumed) here
    page = browser.get(url("changelist"), can="Bash").content.decode()
    results = page[page.index('id="result_list"') :]

    assert "everything" in results
    assert "read-only" not in results and "no-bash" not in results
