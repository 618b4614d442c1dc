"""`manage.py rebuild_projections [NAME...] [--verify] [--batch-size N]`: replay the log into new views.

Reads go on from the live views during the rebuild (events.rebuild.projection_rebuild).
Exit codes: 0 done, 1 `--verify` found differences (the rebuilt view replaced the old one
anyway: it is derived from the log), or the event log failed verification (nothing was
swapped in), or another rebuild of the projection is running; 2 bad arguments such as an
unknown projection name.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from events.exceptions import RebuildAlreadyRunning
from events.projections import UnknownProjection, projection_get, projection_names
from events.rebuild import RebuildResult, projection_rebuild
from events.selectors import head_position


def _differences(count: int) -> str:
    return f"{count} difference" if count == 1 else f"{count} differences"


class Command(BaseCommand):
    help = "Rebuild projections from position 0 and swap them in; with --verify, report every difference."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="projections to rebuild (default: all)")
        parser.add_argument(
            "--verify",
            action="store_true",
            help="compare the rebuilt view with the live one; exit 1 if they differ",
        )
        parser.add_argument("--batch-size", type=int, default=None, help="events per transaction")

    def handle(self, *args, names: list[str], verify: bool, batch_size: int | None, **options) -> None:
        names = names or projection_names()
        try:
            for name in names:
                projection_get(name)
        except UnknownProjection as exc:
            raise CommandError(str(exc), returncode=2) from exc
        if batch_size is not None and batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, not {batch_size}", returncode=2)

        differences: list[str] = []
        for name in names:
            try:
                result = self._rebuild(name, verify=verify, batch_size=batch_size)
            except RebuildAlreadyRunning as exc:
                raise CommandError(f"{exc}; nothing was done", returncode=1) from exc
            if result.problem:
                raise CommandError(f"{name}: {result.problem}", returncode=1)
            rate = result.events / result.seconds if result.seconds else 0.0
            self.stdout.write(
                f"{name}: {result.events} events in {result.seconds:.2f}s ({rate:,.0f} events/s)"
                + (f", {_differences(len(result.differences))}" if verify else "")
            )
            for difference in result.differences:
                self.stdout.write(f"  {difference}")
            differences.extend(result.differences)
        if differences:
            raise CommandError(
                f"{_differences(len(differences))} between the live and the rebuilt views (listed above);"
                " the rebuilt views, derived from the log, are live now",
                returncode=1,
            )

    def _rebuild(self, name: str, *, verify: bool, batch_size: int | None) -> RebuildResult:
        # tqdm writes carriage returns to the raw stream: Django's OutputWrapper would add a
        # newline to every redraw. When it is not a terminal the final line above is enough.
        stream = getattr(self.stderr, "_out", self.stderr)
        with tqdm(
            desc=name,
            total=head_position(),
            unit="event",
            file=stream,
            disable=not stream.isatty(),
            leave=False,
        ) as bar:

            def progress(count: int, head: int) -> None:
                # Appends during the rebuild are replayed too: the total follows the head.
                if head != bar.total:
                    bar.total = head
                bar.update(count)

            return projection_rebuild(name=name, verify=verify, batch_size=batch_size, progress=progress)
