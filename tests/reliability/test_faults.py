"""Faults injected into a running stack: after each, nothing acknowledged is lost and the views recover.

* The Celery worker killed (SIGKILL) in the middle of a projection rebuild: first only its
  pool process, then the whole worker.
* Redis killed while clients keep writing over HTTP, then started again on the same port.
* The database connection of a web worker terminated in the middle of an append, and just
  after one.

Each test starts the processes it needs on a database and a Redis of its own (conftest.py)
and compares the log, read with SQL, with what the clients were told.
"""

import contextlib
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.processes import children
from tests.reliability.conftest import ReliabilityStack, agent_content, request_id, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# The seeded history: SEED_AGENTS agents of SEED_REVISIONS revisions each, one agent's events
# after the other's (positions 1..30 are seeded-000's, 31..60 seeded-001's, ...).
SEED_AGENTS = 10
SEED_REVISIONS = 30
# A rebuild is stopped half-way, where the test chooses: at the first event of this agent, after
# the batches before it are applied (the worker replays REBUILD_BATCH_SIZE events a batch).
HELD_AGENT = 5
REBUILD_BATCH_SIZE = "50"
OUTAGE_WRITES = 3
VIEW_TABLES = {"agents.current": "agents_app_agentcurrent", "agents.revisions": "agents_app_agentrevision"}

# Each agent is created by the service (name claim and all), then its history appended in one
# call (a bulk import would do the same): a few queries per agent instead of a dozen per event.
# The catch-up queued after each commit is switched off here and run once at the end.
_SEED_SCRIPT = """
import os
import events.tasks
from agents_app import event_types
from agents_app.services import ChangeContext, agent_create
from events.runner import projections_catch_up_all
from events.services import event_append
from events.types import NewEvent

events.tasks.projections_catch_up.delay = lambda *args, **kwargs: None
context = ChangeContext(actor="seed", source="cli", reason="history for a long rebuild")
for number in range(int(os.environ["SEED_AGENTS"])):
    head = f"---\\nname: seeded-{number:03d}\\ndescription: Seeded for a long rebuild\\n---\\n"
    body = "line 1\\n"
    change = agent_create(content=head + body, context=context)
    history = []
    for revision in range(2, int(os.environ["SEED_REVISIONS"]) + 1):
        body += f"line {revision}\\n"
        data = {"content": head + body, "revision": revision}
        history.append(NewEvent(type=event_types.REVISED, data=data))
    event_append(stream_id=change.agent_id, expected_version=1, events=history, metadata=context.metadata())
projections_catch_up_all()
"""


def _seed(stack: ReliabilityStack) -> int:
    """Store SEED_AGENTS agents of SEED_REVISIONS revisions each, and project them."""
    started = time.monotonic()
    stack.manage(
        "shell",
        "-c",
        _SEED_SCRIPT,
        env={
            **stack.env,
            "REDIS_URL": "",
            "PROJECTION_READ_YOUR_WRITES": "0",
            "PROJECTION_BATCH_SIZE": "1000",
            "SEED_AGENTS": str(SEED_AGENTS),
            "SEED_REVISIONS": str(SEED_REVISIONS),
        },
    )
    head = stack.sql("SELECT max(position) AS head FROM events_event")[0]["head"]
    assert head == SEED_AGENTS * SEED_REVISIONS
    print(f"seeded {head} events in {time.monotonic() - started:.1f} s")
    return head


def _checkpoints(stack: ReliabilityStack, projection: str) -> list[dict[str, Any]]:
    return stack.sql(
        "SELECT generation, position, is_live FROM events_checkpoint WHERE projection = %s"
        " ORDER BY generation",
        [projection],
    )


def _runs(stack: ReliabilityStack, projection: str) -> list[dict[str, Any]]:
    return stack.sql(
        "SELECT id, result, events, finished_at FROM events_projectionrun WHERE projection = %s ORDER BY id",
        [projection],
    )


@contextlib.contextmanager
def _rebuild_held_half_way(stack: ReliabilityStack, projection: str) -> Iterator[int]:
    """Hold the next rebuild of `projection` at the first event of agent HELD_AGENT; the generation.

    The test writes, without committing, the row the replay will insert for that agent into the
    generation being built (a copy of the live one): the replay's INSERT (or COPY) then waits on the
    unique index for this transaction, after the batches before it committed. Deterministic,
    however fast or slow the machine, and no test-only code in the app.
    """
    table = VIEW_TABLES[projection]
    checkpoints = _checkpoints(stack, projection)
    [live] = [checkpoint["generation"] for checkpoint in checkpoints if checkpoint["is_live"]]
    generation = max(checkpoint["generation"] for checkpoint in checkpoints) + 1  # the rebuild's
    columns = ", ".join(
        row["column_name"]
        for row in stack.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " AND column_name NOT IN ('id', 'generation') ORDER BY ordinal_position",
            [table],
        )
    )
    first_row_only = " AND revision = 1" if projection == "agents.revisions" else ""
    copy = (
        f"INSERT INTO {table} (generation, {columns}) SELECT %s, {columns} FROM {table}"
        f" WHERE generation = %s AND name = %s{first_row_only}"
    )
    with stack.holding(copy, [generation, live, f"seeded-{HELD_AGENT:03d}"]) as rows:
        assert rows == 1
        yield generation


def _held(stack: ReliabilityStack, projection: str, generation: int) -> dict[str, Any]:
    """Wait until the rebuild waits on the held row; its checkpoint then."""
    wait_until(
        # The revisions view writes a replayed batch with COPY, the current view with INSERTs.
        lambda: _backend(
            stack,
            waiting_to=(f'INSERT INTO "{VIEW_TABLES[projection]}"', f'COPY "{VIEW_TABLES[projection]}"'),
        ),
        what="the rebuild held half-way",
    )
    [checkpoint] = [c for c in _checkpoints(stack, projection) if c["generation"] == generation]
    assert checkpoint == {"generation": generation, "position": HELD_AGENT * SEED_REVISIONS, "is_live": False}
    assert [run["result"] for run in _runs(stack, projection)][-1] == "running"
    return checkpoint


def _runs_detail(stack: ReliabilityStack, projection: str) -> list[str]:
    rows = stack.sql(
        "SELECT detail FROM events_projectionrun WHERE projection = %s ORDER BY id", [projection]
    )
    return [row["detail"] for row in rows]


def _rows_of_generation(stack: ReliabilityStack, projection: str, generation: int) -> int:
    table = VIEW_TABLES[projection]
    return stack.sql(f"SELECT count(*) AS rows FROM {table} WHERE generation = %s", [generation])[0]["rows"]


def _queue_rebuild(stack: ReliabilityStack, projection: str) -> None:
    status, _, body = stack.http("POST", f"/api/v1/projections/{projection}/rebuild/")
    assert status == 202 and body["queued"], body


def _assert_log_intact_and_views_equal_it(stack: ReliabilityStack) -> None:
    assert "verified" in stack.verify_events()
    stack.wait_caught_up()
    assert stack.views_against_log() == []


# ------------------------------------------------------------------------------
# The worker killed during a rebuild
# ------------------------------------------------------------------------------
def test_a_rebuild_whose_pool_process_is_killed_is_redelivered_and_completes(make_stack):
    stack = make_stack()
    _seed(stack)
    _, worker = stack.boot("web", "worker", PROJECTION_BATCH_SIZE=REBUILD_BATCH_SIZE)
    projection = "agents.current"
    [live_before] = _checkpoints(stack, projection)

    with _rebuild_held_half_way(stack, projection) as generation:
        _queue_rebuild(stack, projection)
        _held(stack, projection, generation)
        [pool_process] = children(worker.popen.pid)
        os.kill(pool_process, signal.SIGKILL)
        killed_at = time.monotonic()

    # The worker's main process survives, sees its pool process die, and (acks_late with
    # reject_on_worker_lost) puts the message back: a new pool process runs the rebuild again.
    # The second run finds the first run's lock free (its connection died with it), marks that
    # run failed and removes its half-built generation before building its own.
    wait_until(
        lambda: [run["result"] for run in _runs(stack, projection)] == ["failed", "ok"],
        what="a second run of the rebuild succeeded",
        timeout=60,
    )
    print(f"rebuild redelivered and completed {time.monotonic() - killed_at:.1f} s after the kill")
    assert worker.running()
    assert "WorkerLostError" in worker.log()
    assert "signal 9 (SIGKILL)" in worker.log()

    # The same message, received twice.
    received = re.findall(r"projection_rebuild_task\[([0-9a-f-]+)\] received", worker.log())
    assert len(received) == 2 and received[0] == received[1], received

    # The second run removed the killed run's half-built generation (its number is free
    # again), built one of its own from position 0 and swapped it in; the one it replaced is
    # dropped by the cleanup after the swap's commit (which already recorded the run "ok"):
    # one generation is left, live, and equal to the log (below).
    wait_until(
        lambda: len(_checkpoints(stack, projection)) == 1,
        what="the cleanup after the swap dropped the replaced generation",
    )
    [checkpoint] = _checkpoints(stack, projection)
    assert checkpoint["is_live"] and checkpoint["generation"] != live_before["generation"]
    assert "abandoned" in _runs_detail(stack, projection)[0]
    _assert_log_intact_and_views_equal_it(stack)


def test_a_rebuild_whose_whole_worker_is_killed_leaves_the_live_view_and_the_cleanup_removes_its_leftovers(
    make_stack,
):
    stack = make_stack()
    _seed(stack)
    _, worker = stack.boot("web", "worker", PROJECTION_BATCH_SIZE=REBUILD_BATCH_SIZE)
    projection = "agents.revisions"
    [live_before] = _checkpoints(stack, projection)

    with _rebuild_held_half_way(stack, projection) as generation:
        _queue_rebuild(stack, projection)
        half_built = _held(stack, projection, generation)
        worker.kill_all()  # SIGKILL to the main process and its pool at once: nothing can clean up
    # The message was taken but never acknowledged: Redis keeps it aside ("unacked") and hands
    # it out again only after the visibility timeout (5 minutes), not when a worker starts (below).
    broker = stack.redis.client()
    assert broker.hlen("unacked") == 1 and broker.llen("celery") == 0
    [(tag, message)] = broker.hgetall("unacked").items()
    assert b"events.tasks.projection_rebuild_task" in message

    # The live generation is untouched and still answers; the half-built one is not live.
    checkpoints = {c["generation"]: c for c in _checkpoints(stack, projection)}
    assert checkpoints[live_before["generation"]] == live_before
    assert not checkpoints[half_built["generation"]]["is_live"]
    assert stack.views_against_log() == []
    status, _, history = stack.http("GET", "/api/v1/agents/seeded-000/revisions/?limit=1000")
    assert status == 200 and len(history["results"]) == SEED_REVISIONS
    # Writes go on without a worker, and are read back at once.
    rid = request_id("no-worker")
    status, _, body = stack.http(
        "PUT",
        "/api/v1/agents/seeded-000/",
        body={"content": agent_content("seeded-000", "Written with the worker dead.\n")},
        headers={"If-Match": f'"{SEED_REVISIONS}"', "X-Request-ID": rid},
    )
    assert status == 200 and body["revision"] == SEED_REVISIONS + 1, body
    assert stack.views_against_log() == []

    # A new worker runs what is queued (the catch-up of that write), not the orphaned rebuild.
    stack.start_worker()
    wait_until(lambda: (broker.llen("celery"), broker.hlen("unacked")) == (0, 1), what="the queue drained")
    time.sleep(2)
    assert broker.hgetall("unacked") == {tag: message}
    assert [run["result"] for run in _runs(stack, projection)] == ["running"]
    broker.close()

    # The cleanup (beat, every 5 minutes; run here directly) finds the rebuild's lock free:
    # the run is marked failed and the half-built generation removed, rows and all. The live
    # generation is untouched.
    cleaned = stack.manage(
        "shell", "-c", "from events.rebuild import projections_cleanup; print(projections_cleanup())"
    )
    assert f"'{projection}': [{half_built['generation']}]" in cleaned, cleaned
    assert [run["result"] for run in _runs(stack, projection)] == ["failed"]
    assert "abandoned" in _runs_detail(stack, projection)[0]
    assert _rows_of_generation(stack, projection, half_built["generation"]) == 0
    checkpoints = {c["generation"]: c for c in _checkpoints(stack, projection)}
    assert list(checkpoints) == [live_before["generation"]]
    assert checkpoints[live_before["generation"]]["is_live"]
    assert stack.views_against_log() == []

    # An operator queues the rebuild again: it runs, swaps, and the views equal the log.
    _queue_rebuild(stack, projection)
    wait_until(
        lambda: [run["result"] for run in _runs(stack, projection)] == ["failed", "ok"],
        what="the re-queued rebuild succeeded",
        timeout=60,
    )
    [live] = [c for c in _checkpoints(stack, projection) if c["is_live"]]
    assert live["generation"] != live_before["generation"]
    assert [e["stream_version"] for e in stack.events_with_request_ids({rid})[rid]] == [SEED_REVISIONS + 1]
    _assert_log_intact_and_views_equal_it(stack)
    wait_until(
        lambda: [c["generation"] for c in _checkpoints(stack, projection)] == [live["generation"]],
        what="the cleanup after the swap dropped the replaced generation",
    )


# ------------------------------------------------------------------------------
# Redis killed while clients write
# ------------------------------------------------------------------------------
_CLI_WRITE = """
import os, uuid
from agents_app.services import ChangeContext, agent_revise
change = agent_revise(
    agent_id=uuid.UUID(os.environ["AGENT_ID"]),
    content=os.environ["CONTENT"],
    context=ChangeContext(actor="import", source="cli", reason="bulk import", request_id=os.environ["RID"]),
)
print(change.stream_version)
"""


def test_writes_succeed_while_redis_is_down_and_the_views_catch_up_when_it_returns(make_stack):
    stack = make_stack()
    web, worker, _ = stack.boot("web", "worker", "beat")
    name = f"outage-{uuid.uuid4().hex[:8]}"
    status, headers, created = stack.http(
        "POST", "/api/v1/agents/", body={"content": agent_content(name, "Before the outage.\n")}
    )
    assert status == 201, created
    etag, acknowledged = headers["ETag"], {}

    stack.redis.kill()
    status, _, ready = stack.http("GET", "/readyz")
    assert status == 503 and ready["checks"]["broker"]["ok"] is False, ready
    for number in range(OUTAGE_WRITES):
        rid = request_id(f"outage-{number}")
        content = agent_content(name, f"Written while Redis is down, {number}.\n")
        started = time.monotonic()
        status, headers, body = stack.http(
            "PUT",
            f"/api/v1/agents/{name}/",
            body={"content": content, "reason": "during the outage"},
            headers={"If-Match": etag, "X-Request-ID": rid},
        )
        seconds = time.monotonic() - started
        assert status == 200, body
        assert seconds < 10, f"a write with Redis down took {seconds:.1f} s"
        # Read-your-writes without the broker: the writer brought the views up itself.
        status, _, current = stack.http("GET", f"/api/v1/agents/{name}/")
        assert status == 200 and current["content"] == content and current["revision"] == number + 2
        etag = headers["ETag"]
        acknowledged[rid] = int(etag.strip('"'))
    # A create too (with an Idempotency-Key: answered from inside its transaction).
    other, created_rid = f"outage-new-{uuid.uuid4().hex[:8]}", request_id("outage-create")
    status, _, body = stack.http(
        "POST",
        "/api/v1/agents/",
        body={"content": agent_content(other)},
        headers={"Idempotency-Key": created_rid, "X-Request-ID": created_rid},
    )
    assert status == 201 and body["name"] == other, body
    assert stack.http("GET", f"/api/v1/agents/{other}/")[0] == 200
    acknowledged[created_rid] = 1
    # A bulk import with read-your-writes off: stored, not projected; its catch-up is lost with Redis.
    cli_rid = request_id("outage-cli")
    cli_content = agent_content(name, "Imported while Redis is down.\n")
    stack.manage(
        "shell",
        "-c",
        _CLI_WRITE,
        env={
            **stack.env,
            "PROJECTION_READ_YOUR_WRITES": "0",
            "AGENT_ID": created["id"],
            "CONTENT": cli_content,
            "RID": cli_rid,
        },
    )
    imported = OUTAGE_WRITES + 2  # after the create and the writes over HTTP
    acknowledged[cli_rid] = imported
    assert stack.http("GET", f"/api/v1/agents/{name}/")[2]["revision"] == imported - 1
    assert worker.running() and web.running()

    # Redis comes back, empty. Nobody writes: beat's catch-up every 10 s, run by the worker,
    # brings the views up to the import.
    stack.redis.start()
    restarted = time.monotonic()
    stack.wait_caught_up(timeout=45)
    print(f"views caught up {time.monotonic() - restarted:.1f} s after Redis was back")
    status, _, current = stack.http("GET", f"/api/v1/agents/{name}/")
    assert status == 200 and current["content"] == cli_content and current["revision"] == imported
    # And the worker consumes again what the web queues: a write (applied by the request
    # itself, nothing queued), then a rebuild asked for over HTTP.
    rid = request_id("after-outage")
    status, headers, body = stack.http(
        "PUT",
        f"/api/v1/agents/{name}/",
        body={"content": agent_content(name, "After the outage.\n")},
        headers={"If-Match": f'"{imported}"', "X-Request-ID": rid},
    )
    assert status == 200, body
    acknowledged[rid] = imported + 1
    rebuild_rid = request_id("rebuild-after-outage")
    status, _, queued = stack.http(
        "POST", "/api/v1/projections/agents.current/rebuild/", headers={"X-Request-ID": rebuild_rid}
    )
    assert status == 202 and queued["queued"], queued
    stack.wait_for(
        lambda: any(
            line.get("request_id") == rebuild_rid and "succeeded" in line.get("message", "")
            for line in worker.json_lines()
        ),
        what="the worker ran the rebuild queued after the outage",
        timeout=30,
    )

    stored = stack.events_with_request_ids(set(acknowledged))
    assert {rid: [e["stream_version"] for e in events] for rid, events in stored.items()} == {
        rid: [version] for rid, version in acknowledged.items()
    }
    assert [e["stream_version"] for e in stack.stream(created["id"])] == list(range(1, imported + 2))
    _assert_log_intact_and_views_equal_it(stack)


# ------------------------------------------------------------------------------
# The database connection dropped during and just after an append
# ------------------------------------------------------------------------------
# A request is held at a chosen point by a lock this test holds on a second connection, its
# backend found in pg_stat_activity and terminated (pg_terminate_backend: what a database
# failover, a restart or a network cut does to the web worker's connection), then the lock
# released. No test-only code in the app, no timing.
def _backend(
    stack: ReliabilityStack, *, waiting_to: str | tuple[str, ...] = "", querying: str = "", since=None
) -> int | None:
    """The pid of the one backend of this database blocked on a lock in `waiting_to` (a statement
    prefix, or any of several), or last running a statement on `querying` after `since`."""
    rows = stack.sql(
        "SELECT pid, wait_event_type, query, query_start FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    if waiting_to:
        rows = [r for r in rows if r["wait_event_type"] == "Lock" and r["query"].startswith(waiting_to)]
    if querying:
        rows = [r for r in rows if querying in r["query"] and since and r["query_start"] > since]
    assert len(rows) <= 1, rows
    return rows[0]["pid"] if rows else None


def _holds(stack: ReliabilityStack, pid: int) -> set[str]:
    """What the backend holds: `advisory` (the append lock), and the tables it has written to."""
    rows = stack.sql(
        "SELECT l.locktype, c.relname FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation"
        " WHERE l.pid = %s AND l.granted AND (l.locktype = 'advisory' OR l.mode = 'RowExclusiveLock')",
        [pid],
    )
    return {row["relname"] or row["locktype"] for row in rows}


def _in_thread(call) -> tuple[threading.Thread, dict[str, Any]]:
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(response=call()), daemon=True)
    thread.start()
    return thread, answer


def _assert_problem_503(response: tuple[int, Any, Any]) -> None:
    status, headers, body = response
    assert status == 503, (status, body)
    assert headers["Content-Type"] == "application/problem+json"
    assert int(headers["Retry-After"]) > 0
    assert body["status"] == 503 and body["type"].endswith("database-unavailable"), body
    assert "Traceback" not in str(body)


def test_a_database_connection_dropped_during_or_after_an_append_loses_nothing_and_stores_nothing_twice(
    make_stack,
):
    stack = make_stack()
    stack.boot("web")
    name = f"dropped-{uuid.uuid4().hex[:8]}"
    path = f"/api/v1/agents/{name}/"
    status, _, created = stack.http("POST", "/api/v1/agents/", body={"content": agent_content(name)})
    assert status == 201, created
    [user] = stack.sql("SELECT id FROM auth_user WHERE username = 'ops'")

    # 1. Dropped in the middle of an append, after the event's INSERT and before COMMIT: the
    # request with an Idempotency-Key waits to store its answer, behind a row this test holds.
    key = f"key-{uuid.uuid4().hex}"

    def revise(rid: str) -> tuple[int, Any, Any]:
        return stack.http(
            "PUT",
            path,
            body={"content": agent_content(name, "Revised once.\n"), "reason": "drop test"},
            headers={"If-Match": '"1"', "Idempotency-Key": key, "X-Request-ID": rid},
        )

    dropped = request_id("dropped-mid-append")
    held = "INSERT INTO agents_app_idempotencyrecord (user_id, key, fingerprint, status, headers, created_at)"
    with stack.holding(held + " VALUES (%s, %s, '', 0, '{}', now())", [user["id"], key]):
        thread, answer = _in_thread(lambda: revise(dropped))
        pid = wait_until(
            lambda: _backend(stack, waiting_to='INSERT INTO "agents_app_idempotencyrecord"'),
            what="the request waiting to store its answer",
        )
        assert {"advisory", "events_event"} <= _holds(stack, pid)  # the append lock, its event written
        assert stack.sql("SELECT pg_terminate_backend(%s) AS done", [pid]) == [{"done": True}]
        thread.join(timeout=30)
    _assert_problem_503(answer["response"])
    assert stack.events_with_request_ids({dropped}) == {}
    assert [event["stream_version"] for event in stack.stream(created["id"])] == [1]

    # The client retries with the same key: stored once; a second retry replays the answer.
    first, again = request_id("retry"), request_id("retry-again")
    status, headers, body = revise(first)
    assert status == 200 and headers["ETag"] == '"2"' and "Idempotent-Replayed" not in headers, body
    status, headers, replayed = revise(again)
    assert status == 200 and headers["Idempotent-Replayed"] == "true" and replayed == body
    stored = stack.events_with_request_ids({dropped, first, again})
    assert {rid: [e["stream_version"] for e in events] for rid, events in stored.items()} == {first: [2]}

    # 2. Dropped just after COMMIT, while the request brings the views up to its event
    # (read-your-writes) behind the projections' checkpoints, which this test holds.
    committed = request_id("dropped-after-commit")
    content = agent_content(name, "Revised twice.\n")
    with stack.holding("SELECT * FROM events_checkpoint WHERE is_live FOR UPDATE") as held:
        assert held == 2
        thread, answer = _in_thread(
            lambda: stack.http(
                "PUT", path, body={"content": content}, headers={"If-Match": '"2"', "X-Request-ID": committed}
            )
        )
        wait_until(lambda: stack.events_with_request_ids({committed}), what="the write committed")
        [now] = stack.sql("SELECT clock_timestamp() AS at")
        pid = wait_until(
            lambda: _backend(stack, querying="events_checkpoint", since=now["at"]),
            what="the request waiting for the projections",
        )
        stack.sql("SELECT pg_terminate_backend(%s)", [pid])
        thread.join(timeout=30)
    # The client was told it failed; the write is nevertheless stored, whole, once.
    _assert_problem_503(answer["response"])
    [event] = stack.events_with_request_ids({committed})[committed]
    assert (event["stream_version"], event["data"]["content"]) == (3, content)
    # A blind retry (same If-Match) cannot store it twice: 412, naming the version in the log.
    status, _, refused = stack.http(
        "PUT",
        path,
        body={"content": content},
        headers={"If-Match": '"2"', "X-Request-ID": request_id("blind")},
    )
    assert status == 412 and refused["current_version"] == 3, refused
    status, headers, body = stack.http(
        "PUT", path, body={"content": agent_content(name, "Revised thrice.\n")}, headers={"If-Match": '"3"'}
    )
    assert status == 200 and headers["ETag"] == '"4"', body
    assert [event["stream_version"] for event in stack.stream(created["id"])] == [1, 2, 3, 4]
    _assert_log_intact_and_views_equal_it(stack)
