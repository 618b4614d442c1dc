"""The reliability tests' stack: real gunicorn, Celery worker (and beat) processes, started with the
commands of docker-compose.yml and the environment of .env.example (tests/processes.py), on a
PostgreSQL database of their own (`reliab_<random>`) and a `redis-server` of their own.

The private Redis (a free port, no persistence) is what lets a test kill the broker without
touching the machine's Redis on 6379, which other tests and people use. The database is a
copy of a template migrated once per session (`CREATE DATABASE ... TEMPLATE`, a fraction of a
second instead of a migration per test), holding a staff user `ops` and its API token.
Everything a test starts is killed and dropped afterwards, also when it fails; the processes'
logs are printed then (pytest shows them for failed tests only).

The checks compare what the stack says over HTTP with the log itself, read with SQL in one
snapshot: the database is the source of truth, the API is what is being tested.
"""

import contextlib
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection as django_connection
from psycopg.rows import dict_row

from tests.conftest import _missing
from tests.processes import (
    PG_URL,
    Http,
    Process,
    RedisServer,
    Stack,
    compose_command,
    free_port,
    healthy,
    pg_admin,
    stack_environment,
)

CATCH_UP_TIMEOUT = 30.0

AGENT = """---
name: {name}
description: Reliability test agent
tools: Read, Grep
---
{body}"""


def agent_content(name: str, body: str = "Edited by the reliability tests.\n") -> str:
    return AGENT.format(name=name, body=body)


def request_id(label: str) -> str:
    """A unique X-Request-ID, stored in the metadata of the event the request appends (if any)."""
    return f"reliab-{label}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------------
# Services and the template database
# ------------------------------------------------------------------------------
def _require_services() -> None:
    """Skip locally (fail in CI) without PostgreSQL or redis-server, before starting anything."""
    if django_connection.vendor != "postgresql":
        _missing("needs PostgreSQL: run with DATABASE_URL=postgres://... (see README)")
    try:
        pg_admin("SELECT 1")
    except psycopg.Error as error:
        _missing(f"needs PostgreSQL at {PG_URL} ({error.__class__.__name__})")
    if shutil.which("redis-server") is None:
        _missing("needs the redis-server program (a private Redis that the tests can stop)")


@dataclass(frozen=True)
class Template:
    database: str
    token: str


_SETUP_SCRIPT = """
from django.contrib.auth import get_user_model
from agents_app.tokens import api_token_create
user = get_user_model().objects.create_superuser("ops", "ops@example.invalid", None)
print(api_token_create(user=user, name="reliability tests", days=1)[1])
"""


@pytest.fixture(scope="session")
def reliability_template(tmp_path_factory) -> Iterator[Template]:
    """A migrated database with the staff user `ops` and its token, copied for each stack."""
    _require_services()
    database = f"reliab_template_{uuid.uuid4().hex[:12]}"
    # No broker: migrations and the setup script queue nothing that matters.
    env = stack_environment(
        database_url=f"{PG_URL}/{database}", redis_url="", port=0, secret_key=secrets.token_urlsafe(50)
    )
    pg_admin(f'CREATE DATABASE "{database}"')
    try:
        setup = Stack(
            env=env, database=database, port=0, logs=tmp_path_factory.mktemp("template"), http=Http(0)
        )
        setup.run(compose_command("migrate", env))
        token = setup.manage("shell", "-c", _SETUP_SCRIPT).strip().splitlines()[-1]
        yield Template(database=database, token=token)
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# ------------------------------------------------------------------------------
# The stack
# ------------------------------------------------------------------------------
@dataclass(kw_only=True)
class ReliabilityStack(Stack):
    redis: RedisServer

    @property
    def database_url(self) -> str:
        return f"{PG_URL}/{self.database}"

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row, **kwargs)

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        with self.connect() as connection:
            return connection.execute(query, params).fetchall()

    def boot(self, *services: str, **env: str) -> list[Process]:
        """Start the compose services (web, worker, beat) all at once, then wait until each is up."""
        processes = [self.start(service, env={**self.env, **env} if env else None) for service in services]
        for process in processes:
            service = process.name.rsplit("-", 1)[0]
            self.wait_for(
                {
                    "web": lambda: healthy(self.http),
                    "worker": lambda process=process: " ready." in process.log(),
                    "beat": lambda process=process: "beat: Starting" in process.log(),
                }[service],
                what=f"{process.name} up",
            )
        return processes

    def start_web(self, **env: str) -> Process:
        return self.boot("web", **env)[0]

    def start_worker(self, **env: str) -> Process:
        return self.boot("worker", **env)[0]

    def projections(self) -> dict[str, dict[str, Any]]:
        status, _, body = self.http("GET", "/api/v1/projections/")
        assert status == 200, body
        return {row["name"]: row for row in body["results"]}

    def wait_caught_up(self, timeout: float = CATCH_UP_TIMEOUT) -> float:
        """Seconds until GET /projections/ reports lag 0 for every projection."""
        return self.wait_for(
            lambda: all(row["lag_events"] == 0 for row in self.projections().values()),
            what="every projection caught up (lag 0)",
            timeout=timeout,
        )

    @contextlib.contextmanager
    def holding(self, sql: str, params: Any = None) -> Iterator[int]:
        """Run `sql` on a connection of its own and keep its transaction (and its locks) open for
        the block, which gets the number of rows the statement affected; rolled back afterwards."""
        with self.connect() as connection:
            connection.autocommit = False
            rows = connection.execute(sql, params).rowcount
            try:
                yield rows
            finally:
                connection.rollback()

    def stream(self, stream_id: str) -> list[dict[str, Any]]:
        """One agent's events, in stream order."""
        return self.sql(
            "SELECT position, stream_version, type, data, metadata FROM events_event"
            " WHERE stream_id = %s ORDER BY stream_version",
            [stream_id],
        )

    def events_with_request_ids(self, request_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """Request id -> the events stored with it in their metadata."""
        rows = self.sql(
            "SELECT position, stream_id, stream_version, type, data, metadata->>'request_id' AS request_id"
            " FROM events_event WHERE metadata->>'request_id' = ANY(%s) ORDER BY position",
            [list(request_ids)],
        )
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault(row["request_id"], []).append(row)
        return found

    def verify_events(self) -> str:
        """`manage.py verify_events` (exit 0): every hash chain intact, stream versions without gaps."""
        return self.manage("verify_events")

    def views_against_log(self) -> list[str]:
        """Every way the live views differ from what the log says (empty: they agree)."""
        return views_against_log(self)


def views_against_log(stack: ReliabilityStack) -> list[str]:
    """Compare the live generation of both views with the log, read in one snapshot."""
    with stack.connect() as connection:
        connection.autocommit = False
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with connection.transaction():
            events = connection.execute(
                "SELECT position, stream_id, stream_version, type, data FROM events_event ORDER BY position"
            ).fetchall()
            live = {
                row["projection"]: row
                for row in connection.execute(
                    "SELECT projection, generation, position FROM events_checkpoint WHERE is_live"
                ).fetchall()
            }
            current = connection.execute(
                "SELECT agent_id, revision, stream_version, content, status, position"
                " FROM agents_app_agentcurrent WHERE generation = %s",
                [live["agents.current"]["generation"]],
            ).fetchall()
            revisions = connection.execute(
                "SELECT agent_id, revision, content, stream_version, position"
                " FROM agents_app_agentrevision WHERE generation = %s",
                [live["agents.revisions"]["generation"]],
            ).fetchall()

    problems: list[str] = []
    head = events[-1]["position"] if events else 0
    for name, checkpoint in live.items():
        if checkpoint["position"] != head:
            problems.append(f"{name} is at position {checkpoint['position']}, the log at {head}")
    expected_current: dict[Any, dict[str, Any]] = {}
    expected_revisions: dict[tuple[Any, int], dict[str, Any]] = {}
    for event in events:
        row = expected_current.setdefault(event["stream_id"], {"status": "active"})
        row["stream_version"], row["position"] = event["stream_version"], event["position"]
        if event["type"] in ("agent.created", "agent.revised", "agent.reverted"):
            row["revision"], row["content"] = event["data"]["revision"], event["data"]["content"]
            expected_revisions[(event["stream_id"], event["data"]["revision"])] = {
                "content": event["data"]["content"],
                "stream_version": event["stream_version"],
                "position": event["position"],
            }
        elif event["type"] == "agent.archived":
            row["status"] = "archived"
        elif event["type"] == "agent.restored":
            row["status"] = "active"
    actual_current = {row.pop("agent_id"): row for row in current}
    if set(actual_current) != set(expected_current):
        extra, missing = (
            set(actual_current) - set(expected_current),
            set(expected_current) - set(actual_current),
        )
        problems.append(
            f"current view has agents {sorted(map(str, extra))} too many, {sorted(map(str, missing))} missing"
        )
    for agent_id, expected in expected_current.items():
        actual = actual_current.get(agent_id)
        if actual is not None and actual != expected:
            problems.append(f"current view of {agent_id}: {_changed(actual, expected)}")
    actual_revisions = {(row.pop("agent_id"), row.pop("revision")): row for row in revisions}
    if set(actual_revisions) != set(expected_revisions):
        problems.append(
            f"revisions view has {len(set(actual_revisions) - set(expected_revisions))} rows too many and"
            f" {len(set(expected_revisions) - set(actual_revisions))} missing"
        )
    for key, expected in expected_revisions.items():
        actual = actual_revisions.get(key)
        if actual is not None and actual != expected:
            problems.append(f"revision {key[1]} of {key[0]}: {_changed(actual, expected)}")
    return problems


def _changed(actual: dict[str, Any], expected: dict[str, Any]) -> str:
    return ", ".join(
        f"{key} is {str(actual.get(key))[:60]!r}, the log says {str(expected.get(key))[:60]!r}"
        for key in sorted(set(actual) | set(expected))
        if actual.get(key) != expected.get(key)
    )


@contextlib.contextmanager
def reliability_stack(template: Template, logs: Path, **env: str) -> Iterator[ReliabilityStack]:
    """A database copied from the template and a private Redis; processes are started by the test."""
    redis_server = RedisServer(logs)
    database = f"reliab_{uuid.uuid4().hex[:12]}"
    port = free_port()
    stack_env = stack_environment(
        database_url=f"{PG_URL}/{database}",
        redis_url=redis_server.url(0),
        port=port,
        secret_key=secrets.token_urlsafe(50),
    )
    stack_env.update(
        # Four sync workers: requests really run in parallel, each with its own connection.
        WEB_CONCURRENCY="4",
        CELERY_WORKER_CONCURRENCY="1",
        # The tests send hundreds of requests a second as one user: throttling is not under test.
        API_THROTTLE_USER="1000000/min",
        **env,
    )
    pg_admin(f'CREATE DATABASE "{database}" TEMPLATE "{template.database}"')
    http = Http(port)
    http.token = template.token
    stack = ReliabilityStack(
        env=stack_env, database=database, port=port, logs=logs, http=http, redis=redis_server
    )
    try:
        redis_server.start()
        yield stack
    finally:
        for process in stack.processes:
            if process.running():
                process.kill_all()
        redis_server.kill()
        stack.print_logs()  # pytest shows what teardown prints only when the test failed
        print(f"----- redis-server:\n{redis_server.log_path.read_text()[-3000:]}")
        pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def make_stack(reliability_template, tmp_path) -> Iterator[Callable[..., ReliabilityStack]]:
    """Make the test's stack (environment overrides as keyword arguments); torn down afterwards."""
    with contextlib.ExitStack() as stacks:

        def make(**env: str) -> ReliabilityStack:
            return stacks.enter_context(reliability_stack(reliability_template, tmp_path, **env))

        yield make


def wait_until(check: Callable[[], Any], *, what: str, timeout: float = CATCH_UP_TIMEOUT) -> Any:
    """The first truthy value of check(), polled every 50 ms; fail after `timeout`."""
    started = time.monotonic()
    while not (value := check()):
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not after {timeout} s")
        time.sleep(0.05)
    return value
