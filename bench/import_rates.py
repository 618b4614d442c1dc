"""Import and export times: a git history replay, a folder import and an export, on SQLite and PostgreSQL.

    python -m bench.import_rates [--versions 1000 --files 20 --agents 1000] [--db sqlite|postgres|both]

Builds a repository of `--versions` commits, each changing one of `--files` agent files
(with `git fast-import`, in a temporary folder), replays it with `import_git_history`, then
imports a folder of `--agents` files with `import_agents` and exports them with
`export_agents`. Each database runs in its own process: SQLite in a temporary file,
PostgreSQL in its own database (bench_import_<pid>) on PG_URL (default
postgres://postgres@127.0.0.1:5432), dropped at the end. Celery runs eagerly, the embedded
default (`--worker-mode` instead queues the catch-ups as a deployment with Redis would).
"""

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def document(name: str, version: int, lines: int = 60) -> bytes:
    body = "".join(
        f"Line {i}: guidance for the agent{f', version {version}' if i % 20 == 0 else ''}.\n"
        for i in range(lines)
    )
    frontmatter = f"name: {name}\ndescription: Benchmark agent {name}\ntools: Read, Bash\nmodel: sonnet\n"
    return f"---\n{frontmatter}---\n{body}".encode()


def build_repository(path: Path, *, versions: int, files: int, prefix: str = "agent") -> None:
    """A repository whose every commit changes one agent file (the first `files` commits add them)."""
    stream = io.BytesIO()
    start = 1_700_000_000
    for number in range(versions):
        name = f"{prefix}-{number % files:03d}"
        content = document(name, number // files)
        message = f"Change {name} ({number})".encode()
        stream.write(b"commit refs/heads/main\n")
        stamp = f"{start + number * 60} +0000".encode()
        stream.write(b"author Bench Author <bench@example.com> " + stamp + b"\n")
        stream.write(b"committer Bench Author <bench@example.com> " + stamp + b"\n")
        stream.write(b"data %d\n%s\n" % (len(message), message))
        stream.write(b"M 100644 inline .claude/agents/%s.md\n" % name.encode())
        stream.write(b"data %d\n%s\n" % (len(content), content))
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input=stream.getvalue(), check=True, env=env)
    subprocess.run(["git", "checkout", "-q", "main"], cwd=path, check=True, env=env)


def measure(args: argparse.Namespace) -> None:
    """Run in a process whose DATABASE_URL is already set: migrate, replay, import, export."""
    import django

    django.setup()
    from django.core.management import call_command

    from events.models import Event

    call_command("migrate", verbosity=0)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        repo = folder / "repo"
        started = time.perf_counter()
        build_repository(repo, versions=args.versions, files=args.files)
        built = time.perf_counter() - started

        started = time.perf_counter()
        call_command("import_git_history", str(repo), stdout=io.StringIO(), stderr=io.StringIO())
        replayed = time.perf_counter() - started
        events = Event.objects.count()

        started = time.perf_counter()
        call_command("import_git_history", str(repo), stdout=io.StringIO(), stderr=io.StringIO())
        rerun = time.perf_counter() - started

        agents = folder / "agents"
        agents.mkdir()
        for number in range(args.agents):
            name = f"bulk-{number:05d}"
            (agents / f"{name}.md").write_bytes(document(name, 0))
        started = time.perf_counter()
        call_command("import_agents", str(agents), stdout=io.StringIO(), stderr=io.StringIO())
        imported = time.perf_counter() - started

        started = time.perf_counter()
        call_command("export_agents", str(folder / "export"), stdout=io.StringIO())
        exported = time.perf_counter() - started
        written = len(list((folder / "export").iterdir()))

    label = os.environ["BENCH_LABEL"]
    print(
        f"{label}: replay of {args.versions} versions ({args.files} files, {events} events):"
        f" {replayed:.2f}s ({args.versions / replayed:,.0f} versions/s); re-run with nothing new"
        f" {rerun:.2f}s; import of {args.agents} files {imported:.2f}s ({args.agents / imported:,.0f}/s);"
        f" export of {written} agents {exported:.2f}s ({written / exported:,.0f}/s)"
        f" [repository built in {built:.1f}s]"
    )


def run_on(database: str, args: argparse.Namespace) -> None:
    env = {
        **os.environ,
        **GIT_ENV,
        "DEBUG": "1",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "BENCH_LABEL": database,
    }
    env.pop("REDIS_URL", None)
    if args.worker_mode:
        env["CELERY_TASK_ALWAYS_EAGER"] = "0"
        env["BENCH_LABEL"] += " (worker mode)"
    command = [sys.executable, "-m", "bench.import_rates", "--measure", *sys.argv[1:]]
    if database == "sqlite":
        with tempfile.TemporaryDirectory() as temporary:
            env["DATABASE_URL"] = f"sqlite:///{temporary}/bench.sqlite3"
            subprocess.run(command, env=env, check=True)
        return
    name = f"bench_import_{os.getpid()}"
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env["DATABASE_URL"] = f"{PG_URL}/{name}"
        subprocess.run(command, env=env, check=True)
    finally:
        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--worker-mode", action="store_true")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return
    for database in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        run_on(database, args)


if __name__ == "__main__":
    main()
