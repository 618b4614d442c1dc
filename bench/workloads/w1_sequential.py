"""W1 sequential edits: one agent per system, revised `w1_edits` times per run, one transaction each.

Every system stores the same texts (the second row of this project uses a second agent
whose name differs). This project goes through agent_revise: parse and validate, append
lock, state load, hash chain, and with read-your-writes on (the default) the inline
catch-up of both projections after the commit. The peers keep the object in memory
between edits (the cheapest way to use them); raw is one INSERT per autocommit.
"""

from contextlib import nullcontext

from bench.workloads.common import Result, timed
from bench.workloads.documents import revisions
from bench.workloads.profiling import Profile, count_queries
from bench.workloads.suite import Bench, rotated, rounds

WORKLOAD = "W1 sequential edits"


def run(bench: Bench) -> None:
    from events.runner import projections_catch_up_all

    edits = bench.sizes.w1_edits
    systems = bench.all()
    names = {id(system): "w1-agent" for system in systems}
    names[id(bench.ours_off)] = "w1-agent-b"  # same tables as the first row: names are unique

    for system in (bench.ours, bench.ours_off):
        texts = list(revisions(f"w1-queries-{len(bench.queries)}", 21))
        handle = system.create(f"w1-queries-{len(bench.queries)}", texts[0])
        pending = iter(texts[1:])
        bench.queries[system.label] = count_queries(
            lambda s=system, h=handle, p=pending: s.revise(h, next(p)), 20
        )

    handles = {}
    for system in systems:
        name = names[id(system)]
        handles[id(system)] = system.create(name, next(revisions(name, 1)))
    bench.w1_handles = handles
    projections_catch_up_all()  # what the read-your-writes-off writes above left to a worker
    bench.w1_names = names

    values: dict[int, list[float]] = {id(system): [] for system in systems}
    start = 2
    for number, warmup in rounds(bench.sizes.runs):
        count = bench.sizes.w1_warmup if warmup else edits
        texts = {name: list(revisions(name, count, start=start)) for name in set(names.values())}
        start += count
        for system in rotated(systems, number):
            handle, contents = handles[id(system)], texts[names[id(system)]]
            profile = None
            if warmup and bench.profile and system in (bench.ours, bench.ours_off):
                profile = Profile(f"W1: agent_revise, {system.label} ({count:,} sequential revisions)")
            with profile.record(count) if profile else nullcontext():
                seconds = timed(lambda s=system, h=handle, c=contents: [s.revise(h, text) for text in c])
            if profile:
                bench.profiles.append(profile)
            if not warmup:
                values[id(system)].append(count / seconds)
            if system is bench.ours_off:
                # Its events wait for a worker; let one apply them (not timed), or the next
                # write of the default path would find the views behind and pay for them.
                projections_catch_up_all()

    for system in systems:
        bench.add(
            Result(
                workload=WORKLOAD,
                system=system.label,
                unit="edits/s",
                values=values[id(system)],
                higher_is_better=True,
                reference=system is bench.ours,
            )
        )
    bench.w1_revisions = start - 1
    bench.note(
        WORKLOAD,
        f"{edits:,} revisions per run (after a warm-up of {bench.sizes.w1_warmup:,}) of one ~4 KB agent per"
        f" system, each in its own transaction; the agents end with {bench.w1_revisions:,} revisions."
        " Peers keep the object in memory between edits (no read before the write); this project"
        " reads the stream head under its append lock on every edit.",
    )
