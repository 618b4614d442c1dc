"""Projection machinery: checkpoints, one runner at a time, catch-up, rebuild-and-swap, verify, lag.

Knows nothing about what a projection stores. A projection (a `Projection` subclass in the
app that owns the rows) says which event types it handles, how to apply a batch of events
to one *generation* of its rows, how to delete a generation, and how to list a
generation's rows for comparison. Selectors read the live generation only, so a rebuild
fills a new generation while reads are still answered from the old one, then swaps.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from events.models import Checkpoint, Event, ProjectionRun
from events.rows import rows_update
from events.selectors import events_after, head_position
from events.types import StoredEvent

logger = logging.getLogger(__name__)


class Projection:
    """A read model built from the log; subclasses live in the app that owns the rows."""

    name: ClassVar[str]
    event_types: ClassVar[frozenset[str]]

    def apply(self, events: list[StoredEvent], *, generation: int) -> None:
        """Apply events (only of `event_types`, in position order) to one generation's rows."""
        raise NotImplementedError

    def reset(self, *, generation: int) -> None:
        """Delete every row of one generation."""
        raise NotImplementedError

    def rows(self, *, generation: int) -> Iterator[tuple[Any, dict[str, Any]]]:
        """(key, fields) for every row of one generation, ordered by key, for verification."""
        raise NotImplementedError


class UnknownProjection(LookupError):
    """No projection is registered under that name."""


_registry: dict[str, Projection] = {}


def projection_register(projection: Projection) -> None:
    """Make a projection known to the runner (called from the owning app's ready())."""
    _registry[projection.name] = projection


def projection_names() -> list[str]:
    return sorted(_registry)


def projection_get(name: str) -> Projection:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownProjection(
            f"no projection named {name!r}; known: {', '.join(projection_names())}"
        ) from None


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


def _apply_batch(projection: Projection, checkpoint: Checkpoint, batch: list[StoredEvent]) -> None:
    # Rows and checkpoint change in the caller's transaction: both or neither, so a crash
    # between them cannot apply an event twice or skip it.
    handled = [event for event in batch if event.type in projection.event_types]
    if handled:
        projection.apply(handled, generation=checkpoint.generation)
    checkpoint.position = batch[-1].position
    checkpoint.save(update_fields=["position", "updated_at"])


def projection_catch_up(
    *,
    name: str,
    generation: int | None = None,
    batch_size: int | None = None,
    up_to: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int | None:
    """Apply every event after the checkpoint; return how many, or None if another runner holds it.

    Each batch is one transaction that locks the checkpoint row with SKIP LOCKED: without
    the lock two runners could read the same checkpoint, apply the same batch twice and
    both advance it; with it the second finds no row and returns at once.
    """
    projection = projection_get(name)
    if generation is None:
        generation = live_checkpoint(name).generation
    batch_size = batch_size or settings.PROJECTION_BATCH_SIZE
    applied = 0
    while True:
        with transaction.atomic():
            checkpoint = (
                Checkpoint.objects.select_for_update(skip_locked=True)
                .filter(projection=name, generation=generation)
                .first()
            )
            if checkpoint is None:
                return None if applied == 0 else applied
            batch = next(events_after(position=checkpoint.position, batch_size=batch_size, up_to=up_to), None)
            if batch is None:
                return applied
            _apply_batch(projection, checkpoint, batch)
        applied += len(batch)
        if progress is not None:
            progress(len(batch))


def projections_catch_up_all() -> dict[str, int | None]:
    """Catch every registered projection up; what each applied (None: another runner has it)."""
    return {name: projection_catch_up(name=name) for name in projection_names()}


def projections_wait(*, position: int, timeout: float | None = None) -> bool:
    """Read-your-writes: return once every live projection has applied `position`.

    The writer first catches up itself (the row lock makes that safe alongside workers);
    if a worker is applying right now it waits for it. False if `timeout` passed first.
    """
    deadline = time.monotonic() + (settings.PROJECTION_WAIT_SECONDS if timeout is None else timeout)
    for name in projection_names():
        while live_checkpoint(name).position < position:
            if projection_catch_up(name=name, up_to=position) is None:
                if time.monotonic() > deadline:
                    logger.warning("projection %s did not reach position %s in time", name, position)
                    return False
                time.sleep(0.02)
    return True


def projections_apply_appended(events: list[StoredEvent], *, head_before: int) -> bool:
    """Read-your-writes inside the append: apply the transaction's own events to every live
    projection that had applied everything before them; True if every projection did.

    Called by event_append under the append lock, after its INSERT. Without the lock, an
    event committed later with a lower position could be passed over; under it, the log up
    to `head_before` is all there is, so a checkpoint standing at `head_before` may move
    to these events and nothing is skipped. The checkpoints are taken with SKIP LOCKED: one
    held by a runner (a worker's batch, a rebuild's swap) is left to it and to the wait after
    COMMIT, because waiting for it here would hold the append lock, and so every writer, for
    as long as that batch takes. Rows and checkpoints move in this transaction: both commit
    with the events or neither does. A projection that fails is rolled back to the savepoint
    and logged; the write itself still commits, and the workers retry the projection.
    """
    names = projection_names()
    table = connection.ops.quote_name(Checkpoint._meta.db_table)
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    checkpoints = list(
        Checkpoint.objects.raw(
            f"SELECT * FROM {table} WHERE is_live AND position = %s"  # noqa: S608 - no input in it
            f" AND projection IN ({', '.join(['%s'] * len(names))}){lock}",
            [head_before, *names],
        )
    )
    if not checkpoints:
        return False
    try:
        with transaction.atomic():
            for checkpoint in checkpoints:
                projection = _registry[checkpoint.projection]
                handled = [event for event in events if event.type in projection.event_types]
                if handled:
                    projection.apply(handled, generation=checkpoint.generation)
                checkpoint.position = events[-1].position
            rows_update(
                checkpoints, fields=[Checkpoint._meta.get_field(f) for f in ("position", "updated_at")]
            )
    except Exception:
        logger.exception("projections failed on events %s..%s", events[0].position, events[-1].position)
        return False
    return len(checkpoints) == len(names)


@dataclass
class RebuildResult:
    name: str
    events: int
    seconds: float
    differences: list[str] = field(default_factory=list)
    swapped: bool = True


def _compare(projection: Projection, live: int, rebuilt: int, limit: int = 200) -> list[str]:
    """Differences between two generations' rows, as sentences naming the row and field."""
    differences: list[str] = []
    left, right = projection.rows(generation=live), projection.rows(generation=rebuilt)
    a, b = next(left, None), next(right, None)
    while (a is not None or b is not None) and len(differences) < limit:
        if b is None or (a is not None and a[0] < b[0]):
            differences.append(
                f"{projection.name}: row {a[0]} is in the live view but not in the rebuilt one"
            )
            a = next(left, None)
        elif a is None or b[0] < a[0]:
            differences.append(f"{projection.name}: row {b[0]} is missing from the live view")
            b = next(right, None)
        else:
            for key in sorted(set(a[1]) | set(b[1])):
                if a[1].get(key) != b[1].get(key):
                    differences.append(
                        f"{projection.name}: row {a[0]} field {key!r}: live {a[1].get(key)!r}"
                        f" != rebuilt {b[1].get(key)!r}"
                    )
            a, b = next(left, None), next(right, None)
    if len(differences) >= limit and (a is not None or b is not None):
        differences.append(f"{projection.name}: more differences after the first {limit} are not listed")
    return differences


def projection_rebuild(
    *,
    name: str,
    verify: bool = False,
    swap: bool = True,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildResult:
    """Replay the whole log into a new generation, then (if `swap`) make it the live one.

    Reads go on from the live generation the whole time. Appends made during the rebuild
    are applied to the new generation before the swap, which happens in one transaction
    holding both checkpoints. With `verify`, the two generations are compared at the same
    position first and every difference is reported (the rebuilt one, derived from the
    log, wins). `swap=False` builds, compares and throws the new generation away: a
    verification that leaves the live view alone.
    """
    projection = projection_get(name)
    started = time.monotonic()
    run = ProjectionRun.objects.create(projection=name, verified=verify)
    live = live_checkpoint(name)
    with transaction.atomic():
        generation = (Checkpoint.objects.filter(projection=name).aggregate(g=Max("generation"))["g"] or 0) + 1
        Checkpoint.objects.create(projection=name, generation=generation, position=0)
    try:
        projection.reset(generation=generation)
        total = 0

        def advance(count: int) -> None:
            nonlocal total
            total += count
            if progress is not None:
                progress(count, head_position())

        # Catch the new generation up until it is close to the head; the rest is applied
        # in the swap transaction, which should be short.
        while projection_catch_up(name=name, generation=generation, batch_size=batch_size, progress=advance):
            pass

        with transaction.atomic():
            old = Checkpoint.objects.select_for_update().get(pk=live.pk)
            new = Checkpoint.objects.select_for_update().get(projection=name, generation=generation)
            target = head_position()
            for checkpoint in (new, old):
                for batch in events_after(
                    position=checkpoint.position, batch_size=batch_size or 500, up_to=target
                ):
                    _apply_batch(projection, checkpoint, batch)
                    if checkpoint is new:
                        advance(len(batch))
            differences = _compare(projection, old.generation, new.generation) if verify else []
            if swap:
                old.is_live = False
                old.save(update_fields=["is_live", "updated_at"])
                new.is_live = True
                new.save(update_fields=["is_live", "updated_at"])
        discard = old if swap else new
        projection.reset(generation=discard.generation)
        discard.delete()
    except BaseException as exc:
        projection.reset(generation=generation)
        Checkpoint.objects.filter(projection=name, generation=generation, is_live=False).delete()
        ProjectionRun.objects.filter(pk=run.pk).update(
            finished_at=timezone.now(), result=ProjectionRun.Result.FAILED, detail=repr(exc)[:2000]
        )
        raise
    result = ProjectionRun.Result.DIFFERENCES if differences else ProjectionRun.Result.OK
    ProjectionRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(), events=total, result=result, detail="\n".join(differences)
    )
    return RebuildResult(
        name=name, events=total, seconds=time.monotonic() - started, differences=differences, swapped=swap
    )


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    generation: int
    checkpoint: int
    head: int
    lag_events: int
    lag_seconds: float
    last_run: ProjectionRun | None


def projection_status_list() -> list[ProjectionStatus]:
    """Each projection's checkpoint, the head, and how far behind it is in events and seconds."""
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
            )
        )
    return statuses
