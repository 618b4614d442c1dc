"""Quick store figures on PostgreSQL: appends per second, and rebuild rate next to a raw scan.

    python -m bench.store_rates [--appends 2000] [--agents 1000 --revisions 100]

Creates its own database (bench_store_<pid>) on PG_URL (default
postgres://postgres@127.0.0.1:5432) and drops it at the end. Prints ratios as well as
rates: the machines are shared, only same-run comparisons mean much.
"""

import argparse
import json
import os
import time
import uuid

import psycopg

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")


def document(name: str, revision: int, lines: int = 60) -> str:
    body = "\n".join(
        f"Line {i}: guidance for the agent, revision {revision if i % 20 == 0 else 0}." for i in range(lines)
    )
    frontmatter = (
        f"name: {name}\ndescription: Benchmark agent {name}\ntools: Read, Grep, Bash\nmodel: sonnet\n"
    )
    return f"---\n{frontmatter}---\n{body}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--revisions", type=int, default=100)
    args = parser.parse_args()

    database = f"bench_store_{os.getpid()}"
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    os.environ.update(
        DATABASE_URL=f"{PG_URL}/{database}",
        DEBUG="1",
        CELERY_TASK_ALWAYS_EAGER="0",
        PROJECTION_READ_YOUR_WRITES="0",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    try:
        call_command("migrate", verbosity=0)
        run(args)
    finally:
        connection.close()
        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run(args: argparse.Namespace) -> None:
    from django.db import connection

    from agents_app.services import ChangeContext, agent_create, agent_revise
    from events.projections import projection_names
    from events.rebuild import projection_rebuild
    from events.services import event_append
    from events.types import NewEvent

    context = ChangeContext(actor="bench", source="system", reason="bench")

    # 1. Sequential revisions of one agent through the service (parse, validate, lock, hash chain).
    agent = agent_create(content=document("bench-seq", 0), context=context)
    started = time.perf_counter()
    for revision in range(1, args.appends + 1):
        agent_revise(agent_id=agent.agent_id, content=document("bench-seq", revision), context=context)
    service_rate = args.appends / (time.perf_counter() - started)

    # 2. The same number of raw INSERTs, autocommit, same row shape: the limit.
    with connection.cursor() as cursor:
        started = time.perf_counter()
        for revision in range(args.appends):
            cursor.execute(
                "INSERT INTO events_event (event_id, stream_id, stream_version, type, schema_version, data,"
                " metadata, recorded_at, hash) VALUES (%s, %s, %s, 'raw', 1, %s, '{}', now(), '')",
                [uuid.uuid4(), uuid.uuid4(), 1, json.dumps({"content": document("raw", revision)})],
            )
        raw_rate = args.appends / (time.perf_counter() - started)
    print(
        f"appends/s through agent_revise: {service_rate:,.0f}; raw INSERT: {raw_rate:,.0f};"
        f" ratio {service_rate / raw_rate:.2f}"
    )

    # 3. A log of agents x revisions, appended a stream at a time (hash chain and all).
    started = time.perf_counter()
    for number in range(args.agents):
        name = f"bench-{number:05d}"
        events = [NewEvent(type="agent.created", data={"content": document(name, 0), "revision": 1})]
        events += [
            NewEvent(type="agent.revised", data={"content": document(name, r), "revision": r + 1})
            for r in range(1, args.revisions)
        ]
        event_append(stream_id=uuid.uuid4(), expected_version=0, events=events, metadata={"actor": "bench"})
    total = args.agents * args.revisions
    print(
        f"appended {total:,} events in batches of {args.revisions}:"
        f" {total / (time.perf_counter() - started):,.0f}/s"
    )

    # 4. Raw server-side-cursor scan of the whole log (the limit for any rebuild).
    with psycopg.connect(os.environ["DATABASE_URL"]) as raw, raw.cursor(name="scan") as cursor:
        cursor.itersize = 2000
        started = time.perf_counter()
        cursor.execute(
            "SELECT position, type, stream_id, stream_version, data, metadata"
            " FROM events_event ORDER BY position"
        )
        scanned = sum(1 for _ in cursor)
        scan_rate = scanned / (time.perf_counter() - started)
    print(f"raw scan: {scanned:,} events, {scan_rate:,.0f}/s")
    for name in projection_names():
        result = projection_rebuild(name=name, batch_size=1000)
        rate = result.events / result.seconds
        print(
            f"rebuild {name}: {result.events:,} events in {result.seconds:.1f} s, {rate:,.0f}/s,"
            f" {rate / scan_rate:.2f}x the raw scan"
        )


if __name__ == "__main__":
    main()
