"""`/permissions/report/`: the registry-wide view for a security review (API.md, Permissions)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app.api import serializers as out
from agents_app.api.permissions import VIEW
from agents_app.api.views.base import ApiView
from agents_app.selectors import permissions_report


class PermissionsReportApi(ApiView):
    """Who can use each tool, mode and MCP server; documents with warnings; widening changes."""

    permissions = {"GET": VIEW}

    @extend_schema(
        operation_id="permissions_report",
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="Widening changes recorded from"),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="... up to"),
        ],
        responses={200: out.PermissionsReportSerializer},
    )
    def get(self, request: Request) -> Response:
        since, until = self.query_range()
        report = permissions_report(since=since, until=until)
        return Response(out.PermissionsReportSerializer(report).data)
