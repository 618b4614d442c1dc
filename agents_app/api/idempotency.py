"""Idempotent writes (`Idempotency-Key`, API.md): the one place that records and replays them.

A write sent with a key runs inside one transaction with the record of its answer, under the
append lock: a retry with the same key and the same request gets the first answer again
(`Idempotent-Replayed: true`) and stores nothing; the same key with a different request is a
422. An error raised while answering (e.g. the views did not catch up) rolls the write back
with the record, so a retry with the key is always safe. One exception: a view that FAILED on
the change (recorded on its status) will not catch up by waiting, so the change is kept and
its 503 answer, which names the stored version, is recorded for the key like a success.
"""

import hashlib
import re
from collections.abc import Callable

from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app.api.errors import PROBLEM_CONTENT_TYPE, ApiProblem, InvalidParameter, problem
from agents_app.idempotency import idempotency_cutoff
from agents_app.models import IdempotencyRecord
from events.services import append_lock

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
HEADER = "Idempotency-Key"
# Only these headers of a first answer are replayed: the others belong to that response.
REPLAYED_HEADERS = ("Location", "ETag", "Retry-After")


def _fingerprint(request: Request) -> str:
    raw = request._request.body  # read before DRF parses it, to fingerprint the exact bytes
    parts = [
        (request.method or "").encode(),
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
    user = request.user  # writes need an authenticated user (OperationPermission): never anonymous
    assert isinstance(user, User)
    cutoff = idempotency_cutoff()
    with transaction.atomic():
        # Under the append lock every write is serial, so two retries racing with the same
        # key cannot both miss the record and both store the change.
        append_lock()
        records = IdempotencyRecord.objects.filter(user=user, key=key)
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
            response = Response(
                record.body,
                status=record.status,
                headers=record.headers,
                content_type=PROBLEM_CONTENT_TYPE if record.status >= 400 else None,
            )
            response["Idempotent-Replayed"] = "true"
            return response
        on_start()
        try:
            response = operation()
        except ApiProblem as exc:
            if exc.code != "views-behind" or "stored_version" not in exc.extra:
                raise
            # A view failed on the change (recorded on its status): the change is kept and
            # this answer, which names the stored version, is what a retry with the key gets,
            # so the retry stores nothing twice.
            response = problem(
                status_code=exc.status_code,
                code=exc.code,
                title=exc.title,
                detail=str(exc.detail),
                headers=exc.headers,
                **exc.extra,
            )
        if 200 <= response.status_code < 300 or response.status_code == 503:
            IdempotencyRecord.objects.create(
                user=user,
                key=key,
                fingerprint=fingerprint,
                status=response.status_code,
                headers={k: v for k, v in response.items() if k in REPLAYED_HEADERS},
                body=response.data,
            )
    return response
