"""`manage.py import_git_history REPO [--glob PATTERN] [--rev REV]`: replay a repository's agent files.

Replays the first-parent history of REV (default HEAD), oldest commit first, for the files
matching PATTERN (a git glob pathspec from the repository's top, default
`.claude/agents/*.md`): additions create agents, changes revise them, deletions archive them,
and renamed files keep their agent. Each event records the commit's author as actor
(`git:<name> <email>`), its committer date as `occurred_at`, its subject as reason, and the
commit id and path in metadata. A re-run replays only the commits after those imported.
Exit codes: 0 done, 1 a file failed at some commit (listed; later commits still applied),
2 bad arguments (not a repository, unknown revision).
"""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from agents_app.importing import (
    DEFAULT_GIT_GLOB,
    FAILED,
    SKIPPED,
    FileOutcome,
    ImportRefused,
    git_history_import,
)

# Off a terminal, a progress line at most this often (seconds) or every this many commits.
PROGRESS_SECONDS = 5.0
PROGRESS_COMMITS = 500


class Command(BaseCommand):
    help = "Replay a git repository's history of agent definition files (oldest commit first)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("repo", metavar="REPO", type=Path, help="a git work tree or bare repository")
        parser.add_argument(
            "--glob",
            default=DEFAULT_GIT_GLOB,
            metavar="PATTERN",
            help=f"git glob pathspec from the repository's top (default {DEFAULT_GIT_GLOB})",
        )
        parser.add_argument("--rev", default="HEAD", metavar="REV", help="branch, tag or commit (HEAD)")

    def handle(self, *args: object, repo: Path, glob: str, rev: str, **options: object) -> None:
        verbosity = int(options.get("verbosity", 1))  # type: ignore[call-overload]
        # tqdm writes carriage returns to the raw stream: Django's OutputWrapper would add a
        # newline to every redraw. Off a terminal, plain lines now and then instead.
        stream = getattr(self.stderr, "_out", self.stderr)
        on_terminal = stream.isatty()
        started = last_line = time.monotonic()
        bar = tqdm(desc="git history", unit="commit", file=stream, disable=not on_terminal, leave=False)
        with bar:

            def report(outcome: FileOutcome) -> None:
                if verbosity >= 2 or outcome.action in (FAILED, SKIPPED):
                    with tqdm.external_write_mode(file=stream):
                        self.stdout.write(str(outcome))

            def progress(done: int, total: int) -> None:
                nonlocal last_line
                bar.total = total
                bar.update(done - bar.n)
                now = time.monotonic()
                if on_terminal or done in (0, total):
                    return
                if done % PROGRESS_COMMITS == 0 or now - last_line >= PROGRESS_SECONDS:
                    last_line = now
                    rate = done / (now - started) if now > started else 0.0
                    left = f", about {(total - done) / rate:.0f}s left" if rate else ""
                    self.stderr.write(f"replayed {done}/{total} commits ({rate:,.0f} commits/s{left})")

            try:
                result = git_history_import(repo=repo, glob=glob, rev=rev, report=report, progress=progress)
            except ImportRefused as exc:
                raise CommandError(str(exc), returncode=2) from exc
        seconds = time.monotonic() - started
        self.stdout.write(
            f"replayed {result.commits} commits in {seconds:.1f}s"
            f" ({result.already_imported} imported before): {result.totals}"
        )
        if result.totals.failed:
            raise CommandError(
                f"{result.totals.failed} file(s) failed at some commit (listed above); later commits were"
                " applied",
                returncode=1,
            )
