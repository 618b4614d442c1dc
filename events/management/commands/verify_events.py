"""`manage.py verify_events`: walk every stream's hash chain; exit 1 naming the first bad event.

The outcome is stored as well (events.LogVerification): /readyz and the admin report it.
"""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from events.selectors import head_position
from events.verification import events_verify_recorded


class Command(BaseCommand):
    help = "Check every stream's versions, position order and hash chain; exit 1 naming the first bad event."

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
        self.stdout.write(f"{result.events} events in {result.streams} streams verified")
