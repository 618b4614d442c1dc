"""The admin in a real browser (Playwright driving Debian's Chromium) against a live server:
log in, create, edit with a reason, compare revisions 1 and 2, revert, and a conflict from a
second session that must not lose the first user's text.

Needs PostgreSQL (the live server needs a database that can be emptied between tests, and
the append-only trigger refuses SQLite's DELETE) and /usr/bin/chromium (`.ci/run` installs
it); locally it skips with the reason, in CI it fails.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from agents_app.selectors import agent_get
from tests.conftest import IN_CI, agent_text

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
PASSWORD = "a-long-test-password-1"

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser(monkeypatch):
    if not shutil.which(CHROMIUM):
        message = f"needs Chromium at {CHROMIUM} (apt-get install chromium)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls this test makes
    # between browser steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def editors(django_user_model, permission_groups):
    group = Group.objects.get(name="Agent editors")
    made = []
    for name in ("erin", "frank"):
        user = django_user_model.objects.create_user(username=name, password=PASSWORD, is_staff=True)
        user.groups.add(group)
        made.append(user)
    return made


def log_in(browser, live_server, username):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    return page


def save(page, content, reason):
    page.fill("textarea#id_content", content)
    page.fill("#id_reason", reason)
    page.click("input[name=_save]")
    page.wait_for_load_state()


def test_an_editor_creates_edits_compares_reverts_and_survives_a_conflict(browser, live_server, editors):
    erin = log_in(browser, live_server, "erin")

    # create
    erin.goto(f"{live_server.url}/admin/agents_app/agentcurrent/add/")
    save(erin, agent_text("triager", body="Label each issue.\n"), "first version")
    assert "Created triager" in erin.inner_text(".messagelist")
    agent_id = agent_get(name="triager").agent_id
    change_url = f"{live_server.url}/admin/agents_app/agentcurrent/{agent_id}/change/"

    # edit with a reason
    revised = agent_text("triager", body="Label each new issue.\nClose duplicates.\n", extra="tools: Read\n")
    save(erin, revised, "dupes")
    assert "revision 2" in erin.inner_text(".messagelist")

    # history, then compare 1 and 2 side by side
    erin.click("text=History")
    assert "dupes" in erin.inner_text("#history")
    erin.check('input[name="a"][value="1"]')
    erin.check('input[name="b"][value="2"]')
    erin.click("text=Compare selected revisions")
    erin.wait_for_selector("table.agent-diff")
    assert "Close duplicates." in erin.inner_text("table.agent-diff")
    assert erin.inner_text("table.agent-diff ins >> nth=0").strip() == "new"  # intra-line highlight
    assert "tools" in erin.inner_text("table.agent-diff-frontmatter")
    ARTIFACTS.mkdir(exist_ok=True)
    erin.screenshot(path=str(ARTIFACTS / "admin-compare.png"), full_page=True)

    # revert to revision 1 (confirmation page, reason required)
    erin.click("text=History")
    erin.click("#history >> text=revert to this…")
    erin.fill("#id_reason", "dupes closed too eagerly")
    erin.click("input[type=submit]")
    erin.wait_for_selector(".messagelist")
    current = agent_get(name="triager")
    assert current.revision == 3 and current.body == "Label each issue.\n"

    # a conflict: erin opens the form, frank saves meanwhile, erin saves her text
    erin.goto(change_url)
    frank = log_in(browser, live_server, "frank")
    frank.goto(change_url)
    save(frank, agent_text("triager", body="Frank's rule.\n"), "frank's change")
    mine = agent_text("triager", body="Erin's careful rewrite.\n")
    save(erin, mine, "erin's change")

    assert erin.is_visible("#conflict")
    assert "frank" in erin.inner_text("#conflict")
    assert erin.input_value("textarea#id_content") == mine  # her text survives
    assert agent_get(name="triager").body == "Frank's rule.\n"

    # after looking at frank's change she saves again, deliberately
    erin.fill("#id_reason", "merged after conflict")
    erin.click("input[name=_save]")
    erin.wait_for_load_state()
    final = agent_get(name="triager")
    assert final.revision == 5 and final.body == "Erin's careful rewrite.\n"


@pytest.fixture
def dated_agent(django_user_model, permission_groups):
    """`planner`: revision 1 made 2024-01-01 by ann, revision 2 made 2024-02-01 by bob (as a
    git import would date them), labels production→1 and staging→2; and paula, who may
    edit and publish."""
    import datetime as dt

    from agents_app.services import ChangeContext, agent_create, agent_label_move, agent_revise

    def context(actor, when, reason):
        return ChangeContext(actor=actor, source="cli", reason=reason, occurred_at=when)

    first = agent_create(
        content=agent_text("planner", body="Plan the work.\nKeep it short.\n"),
        context=context("ann", dt.datetime(2024, 1, 1, 9, 0, tzinfo=dt.UTC), "first plan"),
    )
    agent_revise(
        agent_id=first.agent_id,
        content=agent_text("planner", body="Plan the work.\nList the risks.\n"),
        context=context("bob", dt.datetime(2024, 2, 1, 9, 0, tzinfo=dt.UTC), "risks matter"),
    )
    for label, revision in (("production", 1), ("staging", 2)):
        agent_label_move(
            agent_id=first.agent_id, label=label, revision=revision, context=context("paula", None, "ship")
        )
    user = django_user_model.objects.create_user(username="paula", password=PASSWORD, is_staff=True)
    user.groups.set(Group.objects.filter(name__in=["Agent editors", "Agent publishers"]))
    return first.agent_id


def test_a_reviewer_reads_blame_travels_in_time_and_removes_a_label(browser, live_server, dated_agent):
    page = log_in(browser, live_server, "paula")
    agent_url = f"{live_server.url}/admin/agents_app/agentcurrent/{dated_agent}"

    # blame: each line names the change that wrote it, linked to that change's comparison
    page.goto(f"{agent_url}/change/")
    page.click(".agent-actions >> text=Blame")
    page.wait_for_selector("#blame-lines")
    rows = page.locator("#blame-lines tbody tr")
    assert rows.count() == 2
    cells = rows.nth(0).inner_text().split("\t")
    assert cells[0] == "r1" and cells[1].split("\n") == ["ann", "2024-01-01 09:00:00 UTC", "first plan"]
    assert "bob" in rows.nth(1).inner_text() and "List the risks." in rows.nth(1).inner_text()
    page.click("#blame-lines >> text=r2")
    page.wait_for_selector("table.agent-diff")
    assert "List the risks." in page.inner_text("table.agent-diff")

    # the agent as of mid-January: revision 1
    page.goto(f"{agent_url}/change/")
    page.fill("#as-of-at", "2024-01-15T12:00:00")
    page.click(".agent-as-of-picker >> button")
    page.wait_for_selector("#as-of")
    assert "the current revision was 1" in page.inner_text("#as-of")
    assert "Keep it short." in page.inner_text("#as-of-content")

    # the registry as of mid-January, from the agent list
    page.goto(f"{live_server.url}/admin/agents_app/agentcurrent/")
    page.fill("#as-of-at", "2024-01-15T12:00:00")
    page.click(".agent-as-of-picker >> button")
    page.wait_for_selector("#registry-at")
    assert page.locator("#registry-at tbody tr").first.inner_text().split("\t")[:2] == ["planner", "1"]

    # labels: the Remove button of staging, a reason, and it is gone
    page.goto(f"{agent_url}/labels/")
    page.click('[aria-label="remove the label staging"]')
    page.fill("#id_reason", "staging is retired")
    page.click("input[value^='Yes, ']")
    page.wait_for_selector(".messagelist")
    assert "Remove label staging: done" in page.inner_text(".messagelist")
    assert agent_get(name="planner").labels == {"production": 1}
    assert "staging" not in page.inner_text("#current-labels")


@pytest.fixture
def reviewed_registry(django_user_model, permission_groups):
    """`deployer`: revision 1 reads only, revision 2 (by ann) removes its tools line; `sloppy`
    carries `allowedTools`; and victor, who may only view."""
    from agents_app.services import ChangeContext, agent_create, agent_revise

    context = ChangeContext(actor="ann", source="cli", reason="ship faster")
    first = agent_create(content=agent_text("deployer", extra="tools: Read, Grep\n"), context=context)
    agent_revise(agent_id=first.agent_id, content=agent_text("deployer"), context=context)
    agent_create(
        content=agent_text("sloppy", extra="tools: Read, Bash\nallowedTools: Read\n"), context=context
    )
    user = django_user_model.objects.create_user(username="victor", password=PASSWORD, is_staff=True)
    user.groups.set(Group.objects.filter(name__in=["Agent viewers"]))
    return first.agent_id


def test_a_security_reviewer_reads_the_permissions_report_and_follows_a_widening(
    browser, live_server, reviewed_registry
):
    page = log_in(browser, live_server, "victor")

    page.click("#operations-module >> text=Permissions report")
    page.wait_for_selector("#report-tools")
    bash = page.locator('#report-tools tr[data-tool="Bash"]').inner_text()
    assert "sloppy" in bash
    assert "deployer" in page.locator("#every-tool").inner_text()
    assert "line 5: Claude Code ignores 'allowedTools'" in page.inner_text("#report-warnings")
    assert "every tool is now granted" in page.inner_text("#widened")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-permissions-report.png"), full_page=True)

    # a range that ends before the change: nothing widened in it; a bad one is explained
    page.fill("input[name=until]", "2020-01-01T00:00:00")
    page.click("#report-range >> input[type=submit]")
    page.wait_for_selector("#widened")
    assert "No change widened permissions in this range." in page.inner_text("#widened")
    page.goto(f"{live_server.url}/admin/agents_app/agentcurrent/permissions/?since=soon")
    assert "“soon” is not a timestamp" in page.inner_text("#range-errors")

    # from the report to the change, then to the history that flags it
    page.goto(f"{live_server.url}/admin/agents_app/agentcurrent/permissions/")
    page.click("#widened >> text=revision 1 → 2")
    page.wait_for_selector("table.agent-diff")
    assert "every tool is now granted" in page.inner_text("#diff")
    page.click(".agent-actions >> text=History")
    page.wait_for_selector("#history")
    assert page.locator("#history .permission-badge.widened.high").count() == 1
