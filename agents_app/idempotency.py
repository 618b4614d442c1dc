"""Idempotency records: the first answer to a request sent with an `Idempotency-Key`, kept
for `IDEMPOTENCY_KEY_HOURS` so that retries get it again, then purged."""

import datetime as dt

from django.conf import settings
from django.utils import timezone

from agents_app.models import IdempotencyRecord

PURGE_BATCH = 1000


def idempotency_cutoff() -> dt.datetime:
    """Records created before this are expired: a request with their key is a new request."""
    return timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)


def idempotency_records_purge(*, batch_size: int = PURGE_BATCH) -> int:
    """Delete the expired records (through the created_at index, in batches); how many were deleted."""
    # No append lock: a write reads its key's record under that lock and treats an expired
    # one as absent (and deletes it) itself, so deleting expired rows here cannot change
    # any answer. Batches keep each DELETE short on a table that grew for a long time.
    cutoff = idempotency_cutoff()
    deleted = 0
    while True:
        ids = list(
            IdempotencyRecord.objects.filter(created_at__lt=cutoff)
            .order_by("created_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        deleted += IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]
