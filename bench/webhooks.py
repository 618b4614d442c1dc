"""Webhook figures on PostgreSQL + Redis with a real Celery worker (issue 17).

    python -m bench.webhooks [--events 1000] [--subscriptions 10] [--rate 50]

1. Latency: one subscription to a local receiver; `--events` revisions written at `--rate`
   per second; for each event, the time from the writer's commit (the service call returned)
   to the receiver having answered it. Median, p90, p99, max.
2. Write rate, same run: `--events` revisions as fast as one writer can, first with no
   active subscription, then with `--subscriptions` active ones being delivered meanwhile;
   then how long the worker took to deliver everything to all of them, and whether every
   receiver got every event once and in order.

After each write the bench calls webhooks_wake(), which is exactly what the web process's
WebhookWakeMiddleware does after a write request; a thread plays beat (webhooks_dispatch
every second), as the beat schedule does in production. The worker is `celery -A project
worker` (prefork, --concurrency 2) on a queue of its own.

Creates its own database (bench_webhooks_<pid>) on PG_URL (default
postgres://postgres@127.0.0.1:5432), uses Redis at BENCH_REDIS_URL (default
redis://127.0.0.1:6379/7) and drops the database at the end. The machines are shared: only
same-run comparisons mean much.
"""

import argparse
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import redis

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    """Answers 200 at once; records when it answered each (path, position)."""

    def __init__(self) -> None:
        self.answered: dict[tuple[str, int], float] = {}
        self.order: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                import json

                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                position = json.loads(body)["data"]["position"]
                # The order on arrival, before answering: the sender cannot send the next
                # event before it has this answer (recorded after answering, two handler
                # threads could record in either order).
                with receiver.lock:
                    receiver.order.setdefault(self.path, []).append(position)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.wfile.flush()
                now = time.monotonic()
                with receiver.lock:
                    receiver.answered.setdefault((self.path, position), now)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path}"


def document(name: str, revision: int) -> str:
    body = "\n".join(f"Line {i}: guidance, revision {revision if i % 20 == 0 else 0}." for i in range(40))
    return f"---\nname: {name}\ndescription: Benchmark agent\ntools: Read, Grep\n---\n{body}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50.0, help="writes per second in the latency run")
    args = parser.parse_args()

    database = f"bench_webhooks_{os.getpid()}"
    queue = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    env = {
        "DATABASE_URL": f"{PG_URL}/{database}",
        "REDIS_URL": REDIS_URL,
        "DEBUG": "1",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_ALLOW_HTTP": "1",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "BENCH_QUEUE": queue,
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from project.celery import app as celery_app

    celery_app.conf.task_default_queue = queue
    worker = None
    log = tempfile.NamedTemporaryFile(prefix="bench-worker-", suffix=".log", delete=False)  # noqa: SIM115
    try:
        call_command("migrate", verbosity=0)
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.webhooks_worker",
                "worker",
                "--concurrency=2",
                "-Q",
                queue,
                "-n",
                f"{queue}@%h",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        time.sleep(6)  # the worker starts; a task queued before it is ready waits in Redis anyway
        run(args)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
        connection.close()
        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(*client.scan_iter(match=f"{queue}*"), f"_kombu.binding.{queue}")
        print(f"(worker log: {log.name})")


def _beat(stop: threading.Event) -> None:
    from django.db import connection

    from agents_app.webhooks.services import webhooks_dispatch

    while not stop.wait(1.0):
        webhooks_dispatch()
    connection.close()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _wait(check, timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not delivered after {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def run(args: argparse.Namespace) -> None:
    from agents_app.services import ChangeContext, agent_create, agent_revise
    from agents_app.webhooks.models import WebhookSubscription
    from agents_app.webhooks.services import webhook_create, webhooks_wake

    context = ChangeContext(actor="bench", source="system", reason="bench")
    receiver = Receiver()
    stop = threading.Event()
    threading.Thread(target=_beat, args=(stop,), daemon=True).start()

    # 1. Latency, one subscription, paced writes.
    webhook_create(url=receiver.url("latency"), event_types=["*"])
    agent = agent_create(content=document("bench-latency", 0), context=context)
    committed: dict[int, float] = {}
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    for revision in range(1, args.events + 1):
        change = agent_revise(
            agent_id=agent.agent_id, content=document("bench-latency", revision), context=context
        )
        committed[change.position] = time.monotonic()
        webhooks_wake()
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    _wait(lambda: all(("/latency", p) in receiver.answered for p in committed), timeout=120)
    latencies = [(receiver.answered[("/latency", p)] - t) * 1000 for p, t in committed.items()]
    in_order = receiver.order["/latency"] == sorted(receiver.order["/latency"])
    print(f"latency over {len(latencies)} events at {args.rate:g} writes/s, 1 subscription:")
    print(
        f"  median {statistics.median(latencies):.1f} ms, p90 {_percentile(latencies, 90):.1f} ms, "
        f"p99 {_percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms; in order: {in_order}"
    )
    WebhookSubscription.objects.update(active=False)

    # 2. Write rate: none active, then N active (delivered while the writes go on).
    def writes(name: str) -> tuple[float, list[int]]:
        target = agent_create(content=document(name, 0), context=context)
        positions = []
        started = time.perf_counter()
        for revision in range(1, args.events + 1):
            change = agent_revise(agent_id=target.agent_id, content=document(name, revision), context=context)
            positions.append(change.position)
            webhooks_wake()
        return args.events / (time.perf_counter() - started), positions

    rate_none, _ = writes("bench-none")
    for n in range(args.subscriptions):
        webhook_create(url=receiver.url(f"sub{n}"), event_types=["*"])
    started = time.monotonic()
    rate_subscribed, positions = writes("bench-subscribed")
    paths = [f"/sub{n}" for n in range(args.subscriptions)]
    drained = _wait(lambda: all((path, positions[-1]) in receiver.answered for path in paths), timeout=600)
    total = time.monotonic() - started
    received = [receiver.order[path] for path in paths]
    in_order = all(order == sorted(order) for order in received)
    missing = sum(len(set(positions) - set(order)) for order in received)
    duplicates = sum(len(order) - len(set(order)) for order in received)
    print(f"write rate, {args.events} revisions by one writer, same run:")
    print(f"  no active subscription: {rate_none:.0f} writes/s")
    print(
        f"  {args.subscriptions} active subscriptions: {rate_subscribed:.0f} writes/s "
        f"({rate_subscribed / rate_none:.0%} of the first)"
    )
    print(
        f"  all {args.subscriptions} x {args.events} deliveries done {total:.1f} s after the first write "
        f"({drained:.1f} s after the last); in order: {in_order}, missing: {missing}, "
        f"sent twice: {duplicates}"
    )
    stop.set()


if __name__ == "__main__":
    main()
