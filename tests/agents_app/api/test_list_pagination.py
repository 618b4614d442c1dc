"""`GET /agents/` pages never skip or repeat a row, even where names repeat (issue 13, defect 8),
and read only the columns they return (defect 9)."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_app import services
from agents_app.models import AgentCurrent, AgentRevision
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENTS = "/api/v1/agents/"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _context(hours: int | None = None) -> services.ChangeContext:
    occurred = None if hours is None else T0 + dt.timedelta(hours=hours)
    return services.ChangeContext(actor="tester", source="api", occurred_at=occurred)


def _pages(api, url: str) -> tuple[list[tuple[str, str]], int]:
    seen, pages = [], 0
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.content
        page = response.json()
        seen += [(row["name"], row["id"]) for row in page["results"]]
        url, pages = page["next"], pages + 1
    return seen, pages


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run the views' catch-up after the services' writes, as a commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def repeated_names(db, commit):
    """Three agents named `dup` (two archived), between `alpha` and `zulu`."""
    with commit():
        _repeated_names()


def _repeated_names() -> None:
    services.agent_create(content=agent_text("alpha"), context=_context())
    for _ in range(2):
        change = services.agent_create(content=agent_text("dup"), context=_context())
        services.agent_archive(agent_id=change.agent_id, context=_context())
    services.agent_create(content=agent_text("dup"), context=_context())
    services.agent_create(content=agent_text("zulu"), context=_context())


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_status_all_pages_list_every_agent_once_when_names_repeat(editor_api, repeated_names, limit):
    whole, _ = _pages(editor_api, f"{AGENTS}?status=all&limit=1000")
    paged, pages = _pages(editor_api, f"{AGENTS}?status=all&limit={limit}")

    assert [name for name, _ in whole] == ["alpha", "dup", "dup", "dup", "zulu"]
    assert paged == whole
    assert pages == -(-5 // limit)


@pytest.mark.parametrize("limit", [1, 2])
def test_at_pages_list_every_agent_once_when_two_held_a_name_at_that_time(editor_api, commit, limit):
    # Business time: `dup` A from hour 0 to its archive at hour 5, `dup` B from hour 1; at hour 2
    # both were called `dup` (an import of two repositories can record exactly this).
    with commit():
        a = services.agent_create(content=agent_text("dup"), context=_context(0))
        services.agent_archive(agent_id=a.agent_id, context=_context(5))
        services.agent_create(content=agent_text("dup"), context=_context(1))
        services.agent_create(content=agent_text("alpha"), context=_context(0))
    at = (T0 + dt.timedelta(hours=2)).isoformat().replace("+", "%2B")

    whole, _ = _pages(editor_api, f"{AGENTS}?at={at}&limit=1000")
    paged, _ = _pages(editor_api, f"{AGENTS}?at={at}&limit={limit}")

    assert [name for name, _ in whole] == ["alpha", "dup", "dup"]
    assert paged == whole


@pytest.mark.parametrize(
    "cursor",
    ["dup", "not base64!", "ZHVw", "ZHVwLzEyMw", "RFVQLzAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw", "%00"],
    ids=["a-bare-name", "not-base64", "no-id", "short-id", "bad-name", "nul"],
)
def test_a_cursor_the_list_did_not_give_is_a_400_naming_the_parameter(editor_api, repeated_names, cursor):
    body = assert_problem(editor_api.get(f"{AGENTS}?status=all&after={cursor}"), 400, "invalid-parameter")

    assert body["errors"][0]["field"] == "after"


def _list_sql(api, url: str) -> str:
    with CaptureQueriesContext(connection) as queries:
        response = api.get(url)
    assert response.status_code == 200, response.content
    assert response.json()["results"]
    tables = (AgentCurrent._meta.db_table, AgentRevision._meta.db_table)
    return "\n".join(
        query["sql"] for query in queries.captured_queries if any(table in query["sql"] for table in tables)
    )


@pytest.mark.parametrize("query", ["?status=all", f"?at={(T0 + dt.timedelta(days=3650)).isoformat()[:19]}Z"])
def test_the_list_reads_neither_content_nor_body_nor_frontmatter(editor_api, repeated_names, query):
    sql = _list_sql(editor_api, f"{AGENTS}{query}")

    assert sql
    # Quoted column names as they appear in a SELECT list (`.content"` also catches "table"."content").
    for column in ('."content"', '."frontmatter"', '."warnings"'):
        assert column not in sql, sql
