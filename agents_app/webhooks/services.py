"""Webhook subscriptions and their delivery runner: a reader of the log with its own checkpoint.

Delivery, per subscription: take the lease, find the next matching event after the checkpoint,
POST it (no transaction open, no lock held), then in one short transaction write the delivery
row and, after a 2xx only, move the checkpoint. The next event is read only after that, so
event N+1 never leaves before N got its 2xx: at least once, in log order.

Why a lease (lease_token, lease_until on the subscription row) and not the row lock held for
the duration of the POST: holding a transaction open across an HTTP call that may take the
whole read timeout would, on SQLite (the embedded mode's IMMEDIATE transactions), hold the one
write lock and stop every writer; on PostgreSQL it would keep a transaction idle for seconds,
block an operator's PATCH or DELETE of the subscription for as long, and hold back VACUUM. The
lease is taken by one UPDATE that only succeeds when no other runner holds an unexpired lease,
so two workers never deliver the same subscription at once; the commit after the POST checks,
under the row lock, that the lease is still ours, so a runner that lost it (it stalled past
lease_until and another took over) can log its attempt but never move the checkpoint. A worker
killed mid-delivery leaves its lease to expire (timeouts + LEASE_MARGIN_SECONDS) and the
checkpoint where it was: the next runner sends the same event again (same webhook-id).
"""

import base64
import datetime as dt
import hashlib
import json
import logging
import random
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from agents_app import event_types as agent_event_types
from agents_app.exceptions import AgentError, AgentNotFound
from agents_app.revision_data import event_name
from agents_app.selectors import agent_get
from agents_app.webhooks import delivery
from agents_app.webhooks.models import WebhookDelivery, WebhookSubscription
from events.selectors import events_after, head_position, stream_last
from events.timefmt import iso
from events.types import StoredEvent

logger = logging.getLogger(__name__)

ALL_EVENTS = "*"
MAX_EVENT_TYPES = 50
MAX_AGENT_NAMES = 100
MAX_AGENT_NAME = 200
MAX_URL = 2000
MAX_DESCRIPTION = 500
# Seconds a lease outlives the longest POST (connect + read timeout): time for the commit after it.
LEASE_MARGIN_SECONDS = 5.0
# A run delivers at most this many events, then queues the next run: a busy subscription does
# not keep a worker from the others' tasks.
RUN_MAX_EVENTS = 100
# Events read per query while looking for the next matching one, and at most per run step
# (non-matching events are skipped by moving the checkpoint past them).
SCAN_BATCH = 200
SCAN_MAX_EVENTS = 2000
EVENTS_PER_CLAIM = 20


class WebhookInvalid(Exception):
    """Bad subscription input; `errors` names each field and what is wrong with it."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))


class WebhookNotFound(Exception):
    pass


def known_event_types() -> frozenset[str]:
    return agent_event_types.ALL


def secret_generate() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


# ------------------------------------------------------------------------------
# Subscriptions
# ------------------------------------------------------------------------------
def _validated(changes: dict[str, Any]) -> dict[str, Any]:
    """The given fields checked and normalised; WebhookInvalid names every bad one."""
    errors: list[tuple[str, str]] = []
    clean: dict[str, Any] = {}
    if "url" in changes:
        url = changes["url"]
        if not isinstance(url, str) or not url:
            errors.append(("url", "must be a non-empty string"))
        elif len(url) > MAX_URL:
            errors.append(("url", f"must be at most {MAX_URL} characters"))
        else:
            try:
                URLValidator(schemes=["http", "https"])(url)
                # Literal address, scheme and what the name resolves to now. Delivery checks
                # again (the DNS answer can change): this only refuses the obvious early.
                delivery.url_check(url)
                clean["url"] = url
            except DjangoValidationError:
                errors.append(("url", "is not a valid http(s) URL"))
            except delivery.AddressRefused as exc:
                errors.append(("url", str(exc)))
    if "event_types" in changes:
        types = changes["event_types"]
        known = known_event_types()
        if not isinstance(types, list) or not types or len(types) > MAX_EVENT_TYPES:
            errors.append(("events", f"must be a list of 1 to {MAX_EVENT_TYPES} event types"))
        elif bad := [t for t in types if not isinstance(t, str) or (t != ALL_EVENTS and t not in known)]:
            errors.append(
                ("events", f"unknown event type {bad[0]!r}; one of {sorted(known)} or {ALL_EVENTS!r}")
            )
        else:
            clean["event_types"] = sorted(set(types))
    if "agent_names" in changes:
        names = changes["agent_names"]
        if names is None:
            names = []
        if not isinstance(names, list) or len(names) > MAX_AGENT_NAMES:
            errors.append(("agents", f"must be a list of at most {MAX_AGENT_NAMES} agent names"))
        elif any(
            not isinstance(n, str) or not n or len(n) > MAX_AGENT_NAME or "\x00" in n or n != n.strip()
            for n in names
        ):
            errors.append(("agents", f"each agent name must be 1 to {MAX_AGENT_NAME} characters of text"))
        else:
            clean["agent_names"] = sorted(set(names))
    if "description" in changes:
        description = changes["description"]
        if description is None:
            description = ""
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION or "\x00" in description:
            errors.append(("description", f"must be text of at most {MAX_DESCRIPTION} characters"))
        else:
            clean["description"] = description
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            errors.append(("active", "must be true or false"))
        else:
            clean["active"] = changes["active"]
    if errors:
        raise WebhookInvalid(errors)
    return clean


def webhook_validate(changes: dict[str, Any]) -> dict[str, Any]:
    """Check subscription fields (for forms that want the errors before saving); WebhookInvalid."""
    return _validated(changes)


def webhook_create(
    *,
    url: str,
    event_types: list[str],
    agent_names: list[str] | None = None,
    description: str = "",
    active: bool = True,
    created_by_id: int | None = None,
) -> tuple[WebhookSubscription, str]:
    """Create a subscription; returns it and its secret (the only time the secret is handed out).

    It starts at the head of the log: it hears of events from now on, not the whole history.
    """
    clean = _validated(
        {
            "url": url,
            "event_types": event_types,
            "agent_names": agent_names,
            "description": description,
            "active": active,
        }
    )
    secret = secret_generate()
    subscription = WebhookSubscription.objects.create(
        **clean, secret=secret, checkpoint=head_position(), created_by_id=created_by_id
    )
    return subscription, secret


def webhook_update(*, subscription_id: int, changes: dict[str, Any]) -> WebhookSubscription:
    """Change a subscription. Setting active=true on a paused one resumes it from its checkpoint."""
    clean = _validated(changes)
    with transaction.atomic():
        # The row lock: a runner's commit (which may pause it after a failure) and this change
        # do not overwrite each other's fields.
        subscription = WebhookSubscription.objects.select_for_update().filter(pk=subscription_id).first()
        if subscription is None:
            raise WebhookNotFound(f"no webhook {subscription_id}")
        resumed = clean.get("active") is True and not subscription.active
        paused = clean.get("active") is False and subscription.active
        for field, value in clean.items():
            setattr(subscription, field, value)
        if resumed:
            subscription.failures = 0
            subscription.next_attempt_at = None
            subscription.paused_reason = ""
            subscription.paused_at = None
        elif paused:
            subscription.paused_reason = "paused by an operator"
            subscription.paused_at = timezone.now()
        subscription.save()
    if resumed:
        transaction.on_commit(lambda: webhook_run_soon(subscription_id=subscription_id))
    return subscription


def webhook_delete(*, subscription_id: int) -> None:
    deleted, _ = WebhookSubscription.objects.filter(pk=subscription_id).delete()
    if not deleted:
        raise WebhookNotFound(f"no webhook {subscription_id}")


def webhook_redeliver(*, subscription_id: int, delivery_id: int) -> WebhookDelivery:
    """Queue one more send of the event of a logged delivery; the checkpoint stays where it is."""
    logged = WebhookDelivery.objects.filter(pk=delivery_id, subscription_id=subscription_id).first()
    if logged is None:
        raise WebhookNotFound(f"no delivery {delivery_id} of webhook {subscription_id}")
    position = logged.position
    transaction.on_commit(lambda: _redeliver_soon(subscription_id=subscription_id, position=position))
    return logged


# ------------------------------------------------------------------------------
# What is sent
# ------------------------------------------------------------------------------
def webhook_message_id(*, subscription_id: int, event_id: uuid.UUID) -> str:
    """The webhook-id: the same for every attempt of one event to one subscription (to dedupe on)."""
    digest = hashlib.sha256(f"{subscription_id}:{event_id}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def _agent_name(event: StoredEvent, names: dict[uuid.UUID, str | None]) -> str | None:
    """The agent's name at this event: parsed from the content when the event carries it,
    else the current view's (label moves, archive, restore); None for other streams."""
    if name := _name_in(event):
        return name
    if event.stream_id not in names:
        try:
            names[event.stream_id] = agent_get(agent_id=event.stream_id).name
        except AgentNotFound:
            # The views may not have applied this stream yet: its newest content in the log.
            last = stream_last(stream_id=event.stream_id, types=agent_event_types.CONTENT_EVENTS)
            names[event.stream_id] = _name_in(last) if last is not None else None
    return names[event.stream_id]


def _name_in(event: StoredEvent) -> str | None:
    content = event.data.get("content") if isinstance(event.data, dict) else None
    if not isinstance(content, str):
        return None
    try:
        return event_name(event.data) or None
    except AgentError:  # an old document the current parser refuses: the caller asks the view
        return None


def webhook_payload(event: StoredEvent, *, agent: str | None) -> dict[str, Any]:
    """The body: the same bytes for every attempt of an event (its timestamp is the event's)."""
    metadata = event.metadata or {}
    data = event.data if isinstance(event.data, dict) else {}
    body: dict[str, Any] = {
        "position": event.position,
        "event_id": str(event.event_id),
        "agent": agent,
        "agent_id": str(event.stream_id),
        "revision": data.get("revision"),
        "stream_version": event.stream_version,
        "actor": metadata.get("actor"),
        "source": metadata.get("source"),
        "reason": metadata.get("reason"),
        "occurred_at": metadata.get("occurred_at"),
    }
    if "label" in data:
        body["label"] = data["label"]
    if "permissions_widened" in data:
        body["permissions_widened"] = data["permissions_widened"]
    return {"type": event.type, "timestamp": iso(event.recorded_at), "data": body}


def _send(
    subscription: WebhookSubscription, event: StoredEvent, agent: str | None
) -> tuple[str, delivery.Attempt]:
    message_id = webhook_message_id(subscription_id=subscription.pk, event_id=event.event_id)
    body = json.dumps(webhook_payload(event, agent=agent), separators=(",", ":")).encode()
    now = timezone.now()
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(subscription.secret).sign(message_id, now, body),
    }
    return message_id, delivery.post(url=subscription.url, body=body, headers=headers)


# ------------------------------------------------------------------------------
# The runner
# ------------------------------------------------------------------------------
def _lease_seconds() -> float:
    return settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_READ_TIMEOUT + LEASE_MARGIN_SECONDS


def _claim(subscription_id: int, token: uuid.UUID) -> WebhookSubscription | None:
    """Take (or extend) the lease if the subscription is active, due, and nobody else holds it."""
    now = timezone.now()
    # One UPDATE: between two runners that both read "free", only one matches the WHERE after
    # the other's UPDATE committed (PostgreSQL re-checks the row; SQLite runs one writer at a time).
    taken = (
        WebhookSubscription.objects.filter(pk=subscription_id, active=True)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_token=token))
        .update(lease_token=token, lease_until=now + dt.timedelta(seconds=_lease_seconds()))
    )
    if not taken:
        return None
    return WebhookSubscription.objects.filter(pk=subscription_id).first()


def _release(subscription_id: int, token: uuid.UUID) -> None:
    WebhookSubscription.objects.filter(pk=subscription_id, lease_token=token).update(
        lease_token=None, lease_until=None
    )


def _next_events(
    subscription: WebhookSubscription, names: dict[uuid.UUID, str | None], *, limit: int
) -> tuple[list[tuple[StoredEvent, str | None]], int]:
    """Up to `limit` matching events after the checkpoint (each with its agent's name), and the
    position up to which nothing before them is to be delivered. Reads at most SCAN_MAX_EVENTS."""
    # The head is read first: appends commit in position order (events.services.append_lock),
    # so every event up to it is visible and skipping up to it can never skip a late commit.
    head = head_position()
    types = None if ALL_EVENTS in subscription.event_types else frozenset(subscription.event_types)
    wanted = set(subscription.agent_names)
    found: list[tuple[StoredEvent, str | None]] = []
    scanned = 0
    for batch in events_after(
        position=subscription.checkpoint, batch_size=SCAN_BATCH, types=types, up_to=head
    ):
        for event in batch:
            agent = _agent_name(event, names)
            if not wanted or agent in wanted:
                found.append((event, agent))
                if len(found) >= limit:
                    return found, found[0][0].position - 1
        scanned += len(batch)
        if scanned >= SCAN_MAX_EVENTS:
            return found, (found[0][0].position - 1 if found else batch[-1].position)
    return found, (found[0][0].position - 1 if found else head)


def _backoff_seconds(failures: int) -> float:
    """Exponential, capped, with jitter (half fixed, half random) so that endpoints that failed
    together are not all retried in the same second."""
    delay = min(
        settings.WEBHOOK_BACKOFF_MAX_SECONDS,
        settings.WEBHOOK_BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0),
    )
    return delay / 2 + random.uniform(0, delay / 2)


def _record(
    *,
    subscription_id: int,
    token: uuid.UUID,
    event: StoredEvent,
    message_id: str,
    attempt: delivery.Attempt,
    redelivery: bool = False,
    url: str = "",
) -> bool:
    """Log the attempt; after a 2xx move the checkpoint, after a failure back off or pause. In one
    transaction, so the log never says delivered while the checkpoint says not (or the reverse).
    True when the runner may go on with the next event."""
    with transaction.atomic():
        # The row lock orders this commit with an operator's PATCH and with another runner's
        # commit: without it, a PATCH active=false read before this save would be overwritten.
        subscription = WebhookSubscription.objects.select_for_update().filter(pk=subscription_id).first()
        if subscription is None:
            return False  # deleted meanwhile: its delivery log went with it
        number = WebhookDelivery.objects.filter(
            subscription_id=subscription_id, position=event.position
        ).count()
        WebhookDelivery.objects.create(
            subscription=subscription,
            position=event.position,
            event_id=event.event_id,
            event_type=event.type,
            webhook_id=message_id,
            attempt=number + 1,
            redelivery=redelivery,
            succeeded=attempt.succeeded,
            status_code=attempt.status_code,
            latency_ms=attempt.latency_ms,
            error=attempt.error,
            response_body=attempt.response_body,
        )
        if redelivery:
            return False
        if subscription.lease_token != token:
            # Our lease ran out and another runner owns the order now: this attempt is logged,
            # but only that runner moves the checkpoint.
            return False
        now = timezone.now()
        if attempt.succeeded:
            subscription.checkpoint = max(subscription.checkpoint, event.position)
            subscription.failures = 0
            subscription.next_attempt_at = None
            subscription.lease_until = now + dt.timedelta(seconds=_lease_seconds())
        else:
            subscription.failures += 1
            subscription.lease_token = None
            subscription.lease_until = None
            if subscription.failures >= settings.WEBHOOK_MAX_ATTEMPTS:
                subscription.active = False
                subscription.paused_at = now
                subscription.paused_reason = (
                    f"paused after {subscription.failures} failed attempts in a row; the last: "
                    f"{attempt.error or attempt.status_code}"
                )[:500]
                subscription.next_attempt_at = None
            else:
                subscription.next_attempt_at = now + dt.timedelta(
                    seconds=_backoff_seconds(subscription.failures)
                )
        subscription.save(
            update_fields=[
                "checkpoint",
                "failures",
                "next_attempt_at",
                "lease_token",
                "lease_until",
                "active",
                "paused_at",
                "paused_reason",
            ]
        )
        # Go on with the next event only if it would still go to the same place: an operator may
        # have paused the subscription or changed its URL while this one was in flight.
        return attempt.succeeded and subscription.active and subscription.url == url


def _skip_to(subscription_id: int, token: uuid.UUID, position: int) -> None:
    """Move the checkpoint past events this subscription does not want (only while we hold the lease)."""
    WebhookSubscription.objects.filter(pk=subscription_id, lease_token=token, checkpoint__lt=position).update(
        checkpoint=position
    )


@dataclass(frozen=True)
class RunResult:
    delivered: int
    more: bool  # stopped at RUN_MAX_EVENTS with events left
    retry_at: dt.datetime | None  # backing off until then


def webhook_deliver(*, subscription_id: int, max_events: int = RUN_MAX_EVENTS) -> RunResult:
    """Deliver the subscription's waiting events in order, until caught up, a failure, or max_events."""
    token = uuid.uuid4()
    names: dict[uuid.UUID, str | None] = {}
    delivered = 0
    try:
        while delivered < max_events:
            subscription = _claim(subscription_id, token)
            if subscription is None:
                break
            # A batch per claim: one claim and one read of the log for up to EVENTS_PER_CLAIM
            # events; each is still sent only after the one before it got its 2xx.
            batch, skip_to = _next_events(
                subscription, names, limit=min(EVENTS_PER_CLAIM, max_events - delivered)
            )
            if skip_to > subscription.checkpoint:
                _skip_to(subscription_id, token, skip_to)
            if not batch:
                if skip_to < head_position():
                    continue  # scanned SCAN_MAX_EVENTS without a match: next slice
                _release(subscription_id, token)
                # A write that committed while we held the lease saw the subscription busy
                # (webhooks_due skips leased ones) and queued nothing: look once more after
                # letting go, or its event would wait for the next beat tick.
                if head_position() <= skip_to:
                    break
                continue
            going_on = True
            for event, agent in batch:
                # No transaction is open here and no lock is held (see the module docstring).
                message_id, attempt = _send(subscription, event, agent)
                going_on = _record(
                    subscription_id=subscription_id,
                    token=token,
                    event=event,
                    message_id=message_id,
                    attempt=attempt,
                    url=subscription.url,
                )
                if not going_on:
                    break
                delivered += 1
            if not going_on:
                break
    finally:
        _release(subscription_id, token)
    state = WebhookSubscription.objects.filter(pk=subscription_id).values("active", "next_attempt_at").first()
    retry_at = state["next_attempt_at"] if state and state["active"] else None
    return RunResult(delivered=delivered, more=delivered >= max_events, retry_at=retry_at)


def webhook_redeliver_send(*, subscription_id: int, position: int) -> delivery.Attempt | None:
    """Send the event at `position` once more (an operator asked); logs it, moves nothing."""
    subscription = WebhookSubscription.objects.filter(pk=subscription_id).first()
    event = next(iter(next(events_after(position=position - 1, batch_size=1, up_to=position), [])), None)
    if subscription is None or event is None:
        return None
    message_id, attempt = _send(subscription, event, _agent_name(event, {}))
    _record(
        subscription_id=subscription_id,
        token=uuid.uuid4(),
        event=event,
        message_id=message_id,
        attempt=attempt,
        redelivery=True,
    )
    return attempt


# ------------------------------------------------------------------------------
# Scheduling: Celery tasks with a worker; a background thread in the embedded (eager) mode
# ------------------------------------------------------------------------------
def webhooks_due() -> list[int]:
    """Active subscriptions with events after their checkpoint, not backing off, not being delivered."""
    from agents_app.webhooks.selectors import webhooks_due_ids

    return webhooks_due_ids(head=head_position(), now=timezone.now())


def webhooks_dispatch() -> list[int]:
    """Start a delivery run for every due subscription (beat, every second, and after writes).

    A run per subscription (a task each, or a thread each in the embedded mode): a dead
    endpoint waiting out its timeout holds only its own run.
    """
    due = webhooks_due()
    for subscription_id in due:
        webhook_run_soon(subscription_id=subscription_id)
    return due


def webhooks_wake() -> None:
    """After a write committed: deliver now rather than at the next beat tick.

    Costs the writer one indexed query when no subscription is active, else one task
    published (or, embedded, one thread started); never an HTTP call.
    """
    if not WebhookSubscription.objects.filter(active=True).exists():
        return
    if _eager():
        _in_background("dispatch", webhooks_dispatch)
        return
    from agents_app.tasks import webhooks_dispatch_task

    try:
        webhooks_dispatch_task.delay()
    except Exception:
        logger.warning("could not queue the webhook dispatch; beat will run it", exc_info=True)


def _eager() -> bool:
    """Tasks run in process (no broker): the Celery app's own setting, which tests switch."""
    return bool(current_app.conf.task_always_eager)


def webhook_run_soon(*, subscription_id: int) -> None:
    if _eager():
        _in_background(f"deliver-{subscription_id}", lambda: _eager_follow(subscription_id))
        return
    from agents_app.tasks import webhook_deliver_task

    try:
        webhook_deliver_task.delay(subscription_id)
    except Exception:
        logger.warning("could not queue delivery of webhook %s; beat will", subscription_id, exc_info=True)


def _redeliver_soon(*, subscription_id: int, position: int) -> None:
    if _eager():
        _in_background(
            f"redeliver-{subscription_id}-{position}",
            lambda: webhook_redeliver_send(subscription_id=subscription_id, position=position),
        )
        return
    from agents_app.tasks import webhook_redeliver_task

    webhook_redeliver_task.delay(subscription_id, position)


def _eager_follow(subscription_id: int) -> None:
    """Embedded mode has no beat: the thread itself waits out the backoff and tries again."""
    while True:
        result = webhook_deliver(subscription_id=subscription_id)
        if result.more:
            continue
        if result.retry_at is None:
            return
        time.sleep(max(0.0, (result.retry_at - timezone.now()).total_seconds()) + 0.01)


# Embedded mode: the minimal "run after the commit, in a thread" (project/celery.py may grow a
# shared helper for this; this one also folds repeated wake-ups into one rerun per key).
_background_lock = threading.Lock()
_background_running: set[str] = set()
_background_again: set[str] = set()


def _in_background(key: str, work) -> None:
    if not settings.WEBHOOK_EAGER_THREADS:
        return
    with _background_lock:
        if key in _background_running:
            _background_again.add(key)
            return
        _background_running.add(key)
    threading.Thread(target=_background_loop, args=(key, work), name=f"webhooks-{key}", daemon=True).start()


def _background_loop(key: str, work) -> None:
    try:
        while True:
            try:
                work()
            except Exception:
                logger.exception("webhook background work %s failed", key)
            with _background_lock:
                if key in _background_again:
                    _background_again.discard(key)
                    continue
                _background_running.discard(key)
                return
    finally:
        connection.close()  # this thread's own connection
