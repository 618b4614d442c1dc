"""The results table, the targets of issues 7 and 14, and the machine they were measured on, as Markdown."""

import datetime as dt
import importlib.metadata
import os
import platform
from pathlib import Path

import psycopg

from bench.workloads import common
from bench.workloads.common import Result
from bench.workloads.suite import Bench
from bench.workloads.w5_depth import SHALLOW

PACKAGES = (
    "Django",
    "djangorestframework",
    "psycopg",
    "psycopg-binary",
    "PyYAML",
    "celery",
    "gunicorn",
    "django-reversion",
    "django-simple-history",
    "eventsourcing",
    "psycopg-pool",
    "pyinstrument",
)
PG_SETTINGS = (
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "wal_level",
    "max_wal_size",
    "work_mem",
    "effective_cache_size",
    "max_connections",
    "jit",
)


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kilobytes = int(Path("/proc/meminfo").read_text().split("MemTotal:", 1)[1].split()[0])
        memory = f"{kilobytes / 2**20:.0f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return {
        "CPUs": str(os.cpu_count()),
        "CPU model": model,
        "memory": memory,
        "load average (1, 5, 15 min)": load,
        "kernel": platform.release(),
        "Python": platform.python_version(),
    }


def postgres() -> dict[str, str]:
    with psycopg.connect(common.database_url("postgres")) as db:
        info = {"version": db.execute("SELECT version()").fetchone()[0].split(" on ")[0]}
        for name in PG_SETTINGS:
            info[name] = db.execute(f"SHOW {name}").fetchone()[0]
    return info


def packages() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _references(results: list[Result]) -> dict[str, Result]:
    return {result.workload: result for result in results if result.reference}


def table(results: list[Result]) -> list[str]:
    """Markdown rows: workload, system, median, spread, and how the reference row compares."""
    references = _references(results)
    lines = [
        "| workload | system | median | unit | spread | reference vs row |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for result in results:
        reference = references.get(result.workload)
        if result.reference:
            ratio = "reference"
        elif reference is None:
            ratio = ""
        else:
            ratio = f"{reference.speed() / result.speed():.2f}x"
        system = f"**{result.system}**" if result.reference else result.system
        note = f" ({result.note})" if result.note else ""
        lines.append(
            f"| {result.workload} | {system}{note} | {_number(result.median)} | {result.unit}"
            f" | ±{result.spread:.0%} | {ratio} |"
        )
    return lines


def _find(results: list[Result], workload: str, system: str) -> Result | None:
    return next((r for r in results if r.workload == workload and r.system == system), None)


def targets(bench: Bench) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each target of issues 7 and 14 whose workload ran."""
    results = bench.results
    peers = [peer.label for peer in bench.peers()]
    rows: list[tuple[str, str, str]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    w1 = "W1 sequential edits"
    ours = _find(results, w1, bench.ours.label)
    if ours:
        fastest = max((r for r in results if r.workload == w1 and r.system in peers), key=Result.speed)
        ratio = ours.median / fastest.median
        rows.append(
            (
                "W1: >= 1.25x the fastest peer",
                f"{ratio:.2f}x ({_number(ours.median)} vs {fastest.system}"
                f" {_number(fastest.median)} edits/s)",
                verdict(ratio >= 1.25),
            )
        )
        off = _find(results, w1, bench.ours_off.label)
        if off:
            rows.append(
                (
                    "(W1 with read-your-writes off, for comparison: not the target)",
                    f"{off.median / fastest.median:.2f}x the fastest peer",
                    "",
                )
            )
        raw = _find(results, w1, bench.raw.label)
        if raw:
            ratio = ours.median / raw.median
            rows.append(
                (
                    "W1: >= 0.3x raw INSERT",
                    f"{ratio:.2f}x ({_number(raw.median)} raw INSERTs/s)",
                    verdict(ratio >= 0.3),
                )
            )
    w1_ours = _find(results, w1, bench.ours.label)
    w2_ours = _find(results, "W2 8 writers, 8 agents", bench.ours.label)
    if w1_ours and w2_ours:
        ratio = w2_ours.median / w1_ours.median
        rows.append(
            (
                "W2: 8 writers on 8 agents >= 1.5x this project's W1",
                f"{ratio:.2f}x ({_number(w2_ours.median)} vs {_number(w1_ours.median)} edits/s)",
                verdict(ratio >= 1.5),
            )
        )
    w3 = "W3 rebuild (events/s)"
    rebuild = _find(results, w3, "this project: rebuild both views")
    scan = _find(results, w3, "raw server-side cursor scan (limit)")
    if rebuild and scan:
        ratio = rebuild.median / scan.median
        rows.append(
            (
                "W3: rebuild >= 0.3x the raw scan rate",
                f"{ratio:.3f}x ({_number(rebuild.median)} vs {_number(scan.median)} events/s)",
                verdict(ratio >= 0.3),
            )
        )
    w4 = "W4 diff, 50 revisions apart (ms)"
    ours = _find(results, w4, bench.ours.label)
    if ours:
        fastest = min((r for r in results if r.workload == w4 and r.system in peers), key=lambda r: r.median)
        ratio = fastest.median / ours.median
        rows.append(
            (
                "W4: service diff >= 2x faster than the fastest peer",
                f"{ratio:.2f}x ({_number(ours.median)} ms vs {fastest.system} {_number(fastest.median)} ms)",
                verdict(ratio >= 2),
            )
        )
    http = "W4 over HTTP, 8 clients (ms)"
    diff, get = (
        _find(results, http, "this project: diff JSON"),
        _find(results, http, "this project: revision GET"),
    )
    if diff and get:
        ratio = diff.median / get.median
        rows.append(
            (
                "W4: HTTP diff median within 1.5x of the plain GET",
                f"{ratio:.2f}x ({_number(diff.median)} vs {_number(get.median)} ms)",
                verdict(ratio <= 1.5),
            )
        )
    depth = getattr(bench, "w5_depth", None)
    if depth:
        first = _find(results, "W5 read revision 1 (ms)", bench.ours.label)
        deep = _find(results, f"W5 read revision {depth:,} (ms)", bench.ours.label)
        ratio = deep.median / first.median
        rows.append(
            (
                f"W5: revision {depth:,} read within 1.2x of revision 1",
                f"{ratio:.2f}x ({_number(deep.median)} vs {_number(first.median)} ms)",
                verdict(ratio <= 1.2),
            )
        )
        for kind, workload in (
            ("revert to revision 1", "W5 revert to revision 1, agent at revision {:,} (ms)"),
            ("blame", "W5 blame of revision {:,} (ms)"),
        ):
            deep = _find(results, workload.format(depth), bench.ours.label)
            shallow = _find(results, workload.format(SHALLOW), bench.ours.label)
            if deep and shallow:
                ratio = deep.median / shallow.median
                rows.append(
                    (
                        f"W5: {kind} at revision {depth:,} within 1.2x of revision {SHALLOW}",
                        f"{ratio:.2f}x ({_number(deep.median)} vs {_number(shallow.median)} ms)",
                        verdict(ratio <= 1.2),
                    )
                )
    appends = [r for r in results if r.workload.startswith("W5 append") and r.system == bench.ours.label]
    if len(appends) == 2:
        empty, full = appends
        ratio = empty.median / full.median
        rows.append(
            (
                f"W5: append at {bench.sizes.w5_log_events:,} events within 1.3x of empty",
                f"{ratio:.2f}x the time per append"
                f" ({_number(full.median)} vs {_number(empty.median)} edits/s)",
                verdict(ratio <= 1.3),
            )
        )
    w6 = "W6 storage (bytes/revision)"
    together = _find(results, w6, f"{bench.ours.label}: together")
    if together:
        leanest = min(
            (r for r in results if r.workload == w6 and r.system.split(":")[0] in peers),
            key=lambda r: r.median,
        )
        for part, target in (
            ("together", "W6: no more bytes per revision than the leanest peer (log + views)"),
            ("event log (+ name claims)", "(W6 for the event log alone, for comparison)"),
        ):
            row = _find(results, w6, f"{bench.ours.label}: {part}")
            ratio = row.median / leanest.median
            rows.append(
                (
                    target,
                    f"{ratio:.2f}x ({_number(row.median)} vs {leanest.system} {_number(leanest.median)})",
                    verdict(ratio <= 1.0) if part == "together" else "",
                )
            )
    for workload, label in (
        ("W7 git replay (file versions/s)", "W7: git replay >= 1,000 file versions per second"),
        ("W7 folder import (files/s)", "W7: bulk import >= 1,000 files per second"),
    ):
        imports = _find(results, workload, bench.ours.label)
        if imports:
            rows.append((label, f"{_number(imports.median)} per second", verdict(imports.median >= 1000)))
    return rows


def sizes(bench: Bench) -> list[str]:
    """What the issue asked for next to what ran, and for the scaled-down ones, why."""
    sizes, results = bench.sizes, bench.results
    w1 = _find(results, "W1 sequential edits", bench.ours.label)
    w3 = _find(results, "W3 rebuild (events/s)", "this project: rebuild both views")
    issue_w3 = 1000 * 100
    w1_why = w3_why = ""
    if w1:
        w1_why = (
            f"this project's default path stores {_number(w1.median)} edits/s here: 3,000 would take"
            f" {3000 / w1.median / 60:.0f} min per run, and there are four (warm-up included)"
        )
    if w3:
        w3_why = (
            f"this project rebuilds {_number(w3.median)} events/s here: one rebuild of 100,000 would take"
            f" {issue_w3 / w3.median / 60:.0f} min, and there are three plus the warm-up"
        )
    rows = [
        ("W1", "3,000 revisions per run", f"{sizes.w1_edits:,} per run, warm-up {sizes.w1_warmup:,}", w1_why),
        (
            "W2",
            "8 and 16 writers, on 8/16 agents and on one",
            f"the same, {sizes.w2_seconds:g} s per run; peers and raw with up to"
            f" {sizes.w2_all_systems_up_to} writers",
            "time: each run of each system costs a fork of all writers",
        ),
        (
            "W3",
            f"1,000 agents x 100 revisions ({issue_w3:,} events)",
            f"{sizes.w3_agents:,} x {sizes.w3_revisions:,} ({sizes.w3_agents * sizes.w3_revisions:,} events)",
            w3_why,
        ),
        ("W4", "revisions 50 apart; 8 HTTP clients", f"the same; {sizes.w4_requests:,} requests per run", ""),
        (
            "W5",
            "10,000 revisions; 1,000,000 events",
            f"{sizes.w5_depth:,} revisions; {sizes.w5_log_events:,} events, bulk-loaded by SQL",
            "",
        ),
        (
            "W7",
            "1,000 files; 1,000 file versions (issue 14)",
            f"{sizes.w7_agents:,} files; {sizes.w7_versions:,} file versions",
            "",
        ),
    ]
    lines = ["| workload | issues 7 and 14 ask | this run | why smaller |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {asked} | {ran} | {why} |" for name, asked, ran, why in rows]
    return lines


def markdown(bench: Bench, *, runtime: float, quick: bool, command: str, load_before: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results" + (" (quick run: tiny sizes, figures not meaningful)" if quick else ""),
        "",
        f"`{command}` on {now}; the whole run took {runtime:,.0f} s"
        f" ({', '.join(f'{key} {seconds:.0f} s' for key, seconds in bench.seconds.items())}).",
        "",
        "Every figure is the median of the measured runs after one warm-up (sizes and method per"
        " workload under Notes); spread is half the range of the runs over the median. The last"
        " column says how many times faster (or leaner) the workload's **reference** row is than"
        " the row: above 1 the reference wins. The reference is this project's row, except for"
        " W4 over HTTP (the plain GET). The machine is shared: only ratios within this run mean much.",
        "",
        "## Machine",
        "",
    ]
    info = machine()
    info["load average at start (1, 5, 15 min)"] = load_before
    lines += [f"* {key}: {value}" for key, value in info.items()]
    lines += ["", "PostgreSQL (127.0.0.1:5432, the same server for every system):", ""]
    lines += [f"* {key}: {value}" for key, value in postgres().items()]
    lines += ["", "Packages:", ""]
    lines += ["* " + ", ".join(f"{name} {version}" for name, version in packages().items()), ""]
    lines += ["## Sizes", "", *sizes(bench), ""]
    lines += ["## Results", "", *table(bench.results), ""]
    lines += ["## Targets (issues 7 and 14)", "", "| target | measured | verdict |", "| --- | --- | --- |"]
    lines += [f"| {target} | {measured} | {verdict} |" for target, measured, verdict in targets(bench)]
    lines += ["", "## Notes", ""]
    for workload, notes in bench.notes.items():
        lines += [f"* **{workload}**: " + " ".join(notes)]
    if bench.queries:
        lines += ["", "## Queries per revise (this project)", ""]
        for label, (per_revise, round_trips, kinds) in bench.queries.items():
            lines += [
                f"* {label}: {per_revise:.1f} statements in {round_trips:.1f} round trips"
                " per agent_revise call:"
            ]
            lines += [f"  * {count:g} x {kind}" for kind, count in kinds.most_common()]
    if bench.profiles:
        lines += ["", "## Profile", ""]
        lines += [
            "pyinstrument (1 ms sampling) during the warm-up round; the warm-up is not measured,"
            " so the profiler's overhead does not touch the figures above.",
            "",
        ]
        lines += [profile.markdown() for profile in bench.profiles]
    return "\n".join(lines).rstrip() + "\n"
