"""Event store tables: the append-only event log and the projection checkpoints.

The event table is the only state that matters; every other table can be rebuilt from it.
"""

from django.db import models


class Event(models.Model):
    """One immutable fact in one stream; the database refuses UPDATE and DELETE (see migration 0002)."""

    position = models.BigAutoField(
        primary_key=True, db_comment="Global order of the log: strictly increasing, commit order."
    )
    event_id = models.UUIDField(
        unique=True, db_comment="Client-chosen identity: a retried append with the same id is stored once."
    )
    stream_id = models.UUIDField(db_comment="The stream (aggregate) this event belongs to.")
    stream_version = models.PositiveIntegerField(
        db_comment="1, 2, 3, ... within the stream with no gaps; the optimistic-concurrency token."
    )
    type = models.CharField(max_length=100, db_comment="Event type, e.g. agent.revised.")
    schema_version = models.PositiveSmallIntegerField(
        default=1, db_comment="Shape version of data; older shapes are upcast on read, never rewritten."
    )
    data = models.JSONField(db_comment="The event's payload.")
    metadata = models.JSONField(
        default=dict, db_comment="actor, source, reason, occurred_at, request/correlation/causation ids."
    )
    recorded_at = models.DateTimeField(db_comment="When the database stored it (database clock).")
    hash = models.CharField(
        max_length=64,
        db_comment="SHA-256 of the previous event's hash in the stream and this event's canonical JSON.",
    )

    class Meta:
        db_table = "events_event"
        default_permissions = ("view",)  # nobody adds, changes or deletes events by hand
        constraints = [
            models.UniqueConstraint(
                fields=["stream_id", "stream_version"], name="events_stream_version_uniq"
            ),
        ]
        indexes = [
            models.Index(fields=["type", "position"], name="events_type_position_idx"),
            models.Index(fields=["recorded_at"], name="events_recorded_at_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.position} {self.type} {self.stream_id}@{self.stream_version}"


class Checkpoint(models.Model):
    """How far one generation of one projection has applied the log.

    A projection has one live generation (read by selectors) and, during a rebuild, a second
    one being filled from position 0; the swap flips `is_live` in one transaction.
    """

    projection = models.CharField(max_length=100)
    generation = models.PositiveIntegerField()
    position = models.BigIntegerField(default=0, db_comment="Last event position applied to this generation.")
    is_live = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)
    failed_position = models.BigIntegerField(
        null=True,
        blank=True,
        db_comment="Position of the event this generation failed to apply (null: none).",
    )
    failed_error = models.TextField(blank=True, db_comment="The error of that failure.")
    failed_at = models.DateTimeField(null=True, blank=True, db_comment="When it last failed.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["projection", "generation"], name="events_checkpoint_uniq"),
            models.UniqueConstraint(
                fields=["projection"], condition=models.Q(is_live=True), name="events_checkpoint_one_live"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.projection}#{self.generation}@{self.position}"


class ProjectionRun(models.Model):
    """One rebuild (and optional verification) of a projection, for operators."""

    class Result(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        DIFFERENCES = "differences"
        FAILED = "failed"

    projection = models.CharField(max_length=100)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    events = models.BigIntegerField(default=0)
    verified = models.BooleanField(default=False)
    result = models.CharField(max_length=20, choices=Result.choices, default=Result.RUNNING)
    detail = models.TextField(blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of progress of a running rebuild (stale ones are failed)."
    )

    class Meta:
        indexes = [models.Index(fields=["projection", "-started_at"], name="events_run_recent_idx")]

    def __str__(self) -> str:
        return f"{self.projection} rebuild {self.started_at:%Y-%m-%d %H:%M} {self.result}"


class LogVerification(models.Model):
    """One walk of every hash chain (command, hourly task, "Verify now") and what it found."""

    # /readyz and the admin report the latest of these: walking the log on every probe would
    # read all of it.

    class Result(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        PROBLEM = "problem", "Problem found"
        # The walk itself failed (database error, time limit): it says nothing about the log.
        FAILED = "failed"

    source = models.CharField(max_length=100, help_text="What ran it: command, schedule, admin (user).")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    events_checked = models.BigIntegerField(default=0, help_text="Events found intact before it stopped.")
    streams_checked = models.BigIntegerField(default=0)
    result = models.CharField(max_length=20, choices=Result.choices, default=Result.RUNNING)
    problem_position = models.BigIntegerField(
        null=True, blank=True, help_text="Position of the first bad event."
    )
    first_problem = models.TextField(blank=True, help_text="The first bad event and what is wrong with it.")
    seals_checked = models.BigIntegerField(
        default=0, help_text="Seals recomputed from the log and found intact."
    )
    events_unsealed = models.BigIntegerField(
        default=0, help_text="Events past the newest seal: only their stream chains cover them yet."
    )
    # The seal head: compare it with a copy kept elsewhere (the logs, an export) to detect the
    # newest seals removed together with the events they covered, which nothing in the
    # database can show. The next verification also checks that this seal is still there.
    seal_end_position = models.BigIntegerField(
        null=True, blank=True, help_text="Last position covered by the newest seal when it finished."
    )
    seal_hash = models.CharField(max_length=64, blank=True, help_text="Hash of that seal.")

    class Meta:
        default_permissions = ("view",)  # written only by the verification itself
        indexes = [models.Index(fields=["-started_at"], name="events_verification_recent_idx")]

    def __str__(self) -> str:
        return f"log verification {self.started_at:%Y-%m-%d %H:%M} {self.result}"


class LogSeal(models.Model):
    """A checkpoint over a range of positions that makes the whole log tamper-evident (invariant 4).

    Seals are written after the events they cover have committed (events.sealing), so appends
    never wait for them; like the event table, the database refuses UPDATE and DELETE here.
    """

    after_position = models.BigIntegerField(
        unique=True, db_comment="The previous seal's end_position (0 for the first): the range is after it."
    )
    end_position = models.BigIntegerField(unique=True, db_comment="Last position covered, inclusive.")
    events = models.BigIntegerField(db_comment="How many events the range held when it was sealed.")
    previous_hash = models.CharField(
        max_length=64, blank=True, db_comment="The previous seal's hash (empty for the first)."
    )
    hash = models.CharField(
        max_length=64,
        db_comment="SHA-256 over previous_hash, the range and (position, stream, version, hash) of"
        " every event in it, in position order (events.chain.SealHasher).",
    )
    sealed_at = models.DateTimeField(auto_now_add=True, db_comment="When it was written (not hashed).")

    class Meta:
        default_permissions = ("view",)  # written only by the sealing service

    def __str__(self) -> str:
        return f"seal {self.pk} over positions {self.after_position + 1} to {self.end_position}"
