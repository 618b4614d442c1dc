"""`/agents/`, `/agents/{name}/` and its restore and revert: the agent commands and reads."""

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app import services
from agents_app.api import serializers as out
from agents_app.api.errors import InvalidParameter
from agents_app.api.pagination import next_page_token, page_token_parse
from agents_app.api.permissions import ARCHIVE, CHANGE, VIEW
from agents_app.api.renderers import MarkdownParser, MarkdownRenderer
from agents_app.api.views.base import DEFAULT_PAGE, MAX_PAGE, ApiView
from agents_app.dialects import DEFAULT_DIALECT, DIALECTS, dialect_problem
from agents_app.exceptions import InvalidField
from agents_app.models import AgentCurrent, AgentRevision
from agents_app.selectors import agent_list, agent_list_at, revision_resolve

# With a raw text/markdown body, what a JSON body would carry beside the content comes in headers.
_HEADER_FIELDS = {"reason": "X-Change-Reason", "dialect": "X-Agent-Dialect", "name": "X-Agent-Name"}


def _document_from_request(request: Request) -> tuple[Any, dict[str, Any]]:
    """(content, rest of the JSON body) from a JSON body or a raw text/markdown one."""
    if isinstance(request.data, bytes):
        fields = {
            field: request.headers[header]
            for field, header in _HEADER_FIELDS.items()
            if header in request.headers
        }
        return request.data, {"reason": "", **fields}
    if not isinstance(request.data, dict):
        raise serializers.ValidationError({"body": "send a JSON object or a text/markdown file"})
    return None, request.data


class WriteInputSerializer(serializers.Serializer):
    content = out.TextField(trim_whitespace=False, help_text="The raw Markdown file.")
    reason = out.reason_field
    expected_version = out.WholeNumberField(required=False, min_value=0, max_value=2**31 - 1)


class DialectField(serializers.ChoiceField):
    """`dialect`: an unknown one is a 400 naming the field and the known ones (InvalidField)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=list(DIALECTS), **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if (problem := dialect_problem(data)) is not None:
            raise InvalidField("dialect", problem)
        return data


class CreateInputSerializer(WriteInputSerializer):
    dialect = DialectField(
        required=False,
        default=DEFAULT_DIALECT,
        help_text="The runtime the file is for (X-Agent-Dialect with a text/markdown body).",
    )
    # Blank and over-long names get the name rule's 400 (agents_app.document.agent_name).
    name = out.TextField(
        required=False,
        allow_blank=True,
        help_text="The agent's name when the document has none (copilot); given beside a frontmatter"
        " name it must be the same (X-Agent-Name with a text/markdown body).",
    )


AGENT_EXAMPLE = "---\nname: code-reviewer\ndescription: Reviews diffs\ntools: Read, Grep\n---\nReview.\n"
COPILOT_EXAMPLE = "---\ndescription: Plans a change\ntools: ['read', 'search']\n---\nPlan.\n"


class AgentsApi(ApiView):
    """`/agents/`: list (GET) and create (POST)."""

    permissions = {"GET": VIEW, "POST": CHANGE}
    parser_classes = [JSONParser, MarkdownParser]

    @extend_schema(
        operation_id="agents_list",
        parameters=[
            OpenApiParameter("q", str, description="Text in the name or description"),
            OpenApiParameter("model", str),
            OpenApiParameter("tool", str, description="Agents that declare this tool"),
            OpenApiParameter(
                "can",
                str,
                description="Agents effectively granted this tool (no tools key grants every tool;"
                " disallowedTools removes)",
            ),
            OpenApiParameter("status", str, enum=["active", "archived", "all"]),
            OpenApiParameter("label", str),
            OpenApiParameter("at", OpenApiTypes.DATETIME, description="The registry as it was then"),
            OpenApiParameter("after", str, description="Cursor: the `next` of the previous page"),
            OpenApiParameter("limit", int),
        ],
        responses={200: out.AgentPageSerializer},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        limit = self.query_int("limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        at = self.query_time("at")
        for name in ("q", "model", "tool", "can", "label", "after"):
            if len(params.get(name, "")) > 200:
                raise InvalidParameter(name, "is longer than 200 characters")
        q, model, tool = params.get("q", ""), params.get("model", ""), params.get("tool", "")
        can = params.get("can", "")
        after = page_token_parse(params.get("after", ""))
        rows: QuerySet[AgentRevision] | QuerySet[AgentCurrent]
        serializer: type[serializers.Serializer]
        if at is not None:
            if params.get("label") or params.get("status"):
                raise InvalidParameter("at", "cannot be combined with label or status")
            rows = agent_list_at(at=at, q=q, model=model, tool=tool, can=can, after=after)
            serializer = out.AgentAtSerializer
        else:
            status = self.query_choice("status", ("active", "archived", "all"), "active")
            rows = agent_list(
                status=status,
                label=params.get("label", ""),
                q=q,
                model=model,
                tool=tool,
                can=can,
                after=after,
            )
            serializer = out.AgentSummarySerializer
        page = list(rows[: limit + 1])
        more = len(page) > limit
        page = page[:limit]
        next_url = None
        if more:
            query = params.copy()
            query["after"] = next_page_token(page[-1])
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"results": serializer(page, many=True).data, "next": next_url})

    @extend_schema(
        operation_id="agents_create",
        request={"application/json": CreateInputSerializer, "text/markdown": OpenApiTypes.STR},
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
            OpenApiParameter("X-Change-Reason", str, OpenApiParameter.HEADER),
            OpenApiParameter(
                "X-Agent-Dialect",
                str,
                OpenApiParameter.HEADER,
                enum=list(DIALECTS),
                description="With a text/markdown body: the dialect (default claude-code)",
            ),
            OpenApiParameter(
                "X-Agent-Name",
                str,
                OpenApiParameter.HEADER,
                description="With a text/markdown body: the name of a document that has none (copilot)",
            ),
        ],
        responses={
            201: out.AgentOutputSerializer,
            400: out.ProblemSerializer,
            409: out.ProblemSerializer,
            422: out.ProblemSerializer,
        },
        examples=[
            OpenApiExample("create", value={"content": AGENT_EXAMPLE, "reason": "first version"}),
            OpenApiExample(
                "create a copilot agent without a name key",
                value={"content": COPILOT_EXAMPLE, "dialect": "copilot", "name": "planner"},
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        def create() -> Response:
            content, fields = _document_from_request(request)
            if content is None:
                data = self.validated(CreateInputSerializer, fields)
                content = data["content"]
            else:
                data = self.validated(CreateInputSerializer, {**fields, "content": "-"})
            change = services.agent_create(
                content=content,
                context=self.change_context(data["reason"]),
                dialect=data["dialect"],
                name=data.get("name"),
                name_from="the request's name",
            )
            return self.agent_response(change.agent_id, status_code=201, stream_version=change.stream_version)

        return self.idempotent(create)


def _refuse_identity_change(agent: Any, fields: Any) -> None:
    """A PUT or PATCH that names another dialect or name than the agent's is refused (400), not
    ignored: the dialect is fixed when the agent is created, and a rename is a new `name:` line
    in the document, never a field beside it."""
    if not isinstance(fields, Mapping):
        return
    if "dialect" in fields and fields["dialect"] != agent.dialect:
        raise InvalidField(
            "dialect",
            f"agent {agent.name!r} is a {agent.dialect} agent; a dialect is set when an agent is created",
        )
    if "name" in fields and fields["name"] != agent.name:
        raise InvalidField(
            "name", f"is not {agent.name!r}; to rename the agent, change the document's name: line"
        )


class PatchInputSerializer(serializers.Serializer):
    frontmatter = serializers.DictField(
        required=False,
        help_text="Keys to set; null removes a key (JSON merge patch). Keys not named keep their bytes.",
    )
    body = out.TextField(required=False, allow_blank=True, trim_whitespace=False)
    reason = out.reason_field
    expected_version = out.WholeNumberField(required=False, min_value=0, max_value=2**31 - 1)

    def validate(self, attrs):
        if "frontmatter" not in attrs and "body" not in attrs:
            raise serializers.ValidationError("send frontmatter keys and/or a body to change")
        return attrs


class ArchiveInputSerializer(serializers.Serializer):
    reason = out.reason_field


def _status_change(view: ApiView, service) -> Response:
    """Archive or restore the agent in the URL, with the reason from the body."""
    agent = view.agent()
    data = view.validated(ArchiveInputSerializer, view.request.data or {})
    change = service(
        agent_id=agent.agent_id,
        context=view.change_context(data["reason"]),
        expected_version=view.expected_version(body_version=None, required=False),
    )
    return view.agent_response(change.agent_id, stream_version=change.stream_version)


class AgentApi(ApiView):
    """`/agents/{name}/`: read (GET), replace (PUT), edit (PATCH), archive (DELETE)."""

    permissions = {"GET": VIEW, "PUT": CHANGE, "PATCH": CHANGE, "DELETE": ARCHIVE}
    parser_classes = [JSONParser, MarkdownParser]
    renderer_classes = [JSONRenderer, MarkdownRenderer]

    @extend_schema(
        operation_id="agents_read",
        parameters=[OpenApiParameter("ref", str, description="3, latest, a label, or @timestamp")],
        responses={
            (200, "application/json"): out.AgentOutputSerializer,
            (200, "text/markdown"): OpenApiTypes.STR,
            304: OpenApiResponse(description="Not modified (If-None-Match)"),
            404: out.ProblemSerializer,
        },
    )
    def get(self, request: Request, name: str) -> Response:
        agent = self.agent()
        ref = request.query_params.get("ref")
        shown = revision_resolve(agent=agent, ref=ref) if ref else None
        etag = f'"{agent.stream_version}"'
        if request.headers.get("If-None-Match") == etag and shown is None:
            return Response(status=304, headers={"ETag": etag})
        headers = {"ETag": etag}
        if request.accepted_renderer.format == "md":
            content = (shown or agent).content
            return Response(content.encode("utf-8"), headers=headers)
        if shown is None:  # the current row holds the latest revision's fields
            return Response(out.AgentOutputSerializer(out.agent_payload(agent)).data, headers=headers)
        return Response(out.AgentOutputSerializer(out.agent_payload(agent, shown)).data, headers=headers)

    @extend_schema(
        operation_id="agents_replace",
        request={"application/json": WriteInputSerializer, "text/markdown": OpenApiTypes.STR},
        parameters=[
            OpenApiParameter("If-Match", str, OpenApiParameter.HEADER, description='The ETag read, e.g. "3"'),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
            OpenApiParameter("X-Change-Reason", str, OpenApiParameter.HEADER),
        ],
        responses={
            200: out.AgentOutputSerializer,
            404: out.ProblemSerializer,
            409: out.ProblemSerializer,
            412: out.ProblemSerializer,
            422: out.ProblemSerializer,
            428: out.ProblemSerializer,
        },
    )
    def put(self, request: Request, name: str) -> Response:
        def replace() -> Response:
            agent = self.agent()
            content, fields = _document_from_request(request)
            _refuse_identity_change(agent, fields)
            if content is None:
                data = self.validated(WriteInputSerializer, fields)
                content = data["content"]
            else:
                data = self.validated(WriteInputSerializer, {"content": "-", **fields})
            expected = self.expected_version(body_version=data.get("expected_version"), required=True)
            change = services.agent_revise(
                agent_id=agent.agent_id,
                content=content,
                context=self.change_context(data["reason"]),
                expected_version=expected,
            )
            return self.agent_response(change.agent_id, stream_version=change.stream_version)

        return self.write(lambda: self.idempotent(replace))

    @extend_schema(
        operation_id="agents_edit",
        request=PatchInputSerializer,
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER)],
        responses={
            200: out.AgentOutputSerializer,
            404: out.ProblemSerializer,
            409: out.ProblemSerializer,
            412: out.ProblemSerializer,
            422: out.ProblemSerializer,
            428: out.ProblemSerializer,
        },
        examples=[
            OpenApiExample("change the model", value={"frontmatter": {"model": "opus"}, "reason": "x"})
        ],
    )
    def patch(self, request: Request, name: str) -> Response:
        def edit() -> Response:
            agent = self.agent()
            _refuse_identity_change(agent, request.data)
            data = self.validated(PatchInputSerializer, request.data)
            expected = self.expected_version(body_version=data.get("expected_version"), required=True)
            change = services.agent_patch(
                agent_id=agent.agent_id,
                frontmatter=data.get("frontmatter"),
                body=data.get("body"),
                context=self.change_context(data["reason"]),
                expected_version=expected,
            )
            return self.agent_response(change.agent_id, stream_version=change.stream_version)

        return self.write(edit)

    @extend_schema(
        operation_id="agents_archive",
        request=ArchiveInputSerializer,
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER)],
        responses={200: out.AgentOutputSerializer, 404: out.ProblemSerializer, 409: out.ProblemSerializer},
    )
    def delete(self, request: Request, name: str) -> Response:
        return self.write(lambda: _status_change(self, services.agent_archive))


class AgentRestoreApi(ApiView):
    """`/agents/{name}/restore/`: undo an archive."""

    permissions = {"POST": ARCHIVE}

    @extend_schema(
        operation_id="agents_restore",
        request=ArchiveInputSerializer,
        parameters=[
            OpenApiParameter("If-Match", str, OpenApiParameter.HEADER),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
        ],
        responses={200: out.AgentOutputSerializer, 404: out.ProblemSerializer, 409: out.ProblemSerializer},
    )
    def post(self, request: Request, name: str) -> Response:
        return self.write(lambda: self.idempotent(lambda: _status_change(self, services.agent_restore)))


class RevertInputSerializer(serializers.Serializer):
    to = serializers.CharField(
        max_length=100, help_text="The revision to go back to: 3, a label or @timestamp"
    )
    reason = out.reason_field


class AgentRevertApi(ApiView):
    """`/agents/{name}/revert/`: a new revision with an earlier revision's content."""

    permissions = {"POST": CHANGE}

    @extend_schema(
        operation_id="agents_revert",
        request=RevertInputSerializer,
        parameters=[
            OpenApiParameter("If-Match", str, OpenApiParameter.HEADER),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
        ],
        responses={
            200: out.AgentOutputSerializer,
            400: out.ProblemSerializer,
            404: out.ProblemSerializer,
            409: out.ProblemSerializer,
            412: out.ProblemSerializer,
        },
        examples=[OpenApiExample("revert", value={"to": "2", "reason": "r3 broke the reviews"})],
    )
    def post(self, request: Request, name: str) -> Response:
        def revert() -> Response:
            agent = self.agent()
            data = self.validated(RevertInputSerializer, request.data)
            target = revision_resolve(agent=agent, ref=data["to"])
            change = services.agent_revert(
                agent_id=agent.agent_id,
                to_revision=target.revision,
                context=self.change_context(data["reason"]),
                expected_version=self.expected_version(body_version=None, required=False),
            )
            return self.agent_response(change.agent_id, stream_version=change.stream_version)

        return self.write(lambda: self.idempotent(revert))
