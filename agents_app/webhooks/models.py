"""Webhook subscriptions and their delivery log (imported into agents_app.models)."""

from django.conf import settings
from django.db import models


class WebhookSubscription(models.Model):
    """An HTTP endpoint that receives, in log order, the events it subscribed to."""

    url = models.URLField(max_length=2000, db_comment="The endpoint: https (http only when allowed).")
    event_types = models.JSONField(default=list, db_comment='Event types delivered; "*" for all.')
    agent_names = models.JSONField(default=list, db_comment="Only events of these agents; empty: all.")
    description = models.CharField(max_length=500, blank=True, default="")
    active = models.BooleanField(default=True, db_comment="Off: paused by an operator or after failures.")
    # Kept as given, not hashed: the service signs every delivery with it (HMAC needs the key
    # itself), unlike API tokens, which are only ever compared.
    secret = models.CharField(max_length=200, db_comment="Standard Webhooks signing secret (whsec_...).")
    checkpoint = models.BigIntegerField(
        default=0, db_comment="Position of the last event delivered (2xx) or skipped as not matching."
    )
    failures = models.PositiveIntegerField(default=0, db_comment="Consecutive failed attempts.")
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_comment="Backoff: no attempt before.")
    paused_reason = models.CharField(max_length=500, blank=True, default="")
    paused_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True, db_comment="The runner delivering right now.")
    lease_until = models.DateTimeField(
        null=True, blank=True, db_comment="Another runner may take over after."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "webhook"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"webhook {self.pk}: {self.url}"


class WebhookDelivery(models.Model):
    """One attempt to deliver one event to one subscription."""

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    position = models.BigIntegerField(db_comment="The event's position in the log.")
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    webhook_id = models.CharField(max_length=100, db_comment="webhook-id header: the same for every retry.")
    attempt = models.PositiveIntegerField(db_comment="1, 2, ... for this event (a redelivery counts on).")
    redelivery = models.BooleanField(default=False, db_comment="Asked for by an operator.")
    succeeded = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=1000, blank=True, default="")
    response_body = models.CharField(max_length=1024, blank=True, default="", db_comment="At most 1 KiB.")
    attempted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["subscription", "-id"], name="webhook_delivery_sub_idx"),
            models.Index(fields=["subscription", "position"], name="webhook_delivery_event_idx"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of event {self.position}"
