"""The docker-compose stack, proved without Docker.

There is no Docker engine on the CI machine, so the test starts what docker-compose.yml
starts, as it starts it: the `command` of migrate, web, worker and beat read from the
compose file, with the environment of .env.example (only the addresses of PostgreSQL and
Redis, the port, and the secret differ), against a PostgreSQL database of its own
(`stack_test_<random>`, dropped afterwards, whichever database the rest of the suite uses)
and Redis database 14 (flushed before and after). It then talks to the stack over HTTP only,
like a client, with one exception: a write from the command line with read-your-writes off,
like a bulk import, because every API write brings the views up to date itself.

docker-compose.yml itself is validated by `docker-compose config` in .ci/run. The process
helpers (compose commands, `Process`, `Stack`, `Http`) are in tests/processes.py, shared with
tests/reliability/.
"""

import os
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.conftest import _missing
from tests.processes import (
    CLEAN_EXIT,
    PG_URL,
    ROOT,
    Http,
    Process,
    Stack,
    compose_command,
    compose_services,
    documented_variables,
    free_port,
    healthy,
    pg_admin,
    stack_environment,
)

# A Redis database no other test uses: the stack's worker consumes the default queue.
REDIS_URL = os.environ.get("STACK_REDIS_URL", "redis://127.0.0.1:6379/14")
PROJECTION_TIMEOUT = 30.0

AGENT = """---
name: {name}
description: Reviews pull requests (stack test)
tools: Read, Grep
model: sonnet
---
{body}"""


# ------------------------------------------------------------------------------
# What docker-compose.yml and .env.example say
# ------------------------------------------------------------------------------
def variables_read(path: Path) -> set[str]:
    return set(re.findall(r"\benv\.\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", path.read_text()))


# ------------------------------------------------------------------------------
# Fast checks of the files (no services)
# ------------------------------------------------------------------------------
def test_env_example_documents_every_variable_the_settings_and_gunicorn_read():
    read = variables_read(ROOT / "project" / "settings.py") | variables_read(
        ROOT / "project" / "gunicorn.conf.py"
    )
    assert "DATABASE_URL" in read and "GUNICORN_BIND" in read  # the pattern finds them
    assert read - documented_variables() == set()


def test_compose_starts_the_app_after_a_successful_migration_and_only_on_healthy_services():
    services = compose_services()
    assert set(services) == {"db", "redis", "migrate", "web", "worker", "beat"}
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("web", "worker", "beat"):
        service = services[name]
        assert service["restart"] == "unless-stopped"
        assert service["env_file"] == ".env"
        assert service["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "redis": {"condition": "service_healthy"},
        }
        assert service["healthcheck"]["test"]
    for name in ("db", "redis"):
        assert services[name]["healthcheck"]["test"]
    assert "stop_grace_period" in services["web"] and "stop_grace_period" in services["worker"]


# ------------------------------------------------------------------------------
# The stack's own database and Redis database
# ------------------------------------------------------------------------------
@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    try:
        pg_admin("SELECT 1")
    except psycopg.Error as error:
        _missing(f"needs PostgreSQL at {PG_URL} ({error.__class__.__name__})")
    broker = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    broker.flushdb()

    database = f"stack_test_{uuid.uuid4().hex[:12]}"
    port = free_port()
    env = stack_environment(
        database_url=f"{PG_URL}/{database}",
        redis_url=REDIS_URL,
        port=port,
        secret_key=secrets.token_urlsafe(50),
    )
    pg_admin(f'CREATE DATABASE "{database}"')
    stack = Stack(env=env, database=database, port=port, logs=tmp_path, http=Http(port))
    try:
        yield stack
    finally:
        for process in stack.processes:
            if process.running():
                process.kill_all()
        stack.print_logs()  # pytest shows what teardown prints only when the test failed
        pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        broker.flushdb()
        broker.close()


# ------------------------------------------------------------------------------
# The stack test
# ------------------------------------------------------------------------------
def _task_succeeded_lines(process: Process, task: str, request_id: str) -> list[dict[str, Any]]:
    """The worker's JSON lines saying `task` succeeded while it carried `request_id`."""
    return [
        line
        for line in process.json_lines()
        if line.get("task_name") == task
        and line.get("request_id") == request_id
        and "succeeded" in line.get("message", "")
    ]


def _projections(http: Http) -> dict[str, dict[str, Any]]:
    status, _, body = http("GET", "/api/v1/projections/")
    assert status == 200, body
    return {row["name"]: row for row in body["results"]}


@pytest.mark.redis
def test_compose_stack_serves_the_api_and_the_worker_catches_up_after_an_outage(stack: Stack):
    started = time.monotonic()
    http = stack.http

    # migrate (the one-shot service), then an admin user and a token, as an operator would.
    stack.run(compose_command("migrate", stack.env))
    admin_env = {**stack.env, "DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(16)}
    stack.manage(
        "createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.invalid", env=admin_env
    )
    http.token = stack.manage("create_api_token", "ops", "--days", "1").strip()
    setup_seconds = time.monotonic() - started

    web, worker, beat = stack.start("web"), stack.start("worker"), stack.start("beat")
    stack.wait_for(lambda: healthy(http), what="web answers /healthz")
    stack.wait_for(lambda: "ready." in worker.log(), what="worker ready")
    stack.wait_for(lambda: "beat: Starting" in beat.log(), what="beat started")
    boot_seconds = time.monotonic() - started - setup_seconds

    # Plain HTTP works as configured by .env.example: no redirect to https, no HSTS, cookies
    # that travel over http (the admin's login form needs its CSRF cookie back).
    status, headers, _ = http("GET", "/admin/login/")
    assert status == 200
    assert "Strict-Transport-Security" not in headers
    cookies = headers.get_all("Set-Cookie") or []
    assert any(c.startswith("csrftoken=") for c in cookies) and not any("Secure" in c for c in cookies)
    status, _, ready = http("GET", "/readyz")
    assert status == 200 and ready["checks"]["broker"]["ok"] and ready["checks"]["database"]["ok"]

    # Create and revise over the API, each request with its own id.
    name = f"stack-{uuid.uuid4().hex[:8]}"
    create_id, revise_id = f"stack-create-{uuid.uuid4().hex}", f"stack-revise-{uuid.uuid4().hex}"
    status, headers, created = http(
        "POST",
        "/api/v1/agents/",
        body={"content": AGENT.format(name=name, body="Review.\n"), "reason": "first"},
        headers={"X-Request-ID": create_id},
    )
    assert status == 201, created
    assert created["revision"] == 1 and headers["X-Request-ID"] == create_id
    status, headers, revised = http(
        "PUT",
        f"/api/v1/agents/{name}/",
        body={"content": AGENT.format(name=name, body="Review.\nCheck the tests too.\n"), "reason": "tests"},
        headers={"If-Match": headers["ETag"], "X-Request-ID": revise_id},
    )
    assert status == 200, revised
    assert revised["revision"] == 2 and headers["ETag"] == '"2"'
    status, _, current = http("GET", f"/api/v1/agents/{name}/")
    assert status == 200 and current["revision"] == 2
    status, _, diff = http("GET", f"/api/v1/agents/{name}/diff/?from=1&to=2")
    assert status == 200, diff
    assert (diff["from"]["revision"], diff["to"]["revision"], diff["identical"]) == (1, 2, False)
    assert (diff["body"]["additions"], diff["body"]["deletions"]) == (1, 0)

    # Each write brought the views up to itself in its own transaction: no lag, and no
    # catch-up queued for the worker (a task's log line would carry the request's id; the
    # rebuild below shows one that does).
    assert all(row["lag_events"] == 0 for row in _projections(http).values())
    access = [line for line in web.json_lines() if line.get("logger") == "gunicorn.access"]
    assert any(
        line["request_id"] == revise_id and line["http"]["method"] == "PUT" and line["http"]["status"] == 200
        for line in access
    ), access[-5:]

    # The worker goes away: SIGTERM is a warm shutdown, exit 0, no pool process left behind.
    code, left = worker.stop()
    assert code in CLEAN_EXIT and not left, (code, left)
    assert "Warm shutdown" in worker.log()
    for request in (create_id, revise_id):
        assert not _task_succeeded_lines(worker, "events.tasks.projections_catch_up", request)

    # While it is gone: a rebuild asked for over HTTP waits in Redis, and a write from the
    # command line with read-your-writes off (a bulk import) is stored but not projected.
    rebuild_id = f"stack-rebuild-{uuid.uuid4().hex}"
    before = _projections(http)["agents.revisions"]
    status, _, queued = http(
        "POST", "/api/v1/projections/agents.revisions/rebuild/", headers={"X-Request-ID": rebuild_id}
    )
    assert status == 202 and queued["queued"], queued
    cli_env = {**stack.env, "PROJECTION_READ_YOUR_WRITES": "0"}
    content = AGENT.format(name=name, body="Review.\nCheck the tests too.\nAnd the docs.\n")
    stack.manage(
        "shell",
        "-c",
        "import uuid\n"
        "from agents_app.services import ChangeContext, agent_revise\n"
        f"change = agent_revise(agent_id=uuid.UUID({created['id']!r}), content={content!r},"
        " context=ChangeContext(actor='import', source='cli', reason='written while the worker was down'))\n"
        "assert change.revision == 3, change\n",
        env=cli_env,
    )
    status, _, current = http("GET", f"/api/v1/agents/{name}/")
    assert status == 200 and current["revision"] == 2, current
    lagging = _projections(http)
    assert all(row["lag_events"] >= 1 for row in lagging.values()), lagging
    assert lagging["agents.revisions"]["last_run"] == before["last_run"], lagging  # not run yet

    # A worker comes back: it catches the views up and runs the rebuild queued for it.
    worker = stack.start("worker")
    stack.wait_for(lambda: "ready." in worker.log(), what="second worker ready")
    outage_seconds = stack.wait_for(
        lambda: (
            http("GET", f"/api/v1/agents/{name}/")[2]["revision"] == 3
            and all(row["lag_events"] == 0 for row in _projections(http).values())
        ),
        what="the views caught up by the restarted worker",
        timeout=PROJECTION_TIMEOUT,
    )
    stack.wait_for(
        lambda: (_projections(http)["agents.revisions"]["last_run"] or {}).get("result") == "ok",
        what="the queued rebuild ran",
        timeout=PROJECTION_TIMEOUT,
    )
    assert _projections(http)["agents.revisions"]["generation"] > before["generation"]
    stack.wait_for(
        lambda: _task_succeeded_lines(worker, "events.tasks.projection_rebuild_task", rebuild_id),
        what="the rebuild's log line carries the id of the request that asked for it",
        timeout=5,
    )
    status, _, history = http("GET", f"/api/v1/agents/{name}/revisions/")
    assert status == 200 and [row["revision"] for row in history["results"]] == [1, 2, 3]
    status, _, diff = http("GET", f"/api/v1/agents/{name}/diff/?from=2&to=3")
    assert status == 200 and diff["body"]["additions"] == 1, diff

    # Everything stops cleanly on SIGTERM, as `docker compose stop` does it.
    for process in (web, worker, beat):
        code, left = process.stop()
        assert code in CLEAN_EXIT, f"{process.name} exited {code}:\n{process.log()[-5000:]}"
        assert not left, f"{process.name} left {left} running"
    assert "Shutting down: Master" in web.log()
    print(
        f"setup {setup_seconds:.1f} s, boot {boot_seconds:.1f} s, caught up {outage_seconds:.1f} s after the"
        f" worker was back; total {time.monotonic() - started:.1f} s"
    )
