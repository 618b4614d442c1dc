"""Concurrent clients over HTTP against a real gunicorn with four sync workers.

Each client thread sends its own requests (its own TCP connection each time), so the four
worker processes, each with its own PostgreSQL connection, really append at the same time,
while a Celery worker catches the views up from Redis behind them. Every request carries a
unique `X-Request-ID`, which the API stores in the metadata of the event it appends: the log
itself then says which requests were stored, and how often.

What must hold, checked against the log read with SQL:

* every acknowledged write (200 with a new ETag) is in the log exactly once, at the stream
  version its ETag names; every request refused with 412 stored nothing;
* no lost update: each write adds a marker line to the content it read, so the final
  content holds every acknowledged marker, in ETag order; stream versions run 1..N;
* once caught up (GET /projections/ says lag 0) the views equal the log, and the agent's
  revisions over HTTP are exactly its content events;
* the same `Idempotency-Key` sent by two clients at once stores one event, and both get the
  same answer; and such a request answers 201, not 404, while a worker holds the projections.
"""

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.reliability.conftest import (
    ReliabilityStack,
    agent_content,
    reliability_stack,
    request_id,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

CLIENTS = 16
SHARED_ROUNDS = 2  # acknowledged writes per client on the shared agent
OWN_ROUNDS = 4  # writes per client on its own agent
MAX_ATTEMPTS = 200  # per acknowledged write on the shared agent: a livelock fails, not hangs
CLIENTS_TIMEOUT = 180.0  # the clients' threads, all together (a loaded CI machine is slow)


@pytest.fixture(scope="module")
def stack(reliability_template, tmp_path_factory) -> ReliabilityStack:
    """One stack for the module: web (4 workers) and a Celery worker on their own database."""
    with reliability_stack(reliability_template, tmp_path_factory.mktemp("http-concurrency")) as stack:
        started = time.monotonic()
        stack.boot("web", "worker")
        print(f"stack up in {time.monotonic() - started:.1f} s")
        yield stack


@dataclass
class Outcome:
    """What one client saw: acknowledged writes (request id, ETag, marker) and refused ones."""

    acknowledged: list[tuple[str, int, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unexpected: list[tuple[str, int, Any]] = field(default_factory=list)


def run_clients(targets: list[Callable[[], object]]) -> list[BaseException]:
    """Start every client at once (a barrier) and wait for all; the errors they raised."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def run(target: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=30)
            target()
        except BaseException as error:  # handed to the test, which asserts there are none
            errors.append(error)

    threads = [threading.Thread(target=run, args=(target,), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + CLIENTS_TIMEOUT
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), (
        f"clients still running after {CLIENTS_TIMEOUT} s"
    )
    return errors


def _etag(headers) -> int:
    return int(headers["ETag"].strip('"'))


def _create(stack: ReliabilityStack, name: str, body: str = "Base line.\n") -> dict[str, Any]:
    status, headers, created = stack.http(
        "POST",
        "/api/v1/agents/",
        body={"content": agent_content(name, body), "reason": "created by the concurrency test"},
        headers={"X-Request-ID": request_id("create")},
    )
    assert status == 201, created
    assert _etag(headers) == 1
    return created


def _assert_stream_is_exactly(stack: ReliabilityStack, agent_id: str, outcome: Outcome) -> None:
    """The stream holds the create and then every acknowledged write, once, at its ETag, in order."""
    events = stack.stream(agent_id)
    versions = [event["stream_version"] for event in events]
    assert versions == list(range(1, len(events) + 1)), f"gaps in the stream versions: {versions}"
    assert events[0]["type"] == "agent.created"
    stored = [event["metadata"].get("request_id") for event in events[1:]]
    assert Counter(stored).most_common(1)[0][1] == 1, "a request id appears twice in the log"

    by_etag = sorted(outcome.acknowledged, key=lambda write: write[1])
    etags = [etag for _, etag, _ in by_etag]
    assert etags == list(range(2, len(by_etag) + 2)), f"acknowledged ETags are not 2..N+1: {etags}"
    # The event at each acknowledged ETag is the acknowledged request's, and nothing else is there.
    assert stored == [rid for rid, _, _ in by_etag]
    assert [event["type"] for event in events[1:]] == ["agent.revised"] * len(by_etag)
    # Every refused request stored nothing.
    assert not set(outcome.refused) & set(stored)
    assert not stack.events_with_request_ids(set(outcome.refused))
    # No lost update: each write appended its marker to what it read (If-Match), so the last
    # content holds every acknowledged marker in ETag order, and each revision one more.
    markers = "".join(f"{marker}\n" for _, _, marker in by_etag)
    assert events[-1]["data"]["content"] == events[0]["data"]["content"] + markers
    for event, (_, _, marker) in zip(events[1:], by_etag, strict=True):
        assert event["data"]["content"].endswith(f"{marker}\n")
        assert event["data"]["revision"] == event["stream_version"]


def _assert_views_caught_up(stack: ReliabilityStack, name: str, content_events: int) -> float:
    """After lag 0: the views equal the log; the agent's history over HTTP has every revision."""
    seconds = stack.wait_caught_up()
    assert stack.views_against_log() == []
    status, _, history = stack.http("GET", f"/api/v1/agents/{name}/revisions/?limit=1000")
    assert status == 200, history
    assert [row["revision"] for row in history["results"]] == list(range(1, content_events + 1))
    status, headers, current = stack.http("GET", f"/api/v1/agents/{name}/")
    assert status == 200 and current["revision"] == content_events
    assert _etag(headers) == content_events  # no archive or label events here: version = revision
    return seconds


# ------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------
def test_sixteen_clients_editing_one_agent_with_if_match_lose_no_update(stack: ReliabilityStack):
    name = f"shared-{uuid.uuid4().hex[:8]}"
    created = _create(stack, name)
    outcome = Outcome()
    lock = threading.Lock()

    def client(number: int) -> None:
        for round_ in range(SHARED_ROUNDS):
            marker = f"- write c{number:02d} r{round_}"
            for attempt in range(MAX_ATTEMPTS):
                status, headers, current = stack.http("GET", f"/api/v1/agents/{name}/")
                assert status == 200, current
                rid = request_id(f"c{number}-r{round_}-a{attempt}")
                status, headers, body = stack.http(
                    "PUT",
                    f"/api/v1/agents/{name}/",
                    body={"content": current["content"] + marker + "\n", "reason": marker},
                    headers={"If-Match": headers["ETag"], "X-Request-ID": rid},
                )
                sent = current["content"] + marker + "\n"
                with lock:
                    if status == 200:
                        outcome.acknowledged.append((rid, _etag(headers), marker))
                        # Read-your-writes: the answer is this write, at the version its ETag names.
                        answer = (body["content"] == sent, body["stream_version"] == _etag(headers))
                        if answer != (True, True):
                            outcome.unexpected.append((rid, status, f"(own content, own version): {answer}"))
                        break
                    if status == 412:
                        outcome.refused.append(rid)
                    else:
                        outcome.unexpected.append((rid, status, body))
                        return
                # Refused: back off a little, at random, as a well-behaved client does, then re-read.
                time.sleep(random.uniform(0, 0.01 * min(attempt + 1, 10)))
            else:
                raise AssertionError(f"client {number}: no write acknowledged in {MAX_ATTEMPTS} attempts")

    started = time.monotonic()
    errors = run_clients([lambda n=n: client(n) for n in range(CLIENTS)])
    seconds = time.monotonic() - started
    assert errors == []
    assert outcome.unexpected == []
    assert len(outcome.acknowledged) == CLIENTS * SHARED_ROUNDS
    print(
        f"{len(outcome.acknowledged)} writes acknowledged and {len(outcome.refused)} refused (412)"
        f" in {seconds:.1f} s"
    )

    _assert_stream_is_exactly(stack, created["id"], outcome)
    caught_up = _assert_views_caught_up(stack, name, content_events=CLIENTS * SHARED_ROUNDS + 1)
    print(f"views caught up {caught_up:.2f} s after the last write")


def test_sixteen_clients_editing_sixteen_agents_each_get_every_write_stored_once(stack: ReliabilityStack):
    names = [f"own-{number:02d}-{uuid.uuid4().hex[:8]}" for number in range(CLIENTS)]
    outcomes = [Outcome() for _ in names]
    ids: list[str] = [""] * CLIENTS

    def client(number: int) -> None:
        name, outcome = names[number], outcomes[number]
        created = _create(stack, name)
        ids[number] = created["id"]
        content, etag = created["content"], 1
        for round_ in range(OWN_ROUNDS):
            marker = f"- write r{round_}"
            rid = request_id(f"own{number}-r{round_}")
            status, headers, body = stack.http(
                "PUT",
                f"/api/v1/agents/{name}/",
                body={"content": content + marker + "\n", "reason": marker},
                headers={"If-Match": f'"{etag}"', "X-Request-ID": rid},
            )
            if status != 200:
                outcome.unexpected.append((rid, status, body))
                return
            outcome.acknowledged.append((rid, _etag(headers), marker))
            content, etag = body["content"], _etag(headers)

    started = time.monotonic()
    errors = run_clients([lambda n=n: client(n) for n in range(CLIENTS)])
    seconds = time.monotonic() - started
    assert errors == []
    assert [outcome.unexpected for outcome in outcomes] == [[]] * CLIENTS
    print(f"{CLIENTS} clients x {OWN_ROUNDS} writes on their own agents in {seconds:.1f} s")

    for agent_id, outcome in zip(ids, outcomes, strict=True):
        assert [etag for _, etag, _ in outcome.acknowledged] == list(range(2, OWN_ROUNDS + 2))
        _assert_stream_is_exactly(stack, agent_id, outcome)
    stack.wait_caught_up()
    assert stack.views_against_log() == []
    for name in names:
        status, _, history = stack.http("GET", f"/api/v1/agents/{name}/revisions/")
        assert status == 200 and len(history["results"]) == OWN_ROUNDS + 1


def test_the_same_idempotency_key_from_two_clients_at_once_stores_one_event(stack: ReliabilityStack):
    """Pairs of clients send the same request with the same key at the same instant, while other
    clients keep writing (so that catch-ups run everywhere meanwhile): one event per pair."""
    pairs = 6
    names = [f"idem-{number}-{uuid.uuid4().hex[:8]}" for number in range(pairs)]
    keys = [f"key-{uuid.uuid4().hex}" for _ in names]
    busy = [f"busy-{number}-{uuid.uuid4().hex[:8]}" for number in range(4)]
    for name in busy:
        _create(stack, name)
    stop = threading.Event()
    background_errors: list[BaseException] = []
    answers: dict[int, list[tuple[int, Any, Any]]] = {number: [] for number in range(pairs)}

    def background(name: str) -> None:
        etag, round_ = 1, 0
        try:
            while not stop.is_set():
                round_ += 1
                status, headers, body = stack.http(
                    "PUT",
                    f"/api/v1/agents/{name}/",
                    body={"content": agent_content(name, f"Background write {round_}.\n")},
                    headers={"If-Match": f'"{etag}"'},
                )
                assert status == 200, body
                etag = _etag(headers)
        except BaseException as error:
            background_errors.append(error)

    def create(number: int) -> None:
        answers[number].append(
            stack.http(
                "POST",
                "/api/v1/agents/",
                body={"content": agent_content(names[number]), "reason": "idempotent create"},
                headers={"Idempotency-Key": keys[number], "X-Request-ID": request_id(f"idem{number}")},
            )
        )

    workers = [threading.Thread(target=background, args=(name,), daemon=True) for name in busy]
    for thread in workers:
        thread.start()
    try:
        time.sleep(0.3)  # the background writes are under way
        errors = run_clients([lambda n=n: create(n) for n in range(pairs) for _ in range(2)])
    finally:
        stop.set()
        for thread in workers:
            thread.join(timeout=30)
    assert errors == [] and background_errors == []

    for number, name in enumerate(names):
        (status_a, headers_a, body_a), (status_b, headers_b, body_b) = answers[number]
        assert (status_a, status_b) == (201, 201), (body_a, body_b)
        assert body_a == body_b and headers_a["ETag"] == headers_b["ETag"] == '"1"'
        assert headers_a["Location"] == headers_b["Location"]
        replayed = sorted(
            [headers_a.get("Idempotent-Replayed"), headers_b.get("Idempotent-Replayed")], key=str
        )
        assert replayed == [None, "true"], replayed
        # One event: the two requests had different request ids, so count by the agent's id.
        created = stack.sql(
            "SELECT type, stream_version FROM events_event WHERE stream_id = %s", [body_a["id"]]
        )
        assert created == [{"type": "agent.created", "stream_version": 1}]
        assert len(stack.sql("SELECT 1 FROM agents_app_agentnameclaim WHERE name = %s", [name])) == 1

    # A retry of the same key with the same request while nobody else sends it: the first answer.
    status, headers, again = stack.http(
        "POST",
        "/api/v1/agents/",
        body={"content": agent_content(names[0]), "reason": "idempotent create"},
        headers={"Idempotency-Key": keys[0]},
    )
    assert status == 201 and again == answers[0][0][2] and headers["Idempotent-Replayed"] == "true"

    # Then the same for a PUT with If-Match: both get the one new version.
    name = names[0]
    put_answers: list[tuple[int, Any, Any]] = []
    key = f"key-{uuid.uuid4().hex}"

    def revise() -> None:
        put_answers.append(
            stack.http(
                "PUT",
                f"/api/v1/agents/{name}/",
                body={"content": agent_content(name, "Revised once.\n"), "reason": "idempotent revise"},
                headers={"Idempotency-Key": key, "If-Match": '"1"'},
            )
        )

    assert run_clients([revise, revise]) == []
    assert [status for status, _, _ in put_answers] == [200, 200], put_answers
    assert {headers["ETag"] for _, headers, _ in put_answers} == {'"2"'}
    assert put_answers[0][2] == put_answers[1][2]
    assert [row["stream_version"] for row in stack.stream(answers[0][0][2]["id"])] == [1, 2]

    stack.wait_caught_up()
    assert stack.views_against_log() == []


def test_a_create_with_an_idempotency_key_waits_for_a_projection_runner_instead_of_answering_404(
    stack: ReliabilityStack,
):
    """The request answers from inside its transaction, so it brings the views up to its own event
    itself; a worker applying a batch at that moment holds a projection's checkpoint. Here the
    test holds both checkpoints for a while, as a slow batch would."""
    name = f"held-{uuid.uuid4().hex[:8]}"
    answer: list[tuple[int, Any, Any]] = []
    request = threading.Thread(
        target=lambda: answer.append(
            stack.http(
                "POST",
                "/api/v1/agents/",
                body={"content": agent_content(name)},
                headers={"Idempotency-Key": f"key-{uuid.uuid4().hex}"},
            )
        ),
        daemon=True,
    )
    _create(stack, f"before-{uuid.uuid4().hex[:8]}")  # the checkpoints exist from the first write on
    with stack.holding("SELECT * FROM events_checkpoint WHERE is_live FOR UPDATE") as held:
        assert held == 2
        request.start()
        # Until it has answered (it used to: 404, its create rolled back) or for 1.5 s.
        request.join(timeout=1.5)
    request.join(timeout=30)
    [(status, headers, body)] = answer
    assert status == 201, body
    assert headers["ETag"] == '"1"' and body["name"] == name
    assert stack.sql("SELECT type FROM events_event WHERE stream_id = %s", [body["id"]]) == [
        {"type": "agent.created"}
    ]
