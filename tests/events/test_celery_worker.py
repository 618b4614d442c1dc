"""Projections run by a real Celery worker process, over real Redis and PostgreSQL.

The test process publishes to Redis (not eager) on a queue of its own, with the writer's
inline read-your-writes catch-up turned off, so the only thing that can bring the views up
to date is the worker started here. Then: a write made while no worker runs is kept in
Redis and applied when one starts, and a write made while the broker is unreachable still
returns quickly and (read-your-writes on) is visible at once.

Each test uses its own queue name in Redis DB 15 (TEST_REDIS_URL) and deletes only the
keys of that queue afterwards.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from kombu import pools

from agents_app.exceptions import AgentNotFound
from agents_app.selectors import agent_get, revision_list
from agents_app.services import agent_create, agent_revise
from events.selectors import stream_read
from project.celery import app as celery_app
from tests.conftest import TEST_REDIS_URL

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

WORKER_START_TIMEOUT = 30.0
PROJECTION_TIMEOUT = 20.0
WRITE_LIMIT_SECONDS = 10.0


# ------------------------------------------------------------------------------
# Redis queue and the test process's Celery app
# ------------------------------------------------------------------------------
@pytest.fixture
def queue() -> Iterator[str]:
    """A queue name used by this test only; its Redis keys are deleted afterwards."""
    name = f"agent-registry-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        # The list holding the messages (and kombu's priority sub-lists, "<name>\x06\x16N"),
        # and the binding tables of the exchange named after the queue: all named after it.
        # (kombu's shared "_kombu.binding_deadlines" and the pidbox tables are left alone:
        # other workers on this database use them and kombu expires them itself.)
        keys = [
            *client.scan_iter(match=f"{name}*"),
            f"_kombu.binding.{name}",
            f"_kombu.binding_permanent.{name}",
        ]
        client.delete(*keys)
    finally:
        client.close()


def _drop_broker_pools() -> None:
    """Forget the app's cached broker connections so the next publish uses the current broker_url.

    The app caches its connection pool (app._pool) and producer pool (app.amqp._producer_pool),
    and kombu keeps process-wide pools keyed by URL; close ours and drop them from kombu's
    groups, so a later user of the same URL gets a fresh pool instead of a closed one.
    """
    connection_pool, celery_app._pool = celery_app._pool, None
    producer_pool, celery_app.amqp._producer_pool = celery_app.amqp._producer_pool, None
    for pool in (producer_pool, connection_pool):
        if pool is None:
            continue
        with contextlib.suppress(Exception):
            pool.force_close_all()
        for group in (pools.producers, pools.connections):
            for key, value in list(group.items()):
                if value is pool:
                    dict.__delitem__(group, key)


@contextlib.contextmanager
def _celery_publishing_to(broker_url: str, queue_name: str) -> Iterator[None]:
    """Make the test process publish tasks (not run them eagerly) to `broker_url`/`queue_name`."""
    changes = {"task_always_eager": False, "broker_url": broker_url, "task_default_queue": queue_name}
    saved = {key: celery_app.conf[key] for key in changes}
    _drop_broker_pools()
    celery_app.conf.update(changes)
    try:
        yield
    finally:
        _drop_broker_pools()
        celery_app.conf.update(saved)
        celery_app.amqp.queues.pop(queue_name, None)  # declared on first publish; forget it


@pytest.fixture
def publish_to_redis(queue: str) -> Iterator[str]:
    with _celery_publishing_to(TEST_REDIS_URL, queue):
        yield queue


@pytest.fixture
def no_inline_catch_up(settings, monkeypatch) -> list[str]:
    """Turn off read-your-writes, and record any catch-up run in this process (there must be none)."""
    import events.runner
    import events.tasks

    settings.PROJECTION_READ_YOUR_WRITES = False
    calls: list[str] = []
    real_catch_up_all = events.tasks.projections_catch_up_all
    real_wait = events.runner.projections_wait

    def catch_up_all(*args, **kwargs):
        calls.append("projections_catch_up_all")
        return real_catch_up_all(*args, **kwargs)

    def wait(*args, **kwargs):
        calls.append("projections_wait")
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(events.tasks, "projections_catch_up_all", catch_up_all)
    monkeypatch.setattr(events.runner, "projections_wait", wait)
    return calls


# ------------------------------------------------------------------------------
# The worker process
# ------------------------------------------------------------------------------
def _test_database_url() -> str:
    """The URL of the test database pytest-django created (the worker must use the same one)."""
    db = connection.settings_dict
    user = quote(db["USER"] or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or "5432"
    return f"postgres://{user}{password}@{host}:{port}/{quote(db['NAME'], safe='')}"


class Worker:
    """`celery -A project worker` consuming only `queue`, with its output in a temporary file."""

    def __init__(self, queue_name: str) -> None:
        self.queue = queue_name
        self.hostname = f"{queue_name}@%h"
        self._log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix="celery-worker-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log_file.name)
        env = dict(os.environ)
        for key in (
            "CELERY_BROKER_URL",
            "CELERY_BROKER_READ_URL",
            "CELERY_BROKER_WRITE_URL",
            "CELERY_TASK_ALWAYS_EAGER",
            "CELERY_RESULT_BACKEND",
        ):
            env.pop(key, None)
        env.update(
            DATABASE_URL=_test_database_url(),
            REDIS_URL=TEST_REDIS_URL,
            DEBUG="1",
            CONN_MAX_AGE="0",
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "project",
                "worker",
                "--loglevel=INFO",
                "--pool=solo",
                "--concurrency=1",
                "-Q",
                queue_name,
                "-n",
                self.hostname,
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = WORKER_START_TIMEOUT) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited with {self.process.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return time.monotonic() - started
            time.sleep(0.1)
        pytest.fail(f"the worker was not ready after {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM); kill it if it has not gone after 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log_file.close()

    def catch_ups_succeeded(self) -> int:
        """How many projections_catch_up tasks the worker logged as succeeded."""
        return sum(
            1
            for line in self.log().splitlines()
            if "Task events.tasks.projections_catch_up[" in line and " succeeded in " in line
        )


@pytest.fixture
def start_worker(queue: str) -> Iterator[Callable[[], Worker]]:
    """Start a worker on this test's queue (ready when returned); stopped and its log printed at teardown.

    pytest shows what teardown prints only when the test failed, so the log is there when needed.
    """
    workers: list[Worker] = []

    def start() -> Worker:
        worker = Worker(queue)
        workers.append(worker)
        seconds = worker.wait_ready()
        print(f"worker ready in {seconds:.2f} s")
        return worker

    yield start
    for worker in workers:
        worker.stop()
        print(f"----- worker log ({worker.log_path}, exit {worker.process.returncode}) -----")
        print(worker.log())
        worker.log_path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------
def _wait_until(
    check: Callable[[], bool], *, what: str, worker: Worker | None = None, timeout: float = PROJECTION_TIMEOUT
) -> float:
    """Seconds until `check()` is true; fail (with the worker's log) after `timeout`."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            log = worker.log() if worker is not None else "(no worker)"
            pytest.fail(f"{what}: not true after {timeout} s\n----- worker log -----\n{log}")
        time.sleep(0.05)


def _current(agent_id: uuid.UUID):
    try:
        return agent_get(agent_id=agent_id)
    except AgentNotFound:
        return None


def _current_revision(agent_id: uuid.UUID) -> int | None:
    row = _current(agent_id)
    return None if row is None else row.revision


def _projected(agent_id: uuid.UUID, revision: int) -> bool:
    """Both views show `revision`: the current row, and every revision row up to it.

    The worker applies one projection after the other (each in its own transaction), so
    the current view may be ahead of the revisions view for a moment.
    """
    return _current_revision(agent_id) == revision and list(
        revision_list(agent_id=agent_id).values_list("revision", flat=True)
    ) == list(range(1, revision + 1))


def _queue_length(name: str) -> int:
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        return client.llen(name)
    finally:
        client.close()


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------
def test_worker_applies_the_catch_up_queued_after_a_write(
    publish_to_redis, no_inline_catch_up, start_worker, context, make_agent_text, unique_name
):
    worker = start_worker()

    started = time.monotonic()
    created = agent_create(content=make_agent_text(unique_name), context=context)
    write_seconds = time.monotonic() - started
    projected = _wait_until(
        lambda: _projected(created.agent_id, 1), what="created agent in both views", worker=worker
    )

    revised = agent_revise(
        agent_id=created.agent_id,
        content=make_agent_text(unique_name, body="Review very carefully.\n"),
        context=context,
    )
    assert revised.revision == 2
    projected_revision = _wait_until(
        lambda: _projected(created.agent_id, 2), what="revision 2 in both views", worker=worker
    )
    print(
        f"write {write_seconds:.3f} s; worker projected the create in {projected:.3f} s "
        f"and the revision in {projected_revision:.3f} s"
    )

    row = agent_get(agent_id=created.agent_id)
    assert row.name == unique_name
    assert row.body == "Review very carefully.\n"
    assert [r.revision for r in revision_list(agent_id=created.agent_id)] == [1, 2]
    # Only the worker can have done it: nothing ran a catch-up in this process.
    assert no_inline_catch_up == []
    _wait_until(
        lambda: worker.catch_ups_succeeded() >= 2,
        what="two catch-up tasks succeeded in the worker",
        worker=worker,
        timeout=5,
    )


def test_write_with_no_worker_is_applied_when_a_worker_starts(
    publish_to_redis, no_inline_catch_up, start_worker, context, make_agent_text, unique_name
):
    queue_name = publish_to_redis
    started = time.monotonic()
    created = agent_create(content=make_agent_text(unique_name), context=context)
    write_seconds = time.monotonic() - started
    assert write_seconds < 3, f"a write with no worker took {write_seconds:.2f} s"

    # Nothing has applied it yet, and the catch-up waits in Redis for a worker.
    assert _current(created.agent_id) is None
    assert _queue_length(queue_name) >= 1

    worker = start_worker()
    projected = _wait_until(
        lambda: _projected(created.agent_id, 1),
        what="agent in view after the worker started",
        worker=worker,
    )
    print(
        f"write with no worker {write_seconds:.3f} s; view caught up {projected:.3f} s after the worker "
        f"was ready"
    )
    assert agent_get(agent_id=created.agent_id).name == unique_name
    _wait_until(
        lambda: worker.catch_ups_succeeded() >= 1,
        what="catch-up succeeded in the worker",
        worker=worker,
        timeout=5,
    )
    _wait_until(lambda: _queue_length(queue_name) == 0, what="queue drained", worker=worker, timeout=5)
    assert no_inline_catch_up == []


def test_write_with_the_broker_down_succeeds_quickly_and_is_read_back(
    queue, settings, caplog, context, make_agent_text, unique_name
):
    settings.PROJECTION_READ_YOUR_WRITES = True
    broker_url = f"redis://127.0.0.1:{_closed_port()}/0"
    with _celery_publishing_to(broker_url, queue), caplog.at_level("WARNING", logger="events.runner"):
        started = time.monotonic()
        created = agent_create(content=make_agent_text(unique_name), context=context)
        create_seconds = time.monotonic() - started

        started = time.monotonic()
        agent_revise(
            agent_id=created.agent_id,
            content=make_agent_text(unique_name, body="Second.\n"),
            context=context,
        )
        revise_seconds = time.monotonic() - started

        # A bulk import: read-your-writes off, so the write leaves its event to the workers
        # and queues a catch-up for them, which cannot be sent.
        settings.PROJECTION_READ_YOUR_WRITES = False
        started = time.monotonic()
        imported = agent_revise(
            agent_id=created.agent_id,
            content=make_agent_text(unique_name, body="Third.\n"),
            context=context,
        )
        import_seconds = time.monotonic() - started

    print(
        f"broker down ({broker_url}): create {create_seconds:.3f} s, revise {revise_seconds:.3f} s,"
        f" import {import_seconds:.3f} s"
    )
    assert max(create_seconds, revise_seconds, import_seconds) < WRITE_LIMIT_SECONDS
    # The writes with read-your-writes on made the view current themselves, before they
    # returned, broker or not ...
    row = agent_get(agent_id=created.agent_id)
    assert (row.name, row.revision, row.body) == (unique_name, 2, "Second.\n")
    assert [r.revision for r in revision_list(agent_id=created.agent_id)] == [1, 2]
    # ... and the import is stored, its catch-up could not be queued (logged, not raised).
    assert imported.stream_version == 3
    assert [e.stream_version for e in stream_read(stream_id=created.agent_id)] == [1, 2, 3]
    assert "could not queue the projection catch-up" in caplog.text
