"""Every API error as `application/problem+json` (RFC 9457): one handler turns domain errors,
DRF errors and anything unexpected into a problem body; nothing else writes error responses.
"""

import logging
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from drf_spectacular.openapi import AutoSchema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from agents_app.api.renderers import ProblemJSONRenderer
from agents_app.api.serializers import ProblemSerializer
from agents_app.exceptions import (
    AgentArchived,
    AgentNotFound,
    DocumentInvalid,
    InvalidCommand,
    InvalidField,
    InvalidReference,
    NameTaken,
    StatusUnchanged,
)
from agents_app.promotions.exceptions import PromotionProblem
from events.exceptions import (
    ConcurrencyConflict,
    EventIdReused,
    InvalidEvent,
    StoreBusy,
    StoreUnavailable,
)

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemErrorsView(APIView):
    """An API view whose error answers are problem JSON whatever the client asked for (a raw-file
    or diff renderer could not render them anyway)."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code >= 400 and isinstance(response, Response):
            response.accepted_renderer = ProblemJSONRenderer()
            response.accepted_media_type = PROBLEM_CONTENT_TYPE
            response["Content-Type"] = PROBLEM_CONTENT_TYPE
        return response


PROBLEM_TYPE = "urn:agent-registry:problem:"


class ApiProblem(exceptions.APIException):
    """An error with a stable problem type and extra members for the problem body."""

    def __init__(
        self,
        *,
        status_code: int,
        code: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.title = title
        self.headers = headers
        self.extra = extra
        super().__init__(detail=detail, code=code)


class PreconditionRequired(ApiProblem):
    def __init__(self) -> None:
        super().__init__(
            status_code=428,
            code="precondition-required",
            title="If-Match required",
            detail="send If-Match with the agent's current ETag (or expected_version in the body) so "
            "that a concurrent change is not overwritten",
        )


class InvalidParameter(ApiProblem):
    """A malformed query parameter or header: 400 naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            status_code=400,
            code="invalid-parameter",
            title="Invalid parameter",
            detail=f"{field}: {message}",
            errors=[{"field": field, "message": message}],
        )


def problem(
    *, status_code: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra
) -> Response:
    body = {"type": PROBLEM_TYPE + code, "title": title, "status": status_code, "detail": detail, **extra}
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def _flatten(detail: Any, prefix: str = "") -> list[dict[str, Any]]:
    """DRF's nested validation errors as a flat list of {field, message}."""
    if isinstance(detail, dict):
        return [error for key, value in detail.items() for error in _flatten(value, _join(prefix, key))]
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [{"field": prefix or "body", "message": str(item)} for item in detail]
        return [error for i, item in enumerate(detail) for error in _flatten(item, _join(prefix, str(i)))]
    return [{"field": prefix or "body", "message": str(detail)}]


def _join(prefix: str, key: str) -> str:
    if key == "non_field_errors":  # DRF's name for an error of a whole object: name the object
        return prefix or "body"
    return f"{prefix}.{key}" if prefix else key


def _domain_problem(exc: Exception) -> Response | None:
    if isinstance(exc, PromotionProblem):
        extra: dict[str, Any] = {"errors": [{"field": exc.field, "message": str(exc)}]} if exc.field else {}
        return problem(status_code=exc.status, code=exc.code, title=exc.title, detail=str(exc), **extra)
    if isinstance(exc, DocumentInvalid):
        errors = [
            {"field": p.field, "message": p.message, **({"line": p.line} if p.line else {})}
            for p in exc.problems
        ]
        return problem(
            status_code=422,
            code="invalid-document",
            title="Invalid agent definition",
            detail=str(exc),
            errors=errors,
        )
    if isinstance(exc, InvalidField):
        return problem(
            status_code=400,
            code="invalid-parameter",
            title="Invalid parameter",
            detail=str(exc),
            errors=[{"field": exc.field, "message": exc.message}],
        )
    if isinstance(exc, AgentNotFound):
        return problem(status_code=404, code="not-found", title="Not found", detail=str(exc))
    if isinstance(exc, InvalidReference):
        return problem(
            status_code=400,
            code="invalid-reference",
            title="Invalid revision reference",
            detail=str(exc),
            errors=[{"field": "ref", "message": str(exc)}],
        )
    if isinstance(exc, NameTaken):
        return problem(status_code=409, code="name-taken", title="Name taken", detail=str(exc))
    if isinstance(exc, AgentArchived | StatusUnchanged):
        return problem(
            status_code=409, code="agent-state", title="Not possible in this state", detail=str(exc)
        )
    if isinstance(exc, ConcurrencyConflict):
        # Views that know who changed the agent raise a richer PreconditionFailed instead.
        return problem(
            status_code=412,
            code="stale-version",
            title="The agent changed",
            detail=str(exc),
            current_version=exc.actual_version,
        )
    if isinstance(exc, InvalidCommand | InvalidEvent | EventIdReused):
        return problem(
            status_code=422,
            code="invalid-command",
            title="Invalid request",
            detail=str(exc),
            errors=[{"field": "body", "message": str(exc)}],
        )
    return None


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: a problem body for every error, a 500 for nothing the client sent."""
    if (response := _domain_problem(exc)) is not None:
        return response
    if isinstance(exc, RequestDataTooBig):
        return problem(status_code=413, code="too-large", title="Request too large", detail=str(exc))
    if isinstance(exc, SuspiciousOperation):
        return problem(status_code=400, code="bad-request", title="Bad request", detail=str(exc))
    if isinstance(exc, ApiProblem):
        return problem(
            status_code=exc.status_code,
            code=exc.code,
            title=exc.title,
            detail=str(exc.detail),
            headers=exc.headers,
            **exc.extra,
        )
    if isinstance(exc, Http404 | DjangoPermissionDenied | exceptions.APIException):
        response = exception_handler(exc, context)  # sets WWW-Authenticate, Retry-After, Allow
        assert response is not None
        headers = {
            name: value
            for name, value in response.headers.items()
            if name in ("WWW-Authenticate", "Retry-After", "Allow")
        }
        if isinstance(exc, exceptions.ValidationError):
            return problem(
                status_code=422,
                code="validation",
                title="Invalid request body",
                detail="the request body has errors; see errors",
                errors=_flatten(exc.detail),
            )
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else str(response.data)
        code = getattr(exc, "default_code", "error").replace("_", "-")
        if isinstance(exc, Http404):
            code = "not-found"
        return problem(
            status_code=response.status_code,
            code=code,
            title=_title(response.status_code),
            detail=str(detail),
            headers=headers,
        )
    request = context.get("request")
    if isinstance(exc, StoreBusy):
        # The append lock stayed taken for APPEND_LOCK_TIMEOUT_SECONDS: nothing was stored.
        return problem(
            status_code=503,
            code="store-busy",
            title="Service Unavailable",
            detail=f"{exc}; nothing was stored",
            headers={"Retry-After": "2"},
            request_id=_request_id(request),
        )
    if isinstance(exc, OperationalError | InterfaceError | StoreUnavailable):
        # The database went away (restart, failover, a cut connection): not a bug, and worth a
        # retry. A write may have committed just before its connection was lost, so the retry
        # must be safe: the same Idempotency-Key, or If-Match (a repeat then gets a 412).
        logger.error(
            "database unavailable in %s",
            getattr(request, "path", "?"),
            exc_info=exc,
            extra={"request_id": _request_id(request)},
        )
        return problem(
            status_code=503,
            code="database-unavailable",
            title="Service Unavailable",
            detail="the database connection failed; retry with the same Idempotency-Key or If-Match,"
            " which stores a change at most once",
            headers={"Retry-After": "2"},
            request_id=_request_id(request),
        )
    logger.exception(
        "unexpected error in %s", getattr(request, "path", "?"), extra={"request_id": _request_id(request)}
    )
    return problem(
        status_code=500,
        code="internal",
        title="Internal error",
        detail="the server failed; the error was logged",
        request_id=_request_id(request),
    )


def _title(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def _request_id(request: Any) -> str | None:
    return getattr(request, "request_id", None)


def problem_json(request: HttpRequest, *, status_code: int, code: str, detail: str) -> JsonResponse:
    """A problem response outside DRF views (unknown URLs, server errors)."""
    body = {
        "type": PROBLEM_TYPE + code,
        "title": _title(status_code),
        "status": status_code,
        "detail": detail,
    }
    return JsonResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


class ProblemAutoSchema(AutoSchema):
    """Documents the errors any API view can answer, each as an `application/problem+json` body.

    Without this the schema would list only each view's own errors, and as JSON of the view's
    media types, while clients (and the schema fuzz test) get problem bodies for bad
    parameters, missing credentials, permissions, unknown agents, media types and throttling.
    """

    # Every operation: a malformed parameter or header, no or a bad token, a missing
    # permission, an Accept (or ?format=) the view cannot answer, throttling.
    ALWAYS = (400, 401, 403, 406, 429)
    WITH_PATH_PARAMETERS = (404,)
    WITH_BODY = (413, 415, 422)

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        codes = set(self.ALWAYS)
        if "{" in path:
            codes.update(self.WITH_PATH_PARAMETERS)
        # The schema has no body for DELETE, but the views read an optional `reason` from it.
        if "requestBody" in operation or method.upper() == "DELETE":
            codes.update(self.WITH_BODY)
        if any(p["in"] == "header" and p["name"] == "If-Match" for p in operation.get("parameters", [])):
            codes.add(412)
        for parameter in operation.get("parameters", []):
            # Every view reads an empty query value as "not given" (`?at=` lists the present).
            if parameter["in"] == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        responses = operation["responses"]
        for code in codes:
            responses.setdefault(str(code), {})
        if "/agents/{name}/" in path:
            responses.setdefault(
                "301",
                {
                    "description": "The agent was renamed: Location is the same request under its new name",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
            )
        problem_ref = self.resolve_serializer(ProblemSerializer, "response").ref
        for code, response in responses.items():
            if int(code) >= 400:
                response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": dict(problem_ref)}}
                response["description"] = response.get("description") or _title(int(code))
        operation["responses"] = dict(sorted(responses.items()))
        return operation
