"""Tamper evidence (invariant 4): walk every stream's hash chain and name the first bad event.

The walk reads the log in (stream_id, stream_version) order, which the unique constraint's
index serves without a sort, through a chunked iterator: memory stays constant however long
the log is. Per stream it checks that versions run 1, 2, 3, ... with no gap (an event
deleted from the start or middle of a stream leaves one), that positions grow with the
version (the hash does not cover `position`, so a reordering shows only here), and that
each stored hash equals the one recomputed from the previous event's hash.

What a chain cannot show: someone able to rewrite rows can also recompute every later hash
of the stream (only a head hash kept elsewhere would reveal that), and the newest events of
a stream removed together leave a valid, shorter chain. The one place the log's own tables
remember more is the projections' checkpoints, which only ever move to positions of
committed events, so a checkpoint past the last event means the end of the log was cut off.

Each walk run by the command or the scheduled task is stored (`LogVerification`): /readyz
and the admin's projection status page report the latest one, since walking the whole log
on every probe would read all of it.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Max
from django.utils import timezone

from events.chain import event_hash
from events.models import Checkpoint, Event, LogVerification

VERIFY_CHUNK_SIZE = 2000


@dataclass(frozen=True)
class VerifyProblem:
    """The first event found wrong, and what is wrong with it."""

    position: int
    stream_id: uuid.UUID | None
    stream_version: int | None
    message: str

    def __str__(self) -> str:
        if self.stream_id is None:
            return f"position {self.position}: {self.message}"
        where = f"stream {self.stream_id}, version {self.stream_version}"
        return f"event at position {self.position} ({where}): {self.message}"


@dataclass(frozen=True)
class VerifyResult:
    """How much of the log was walked, and the first problem found (None: every chain is intact)."""

    events: int
    streams: int
    problem: VerifyProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


# The columns the hash covers (events.chain.event_hash's arguments), plus position and hash.
_COLUMNS = (
    "position",
    "event_id",
    "stream_id",
    "stream_version",
    "type",
    "schema_version",
    "data",
    "metadata",
    "recorded_at",
    "hash",
)


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


def events_verify(*, progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Check every stream's versions, position order and hash chain; stop at the first bad event.

    `progress(count)` is called after every chunk with the number of events walked in it.
    """
    rows = Event.objects.order_by("stream_id", "stream_version").values(*_COLUMNS)
    events = streams = 0
    stream_id: uuid.UUID | None = None
    expected_version, previous_hash, previous_position = 1, "", 0
    for row in rows.iterator(chunk_size=VERIFY_CHUNK_SIZE):
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
            return VerifyResult(
                events=events, streams=streams, problem=VerifyProblem(position, stream_id, version, message)
            )
        events += 1
        expected_version += 1
        previous_hash, previous_position = stored, position
        if progress is not None and events % VERIFY_CHUNK_SIZE == 0:
            progress(VERIFY_CHUNK_SIZE)
    if progress is not None and events % VERIFY_CHUNK_SIZE:
        progress(events % VERIFY_CHUNK_SIZE)

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
        return VerifyResult(
            events=events, streams=streams, problem=VerifyProblem(ahead.position, None, None, message)
        )
    return VerifyResult(events=events, streams=streams)


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
    )
    record.refresh_from_db()
    return result, record


def log_verification_latest(*, finished: bool = True) -> LogVerification | None:
    """The newest verification that walked the whole log (or, `finished=False`, the newest of any)."""
    verifications = LogVerification.objects.order_by("-started_at", "-pk")
    if finished:
        verifications = verifications.filter(
            result__in=[LogVerification.Result.OK, LogVerification.Result.PROBLEM]
        )
    return verifications.first()
