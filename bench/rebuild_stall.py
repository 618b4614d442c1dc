"""Write latency during a verifying rebuild, before and after the phased rebuild (issue 13, defect 2).

    python -m bench.rebuild_stall [--agents 1000 --revisions 100] [--projection agents.revisions]

Creates its own database (bench_stall_<pid>) on PG_URL (default postgres://postgres@127.0.0.1:5432),
stores agents x revisions events (100,000 by default) and projects them, then runs a verifying
rebuild twice while one writer revises an agent of its own every 50 ms through the service
(read-your-writes on, as the API does):

* before: the rebuild of commit BEFORE (events/projections.py read from git), which compares
  the generations inside the swap transaction holding the live checkpoint;
* after: events.rebuild.projection_rebuild (compare on a snapshot, short swap).

It prints, for the writes made while each rebuild ran, their number and latency (median, 95th
percentile, max) and how many took longer than one second. Drops the database at the end. The
machines are shared: only same-run comparisons mean much. CPU heavy at full size.
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import types
import uuid
from pathlib import Path

import psycopg

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
BEFORE = "59e670d"  # the last commit with the one-transaction compare-and-swap
ROOT = Path(__file__).resolve().parent.parent


def document(name: str, revision: int, lines: int = 40) -> str:
    body = "\n".join(f"Line {i}: guidance, revision {revision if i % 10 == 0 else 0}." for i in range(lines))
    return f"---\nname: {name}\ndescription: Benchmark agent {name}\ntools: Read, Grep\n---\n{body}\n"


def _old_rebuild() -> types.ModuleType:
    """The rebuild of commit BEFORE, loaded from git, with the agent projections registered in it."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:events/projections.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("bench_old_projections")
    exec(
        compile(source, "events/projections.py@" + BEFORE, "exec"), module.__dict__
    )  # our own history, read from git
    from agents_app.projections import CurrentProjection, RevisionsProjection

    module.projection_register(CurrentProjection())
    module.projection_register(RevisionsProjection())
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--revisions", type=int, default=100)
    parser.add_argument("--projection", default="agents.revisions")
    args = parser.parse_args()

    database = f"bench_stall_{os.getpid()}"
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    os.environ.update(
        DATABASE_URL=f"{PG_URL}/{database}",
        DEBUG="1",
        CELERY_TASK_ALWAYS_EAGER="0",
        LOG_LEVEL="ERROR",
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    sys.path.insert(0, str(ROOT))
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


def _seed(args: argparse.Namespace) -> None:
    from events.runner import projections_catch_up_all, read_your_writes
    from events.services import event_append
    from events.types import NewEvent

    started = time.perf_counter()
    with read_your_writes(False):
        for number in range(args.agents):
            name = f"bench-{number:05d}"
            events = [NewEvent(type="agent.created", data={"content": document(name, 0), "revision": 1})]
            events += [
                NewEvent(type="agent.revised", data={"content": document(name, r), "revision": r + 1})
                for r in range(1, args.revisions)
            ]
            event_append(
                stream_id=uuid.uuid4(), expected_version=0, events=events, metadata={"actor": "bench"}
            )
    projections_catch_up_all()
    total = args.agents * args.revisions
    print(f"stored and projected {total:,} events in {time.perf_counter() - started:.0f} s", flush=True)


def _measure(label: str, rebuild, agent_id: uuid.UUID) -> None:
    from django.db import connection

    from agents_app.services import ChangeContext, agent_revise

    context = ChangeContext(actor="bench", source="system", reason="during a rebuild")
    done = threading.Event()
    latencies: list[float] = []
    outcome: dict[str, object] = {}

    def rebuilding() -> None:
        try:
            started = time.perf_counter()
            result = rebuild()
            outcome["seconds"] = time.perf_counter() - started
            outcome["differences"] = len(result.differences)
        finally:
            done.set()
            connection.close()

    thread = threading.Thread(target=rebuilding)
    thread.start()
    revision = 0
    while not done.is_set():
        revision += 1
        started = time.perf_counter()
        agent_revise(agent_id=agent_id, content=document("stall-writer", 10_000 + revision), context=context)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    thread.join()
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    print(
        f"{label}: rebuild {outcome['seconds']:.1f} s ({outcome['differences']} differences);"
        f" {len(latencies)} writes during it: median {statistics.median(latencies) * 1000:.0f} ms,"
        f" p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms,"
        f" {sum(latency > 1 for latency in latencies)} over 1 s",
        flush=True,
    )


def run(args: argparse.Namespace) -> None:
    from agents_app.services import ChangeContext, agent_create
    from events.rebuild import projection_rebuild

    _seed(args)
    writer = agent_create(
        content=document("stall-writer", 0), context=ChangeContext(actor="bench", source="system", reason="x")
    )
    old = _old_rebuild()
    _measure(
        f"before ({BEFORE}, compare under the live checkpoint)",
        lambda: old.projection_rebuild(name=args.projection, verify=True, batch_size=1000),
        writer.agent_id,
    )
    _measure(
        "after (compare on a snapshot, short swap)",
        lambda: projection_rebuild(name=args.projection, verify=True, batch_size=1000),
        writer.agent_id,
    )


if __name__ == "__main__":
    main()
