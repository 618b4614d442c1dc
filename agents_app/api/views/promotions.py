"""`/labels/{label}/policy/` (staff) and `/promotions/`: the four-eyes path of protected labels.

Views parse and shape; agents_app.promotions.services decides (under the append lock).
"""

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app.api import serializers as out
from agents_app.api.errors import ApiProblem, InvalidParameter
from agents_app.api.permissions import PUBLISH, VIEW, IsStaff
from agents_app.api.views.base import ApiView
from agents_app.api.views.labels import PromotionOutputSerializer
from agents_app.labels import label_error
from agents_app.promotions import selectors
from agents_app.promotions.exceptions import PromotionNotFound
from agents_app.promotions.models import PromotionRequest
from agents_app.promotions.services import (
    label_policy_set,
    promotion_approve,
    promotion_reject,
    promotion_withdraw,
)

MAX_LIST = 500
POLICY_FIELDS = ("protected", "approvals", "approvals_when_widened", "reason")


class StaffOnly(IsStaff):
    message = "label policies are for staff users"


class PolicySerializer(serializers.Serializer):
    label = serializers.CharField(read_only=True)  # type: ignore[assignment]  # a declared field, not Field.label
    protected = serializers.BooleanField()
    approvals = serializers.IntegerField(min_value=1, max_value=10)
    approvals_when_widened = serializers.IntegerField(
        min_value=1, max_value=10, required=False, help_text="At least approvals (default: approvals)"
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, write_only=True)
    updated_by = serializers.CharField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, help_text="Required for approve and reject")


class PromotionPageSerializer(serializers.Serializer):
    results = PromotionOutputSerializer(many=True)


def _invalid(field: str, message: str) -> ApiProblem:
    return ApiProblem(
        status_code=422,
        code="validation",
        title="Invalid request body",
        detail=f"{field}: {message}",
        errors=[{"field": field, "message": message}],
    )


def _label(label: str) -> str:
    if (message := label_error(label)) is not None:
        raise InvalidParameter("label", message)  # a bad path segment: 400, as for any parameter
    return label


class LabelPolicyApi(ApiView):
    """`/labels/{label}/policy/`: a label's policy (staff); each PUT is a registry event."""

    permission_classes = [StaffOnly]

    @extend_schema(operation_id="label_policy_retrieve", responses={200: PolicySerializer})
    def get(self, request: Request, label: str) -> Response:
        return Response(PolicySerializer(selectors.label_policy_get(label=_label(label))).data)

    @extend_schema(
        operation_id="label_policy_update",
        request=PolicySerializer,
        responses={200: PolicySerializer, 422: out.ProblemSerializer},
    )
    def put(self, request: Request, label: str) -> Response:
        label = _label(label)
        body = request.data
        if not isinstance(body, dict):
            raise _invalid("body", "must be a JSON object")
        for name in sorted(set(body) - set(POLICY_FIELDS)):
            raise _invalid(name, "is not a field of a label policy")
        for name in ("protected", "approvals"):
            if name not in body:
                raise _invalid(name, "is required")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise _invalid("reason", "must be text")
        # The service checks each value (types included: true is not 1) and names the field.
        label_policy_set(
            label=label,
            protected=body["protected"],
            approvals=body["approvals"],
            approvals_when_widened=body.get("approvals_when_widened"),
            context=self.change_context(reason),
        )
        return Response(PolicySerializer(selectors.label_policy_get(label=label)).data)


class PromotionListApi(ApiView):
    """`/promotions/?status=`: requests, pending first, then newest first."""

    permissions = {"GET": VIEW}

    @extend_schema(
        operation_id="promotions_list",
        parameters=[
            OpenApiParameter("status", str, enum=[s.value for s in PromotionRequest.Status]),
            OpenApiParameter("agent", str, description="Only this agent's requests"),
        ],
        responses={200: PromotionPageSerializer},
    )
    def get(self, request: Request) -> Response:
        status = self.query_choice("status", ("", *PromotionRequest.Status.values), "")
        # A filter: an unknown agent lists nothing (no 404), like ?status= of nothing.
        rows = selectors.promotion_list(
            status=status or None, agent_name=request.query_params.get("agent") or None
        )
        rows = rows[:MAX_LIST]
        return Response({"results": [selectors.promotion_payload(row) for row in rows]})


class PromotionView(ApiView):
    def request_id(self) -> uuid.UUID:
        try:
            return uuid.UUID(self.kwargs["request_id"])
        except ValueError:
            raise PromotionNotFound(f"no promotion request {self.kwargs['request_id']!r}") from None

    def answer(self, row: PromotionRequest) -> Response:
        return Response(selectors.promotion_payload(selectors.promotion_get(request_id=row.pk)))

    def comment(self, request: Request, *, required: bool) -> str:
        body = request.data  # {} when there is no body; a list or a number is an error
        if not isinstance(body, dict):
            raise _invalid("body", "must be a JSON object")
        for name in sorted(set(body) - {"comment"}):
            raise _invalid(name, "is not a field of this request")
        if required and "comment" not in body:
            raise _invalid("comment", "is required")
        return body.get("comment", "")


class PromotionApi(PromotionView):
    """`/promotions/{id}/`: one request with its approvals and permission section."""

    permissions = {"GET": VIEW}

    @extend_schema(operation_id="promotions_retrieve", responses={200: PromotionOutputSerializer})
    def get(self, request: Request, request_id: str) -> Response:
        return Response(selectors.promotion_payload(selectors.promotion_get(request_id=self.request_id())))


class PromotionApproveApi(PromotionView):
    """`/promotions/{id}/approve/`: publish permission, not the requester, once per person."""

    permissions = {"POST": PUBLISH}

    @extend_schema(
        operation_id="promotions_approve",
        request=CommentSerializer,
        responses={200: PromotionOutputSerializer, 409: out.ProblemSerializer},
    )
    def post(self, request: Request, request_id: str) -> Response:
        row = promotion_approve(
            request_id=self.request_id(),
            comment=self.comment(request, required=True),
            context=self.change_context(""),
        )
        return self.answer(row)


class PromotionRejectApi(PromotionView):
    """`/promotions/{id}/reject/`: publish permission, not the requester, with a comment."""

    permissions = {"POST": PUBLISH}

    @extend_schema(
        operation_id="promotions_reject",
        request=CommentSerializer,
        responses={200: PromotionOutputSerializer, 409: out.ProblemSerializer},
    )
    def post(self, request: Request, request_id: str) -> Response:
        row = promotion_reject(
            request_id=self.request_id(),
            comment=self.comment(request, required=True),
            context=self.change_context(""),
        )
        return self.answer(row)


class WithdrawSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class PromotionWithdrawApi(PromotionView):
    """`/promotions/{id}/withdraw/`: the requester only (checked by the service)."""

    permissions = {"POST": VIEW}

    @extend_schema(
        operation_id="promotions_withdraw",
        request=WithdrawSerializer,
        responses={200: PromotionOutputSerializer, 409: out.ProblemSerializer},
    )
    def post(self, request: Request, request_id: str) -> Response:
        row = promotion_withdraw(
            request_id=self.request_id(),
            comment=self.comment(request, required=False),
            context=self.change_context(""),
        )
        return self.answer(row)
