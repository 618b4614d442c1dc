"""W3 rebuild: replay the whole log into both agent views, next to a raw scan and the peers' read-back.

The data: `w3_agents` agents x `w3_revisions` revisions, the same texts in every system,
each agent's history written in one go (this project: one event_append per agent, hash
chain and all; eventsourcing: one save() of an aggregate with all its events;
django-reversion: its Revision and Version rows, built as create_revision() builds them,
inserted in bulk; django-simple-history: its bulk_history_create()).

This project: projection_rebuild of agents.current, then agents.revisions (each replays the
whole log into a new generation and swaps it in). The limit: a server-side cursor over
the same events, rows decoded. The peers: every stored version read back and decoded into
an object (they have no views to rebuild; this is what rebuilding one would start from).
"""

from bench.workloads.common import Result, timed
from bench.workloads.documents import agent_name, revisions
from bench.workloads.profiling import Profile
from bench.workloads.suite import Bench, rotated, rounds

WORKLOAD = "W3 rebuild (events/s)"


def load(bench: Bench) -> int:
    sizes = bench.sizes
    loaders = [bench.ours_off, *bench.peers()]
    for number in range(sizes.w3_agents):
        name = agent_name(number, "w3")
        texts = list(revisions(name, sizes.w3_revisions))
        for system in loaders:
            system.bulk_load(name, texts)
    return sizes.w3_agents * sizes.w3_revisions


def run(bench: Bench) -> None:
    from events.projections import projection_names
    from events.rebuild import projection_rebuild
    from events.runner import projections_catch_up_all
    from events.selectors import head_position

    events: int = 0

    def load_all() -> None:
        nonlocal events
        events = load(bench)

    bench.seconds["W3 load"] = timed(load_all)
    assert head_position() == events, (head_position(), events)

    # Warm-up for this project: the live views catch up with the loaded log, through the same
    # apply code a rebuild runs (profiled).
    profile = Profile(f"W3: projections catching up {events:,} events (the apply path of a rebuild)")
    if bench.profile:
        with profile.record(events):
            projections_catch_up_all()
        bench.profiles.append(profile)
    else:
        projections_catch_up_all()

    names = projection_names()
    ours: list[float] = []
    per_view: dict[str, list[float]] = {name: [] for name in names}
    others = [bench.raw, *bench.peers()]
    rates: dict[int, list[float]] = {id(system): [] for system in others}
    for number, warmup in rounds(bench.sizes.runs):
        for system in rotated([bench.ours, *others], number):
            if system is bench.ours:
                if warmup:
                    continue  # warmed up by the catch-up above
                seconds = {name: projection_rebuild(name=name).seconds for name in names}
                ours.append(events / sum(seconds.values()))
                for name in names:
                    per_view[name].append(events / seconds[name])
                continue
            read = system.scan if system is bench.raw else system.read_back_all
            count = 0

            def read_all(read=read) -> None:
                nonlocal count
                count = read()

            seconds = timed(read_all)
            assert count == events, (system.label, count, events)
            if not warmup:
                rates[id(system)].append(count / seconds)

    bench.add(Result(WORKLOAD, "this project: rebuild both views", "events/s", ours, True, reference=True))
    for name in names:
        bench.add(Result(WORKLOAD, f"this project: {name} alone", "events/s", per_view[name], True))
    for system in others:
        label = "raw server-side cursor scan (limit)" if system is bench.raw else f"{system.label} read-back"
        bench.add(Result(WORKLOAD, label, "events/s", rates[id(system)], True))
    bench.note(
        WORKLOAD,
        f"{bench.sizes.w3_agents:,} agents x {bench.sizes.w3_revisions:,} revisions = {events:,} events"
        f" (loading them into the four systems took {bench.seconds['W3 load']:.0f} s, not measured)."
        " The rate of 'rebuild both views' is the log's events over the time of both rebuilds.",
    )
