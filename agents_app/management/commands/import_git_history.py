"""`manage.py import_git_history REPO [--glob PATTERN] [--exclude GLOB] [--rev REV] [--dry-run]`.

Replays the first-parent history of REV (default HEAD), oldest commit first, for the files
matching PATTERN (a git glob pathspec from the repository's top, default
`.claude/agents/*.md`) and no `--exclude` GLOB (same syntax, repeatable): additions create
agents, changes revise them, deletions archive them, and renamed files keep their agent.
Markdown files without frontmatter (READMEs) are skipped, not failed.

Each event records who wrote the change as actor (`git:<name> <email>`: a plain commit's
author; for a merge, the author of the newest commit it brought in that touched the file),
when it landed on the replayed line as `occurred_at` (that commit's committer date), the
commit subject as reason, and under metadata "git" the commit ids, every author, and the
author and committer dates (agents_app.provenance). A re-run replays only the commits after
those imported. A name held by another agent is reported once per file, and the changes it
kept out are counted in the summary. `--dry-run` replays everything and rolls it back.
Exit codes: 0 done, 1 an agent file failed at some commit (listed; later commits still
applied), 2 bad arguments (not a repository, unknown revision).
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
from agents_app.importing.terminal import chatty_logs_quiet

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
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="GLOB",
            help="leave out files matching this git glob pathspec from the top (repeatable)",
        )
        parser.add_argument("--rev", default="HEAD", metavar="REV", help="branch, tag or commit (HEAD)")
        parser.add_argument("--dry-run", action="store_true", help="report what would be done; store nothing")

    def handle(
        self,
        *args: object,
        repo: Path,
        glob: str,
        exclude: list[str],
        rev: str,
        dry_run: bool,
        **options: object,
    ) -> None:
        verbosity = int(options.get("verbosity", 1))  # type: ignore[call-overload]
        # tqdm writes carriage returns to the raw stream: Django's OutputWrapper would add a
        # newline to every redraw. Off a terminal, plain lines now and then instead.
        stream = getattr(self.stderr, "_out", self.stderr)
        on_terminal = stream.isatty()
        if dry_run:
            self.stdout.write("dry run: the import runs in full and is rolled back; nothing will be stored")
        started = last_line = time.monotonic()
        bar = tqdm(desc="git history", unit="commit", file=stream, disable=not on_terminal, leave=False)
        with bar, chatty_logs_quiet(verbosity=verbosity):

            def report(outcome: FileOutcome) -> None:
                shown = verbosity >= 2 or (not outcome.routine and outcome.action in (FAILED, SKIPPED))
                if shown:
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
                result = git_history_import(
                    repo=repo,
                    glob=glob,
                    exclude=exclude,
                    rev=rev,
                    dry_run=dry_run,
                    report=report,
                    progress=progress,
                )
            except ImportRefused as exc:
                raise CommandError(str(exc), returncode=2) from exc
        seconds = time.monotonic() - started
        for held in result.held:
            if held.changes > 1:
                self.stdout.write(f"name held: {held}")
        prefix = "dry run, nothing stored: " if dry_run else ""
        self.stdout.write(
            f"{prefix}replayed {result.commits} commits in {seconds:.1f}s"
            f" ({result.already_imported} imported before): {result.totals}"
        )
        if result.totals.failed:
            later = "would be applied" if dry_run else "were applied"
            raise CommandError(
                f"{result.totals.failed} file(s) failed at some commit (listed above); later commits {later}",
                returncode=1,
            )
