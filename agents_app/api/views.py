"""REST API v1 (API.md). Views are thin: they parse the request, call one service or selector,
and shape the answer; every error leaves through agents_app.api.errors as a problem body.
"""

import datetime as dt
import hashlib
import re
import uuid
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpResponse, HttpResponsePermanentRedirect
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotAcceptable
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents_app import event_types as agent_event_types
from agents_app import services
from agents_app.api import serializers as out
from agents_app.api.errors import (
    PROBLEM_CONTENT_TYPE,
    ApiProblem,
    InvalidParameter,
    PreconditionRequired,
    ProblemAutoSchema,
    problem,
)
from agents_app.api.permissions import ARCHIVE, AUDIT, CHANGE, PUBLISH, VIEW, IsStaff, OperationPermission
from agents_app.api.renderers import (
    HTMLFragmentRenderer,
    MarkdownParser,
    MarkdownRenderer,
    ProblemJSONRenderer,
    UnifiedDiffRenderer,
)
from agents_app.blame import BlameRevision, blame
from agents_app.diff import DiffSide, html_diff, revision_diff, unified_diff
from agents_app.document import NAME_PATTERN
from agents_app.document_edit import document_patch
from agents_app.exceptions import AgentNotFound
from agents_app.models import AgentCurrent, IdempotencyRecord
from agents_app.selectors import (
    agent_find_renamed,
    agent_get,
    agent_list,
    agent_list_at,
    agent_revisions,
    agents_current,
    label_history,
    parse_instant,
    revision_get,
    revision_list,
    revision_pair,
    revision_resolve,
)
from events.exceptions import ConcurrencyConflict
from events.models import ProjectionRun
from events.projections import UnknownProjection, projection_get
from events.runner import (
    projection_status_list,
    projections_failing,
    projections_wait,
)
from events.selectors import event_get, event_list, event_previous_hash, head_position, stream_last
from events.services import append_lock
from events.tasks import projection_rebuild_task
from events.verification import log_verification_latest
from project.middleware import REQUEST_ID

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
ETAG = re.compile(r'\s*(W/)?"?(\d{1,9})"?\s*')
DEFAULT_PAGE = 100
MAX_PAGE = 1000


# ----------------------------------------------------------------------------------------------
# Shared request handling
# ----------------------------------------------------------------------------------------------
class PreconditionFailed(ApiProblem):
    def __init__(self, *, agent: AgentCurrent, expected: int) -> None:
        last = stream_last(stream_id=agent.agent_id, types=agent_event_types.ALL)
        changed_by = last.metadata.get("actor", "") if last else agent.updated_by
        # The version and revision from the log, not the view: the view may not have applied the
        # change that made the request stale yet, and a client retrying with the view's version
        # would only get another 412 (tests/reliability/test_faults.py).
        version = last.stream_version if last else agent.stream_version
        revision = agent.revision
        if last is not None and last.type in agent_event_types.CONTENT_EVENTS:
            revision = last.data["revision"]
        super().__init__(
            status_code=412,
            code="stale-version",
            title="The agent changed since you read it",
            detail=f"agent {agent.name!r} is at version {version}, not {expected}; "
            f"last changed by {changed_by}",
            current_version=version,
            current_revision=revision,
            changed_by=changed_by,
            changed_at=(last.recorded_at if last else agent.updated_at).isoformat(),
            change=last.type if last else None,
        )


def _sane_id(value: str | None) -> str | None:
    """A caller-supplied id, if it is short and plain (it goes into the log and the events)."""
    return value if value is not None and REQUEST_ID.fullmatch(value) else None


class Renamed(Exception):  # control flow, not an error: answered with a 301
    def __init__(self, agent: AgentCurrent) -> None:
        self.agent = agent


class ApiView(APIView):
    """Base of every API view: problem bodies for errors, the caller's change context, ETags."""

    permission_classes = [OperationPermission]
    permissions: dict[str, str] = {}
    schema = ProblemAutoSchema()

    # True while a write runs inside the Idempotency-Key's transaction: an error raised while
    # answering it rolls the write back.
    answering_inside_the_write = False

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttling first
        # PostgreSQL text cannot hold NUL: a filter with one would fail in the database (a 500)
        # instead of matching nothing.
        for name, values in request.query_params.lists():
            if any("\x00" in value for value in values):
                raise InvalidParameter(name, "contains a NUL character")

    def perform_content_negotiation(self, request, force=False):
        try:
            return super().perform_content_negotiation(request, force)
        except Exception:  # an unknown ?format= is Http404 in DRF: it is really a 406
            if force:
                return (JSONRenderer(), "application/json")
            formats = ", ".join(renderer.format for renderer in self.get_renderers())
            raise NotAcceptable(
                f"cannot answer in the requested format; this endpoint offers {formats}"
            ) from None

    def handle_exception(self, exc):
        if isinstance(exc, Renamed):
            return self._redirect_to(exc.agent)
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code >= 400 and isinstance(response, Response):
            # Errors are problem JSON whatever the client asked for (the raw-file renderer
            # could not render them anyway).
            response.accepted_renderer = ProblemJSONRenderer()
            response.accepted_media_type = PROBLEM_CONTENT_TYPE
            response["Content-Type"] = PROBLEM_CONTENT_TYPE
        return response

    def _redirect_to(self, agent: AgentCurrent) -> HttpResponsePermanentRedirect:
        old = self.kwargs["name"]
        path = self.request.path.replace(f"/agents/{old}/", f"/agents/{agent.name}/", 1)
        query = self.request.META.get("QUERY_STRING", "")
        return HttpResponsePermanentRedirect(path + (f"?{query}" if query else ""))

    # -- reading the request -------------------------------------------------------------------
    def agent(self) -> AgentCurrent:
        """The agent named in the URL: the active one, else an archived one, else a 301 if renamed."""
        name = self.kwargs["name"]
        if not NAME_PATTERN.fullmatch(name):
            raise AgentNotFound(f"no agent named {name!r}")
        try:
            return agent_get(name=name)
        except AgentNotFound:
            renamed = agent_find_renamed(name=name)
            if renamed is None:
                raise
            raise Renamed(renamed) from None

    def change_context(self, reason: str) -> services.ChangeContext:
        request_id = getattr(self.request._request, "request_id", None)
        return services.ChangeContext(
            actor=self.request.user.get_username(),  # never from the body: invariant of the audit log
            source="api",
            reason=reason,
            request_id=request_id,
            correlation_id=_sane_id(self.request.headers.get("X-Correlation-ID")) or request_id,
        )

    def expected_version(self, *, body_version: int | None, required: bool) -> int | None:
        header = self.request.headers.get("If-Match")
        if header is None:
            if body_version is None and required:
                raise PreconditionRequired()
            return body_version
        if header.strip() == "*":
            return None
        versions = []
        for part in header.split(","):
            match = ETAG.fullmatch(part)
            if match is None or match.group(1):
                raise InvalidParameter("If-Match", f'{header!r} is not a strong ETag such as "3"')
            versions.append(int(match.group(2)))
        if len(versions) > 1:
            raise InvalidParameter("If-Match", "send one ETag: the version you read")
        return versions[0]

    def query_int(self, name: str, *, default: int, low: int, high: int) -> int:
        raw = self.request.query_params.get(name)
        if raw is None or raw == "":
            return default
        # Length first: int() of thousands of digits is slow, and past 4300 a ValueError (a 500).
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or not low <= int(raw) <= high:
            raise InvalidParameter(name, f"must be a whole number from {low} to {high}")
        return int(raw)

    def query_time(self, name: str) -> dt.datetime | None:
        raw = self.request.query_params.get(name)
        if not raw:
            return None
        try:
            return parse_instant(raw)
        except ValueError as exc:
            raise InvalidParameter(name, str(exc)) from None

    def query_choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.request.query_params.get(name) or default
        if value not in choices:
            raise InvalidParameter(name, f"must be one of {', '.join(choices)}")
        return value

    def validated(self, serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    # -- writing -------------------------------------------------------------------------------
    def idempotent(self, operation) -> Response:
        """Run a write once per `Idempotency-Key`: a retry with the same body gets the first answer."""
        key = self.request.headers.get("Idempotency-Key")
        if key is None:
            return operation()
        if not IDEMPOTENCY_KEY.fullmatch(key):
            raise InvalidParameter("Idempotency-Key", "must be 1 to 255 visible ASCII characters")
        raw = self.request._request.body  # read before DRF parses it, to fingerprint the exact bytes
        fingerprint = hashlib.sha256(
            b"\0".join(
                [
                    self.request.method.encode(),
                    self.request.path.encode(),
                    (self.request.content_type or "").encode("latin-1", "replace"),
                    raw,
                ]
            )
        ).hexdigest()
        cutoff = timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
        with transaction.atomic():
            # Under the append lock every write is serial, so two retries racing with the same
            # key cannot both miss the record and both store the change.
            append_lock()
            records = IdempotencyRecord.objects.filter(user=self.request.user, key=key)
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
            self.answering_inside_the_write = True
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
                    user=self.request.user,
                    key=key,
                    fingerprint=fingerprint,
                    status=response.status_code,
                    headers={k: v for k, v in response.items() if k in ("Location", "ETag", "Retry-After")},
                    body=response.data,
                )
        return response

    def write(self, operation) -> Response:
        """Run a command; a stale expected version becomes a 412 naming who changed the agent."""
        try:
            return operation()
        except ConcurrencyConflict as exc:
            agent = agent_get(agent_id=exc.stream_id)
            raise PreconditionFailed(agent=agent, expected=exc.expected_version) from None

    def status_change(self, service) -> Response:
        """Archive or restore the agent in the URL, with the reason from the body."""
        agent = self.agent()
        data = self.validated(ArchiveInputSerializer, self.request.data or {})
        change = service(
            agent_id=agent.agent_id,
            context=self.change_context(data["reason"]),
            expected_version=self.expected_version(body_version=None, required=False),
        )
        return self.agent_response(change.agent_id, stream_version=change.stream_version)

    def agent_response(self, agent_id, *, status_code: int = 200, stream_version: int) -> Response:
        """The agent after a write, as the writer must see it (read-your-writes)."""
        agent = agents_current().filter(agent_id=agent_id).first()
        if agent is None or agent.stream_version < stream_version:
            # The commit hook catches the views up before the service returns; inside an outer
            # transaction (Idempotency-Key) the hook waits for that commit, so catch up here.
            # Wait for it, not one try: while a worker or another request applies a batch it
            # holds the projection's checkpoint, a single catch-up skips it, and a create
            # answered 404 (and rolled back) although nothing was wrong
            # (tests/reliability/test_http_concurrency.py).
            projections_wait(position=head_position())
            agent = agents_current().filter(agent_id=agent_id).first()
        if agent is None or agent.stream_version < stream_version:
            # A 200 with the version before it would tell the client its change is not there.
            waited = settings.PROJECTION_WAIT_SECONDS
            failing = projections_failing()
            if failing:
                # A view that cannot apply the change will not catch up by waiting: the change
                # stays stored (also under an Idempotency-Key) and the answer says which view.
                raise ApiProblem(
                    status_code=503,
                    code="views-behind",
                    title="Not yet readable",
                    detail=f"the change is stored as version {stream_version}, but "
                    + "; ".join(
                        f"the view {name} failed on the event at position {position} ({error})"
                        for name, (position, error) in sorted(failing.items())
                    )
                    + "; operators see it at /api/v1/projections/",
                    headers={"Retry-After": "2"},
                    stored_version=stream_version,
                )
            if self.answering_inside_the_write:  # the Idempotency-Key's transaction: raising rolls it back
                detail = (
                    f"the views did not catch up with the change within {waited} s, so it was not stored;"
                    " retry with the same Idempotency-Key"
                )
                extra = {}
            else:
                detail = (
                    f"the change is stored as version {stream_version}, but the views had not caught up"
                    f" with it after {waited} s; read the agent again shortly"
                )
                extra = {"stored_version": stream_version}
            raise ApiProblem(
                status_code=503,
                code="views-behind",
                title="Not yet readable",
                detail=detail,
                headers={"Retry-After": "2"},
                **extra,
            )
        data = out.AgentOutputSerializer(out.agent_payload(agent)).data
        headers = {"ETag": f'"{agent.stream_version}"'}
        if status_code == 201:
            headers["Location"] = reverse("api:agent", kwargs={"name": agent.name})
        return Response(data, status=status_code, headers=headers)


def _document_from_request(request: Request) -> tuple[Any, dict[str, Any]]:
    """(content, rest of the JSON body) from a JSON body or a raw text/markdown one."""
    if isinstance(request.data, bytes):
        return request.data, {"reason": request.headers.get("X-Change-Reason", "")}
    if not isinstance(request.data, dict):
        raise serializers.ValidationError({"body": "send a JSON object or a text/markdown file"})
    return None, request.data


# ----------------------------------------------------------------------------------------------
# Agents
# ----------------------------------------------------------------------------------------------
class WriteInputSerializer(serializers.Serializer):
    content = out.TextField(trim_whitespace=False, help_text="The raw Markdown file.")
    reason = out.reason_field
    expected_version = out.WholeNumberField(required=False, min_value=0, max_value=2**31 - 1)


AGENT_EXAMPLE = "---\nname: code-reviewer\ndescription: Reviews diffs\ntools: Read, Grep\n---\nReview.\n"


class AgentsApi(ApiView):
    """`/agents/`: list (GET) and create (POST)."""

    permissions = {"GET": VIEW, "POST": CHANGE}
    parser_classes = [JSONParser, MarkdownParser]

    @extend_schema(
        operation_id="agents_list",
        parameters=[
            OpenApiParameter("q", str, description="Text in the name or description"),
            OpenApiParameter("model", str),
            OpenApiParameter("tool", str, description="Agents that declare this tool"),
            OpenApiParameter("status", str, enum=["active", "archived", "all"]),
            OpenApiParameter("label", str),
            OpenApiParameter("at", OpenApiTypes.DATETIME, description="The registry as it was then"),
            OpenApiParameter("after", str, description="Cursor: the `next` of the previous page"),
            OpenApiParameter("limit", int),
        ],
        responses={200: out.AgentPageSerializer},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        limit = self.query_int("limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        at = self.query_time("at")
        for name in ("q", "model", "tool", "label", "after"):
            if len(params.get(name, "")) > 200:
                raise InvalidParameter(name, "is longer than 200 characters")
        filters = {"q": params.get("q", ""), "model": params.get("model", ""), "tool": params.get("tool", "")}
        if at is not None:
            if params.get("label") or params.get("status"):
                raise InvalidParameter("at", "cannot be combined with label or status")
            rows = agent_list_at(at=at, **filters)
            serializer = out.AgentAtSerializer
        else:
            status = self.query_choice("status", ("active", "archived", "all"), "active")
            rows = agent_list(status=status, label=params.get("label", ""), **filters)
            serializer = out.AgentSummarySerializer
        after = params.get("after", "")
        if after:
            rows = rows.filter(name__gt=after)  # names sort the list; the cursor is the last name
        page = list(rows[: limit + 1])
        more = len(page) > limit
        page = page[:limit]
        next_url = None
        if more:
            query = params.copy()
            query["after"] = page[-1].name
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"results": serializer(page, many=True).data, "next": next_url})

    @extend_schema(
        operation_id="agents_create",
        request={"application/json": WriteInputSerializer, "text/markdown": OpenApiTypes.STR},
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
            OpenApiParameter("X-Change-Reason", str, OpenApiParameter.HEADER),
        ],
        responses={201: out.AgentOutputSerializer, 409: out.ProblemSerializer, 422: out.ProblemSerializer},
        examples=[OpenApiExample("create", value={"content": AGENT_EXAMPLE, "reason": "first version"})],
    )
    def post(self, request: Request) -> Response:
        def create() -> Response:
            content, fields = _document_from_request(request)
            if content is None:
                data = self.validated(WriteInputSerializer, fields)
                content, reason = data["content"], data["reason"]
            else:
                reason = self.validated(WriteInputSerializer, {"content": "-", **fields})["reason"]
            change = services.agent_create(content=content, context=self.change_context(reason))
            return self.agent_response(change.agent_id, status_code=201, stream_version=change.stream_version)

        return self.idempotent(create)


class PatchInputSerializer(serializers.Serializer):
    frontmatter = serializers.DictField(
        required=False,
        help_text="Keys to set; null removes a key (JSON merge patch). Keys not named keep their bytes.",
    )
    body = out.TextField(required=False, allow_blank=True, trim_whitespace=False)
    reason = out.reason_field
    expected_version = out.WholeNumberField(required=False, min_value=0, max_value=2**31 - 1)

    def validate(self, attrs):
        if "frontmatter" not in attrs and "body" not in attrs:
            raise serializers.ValidationError("send frontmatter keys and/or a body to change")
        return attrs


class ArchiveInputSerializer(serializers.Serializer):
    reason = out.reason_field


class AgentApi(ApiView):
    """`/agents/{name}/`: read (GET), replace (PUT), edit (PATCH), archive (DELETE)."""

    permissions = {"GET": VIEW, "PUT": CHANGE, "PATCH": CHANGE, "DELETE": ARCHIVE}
    parser_classes = [JSONParser, MarkdownParser]
    renderer_classes = [JSONRenderer, MarkdownRenderer]

    @extend_schema(
        operation_id="agents_read",
        parameters=[OpenApiParameter("ref", str, description="3, latest, a label, or @timestamp")],
        responses={
            (200, "application/json"): out.AgentOutputSerializer,
            (200, "text/markdown"): OpenApiTypes.STR,
            304: OpenApiResponse(description="Not modified (If-None-Match)"),
            404: out.ProblemSerializer,
        },
    )
    def get(self, request: Request, name: str) -> Response:
        agent = self.agent()
        ref = request.query_params.get("ref")
        shown = revision_resolve(agent=agent, ref=ref) if ref else None
        etag = f'"{agent.stream_version}"'
        if request.headers.get("If-None-Match") == etag and shown is None:
            return Response(status=304, headers={"ETag": etag})
        headers = {"ETag": etag}
        if request.accepted_renderer.format == "md":
            content = (shown or agent).content
            return Response(content.encode("utf-8"), headers=headers)
        if shown is None:  # the current row holds the latest revision's fields
            return Response(out.AgentOutputSerializer(out.agent_payload(agent)).data, headers=headers)
        return Response(out.AgentOutputSerializer(out.agent_payload(agent, shown)).data, headers=headers)

    @extend_schema(
        operation_id="agents_replace",
        request={"application/json": WriteInputSerializer, "text/markdown": OpenApiTypes.STR},
        parameters=[
            OpenApiParameter("If-Match", str, OpenApiParameter.HEADER, description='The ETag read, e.g. "3"'),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
            OpenApiParameter("X-Change-Reason", str, OpenApiParameter.HEADER),
        ],
        responses={
            200: out.AgentOutputSerializer,
            404: out.ProblemSerializer,
            409: out.ProblemSerializer,
            412: out.ProblemSerializer,
            422: out.ProblemSerializer,
            428: out.ProblemSerializer,
        },
    )
    def put(self, request: Request, name: str) -> Response:
        def replace() -> Response:
            agent = self.agent()
            content, fields = _document_from_request(request)
            if content is None:
                data = self.validated(WriteInputSerializer, fields)
                content = data["content"]
            else:
                data = self.validated(WriteInputSerializer, {"content": "-", **fields})
            expected = self.expected_version(body_version=data.get("expected_version"), required=True)
            change = services.agent_revise(
                agent_id=agent.agent_id,
                content=content,
                context=self.change_context(data["reason"]),
                expected_version=expected,
            )
            return self.agent_response(change.agent_id, stream_version=change.stream_version)

        return self.write(lambda: self.idempotent(replace))

    @extend_schema(
        operation_id="agents_edit",
        request=PatchInputSerializer,
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER)],
        responses={
            200: out.AgentOutputSerializer,
            404: out.ProblemSerializer,
            409: out.ProblemSerializer,
            412: out.ProblemSerializer,
            422: out.ProblemSerializer,
            428: out.ProblemSerializer,
        },
        examples=[
            OpenApiExample("change the model", value={"frontmatter": {"model": "opus"}, "reason": "x"})
        ],
    )
    def patch(self, request: Request, name: str) -> Response:
        def edit() -> Response:
            agent = self.agent()
            data = self.validated(PatchInputSerializer, request.data)
            expected = self.expected_version(body_version=data.get("expected_version"), required=True)
            frontmatter = data.get("frontmatter", {})
            content = document_patch(
                agent.content,
                set_keys={key: value for key, value in frontmatter.items() if value is not None},
                remove_keys=[key for key, value in frontmatter.items() if value is None],
                body=data.get("body"),
            )
            change = services.agent_revise(
                agent_id=agent.agent_id,
                content=content,
                context=self.change_context(data["reason"]),
                expected_version=expected,
            )
            return self.agent_response(change.agent_id, stream_version=change.stream_version)

        return self.write(edit)

    @extend_schema(
        operation_id="agents_archive",
        request=ArchiveInputSerializer,
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER)],
        responses={200: out.AgentOutputSerializer, 404: out.ProblemSerializer, 409: out.ProblemSerializer},
    )
    def delete(self, request: Request, name: str) -> Response:
        return self.write(lambda: self.status_change(services.agent_archive))


class AgentRestoreApi(ApiView):
    """`/agents/{name}/restore/`: undo an archive."""

    permissions = {"POST": ARCHIVE}

    @extend_schema(
        operation_id="agents_restore",
        request=ArchiveInputSerializer,
        parameters=[
            OpenApiParameter("If-Match", str, OpenApiParameter.HEADER),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
        ],
        responses={200: out.AgentOutputSerializer, 404: out.ProblemSerializer, 409: out.ProblemSerializer},
    )
    def post(self, request: Request, name: str) -> Response:
        return self.write(lambda: self.idempotent(lambda: self.status_change(services.agent_restore)))


class RevertInputSerializer(serializers.Serializer):
    to = serializers.CharField(
        max_length=100, help_text="The revision to go back to: 3, a label or @timestamp"
    )
    reason = out.reason_field


class AgentRevertApi(ApiView):
    """`/agents/{name}/revert/`: a new revision with an earlier revision's content."""

    permissions = {"POST": CHANGE}

    @extend_schema(
        operation_id="agents_revert",
        request=RevertInputSerializer,
        parameters=[
            OpenApiParameter("If-Match", str, OpenApiParameter.HEADER),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
        ],
        responses={
            200: out.AgentOutputSerializer,
            400: out.ProblemSerializer,
            404: out.ProblemSerializer,
            409: out.ProblemSerializer,
            412: out.ProblemSerializer,
        },
        examples=[OpenApiExample("revert", value={"to": "2", "reason": "r3 broke the reviews"})],
    )
    def post(self, request: Request, name: str) -> Response:
        def revert() -> Response:
            agent = self.agent()
            data = self.validated(RevertInputSerializer, request.data)
            target = revision_resolve(agent=agent, ref=data["to"])
            change = services.agent_revert(
                agent_id=agent.agent_id,
                to_revision=target.revision,
                context=self.change_context(data["reason"]),
                expected_version=self.expected_version(body_version=None, required=False),
            )
            return self.agent_response(change.agent_id, stream_version=change.stream_version)

        return self.write(lambda: self.idempotent(revert))


# ----------------------------------------------------------------------------------------------
# Revisions, diff, blame
# ----------------------------------------------------------------------------------------------
class RevisionListApi(ApiView):
    """`/agents/{name}/revisions/`: the history, oldest first, in pages."""

    permissions = {"GET": VIEW}

    @extend_schema(
        operation_id="revisions_list",
        parameters=[
            OpenApiParameter("after", int, description="Revisions after this one"),
            OpenApiParameter("limit", int),
        ],
        responses={200: out.RevisionPageSerializer, 404: out.ProblemSerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        agent = self.agent()
        after = self.query_int("after", default=0, low=0, high=10**9)
        limit = self.query_int("limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        rows = list(
            revision_list(agent_id=agent.agent_id).filter(revision__gt=after).defer("content")[: limit + 1]
        )
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            query = request.query_params.copy()
            query["after"] = str(rows[-1].revision)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response(
            {"results": out.RevisionSummarySerializer(rows, many=True).data, "next": next_url},
            headers={"ETag": f'"{agent.stream_version}"'},
        )


class RevisionApi(ApiView):
    """`/agents/{name}/revisions/{n}/`: one revision; `Accept: text/markdown` for the raw file."""

    permissions = {"GET": VIEW}
    renderer_classes = [JSONRenderer, MarkdownRenderer]

    @extend_schema(
        operation_id="revisions_read",
        responses={
            (200, "application/json"): out.RevisionDetailSerializer,
            (200, "text/markdown"): OpenApiTypes.STR,
            404: out.ProblemSerializer,
        },
    )
    def get(self, request: Request, name: str, revision: int) -> Response:
        agent = self.agent()
        if revision > agent.revision:
            raise AgentNotFound(
                f"agent {agent.name!r} has no revision {revision} (it has 1 to {agent.revision})"
            )
        row = revision_get(agent_id=agent.agent_id, revision=revision)
        headers = {"ETag": f'"{row.sha256}"', "Cache-Control": "private, max-age=3600"}  # immutable
        if request.accepted_renderer.format == "md":
            return Response(row.content.encode("utf-8"), headers=headers)
        return Response(out.RevisionDetailSerializer(row).data, headers=headers)


DIFF_RESPONSES = {
    (200, "application/json"): out.DiffOutputSerializer,
    (200, "text/x-diff"): OpenApiTypes.STR,
    (200, "text/html"): OpenApiTypes.STR,
    400: out.ProblemSerializer,
    404: out.ProblemSerializer,
}


def _diff_response(request: Request, old, new) -> Response:
    old_side, new_side = DiffSide.from_revision(old), DiffSide.from_revision(new)
    renderer = request.accepted_renderer.format
    if renderer == "unified":
        patch = unified_diff(old=old_side, new=new_side)
        if not patch:
            # Identical revisions: an empty patch. DRF drops the Content-Type of an empty body,
            # which would leave the client guessing; it is still (empty) text/x-diff.
            return HttpResponse(b"", content_type=f"{UnifiedDiffRenderer.media_type}; charset=utf-8")
        return Response(patch)
    if renderer == "html":
        return Response(html_diff(old=old_side, new=new_side))
    return Response(revision_diff(old=old_side, new=new_side))


class AgentDiffApi(ApiView):
    """`/agents/{name}/diff/?from=&to=`: two revisions of one agent."""

    permissions = {"GET": VIEW}
    renderer_classes = [JSONRenderer, UnifiedDiffRenderer, HTMLFragmentRenderer]

    @extend_schema(
        operation_id="agents_diff",
        parameters=[
            OpenApiParameter("from", str, description="Default: the revision before `to`"),
            OpenApiParameter("to", str, description="Default: latest"),
            OpenApiParameter("format", str, enum=["json", "unified", "html"]),
        ],
        responses=DIFF_RESPONSES,
    )
    def get(self, request: Request, name: str) -> Response:
        # Without `from`, the revision before `to`; before the first revision there is none: an
        # empty diff of it with itself, not an error.
        old, new = revision_pair(
            agent=self.agent(),
            from_ref=request.query_params.get("from"),
            to_ref=request.query_params.get("to"),
        )
        return _diff_response(request, old, new)


class CrossDiffApi(ApiView):
    """`/diff/?left=<name>@<ref>&right=<name>@<ref>`: revisions of two agents."""

    permissions = {"GET": VIEW}
    renderer_classes = [JSONRenderer, UnifiedDiffRenderer, HTMLFragmentRenderer]

    def _side(self, param: str):
        raw = self.request.query_params.get(param, "")
        name, _, ref = raw.partition("@")
        if not raw or not NAME_PATTERN.fullmatch(name):
            raise InvalidParameter(
                param, "must be <name>@<ref>, e.g. code-reviewer@3 (ref defaults to latest)"
            )
        agent = agent_get(name=name)
        return revision_resolve(agent=agent, ref=ref or "latest")

    @extend_schema(
        operation_id="diff_across_agents",
        parameters=[
            OpenApiParameter("left", str, required=True, description="name@ref, e.g. code-reviewer@3"),
            OpenApiParameter("right", str, required=True),
            OpenApiParameter("format", str, enum=["json", "unified", "html"]),
        ],
        responses=DIFF_RESPONSES,
    )
    def get(self, request: Request) -> Response:
        return _diff_response(request, self._side("left"), self._side("right"))


class AgentBlameApi(ApiView):
    """`/agents/{name}/blame/?ref=`: who last changed each body line and frontmatter key."""

    permissions = {"GET": VIEW}

    @extend_schema(
        operation_id="agents_blame",
        parameters=[OpenApiParameter("ref", str)],
        responses={200: OpenApiTypes.OBJECT, 404: out.ProblemSerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        agent = self.agent()
        target = revision_resolve(agent=agent, ref=request.query_params.get("ref") or "latest")
        history = revision_list(agent_id=agent.agent_id).filter(revision__lte=target.revision)
        result = blame([BlameRevision.from_revision(row) for row in history])
        return Response({"agent": agent.name, **result})


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------
class LabelInputSerializer(serializers.Serializer):
    revision = out.WholeNumberField(min_value=1, max_value=10**9)
    reason = out.reason_field


class LabelOutputSerializer(serializers.Serializer):
    agent = serializers.CharField()
    labels = serializers.DictField(child=serializers.IntegerField())
    stream_version = serializers.IntegerField()


class AgentLabelsApi(ApiView):
    """`/agents/{name}/labels/`: current labels and every move (addition to API.md)."""

    permissions = {"GET": VIEW}

    @extend_schema(
        operation_id="labels_list", responses={200: OpenApiTypes.OBJECT, 404: out.ProblemSerializer}
    )
    def get(self, request: Request, name: str) -> Response:
        agent = self.agent()
        history = [
            {
                "label": event.data["label"],
                "revision": event.data["revision"],
                "actor": event.metadata.get("actor", ""),
                "reason": event.metadata.get("reason", ""),
                "recorded_at": event.recorded_at.isoformat(),
                "stream_version": event.stream_version,
            }
            for event in label_history(agent_id=agent.agent_id)
        ]
        return Response({"agent": agent.name, "labels": agent.labels, "history": history})


class AgentLabelApi(ApiView):
    """`/agents/{name}/labels/{label}/`: move a label (PUT) or remove it (DELETE)."""

    permissions = {"PUT": PUBLISH, "DELETE": PUBLISH}

    def _move(self, revision: int | None, reason: str) -> Response:
        agent = self.agent()
        label = self.kwargs["label"]
        if not services.LABEL_PATTERN.fullmatch(label) or label in services.RESERVED_LABELS:
            # Checked here too so that the problem names the field: the service cannot know
            # the label came from the URL.
            message = (
                "must be lowercase letters, digits, '.', '_' or '-', starting with a letter, at most"
                f" 64 characters, and not 'latest'; got {label!r}"
            )
            raise ApiProblem(
                status_code=422,
                code="invalid-command",
                title="Invalid request",
                detail=f"label {message}",
                errors=[{"field": "label", "message": message}],
            )
        try:
            change = services.agent_label_move(
                agent_id=agent.agent_id,
                label=self.kwargs["label"],
                revision=revision,
                context=self.change_context(reason),
                expected_version=self.expected_version(body_version=None, required=False),
            )
        except ConcurrencyConflict as exc:
            raise PreconditionFailed(agent=agent, expected=exc.expected_version) from None
        response = self.agent_response(change.agent_id, stream_version=change.stream_version)
        body = {"agent": response.data["name"], "labels": response.data["labels"]}
        return Response(
            {**body, "stream_version": response.data["stream_version"]}, headers={"ETag": response["ETag"]}
        )

    @extend_schema(
        operation_id="labels_move",
        request=LabelInputSerializer,
        parameters=[
            OpenApiParameter("If-Match", str, OpenApiParameter.HEADER),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
        ],
        responses={200: LabelOutputSerializer, 404: out.ProblemSerializer, 409: out.ProblemSerializer},
    )
    def put(self, request: Request, name: str, label: str) -> Response:
        def move() -> Response:
            data = self.validated(LabelInputSerializer, request.data)
            return self._move(data["revision"], data["reason"])

        return self.idempotent(move)

    @extend_schema(
        operation_id="labels_remove",
        request=ArchiveInputSerializer,
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER)],
        responses={200: LabelOutputSerializer, 404: out.ProblemSerializer, 409: out.ProblemSerializer},
    )
    def delete(self, request: Request, name: str, label: str) -> Response:
        data = self.validated(ArchiveInputSerializer, request.data or {})
        return self._move(None, data["reason"])


# ----------------------------------------------------------------------------------------------
# Audit
# ----------------------------------------------------------------------------------------------
def _event_payload(event, *, include_content: bool) -> dict[str, Any]:
    data = event.data
    if not include_content and "content" in data:
        data = {key: value for key, value in data.items() if key != "content"}
    payload = {
        "position": event.position,
        "event_id": event.event_id,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "type": event.type,
        "schema_version": event.schema_version,
        "data": data,
        "metadata": event.metadata,
        "recorded_at": event.recorded_at,
        "hash": event.hash,
    }
    return payload


class EventListApi(ApiView):
    """`/events/`: the log, oldest first, by position."""

    permissions = {"GET": AUDIT}

    @extend_schema(
        operation_id="events_list",
        parameters=[
            OpenApiParameter("agent", str, description="Agent name (any name it had) or id"),
            OpenApiParameter("type", str, description="e.g. agent.revised; repeat or comma-separate"),
            OpenApiParameter("actor", str),
            OpenApiParameter("source", str),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter("after", int, description="Cursor: events after this position"),
            OpenApiParameter("limit", int),
            OpenApiParameter("include", str, enum=["content"]),
        ],
        responses={200: out.EventPageSerializer},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        after = self.query_int("after", default=0, low=0, high=2**62)
        limit = self.query_int("limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        include = self.query_choice("include", ("", "content"), "")
        stream_ids = None
        if agent_ref := params.get("agent"):
            stream_ids = _stream_ids_for(agent_ref)
        types = [t for value in params.getlist("type") for t in value.split(",") if t] or None
        events = event_list(
            after=after,
            limit=limit + 1,
            stream_ids=stream_ids,
            types=types,
            actor=params.get("actor"),
            source=params.get("source"),
            since=self.query_time("since"),
            until=self.query_time("until"),
        )
        next_url = None
        if len(events) > limit:
            events = events[:limit]
            query = params.copy()
            query["after"] = str(events[-1].position)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        results = [_event_payload(event, include_content=include == "content") for event in events]
        return Response({"results": out.EventSerializer(results, many=True).data, "next": next_url})


def _stream_ids_for(agent_ref: str) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(agent_ref)]
    except ValueError:
        pass
    if not NAME_PATTERN.fullmatch(agent_ref):
        raise InvalidParameter("agent", "must be an agent name or id")
    return list(agent_revisions().filter(name=agent_ref).values_list("agent_id", flat=True).distinct())


class EventApi(ApiView):
    """`/events/{position}/`: one event with its hash and the previous hash of its stream."""

    permissions = {"GET": AUDIT}

    @extend_schema(
        operation_id="events_read", responses={200: out.EventDetailSerializer, 404: out.ProblemSerializer}
    )
    def get(self, request: Request, position: int) -> Response:
        event = event_get(position=position) if position < 2**63 else None
        if event is None:
            raise AgentNotFound(f"no event at position {position}")
        payload = _event_payload(event, include_content=True)
        payload["previous_hash"] = event_previous_hash(
            stream_id=event.stream_id, stream_version=event.stream_version
        )
        return Response(out.EventDetailSerializer(payload).data)


# ----------------------------------------------------------------------------------------------
# Operations
# ----------------------------------------------------------------------------------------------
class ProjectionListApi(ApiView):
    """`/projections/` (staff): checkpoints, lag and the last rebuild of each projection."""

    permission_classes = [IsStaff]

    @extend_schema(operation_id="projections_list", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        results = []
        for status in projection_status_list():
            results.append(
                {
                    "name": status.name,
                    "generation": status.generation,
                    "position": status.checkpoint,
                    "head_position": status.head,
                    "lag_events": status.lag_events,
                    "lag_seconds": status.lag_seconds,
                    "failed_position": status.failed_position,
                    "failed_error": status.failed_error or None,
                    "last_run": _run_payload(status.last_run),
                }
            )
        return Response({"results": results})


def _run_payload(run: ProjectionRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "verified": run.verified,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "events": run.events,
        "result": run.result,
        "detail": run.detail,
    }


class ProjectionRebuildApi(ApiView):
    """`/projections/{name}/rebuild/` (staff): 202, a rebuild (with verification) is queued."""

    permission_classes = [IsStaff]

    @extend_schema(
        operation_id="projections_rebuild",
        request=None,
        responses={202: OpenApiTypes.OBJECT, 404: out.ProblemSerializer},
    )
    def post(self, request: Request, name: str) -> Response:
        try:
            projection_get(name)
        except UnknownProjection:
            raise AgentNotFound(f"no projection named {name!r}") from None
        transaction.on_commit(lambda: projection_rebuild_task.delay(name, verify=True))
        return Response(
            {"projection": name, "queued": True, "status": reverse("api:projections")}, status=202
        )


class ProbeSchema(AutoSchema):
    """project/urls.py routes the probes at the root too, for orchestrators; the schema
    documents the /api/v1/ copies only (the same operation twice would clash)."""

    def is_excluded(self) -> bool:
        return not self.path.startswith("/api/")


class HealthApi(APIView):
    """`/healthz`: the process answers."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []
    schema = ProbeSchema()

    @extend_schema(operation_id="healthz", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyApi(APIView):
    """`/readyz`: the database answers, the broker too if one is configured, the views keep up, and
    the latest verification of the hash chains found no tampering."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []
    schema = ProbeSchema()

    @extend_schema(operation_id="readyz", responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        checks: dict[str, dict[str, Any]] = {}
        try:
            statuses = projection_status_list()  # also proves the database answers
            checks["database"] = {"ok": True}
            worst = max((status.lag_events for status in statuses), default=0)
            checks["projections"] = {
                "ok": worst <= settings.READY_MAX_LAG_EVENTS,
                "lag_events": {status.name: status.lag_events for status in statuses},
                "max_lag_events": settings.READY_MAX_LAG_EVENTS,
            }
            checks["log_integrity"] = _log_integrity_check()
        except DatabaseError as exc:
            checks["database"] = {"ok": False, "error": exc.__class__.__name__}
        if settings.REDIS_URL:
            checks["broker"] = _broker_check()
        ready = all(check["ok"] for check in checks.values())
        return Response(
            {"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
        )


def _log_integrity_check() -> dict[str, Any]:
    """The stored outcome of the latest walk of the hash chains (`verify_events`, hourly task).

    Walking the log on every probe would read all of it. Only a problem found fails the check:
    a log never verified yet, or a verification grown old because beat is down, is reported
    (`age_seconds`) for monitoring to alert on, but does not take every web process out.
    """
    verification = log_verification_latest()
    if verification is None:
        return {"ok": True, "verified": False}
    finished_at = verification.finished_at or verification.started_at
    check: dict[str, Any] = {
        "ok": verification.result == verification.Result.OK,
        "verified": True,
        "verified_at": finished_at.isoformat(),
        "age_seconds": round((timezone.now() - finished_at).total_seconds(), 1),
        "events_checked": verification.events_checked,
    }
    if verification.result == verification.Result.PROBLEM:
        check["tamper"] = {"position": verification.problem_position, "problem": verification.first_problem}
    return check


def _broker_check() -> dict[str, Any]:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
    except redis.RedisError as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True}
