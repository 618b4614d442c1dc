"""Agent tables: the name reservations (write side) and the two projections (read side).

The projection tables are derived from the event log and can be dropped and rebuilt at any
time. Each row belongs to a *generation*; selectors read the live generation only, which
lets a rebuild fill a new generation while reads go on (events.projections).
"""

from django.db import models


class AgentNameClaim(models.Model):
    """At most one active agent per name (invariant 5): written in the same transaction as the event."""

    name = models.CharField(primary_key=True, max_length=64)
    agent_id = models.UUIDField(unique=True)
    claimed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class AgentCurrent(models.Model):
    """Projection `agents.current`: one row per agent with its latest revision."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        ARCHIVED = "archived"

    generation = models.PositiveIntegerField()
    agent_id = models.UUIDField()
    name = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    revision = models.PositiveIntegerField()
    stream_version = models.PositiveIntegerField()
    content = models.TextField()
    sha256 = models.CharField(max_length=64)
    frontmatter = models.JSONField(default=dict)
    body = models.TextField()
    description = models.TextField()
    model = models.CharField(max_length=200, blank=True)
    tools = models.JSONField(null=True, help_text="Declared tool names; null when every tool is granted.")
    labels = models.JSONField(default=dict, help_text="label -> revision")
    warnings = models.JSONField(default=list)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    updated_by = models.CharField(max_length=200)
    updated_at = models.DateTimeField()
    position = models.BigIntegerField(help_text="Position of the last event applied to this row.")

    class Meta:
        verbose_name = "agent"
        constraints = [
            models.UniqueConstraint(fields=["generation", "agent_id"], name="agents_current_uniq"),
        ]
        indexes = [
            models.Index(fields=["generation", "name"], name="agents_current_name_idx"),
            models.Index(fields=["generation", "status", "name"], name="agents_current_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} r{self.revision}"


class AgentRevision(models.Model):
    """Projection `agents.revisions`: one row per (agent, revision); any revision is one indexed row."""

    generation = models.PositiveIntegerField()
    agent_id = models.UUIDField()
    revision = models.PositiveIntegerField()
    name = models.CharField(max_length=64)
    event_type = models.CharField(max_length=100)
    reverted_to = models.PositiveIntegerField(null=True)
    content = models.TextField()
    sha256 = models.CharField(max_length=64)
    frontmatter = models.JSONField(default=dict)
    body = models.TextField()
    description = models.TextField()
    model = models.CharField(max_length=200, blank=True)
    tools = models.JSONField(null=True)
    warnings = models.JSONField(default=list)
    actor = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    source = models.CharField(max_length=100)
    recorded_at = models.DateTimeField()
    occurred_at = models.DateTimeField()
    changed_keys = models.JSONField(default=list, help_text="Frontmatter keys added, removed or changed.")
    lines_added = models.PositiveIntegerField(default=0)
    lines_removed = models.PositiveIntegerField(default=0)
    stream_version = models.PositiveIntegerField()
    position = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "agent_id", "revision"], name="agents_revision_uniq"
            ),
        ]
        indexes = [
            models.Index(fields=["generation", "name"], name="agents_revision_name_idx"),
            models.Index(fields=["generation", "agent_id", "recorded_at"], name="agents_revision_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} r{self.revision}"
