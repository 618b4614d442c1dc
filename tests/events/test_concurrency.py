"""Concurrent appends and a concurrent reader on PostgreSQL, with real threads and connections.

Each thread has its own database connection (Django's are per thread) and closes it when
done. The writers' after-commit catch-up is switched off (as with the broker down and
read-your-writes off) so that what is measured is the store alone.
"""

import time
import uuid
from collections.abc import Callable

import pytest

from events.exceptions import ConcurrencyConflict
from events.models import Event
from events.selectors import events_after
from events.services import event_append
from events.types import NewEvent, StoredEvent
from tests.threads import run_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

METADATA = {"actor": "alice", "source": "cli", "reason": "concurrency test"}
WRITERS = 8
EVENTS_PER_WRITER = 50
TIMEOUT = 60.0


class _NoBroker:
    @staticmethod
    def delay(*args, **kwargs) -> None:
        return None


@pytest.fixture(autouse=True)
def _no_after_commit_catch_up(settings, monkeypatch):
    settings.PROJECTION_READ_YOUR_WRITES = False
    monkeypatch.setattr("events.tasks.projections_catch_up", _NoBroker())


def test_eight_writers_at_the_same_expected_version_one_wins_and_seven_conflict():
    stream_id = uuid.uuid4()
    event_append(
        stream_id=stream_id, expected_version=0, events=[NewEvent("test.note", {"n": 0})], metadata=METADATA
    )

    def writer(n: int) -> Callable[[], object]:
        return lambda: event_append(
            stream_id=stream_id,
            expected_version=1,
            events=[NewEvent("test.note", {"writer": n})],
            metadata=METADATA,
        )

    results = run_threads([writer(n) for n in range(WRITERS)])

    winners = [result for result in results if isinstance(result, list)]
    conflicts = [result for result in results if isinstance(result, ConcurrencyConflict)]
    assert len(winners) == 1, results
    assert len(conflicts) == WRITERS - 1, results
    assert {conflict.actual_version for conflict in conflicts} == {2}
    stored = list(
        Event.objects.filter(stream_id=stream_id)
        .order_by("stream_version")
        .values_list("stream_version", "data")
    )
    assert stored == [(1, {"n": 0}), (2, winners[0][0].data)]


def test_a_reader_tailing_by_position_sees_every_event_once_in_final_position_order():
    streams = [uuid.uuid4() for _ in range(WRITERS)]
    total = WRITERS * EVENTS_PER_WRITER

    def writer(stream_id: uuid.UUID) -> Callable[[], object]:
        def append_all() -> int:
            for version in range(EVENTS_PER_WRITER):
                event_append(
                    stream_id=stream_id,
                    expected_version=version,
                    events=[NewEvent("test.note", {"n": version + 1})],
                    metadata=METADATA,
                )
            return EVENTS_PER_WRITER

        return append_all

    polls_with_news = 0

    def reader() -> list[StoredEvent]:
        nonlocal polls_with_news
        seen: list[StoredEvent] = []
        position = 0
        deadline = time.monotonic() + TIMEOUT
        while len(seen) < total and time.monotonic() < deadline:
            before = len(seen)
            for batch in events_after(position=position, batch_size=37):
                seen.extend(batch)
                position = batch[-1].position
            polls_with_news += len(seen) > before
        return seen

    *written, seen = run_threads([*(writer(stream_id) for stream_id in streams), reader])

    assert written == [EVENTS_PER_WRITER] * WRITERS
    assert polls_with_news > 1, "the reader should have tailed the log while it was being written"
    final = list(Event.objects.order_by("position").values_list("position", "event_id"))
    assert len(final) == total
    assert [(event.position, event.event_id) for event in seen] == final
    for stream_id in streams:
        versions = [event.stream_version for event in seen if event.stream_id == stream_id]
        assert versions == list(range(1, EVENTS_PER_WRITER + 1))
