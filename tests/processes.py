"""The stack's processes, started for tests as docker-compose.yml starts them, without Docker.

Shared by tests/test_stack.py and tests/reliability/: the `command` of each compose service
run from this virtualenv with the environment of .env.example, a `Process` around each
(logs in a file, SIGTERM or SIGKILL, the descendants it leaves), an HTTP client that returns
errors instead of raising them, PostgreSQL administration for the throwaway databases, and
a private `redis-server` for tests that must stop the broker without disturbing anyone else
on the machine's Redis.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg
import pytest
import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("STACK_PG_URL", "postgres://postgres@127.0.0.1:5432")
START_TIMEOUT = 40.0
STOP_TIMEOUT = 30.0
CLEAN_EXIT = (0, -signal.SIGTERM)  # exited by itself after SIGTERM, or by the signal


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


def stack_environment(*, database_url: str, redis_url: str, port: int, secret_key: str) -> dict[str, str]:
    """The environment docker-compose gives web, worker and beat (.env.example), for this machine.

    Only the addresses of PostgreSQL and Redis, the port and the secret differ from the file;
    whatever the calling shell sets for a documented variable (or a CELERY_/DJANGO_/POSTGRES_
    one) is left out, so a developer's environment cannot change what is tested.
    """
    documented = documented_variables()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in documented and not key.startswith(("CELERY_", "DJANGO_", "POSTGRES_"))
    }
    env.update(example_env())
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SECRET_KEY=secret_key,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        # Smaller than the defaults (2 and one per CPU): the machine is shared.
        WEB_CONCURRENCY="2",
        CELERY_WORKER_CONCURRENCY="2",
        PYTHONUNBUFFERED="1",
    )
    return env


# ------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------
def children(pid: int) -> set[int]:
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


def alive(pid: int) -> bool:
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
        descendants = children(self.popen.pid)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
                pytest.fail(f"{self.name} did not stop {timeout} s after SIGTERM:\n{self.log()[-5000:]}")
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in descendants) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.log_file is not None:
            self.log_file.close()
        return self.popen.returncode, {pid for pid in descendants if alive(pid)}

    def kill_all(self) -> None:
        """Teardown after a failure: nothing of this process may outlive the test."""
        if self.popen is None:
            return
        self.stopped = True
        for pid in [self.popen.pid, *children(self.popen.pid)]:
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

    def start(self, service: str, env: dict[str, str] | None = None) -> Process:
        number = sum(1 for process in self.processes if process.name.startswith(service)) + 1
        env = env or self.env
        process = Process(
            f"{service}-{number}",
            compose_command(service, env),
            env,
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_admin(sql: str) -> None:
    """Run one statement on the server's `postgres` database (CREATE/DROP DATABASE)."""
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True, connect_timeout=3) as connection:
        connection.execute(sql)


def healthy(http: Http) -> bool:
    try:
        return http("GET", "/healthz")[0] == 200
    except OSError:  # not listening yet
        return False


# ------------------------------------------------------------------------------
# A private Redis
# ------------------------------------------------------------------------------
class RedisServer:
    """`redis-server` on a free port of its own, no persistence: it can be stopped and started
    again on the same port (empty, as the compose stack's Redis without a volume comes back)."""

    def __init__(self, logs: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.log_path = logs / f"redis-{self.port}.log"
        self.popen: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db), socket_connect_timeout=1, socket_timeout=5)

    def start(self) -> None:
        assert self.binary is not None
        with self.log_path.open("a") as log:
            self.popen = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                with contextlib.closing(self.client()) as client:
                    if client.ping():
                        return
            except redis.RedisError:
                pass
            if self.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {self.port} did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes mid-conversation, with whatever it held."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
