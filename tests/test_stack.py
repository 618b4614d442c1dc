"""The docker-compose stack, proved without Docker.

There is no Docker engine on the CI machine, so the test starts what docker-compose.yml
starts, as it starts it: the `command` of migrate, web, worker and beat read from the
compose file, with the environment of .env.example (only the addresses of PostgreSQL and
Redis, the port, and the secret differ), against a PostgreSQL database of its own
(`stack_test_<random>`, dropped afterwards, whichever database the rest of the suite uses)
and Redis database 14 (flushed before and after). It then talks to the stack over HTTP only,
like a client, with one exception: a write from the command line with read-your-writes off,
like a bulk import, because every API write brings the views up to date itself.

docker-compose.yml itself is validated by `docker-compose config` in .ci/run.
"""

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg
import pytest
import redis
import yaml

from tests.conftest import _missing

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("STACK_PG_URL", "postgres://postgres@127.0.0.1:5432")
# A Redis database no other test uses: the stack's worker consumes the default queue.
REDIS_URL = os.environ.get("STACK_REDIS_URL", "redis://127.0.0.1:6379/14")
START_TIMEOUT = 40.0
PROJECTION_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
CLEAN_EXIT = (0, -signal.SIGTERM)  # exited by itself after SIGTERM, or by the signal

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
def compose_services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def example_env() -> dict[str, str]:
    """The variables .env.example sets (not the commented-out ones), as docker-compose reads them."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def documented_variables() -> set[str]:
    """Every variable .env.example names, set or commented out (`# NAME=`)."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def variables_read(path: Path) -> set[str]:
    return set(re.findall(r"\benv\.\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", path.read_text()))


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def compose_command(service: str, env: dict[str, str]) -> list[str]:
    """The service's command with ${VAR:-default} filled in, run from this virtualenv."""
    argv = [
        _INTERPOLATION.sub(lambda m: env.get(m[1]) or m[2] or "", arg)
        for arg in compose_services()[service]["command"]
    ]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return [str(Path(sys.executable).parent / argv[0]), *argv[1:]]


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
# Processes
# ------------------------------------------------------------------------------
def _children(pid: int) -> set[int]:
    """Every descendant of `pid` (gunicorn's workers, the worker's pool processes)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    log_file: TextIO | None = None
    stopped: bool = False  # stopped on purpose: not a crash

    def start(self) -> None:
        self.log_file = self.log_path.open("a")
        self.popen = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def json_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):  # a line cut by a process being killed
                    lines.append(json.loads(line))
        return lines

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> tuple[int | None, set[int]]:
        """SIGTERM, wait; (exit code, descendants still alive afterwards). Kills on timeout."""
        if self.popen is None:
            return None, set()
        self.stopped = True
        children = _children(self.popen.pid)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
                pytest.fail(f"{self.name} did not stop {timeout} s after SIGTERM:\n{self.log()[-5000:]}")
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.log_file is not None:
            self.log_file.close()
        return self.popen.returncode, {pid for pid in children if _alive(pid)}

    def kill_all(self) -> None:
        """Teardown after a failure: nothing of this process may outlive the test."""
        if self.popen is None:
            return
        for pid in [self.popen.pid, *_children(self.popen.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        if self.log_file is not None:
            self.log_file.close()


class Http:
    """A client of the stack: urllib, no redirects followed, errors returned, not raised."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = ""
        self.opener = urllib.request.build_opener(self._NoRedirect)

    def __call__(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, Any]:
        headers = dict(headers or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=30) as response:
                status, response_headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, response_headers, raw = error.code, error.headers, error.read()
        kind = response_headers.get("Content-Type", "")
        return status, response_headers, json.loads(raw) if "json" in kind and raw else raw


@dataclass
class Stack:
    env: dict[str, str]
    database: str
    port: int
    logs: Path
    http: Http
    processes: list[Process] = field(default_factory=list)

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> str:
        """Run a command to its end with the stack's environment; its stdout."""
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{argv[1:3]} exited {done.returncode}:\n{done.stderr[-5000:]}"
        return done.stdout

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        return self.run([sys.executable, "manage.py", *args], env=env)

    def start(self, service: str) -> Process:
        number = sum(1 for process in self.processes if process.name.startswith(service)) + 1
        process = Process(
            f"{service}-{number}",
            compose_command(service, self.env),
            self.env,
            self.logs / f"{service}-{number}.log",
        )
        self.processes.append(process)
        process.start()
        return process

    def wait_for(self, check: Callable[[], Any], *, what: str, timeout: float = START_TIMEOUT) -> float:
        """Seconds until check() is truthy; fail if it is not in time or a process died (logs at teardown)."""
        started = time.monotonic()
        while True:
            if check():
                return time.monotonic() - started
            for process in self.processes:
                if process.popen is not None and process.popen.poll() is not None and not process.stopped:
                    pytest.fail(
                        f"{process.name} exited with {process.popen.returncode} while waiting for {what}"
                    )
            if time.monotonic() - started > timeout:
                pytest.fail(f"{what}: not after {timeout} s")
            time.sleep(0.1)

    def print_logs(self) -> None:
        for process in self.processes:
            code = process.popen.returncode if process.popen else None
            print(f"----- {process.name}: {' '.join(process.argv)} (exit {code})")
            print(process.log()[-20000:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin(sql: str) -> None:
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True, connect_timeout=3) as connection:
        connection.execute(sql)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    try:
        _admin("SELECT 1")
    except psycopg.Error as error:
        _missing(f"needs PostgreSQL at {PG_URL} ({error.__class__.__name__})")
    broker = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    broker.flushdb()

    database = f"stack_test_{uuid.uuid4().hex[:12]}"
    port = _free_port()
    documented = documented_variables()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in documented and not key.startswith(("CELERY_", "DJANGO_", "POSTGRES_"))
    }
    env.update(example_env())
    env.update(
        DATABASE_URL=f"{PG_URL}/{database}",
        REDIS_URL=REDIS_URL,
        SECRET_KEY=secrets.token_urlsafe(50),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        # Smaller than the defaults (2 and one per CPU): the machine is shared.
        WEB_CONCURRENCY="2",
        CELERY_WORKER_CONCURRENCY="2",
        PYTHONUNBUFFERED="1",
    )
    _admin(f'CREATE DATABASE "{database}"')
    stack = Stack(env=env, database=database, port=port, logs=tmp_path, http=Http(port))
    try:
        yield stack
    finally:
        for process in stack.processes:
            if process.running():
                process.kill_all()
        stack.print_logs()  # pytest shows what teardown prints only when the test failed
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
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


def _healthy(http: Http) -> bool:
    try:
        return http("GET", "/healthz")[0] == 200
    except OSError:  # not listening yet
        return False


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
    stack.wait_for(lambda: _healthy(http), what="web answers /healthz")
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

    # Each write queued a catch-up on Redis; the worker ran it, and its log line carries the
    # id of the request that queued it (before_task_publish -> headers -> task_prerun).
    stack.wait_for(
        lambda: (
            _task_succeeded_lines(worker, "events.tasks.projections_catch_up", revise_id)
            and _task_succeeded_lines(worker, "events.tasks.projections_catch_up", create_id)
        ),
        what="the worker's log shows the catch-ups of both requests",
        timeout=PROJECTION_TIMEOUT,
    )
    access = [line for line in web.json_lines() if line.get("logger") == "gunicorn.access"]
    assert any(
        line["request_id"] == revise_id and line["http"]["method"] == "PUT" and line["http"]["status"] == 200
        for line in access
    ), access[-5:]

    # The worker goes away: SIGTERM is a warm shutdown, exit 0, no pool process left behind.
    code, left = worker.stop()
    assert code in CLEAN_EXIT and not left, (code, left)
    assert "Warm shutdown" in worker.log()

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
