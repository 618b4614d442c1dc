"""`manage.py import_agents PATH... [--actor NAME] [--reason TEXT]`: agent definition files into the registry.

Folders are searched recursively for `*.md` (hidden folders such as .git are skipped, and
symbolic links are not followed out of the folder). A new name creates an agent, changed
content revises it, identical content stores nothing. One line per file, then the totals.
Exit codes: 0 done, 1 some file failed (listed with its reason; nothing of it is stored),
2 bad arguments (a missing path, an empty or over-long actor or reason).
"""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from agents_app.exceptions import InvalidCommand
from agents_app.importing import FAILED, SKIPPED, FileOutcome, ImportRefused, agents_import


class Command(BaseCommand):
    help = (
        "Import agent definition files: each PATH is a file or a folder (searched recursively for *.md)."
        " New names create agents, changed content revises them, identical content is skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="files or folders")
        parser.add_argument("--actor", default="system", help="recorded as who made the change (system)")
        parser.add_argument("--reason", default="", help="the change message (default: 'import of <path>')")

    def handle(self, *args: object, paths: list[Path], actor: str, reason: str, **options: object) -> None:
        verbosity = int(options.get("verbosity", 1))  # type: ignore[call-overload]
        # tqdm writes carriage returns to the raw stream: Django's OutputWrapper would add a
        # newline to every redraw. Off a terminal the per-file lines are the progress.
        stream = getattr(self.stderr, "_out", self.stderr)
        started = time.monotonic()
        with tqdm(desc="import", unit="file", file=stream, disable=not stream.isatty(), leave=False) as bar:

            def report(outcome: FileOutcome) -> None:
                if verbosity >= 1 or outcome.action in (FAILED, SKIPPED):
                    with tqdm.external_write_mode(file=stream):
                        self.stdout.write(str(outcome))

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                totals = agents_import(
                    paths=paths, actor=actor, reason=reason, report=report, progress=progress
                )
            except (ImportRefused, InvalidCommand) as exc:
                raise CommandError(str(exc), returncode=2) from exc
        files = totals.created + totals.revised + totals.unchanged + totals.failed
        self.stdout.write(f"{totals} ({files} files in {time.monotonic() - started:.1f}s)")
        if totals.failed:
            raise CommandError(
                f"{totals.failed} file(s) failed (listed above); nothing of them was stored", returncode=1
            )
