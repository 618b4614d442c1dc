"""Reads of one revision go through the unique (generation, agent, revision) key, statistics or not.

Issue 13, defect 9 (W5): on rows PostgreSQL has no statistics for yet (after a bulk load or an
import, before autovacuum's ANALYZE), it read exact (agent, revision) keys through the as-of
index, whose prefix is the same, and filtered every revision of the agent. These tests wipe
the revisions view's statistics, capture every statement the commands and reads send to the
view, and ask PostgreSQL for each one's plan: none may scan the table or filter revisions.
The last test does the same for a revert's reads of the event log, with statistics that
invite a walk of the whole log in position order.
"""

import json
import uuid

import pytest
from django.db import connection

from agents_app.models import AgentRevision
from agents_app.selectors import (
    agent_get,
    revision_at,
    revision_blame,
    revision_get,
    revision_pair,
    revision_pair_by_name,
)
from agents_app.services import agent_create, agent_revert, agent_revise
from events.models import Event
from tests.conftest import run_after_commit

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

HISTORY = 300
TABLE = AgentRevision._meta.db_table


@pytest.fixture(autouse=True)
def _commit(monkeypatch, django_capture_on_commit_callbacks):
    """Each write runs what it queued for after COMMIT (the views' catch-up), as a real COMMIT does."""
    run_after_commit(
        monkeypatch,
        django_capture_on_commit_callbacks,
        globals(),
        ("agent_create", "agent_revise", "agent_revert"),
    )


def _history(context, make_agent_text) -> uuid.UUID:
    name = f"plans-{uuid.uuid4().hex[:8]}"
    lines = [f"line {number}" for number in range(40)]
    agent_id = agent_create(
        content=make_agent_text(name, body="\n".join(lines) + "\n"), context=context
    ).agent_id
    for number in range(2, HISTORY + 1):
        lines[number % len(lines)] = f"line {number % len(lines)} of revision {number}"
        agent_revise(
            agent_id=agent_id, content=make_agent_text(name, body="\n".join(lines) + "\n"), context=context
        )
    return agent_id


def _forget_statistics() -> None:
    """The view as PostgreSQL sees a table nobody has analysed: no column statistics, no row count."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM pg_statistic WHERE starelid = %s::regclass", [TABLE])
        cursor.execute("UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = %s::regclass", [TABLE])


class Statements:
    """The SELECTs sent to a table (the revisions view unless told) while the block runs, with
    their parameters."""

    def __init__(self, table: str = TABLE) -> None:
        self.table = table
        self.reads: list[tuple[str, object]] = []

    def __call__(self, execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("SELECT") and f'"{self.table}"' in sql:
            self.reads.append((sql, params))
        return execute(sql, params, many, context)


def _nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


def _plan(sql: str, params) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        (output,) = cursor.fetchone()
    (plan,) = json.loads(output) if isinstance(output, str) else output
    return plan["Plan"]


def _bad_scans(sql: str, params) -> list[str]:
    """Scans of the view that do not seek the revision in an index, and filters on revisions."""
    bad = []
    for node in _nodes(_plan(sql, params)):
        filters = f"{node.get('Filter', '')} {node.get('Join Filter', '')}"
        seeks = "revision" in node.get("Index Cond", "")
        if (node.get("Relation Name") == TABLE and not seeks) or "revision" in filters:
            bad.append(
                f"{node['Node Type']} {node.get('Index Name', '')}"
                f" cond {node.get('Index Cond')!r} filter {filters!r}"
            )
    return bad


def test_without_statistics_every_read_of_a_revision_goes_through_its_key(context, make_agent_text):
    agent_id = _history(context, make_agent_text)
    _forget_statistics()
    statements = Statements()
    with connection.execute_wrapper(statements):
        agent = agent_get(agent_id=agent_id)
        assert revision_get(agent_id=agent_id, revision=150).revision == 150
        blame = revision_blame(agent=agent, ref=str(HISTORY))
        assert {line["revision"] for line in blame["lines"]} > {HISTORY, HISTORY - 1}
        old, new = revision_pair(agent=agent, from_ref="2", to_ref="250")
        assert (old.revision, new.revision) == (2, 250)
        pair = revision_pair_by_name(name=agent.name, from_ref="2", to_ref="250")
        assert pair is not None
        assert (pair[0].revision, pair[1].revision) == (2, 250)
        reverted = agent_revert(agent_id=agent_id, to_revision=1, context=context)
        assert reverted.revision == HISTORY + 1
        agent_revise(agent_id=agent_id, content=make_agent_text(agent.name, body="new\n"), context=context)
    assert len(statements.reads) >= 5
    bad = {sql: scans for sql, params in statements.reads if (scans := _bad_scans(sql, params))}
    assert bad == {}


def test_without_statistics_the_revision_as_of_an_instant_is_read_backwards_from_it(context, make_agent_text):
    agent_id = _history(context, make_agent_text)
    middle = revision_get(agent_id=agent_id, revision=150).occurred_at
    _forget_statistics()
    statements = Statements()
    with connection.execute_wrapper(statements):
        assert revision_at(agent_id=agent_id, at=middle).revision >= 150
    ((sql, params),) = statements.reads
    plan = _plan(sql, params)
    # The newest revision at or before the instant is the first row of a backward index scan:
    # no sort of every revision before it.
    assert plan["Node Type"] == "Limit"
    (scan,) = (child for child in plan["Plans"] if child["Parent Relationship"] == "Outer")
    assert (scan["Node Type"], scan["Index Name"], scan["Scan Direction"]) == (
        "Index Scan",
        "agents_revision_asof_idx",
        "Backward",
    )


EVENTS = Event._meta.db_table
KEYS = ("stream_id", "stream_version", "event_id")


def test_with_statistics_of_many_streams_a_revert_reads_the_log_through_its_stream_key(
    context, make_agent_text
):
    """A long stream among many short ones, analysed: statistics then count many events per
    stream and many streams at each low version, the case where `ORDER BY position LIMIT 1`
    made PostgreSQL walk the whole log in position order looking for one (stream, version)."""
    agent_id = _history(context, make_agent_text)
    for number in range(60):
        name = f"short-{number}-{uuid.uuid4().hex[:6]}"
        short = agent_create(content=make_agent_text(name), context=context).agent_id
        for revision in range(2, 4):
            agent_revise(
                agent_id=short, content=make_agent_text(name, body=f"r{revision}\n"), context=context
            )
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{EVENTS}"')
    statements = Statements(EVENTS)
    with connection.execute_wrapper(statements):
        assert agent_revert(agent_id=agent_id, to_revision=2, context=context).revision == HISTORY + 1
    assert statements.reads
    bad = {}
    for sql, params in statements.reads:
        for node in _nodes(_plan(sql, params)):
            filters = f"{node.get('Filter', '')} {node.get('Join Filter', '')}"
            if node.get("Relation Name") == EVENTS and (
                node["Node Type"] == "Seq Scan" or any(key in filters for key in KEYS)
            ):
                bad.setdefault(sql, []).append(f"{node['Node Type']} {node.get('Index Name', '')} {filters}")
    assert bad == {}
