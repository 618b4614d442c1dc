"""Staff operations (projections, rebuild) and the health probes."""

from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents_app.api import serializers as out
from agents_app.api.errors import ApiProblem
from agents_app.api.permissions import IsStaff
from agents_app.api.views.base import ApiView
from agents_app.exceptions import AgentNotFound
from events.models import ProjectionRun
from events.projections import UnknownProjection, projection_get
from events.runner import projection_status_list
from events.tasks import projection_rebuild_task
from events.timefmt import iso
from events.verification import log_verification_latest
from project.celery import TaskNotQueued, enqueue


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
        responses={202: OpenApiTypes.OBJECT, 404: out.ProblemSerializer, 503: out.ProblemSerializer},
    )
    def post(self, request: Request, name: str) -> Response:
        try:
            projection_get(name)
        except UnknownProjection:
            raise AgentNotFound(f"no projection named {name!r}") from None
        try:
            # After the commit and off the request: in the embedded mode too the 202 comes
            # first, and the rebuild runs on a background thread (project.celery.enqueue).
            enqueue(projection_rebuild_task, name, verify=True)
        except TaskNotQueued as exc:
            raise ApiProblem(
                status_code=503,
                code="queue-unavailable",
                title="Task queue unavailable",
                detail=f"the rebuild was not queued: {exc}; retry shortly",
                headers={"Retry-After": "10"},
            ) from None
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
        "verified_at": iso(finished_at),
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
