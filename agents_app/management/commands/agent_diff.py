"""`manage.py agent_diff NAME FROM TO [--format json|unified|html]`: the REST diff on the command line."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents_app.diff import DiffSide, html_diff, revision_diff, unified_diff
from agents_app.exceptions import AgentNotFound, InvalidReference
from agents_app.selectors import agent_get, revision_resolve

FORMATS = ("json", "unified", "html")


class Command(BaseCommand):
    help = (
        "Compare two revisions of an agent. FROM and TO are references: a revision number, 'latest',"
        " a label or @<ISO timestamp>. `--format unified` output can be piped to `patch -p1`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="agent name")
        parser.add_argument("from_ref", metavar="FROM", help="the old revision")
        parser.add_argument("to_ref", metavar="TO", help="the new revision")
        parser.add_argument("--format", choices=FORMATS, default="json", dest="output_format")

    def handle(
        self, *args: object, name: str, from_ref: str, to_ref: str, output_format: str, **options: object
    ) -> None:
        try:
            agent = agent_get(name=name)
            old = DiffSide.from_revision(revision_resolve(agent=agent, ref=from_ref))
            new = DiffSide.from_revision(revision_resolve(agent=agent, ref=to_ref))
        except (AgentNotFound, InvalidReference) as exc:
            raise CommandError(str(exc)) from exc
        if output_format == "unified":
            self._write_exactly(unified_diff(old=old, new=new))
        elif output_format == "html":
            self._write_exactly(html_diff(old=old, new=new) + "\n")
        else:
            diff = revision_diff(old=old, new=new)
            self._write_exactly(json.dumps(diff, indent=2, ensure_ascii=False, sort_keys=False) + "\n")

    def _write_exactly(self, text: str) -> None:
        # A unified diff must reach `patch` byte for byte: the text layer of a real stdout could
        # re-encode it for a non-UTF-8 locale (or fail on 漢字), so write UTF-8 to the byte stream.
        # Streams without one (StringIO in call_command) take the text as it is.
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is None:
            self.stdout.write(text, ending="")
            return
        self.stdout.flush()
        buffer.write(text.encode("utf-8"))
        buffer.flush()
