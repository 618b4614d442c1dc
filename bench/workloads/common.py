"""What every workload shares: the databases, Django set up against them, results and timing."""

import os
import secrets
import statistics
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
MAIN_DATABASE = "bench_main"
EMPTY_DATABASE = "bench_empty"
DEPTH_DATABASE = "bench_depth"


def pg_parts() -> dict[str, object]:
    url = urllib.parse.urlsplit(PG_URL)
    return {"host": url.hostname or "127.0.0.1", "port": url.port or 5432, "user": url.username or "postgres"}


def database_url(name: str) -> str:
    return f"{PG_URL}/{name}"


def admin(sql: str) -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as db:
        db.execute(sql)


def database_create(name: str) -> None:
    """A fresh database: dropped first if an interrupted run left it behind."""
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{name}"')


def database_drop(name: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_environment(database: str) -> None:
    """Environment for bench.settings: production-like (DEBUG off: no query log), Celery as deployed.

    CELERY_TASK_ALWAYS_EAGER=0 with no REDIS_URL: each append queues its catch-up task on an
    in-memory broker that nothing consumes, so the writer pays the queueing, as with Redis,
    and not the worker's work; read-your-writes (on by default) then makes the writer catch
    the projections up itself, which is the path a deployed web process takes.
    """
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DATABASE_URL=database_url(database),
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        CELERY_TASK_ALWAYS_EAGER="0",
        REDIS_URL="",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
    )


def django_connect(database: str) -> None:
    """Point Django's default connection at another database (closing the current one)."""
    from django.db import connections

    connections["default"].close()
    connections["default"].settings_dict["NAME"] = database
    connections["default"].ensure_connection()  # not on the clock of what comes next


@dataclass
class Result:
    """One row of the table: a workload, a system, and one value per measured run."""

    workload: str
    system: str
    unit: str
    values: list[float]
    higher_is_better: bool
    reference: bool = False  # the row the others in this workload are compared with
    note: str = ""
    detail: dict[str, float] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """Half the range of the runs, as a share of the median."""
        if len(self.values) < 2 or not self.median:
            return 0.0
        return (max(self.values) - min(self.values)) / 2 / self.median

    def speed(self) -> float:
        return self.median if self.higher_is_better else 1 / self.median


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def per_call(work: Callable[[], object], *, calls: int, max_seconds: float, min_calls: int = 3) -> float:
    """Median seconds of one call over `calls` calls, fewer (not under `min_calls`) past `max_seconds`."""
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < calls and (len(samples) < min_calls or time.perf_counter() < deadline):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def per_call_alternating(
    works: Sequence[Callable[[], object]], *, calls: int, max_seconds: float, min_calls: int = 3
) -> list[float]:
    """per_call of each of `works`, their calls taking turns (a, b, a, b, ...): each median then
    sees the same load on a shared machine, which two blocks of calls one after the other did
    not (a ratio of the two is what a depth target compares)."""
    samples: list[list[float]] = [[] for _ in works]
    deadline = time.perf_counter() + max_seconds
    while len(samples[0]) < calls and (len(samples[0]) < min_calls or time.perf_counter() < deadline):
        for work, taken in zip(works, samples, strict=True):
            started = time.perf_counter()
            work()
            taken.append(time.perf_counter() - started)
    return [statistics.median(taken) for taken in samples]


def analyze() -> None:
    """Fresh planner statistics for every table, as autovacuum keeps them in a running service.

    Right after bulk writes PostgreSQL has none, and may pick another index than it would
    in steady state (e.g. the revisions view's (generation, agent_id, occurred_at) index with
    a filter on revision, which reads every revision of the agent).
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
