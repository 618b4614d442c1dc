"""W4 diff: revisions 1 and 51 of the W1 agent, computed by each system, then over HTTP.

In process: this project reads the agent and both revision rows in one statement
(selectors.revision_pair_by_name) and runs agents_app.diff.revision_diff (what the diff
endpoint does, minus HTTP). Each peer
reads its two stored versions through its own API, parses them as the service would
(the peers store raw text only) and runs the same revision_diff, so every system returns
the same answer. Raw: two SELECTs and difflib.unified_diff of the two texts, the least
any diff can cost.

Over HTTP: gunicorn (2 sync workers, production settings) on this run's database, 8
client threads; the diff endpoint and a plain GET of one revision take turns in blocks
of requests, so both see the same load (bench/api_latency.py's client).
"""

import json
import secrets
import statistics
import tempfile
from contextlib import nullcontext
from pathlib import Path

from bench import api_latency as http
from bench.workloads import common
from bench.workloads.common import Result, per_call
from bench.workloads.profiling import Profile
from bench.workloads.suite import Bench, rotated, rounds

WORKLOAD = "W4 diff, 50 revisions apart (ms)"
HTTP_WORKLOAD = "W4 over HTTP, 8 clients (ms)"
OLD = 1


def _check_same_answer(bench: Bench, handles: dict, new: int) -> None:
    ours = bench.ours.diff(handles[id(bench.ours)], OLD, new)
    for peer in bench.peers():
        theirs = peer.diff(handles[id(peer)], OLD, new)
        for part in ("frontmatter", "tools", "body", "warnings", "identical"):
            assert theirs[part] == ours[part], (peer.label, part)
    assert ours["body"]["additions"] > 0, ours["body"]


def run(bench: Bench) -> None:
    handles = bench.w1_handles
    new = min(OLD + 50, bench.w1_revisions)  # a quick run's W1 agents are shorter
    common.analyze()
    _check_same_answer(bench, handles, new)
    systems = [bench.ours, *bench.peers(), bench.raw]
    values: dict[int, list[float]] = {id(system): [] for system in systems}
    for number, warmup in rounds(bench.sizes.runs):
        for system in rotated(systems, number):
            handle = handles[id(system)]
            profile = None
            if warmup and bench.profile and system is bench.ours:
                profile = Profile(f"W4: the service's diff in process ({bench.sizes.w4_calls:,} calls)")
            with profile.record(bench.sizes.w4_calls) if profile else nullcontext():
                seconds = per_call(
                    lambda s=system, h=handle: s.diff(h, OLD, new), calls=bench.sizes.w4_calls, max_seconds=30
                )
            if profile:
                bench.profiles.append(profile)
            if not warmup:
                values[id(system)].append(1000 * seconds)
    for system in systems:
        label = "raw: 2 SELECTs + difflib (limit)" if system is bench.raw else system.label
        bench.add(Result(WORKLOAD, label, "ms", values[id(system)], False, reference=system is bench.ours))
    bench.note(
        WORKLOAD,
        f"Median of {bench.sizes.w4_calls:,} calls per run, in process, revisions {OLD} and {new} of the"
        " W1 agent. Peers: read two versions, parse both documents (they store raw text only),"
        " then the same agents_app.diff.revision_diff; the answers are checked to be equal.",
    )
    http_run(bench, new)


def _token() -> str:
    from django.contrib.auth import get_user_model

    from agents_app.tokens import api_token_create

    user = get_user_model().objects.create_superuser(
        "bench", "bench@example.invalid", password=secrets.token_urlsafe(16)
    )
    return api_token_create(user=user, days=1)[1]


def http_run(bench: Bench, new: int) -> None:
    sizes = bench.sizes
    name = bench.w1_names[id(bench.ours)]
    token = _token()
    bench.close()
    base = f"/api/v1/agents/{name}"

    def is_diff(content_type: str, body: bytes) -> bool:
        data = json.loads(body)
        return data["from"]["revision"] == OLD and data["to"]["revision"] == new and not data["identical"]

    def is_revision(content_type: str, body: bytes) -> bool:
        return json.loads(body)["revision"] == new

    workloads = [
        http.Workload("revision GET", f"{base}/revisions/{new}/", is_revision),
        http.Workload("diff JSON", f"{base}/diff/?from={OLD}&to={new}", is_diff),
    ]
    run_medians: dict[str, list[float]] = {workload.label: [] for workload in workloads}
    with tempfile.NamedTemporaryFile("w+", prefix="bench_gunicorn_", suffix=".log") as log:
        port = http._free_port()
        process = http.gunicorn_start(port, log, database=common.MAIN_DATABASE)
        try:
            http.wait_healthy(process, port, log.name)
            clients = [http.Client(port, token) for _ in range(http.CLIENTS)]
            errors = http.Errors()
            block = max(sizes.w4_requests // 4, http.CLIENTS)
            for number, warmup in rounds(sizes.runs):
                latencies: dict[str, list[float]] = {workload.label: [] for workload in workloads}
                requests = sizes.w4_warmup if warmup else sizes.w4_requests
                for start in range(0, requests, block):
                    for workload in rotated(workloads, number + start // block):
                        measured = http.run_phase(clients, workload, min(block, requests - start), errors)
                        if not warmup:
                            workload.latencies += measured
                            latencies[workload.label] += measured
                if warmup:
                    for workload in workloads:
                        workload.seconds = 0.0
                    continue
                for workload in workloads:
                    run_medians[workload.label].append(1000 * statistics.median(latencies[workload.label]))
            for client in clients:
                client.connection.close()
            if errors.count:
                raise RuntimeError(f"{errors.count} failed HTTP requests; first: {errors.samples}")
        except BaseException:
            print(f"gunicorn log:\n{Path(log.name).read_text()[-3000:]}")
            raise
        finally:
            http.gunicorn_stop(process)
    for workload in workloads:
        p99 = 1000 * http._p99(workload.latencies)
        rate = len(workload.latencies) / workload.seconds
        bench.add(
            Result(
                HTTP_WORKLOAD,
                f"this project: {workload.label}",
                "ms",
                run_medians[workload.label],
                False,
                reference=workload.label == "revision GET",
                note=f"p99 {p99:.1f} ms, {rate:,.0f} req/s",
                detail={"p99_ms": p99, "requests_per_second": rate},
            )
        )
    bench.note(
        HTTP_WORKLOAD,
        f"gunicorn, {http.WORKERS} sync workers, production settings (DEBUG off), {http.CLIENTS} client"
        f" threads; {sizes.w4_requests:,} requests per endpoint per run after {sizes.w4_warmup:,} warm-up"
        " requests, the two endpoints taking turns in blocks. Latency as the client sees it, queueing"
        " included. The reference row here is the plain GET (the target compares the diff with it);"
        " the peers have no HTTP API.",
    )
    bench.open()
