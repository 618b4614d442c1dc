"""The admin shows effective permissions and document warnings, and permission changes first."""

import html
import re

import pytest

from agents_app.selectors import agent_get
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
    warnings = page[page.index('id="document-warnings"') :]
    # A sentence with its line number, the code small beside it.
    assert (
        "line 4: Claude Code ignores &#x27;allowedTools&#x27;, so the agent gets every tool; did you mean"
        ' &#x27;tools&#x27;? <small class="agent-warning-code"><code>unknown_key</code></small>'
    ) in warnings


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


# -- after a save: the document's warnings and what the change widened ------------------------


def messages_of(page: str) -> str:
    """The messages list of an admin page, unescaped ('' when there is none)."""
    if 'class="messagelist"' not in page:
        return ""
    start = page.index('class="messagelist"')
    return html.unescape(page[start : page.index("</ul>", start)])


def revise(browser, agent_id, content: str, reason: str = "r"):
    page = browser.get(url("change", agent_id))
    response = browser.post(
        url("change", agent_id), {"content": content, "reason": reason, "opened": opened(page)}
    )
    assert response.status_code == 302
    return browser.get(response["Location"]).content.decode()


def test_creating_an_agent_with_warnings_lists_them_in_file_order_with_their_lines(as_user, people):  # noqa: F811
    browser = as_user(people["editor"])
    content = agent_text("reviewer", extra="permissionMode: manual\nallowedTools: Read\n")

    response = browser.post(url("add"), {"content": content, "reason": "first"})

    shown = messages_of(browser.get(response["Location"]).content.decode())
    assert (
        '<li class="warning">Revision 1 is stored with 2 document warnings: line 4: permissionMode '
        "'manual' is not a mode Claude Code knows"
    ) in shown
    assert (
        "falls back to 'default'; line 5: Claude Code ignores 'allowedTools', so the agent gets every "
        "tool; did you mean 'tools'?</li>"
    ) in shown
    assert "widens" not in shown  # a first revision widens nothing


def test_a_save_without_warnings_or_widening_says_only_that_it_saved(as_user, people, agent):  # noqa: F811
    browser = as_user(people["editor"])

    shown = messages_of(revise(browser, agent.agent_id, agent_text("reviewer", body="Stricter.\n")))

    assert shown.count("<li") == 1 and "Saved reviewer as revision 2." in shown
    assert "document warning" not in shown and "widens" not in shown


def test_a_save_that_removes_the_tools_line_says_it_widens_what_the_agent_may_do(as_user, people, agent):  # noqa: F811
    browser = as_user(people["editor"])
    revise(browser, agent.agent_id, agent_text("reviewer", extra="tools: Read\n"))

    shown = messages_of(revise(browser, agent.agent_id, agent_text("reviewer")))

    assert (
        "This revision widens what the agent may do: every tool is now granted: the tools line was removed"
    ) in shown
    assert '<li class="warning">This revision widens' in shown


def test_a_revert_that_widens_and_brings_back_warnings_says_both(as_user, people):  # noqa: F811
    browser = as_user(people["editor"])
    browser.post(url("add"), {"content": agent_text("reviewer", extra="allowedTools: Read\n"), "reason": "r"})
    reviewer = agent_get(name="reviewer")
    revise(browser, reviewer.agent_id, agent_text("reviewer", extra="tools: Read\n"))
    confirm = browser.get(url("revert", reviewer.agent_id, 1))

    response = browser.post(
        url("revert", reviewer.agent_id, 1), {"reason": "undo", "opened": opened(confirm)}
    )

    shown = messages_of(browser.get(response["Location"]).content.decode())
    assert "Revision 3 is stored with 1 document warning: line 4: Claude Code ignores 'allowedTools'" in shown
    assert "This revision widens what the agent may do: every tool is now granted" in shown


def test_saving_again_after_a_conflict_tells_the_warnings_of_what_was_saved(as_user, people, agent):  # noqa: F811
    browser = as_user(people["editor"])
    stale = opened(browser.get(url("change", agent.agent_id)))
    revise(browser, agent.agent_id, agent_text("reviewer", body="Theirs.\n"))
    mine = agent_text("reviewer", extra="tools: Read\nallowed_tools: Bash\n", body="Mine.\n")
    conflict = browser.post(url("change", agent.agent_id), {"content": mine, "reason": "r", "opened": stale})
    assert conflict.status_code == 200 and 'id="conflict"' in conflict.content.decode()

    response = browser.post(
        url("change", agent.agent_id), {"content": mine, "reason": "r", "opened": opened(conflict)}
    )

    shown = messages_of(browser.get(response["Location"]).content.decode())
    assert (
        "Revision 3 is stored with 1 document warning: line 5: Claude Code ignores 'allowed_tools'" in shown
    )


def test_the_message_lists_ten_warnings_and_counts_the_rest(as_user, people):  # noqa: F811
    extra = "".join(f"unknown{n}: x\n" for n in range(12))
    browser = as_user(people["editor"])

    response = browser.post(url("add"), {"content": agent_text("reviewer", extra=extra), "reason": "r"})

    shown = messages_of(browser.get(response["Location"]).content.decode())
    assert "line 13: Claude Code ignores 'unknown9'; and 2 more, listed on the agent page." in shown
    assert "unknown10" not in shown


# -- the history's badges and the revision page ----------------------------------------------


@pytest.fixture
def widened_at_two(as_user, people):  # noqa: F811
    """reviewer: 1 tools: Read; 2 the tools line removed (widened, high); 3 tools: Read (narrowed);
    4 the body alone."""
    browser = as_user(people["editor"])
    browser.post(url("add"), {"content": agent_text("reviewer", extra="tools: Read\n"), "reason": "r"})
    reviewer = agent_get(name="reviewer")
    revise(browser, reviewer.agent_id, agent_text("reviewer", extra="allowedTools: Read\n"))
    revise(browser, reviewer.agent_id, agent_text("reviewer", extra="tools: Read\n"))
    revise(browser, reviewer.agent_id, agent_text("reviewer", extra="tools: Read\n", body="Other.\n"))
    return browser, reviewer


def history_rows(page: str) -> dict[int, str]:
    body = page[page.index('id="history"') :]
    body = body[body.index("<tbody>") : body.index("</tbody>")]
    rows = {}
    for row in body.split("<tr>")[1:]:
        number = int(re.search(r"revisions/(\d+)/\" title=\"this revision's page\"", row).group(1))
        rows[number] = row
    return rows


def test_the_history_flags_the_widening_revision_with_its_severity_and_the_narrowing_neutrally(
    widened_at_two,
):
    browser, reviewer = widened_at_two

    rows = history_rows(browser.get(url("history", reviewer.agent_id)).content.decode())

    assert 'class="permission-badge widened high"' in rows[2] and "widened · high" in rows[2]
    assert "every tool is now granted" in rows[2]  # the badge's title says what
    assert 'class="permission-badge narrowed "' in rows[3] and "widened" not in rows[3]
    assert "permission-badge" not in rows[1] and "permission-badge" not in rows[4]


def test_the_history_reads_the_badges_in_the_same_queries_however_long_it_is(widened_at_two):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    browser, reviewer = widened_at_two
    with CaptureQueriesContext(connection) as short:
        browser.get(url("history", reviewer.agent_id))
    for n in range(6):
        extra = "tools: Read\n" if n % 2 else ""
        revise(browser, reviewer.agent_id, agent_text("reviewer", extra=extra, body=f"{n}\n"))
    with CaptureQueriesContext(connection) as long:
        page = browser.get(url("history", reviewer.agent_id)).content.decode()

    assert len(long.captured_queries) == len(short.captured_queries)
    assert page.count("widened · high") == 4  # revisions 2, 5, 7 and 9


def test_the_history_badges_the_oldest_row_shown_against_the_revision_before_it(widened_at_two, monkeypatch):
    browser, reviewer = widened_at_two
    from agents_app import admin as agent_admin

    real = agent_admin.revision_history
    monkeypatch.setattr(agent_admin, "revision_history", lambda **kw: real(agent_id=kw["agent_id"], limit=3))

    rows = history_rows(browser.get(url("history", reviewer.agent_id)).content.decode())

    assert sorted(rows) == [2, 3, 4]
    assert "widened · high" in rows[2]  # compared with revision 1, which is not shown


def test_a_revision_page_shows_that_revisions_warnings_with_line_numbers(widened_at_two):
    browser, reviewer = widened_at_two

    page = browser.get(url("revision", reviewer.agent_id, 2)).content.decode()

    warnings = page[page.index('id="document-warnings"') :]
    assert "line 4: Claude Code ignores &#x27;allowedTools&#x27;" in warnings
    assert '<small class="agent-warning-code"><code>unknown_key</code></small>' in warnings
    changes = page[page.index('id="revision-permission-changes"') :]
    assert "widened · high" in changes and "every tool is now granted" in changes
    assert "allowedTools: Read" in page[page.index('id="revision-content"') :]

    clean = browser.get(url("revision", reviewer.agent_id, 3)).content.decode()
    assert 'id="document-warnings"' not in clean and 'id="no-document-warnings"' in clean


def test_a_revision_that_does_not_exist_is_not_found(widened_at_two):
    browser, reviewer = widened_at_two

    assert browser.get(url("revision", reviewer.agent_id, 99)).status_code == 404


def test_the_agent_page_shows_the_current_revisions_warnings_with_line_numbers(widened_at_two):
    browser, reviewer = widened_at_two
    revise(browser, reviewer.agent_id, agent_text("reviewer", extra="tools: Read\ncolor: teal\n"))

    page = browser.get(url("change", reviewer.agent_id)).content.decode()

    warnings = page[page.index('id="document-warnings"') :]
    assert "line 5: color &#x27;teal&#x27; is not one of red" in warnings
    assert "allowedTools" not in warnings  # revision 2's warning is not the current one's
