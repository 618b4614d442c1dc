"""What every API view shares: problem bodies, the caller's change context, If-Match and
ETags, query parameters, the 412 and the read-your-writes answer after a write."""

import datetime as dt
import re
from typing import Any

from django.conf import settings
from django.http import HttpResponsePermanentRedirect
from django.urls import reverse
from rest_framework import serializers
from rest_framework.exceptions import NotAcceptable
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from agents_app import event_types as agent_event_types
from agents_app import services
from agents_app.api import serializers as out
from agents_app.api.errors import (
    ApiProblem,
    InvalidParameter,
    PreconditionRequired,
    ProblemAutoSchema,
    ProblemErrorsView,
)
from agents_app.api.idempotency import idempotent_write
from agents_app.api.permissions import OperationPermission
from agents_app.document import NAME_PATTERN
from agents_app.exceptions import AgentNotFound
from agents_app.models import AgentCurrent
from agents_app.selectors import agent_find_renamed, agent_get, agents_current, parse_instant
from events.exceptions import ConcurrencyConflict
from events.runner import projections_failing, projections_wait
from events.selectors import head_position, stream_last
from events.timefmt import iso
from project.middleware import REQUEST_ID

ETAG = re.compile(r'\s*(W/)?"?(\d{1,9})"?\s*')
DEFAULT_PAGE = 100
MAX_PAGE = 1000


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
            changed_at=iso(last.recorded_at if last else agent.updated_at),
            change=last.type if last else None,
        )


def _sane_id(value: str | None) -> str | None:
    """A caller-supplied id, if it is short and plain (it goes into the log and the events)."""
    return value if value is not None and REQUEST_ID.fullmatch(value) else None


class Renamed(Exception):  # control flow, not an error: answered with a 301
    def __init__(self, agent: AgentCurrent) -> None:
        self.agent = agent


class ApiView(ProblemErrorsView):
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

    def query_range(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """`since` and `until`; an `until` before `since` is a 400, not an empty answer."""
        since, until = self.query_time("since"), self.query_time("until")
        if since is not None and until is not None and until < since:
            raise InvalidParameter("until", "is before since: nothing can match")
        return since, until

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
        """Run a write once per `Idempotency-Key` (agents_app.api.idempotency)."""

        def started() -> None:
            self.answering_inside_the_write = True

        return idempotent_write(self.request, operation, on_start=started)

    def write(self, operation) -> Response:
        """Run a command; a stale expected version becomes a 412 naming who changed the agent."""
        try:
            return operation()
        except ConcurrencyConflict as exc:
            agent = agent_get(agent_id=exc.stream_id)
            raise PreconditionFailed(agent=agent, expected=exc.expected_version) from None

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
