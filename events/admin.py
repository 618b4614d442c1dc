"""Admin of the event store: the event log (read-only for everyone) and the projections' runs and status.

The event log is the record of every change, so nobody edits it here: not even superusers
get add, change or delete, and the database would refuse UPDATE and DELETE anyway
(migration 0002). Every page stays fast on a log of millions of events: no COUNT(*) over
the table, no DISTINCT over a column without an index, no facet counts.
"""

import datetime as dt
import json
import uuid
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Max, Q, QuerySet
from django.db.models.fields.json import KT
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from events.chain import chain_hash, row_body
from events.labelling import stream_labels
from events.models import Event, LogVerification, ProjectionRun
from events.projections import UnknownProjection, projection_get
from events.runner import projection_status_list
from events.selectors import head_position
from events.tasks import events_verify_task, projection_rebuild_task
from events.timefmt import readable
from events.verification import log_verification_latest
from project.celery import TaskNotQueued, enqueue

# ------------------------------------------------------------------------------
# Event log: pagination without COUNT(*)
# ------------------------------------------------------------------------------

# The planner's own row estimate for the event table: reltuples per page (as of the last
# VACUUM/ANALYZE) times the table's current size in pages, which follows appends made since.
# NULL when the table was never analysed. The table name is Event._meta.db_table.
POSTGRESQL_ESTIMATED_EVENTS = """
    SELECT CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN NULL
                ELSE c.reltuples / c.relpages
                     * (pg_relation_size(c.oid) / current_setting('block_size')::bigint)
           END
    FROM pg_class c
    WHERE c.oid = to_regclass('events_event')
"""


class EventLogPaginator(Paginator):
    """Pages of the log that never count the whole table.

    COUNT(*) on PostgreSQL reads every row (MVCC has no stored row count): seconds per page
    load on a log of millions of events. So:

    * the unfiltered log on PostgreSQL is counted by the planner's estimate (pg_class), once
      the table is big enough for an exact count to hurt (`estimate_from`); every page stays
      reachable, the last one may be a little short or empty;
    * everything else (filtered or searched lists, SQLite) is counted exactly up to
      `exact_up_to` rows and no further (COUNT over a LIMITed subquery), so a filter that
      matches most of the log costs at most that many rows; pages after the cap are reached
      by narrowing (date, stream, type) or by sorting the other way.

    The pagination template says which: "about N", "more than N", or an exact N.
    """

    exact_up_to = 10_000
    estimate_from = 100_000
    count_is_estimate = False
    count_is_capped = False

    @cached_property
    def count(self) -> int:
        events: QuerySet[Event] = self.object_list  # type: ignore[assignment]  # the admin passes a QuerySet
        if connection.vendor == "postgresql" and not events.query.where:
            estimate = _estimated_event_count()
            if estimate is not None and estimate >= self.estimate_from:
                self.count_is_estimate = True
                return estimate
        # Unordered: any `exact_up_to + 1` matching rows prove the cap is passed, and without
        # the ORDER BY PostgreSQL can stop scanning as soon as it has found them.
        counted = events.order_by()[: self.exact_up_to + 1].count()
        if counted > self.exact_up_to:
            self.count_is_capped = True
            return self.exact_up_to
        return counted


def _estimated_event_count() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(POSTGRESQL_ESTIMATED_EVENTS)
        row = cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])


# ------------------------------------------------------------------------------
# Event log: filters
# ------------------------------------------------------------------------------

# The distinct event types by a "loose index scan": each step is one seek in the
# (type, position) index for the next type after the previous one, so the cost grows with
# the number of types, not of events (a plain SELECT DISTINCT would read the whole index).
EVENT_TYPES = """
    WITH RECURSIVE seen(type) AS (
        SELECT MIN("type") FROM events_event
        UNION ALL
        SELECT (SELECT MIN("type") FROM events_event WHERE "type" > seen.type)
        FROM seen WHERE seen.type IS NOT NULL
    )
    SELECT type FROM seen WHERE type IS NOT NULL LIMIT %s
"""
MAX_EVENT_TYPES = 200


def _event_types() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(EVENT_TYPES, [MAX_EVENT_TYPES])
        return [row[0] for row in cursor.fetchall()]


def _recent_metadata_values(key: str, *, limit: int = 50, window: int = 10_000) -> list[str]:
    """The distinct values of `metadata[key]` among the newest `window` events, newest first.

    Metadata keys have no index, so a DISTINCT over the whole log would read every row. This
    groups only the events in the last `window` positions (a primary-key range) in the
    database and returns at most `limit` values: bounded work on any log size, at the price
    of not offering values used only in older events (a filter URL with one still works).
    """
    recent = (
        Event.objects.filter(position__gt=head_position() - window)
        .annotate(value=KT(f"metadata__{key}"))
        .values("value")
        .annotate(newest=Max("position"))
        .order_by("-newest")
    )
    # Two more rows than needed, for the groups of events without the key (None) or with "".
    return [row["value"] for row in recent[: limit + 2] if row["value"]][:limit]


class _ChoiceFilter(admin.SimpleListFilter):
    """A filter whose current value is always among its choices, so it is shown and applied
    even when the choices on offer (bounded) do not include it."""

    def choices_on_offer(self) -> list[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        choices = self.choices_on_offer()
        current = self.value()
        if current and current not in choices:
            choices = [current, *choices]
        return [(choice, choice) for choice in choices]


class EventTypeFilter(_ChoiceFilter):
    title = "type"
    parameter_name = "type"

    def choices_on_offer(self) -> list[str]:
        return _event_types()

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        return queryset.filter(type=self.value()) if self.value() else queryset


class MetadataFilter(_ChoiceFilter):
    """Events whose metadata has one value for `parameter_name` (actor, source)."""

    def choices_on_offer(self) -> list[str]:
        return _recent_metadata_values(str(self.parameter_name))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        if not self.value():
            return queryset
        return queryset.filter(**{f"metadata__{self.parameter_name}": self.value()})


class SourceFilter(MetadataFilter):
    title = "source"
    parameter_name = "source"


class ActorFilter(MetadataFilter):
    title = "actor (50 most recent)"
    parameter_name = "actor"


class StreamFilter(admin.SimpleListFilter):
    """`?stream_id=<uuid>`: one stream's events (the links in the stream column lead here)."""

    title = "agent (stream)"
    parameter_name = "stream_id"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        # Only the stream asked for: listing every stream would mean a DISTINCT over the log.
        stream = self.value()
        return [(stream, stream)] if stream else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        if not self.value():
            return queryset
        try:
            stream_id = uuid.UUID(self.value())
        except ValueError as error:  # the changelist answers with its "?e=1" page, not a 500
            raise IncorrectLookupParameters(f"not a stream id: {self.value()!r}") from error
        return queryset.filter(stream_id=stream_id)


# ------------------------------------------------------------------------------
# Event log
# ------------------------------------------------------------------------------


def _pretty_json(value: Any) -> SafeString:
    # format_html escapes the text: event data is user content (agent bodies may hold HTML).
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def _stream_url(stream_id: uuid.UUID) -> str:
    return reverse("admin:events_event_changelist") + "?" + urlencode({"stream_id": str(stream_id)})


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """The event log, read-only: list, filters, search, and each event with its hash chain link."""

    # Six columns, so that the list fits beside the navigation and the filters at 1,400 px:
    # the stream's version and the source sit under the agent and the actor.
    list_display = [
        "position",
        "type",
        "stream",
        "actor",
        "reason",
        "recorded",
    ]
    list_display_links = ["position"]
    # Only orders an index serves: any other would sort the whole log for each page.
    sortable_by = ["position", "recorded"]
    ordering = ["-position"]
    # A date list filter, not date_hierarchy: the hierarchy runs a DISTINCT over the dates
    # of every event on each page load; the list filter's ranges use the recorded_at index.
    list_filter = [
        EventTypeFilter,
        SourceFilter,
        ActorFilter,
        ("recorded_at", admin.DateFieldListFilter),
        StreamFilter,
    ]
    search_fields = ["event_id", "stream_id", "metadata__reason"]  # see get_search_results
    search_help_text = "An event id or a stream id (exact), or words from the reason."
    list_per_page = 100
    paginator = EventLogPaginator
    show_full_result_count = False  # would COUNT(*) the whole log
    show_facets = admin.ShowFacets.NEVER  # a COUNT per choice of every filter
    view_on_site = False
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "position",
                    "event_id",
                    "stream_link",
                    "stream_version",
                    "type",
                    "schema_version",
                    "recorded_at_text",
                    "occurred",
                    "actor_text",
                    "source",
                    "reason_text",
                ]
            },
        ),
        ("Payload", {"fields": ["data_json", "metadata_json"]}),
        ("Hash chain", {"fields": ["hash", "previous_hash", "chain_check"]}),
    ]
    readonly_fields = [str(field) for _, options in fieldsets for field in options["fields"]]
    # Filters are the ones above: without this list any column lookup could be put in the
    # URL (?data__content__icontains=...), a full scan of every payload on each page load.
    allowed_lookups = frozenset(
        {"type", "source", "actor", "stream_id", "recorded_at__gte", "recorded_at__lt"}
    )

    # --- nobody writes here -------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # --- list ---------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        # A page of 100 events could otherwise load 100 full agent definitions it never shows;
        # the detail page loads `data` when it needs it.
        return super().get_queryset(request).defer("data")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup in self.allowed_lookups

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        # An id is looked up exactly (both columns are indexed); other text searches reasons.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            identifier = uuid.UUID(term)
        except ValueError:
            return queryset.filter(metadata__reason__icontains=term), False
        return queryset.filter(Q(event_id=identifier) | Q(stream_id=identifier)), False

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        # Each stream's name and page, for the whole page of events in one query per labeller
        # (events.labelling), not one per row.
        events = list(changelist.result_list)
        labels = stream_labels({event.stream_id for event in events})
        for event in events:
            event.stream_label = labels.get(event.stream_id)
        changelist.result_list = events
        return changelist

    @admin.display(description="agent (stream)")
    def stream(self, event: Event) -> SafeString:
        label = getattr(event, "stream_label", None)
        if label is None:
            return format_html(
                '<a href="{}" title="{}: all events of this stream"><code>{}</code></a>',
                _stream_url(event.stream_id),
                event.stream_id,
                str(event.stream_id)[:8],
            )
        name, url = label
        return format_html(
            '<a href="{}" title="the page of {}">{}</a><br><small>version {} · <a href="{}" title="{}:'
            ' all events of this stream">its events</a></small>',
            url,
            name,
            name,
            event.stream_version,
            _stream_url(event.stream_id),
            event.stream_id,
        )

    @admin.display(description="recorded", ordering="recorded_at")
    def recorded(self, event: Event) -> SafeString:
        # Date and time on two lines: the column stays narrow, the zone stays with the time.
        day, time_of_day = readable(event.recorded_at).split(" ", 1)
        return format_html("{}<br>{}", day, time_of_day)

    @admin.display(description="actor (source)")
    def actor(self, event: Event) -> SafeString:
        return format_html(
            "{}<br><small>{}</small>", event.metadata.get("actor", ""), event.metadata.get("source", "")
        )

    @admin.display(description="source")
    def source(self, event: Event) -> str:
        return str(event.metadata.get("source", ""))

    @admin.display(description="reason")
    def reason(self, event: Event) -> str:
        return Truncator(str(event.metadata.get("reason", ""))).chars(60)

    # --- detail -------------------------------------------------------------------------

    @admin.display(description="recorded at")
    def recorded_at_text(self, event: Event) -> str:
        return readable(event.recorded_at)

    @admin.display(description="occurred at")
    def occurred(self, event: Event) -> str:
        """The change's business time (metadata occurred_at: a git commit's landing), which
        time travel reads; an auditor compares it with when the log stored the event."""
        occurred = event.metadata.get("occurred_at")
        if not isinstance(occurred, str):
            return "as recorded (the change was made when it was stored)"
        try:
            return readable(dt.datetime.fromisoformat(occurred))
        except ValueError:
            return occurred

    @admin.display(description="stream")
    def stream_link(self, event: Event) -> SafeString:
        label = stream_labels([event.stream_id]).get(event.stream_id)
        events = format_html(
            '<a href="{}">{}</a> (all events of this stream)', _stream_url(event.stream_id), event.stream_id
        )
        if label is None:
            return events
        return format_html('<a href="{}">{}</a> · {}', label[1], label[0], events)

    @admin.display(description="actor")
    def actor_text(self, event: Event) -> str:
        return str(event.metadata.get("actor", ""))

    @admin.display(description="reason")
    def reason_text(self, event: Event) -> str:
        return str(event.metadata.get("reason", ""))

    @admin.display(description="data (as stored)")
    def data_json(self, event: Event) -> SafeString:
        return _pretty_json(event.data)

    @admin.display(description="metadata")
    def metadata_json(self, event: Event) -> SafeString:
        return _pretty_json(event.metadata)

    def _previous(self, event: Event) -> Event | None:
        if event.stream_version <= 1:
            return None
        return (
            Event.objects.filter(stream_id=event.stream_id, stream_version=event.stream_version - 1)
            .only("hash")
            .first()
        )

    @admin.display(description="previous hash in the stream")
    def previous_hash(self, event: Event) -> str:
        if event.stream_version <= 1:
            return "none: the first event of its stream chains from the empty string"
        previous = self._previous(event)
        return previous.hash if previous else f"missing: the stream has no version {event.stream_version - 1}"

    @admin.display(description="hash check")
    def chain_check(self, event: Event) -> str:
        """The stored hash against the one recomputed from this row and the previous hash."""
        previous = self._previous(event)
        if event.stream_version > 1 and previous is None:
            return "cannot check: the previous event of the stream is missing"
        recomputed = chain_hash(previous.hash if previous else "", row_body(event))
        if recomputed == event.hash:
            return "ok: the stored hash matches this event and the previous hash"
        return f"MISMATCH: recomputed {recomputed}; run `manage.py verify_events` for the whole log"


# ------------------------------------------------------------------------------
# Projections: rebuild runs and the status page (staff)
# ------------------------------------------------------------------------------


@admin.register(ProjectionRun)
class ProjectionRunAdmin(admin.ModelAdmin):
    """Rebuild runs (read-only) and, at status/, each projection's lag with a rebuild button.

    Open to all staff, as the /api/v1/projections/ endpoints are: operators watch lag and
    rebuild; a rebuild changes no data, it replays the log into the same view.
    """

    list_display = [
        "projection",
        "started_at",
        "finished_at",
        "events",
        "verified",
        "result",
        "detail_summary",
    ]
    list_filter = ["projection", "result", "verified"]
    ordering = ["-started_at"]
    fields = ("projection", "started_at", "finished_at", "events", "verified", "result", "detail_text")
    readonly_fields = fields
    view_on_site = False

    def has_view_permission(self, request: HttpRequest, obj: ProjectionRun | None = None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ProjectionRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ProjectionRun | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="detail")
    def detail_summary(self, run: ProjectionRun) -> str:
        return Truncator(run.detail).chars(80)

    @admin.display(description="detail")
    def detail_text(self, run: ProjectionRun) -> SafeString:
        return format_html("<pre>{}</pre>", run.detail) if run.detail else SafeString("")

    def get_urls(self) -> list:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        status = path("status/", self.admin_site.admin_view(self.status_view), name=f"{prefix}_status")
        verify = path("status/verify/", self.admin_site.admin_view(self.verify_view), name=f"{prefix}_verify")
        # Before the default ones, whose "<path:object_id>/" would take "status/" for an id.
        return [status, verify, *super().get_urls()]

    def status_view(self, request: HttpRequest) -> HttpResponse:
        """GET: each projection's checkpoint, lag and last run. POST: queue a rebuild of one."""
        # admin_view has already sent anyone who is not active staff to the login page and
        # checked the CSRF token of a POST.
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self._queue_rebuild(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "POST"])
        context = {
            **self.admin_site.each_context(request),
            "title": "Projection status",
            "opts": self.opts,
            "statuses": projection_status_list(),
            "runs_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"),
            # The stored outcome of the last walk of the log: walking it here would read all of it.
            "verification": log_verification_latest(),
            "newest_verification": log_verification_latest(finished=False),
            "verifications_url": reverse("admin:events_logverification_changelist"),
        }
        return TemplateResponse(request, "admin/events/projectionrun/status.html", context)

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        """POST: queue a walk of every hash chain ("Verify now"); its outcome shows on the status page."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "POST":  # a GET must not start a read of the whole log
            return HttpResponseNotAllowed(["POST"])
        source = f"admin ({request.user.get_username()})"
        # After commit, and in the embedded mode on a background thread, not in this request
        # (project.celery.enqueue); a broker that is down is told, not a server error.
        try:
            enqueue(events_verify_task, source=source)
        except TaskNotQueued as exc:
            self.message_user(request, f"Nothing was queued: {exc}. Try again shortly.", messages.ERROR)
        else:
            self.message_user(
                request,
                "A verification of the event log was queued; its result shows here once it finishes.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_status"))

    def _queue_rebuild(self, request: HttpRequest) -> HttpResponse:
        name = request.POST.get("projection", "")
        back = HttpResponseRedirect(request.path)
        try:
            projection_get(name)
        except UnknownProjection:
            self.message_user(
                request, f"There is no projection named {name!r}; nothing was queued.", messages.ERROR
            )
            return back

        # After commit (a worker must not start on a request whose transaction could still roll
        # back), and in the embedded mode on a background thread: the page answers at once and
        # a failed rebuild shows as a failed run. A broker that is down is told, not a 500.
        try:
            enqueue(projection_rebuild_task, name, verify=True)
        except TaskNotQueued as exc:
            self.message_user(request, f"Nothing was queued: {exc}. Try again shortly.", messages.ERROR)
            return back
        self.message_user(
            request,
            f"A rebuild of {name} (with verification) was queued; its run is listed below once it starts.",
            messages.SUCCESS,
        )
        return back


@admin.register(LogVerification)
class LogVerificationAdmin(admin.ModelAdmin):
    """Every walk of the hash chains and its outcome, read-only; staff, like the projection runs."""

    columns: tuple[str, ...] = (
        "started_at",
        "finished_at",
        "source",
        "result",
        "events_checked",
        "streams_checked",
        "seals_checked",
        "events_unsealed",
        "problem_position",
    )
    list_display = columns
    list_filter = ["result"]
    ordering = ["-started_at"]
    detail: tuple[str, ...] = (*columns, "first_problem", "seal_end_position", "seal_hash")
    fields = readonly_fields = detail
    view_on_site = False

    def has_view_permission(self, request: HttpRequest, obj: LogVerification | None = None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LogVerification | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: LogVerification | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions
