"""REST latency of a diff 100 revisions apart, next to a plain revision GET, through gunicorn.

    python -m bench.api_latency [--quick] [--keep] [--requests 400 --runs 3 --warmup 50 --block 100]

Creates its own database (bench_api_latency, dropped and recreated at start) on PG_URL
(default postgres://postgres@127.0.0.1:5432), stores one ~8 KB agent with 101 revisions
(each changing 1-3 body lines), starts gunicorn (2 sync workers) on a free 127.0.0.1 port
and measures with 8 client threads, one http.client connection each:

* diff JSON:    GET /api/v1/agents/<name>/diff/?from=1&to=101
* diff unified: the same with &format=unified
* revision GET: GET /api/v1/agents/<name>/revisions/101/

Warm-up, then runs, each in blocks of 100 requests per workload taking turns (order
rotated each block), so that all three see the same load on a shared machine. Latency is
per request as the client sees it, queueing included (8 clients, 2 workers). gunicorn's
sync workers close the connection after every response, so each request opens a new TCP
connection (http.client reopens it); the count is printed. Ratios to the plain GET are
the figures to compare: the machines are shared, only same-run comparisons mean much.
Fails (exit 1) if any response is not a 200 or not what was asked for. Stops gunicorn
and drops the database at the end, on error too (--keep keeps the database).
"""

import argparse
import http.client
import json
import logging
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
DATABASE = "bench_api_latency"
ROOT = Path(__file__).resolve().parent.parent
AGENT = "bench-latency"
REVISIONS = 101  # revision 1 and revision 101: 100 revisions apart
TARGET_BYTES = 8 * 1024
CLIENTS = 8
WORKERS = 2

VOCABULARY = (
    "agent review change diff test file function module error check security input output "
    "context repository branch commit patch line code style type import export config value "
    "request response handler query index cache lock event stream revision token user read "
    "write report summary finding severity risk owner reason example guidance step task"
)
WORDS = VOCABULARY.split()


# ----------------------------------------------------------------------------------------
# The document and its revisions
# ----------------------------------------------------------------------------------------
def _sentence(rng: random.Random, length: int) -> str:
    words: list[str] = []
    while len(" ".join(words)) < length:
        words.append(rng.choice(WORDS))
    return " ".join(words).capitalize() + "."


def _frontmatter() -> str:
    return (
        f"---\nname: {AGENT}\n"
        "description: Reviews pull requests for correctness, security and style; benchmark agent.\n"
        "tools: Read, Grep, Glob, Bash\nmodel: sonnet\n---\n"
    )


def _first_body(rng: random.Random) -> list[str]:
    """Markdown: sections of a heading, a paragraph and bullets, until the file is ~8 KB."""
    lines = [f"# {AGENT}", "", "You are a careful reviewer. Follow the steps below.", ""]
    section = 0
    while len(_frontmatter()) + sum(len(line) + 1 for line in lines) < TARGET_BYTES - 400:
        section += 1
        lines += [f"## Section {section}", "", _sentence(rng, 70), ""]
        lines += [f"- {_sentence(rng, rng.randint(40, 90))}" for _ in range(6)]
        lines.append("")
    return lines


def _revise(rng: random.Random, lines: list[str]) -> list[str]:
    """Rewrite 1-3 bullet or paragraph lines, keeping each about as long as it was."""
    lines = list(lines)
    candidates = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
    for index in rng.sample(candidates, rng.randint(1, 3)):
        old = lines[index]
        prefix = "- " if old.startswith("- ") else ""
        new = old
        while new == old:
            new = prefix + _sentence(rng, max(20, len(old) - len(prefix) - 4))
        lines[index] = new
    return lines


def documents(seed: int = 42) -> list[str]:
    """The content of revisions 1..REVISIONS."""
    rng = random.Random(seed)
    body = _first_body(rng)
    contents = []
    for _ in range(REVISIONS):
        contents.append(_frontmatter() + "\n".join(body) + "\n")
        body = _revise(rng, body)
    return contents


# ----------------------------------------------------------------------------------------
# Database and data
# ----------------------------------------------------------------------------------------
def _admin(sql: str) -> None:
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
        admin.execute(sql)


def setup_data() -> tuple[str, list[int]]:
    """Migrate, create a superuser, a token and the agent; return the token and the sizes."""
    import django

    django.setup()
    # Each write queues a catch-up task on the in-memory broker; kombu warns it has no hostname.
    logging.getLogger("kombu").setLevel(logging.ERROR)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from agents_app.services import ChangeContext, agent_create, agent_revise
    from agents_app.tokens import api_token_create
    from events.runner import projections_catch_up_all

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser(
        "bench", "bench@example.invalid", password=secrets.token_urlsafe(16)
    )
    _, token = api_token_create(user=user, days=1)
    context = ChangeContext(actor="bench", source="cli", reason="bench")
    contents = documents()
    agent = agent_create(content=contents[0], context=context)
    for content in contents[1:]:
        change = agent_revise(agent_id=agent.agent_id, content=content, context=context)
        assert change.changed
    assert change.revision == REVISIONS, change
    # Written with read-your-writes off: bring every projection up to the head before measuring.
    projections_catch_up_all()
    return token, [len(content.encode()) for content in contents]


# ----------------------------------------------------------------------------------------
# gunicorn
# ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gunicorn_path() -> str:
    sibling = Path(sys.executable).parent / "gunicorn"
    return str(sibling if sibling.exists() else ROOT / ".venv" / "bin" / "gunicorn")


def gunicorn_start(port: int, log, database: str = DATABASE) -> subprocess.Popen:
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="project.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0",
        DATABASE_URL=f"{PG_URL}/{database}",
        API_THROTTLE_USER="1000000/min",
        REDIS_URL="",  # self-contained: per-process cache, no broker (reads queue no tasks)
        LOG_LEVEL="WARNING",
    )
    command = [
        _gunicorn_path(),
        "project.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        f"--workers={WORKERS}",
        "--worker-class=sync",
        "--timeout=60",
        "--graceful-timeout=10",
        "--no-control-socket",  # gunicorn 27 would otherwise bind ~/.gunicorn/gunicorn.ctl
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def gunicorn_stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_healthy(process: subprocess.Popen, port: int, log_path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}:\n{Path(log_path).read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                connection.close()
                return
            connection.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"gunicorn did not answer /healthz in {timeout:.0f} s:\n{Path(log_path).read_text()}")


# ----------------------------------------------------------------------------------------
# Client
# ----------------------------------------------------------------------------------------
@dataclass
class Workload:
    label: str
    path: str
    check: object  # (content_type, body) -> bool: the answer is what was asked for
    latencies: list[float] = field(default_factory=list)  # seconds, measured runs only
    seconds: float = 0.0  # wall time of the measured runs
    run_medians: list[float] = field(default_factory=list)


@dataclass
class Errors:
    count: int = 0
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, message: str) -> None:
        with self.lock:
            self.count += 1
            if len(self.samples) < 5:
                self.samples.append(message)


class Client:
    """One thread's connection; http.client reopens it when the server closes it."""

    def __init__(self, port: int, token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Connection": "keep-alive"}
        self.connects = 0

    def get(self, path: str) -> tuple[int, str, bytes]:
        if self.connection.sock is None:
            self.connects += 1
        try:
            self.connection.request("GET", path, headers=self.headers)
            response = self.connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            raise
        return response.status, response.getheader("Content-Type", ""), body


def run_phase(clients: list[Client], workload: Workload, requests: int, errors: Errors) -> list[float]:
    """`requests` GETs shared by the clients, all started together; per-request latencies."""
    shares = [requests // len(clients) + (i < requests % len(clients)) for i in range(len(clients))]
    results: list[list[float]] = [[] for _ in clients]
    barrier = threading.Barrier(len(clients) + 1)

    def work(index: int) -> None:
        client, out = clients[index], results[index]
        barrier.wait()
        for _ in range(shares[index]):
            started = time.perf_counter()
            try:
                status, content_type, body = client.get(workload.path)
            except (OSError, http.client.HTTPException) as exc:
                errors.add(f"{workload.label}: {exc!r}")
                continue
            out.append(time.perf_counter() - started)
            if status != 200:
                errors.add(f"{workload.label}: HTTP {status}: {body[:300]!r}")
            elif not workload.check(content_type, body):
                errors.add(f"{workload.label}: unexpected answer {content_type}: {body[:300]!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    workload.seconds += time.perf_counter() - started
    return [latency for out in results for latency in out]


def _is_json_diff(content_type: str, body: bytes) -> bool:
    if not content_type.startswith("application/json"):
        return False
    data = json.loads(body)
    return data["from"]["revision"] == 1 and data["to"]["revision"] == REVISIONS and not data["identical"]


def _is_unified(content_type: str, body: bytes) -> bool:
    return content_type.startswith("text/x-diff") and body.startswith(f"--- a/{AGENT}.md".encode())


def _is_revision(content_type: str, body: bytes) -> bool:
    return content_type.startswith("application/json") and json.loads(body)["revision"] == REVISIONS


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def measure(port: int, token: str, args: argparse.Namespace) -> tuple[list[Workload], int]:
    base = f"/api/v1/agents/{urllib.parse.quote(AGENT)}"
    workloads = [
        Workload("diff JSON", f"{base}/diff/?from=1&to={REVISIONS}", _is_json_diff),
        Workload("diff unified", f"{base}/diff/?from=1&to={REVISIONS}&format=unified", _is_unified),
        Workload("revision GET", f"{base}/revisions/{REVISIONS}/", _is_revision),
    ]
    clients = [Client(port, token) for _ in range(CLIENTS)]
    errors = Errors()

    # The projections must be at the head: the current agent is revision 101.
    status, _, body = clients[0].get(f"{base}/")
    if status != 200 or json.loads(body)["revision"] != REVISIONS:
        raise SystemExit(f"agent not at revision {REVISIONS} through the API: HTTP {status} {body[:300]!r}")

    for workload in workloads:
        run_phase(clients, workload, args.warmup, errors)
        workload.seconds = 0.0
    # Each run goes in blocks of `--block` requests per workload, the workloads taking turns
    # and the order rotating block after block: on a shared machine the load drifts within
    # minutes, and every workload should see the same drift for the ratios to mean something.
    turn = 0
    for _ in range(args.runs):
        run_latencies: dict[str, list[float]] = {workload.label: [] for workload in workloads}
        for start in range(0, args.requests, args.block):
            size = min(args.block, args.requests - start)
            for workload in workloads[turn:] + workloads[:turn]:
                latencies = run_phase(clients, workload, size, errors)
                workload.latencies += latencies
                run_latencies[workload.label] += latencies
            turn = (turn + 1) % len(workloads)
        for workload in workloads:
            workload.run_medians.append(statistics.median(run_latencies[workload.label]))
    for client in clients:
        client.connection.close()
    if errors.count:
        raise SystemExit(f"{errors.count} failed requests; first ones:\n" + "\n".join(errors.samples))
    return workloads, sum(client.connects for client in clients)


def report(workloads: list[Workload], args: argparse.Namespace) -> str:
    plain = workloads[-1]
    plain_median, plain_p99 = statistics.median(plain.latencies), _p99(plain.latencies)
    print(
        "\n| workload | requests | median ms | p99 ms | req/s | median / GET | p99 / GET | run medians ms |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    summary = []
    for workload in workloads:
        median, p99 = statistics.median(workload.latencies), _p99(workload.latencies)
        rate = len(workload.latencies) / workload.seconds
        runs = ", ".join(_ms(value) for value in workload.run_medians)
        print(
            f"| {workload.label} | {len(workload.latencies)} | {_ms(median)} | {_ms(p99)} | {rate:,.0f}"
            f" | {median / plain_median:.2f} | {p99 / plain_p99:.2f} | {runs} |"
        )
        summary.append(
            f"{workload.label} median {_ms(median)} ms (x{median / plain_median:.2f}),"
            f" p99 {_ms(p99)} ms (x{p99 / plain_p99:.2f}), {rate:,.0f} req/s"
        )
    return (
        f"api_latency ({args.runs}x{args.requests} req, {CLIENTS} clients, {WORKERS} workers): "
        + "; ".join(summary)
    )


# ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 requests per workload, 1 run")
    parser.add_argument("--requests", type=int, help="requests per workload per run (default 400)")
    parser.add_argument("--runs", type=int, help="measured runs per workload (default 3)")
    parser.add_argument("--warmup", type=int, help="warm-up requests per workload (default 50)")
    parser.add_argument("--block", type=int, help="requests per workload per turn (default 100)")
    parser.add_argument("--keep", action="store_true", help=f"keep the database {DATABASE}")
    args = parser.parse_args(argv)
    defaults = (60, 1, 8, 20) if args.quick else (400, 3, 50, 100)
    args.requests = args.requests or defaults[0]
    args.runs = args.runs or defaults[1]
    args.warmup = args.warmup or defaults[2]
    args.block = args.block or defaults[3]

    started = time.perf_counter()
    _admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{DATABASE}"')
    os.environ.update(
        DATABASE_URL=f"{PG_URL}/{DATABASE}",
        DEBUG="1",
        CELERY_TASK_ALWAYS_EAGER="0",
        PROJECTION_READ_YOUR_WRITES="0",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    process = None
    with tempfile.NamedTemporaryFile("w+", prefix="bench_gunicorn_", suffix=".log") as log:
        try:
            token, sizes = setup_data()
            from django.db import connection

            connection.close()
            print(
                f"database {DATABASE}: agent {AGENT}, {REVISIONS} revisions, revision 1 {sizes[0]:,} bytes,"
                f" revision {REVISIONS} {sizes[-1]:,} bytes; setup {time.perf_counter() - started:.1f} s"
            )
            port = _free_port()
            process = gunicorn_start(port, log)
            wait_healthy(process, port, log.name)
            print(f"gunicorn on 127.0.0.1:{port}, {WORKERS} sync workers; {CLIENTS} client threads")
            print(
                f"warm-up {args.warmup}, then {args.runs} run(s) of {args.requests} requests per workload,"
                f" in turns of {args.block}"
            )
            workloads, connects = measure(port, token, args)
            total = sum(len(workload.latencies) for workload in workloads)
            print(f"{total + 3 * args.warmup + 1:,} requests, 0 errors, {connects:,} TCP connections opened")
            summary = report(workloads, args)
        except BaseException:
            if process is not None and (text := Path(log.name).read_text()):
                print(f"gunicorn log (last 3000 characters):\n{text[-3000:]}", file=sys.stderr)
            raise
        finally:
            if process is not None:
                gunicorn_stop(process)
            if not args.keep:
                from django.db import connection

                connection.close()
                _admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    print(f"\n{summary}")
    print(f"runtime {time.perf_counter() - started:.1f} s")
    return summary


if __name__ == "__main__":
    main()
