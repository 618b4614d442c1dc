"""W2 concurrent edits: N writer processes, each on its own agent, or all on one agent with If-Match.

Each writer is a forked process with its own database connections, editing for a fixed
time. It reads the agent once (or, on one agent, before every attempt, as a client's GET
gives it the text and the ETag), changes 1-3 body lines and writes. On one agent every
write carries the version it read; a stale one is a conflict, counted, and the writer
reads again and retries. The peers honour If-Match the way a Django view would: lock the
row (SELECT ... FOR UPDATE), compare the version, save; `eventsourcing` by its unique
(aggregate id, version) key; raw by the event table's unique (stream id, version).
"""

import multiprocessing
import random
import statistics
import time

from bench.workloads.common import Result
from bench.workloads.documents import edit, revisions
from bench.workloads.suite import Bench, rotated, rounds
from bench.workloads.systems import Conflict

TIMEOUT = 600


def _writer(system, handle, seconds: float, one_agent: bool, seed: int, barrier, results) -> None:
    """One writer process: edits until `seconds` after the start; reports (edits, conflicts, error)."""
    from django.db import connections

    try:
        system.create_tables = False
        system.open()
        rng = random.Random(seed)
        handle = system.reload(handle)
        content, _ = system.read_current(handle)
        edits = conflicts = 0
        barrier.wait(timeout=TIMEOUT)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not one_agent:
                content = edit(content, rng)
                system.revise(handle, content)
                edits += 1
                continue
            content, token = system.read_current(handle)
            try:
                system.revise_if_match(handle, edit(content, rng), token)
                edits += 1
            except Conflict:
                conflicts += 1
        results.put((edits, conflicts, None))
    except BaseException as exc:
        results.put((0, 0, repr(exc)))
        raise
    finally:
        if hasattr(system, "close"):
            system.close()
        connections.close_all()


def _one_run(bench: Bench, system, handles: list, processes: int, seconds: float, one_agent: bool, seed: int):
    """(edits stored per second by all writers together, conflicts) for one timed run."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    bench.close()  # a forked child must not share the parent's connections
    writers = [
        context.Process(
            target=_writer,
            args=(system, handles[0 if one_agent else i], seconds, one_agent, seed + i, barrier, results),
        )
        for i in range(processes)
    ]
    for writer in writers:
        writer.start()
    try:
        barrier.wait(timeout=TIMEOUT)
        started = time.perf_counter()
        answers = [results.get(timeout=TIMEOUT) for _ in writers]
        elapsed = time.perf_counter() - started
    finally:
        for writer in writers:
            writer.join(timeout=30)
            if writer.is_alive():
                writer.kill()
    errors = [error for _, _, error in answers if error]
    if errors:
        raise RuntimeError(f"W2 {system.label}: writer failed: {errors[0]}")
    # Writers stop starting edits at the deadline; the last ones finish after it, hence `elapsed`.
    return sum(edits for edits, _, _ in answers) / elapsed, sum(conflicts for _, conflicts, _ in answers)


def run(bench: Bench) -> None:
    sizes = bench.sizes
    most = max(sizes.w2_processes)
    systems_all = [bench.ours, *bench.peers(), bench.raw]
    handles = {}
    for system in systems_all:
        names = [f"w2-agent-{i:02d}" for i in range(most)] + ["w2-shared"]
        handles[id(system)] = [system.create(name, next(revisions(name, 1))) for name in names]

    for processes in sizes.w2_processes:
        systems = [s for s in systems_all if processes <= sizes.w2_all_systems_up_to or s is bench.ours]
        for one_agent in (False, True):
            workload = (
                f"W2 {processes} writers, 1 agent, If-Match"
                if one_agent
                else f"W2 {processes} writers, {processes} agents"
            )
            rates: dict[int, list[float]] = {id(s): [] for s in systems}
            conflicts: dict[int, list[int]] = {id(s): [] for s in systems}
            for number, warmup in rounds(sizes.runs):
                for system in rotated(systems, number):
                    own = handles[id(system)][:processes]
                    shared = handles[id(system)][-1:]
                    rate, clashes = _one_run(
                        bench,
                        system,
                        shared if one_agent else own,
                        processes,
                        sizes.w2_warmup_seconds if warmup else sizes.w2_seconds,
                        one_agent,
                        seed=1000 * number + processes,
                    )
                    if not warmup:
                        rates[id(system)].append(rate)
                        conflicts[id(system)].append(clashes)
            bench.open()
            for system in systems:
                median_conflicts = statistics.median(conflicts[id(system)])
                bench.add(
                    Result(
                        workload=workload,
                        system=system.label,
                        unit="edits/s",
                        values=rates[id(system)],
                        higher_is_better=True,
                        reference=system is bench.ours,
                        note=f"conflicts {median_conflicts:,.0f}/run" if one_agent else "",
                        detail={"conflicts": median_conflicts},
                    )
                )
    bench.open()
    skipped = [n for n in sizes.w2_processes if n > sizes.w2_all_systems_up_to]
    bench.note(
        "W2",
        f"Each run: the writers (forked processes, their own connections) edit for {sizes.w2_seconds:g} s"
        f" (warm-up {sizes.w2_warmup_seconds:g} s); edits/s counts stored edits over the time until the"
        " last writer finished. Conflicts: stale If-Match writes, retried after a new read."
        + (
            f" With {', '.join(map(str, skipped))} writers only this project runs (time budget): the"
            " figure for the README's scale-out note."
            if skipped
            else ""
        ),
    )
