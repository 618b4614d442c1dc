"""The projection runner: inline apply of an append's own events, catch-up, read-your-writes, status.

The store (events/services.py) knows nothing of projections; `runner_register()` (called
from events/apps.py ready()) tells it what to run inside each append's transaction
(`projections_apply_appended`) and after its COMMIT (`projections_after_append`). Rebuilds
are in events/rebuild.py.

A projection that cannot apply an event never turns a committed write into an error: the
failure (position and error) is recorded on its checkpoint, shown by
`projection_status_list()`, the API and the admin, the projection stays at the event before,
and the other projections go on. It clears when the projection applies that event later.
"""

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from events.exceptions import ProjectionFailed, StoreUnavailable
from events.models import Checkpoint, Event, ProjectionRun
from events.projections import Projection, projection_get, projection_names
from events.rows import rows_from_cursor, rows_joined, rows_update
from events.selectors import events_after, head_position
from events.services import append_hooks_register, store_errors
from events.types import StoredEvent

logger = logging.getLogger(__name__)

# Read-your-writes for the current thread or task (None: settings.PROJECTION_READ_YOUR_WRITES).
# A context variable, not the setting: a bulk import turning it off must not turn it off for
# the other requests this process serves at the same time.
_read_your_writes: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "projection_read_your_writes", default=None
)


# Inside after_commit_deferred(): the newest position committed since the last flush, which
# the after-commit work is left for (see there). None outside it.
_deferred_after: contextvars.ContextVar["_Deferred | None"] = contextvars.ContextVar(
    "projection_after_commit_deferred", default=None
)

_DB_LOST = (OperationalError, InterfaceError)
FAILURE_FIELDS = ("failed_position", "failed_error", "failed_at")


def runner_register() -> None:
    """Hand the store the runner's append hooks (events/apps.py ready())."""
    append_hooks_register(inline=projections_apply_appended, after_commit=projections_after_append)


def read_your_writes_enabled() -> bool:
    """Whether writes in this context wait for the views to reach them (and apply inline)."""
    value = _read_your_writes.get()
    return settings.PROJECTION_READ_YOUR_WRITES if value is None else value


@contextlib.contextmanager
def read_your_writes(enabled: bool) -> Iterator[None]:
    """Turn read-your-writes on or off for the code inside (this thread or task only)."""
    token = _read_your_writes.set(enabled)
    try:
        yield
    finally:
        _read_your_writes.reset(token)


@dataclass
class _Deferred:
    position: int | None = None


@contextlib.contextmanager
def after_commit_deferred() -> Iterator[Callable[[], None]]:
    """Leave the after-commit work of the appends inside to one call of the function it yields.

    A bulk run commits hundreds of appends at once, and each registered its own after-commit
    work: one catch-up queued per event, which in the embedded mode runs right there, in
    process, and reads every checkpoint to find all but the first with nothing to do (issue
    14: two thirds of an import's time). Inside this block an append's after-commit only
    notes its position; the caller calls the yielded flush after each COMMIT, which queues
    one catch-up for everything committed since the last flush (and waits for it if
    read-your-writes is on). What a rolled back transaction appended never runs its
    after-commit (Django's on_commit), so it is never noted. This thread or task only.
    """
    deferred = _Deferred()
    token = _deferred_after.set(deferred)

    def flush() -> None:
        position, deferred.position = deferred.position, None
        if position is not None:
            _after_commit(position=position)

    try:
        yield flush
    finally:
        _deferred_after.reset(token)


def live_checkpoint(name: str) -> Checkpoint:
    """The live generation's checkpoint, created (generation 1 at position 0) on first use."""
    checkpoint = Checkpoint.objects.filter(projection=name, is_live=True).first()
    if checkpoint is not None:
        return checkpoint
    try:
        with transaction.atomic():
            return Checkpoint.objects.create(projection=name, generation=1, is_live=True)
    except IntegrityError:  # another process created it first
        return Checkpoint.objects.get(projection=name, is_live=True)


def _failure_clear(checkpoint: Checkpoint) -> list[str]:
    if checkpoint.failed_position is None:
        return []
    checkpoint.failed_position, checkpoint.failed_error, checkpoint.failed_at = None, "", None
    return list(FAILURE_FIELDS)


def _failure_set(checkpoint: Checkpoint, *, position: int, exc: BaseException) -> None:
    checkpoint.failed_position = position
    checkpoint.failed_error = f"{type(exc).__name__}: {exc}"[:2000]
    checkpoint.failed_at = timezone.now()


def _apply_batch(projection: Projection, checkpoint: Checkpoint, batch: list[StoredEvent]) -> None:
    # Rows and checkpoint change in the caller's transaction: both or neither, so a crash
    # between them cannot apply an event twice or skip it.
    handled = [event for event in batch if event.type in projection.event_types]
    if handled:
        projection.apply(handled, generation=checkpoint.generation)
    checkpoint.position = batch[-1].position
    checkpoint.save(update_fields=["position", "updated_at", *_failure_clear(checkpoint)])


def _failure_record(name: str, generation: int, *, position: int, exc: BaseException) -> None:
    """Record on the checkpoint that applying the event at `position` failed (its own transaction)."""
    checkpoint = Checkpoint(projection=name, generation=generation)
    _failure_set(checkpoint, position=position, exc=exc)
    with transaction.atomic():
        Checkpoint.objects.filter(projection=name, generation=generation).update(
            **{field: getattr(checkpoint, field) for field in FAILURE_FIELDS}
        )


def projection_catch_up(
    *,
    name: str,
    generation: int | None = None,
    batch_size: int | None = None,
    up_to: int | None = None,
    max_events: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int | None:
    """Apply every event after the checkpoint (up to position `up_to`, at most `max_events`);
    return how many, or None if another runner holds it.

    Each batch is one transaction that locks the checkpoint row with SKIP LOCKED: without
    the lock two runners could read the same checkpoint, apply the same batch twice and
    both advance it; with it the second finds no row and returns at once.

    When the projection raises, the batch is rolled back and replayed one event per
    transaction, which applies the events before the bad one and finds its position; that
    is recorded on the checkpoint and ProjectionFailed raised. A lost database connection
    is StoreUnavailable and records nothing (it says nothing about the projection).
    """
    projection = projection_get(name)
    if generation is None:
        generation = live_checkpoint(name).generation
    batch_size = batch_size or settings.PROJECTION_BATCH_SIZE
    applied = 0
    one_by_one = False
    while True:
        batch: list[StoredEvent] | None = None
        try:
            with transaction.atomic():
                checkpoint = (
                    Checkpoint.objects.select_for_update(skip_locked=True)
                    .filter(projection=name, generation=generation)
                    .first()
                )
                if checkpoint is None:
                    return None if applied == 0 else applied
                size = 1 if one_by_one else batch_size
                if max_events is not None:
                    size = min(size, max_events - applied)
                    if size <= 0:
                        return applied
                batch = next(events_after(position=checkpoint.position, batch_size=size, up_to=up_to), None)
                if batch is None:
                    return applied
                _apply_batch(projection, checkpoint, batch)
        except _DB_LOST as exc:
            raise StoreUnavailable(f"the database is unavailable: {exc}") from exc
        except Exception as exc:
            if batch is None:
                raise
            if len(batch) > 1:
                one_by_one = True  # find the event that fails
                continue
            logger.exception("projection %s failed on the event at position %s", name, batch[0].position)
            with store_errors():
                _failure_record(name, generation, position=batch[0].position, exc=exc)
            raise ProjectionFailed(name=name, position=batch[0].position, error=repr(exc)) from exc
        applied += len(batch)
        if progress is not None:
            progress(len(batch))


def projections_catch_up_all() -> dict[str, int | None]:
    """Catch every registered projection up; what each applied (None: another runner has it, or it failed).

    One projection failing (recorded on its checkpoint, logged) does not stop the others.
    """
    applied: dict[str, int | None] = {}
    for name in projection_names():
        try:
            applied[name] = projection_catch_up(name=name)
        except ProjectionFailed as exc:
            logger.error("%s", exc)
            applied[name] = None
    return applied


def projections_wait(*, position: int, timeout: float | None = None) -> bool:
    """Read-your-writes: return True once every live projection has applied `position`.

    The writer first catches up itself (the row lock makes that safe alongside workers);
    if a worker is applying right now it waits for it. False when `timeout` passed first,
    when a projection failed on an event up to `position` (recorded on its checkpoint),
    or when the projections were still behind once this call had applied
    PROJECTION_WAIT_MAX_EVENTS events: the first writer after an outage must not replay the
    whole backlog inside its request (unbounded work per request). Past that budget it only
    waits (until `timeout`) for the workers to get there.
    """
    deadline = time.monotonic() + (settings.PROJECTION_WAIT_SECONDS if timeout is None else timeout)
    budget = settings.PROJECTION_WAIT_MAX_EVENTS
    reached = True
    with store_errors():
        for name in projection_names():
            while live_checkpoint(name).position < position:
                count = None
                if budget > 0:
                    try:
                        count = projection_catch_up(name=name, up_to=position, max_events=budget)
                    except ProjectionFailed:
                        reached = False
                        break
                if count:
                    budget -= count
                    continue
                # A worker holds it (None), the budget is spent, or nothing to read yet (0).
                if time.monotonic() > deadline:
                    logger.warning("projection %s did not reach position %s in time", name, position)
                    reached = False
                    break
                time.sleep(0.02)
    return reached


def projections_apply_appended(events: list[StoredEvent], *, head_before: int) -> bool:
    """Read-your-writes inside the append: apply the transaction's own events to every live
    projection that had applied everything before them; True if every projection did.

    Called by event_append (a registered hook) under the append lock, after its INSERT.
    Without the lock, an event committed later with a lower position could be passed over;
    under it, the log up to `head_before` is all there is, so a checkpoint standing at
    `head_before` may move to these events and nothing is skipped. The checkpoints are taken
    with SKIP LOCKED: one held by a runner (a worker's batch, a rebuild's swap) is left to it
    and to the wait after COMMIT, because waiting for it here would hold the append lock,
    and so every writer, for as long as that batch takes. Rows and checkpoints move in this
    transaction: both commit with the events or neither does.

    A projection that raises is rolled back to a savepoint of its own, its failure recorded
    on its checkpoint (which stays put), and the others still apply; the write commits.

    Round trips (issue 14): the checkpoints are claimed and moved in one statement, before
    the views are written (an UPDATE ... RETURNING whose row locks are the SKIP LOCKED claim),
    and the common case pays one savepoint for all views, set in the claim's round trip and
    never released (COMMIT releases it; a RELEASE would be one more round trip for nothing).
    Only a failure rolls back to it, retries the projections one by one under savepoints of
    their own, and writes the checkpoints again: a failed one back to `head_before`, with its failure.
    """
    if not read_your_writes_enabled():
        return False
    names = projection_names()
    if not names:
        return True
    checkpoints = _checkpoints_claim(names, head_before=head_before, position=events[-1].position)
    if not checkpoints:
        return False
    # In registration order, not the UPDATE's (the table's physical order, which a rebuild's
    # swap changes): the same order every time, and a view's waiting write (rows_joined) then
    # always finds the next view's INSERT to go with.
    checkpoints.sort(key=lambda checkpoint: names.index(checkpoint.projection))
    try:
        # rows_joined: a view's write that returns nothing goes with the next view's
        # statement (the current row's UPDATE with the revision's INSERT), one round trip.
        with rows_joined():
            for checkpoint in checkpoints:
                _apply_handled(checkpoint, events)
    except _DB_LOST:
        raise
    except Exception:
        logger.exception(
            "projections failed on events %s..%s; applying them one by one",
            events[0].position,
            events[-1].position,
        )
        with connection.cursor() as cursor:
            cursor.execute(connection.ops.savepoint_rollback_sql(_VIEWS_SAVEPOINT))
        for checkpoint in checkpoints:
            try:
                with transaction.atomic():
                    _apply_handled(checkpoint, events)
            except _DB_LOST:
                raise
            except Exception as exc:
                logger.exception(
                    "projection %s failed on events %s..%s",
                    checkpoint.projection,
                    events[0].position,
                    events[-1].position,
                )
                checkpoint.position = head_before
                _failure_set(checkpoint, position=events[0].position, exc=exc)
        fields = ["position", "updated_at", *FAILURE_FIELDS]
        rows_update(checkpoints, fields=[f for f in Checkpoint._meta.concrete_fields if f.name in fields])
        return False
    return len(checkpoints) == len(names)


# The savepoint the inline views roll back to when one of them fails (see _checkpoints_claim).
# One name for all: a second append in the same transaction sets it again, and ROLLBACK TO
# goes back to the newest savepoint of that name, this append's.
_VIEWS_SAVEPOINT = "inline_views"


def _checkpoints_claim(names: list[str], *, head_before: int, position: int) -> list[Checkpoint]:
    """Move the live checkpoints of `names` that stand at `head_before` to `position` and
    return them (their failures cleared), then set the views' savepoint: on PostgreSQL one
    round trip, on the append's hot path.

    SKIP LOCKED in the subquery: a checkpoint a runner holds is left to it (see
    projections_apply_appended); the UPDATE's row locks then keep it ours until COMMIT.
    The savepoint comes after the UPDATE, so a rollback to it keeps the checkpoints claimed
    (and their row locks). It is set by hand, not with atomic(), which would RELEASE it on
    success, a round trip for nothing (COMMIT releases it); nothing the views do registers
    on_commit work that a rollback to it would have to discard. On PostgreSQL both go as one
    multi-statement query (the simple query protocol of psycopg's client-side cursor):
    the SAVEPOINT runs only if the UPDATE succeeded, as two round trips would.
    """
    table = connection.ops.quote_name(Checkpoint._meta.db_table)
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    updated_at = Checkpoint._meta.get_field("updated_at").get_db_prep_save(timezone.now(), connection)
    claim = (
        f"UPDATE {table} SET position = %s, updated_at = %s,"  # noqa: S608 - no input in it
        " failed_position = NULL, failed_error = '', failed_at = NULL"
        f" WHERE id IN (SELECT id FROM {table} WHERE is_live AND position = %s"
        f" AND projection IN ({', '.join(['%s'] * len(names))}){lock}) RETURNING *"
    )
    params = [position, updated_at, head_before, *names]
    savepoint = connection.ops.savepoint_create_sql(_VIEWS_SAVEPOINT)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"{claim}; {savepoint}", params)
            return rows_from_cursor(Checkpoint, cursor)  # the UPDATE's rows: the first result
        cursor.execute(claim, params)
        claimed = rows_from_cursor(Checkpoint, cursor)
        if claimed:
            cursor.execute(savepoint)
        return claimed


def _apply_handled(checkpoint: Checkpoint, events: list[StoredEvent]) -> None:
    projection = projection_get(checkpoint.projection)
    handled = [event for event in events if event.type in projection.event_types]
    if handled:
        projection.apply(handled, generation=checkpoint.generation)
    checkpoint.position = events[-1].position


def projections_after_append(*, position: int, applied: bool) -> None:
    """After an append's COMMIT, unless it applied itself to every live projection: queue a
    catch-up for the workers, then make the writer's own read see its write.

    A broker outage only costs the queued task: the beat schedule and the catch-up below
    cover for it. A projection that fails here is recorded and left behind: the write went
    through. A lost database connection is not swallowed (StoreUnavailable): the caller
    cannot read its write back, and must hear so (the API answers 503, retry-safe), rather
    than read the version before it. When the append transaction already moved every live
    checkpoint past its events, a task would find nothing to apply: none is queued.
    """
    if applied:
        return
    deferred = _deferred_after.get()
    if deferred is not None:  # after_commit_deferred: its flush does the work, once
        deferred.position = max(position, deferred.position or 0)
        return
    _after_commit(position=position)


def _after_commit(*, position: int) -> None:
    from events.tasks import projections_catch_up  # the tasks import this module

    try:
        projections_catch_up.delay()
    except Exception:
        logger.warning("could not queue the projection catch-up; it will run on schedule", exc_info=True)
    if read_your_writes_enabled():
        try:
            projections_wait(position=position)
        except StoreUnavailable:
            raise
        except _DB_LOST as exc:
            raise StoreUnavailable(f"the database connection was lost: {exc}") from exc
        except Exception:
            logger.exception(
                "the views could not be brought up to position %s here; the workers will", position
            )


def projections_failing() -> dict[str, tuple[int, str]]:
    """Live projections stopped on an event they could not apply: name -> (position, error)."""
    return {
        name: (position, error)
        for name, position, error in Checkpoint.objects.filter(
            is_live=True, failed_position__isnull=False, projection__in=projection_names()
        ).values_list("projection", "failed_position", "failed_error")
        if position is not None  # the filter's promise, spelled out for the type checker
    }


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    generation: int
    checkpoint: int
    head: int
    lag_events: int
    lag_seconds: float
    last_run: ProjectionRun | None
    # The event the projection could not apply, and why (None: no failure recorded).
    failed_position: int | None = None
    failed_error: str = ""


def projection_status_list() -> list[ProjectionStatus]:
    """Each projection's checkpoint, the head, how far behind it is, and the event it failed on."""
    head = head_position()
    statuses = []
    for name in projection_names():
        checkpoint = live_checkpoint(name)
        behind = Event.objects.filter(position__gt=checkpoint.position)
        oldest = behind.aggregate(at=Min("recorded_at"))["at"]
        statuses.append(
            ProjectionStatus(
                name=name,
                generation=checkpoint.generation,
                checkpoint=checkpoint.position,
                head=head,
                lag_events=behind.count(),
                lag_seconds=(timezone.now() - oldest).total_seconds() if oldest else 0.0,
                last_run=ProjectionRun.objects.filter(projection=name).order_by("-started_at").first(),
                failed_position=checkpoint.failed_position,
                failed_error=checkpoint.failed_error,
            )
        )
    return statuses
