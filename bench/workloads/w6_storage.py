"""W6 storage: bytes on disk per stored revision, tables + indexes + TOAST, after VACUUM FULL.

Measured at the end of the run on the main database, where every system holds the same
W1-W5 histories (this project also the second W1 agent and the W1 query-count agents).
VACUUM FULL first, so dead rows left by rebuilds and updates count for nobody. Each
system's bytes are divided by its own count of stored revisions. This project is reported
as its event log (with the name-claim table), its projections (current + revisions
views), and both together, the service's real footprint.
"""

from django.db import connection

from bench.workloads.common import Result
from bench.workloads.suite import Bench

WORKLOAD = "W6 storage (bytes/revision)"
TABLES = (
    "events_event",
    "agents_app_agentrevision",
    "agents_app_agentcurrent",
    "agents_app_agentnameclaim",
    "bench_peers_reversionagent",
    "reversion_revision",
    "reversion_version",
    "bench_peers_historyagent",
    "bench_peers_historicalhistoryagent",
    "bench_raw_event",
)


def run(bench: Bench) -> None:
    tables = [*TABLES, bench.eventsourcing.app.recorder.events_table_name]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f'VACUUM FULL ANALYZE "{table}"')
    for system in [bench.ours, *bench.peers(), bench.raw]:
        for part, (size, revisions) in system.storage().items():
            label = f"{system.label}: {part}"
            bench.add(
                Result(
                    WORKLOAD,
                    label,
                    "bytes",
                    [size / revisions],
                    False,
                    reference=system is bench.ours and part == "together",
                    note=f"{size / 2**20:,.1f} MiB / {revisions:,} revisions",
                    detail={"bytes": size, "revisions": revisions},
                )
            )
    bench.note(
        WORKLOAD,
        "pg_total_relation_size (heap + indexes + TOAST) after VACUUM FULL, over each system's own"
        " count of stored revisions, measured at the end on the main database, where each system holds"
        " the run's W1-W5 histories (mostly the 10,000-revision W5 agent); PostgreSQL's default TOAST"
        " compression (pglz) for everyone, eventsourcing with its default (uncompressed JSON) transcoder.",
    )
