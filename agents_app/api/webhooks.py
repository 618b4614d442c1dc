"""REST API v1, webhooks (API.md "Webhooks"): staff manage subscriptions and read their delivery log.

Views parse and shape; agents_app.webhooks.services does the work. The signing secret leaves
the service once, in the answer to the POST that created it.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app.api.errors import ApiProblem, InvalidParameter, ProblemAutoSchema, ProblemErrorsView
from agents_app.api.permissions import IsStaff
from agents_app.api.serializers import ProblemSerializer
from agents_app.webhooks import selectors
from agents_app.webhooks.models import WebhookDelivery, WebhookSubscription
from agents_app.webhooks.services import (
    WebhookInvalid,
    WebhookNotFound,
    webhook_create,
    webhook_delete,
    webhook_redeliver,
    webhook_update,
)

DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_ID = 2**63 - 1
# API field -> the service's name for it.
FIELDS = {
    "url": "url",
    "events": "event_types",
    "agents": "agent_names",
    "description": "description",
    "active": "active",
}


class StaffOnly(IsStaff):
    message = "webhooks are for staff users"


class WebhookInputSerializer(serializers.Serializer):
    """Documents the body; the service checks every value (so PATCH and POST share one rule)."""

    url = serializers.URLField(max_length=2000, help_text="https URL of the receiver")
    events = serializers.ListField(
        child=serializers.CharField(), help_text='Event types, e.g. ["agent.revised"], or ["*"] for all'
    )
    agents = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Only events of these agents (default: all)"
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    active = serializers.BooleanField(required=False, default=True)


class WebhookPatchSerializer(WebhookInputSerializer):
    url = serializers.URLField(max_length=2000, required=False)
    events = serializers.ListField(child=serializers.CharField(), required=False)


class WebhookOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField(), source="event_types")
    agents = serializers.ListField(child=serializers.CharField(), source="agent_names")
    description = serializers.CharField()
    active = serializers.BooleanField()
    paused_reason = serializers.CharField(help_text="Why it is not active (empty when active)")
    paused_at = serializers.DateTimeField(allow_null=True)
    checkpoint = serializers.IntegerField(help_text="Position of the last event delivered or skipped")
    failures = serializers.IntegerField(help_text="Consecutive failed attempts")
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class WebhookCreatedSerializer(WebhookOutputSerializer):
    secret = serializers.CharField(help_text="Standard Webhooks signing secret; shown only in this answer")


class WebhookPageSerializer(serializers.Serializer):
    results = WebhookOutputSerializer(many=True)


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    event_id = serializers.UUIDField()
    event_type = serializers.CharField()
    webhook_id = serializers.CharField()
    attempt = serializers.IntegerField()
    redelivery = serializers.BooleanField()
    succeeded = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField()
    error = serializers.CharField()
    response_body = serializers.CharField(help_text="The first 1 KiB of the answer at most")
    attempted_at = serializers.DateTimeField()


class DeliveryPageSerializer(serializers.Serializer):
    results = DeliveryOutputSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class RedeliveryQueuedSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
    position = serializers.IntegerField()
    deliveries = serializers.CharField()


class WebhookApiView(ProblemErrorsView):
    permission_classes = [StaffOnly]
    schema = ProblemAutoSchema()

    def subscription(self, webhook_id: int) -> WebhookSubscription:
        found = selectors.webhook_get(subscription_id=webhook_id) if webhook_id <= MAX_ID else None
        if found is None:
            raise _not_found(f"no webhook {webhook_id}")
        return found

    def changes(self, request: Request, *, partial: bool) -> dict[str, Any]:
        """The body as the service's keyword arguments: an object of known fields only."""
        body = request.data
        if not isinstance(body, dict):
            raise _invalid([("body", "must be a JSON object")])
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise _invalid([(name, "is not a field of a webhook") for name in unknown])
        missing = [] if partial else [name for name in ("url", "events") if name not in body]
        if missing:
            raise _invalid([(name, "is required") for name in missing])
        return {FIELDS[name]: value for name, value in body.items()}


def _invalid(errors: list[tuple[str, str]]) -> ApiProblem:
    return ApiProblem(
        status_code=422,
        code="validation",
        title="Invalid request body",
        detail="; ".join(f"{field}: {message}" for field, message in errors),
        errors=[{"field": field, "message": message} for field, message in errors],
    )


def _not_found(detail: str) -> ApiProblem:
    return ApiProblem(status_code=404, code="not-found", title="Not found", detail=detail)


class WebhooksApi(WebhookApiView):
    """`/webhooks/`: list (staff), create (staff; the answer carries the secret, once)."""

    @extend_schema(operation_id="webhooks_list", responses={200: WebhookPageSerializer})
    def get(self, request: Request) -> Response:
        rows = selectors.webhook_list().select_related("created_by")[:1000]
        return Response({"results": WebhookOutputSerializer(rows, many=True).data})

    @extend_schema(
        operation_id="webhooks_create",
        request=WebhookInputSerializer,
        responses={201: WebhookCreatedSerializer, 422: ProblemSerializer},
    )
    def post(self, request: Request) -> Response:
        changes = self.changes(request, partial=False)
        try:
            subscription, secret = webhook_create(**changes, created_by_id=request.user.pk)
        except WebhookInvalid as exc:
            raise _invalid([(_api_field(f), m) for f, m in exc.errors]) from None
        body = dict(WebhookOutputSerializer(subscription).data)
        body["secret"] = secret
        return Response(body, status=201, headers={"Location": f"{request.path}{subscription.pk}/"})


def _api_field(service_field: str) -> str:
    return {"event_types": "events", "agent_names": "agents"}.get(service_field, service_field)


class WebhookApi(WebhookApiView):
    """`/webhooks/{id}/`: read, change (active=true resumes a paused one), delete. Never the secret."""

    @extend_schema(operation_id="webhooks_retrieve", responses={200: WebhookOutputSerializer})
    def get(self, request: Request, webhook_id: int) -> Response:
        return Response(WebhookOutputSerializer(self.subscription(webhook_id)).data)

    @extend_schema(
        operation_id="webhooks_partial_update",
        request=WebhookPatchSerializer,
        responses={200: WebhookOutputSerializer, 422: ProblemSerializer},
    )
    def patch(self, request: Request, webhook_id: int) -> Response:
        self.subscription(webhook_id)
        changes = self.changes(request, partial=True)
        try:
            subscription = webhook_update(subscription_id=webhook_id, changes=changes)
        except WebhookInvalid as exc:
            raise _invalid([(_api_field(f), m) for f, m in exc.errors]) from None
        except WebhookNotFound as exc:
            raise _not_found(str(exc)) from None
        return Response(WebhookOutputSerializer(subscription).data)

    @extend_schema(operation_id="webhooks_destroy", responses={204: None})
    def delete(self, request: Request, webhook_id: int) -> Response:
        self.subscription(webhook_id)
        try:
            webhook_delete(subscription_id=webhook_id)
        except WebhookNotFound as exc:
            raise _not_found(str(exc)) from None
        return Response(status=204)


class WebhookDeliveriesApi(WebhookApiView):
    """`/webhooks/{id}/deliveries/`: the delivery log, newest attempt first, by cursor."""

    @extend_schema(
        operation_id="webhooks_deliveries_list",
        parameters=[
            OpenApiParameter("before", int, description="Cursor: attempts older than this delivery id"),
            OpenApiParameter("limit", int, description=f"1 to {MAX_PAGE} (default {DEFAULT_PAGE})"),
        ],
        responses={200: DeliveryPageSerializer},
    )
    def get(self, request: Request, webhook_id: int) -> Response:
        subscription = self.subscription(webhook_id)
        before = _query_int(request, "before", default=MAX_ID, low=1, high=MAX_ID)
        limit = _query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        rows = list(
            selectors.webhook_deliveries(subscription_id=subscription.pk).filter(id__lt=before)[: limit + 1]
        )
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            query = request.query_params.copy()
            query["before"] = str(rows[-1].pk)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"results": DeliveryOutputSerializer(rows, many=True).data, "next": next_url})


class WebhookRedeliverApi(WebhookApiView):
    """`/webhooks/{id}/deliveries/{delivery_id}/redeliver/`: 202, that event is sent once more."""

    @extend_schema(
        operation_id="webhooks_redeliver", request=None, responses={202: RedeliveryQueuedSerializer}
    )
    def post(self, request: Request, webhook_id: int, delivery_id: int) -> Response:
        subscription = self.subscription(webhook_id)
        if delivery_id > MAX_ID:
            raise _not_found(f"no delivery {delivery_id}")
        try:
            logged: WebhookDelivery = webhook_redeliver(
                subscription_id=subscription.pk, delivery_id=delivery_id
            )
        except WebhookNotFound as exc:
            raise _not_found(str(exc)) from None
        deliveries = request.build_absolute_uri(request.path.split("deliveries/")[0] + "deliveries/")
        return Response({"queued": True, "position": logged.position, "deliveries": deliveries}, status=202)


def _query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or not low <= int(raw) <= high:
        raise InvalidParameter(name, f"must be a whole number from {low} to {high}")
    return int(raw)
