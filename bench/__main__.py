"""The benchmark suite of issue 7: this project against its peers and the hardware limit.

    python -m bench [--quick] [--only W1,W3] [--no-profile] [--output PATH] [--keep]
    make bench      (installs the `bench` extra first)

Creates its own PostgreSQL databases on PG_URL (default postgres://postgres@127.0.0.1:5432):
bench_main for everything, bench_empty and bench_depth for W5's appends to a short and a
long log, and drops them at the end, on error too (--keep keeps bench_main). Runs W1-W7
(bench/workloads/) for this project, eventsourcing, django-reversion, django-simple-history
and raw psycopg on the same documents, prints one table and writes it with the machine,
PostgreSQL settings, package versions, targets and profiles to bench/RESULTS.md (a --quick
run writes nowhere unless given --output: its tiny sizes make figures that mean nothing, it
only keeps the suite from rotting). No timing is asserted: the exit code is 0 unless
something failed.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from bench.workloads import common

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
# W7 after W6: the files it imports are not in the storage figures.
WORKLOADS = ("W3", "W1", "W2", "W4", "W5", "W6", "W7")
NEEDS = {"W4": "W1", "W5": "W1"}  # W4 and W5 use the agents W1 wrote


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, under a minute (CI)")
    parser.add_argument("--only", help="comma-separated workloads, e.g. W1,W4 (W4 and W5 bring W1)")
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument profiles")
    parser.add_argument(
        "--output", type=Path, help=f"where to write the report (default {RESULTS} for a full run)"
    )
    parser.add_argument("--keep", action="store_true", help=f"keep the database {common.MAIN_DATABASE}")
    args = parser.parse_args(argv)
    selected = set(WORKLOADS)
    if args.only:
        selected = {name.strip().upper() for name in args.only.split(",")}
        unknown = selected - set(WORKLOADS)
        if unknown:
            parser.error(f"unknown workloads {sorted(unknown)}; choose from {', '.join(sorted(WORKLOADS))}")
        selected |= {NEEDS[name] for name in selected if name in NEEDS}
    args.selected = [name for name in WORKLOADS if name in selected]
    if args.output is None and not args.quick:
        args.output = RESULTS
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    started = time.perf_counter()
    load_before = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    for database in (common.EMPTY_DATABASE, common.DEPTH_DATABASE):
        common.database_drop(database)  # left behind by an interrupted run, if any
    common.database_create(common.MAIN_DATABASE)
    common.django_environment(common.MAIN_DATABASE)

    import django

    django.setup()
    # Each append queues a catch-up task on the in-memory broker; kombu warns it has no hostname.
    logging.getLogger("kombu").setLevel(logging.ERROR)
    from django.core.management import call_command

    from bench import report
    from bench.workloads import (
        w1_sequential,
        w2_concurrent,
        w3_rebuild,
        w4_diff,
        w5_depth,
        w6_storage,
        w7_import,
    )
    from bench.workloads.suite import FULL, QUICK, Bench
    from bench.workloads.systems import Raw

    modules = {
        "W1": w1_sequential,
        "W2": w2_concurrent,
        "W3": w3_rebuild,
        "W4": w4_diff,
        "W5": w5_depth,
        "W6": w6_storage,
        "W7": w7_import,
    }
    bench = Bench(QUICK if args.quick else FULL, profile=not args.no_profile)
    print(
        f"bench: {'quick' if args.quick else 'full'} run of {', '.join(args.selected)} on"
        f" {common.PG_URL}/{common.MAIN_DATABASE}; load average {load_before}",
        flush=True,
    )
    try:
        call_command("migrate", verbosity=0)
        Raw.table_create(common.database_url(common.MAIN_DATABASE))
        if "W5" in args.selected:
            # W5's two append databases start as copies of the freshly migrated, still empty one.
            bench.close()
            for database in (common.EMPTY_DATABASE, common.DEPTH_DATABASE):
                common.admin(f'CREATE DATABASE "{database}" TEMPLATE "{common.MAIN_DATABASE}"')
        bench.open()
        for name in args.selected:
            print(f"{name} ...", flush=True)
            began = time.perf_counter()
            modules[name].run(bench)
            bench.seconds[name] = time.perf_counter() - began
            print(f"{name} done in {bench.seconds[name]:.0f} s", flush=True)
    finally:
        bench.close()
        common.database_drop(common.EMPTY_DATABASE)
        common.database_drop(common.DEPTH_DATABASE)
        if not args.keep:
            common.database_drop(common.MAIN_DATABASE)
    runtime = time.perf_counter() - started
    command = "python -m bench" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    text = report.markdown(bench, runtime=runtime, quick=args.quick, command=command, load_before=load_before)
    print()
    print("\n".join(report.table(bench.results)))
    print()
    for target, measured, verdict in report.targets(bench):
        print(f"{target}: {measured} {verdict.strip('*')}")
    if args.output:
        args.output.write_text(text)
        print(f"\nwritten to {args.output}")
    print(f"runtime {runtime:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
