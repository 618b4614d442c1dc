"""Celery tasks of agents_app: they take ids or nothing, never model instances, and call one service."""

from celery import shared_task
from django.db import OperationalError

from agents_app.idempotency import idempotency_records_purge


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def idempotency_records_purge_task() -> int:
    """Delete expired idempotency records (on beat, hourly); the number deleted."""
    return idempotency_records_purge()


@shared_task(acks_late=True)
def webhooks_dispatch_task() -> list[int]:
    """Queue a delivery run per subscription with events waiting (beat, every second; and after writes)."""
    from agents_app.webhooks.services import webhooks_dispatch

    return webhooks_dispatch()


# acks_late: a worker killed mid-delivery leaves the message to be delivered again; the lease
# and the checkpoint (moved only after a 2xx) make the second run send the same event again.
# No autoretry: a failed POST is recorded and backed off by the service itself, not by Celery.
@shared_task(acks_late=True, time_limit=300, soft_time_limit=280)
def webhook_deliver_task(subscription_id: int) -> int:
    """Deliver one subscription's waiting events in order; requeue itself if it stopped with more left."""
    from agents_app.webhooks.services import webhook_deliver, webhook_run_soon

    result = webhook_deliver(subscription_id=subscription_id)
    if result.more:
        webhook_run_soon(subscription_id=subscription_id)
    return result.delivered


@shared_task(acks_late=True, time_limit=60)
def webhook_redeliver_task(subscription_id: int, position: int) -> int | None:
    """Send one logged event once more (an operator's Redeliver); the checkpoint does not move."""
    from agents_app.webhooks.services import webhook_redeliver_send

    attempt = webhook_redeliver_send(subscription_id=subscription_id, position=position)
    return None if attempt is None else attempt.status_code
