"""Diff and blame on 256 KiB pathological pairs, and blame deep in a history (issue 13, defect 6, W5).

    python -m bench.pathological [--tree PATH] [--depth 10000] [--timeout 120] [--repeat 3]

Stores, in a throw-away SQLite database under a temporary directory (the tree's own files are
only read), an agent whose revision 1 is 256 KiB of alternating lines "a"/"b" and revision 2
the same shifted by one ("b"/"a"), the same for three-way lines ("a"/"b"/"c" against
"c"/"b"/"a"), and an agent with --depth revisions each changing a line. Then times, each in a
fresh process (so that a request stuck for minutes is killed at --timeout and reported as
such), one in-process GET through Django's test client of:

* diff JSON, diff unified, diff HTML: /api/v1/agents/<pair>/diff/?from=1&to=2[&format=...]
* blame: /api/v1/agents/<pair>/blame/?ref=2
* blame at revision 10 and at revision --depth of the deep agent (the W5 target: within 1.2x)

--tree runs the code of another checkout (e.g. the main branch, for the figures before a
change) with this script: its directory is put first on the import path. Prints one table;
the best of --repeat runs per request. No timing is asserted.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAD = "---\nname: {name}\ndescription: Pathological pair\n---\n"
LIMIT = 256 * 1024


def _bodies(kind: str, name: str) -> tuple[str, str]:
    room = LIMIT - len(HEAD.format(name=name)) - 8
    if kind == "alternating":
        return "a\nb\n" * (room // 4), "b\na\n" * (room // 4)
    return "a\nb\nc\n" * (room // 6), "c\nb\na\n" * (room // 6)


PAIRS = {"alternating": "alternating", "three-way": "three-way"}
DEEP = "deep"


def _setup_django(database: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
    import django

    django.setup()


def _seed(depth: int) -> None:
    """Migrate and store the agents (in the child, with the tree's code)."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from agents_app.services import ChangeContext, agent_create, agent_revise

    get_user_model().objects.create_superuser(username="bench", email=None, password=None)
    context = ChangeContext(actor="bench", source="cli", reason="bench")
    for name, kind in PAIRS.items():
        old, new = _bodies(kind, name)
        change = agent_create(content=HEAD.format(name=name) + old, context=context)
        agent_revise(agent_id=change.agent_id, content=HEAD.format(name=name) + new, context=context)
    lines = [f"line {number} of a prompt that grows old" for number in range(60)]
    change = agent_create(content=HEAD.format(name=DEEP) + "\n".join(lines) + "\n", context=context)
    for revision in range(2, depth + 1):
        lines[revision % len(lines)] = f"line {revision % len(lines)} edited in revision {revision}"
        content = HEAD.format(name=DEEP) + "\n".join(lines) + "\n"
        agent_revise(agent_id=change.agent_id, content=content, context=context)


def _measure(url: str, repeat: int) -> dict:
    """The best of `repeat` GETs of `url` (in the child)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    # The first request of a process imports and sets up what every later one reuses.
    assert client.get(f"/api/v1/agents/{DEEP}/revisions/1/").status_code == 200
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        seconds = time.perf_counter() - started
        assert response.status_code == 200, (response.status_code, response.content[:300])
        best = seconds if best is None else min(best, seconds)
    return {"seconds": best, "bytes": len(response.content)}


def _child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path.cwd()))  # the tree measured, not this script's
    _setup_django(Path(args.database))
    if args.seed:
        _seed(args.depth)
        print(json.dumps({"seeded": True}))
    else:
        print(json.dumps(_measure(args.url, args.repeat)))


def _run_child(tree: Path, database: Path, extra: list[str], timeout: float) -> dict | None:
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(tree)}
    try:
        result = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", "--database", str(database), *extra],
            cwd=tree,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pathological", description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose code is measured")
    parser.add_argument("--depth", type=int, default=10_000, help="revisions of the deep agent")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a request is given up")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-pathological-") as directory:
        database = Path(directory) / "bench.sqlite3"
        started = time.perf_counter()
        _run_child(tree, database, ["--seed", "--depth", str(args.depth)], timeout=24 * 3600)
        seconds = time.perf_counter() - started
        print(f"tree {tree}; seeded in {seconds:.0f} s (deep agent: {args.depth} revisions)")
        requests: list[tuple[str, str]] = []
        for pair in PAIRS:
            requests += [
                (f"{pair}: diff JSON", f"/api/v1/agents/{pair}/diff/?from=1&to=2"),
                (f"{pair}: diff unified", f"/api/v1/agents/{pair}/diff/?from=1&to=2&format=unified"),
                (f"{pair}: diff HTML", f"/api/v1/agents/{pair}/diff/?from=1&to=2&format=html"),
                (f"{pair}: blame", f"/api/v1/agents/{pair}/blame/?ref=2"),
            ]
        requests += [
            ("deep: blame at revision 10", f"/api/v1/agents/{DEEP}/blame/?ref=10"),
            (f"deep: blame at revision {args.depth}", f"/api/v1/agents/{DEEP}/blame/?ref={args.depth}"),
        ]
        figures: dict[str, float | None] = {}
        for label, url in requests:
            arguments = ["--url", url, "--repeat", str(args.repeat)]
            result = _run_child(tree, database, arguments, timeout=args.timeout * args.repeat + 30)
            figures[label] = None if result is None else result["seconds"]
            if result is None:
                print(f"{label:<40} > {args.timeout:.0f} s (killed)", flush=True)
            else:
                milliseconds = result["seconds"] * 1000
                print(f"{label:<40} {milliseconds:10.1f} ms {result['bytes']:>10} bytes", flush=True)
        shallow = figures["deep: blame at revision 10"]
        deep = figures[f"deep: blame at revision {args.depth}"]
        if shallow and deep:
            ratio = deep / shallow
            print(f"blame at revision {args.depth} / blame at revision 10: {ratio:.2f}x (target 1.2x)")


if __name__ == "__main__":
    main()
