"""A request id on every request and response, carried into event metadata and logs."""

import re
import uuid

from django.http import HttpRequest, HttpResponse

from project.logging import log_context_bind, log_context_reset

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIdMiddleware:
    """Use the caller's `X-Request-ID` when it is sane, else a new one; echo it back."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]  # read by views and logs
        # Every log line of this request, and of the tasks it queues (project/celery.py), carries
        # these ids; the correlation id is the caller's X-Correlation-ID when it is sane.
        correlation = request.headers.get("X-Correlation-ID", "")
        token = log_context_bind(
            request_id=request_id,
            correlation_id=correlation if REQUEST_ID.fullmatch(correlation) else request_id,
        )
        try:
            response = self.get_response(request)
        except BaseException:
            log_context_reset(token)
            raise
        # Cleared when the response is closed, not here: Django logs 4xx/5xx responses
        # ("Not Found: ...") and gunicorn writes its access line after the middleware returns.
        response._resource_closers.append(lambda: log_context_reset(token))
        response["X-Request-ID"] = request_id
        return response


class ProblemNotFoundMiddleware:
    """Unknown URLs answer a problem in every mode, as they do with DEBUG off (handler404).

    With DEBUG on, Django answers a URL that matches nothing with its HTML debug page before
    handler404 is consulted; clients (and `make run` users following the README) expect the
    same `application/problem+json` body as in production.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 404 and not response.get("Content-Type", "").startswith(
            "application/problem+json"
        ):
            from agents_app.api.errors import problem_json  # the one problem renderer

            detail = f"nothing at {request.path}"
            return problem_json(request, status_code=404, code="not-found", detail=detail)
        return response
