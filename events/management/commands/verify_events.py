"""`manage.py verify_events`: seal, walk every stream's hash chain and every seal; exit 1 naming
the first bad event or seal.

The outcome is stored as well (events.LogVerification): /readyz and the admin report it.
"""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from events.selectors import head_position
from events.verification import events_verify_recorded


class Command(BaseCommand):
    help = (
        "Seal the committed events, check every stream's hash chain and every seal;"
        " exit 1 naming the first bad event or seal."
    )

    def handle(self, *args, **options) -> None:
        # tqdm writes carriage returns to the raw stream: Django's OutputWrapper would add a
        # newline to every redraw.
        stream = getattr(self.stderr, "_out", self.stderr)
        with tqdm(
            total=head_position(), unit="event", file=stream, disable=not stream.isatty(), leave=False
        ) as bar:
            result, _ = events_verify_recorded(source="command", progress=bar.update)
        if result.problem is not None:
            raise CommandError(f"{result.problem} ({result.events} events verified before it)", returncode=1)
        # The seal head on every run: kept outside the database (logs, a cron mail), it shows
        # the newest seals removed together with their events, which nothing inside can.
        if result.seal_end_position is not None:
            self.stdout.write(f"seal head: position {result.seal_end_position}, hash {result.seal_hash}")
        if result.unsealed:
            self.stdout.write(f"{result.unsealed} events after it not yet sealed")
        seals = f"{result.seals} seal" + ("" if result.seals == 1 else "s")
        self.stdout.write(f"{result.events} events in {result.streams} streams and {seals} verified")
