"""The W2 curve for the README's "Scale-out" note: N writers on N agents, this project only.

    python -m bench.w2_curve [--seconds 2] [WRITERS ...]     (default 1 2 4 8 16)

Each writer is a forked process with its own connection, revising its own agent through
agent_revise (read-your-writes on, views applied inline) for `--seconds`, as W2 does; the
figure is edits stored per second by all of them together. Creates the database
bench_w2_curve on PG_URL and drops it at the end. Peers are not run: `python -m bench` does
that for the writer counts of its sizes; this is the curve of one ordered log.
"""

import argparse
import logging
import multiprocessing
import random
import sys
import time

from bench.workloads import common

DATABASE = "bench_w2_curve"


def _writer(agent_id, content: str, seconds: float, seed: int, barrier, results) -> None:
    from django.db import connections

    from agents_app.services import ChangeContext, agent_revise
    from bench.workloads.documents import edit

    connections.close_all()  # the parent's connection is not ours to share
    try:
        context = ChangeContext(actor="bench", source="api")
        rng = random.Random(seed)
        edits = 0
        barrier.wait(timeout=60)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            content = edit(content, rng)
            agent_revise(agent_id=agent_id, content=content, context=context)
            edits += 1
        results.put(edits)
    except BaseException:
        results.put(None)
        raise
    finally:
        connections.close_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.w2_curve", description=__doc__.split("\n")[0])
    parser.add_argument("writers", nargs="*", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    common.database_create(DATABASE)
    common.django_environment(DATABASE)
    import django

    django.setup()
    logging.getLogger("kombu").setLevel(logging.ERROR)
    from django.core.management import call_command
    from django.db import connections

    from agents_app.services import ChangeContext, agent_create
    from bench.workloads.documents import revisions

    try:
        call_command("migrate", verbosity=0)
        context = ChangeContext(actor="bench", source="api")
        agents = []
        for number in range(max(args.writers)):
            text = next(revisions(f"w2-curve-{number:02d}", 1))
            agents.append((agent_create(content=text, context=context).agent_id, text))
        connections.close_all()
        forked = multiprocessing.get_context("fork")
        print("| writers | edits/s | vs 1 writer |\n| ---: | ---: | ---: |", flush=True)
        single = None
        for count in args.writers:
            barrier, results = forked.Barrier(count + 1), forked.Queue()
            writers = [
                forked.Process(target=_writer, args=(*agents[i], args.seconds, i, barrier, results))
                for i in range(count)
            ]
            for writer in writers:
                writer.start()
            barrier.wait(timeout=60)
            started = time.perf_counter()
            counts = [results.get(timeout=600) for _ in writers]
            elapsed = time.perf_counter() - started
            for writer in writers:
                writer.join(timeout=30)
            if None in counts:
                raise RuntimeError("a writer failed")
            rate = sum(counts) / elapsed
            single = single or rate
            print(f"| {count} | {rate:,.0f} | {rate / single:.2f}x |", flush=True)
    finally:
        connections.close_all()
        common.database_drop(DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
