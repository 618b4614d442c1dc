"""`manage.py import_agents PATH... [--actor NAME] [--reason TEXT] [--exclude GLOB] [--only-new] [--dry-run]`.

Agent definition files into the registry. Folders are searched recursively for `*.md`
(hidden folders such as .git are skipped, and symbolic links are not followed out of the
folder); `--exclude GLOB` (repeatable) leaves out files whose path under PATH, or whose
name, matches. A Markdown file without frontmatter (a README) is skipped as not an agent
file. A new name creates an agent, changed content revises it, identical content stores
nothing; `--only-new` skips names an agent already has. The summary names the existing
agents the import revised. `--dry-run` does everything and then rolls it back: the same
lines and totals, nothing stored. Exit codes: 0 done, 1 some agent file failed (listed
with its reason; nothing of it is stored), 2 bad arguments (a missing path, an empty or
over-long actor or reason).
"""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from agents_app.exceptions import InvalidCommand
from agents_app.importing import FAILED, SKIPPED, FileOutcome, ImportRefused, agents_import
from agents_app.importing.terminal import chatty_logs_quiet

# The summary names at most this many existing agents the import revised, then counts the rest.
NAMED_REVISED = 20


class Command(BaseCommand):
    help = (
        "Import agent definition files: each PATH is a file or a folder (searched recursively for *.md)."
        " New names create agents, changed content revises them, identical content is skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="files or folders")
        parser.add_argument("--actor", default="system", help="recorded as who made the change (system)")
        parser.add_argument("--reason", default="", help="the change message (default: 'import of <path>')")
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="GLOB",
            help="leave out files whose path under PATH or whose name matches (repeatable; * crosses /)",
        )
        parser.add_argument(
            "--only-new", action="store_true", help="create agents only; skip files whose name exists"
        )
        parser.add_argument("--dry-run", action="store_true", help="report what would be done; store nothing")

    def handle(
        self,
        *args: object,
        paths: list[Path],
        actor: str,
        reason: str,
        exclude: list[str],
        only_new: bool,
        dry_run: bool,
        **options: object,
    ) -> None:
        verbosity = int(options.get("verbosity", 1))  # type: ignore[call-overload]
        # tqdm writes carriage returns to the raw stream: Django's OutputWrapper would add a
        # newline to every redraw. Off a terminal the per-file lines are the progress.
        stream = getattr(self.stderr, "_out", self.stderr)
        if dry_run:
            self.stdout.write("dry run: the import runs in full and is rolled back; nothing will be stored")
        started = time.monotonic()
        bar = tqdm(desc="import", unit="file", file=stream, disable=not stream.isatty(), leave=False)
        with bar, chatty_logs_quiet(verbosity=verbosity):

            def report(outcome: FileOutcome) -> None:
                shown = verbosity >= 2 or (
                    not outcome.routine and (verbosity >= 1 or outcome.action in (FAILED, SKIPPED))
                )
                if shown:
                    with tqdm.external_write_mode(file=stream):
                        self.stdout.write(str(outcome))

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                totals = agents_import(
                    paths=paths,
                    actor=actor,
                    reason=reason,
                    exclude=exclude,
                    only_new=only_new,
                    dry_run=dry_run,
                    report=report,
                    progress=progress,
                )
            except (ImportRefused, InvalidCommand) as exc:
                raise CommandError(str(exc), returncode=2) from exc
        if totals.revised_existing:
            named = [f"{name} (revision {rev})" for name, rev in totals.revised_existing.items()]
            more = len(named) - NAMED_REVISED
            listed = ", ".join(named[:NAMED_REVISED]) + (f" and {more} more" if more > 0 else "")
            verb = "would revise" if dry_run else "revised"
            self.stdout.write(f"{verb} {len(named)} existing agent(s): {listed}")
        files = totals.created + totals.revised + totals.unchanged + totals.failed
        prefix = "dry run, nothing stored: " if dry_run else ""
        self.stdout.write(f"{prefix}{totals} ({files} files in {time.monotonic() - started:.1f}s)")
        if totals.failed:
            raise CommandError(
                f"{totals.failed} file(s) failed (listed above); nothing of them was stored", returncode=1
            )
