"""`/agents/{name}/revisions/`: the history and one revision."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app.api import serializers as out
from agents_app.api.permissions import VIEW
from agents_app.api.renderers import MarkdownRenderer
from agents_app.api.views.base import DEFAULT_PAGE, MAX_PAGE, ApiView
from agents_app.exceptions import AgentNotFound
from agents_app.selectors import revision_get, revision_list, revision_provenance


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
        versions = [row.stream_version for row in rows]
        provenance = revision_provenance(agent_id=agent.agent_id, versions=versions)
        results = out.RevisionSummarySerializer(rows, many=True).data
        for result, row in zip(results, rows, strict=True):
            result["provenance"] = provenance.get(row.stream_version)
        return Response(
            {"results": results, "next": next_url},
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
        data = out.RevisionDetailSerializer(row).data
        data["provenance"] = revision_provenance(agent_id=agent.agent_id, versions=[row.stream_version]).get(
            row.stream_version
        )
        return Response(data, headers=headers)
