"""`manage.py export_agents DIR [--ref <ref>] [--at TIMESTAMP] [--include-archived]`: agents as files.

Writes `DIR/<name>.md` with the exact stored bytes, creating DIR if needed; other files in
DIR are left alone. `--ref` picks a revision per agent (a number, `latest`, a label or
`@timestamp`; agents without it are skipped with a note); `--at` gives the registry as it was
at that instant. Exit codes: 0 done, 1 a file could not be written, 2 bad arguments.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents_app.exceptions import InvalidReference
from agents_app.importing import WRITTEN, FileOutcome, ImportRefused, agents_export
from agents_app.selectors import parse_ref


class Command(BaseCommand):
    help = "Write each agent's definition as DIR/<name>.md, byte for byte as stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", metavar="DIR", type=Path, help="where to write (created if missing)")
        parser.add_argument(
            "--ref", help="revision of each agent: a number, 'latest', a label or @<ISO timestamp>"
        )
        parser.add_argument(
            "--at", metavar="TIMESTAMP", help="the registry as it was then, e.g. 2026-11-01T12:00:00Z"
        )
        parser.add_argument("--include-archived", action="store_true", help="archived agents too")

    def handle(
        self,
        *args: object,
        directory: Path,
        ref: str | None,
        at: str | None,
        include_archived: bool,
        **options: object,
    ) -> None:
        verbosity = int(options.get("verbosity", 1))  # type: ignore[call-overload]

        def report(outcome: FileOutcome) -> None:
            if verbosity >= 2 or outcome.action != WRITTEN:
                self.stdout.write(str(outcome))

        try:
            instant = parse_ref("@" + at.removeprefix("@")) if at is not None else None
            totals = agents_export(
                directory=directory,
                ref=ref,
                at=instant,  # type: ignore[arg-type]
                include_archived=include_archived,
                report=report,
            )
        except (ImportRefused, InvalidReference) as exc:
            raise CommandError(str(exc), returncode=2) from exc
        self.stdout.write(
            f"exported {totals.written} files to {directory};"
            f" skipped {totals.skipped}, failed {totals.failed}"
        )
        if totals.failed:
            raise CommandError(f"{totals.failed} file(s) could not be written (listed above)", returncode=1)
