"""Agent tables: the name reservations (write side) and the two projections (read side).

The projection tables are derived from the event log and can be dropped and rebuilt at any
time. Each row belongs to a *generation*; selectors read the live generation only, which
lets a rebuild fill a new generation while reads go on (events.projections).
"""

from django.conf import settings
from django.db import models

# The body is the end of the content (after the closing '---' line): kept as an offset rather
# than a second copy of up to 256 KiB, which PostgreSQL would compress and store again.
BODY_START_HELP = "Where the body begins in content (characters)."


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
    body_start = models.PositiveIntegerField(default=0, help_text=BODY_START_HELP)
    description = models.TextField()
    model = models.CharField(max_length=200, blank=True)
    tools = models.JSONField(null=True, help_text="Declared tool names; null when every tool is granted.")
    labels = models.JSONField(default=dict, help_text="label -> revision")
    warnings = models.JSONField(
        default=list, help_text="Document warnings: [{code, message, line?, suggestion?}]."
    )
    dialect = models.CharField(max_length=32, default="claude-code")
    permissions = models.JSONField(default=dict, help_text="Effective permissions (API.md, Permissions).")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    updated_by = models.CharField(max_length=200)
    updated_at = models.DateTimeField()
    position = models.BigIntegerField(help_text="Position of the last event applied to this row.")

    class Meta:
        verbose_name = "agent"
        # The API and admin check these, not Django's per-model defaults: the views are derived
        # tables, and what a user may do is a command on the agent, not a row change.
        default_permissions = ()
        permissions = [
            ("view_agent", "Can read agent definitions, revisions and diffs"),
            ("change_agent", "Can create, revise and revert agent definitions"),
            ("archive_agent", "Can archive and restore agent definitions"),
            ("publish_agent", "Can move labels (e.g. production) between revisions"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["generation", "agent_id"], name="agents_current_uniq"),
        ]
        indexes = [
            models.Index(fields=["generation", "name"], name="agents_current_name_idx"),
            models.Index(fields=["generation", "status", "name"], name="agents_current_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} r{self.revision}"

    @property
    def body(self) -> str:
        """The Markdown after the frontmatter: the end of `content`, not stored a second time."""
        return self.content[self.body_start :]


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
    body_start = models.PositiveIntegerField(default=0, help_text=BODY_START_HELP)
    description = models.TextField()
    model = models.CharField(max_length=200, blank=True)
    tools = models.JSONField(null=True)
    warnings = models.JSONField(
        default=list, help_text="Document warnings: [{code, message, line?, suggestion?}]."
    )
    dialect = models.CharField(max_length=32, default="claude-code")
    permissions = models.JSONField(default=dict, help_text="Effective permissions (API.md, Permissions).")
    actor = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    source = models.CharField(max_length=100)
    recorded_at = models.DateTimeField()
    occurred_at = models.DateTimeField()
    changed_keys = models.JSONField(default=list, help_text="Frontmatter keys added, removed or changed.")
    lines_added = models.PositiveIntegerField(default=0)
    lines_removed = models.PositiveIntegerField(default=0)
    # The whole file (frontmatter and body), beside the body's counts above.
    file_lines_added = models.PositiveIntegerField(default=0)
    file_lines_removed = models.PositiveIntegerField(default=0)
    # Blame reads these from the one row it blames instead of replaying the history (agents_app.blame).
    line_origins = models.JSONField(
        null=True,
        help_text="The revision that last wrote each body line: [revision, count, ...] in line order.",
    )
    key_origins = models.JSONField(null=True, help_text="Frontmatter key -> the revision that last set it.")
    stream_version = models.PositiveIntegerField()
    position = models.BigIntegerField()

    class Meta:
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "agent_id", "revision"], name="agents_revision_uniq"
            ),
        ]
        indexes = [
            # Both secondary indexes are partial on a condition every row meets (the columns
            # are NOT NULL) so that only a query naming their column can use them: on rows
            # without statistics (after a bulk load or an import, before autovacuum's ANALYZE)
            # PostgreSQL read exact (agent, revision) keys through either one and filtered
            # every revision of the agent: 5.6 ms at 10,000 revisions against 0.07 ms through
            # the unique key (issue 13, W5; tests/agents_app/test_revision_plans.py).
            # Renames: every agent that had a name (selectors.agent_ids_named).
            models.Index(
                fields=["generation", "name"],
                name="agents_revision_named_idx",
                condition=models.Q(name__isnull=False),
            ),
            # "As of T" (selectors.revision_at, registry_at): the newest revision by business
            # time, ties by revision, read backwards from T in index order.
            models.Index(
                fields=["generation", "agent_id", "occurred_at", "revision"],
                name="agents_revision_asof_idx",
                condition=models.Q(occurred_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} r{self.revision}"

    @property
    def body(self) -> str:
        """The Markdown after the frontmatter: the end of `content`, not stored a second time."""
        return self.content[self.body_start :]


class ApiToken(models.Model):
    """A bearer token for the REST API; only its SHA-256 digest is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for.")
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a token.")
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the whole token.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}... ({self.user})"


class IdempotencyRecord(models.Model):
    """The first answer to a request sent with an `Idempotency-Key`, replayed for retries."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status = models.PositiveSmallIntegerField()
    headers = models.JSONField(default=dict)
    body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        default_permissions = ()
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_uniq")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"


class GitImportedCommit(models.Model):
    """A git commit whose replay stored events: written in the same transaction as those events."""

    # Without it, finding where a re-run resumes searched the event log's metadata (a scan
    # of the whole log, under the append lock at every batch of a replay).
    repository = models.CharField(max_length=64, help_text="The repository's root commit (its identity).")
    commit = models.CharField(max_length=64)
    position = models.BigIntegerField(help_text="Position of the newest event the commit stored.")

    class Meta:
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["repository", "commit"], name="git_imported_commit_uniq"),
        ]
        indexes = [models.Index(fields=["repository", "-position"], name="git_imported_newest_idx")]

    def __str__(self) -> str:
        return f"{self.repository[:12]}:{self.commit[:12]}"


# Webhooks live in their own module; imported here so that Django finds them in this app.
# Label policies and promotion requests: their own module, found by Django through this import.
from agents_app.promotions.models import LabelPolicy, PromotionApproval, PromotionRequest  # noqa: E402, F401
from agents_app.webhooks.models import WebhookDelivery, WebhookSubscription  # noqa: E402, F401
