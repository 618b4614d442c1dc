"""Celery tasks of the event store: they take names, never model instances, and call one service."""

import logging

from celery import shared_task
from django.db import OperationalError

from events.exceptions import RebuildAlreadyRunning, StoreUnavailable
from events.projections import projection_names
from events.rebuild import projection_rebuild, projections_cleanup
from events.runner import projections_catch_up_all
from events.verification import events_verify_recorded

logger = logging.getLogger(__name__)

RETRY = {
    "autoretry_for": (OperationalError, StoreUnavailable),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


@shared_task(acks_late=True, **RETRY)
def projections_catch_up() -> dict[str, int | None]:
    """Apply new events to every projection (queued after each append, and on beat)."""
    return projections_catch_up_all()


@shared_task(acks_late=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60, **RETRY)
def projection_rebuild_task(name: str, verify: bool = True) -> dict[str, object]:
    """Rebuild one projection from position 0 and swap it in; report differences with the old one.

    When another rebuild of it is running (a second request, or Redis redelivering this
    message because the first delivery outlasted the visibility timeout), this one does
    nothing and says so: the lock, not the broker, keeps rebuilds one at a time.
    """
    try:
        result = projection_rebuild(name=name, verify=verify)
    except RebuildAlreadyRunning as exc:
        logger.warning("%s; this request does nothing", exc)
        return {"name": name, "skipped": str(exc)}
    if result.problem:
        logger.error("rebuild of %s refused: %s", name, result.problem)
    if result.differences:
        logger.error("rebuild of %s found differences: %s", name, result.differences)
    return {"name": name, "events": result.events, "differences": result.differences}


@shared_task(acks_late=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60, **RETRY)
def projection_verify_task(name: str) -> dict[str, object]:
    """Rebuild one projection aside and compare it with the live one, leaving the live one in place."""
    try:
        result = projection_rebuild(name=name, verify=True, swap=False)
    except RebuildAlreadyRunning as exc:
        logger.warning("%s; this request does nothing", exc)
        return {"name": name, "skipped": str(exc)}
    if result.problem:
        logger.error("verification of %s refused: %s", name, result.problem)
    if result.differences:
        logger.error("verification of %s found differences: %s", name, result.differences)
    return {"name": name, "events": result.events, "differences": result.differences}


@shared_task(acks_late=True, **RETRY)
def projections_cleanup_task() -> dict[str, object]:
    """Remove what killed rebuilds left behind: non-live generations and runs stuck "running" (beat)."""
    result = projections_cleanup()
    return {"generations": result.generations, "runs_failed": result.runs_failed, "busy": result.busy}


@shared_task(acks_late=True)
def projections_rebuild_all() -> None:
    """Nightly: rebuild and verify every projection, one task each."""
    for name in projection_names():
        projection_rebuild_task.delay(name, verify=True)


@shared_task(acks_late=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60, **RETRY)
def events_verify_task(source: str = "schedule") -> dict[str, object]:
    """Walk every hash chain and store the outcome (hourly on beat; "Verify now" in the admin)."""
    result, record = events_verify_recorded(source=source)
    if result.problem is not None:
        logger.error("the event log failed verification: %s", result.problem)
    return {"verification": record.pk, "ok": result.ok, "events": result.events}


@shared_task(acks_late=True, **RETRY)
def events_seal_task() -> dict[str, object]:
    """Seal the events committed since the newest seal (on beat, every EVENT_SEAL_SECONDS)."""
    from events.sealing import log_seal  # here, not on top: this module's imports are being rewritten

    seals = log_seal()
    return {"seals": len(seals), "end_position": seals[-1].end_position if seals else None}
