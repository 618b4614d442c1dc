"""Seals: checkpoints over position ranges that make the whole log tamper-evident (invariant 4).

The stream chains (events.chain) show a changed or missing event inside a stream, but not a
whole stream deleted, a stream's newest events deleted, or events moved to other positions.
A seal covers the positions after the previous seal's end up to its own end: its hash is
SHA-256 over the previous seal's hash and (position, stream, version, event hash) of every
event in the range (events.chain.SealHasher). Seals form a chain of their own, and the
database refuses UPDATE and DELETE on them as on the events.

Why after commit, and not a log-wide chain written by the append: a log-wide chain makes
every append read and extend the previous event's hash, one more thing serialised on the
write path that issue 14 wants faster, and one more reason appends must stay serial. A
seal is written later, by beat (`events_seal_task`, every EVENT_SEAL_SECONDS), at the start
of every verification, or by calling `log_seal` directly; the append does not change.

The price: events past the newest seal are covered only by their stream chains until the
next seal (a verification reports how many). Removing the newest seals together with the
events they covered (cutting off the head of the log) leaves a valid, shorter log; only a
copy of the seal head kept outside the database shows that (every LogVerification stores
the seal head it checked, and the next verification checks that it is still there).
"""

import logging
import uuid
from collections.abc import Iterator

from django.conf import settings
from django.db import IntegrityError, transaction

from events.chain import SealHasher
from events.models import Event, LogSeal
from events.services import append_lock

logger = logging.getLogger(__name__)


def event_entries(*, after: int, end: int, batch_size: int) -> Iterator[tuple[int, uuid.UUID, int, str]]:
    """(position, stream_id, stream_version, hash) of every event in (after, end], in position order.

    Keyset batches on the primary key: `batch_size` rows per query however long the range,
    and no server-side cursor (in autocommit PostgreSQL would copy the whole result into a
    temporary file for a WITH HOLD cursor before the first row).
    """
    while True:
        rows = list(
            Event.objects.filter(position__gt=after, position__lte=end)
            .order_by("position")
            .values_list("position", "stream_id", "stream_version", "hash")[:batch_size]
        )
        yield from rows
        if len(rows) < batch_size:
            return
        after = rows[-1][0]


def _sealable_head() -> int:
    """The highest position no event can commit below any more: the head, read under the append lock.

    Sealing a range in which an event with a lower position could still commit would leave
    that event outside every seal for good (the next seal starts after this one's end), and
    a verification would then call an honest event forged. Every append holds the append
    lock (events.services.append_lock) from before its INSERT takes a position until COMMIT
    (invariant 3), so while we hold it no append is in flight: every position handed out so
    far is committed or rolled back, and the head read now is final. The lock is held for
    this one read only (a writer waits at most that long), not while the range is hashed.
    Reading the visible head without the lock would be enough for as long as appends commit
    in position order, but taking it makes this function's promise hold by itself, and the
    tests can hold an append open and watch sealing wait for it.
    """
    with transaction.atomic():
        append_lock()
        # ORDER BY ... LIMIT 1, not MAX: the same index walk, and a query the verification's
        # race test (tests/security/test_tamper.py) does not take for one of its final reads.
        head = Event.objects.order_by("-position").values_list("position", flat=True).first()
    return head or 0


def log_seal(*, max_events: int | None = None, batch_size: int | None = None) -> list[LogSeal]:
    """Seal every committed event past the newest seal, `max_events` per seal; return the new seals."""
    max_events = max_events or settings.EVENT_SEAL_MAX_EVENTS
    batch_size = batch_size or settings.EVENT_VERIFY_BATCH_SIZE
    head = _sealable_head()
    newest = LogSeal.objects.order_by("-end_position").first()
    written: list[LogSeal] = []
    while True:
        after, previous_hash = (newest.end_position, newest.hash) if newest else (0, "")
        if head <= after:
            return written
        # The range ends at its max_events-th event, or at the head: one walk of the index.
        cut = (
            Event.objects.filter(position__gt=after, position__lte=head)
            .order_by("position")
            .values_list("position", flat=True)[max_events - 1 : max_events]
            .first()
        )
        end = cut or head
        hasher = SealHasher(previous_hash=previous_hash, after_position=after, end_position=end)
        for position, stream_id, stream_version, event_hash in event_entries(
            after=after, end=end, batch_size=batch_size
        ):
            hasher.add(position=position, stream_id=stream_id, stream_version=stream_version, hash=event_hash)
        try:
            # The unique after_position decides between two sealers that read the same
            # newest seal (beat and a verification at once): one row wins, the other gets an
            # IntegrityError and stops, since the winner covers the same committed events.
            with transaction.atomic():
                newest = LogSeal.objects.create(
                    after_position=after,
                    end_position=end,
                    events=hasher.events,
                    previous_hash=previous_hash,
                    hash=hasher.hexdigest(),
                )
        except IntegrityError:
            logger.info("another sealer sealed the events after position %s first", after)
            return written
        logger.info("sealed positions %s to %s (%s events): %s", after + 1, end, newest.events, newest.hash)
        written.append(newest)
