"""Reads of webhook subscriptions and their delivery log."""

import datetime as dt

from django.db.models import Q, QuerySet

from agents_app.webhooks.models import WebhookDelivery, WebhookSubscription


def webhook_list() -> QuerySet[WebhookSubscription]:
    return WebhookSubscription.objects.order_by("id")


def webhook_get(*, subscription_id: int) -> WebhookSubscription | None:
    return WebhookSubscription.objects.filter(pk=subscription_id).first()


def webhook_deliveries(*, subscription_id: int) -> QuerySet[WebhookDelivery]:
    """The delivery log of one subscription, newest attempt first."""
    return WebhookDelivery.objects.filter(subscription_id=subscription_id).order_by("-id")


def webhooks_due_ids(*, head: int, now: dt.datetime) -> list[int]:
    """Subscriptions that have events to deliver and that no runner holds or that are not backing off."""
    rows = (
        WebhookSubscription.objects.filter(active=True, checkpoint__lt=head)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("id")
    )
    return list(rows.values_list("id", flat=True))
