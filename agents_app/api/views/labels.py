"""`/agents/{name}/labels/`: the labels, their history, moving and removing one."""

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app import services
from agents_app.api import serializers as out
from agents_app.api.errors import ApiProblem
from agents_app.api.permissions import PUBLISH, VIEW
from agents_app.api.views.agents import ArchiveInputSerializer
from agents_app.api.views.base import ApiView, PreconditionFailed
from agents_app.labels import label_error
from agents_app.promotions.exceptions import LabelProtected
from agents_app.promotions.selectors import promotion_get, promotion_payload
from agents_app.promotions.services import promotion_request
from agents_app.selectors import label_history
from events.exceptions import ConcurrencyConflict
from events.timefmt import iso


class LabelInputSerializer(serializers.Serializer):
    revision = out.WholeNumberField(min_value=1, max_value=10**9)
    reason = out.reason_field


class LabelOutputSerializer(serializers.Serializer):
    agent = serializers.CharField()
    labels = serializers.DictField(child=serializers.IntegerField())
    stream_version = serializers.IntegerField()


class PromotionApprovalSerializer(serializers.Serializer):
    by = serializers.CharField()
    at = serializers.DateTimeField()
    comment = serializers.CharField()


class PromotionOutputSerializer(serializers.Serializer):
    """A promotion request (API.md, Promotions); here because a label PUT answers one (202)."""

    id = serializers.UUIDField()
    agent = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    from_revision = serializers.IntegerField(allow_null=True)
    to_revision = serializers.IntegerField()
    requested_by = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)
    required_approvals = serializers.IntegerField()
    approvals = PromotionApprovalSerializer(many=True)
    widened = serializers.BooleanField()
    permissions = serializers.DictField(
        help_text="widened, warnings and tools of the diff from from_revision"
    )
    status = serializers.ChoiceField(choices=["pending", "applied", "rejected", "withdrawn"])
    decided_by = serializers.CharField(allow_blank=True)
    decision_comment = serializers.CharField(allow_blank=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


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
                "recorded_at": iso(event.recorded_at),
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
        if (message := label_error(label)) is not None:
            # Checked here too so that the problem names the field: the service cannot know
            # the label came from the URL.
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
        except LabelProtected:
            if revision is None:  # removing a protected label: unprotect it first (409)
                raise
            # A protected label moves only when others approve: the answer is the request.
            row = promotion_request(
                agent_id=agent.agent_id, label=label, revision=revision, context=self.change_context(reason)
            )
            return Response(
                promotion_payload(promotion_get(request_id=row.pk)),
                status=202,
                headers={"Location": reverse("api:promotion", kwargs={"request_id": row.pk})},
            )
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
        responses={
            200: LabelOutputSerializer,
            202: PromotionOutputSerializer,
            404: out.ProblemSerializer,
            409: out.ProblemSerializer,
        },
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
