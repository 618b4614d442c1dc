"""Celery tasks of agents_app: they take ids or nothing, never model instances, and call one service."""

from celery import shared_task
from django.db import OperationalError

from agents_app.idempotency import idempotency_records_purge


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def idempotency_records_purge_task() -> int:
    """Delete expired idempotency records (on beat, hourly); the number deleted."""
    return idempotency_records_purge()
