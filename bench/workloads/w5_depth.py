"""W5 depth: reading an old and a recent revision of a long history; appending to a long log.

Reads: revision 1 and revision `w5_depth` of one agent with at least that many revisions
(the W1 agents when W1 built enough, else one built for this), by each system's own way
of fetching "version N": this project's selectors.revision_get (one indexed row of the
revisions view); eventsourcing's stored event N (every event carries the full text) and,
on a row of its own, the library's repository.get(version=N), which replays events 1..N;
django-reversion's get_for_object() ordered oldest first, the Nth (an OFFSET); django-
simple-history's history.get(version=N) (indexed); raw SELECT by (stream id, version).

Depth of the commands and reads that must not grow with the history: revert to revision 1
(agent_revert) and blame of the newest revision (what GET /agents/{name}/blame/ computes), on
the deep agent at revision `w5_depth` and on one of SHALLOW revisions; the note gives the
ratio deep/shallow (the target: within 1.2x).

Appends: agent_revise on one agent (read-your-writes on) and raw INSERTs, on an empty
database (bench_empty) and on one where `w5_log_events` events were bulk-loaded
(bench_depth), the runs alternating between the two.
The bulk load is SQL (INSERT ... SELECT generate_series) with correct stream versions,
streams of 100 events (10,000 of them for a million); their hashes are placeholders (not a valid chain) and
their texts are short, valid documents (not 4 KB). The revisions and current views get
the matching rows and the live checkpoints are moved to the head, so the appends after
the load run against views of the same size as the log, as they would in service.
"""

import statistics

from bench.workloads import common
from bench.workloads.common import Result, per_call, per_call_alternating, timed
from bench.workloads.documents import revisions
from bench.workloads.suite import Bench, rotated, rounds
from bench.workloads.systems import Raw, ThisProject

READ_WORKLOAD = "W5 read revision {revision:,} (ms)"
REVERT_WORKLOAD = "W5 revert to revision 1, agent at revision {revision:,} (ms)"
BLAME_WORKLOAD = "W5 blame of revision {revision:,} (ms)"
SHALLOW = 10
APPEND_WORKLOAD = "W5 append, {log} (edits/s)"
STREAM_EVENTS = 100
BULK_TABLES = ("events_event", "agents_app_agentrevision", "agents_app_agentcurrent")


def _deep_agents(bench: Bench) -> tuple[dict, int]:
    """Handles of an agent with at least `w5_depth` revisions in every system."""
    from events.runner import projections_catch_up_all

    depth = bench.sizes.w5_depth
    if bench.w1_revisions >= depth:
        handles = dict(bench.w1_handles)
        return handles, depth
    texts = list(revisions("w5-deep", depth))
    handles = {id(system): system.bulk_load("w5-deep", texts) for system in [*bench.peers(), bench.raw]}
    handles[id(bench.ours)] = bench.ours_off.bulk_load("w5-deep", texts)
    projections_catch_up_all()
    return handles, depth


def reads(bench: Bench) -> tuple[object, int]:
    """Time the reads of revision 1 and `w5_depth`; this project's deep agent and its depth."""
    handles, depth = _deep_agents(bench)
    common.analyze()
    ours, es = bench.ours, bench.eventsourcing
    readers = [
        (ours.label, ours.version_content, ours),
        (es.label, es.version_content, es),
        (f"{es.label}, repository.get(version=N) (replay)", es.version_replayed, es),
        (bench.reversion.label, bench.reversion.version_content, bench.reversion),
        (bench.history.label, bench.history.version_content, bench.history),
        ("raw SELECT (limit)", bench.raw.version_content, bench.raw),
    ]
    expected = {revision: ours.version_content(handles[id(ours)], revision) for revision in (1, depth)}
    for revision in (1, depth):
        for label, read, system in readers:
            assert read(handles[id(system)], revision) == expected[revision], (label, revision)
    values: dict[tuple[str, int], list[float]] = {
        (label, n): [] for label, _, _ in readers for n in (1, depth)
    }
    for number, warmup in rounds(bench.sizes.runs):
        for label, read, system in rotated(readers, number):
            handle = handles[id(system)]
            for revision in (1, depth):
                seconds = per_call(
                    lambda r=read, h=handle, n=revision: r(h, n),
                    calls=bench.sizes.w5_calls,
                    max_seconds=1.5,
                    min_calls=1,
                )
                if not warmup:
                    values[(label, revision)].append(1000 * seconds)
    for revision in (1, depth):
        for label, _, system in readers:
            bench.add(
                Result(
                    READ_WORKLOAD.format(revision=revision),
                    label,
                    "ms",
                    values[(label, revision)],
                    False,
                    reference=system is bench.ours,
                )
            )
    bench.w5_depth = depth
    bench.note(
        "W5 read",
        f"Median of up to {bench.sizes.w5_calls:,} reads per run (fewer when one read is slow: about"
        f" 1.5 s per run, at least one read) of revision 1 and revision {depth:,} of an agent with at"
        f" least {depth:,} revisions; every system's answer is checked to be the same text. ANALYZE runs"
        " first (as autovacuum would have by then); this project's reads of a revision take its"
        " unique key with or without statistics (tests/agents_app/test_revision_plans.py).",
    )
    return handles[id(ours)], depth


# Where the body begins in a preloaded content: after the "\n---\n" that closes its frontmatter.
BODY_START = "position(chr(10) || '---' || chr(10) IN e.data->>'content') + 4"


def _blame(agent_id, revision: int) -> dict:
    """What GET /agents/{name}/blame/?ref=<revision> computes, without HTTP (as the API view does it)."""
    from agents_app.selectors import agent_get, revision_blame

    return revision_blame(agent=agent_get(agent_id=agent_id), ref=str(revision))


def depth_costs(bench: Bench, deep_handle, depth: int) -> None:
    """Revert and blame on the deep agent and on one of SHALLOW revisions, run for run side by side."""
    from agents_app.services import agent_revert
    from events.runner import projections_catch_up_all

    ours = bench.ours
    shallow_handle = ours.bulk_load("w5-shallow", list(revisions("w5-shallow", SHALLOW)))
    projections_catch_up_all()
    common.analyze()
    agents = [(depth, deep_handle), (SHALLOW, shallow_handle)]
    for revision, handle in agents:
        assert _blame(handle, revision)["revision"] == revision
    targets = {handle: iter(range(10**9)) for _, handle in agents}

    def revert(handle) -> None:
        # Alternately to revision 1 and 2 (both at the start of the history), so that every
        # call stores a revision: reverting to the current content stores nothing.
        to_revision = 1 + next(targets[handle]) % 2
        change = agent_revert(agent_id=handle, to_revision=to_revision, context=ours.context)
        assert change.changed

    values: dict[tuple[str, int], list[float]] = {
        (kind, n): [] for kind in ("blame", "revert") for n in (depth, SHALLOW)
    }
    for number, warmup in rounds(bench.sizes.runs):
        # The deep and the shallow agent's calls take turns, so that both see the same load.
        order = rotated(agents, number)
        blames = per_call_alternating(
            [lambda h=handle, n=revision: _blame(h, n) for revision, handle in order],
            calls=bench.sizes.w5_calls,
            max_seconds=3.0,
            min_calls=1,
        )
        reverts = per_call_alternating(
            [lambda h=handle: revert(h) for _, handle in order],
            calls=bench.sizes.w5_calls,
            max_seconds=3.0,
            min_calls=1,
        )
        if not warmup:
            for (revision, _), blame_seconds, revert_seconds in zip(order, blames, reverts, strict=True):
                values[("blame", revision)].append(1000 * blame_seconds)
                values[("revert", revision)].append(1000 * revert_seconds)
    ratios = []
    for kind, workload in (("revert", REVERT_WORKLOAD), ("blame", BLAME_WORKLOAD)):
        for revision in (depth, SHALLOW):
            bench.add(
                Result(
                    workload.format(revision=revision),
                    ours.label,
                    "ms",
                    values[(kind, revision)],
                    False,
                    reference=True,
                )
            )
        deep, shallow = (statistics.median(values[(kind, n)]) for n in (depth, SHALLOW))
        ratios.append(
            f"{kind} {deep / shallow:.2f}x ({deep:.2f} ms at revision {depth:,},"
            f" {shallow:.2f} ms at {SHALLOW})"
        )
    bench.note(
        "W5 depth",
        f"Revert to revision 1 (alternately 1 and 2, so that each call stores a revision) and blame of"
        f" the newest revision, on the deep agent ({depth:,} revisions) and on one of {SHALLOW}; median"
        f" of up to {bench.sizes.w5_calls:,} calls per run, the two agents' calls taking turns so that both"
        " see the same load. Deep / shallow: {'; '.join(ratios)}"
        " (target: within 1.2x). The reverts run after the reads: they add revisions to the deep agent.",
    )


def _bulk_load_sql(events: int) -> str:
    """INSERT ... SELECT statements that add `events` events and their view rows (see module doc)."""
    return f"""
    INSERT INTO events_event (event_id, stream_id, stream_version, type, schema_version, data, metadata,
                              recorded_at, hash)
    SELECT md5('event-' || g)::uuid,
           md5('stream-' || (g / {STREAM_EVENTS}))::uuid,
           g % {STREAM_EVENTS} + 1,
           CASE WHEN g % {STREAM_EVENTS} = 0 THEN 'agent.created' ELSE 'agent.revised' END,
           1,
           jsonb_build_object(
               'content', '---' || chr(10) || 'name: bulk-' || (g / {STREAM_EVENTS}) || chr(10)
                          || 'description: Preloaded agent' || chr(10) || '---' || chr(10)
                          || 'Body of revision ' || (g % {STREAM_EVENTS} + 1) || '.' || chr(10),
               'revision', g % {STREAM_EVENTS} + 1),
           '{{"actor": "bulk", "source": "import", "reason": ""}}'::jsonb,
           now(),
           md5('hash-' || g) || md5('chain-' || g)
    FROM generate_series(0, {events - 1}) AS g;

    INSERT INTO agents_app_agentrevision (generation, agent_id, revision, name, event_type, reverted_to,
        content, sha256, frontmatter, body_start, description, model, tools, warnings, actor, reason, source,
        recorded_at, occurred_at, changed_keys, lines_added, lines_removed, file_lines_added,
        file_lines_removed, dialect, permissions, stream_version, position)
    SELECT c.generation, e.stream_id, e.stream_version, 'bulk-' || e.stream_id, e.type, NULL,
           e.data->>'content', md5(e.data->>'content') || md5(e.data->>'content'),
           '{{}}'::jsonb, {BODY_START}, 'Preloaded agent', '', NULL, '[]'::jsonb, 'bulk', '', 'import',
           e.recorded_at, e.recorded_at, '[]'::jsonb, 1, 1, 1, 1, 'claude-code', '{{}}'::jsonb,
           e.stream_version, e.position
    FROM events_event e, events_checkpoint c
    WHERE e.metadata->>'actor' = 'bulk' AND c.projection = 'agents.revisions' AND c.is_live;

    INSERT INTO agents_app_agentcurrent (generation, agent_id, name, status, revision, stream_version,
        content, sha256, frontmatter, body_start, description, model, tools, labels, warnings, created_by,
        created_at, updated_by, updated_at, dialect, permissions, position)
    SELECT c.generation, e.stream_id, 'bulk-' || e.stream_id, 'active', e.stream_version, e.stream_version,
           e.data->>'content', md5(e.data->>'content') || md5(e.data->>'content'), '{{}}'::jsonb,
           {BODY_START}, 'Preloaded agent', '', NULL, '{{}}'::jsonb, '[]'::jsonb, 'bulk', e.recorded_at,
           'bulk', e.recorded_at, 'claude-code', '{{}}'::jsonb, e.position
    FROM events_event e, events_checkpoint c
    WHERE e.metadata->>'actor' = 'bulk' AND e.stream_version = {STREAM_EVENTS}
      AND c.projection = 'agents.current' AND c.is_live;

    UPDATE events_checkpoint SET position = (SELECT max(position) FROM events_event) WHERE is_live;
    """


def appends(bench: Bench) -> None:
    """Append rates on an empty log and on one of `w5_log_events` events, run for run side by side.

    Two databases, both copies of the freshly migrated main one: bench_empty stays empty,
    bench_depth gets the bulk load. The rounds alternate between them, so that drift on a
    shared machine hits both logs alike (measuring one after the other, it did not).
    """
    from django.db import connection

    sizes = bench.sizes
    bench.close()
    ours = ThisProject()
    logs = [
        ("empty log", common.EMPTY_DATABASE),
        (f"{sizes.w5_log_events:,}-event log", common.DEPTH_DATABASE),
    ]
    # Raw INSERTs go into the service's own event table (a type no projection reads), so that
    # they too meet the million rows and the same five indexes.
    raws = {
        database: Raw(common.database_url(database), table="events_event", event_type="bench.raw")
        for _, database in logs
    }
    first = next(revisions("w5-append", 1))
    try:
        ours.open()
        handles = {}
        for _, database in logs:
            common.django_connect(database)
            raws[database].open()
            handles[database] = {
                "ours": ours.create("w5-append", first),
                "raw": raws[database].create("w5-append", first),
            }
        common.django_connect(common.DEPTH_DATABASE)
        bench.seconds["W5 bulk load"] = timed(lambda: _bulk_load(connection, sizes.w5_log_events))
        values: dict[tuple[str, str], list[float]] = {
            (db, kind): [] for _, db in logs for kind in ("ours", "raw")
        }
        start = 2
        for number, warmup in rounds(sizes.runs):
            count = sizes.w5_warmup if warmup else sizes.w5_appends
            texts = list(revisions("w5-append", count, start=start))
            start += count
            for _, database in rotated(logs, number):
                common.django_connect(database)
                for kind in rotated(["ours", "raw"], number):
                    system = ours if kind == "ours" else raws[database]
                    handle = handles[database][kind]
                    seconds = timed(lambda s=system, h=handle, t=texts: [s.revise(h, text) for text in t])
                    if not warmup:
                        values[(database, kind)].append(count / seconds)
        for log, database in logs:
            for kind in ("ours", "raw"):
                bench.add(
                    Result(
                        APPEND_WORKLOAD.format(log=log),
                        ours.label if kind == "ours" else "raw INSERT into the event table (limit)",
                        "edits/s",
                        values[(database, kind)],
                        True,
                        reference=kind == "ours",
                    )
                )
    finally:
        for raw in raws.values():
            raw.close()
        common.django_connect(common.MAIN_DATABASE)
        common.database_drop(common.EMPTY_DATABASE)
        common.database_drop(common.DEPTH_DATABASE)
    bench.open()
    bench.note(
        "W5 append",
        f"{sizes.w5_appends:,} revisions per run of one agent (this project: agent_revise with"
        " read-your-writes on) and as many raw INSERTs, in two databases: one empty, one after a bulk"
        f" load of {sizes.w5_log_events:,} events and their view rows (which took"
        f" {bench.seconds.get('W5 bulk load', 0):.0f} s); the runs alternate between the two. The"
        " preloaded events have placeholder hashes (the chain of those rows is not valid; the appended"
        " agent's own chain is) and short texts.",
    )


def _bulk_load(connection, events: int) -> None:
    """Load with the secondary indexes and unique constraints dropped, then rebuild them.

    Maintaining five indexes (two on random UUIDs) row by row makes a million-row INSERT take
    minutes; building them afterwards takes seconds. The rebuilt indexes are compact where
    grown ones would have some slack: slightly kind to the "long log" side of W5.
    """
    from events.projections import projection_names
    from events.runner import live_checkpoint

    for name in projection_names():
        live_checkpoint(name)  # the view rows are written to the live generation
    with connection.cursor() as cursor:
        constraints = cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = ANY(%s::regclass[]) AND contype = 'u'",
            [list(BULK_TABLES)],
        ).fetchall()
        indexes = cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            [list(BULK_TABLES)],
        ).fetchall()
        for table, name, _ in constraints:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
        cursor.execute(_bulk_load_sql(events))
        for _, definition in indexes:
            cursor.execute(definition)
        for table, name, definition in constraints:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for table in BULK_TABLES:
            cursor.execute(f"ANALYZE {table}")


def run(bench: Bench) -> None:
    deep_handle, depth = reads(bench)
    depth_costs(bench, deep_handle, depth)
    appends(bench)
