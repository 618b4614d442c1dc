"""Tamper evidence (invariant 4): walk every stream's hash chain and every seal; name the first problem.

Two walks, each in keyset batches of EVENT_VERIFY_BATCH_SIZE rows per query (bounded memory
and no server-side cursor, which in autocommit PostgreSQL fills by copying the whole result
to a temporary file first):

1. The stream chains, in (stream_id, stream_version) order, which the unique constraint's
   index serves without a sort. Per stream: versions run 1, 2, 3, ... with no gap (an event
   deleted from the start or middle of a stream leaves one), positions grow with the
   version, and each stored hash equals the one recomputed from the previous event's hash.
   This names the exact event whose content, metadata or hash was changed.
2. The seals (events.sealing), in position order: each starts where the one before it
   ended and carries its hash (a seal deleted or edited breaks that), and each one's hash
   recomputed from the events now stored in its range equals the stored one. This is what
   covers the whole log: a stream deleted entirely, a stream's newest events deleted, events
   inserted, or positions swapped or renumbered across streams all change some seal's range.

A verification seals first (so everything committed before it started is covered), and
reports the events past the newest seal as not yet sealed: a count, not a failure.

What no walk of the database can show: someone able to rewrite rows can recompute every
hash after the ones they changed (the hashes have no key), and removing the newest seals
together with the events they covered leaves a valid, shorter log. Two things remember
more: the projections' checkpoints only ever move to positions of committed events (a
checkpoint past the last event means the end of the log was cut off), and every stored
verification records the seal head it checked, which the next one looks for; kept outside
the database (the logs, an export), that head closes the gap for good.

Each walk run by the command or the scheduled task is stored (`LogVerification`): /readyz
and the admin's projection status page report the latest one, since walking the whole log
on every probe would read all of it.
"""

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from events.chain import HASHED_FIELDS, SealHasher, event_hash
from events.models import Checkpoint, Event, LogSeal, LogVerification
from events.sealing import event_entries, log_seal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyProblem:
    """The first event (or seal) found wrong, and what is wrong with it."""

    position: int
    stream_id: uuid.UUID | None
    stream_version: int | None
    message: str
    seal: int | None = None  # the seal whose range or chain is wrong, when it is a seal

    def __str__(self) -> str:
        if self.seal is not None:
            return f"seal {self.seal}: {self.message}"
        if self.stream_id is None:
            return f"position {self.position}: {self.message}"
        where = f"stream {self.stream_id}, version {self.stream_version}"
        return f"event at position {self.position} ({where}): {self.message}"


@dataclass(frozen=True)
class VerifyResult:
    """How much of the log was walked, and the first problem found (None: the log is intact)."""

    events: int
    streams: int
    problem: VerifyProblem | None = None
    seals: int = 0  # seals recomputed and found intact
    unsealed: int = 0  # events past the newest seal: covered by their stream chains only
    seal_end_position: int | None = None  # the newest intact seal: its end and hash
    seal_hash: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


# The columns the hash covers (events.chain.event_hash's arguments), plus position and hash.
_COLUMNS = ("position", *HASHED_FIELDS, "hash")


def _sequence_problem(
    *, version: int, expected_version: int, position: int, previous_position: int
) -> str | None:
    """What is wrong with an event's place in its stream (None: nothing)."""
    if version != expected_version:
        if expected_version == 1:
            return f"the stream starts at version {version}: versions 1 to {version - 1} are missing"
        if version > expected_version:
            missing = (
                f"version {expected_version} is"
                if version == expected_version + 1
                else f"versions {expected_version} to {version - 1} are"
            )
            return f"version {version} follows version {expected_version - 1}: {missing} missing"
        return f"version {version} appears again after version {expected_version - 1}"
    if position <= previous_position:
        return (
            f"position {position} is not after position {previous_position} of version {version - 1}:"
            " the stream's events are out of order"
        )
    return None


def _rows_by_stream(batch_size: int) -> Iterator[dict[str, Any]]:
    """Every event in (stream_id, stream_version) order, `batch_size` rows per query.

    Keyset on the unique (stream_id, stream_version) index without row-value comparisons:
    the rest of the current stream, then the streams after it. An OR of the two in one
    query is not an index range on PostgreSQL, which would then scan from the start every
    batch.
    """
    stream_id: uuid.UUID | None = None
    version = 0
    while True:
        rows: list[dict[str, Any]] = []
        if stream_id is not None:
            rest = Event.objects.filter(stream_id=stream_id, stream_version__gt=version)
            rows = list(rest.order_by("stream_version").values(*_COLUMNS)[:batch_size])
        if len(rows) < batch_size:
            following = (
                Event.objects.all() if stream_id is None else Event.objects.filter(stream_id__gt=stream_id)
            )
            following = following.order_by("stream_id", "stream_version").values(*_COLUMNS)
            rows += list(following[: batch_size - len(rows)])
        if not rows:
            return
        stream_id, version = rows[-1]["stream_id"], rows[-1]["stream_version"]
        yield from rows


def _streams_verify(
    *, batch_size: int, progress: Callable[[int], None] | None
) -> tuple[int, int, VerifyProblem | None]:
    """Walk every stream chain: (events intact, streams seen, the first bad event or None)."""
    events = streams = 0
    stream_id: uuid.UUID | None = None
    expected_version, previous_hash, previous_position = 1, "", 0
    for row in _rows_by_stream(batch_size):
        position, stored = row.pop("position"), row.pop("hash")
        version = row["stream_version"]
        if row["stream_id"] != stream_id:
            stream_id, expected_version, previous_hash, previous_position = row["stream_id"], 1, "", 0
            streams += 1
        message = _sequence_problem(
            version=version,
            expected_version=expected_version,
            position=position,
            previous_position=previous_position,
        )
        if message is None:
            recomputed = event_hash(previous_hash=previous_hash, **row)
            if recomputed != stored:
                message = (
                    f"hash mismatch: stored {stored}, recomputed {recomputed}"
                    " (a column or the hash of this event was changed after it was stored)"
                )
        if message is not None:
            return events, streams, VerifyProblem(position, stream_id, version, message)
        events += 1
        expected_version += 1
        previous_hash, previous_position = stored, position
        if progress is not None and events % batch_size == 0:
            progress(batch_size)
    if progress is not None and events % batch_size:
        progress(events % batch_size)
    return events, streams, None


def _seals_in_order(batch_size: int) -> Iterator[LogSeal]:
    after = None
    while True:
        seals = LogSeal.objects.order_by("end_position")
        if after is not None:
            seals = seals.filter(end_position__gt=after)
        batch = list(seals[:batch_size])
        yield from batch
        if len(batch) < batch_size:
            return
        after = batch[-1].end_position


@dataclass(frozen=True)
class _SealWalk:
    seals: int
    end_position: int
    hash: str
    problem: VerifyProblem | None


def _seal_problem(seal: LogSeal, expected_after: int, previous_hash: str, batch_size: int) -> str | None:
    """What is wrong with one seal, given where the seal before it ended (None: nothing)."""
    span = f"positions {seal.after_position + 1} to {seal.end_position}"
    if seal.after_position != expected_after:
        return (
            f"it covers {span} but the seal before it ends at position {expected_after}:"
            " a seal between them was deleted, or this one's range was changed"
        )
    if seal.previous_hash != previous_hash:
        return (
            f"it does not chain to the seal before it (previous hash {seal.previous_hash or 'empty'},"
            f" expected {previous_hash or 'empty'}): a seal was deleted or changed"
        )
    hasher = SealHasher(
        previous_hash=previous_hash, after_position=seal.after_position, end_position=seal.end_position
    )
    for position, stream_id, stream_version, hash in event_entries(
        after=seal.after_position, end=seal.end_position, batch_size=batch_size
    ):
        hasher.add(position=position, stream_id=stream_id, stream_version=stream_version, hash=hash)
    if hasher.events != seal.events:
        return (
            f"it sealed {seal.events} events in {span}, the log holds {hasher.events} there:"
            " events were deleted or inserted"
        )
    if hasher.hexdigest() != seal.hash:
        return (
            f"the events in {span} are not the ones sealed (stored {seal.hash}, recomputed"
            f" {hasher.hexdigest()}): events were moved between positions or streams, or replaced,"
            " or the seal was changed"
        )
    return None


def _seals_verify(*, batch_size: int) -> _SealWalk:
    """Walk the seal chain and recompute every seal from the events in its range."""
    end, previous_hash, seals = 0, "", 0
    # Nothing lies before the first seal's range (positions start at 1).
    before = (
        Event.objects.filter(position__lte=0).order_by("position").values_list("position", flat=True).first()
    )
    if before is not None:
        message = "the event lies before the first position any seal covers: it was inserted"
        return _SealWalk(0, 0, "", VerifyProblem(before, None, None, message))
    for seal in _seals_in_order(batch_size):
        seal_message = _seal_problem(seal, end, previous_hash, batch_size)
        if seal_message is not None:
            problem = VerifyProblem(seal.after_position + 1, None, None, seal_message, seal=seal.pk)
            return _SealWalk(seals, end, previous_hash, problem)
        seals += 1
        end, previous_hash = seal.end_position, seal.hash
    return _SealWalk(seals, end, previous_hash, None)


def _recorded_seal_head_problem() -> VerifyProblem | None:
    """The seal head the last verification recorded is gone or changed (None: it is still there).

    The one trace inside the database of the newest seals deleted (and resealed over
    changed events): the seal chain after such a cut is valid again.
    """
    recorded = LogVerification.objects.exclude(seal_hash="").order_by("-started_at", "-pk").first()
    if recorded is None or recorded.seal_end_position is None:
        return None
    if LogSeal.objects.filter(end_position=recorded.seal_end_position, hash=recorded.seal_hash).exists():
        return None
    message = (
        f"the seal ending at position {recorded.seal_end_position} with hash {recorded.seal_hash},"
        f" checked by the verification of {recorded.started_at:%Y-%m-%d %H:%M:%S} UTC, is gone or"
        " changed: the newest seals were removed or rewritten"
    )
    return VerifyProblem(recorded.seal_end_position, None, None, message)


def events_verify(
    *,
    progress: Callable[[int], None] | None = None,
    seal: bool = True,
    batch_size: int | None = None,
) -> VerifyResult:
    """Seal what is committed, then check every stream chain and every seal; stop at the first problem.

    Call it outside a transaction: sealing takes the append lock for one read, and inside
    the caller's transaction PostgreSQL would keep it (stalling every writer) until that
    transaction ends. `seal=False` checks only what is sealed already. `progress(count)` is
    called after every batch of the stream walk with the number of events walked in it.
    """
    batch_size = batch_size or settings.EVENT_VERIFY_BATCH_SIZE
    if seal:
        log_seal(batch_size=batch_size)
    events, streams, problem = _streams_verify(batch_size=batch_size, progress=progress)
    if problem is not None:
        return VerifyResult(events=events, streams=streams, problem=problem)
    walk = _seals_verify(batch_size=batch_size)
    result = VerifyResult(
        events=events,
        streams=streams,
        seals=walk.seals,
        seal_end_position=walk.end_position if walk.seals else None,
        seal_hash=walk.hash,
    )
    problem = walk.problem or _recorded_seal_head_problem()
    if problem is not None:
        return replace(result, problem=problem)
    result = replace(result, unsealed=Event.objects.filter(position__gt=walk.end_position).count())

    # The furthest checkpoint first, then the head. A checkpoint only ever moves to a committed
    # position, so one read before the head cannot be past it unless events were removed. In
    # the other order an append committed and applied between the two reads would be
    # reported as a cut-off log: a false alarm that /readyz would turn into an outage.
    ahead = Checkpoint.objects.order_by("-position").first()
    head = Event.objects.aggregate(head=Max("position"))["head"] or 0
    if ahead is not None and ahead.position > head:
        message = (
            f"projection {ahead.projection} (generation {ahead.generation}) has applied up to position"
            f" {ahead.position} but the log ends at position {head}: the newest events are missing"
        )
        return replace(result, problem=VerifyProblem(ahead.position, None, None, message))
    return result


def events_verify_recorded(
    *, source: str, progress: Callable[[int], None] | None = None
) -> tuple[VerifyResult, LogVerification]:
    """Run `events_verify` and store its outcome, the row first so a walk in progress shows."""
    # No transaction around the walk: the "running" row must be visible while it lasts, and
    # one transaction over millions of events would hold a snapshot (and vacuum) for as long.
    record = LogVerification.objects.create(source=source[:100])
    try:
        result = events_verify(progress=progress)
    except BaseException as exc:
        LogVerification.objects.filter(pk=record.pk).update(
            finished_at=timezone.now(),
            result=LogVerification.Result.FAILED,
            first_problem=f"the verification did not finish: {exc!r}"[:2000],
        )
        raise
    problem = result.problem
    LogVerification.objects.filter(pk=record.pk).update(
        finished_at=timezone.now(),
        events_checked=result.events,
        streams_checked=result.streams,
        result=LogVerification.Result.OK if problem is None else LogVerification.Result.PROBLEM,
        problem_position=None if problem is None else problem.position,
        first_problem="" if problem is None else str(problem),
        seals_checked=result.seals,
        events_unsealed=result.unsealed,
        seal_end_position=result.seal_end_position,
        seal_hash=result.seal_hash,
    )
    record.refresh_from_db()
    # The seal head in the logs too: a copy outside the database, which is what shows the
    # newest seals removed together with the newest events.
    logger.info(
        "log verification %s: %s; seal head: position %s, hash %s",
        record.pk,
        "ok" if problem is None else problem,
        result.seal_end_position,
        result.seal_hash or "none",
    )
    return result, record


def log_verification_latest(*, finished: bool = True) -> LogVerification | None:
    """The newest verification that walked the whole log (or, `finished=False`, the newest of any)."""
    verifications = LogVerification.objects.order_by("-started_at", "-pk")
    if finished:
        verifications = verifications.filter(
            result__in=[LogVerification.Result.OK, LogVerification.Result.PROBLEM]
        )
    return verifications.first()
