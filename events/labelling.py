"""What a stream is, for pages that list events: its name and page, from the app that owns it.

The event store knows streams only by id; the apps built on it know what they are (an agent
called `code-reviewer`, at /admin/agents_app/agentcurrent/<id>/change/). An app registers a
labeller in its AppConfig.ready; the event log asks it once per page of events, so that
events/ never imports the apps above it.
"""

import uuid
from collections.abc import Callable, Collection

# stream ids -> {stream id: (name, url)} for those it knows; one query for the whole page.
StreamLabeller = Callable[[Collection[uuid.UUID]], dict[uuid.UUID, tuple[str, str]]]

_LABELLERS: list[StreamLabeller] = []


def stream_labeller_register(labeller: StreamLabeller) -> None:
    if labeller not in _LABELLERS:
        _LABELLERS.append(labeller)


def stream_labels(stream_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    """(name, url) of each stream some labeller knows; streams nobody knows are left out."""
    labels: dict[uuid.UUID, tuple[str, str]] = {}
    wanted = set(stream_ids)
    for labeller in _LABELLERS:
        if not wanted:
            break
        found = labeller(wanted)
        labels.update(found)
        wanted -= found.keys()
    return labels
