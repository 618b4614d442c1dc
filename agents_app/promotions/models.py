"""Label policies and promotion requests (imported into agents_app.models).

Both tables are written by the services in the same transaction as the events they follow
(registry.label_policy_set, agent.promotion_*), under the append lock, like GitImportedCommit:
the log stays the record, the rows are what the services decide on and what the reads list.
A projection would do too, but the services must read the policy and the request's approvals
under the lock to decide (protected? last approval?), and a projection that lags (worker mode)
could let a protected label move or a request be applied twice.
"""

import uuid

from django.db import models


class LabelPolicy(models.Model):
    """A label's rule, for every agent: protected labels move only through an approved request."""

    label = models.CharField(max_length=64, primary_key=True)
    protected = models.BooleanField(default=False)
    approvals = models.PositiveSmallIntegerField(default=1, db_comment="Approvals a request needs.")
    approvals_when_widened = models.PositiveSmallIntegerField(
        default=1, db_comment="Approvals when the change widens the agent's permissions."
    )
    updated_by = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)
    position = models.BigIntegerField(
        default=0, db_comment="Position of the registry.label_policy_set event."
    )

    class Meta:
        ordering = ["label"]
        verbose_name_plural = "label policies"

    def __str__(self) -> str:
        return f"{self.label}: {'protected' if self.protected else 'open'}"


class PromotionRequest(models.Model):
    """A request to move a protected label of one agent to a revision, and its outcome."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPLIED = "applied"
        REJECTED = "rejected"
        WITHDRAWN = "withdrawn"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    agent_id = models.UUIDField(db_index=True)
    agent_name = models.CharField(max_length=200, db_comment="The agent's name when requested.")
    label = models.CharField(max_length=64)
    from_revision = models.PositiveIntegerField(
        null=True, blank=True, db_comment="Null: the label was unset."
    )
    to_revision = models.PositiveIntegerField()
    requested_by = models.CharField(max_length=200)
    reason = models.TextField(blank=True, default="")
    required_approvals = models.PositiveSmallIntegerField()
    widened = models.BooleanField(default=False)
    permissions = models.JSONField(default=dict, db_comment="The diff's permission section.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    decided_by = models.CharField(max_length=200, blank=True, default="")
    decision_comment = models.TextField(blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    request_event_id = models.UUIDField(db_comment="The agent.promotion_requested event.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        default_permissions = ()
        ordering = ["-created_at"]
        verbose_name = "promotion"
        indexes = [
            models.Index(fields=["status", "-created_at"], name="promotion_status_idx"),
            models.Index(fields=["agent_id", "label", "status"], name="promotion_agent_label_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_name}: {self.label} -> {self.to_revision} ({self.status})"


class PromotionApproval(models.Model):
    """One approval of a request; one per person (the constraint backs the service's check)."""

    request = models.ForeignKey(PromotionRequest, on_delete=models.CASCADE, related_name="approvals")
    by = models.CharField(max_length=200)
    comment = models.TextField()
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        default_permissions = ()
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["request", "by"], name="promotion_approval_once")]

    def __str__(self) -> str:
        return f"{self.by} approved {self.request_id}"
