"""Diff (one agent, two agents) and blame, in every format."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app.api import serializers as out
from agents_app.api.errors import InvalidParameter
from agents_app.api.permissions import VIEW
from agents_app.api.renderers import HTMLFragmentRenderer, UnifiedDiffRenderer, diff_page
from agents_app.api.views.base import ApiView
from agents_app.diff import DiffSide, html_diff, revision_diff, unified_diff
from agents_app.document import NAME_PATTERN
from agents_app.selectors import (
    agent_get,
    revision_blame,
    revision_pair,
    revision_pair_by_name,
    revision_resolve,
)

DIFF_RESPONSES = {
    (200, "application/json"): out.DiffOutputSerializer,
    (200, "text/x-diff"): OpenApiTypes.STR,
    (200, "text/html"): OpenApiTypes.STR,
    400: out.ProblemSerializer,
    404: out.ProblemSerializer,
}


def _diff_response(request: Request, old, new) -> HttpResponse:
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
        title = f"{old.name}@{old.revision} \u2192 {new.name}@{new.revision}"
        return Response(diff_page(fragment=html_diff(old=old_side, new=new_side), title=title))
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
    def get(self, request: Request, name: str) -> HttpResponse:
        # Without `from`, the revision before `to`; before the first revision there is none: an
        # empty diff of it with itself, not an error.
        from_ref, to_ref = request.query_params.get("from"), request.query_params.get("to")
        pair = (
            revision_pair_by_name(name=name, from_ref=from_ref, to_ref=to_ref)
            if NAME_PATTERN.fullmatch(name)
            else None
        )
        if pair is None:  # the general way: it redirects a renamed agent or says what is missing
            pair = revision_pair(agent=self.agent(), from_ref=from_ref, to_ref=to_ref)
        return _diff_response(request, *pair)


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
    def get(self, request: Request) -> HttpResponse:
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
        result = revision_blame(agent=agent, ref=request.query_params.get("ref") or "latest")
        return Response({"agent": agent.name, **result})
