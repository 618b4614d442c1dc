"""Who the registry credits after a replay of a repository laid out and merged like a public one.

    DATABASE_URL=... DEBUG=1 python -m bench.replay_authors [--pull-requests 250 --authors 30 --agents 1000]

Builds (with `git fast-import`, in a temporary folder) a repository of `categories/*/*.md`
agents with a README in each category, whose changes arrive as pull requests: each one a
branch of 1 to 3 commits by 1 or 2 of `--authors` people, merged with a merge commit by one
maintainer; a few commits go straight to main. Replays it with `import_git_history` into the
database of DATABASE_URL (which must be empty and migrated), then prints the figures the
issue asks for: distinct actors in the registry against distinct authors in
`git log --no-merges` for the same paths, and file changes per second. Then imports a
folder of `--agents` generated files with `import_agents` and prints files per second.
"""

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
CATEGORIES = ("review", "writing", "data", "ops", "security")
MAINTAINER = "Maintainer <maintainer@example.com>"


def document(name: str, version: int, lines: int = 40) -> bytes:
    body = "".join(
        f"Line {i}: guidance{f', version {version}' if i == version % lines else ''}.\n" for i in range(lines)
    )
    return f"---\nname: {name}\ndescription: Agent {name}\ntools: Read, Grep\n---\n{body}".encode()


def build(path: Path, *, pull_requests: int, authors: int, seed: int = 7) -> int:
    """The repository; returns its number of commits."""
    rng = random.Random(seed)
    people = [f"Author {n:02d} <author{n:02d}@example.com>" for n in range(authors)]
    agents = [f"categories/{c}/{c}-agent-{n:02d}.md" for c in CATEGORIES for n in range(8)]
    versions = dict.fromkeys(agents, 0)
    stream = io.BytesIO()
    clock = 1_700_000_000
    mark = 0
    commits = 0

    def commit(
        ref: str, who: str, message: str, parent: int | None, merge: int | None, files: dict[str, bytes]
    ) -> int:
        nonlocal clock, mark, commits
        clock += 60
        mark += 1
        commits += 1
        stream.write(f"commit {ref}\nmark :{mark}\n".encode())
        stream.write(f"author {who} {clock} +0000\n".encode())
        committer = MAINTAINER if merge else who
        stream.write(f"committer {committer} {clock} +0000\n".encode())
        data = message.encode()
        stream.write(b"data %d\n%s\n" % (len(data), data))
        if parent is not None:
            stream.write(f"from :{parent}\n".encode())
        if merge is not None:
            stream.write(f"merge :{merge}\n".encode())
        for file, content in files.items():
            stream.write(f"M 100644 inline {file}\n".encode())
            stream.write(b"data %d\n%s\n" % (len(content), content))
        return mark

    initial = {agent: document(Path(agent).stem, 0) for agent in agents}
    initial.update({f"categories/{c}/README.md": b"# " + c.encode() + b"\n" for c in CATEGORIES})
    main = commit("refs/heads/main", MAINTAINER, "Initial collection", None, None, initial)
    for number in range(pull_requests):
        if rng.random() < 0.1:  # straight to main
            agent = rng.choice(agents)
            versions[agent] += 1
            main = commit("refs/heads/main", rng.choice(people), f"Fix {agent}", main, None,
                          {agent: document(Path(agent).stem, versions[agent])})  # fmt: skip
            continue
        writers = rng.sample(people, rng.choice((1, 1, 2)))
        touched: dict[str, bytes] = {}
        tip = main
        for step in range(rng.randint(1, 3)):
            # Later commits of a pull request mostly touch the same agent again.
            again = [file for file in touched if not file.endswith("README.md")]
            agent = again[0] if again and rng.random() < 0.7 else rng.choice(agents)
            if rng.random() < 0.1:
                agent = f"categories/{Path(agent).parent.name}/README.md"
                content = f"# list {number}\n".encode()
            else:
                versions[agent] += 1
                content = document(Path(agent).stem, versions[agent])
            touched[agent] = content
            who = writers[step % len(writers)]
            tip = commit(f"refs/heads/pr-{number}", who, f"PR {number}: {agent}", tip, None, {agent: content})
        main = commit("refs/heads/main", MAINTAINER, f"Merge pull request #{number}", main, tip, touched)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input=stream.getvalue(), check=True, env=env)
    subprocess.run(["git", "checkout", "-q", "main"], cwd=path, check=True, env=env)
    return commits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pull-requests", type=int, default=250)
    parser.add_argument("--authors", type=int, default=30)
    parser.add_argument("--agents", type=int, default=1000)
    args = parser.parse_args()
    os.environ.update(GIT_ENV)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import CommandError, call_command

    from agents_app.models import AgentNameClaim
    from events.models import Event

    with tempfile.TemporaryDirectory() as temporary:
        repo = Path(temporary) / "repo"
        commits = build(repo, pull_requests=args.pull_requests, authors=args.authors)
        out = io.StringIO()
        started = time.perf_counter()
        try:
            call_command(
                "import_git_history", str(repo), glob="categories/*/*.md", stdout=out, stderr=io.StringIO()
            )
        except CommandError as error:  # the summary says what failed; the figures still count
            print(f"import_git_history exited {error.returncode}")
        seconds = time.perf_counter() - started
        summary = out.getvalue().strip().splitlines()[-1]
        git_events = Event.objects.filter(metadata__source="git")
        actors = set(git_events.values_list("metadata__actor", flat=True))
        named = {
            author
            for authors in git_events.values_list("metadata__git__authors", flat=True)
            for author in authors or ()  # replays before provenance: none
        }
        log = [
            "git",
            "-C",
            str(repo),
            "log",
            "--no-merges",
            "--format=%aN <%aE>",
            "--",
            ":(glob)categories/*/*.md",
        ]
        agent_paths = [*log, ":(glob,exclude)**/README.md"]
        authors_all = set(
            subprocess.run(log, capture_output=True, text=True, check=True).stdout.split("\n")
        ) - {""}
        authors = set(
            subprocess.run(agent_paths, capture_output=True, text=True, check=True).stdout.split("\n")
        ) - {""}
        merges = subprocess.run(
            ["git", "-C", str(repo), "rev-list", "--merges", "--count", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        steps = sum(
            int(part.split()[1])
            for part in summary.split(": ", 1)[1].replace(" (", ", ").split(", ")
            if part.split()[0] in {"created", "revised", "unchanged", "archived", "failed", "skipped"}
        )
        print(f"repository: {commits} commits ({merges} merges), {args.authors} possible authors")
        print(f"replay: {summary}")
        print(f"replay: {steps} file changes in {seconds:.2f}s = {steps / seconds:,.0f} files/s")
        print(f"distinct actors in the registry: {len(actors)}")
        print(f"distinct people in provenance 'authors': {len(named)}")
        print(f"distinct authors, git log --no-merges, agent files: {len(authors)}")
        print(f"  (with the READMEs' authors: {len(authors_all)})")
        merged = git_events.filter(metadata__git__has_key="merge_commit")
        credited = merged.filter(metadata__actor=f"git:{MAINTAINER}").count()
        print(f"revisions landed by a merge: {merged.count()}; credited to the maintainer: {credited}")
        from agents_app.importing.git import git_commits, git_merged_commits

        started = time.perf_counter()
        line = git_commits(repo=repo, rev="HEAD", glob="categories/*/*.md")
        found = git_merged_commits(
            repo=repo, rev="HEAD", glob="categories/*/*.md", commits=[c.sha for c in line]
        )
        seconds = time.perf_counter() - started
        print(f"reading the history with merge authorship: {len(found)} merges in {seconds * 1000:.0f} ms")

        folder = Path(temporary) / "agents"
        folder.mkdir()
        for number in range(args.agents):
            (folder / f"bulk-{number:04d}.md").write_bytes(document(f"bulk-{number:04d}", 1))
        before = AgentNameClaim.objects.count()
        started = time.perf_counter()
        call_command("import_agents", str(folder), stdout=io.StringIO(), stderr=io.StringIO())
        seconds = time.perf_counter() - started
        created = AgentNameClaim.objects.count() - before
        print(f"folder import: {created} files in {seconds:.2f}s = {created / seconds:,.0f} files/s")


if __name__ == "__main__":
    main()
