"""Idempotent writes (`Idempotency-Key`, API.md): the one place that records and replays them.

A write sent with a key runs inside one transaction with the record of its answer, under the
append lock: a retry with the same key and the same request gets the first answer again
(`Idempotent-Replayed: true`) and stores nothing; the same key with a different request is a
422. An error raised while answering (e.g. the views did not catch up) rolls the write back
with the record, so a retry with the key is always safe.
"""

import datetime as dt
import hashlib
import re
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app.api.errors import ApiProblem, InvalidParameter
from agents_app.models import IdempotencyRecord
from events.services import append_lock

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
HEADER = "Idempotency-Key"
# Only these headers of a first answer are replayed: the others belong to that response.
REPLAYED_HEADERS = ("Location", "ETag")


def _fingerprint(request: Request) -> str:
    raw = request._request.body  # read before DRF parses it, to fingerprint the exact bytes
    parts = [
        request.method.encode(),
        request.path.encode(),
        (request.content_type or "").encode("latin-1", "replace"),
        raw,
    ]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def idempotent_write(
    request: Request, operation: Callable[[], Response], *, on_start: Callable[[], None] = lambda: None
) -> Response:
    """Run `operation` (a write answering a Response) once per `Idempotency-Key` of the caller.

    Without the header, the operation just runs. `on_start` is called when the operation is
    about to run inside the key's transaction (the view then knows that raising rolls the
    write back).
    """
    key = request.headers.get(HEADER)
    if key is None:
        return operation()
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidParameter(HEADER, "must be 1 to 255 visible ASCII characters")
    fingerprint = _fingerprint(request)
    cutoff = timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    with transaction.atomic():
        # Under the append lock every write is serial, so two retries racing with the same
        # key cannot both miss the record and both store the change.
        append_lock()
        records = IdempotencyRecord.objects.filter(user=request.user, key=key)
        records.filter(created_at__lt=cutoff).delete()
        record = records.first()
        if record is not None:
            if record.fingerprint != fingerprint:
                raise ApiProblem(
                    status_code=422,
                    code="idempotency-key-reused",
                    title="Idempotency-Key reused with a different request",
                    detail="this Idempotency-Key was used for a different request; use a new key",
                )
            response = Response(record.body, status=record.status, headers=record.headers)
            response["Idempotent-Replayed"] = "true"
            return response
        on_start()
        response = operation()
        if 200 <= response.status_code < 300:
            IdempotencyRecord.objects.create(
                user=request.user,
                key=key,
                fingerprint=fingerprint,
                status=response.status_code,
                headers={k: v for k, v in response.items() if k in REPLAYED_HEADERS},
                body=response.data,
            )
    return response
