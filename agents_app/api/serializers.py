"""Shapes of API bodies shared by several views (each view nests its own Input serializer)."""

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from agents_app.models import AgentCurrent, AgentRevision
from agents_app.services import MAX_REASON


class TextField(serializers.CharField):
    """A CharField that takes JSON strings only: DRF's own stores `42` as "42"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class WholeNumberField(serializers.IntegerField):
    """An IntegerField that takes JSON integers only: DRF's own also takes "3", 3.0 and "3.0"."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


reason_field = TextField(
    max_length=MAX_REASON, required=False, allow_blank=True, default="", help_text="Why (the change message)."
)
next_page_field = serializers.CharField(
    allow_null=True, help_text="The URL of the next page; null on the last page."
)


class AgentOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The agent's id; never changes, even when the name does.")
    name = serializers.CharField()
    revision = serializers.IntegerField(help_text="The content version shown (1..N).")
    latest_revision = serializers.IntegerField()
    stream_version = serializers.IntegerField(help_text="Counts every event; the ETag.")
    status = serializers.ChoiceField(choices=AgentCurrent.Status.choices)
    content = serializers.CharField(help_text="The exact stored file.")
    sha256 = serializers.CharField()
    frontmatter = serializers.DictField()
    body = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    model = serializers.CharField(allow_blank=True)
    tools = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text="Declared tools; null: every tool."
    )
    labels = serializers.DictField(child=serializers.IntegerField(), help_text="label -> revision")
    warnings = serializers.ListField(
        child=serializers.DictField(), help_text="Document warnings: [{code, message, line?, suggestion?}]"
    )
    dialect = serializers.CharField(help_text="claude-code or copilot")
    permissions = serializers.DictField(help_text="Effective permissions (API.md, Permissions)")
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_by = serializers.CharField()
    updated_at = serializers.DateTimeField()


def document_warnings(stored: list[Any]) -> list[dict[str, Any]]:
    """Warnings as API.md shows them; rows written before migration 0009 may hold plain text."""
    return [item if isinstance(item, dict) else {"code": "warning", "message": str(item)} for item in stored]


def agent_payload(agent: AgentCurrent, shown: AgentRevision | None = None) -> dict[str, Any]:
    """The agent as the API shows it: current state, with the content of `shown` if given."""
    source: AgentCurrent | AgentRevision = shown or agent
    return {
        "id": agent.agent_id,
        "name": source.name,
        "revision": shown.revision if shown else agent.revision,
        "latest_revision": agent.revision,
        "stream_version": agent.stream_version,
        "status": agent.status,
        "content": source.content,
        "sha256": source.sha256,
        "frontmatter": source.frontmatter,
        "body": source.body,
        "description": source.description,
        "model": source.model,
        "tools": source.tools,
        "labels": agent.labels,
        "warnings": document_warnings(source.warnings),
        "dialect": source.dialect,
        "permissions": source.permissions,
        "created_by": agent.created_by,
        "created_at": agent.created_at,
        "updated_by": agent.updated_by,
        "updated_at": agent.updated_at,
    }


class AgentSummarySerializer(serializers.Serializer):
    """One row of a list: everything but the content."""

    id = serializers.UUIDField(source="agent_id")
    name = serializers.CharField()
    revision = serializers.IntegerField()
    status = serializers.CharField()
    description = serializers.CharField()
    model = serializers.CharField()
    tools = serializers.ListField(child=serializers.CharField(), allow_null=True)
    labels = serializers.DictField(child=serializers.IntegerField())
    sha256 = serializers.CharField()
    updated_by = serializers.CharField()
    updated_at = serializers.DateTimeField()


class AgentAtSerializer(serializers.Serializer):
    """One row of `GET /agents/?at=`: the revision that was current then."""

    id = serializers.UUIDField(source="agent_id")
    name = serializers.CharField()
    revision = serializers.IntegerField()
    description = serializers.CharField()
    model = serializers.CharField()
    tools = serializers.ListField(child=serializers.CharField(), allow_null=True)
    sha256 = serializers.CharField()
    actor = serializers.CharField()
    occurred_at = serializers.DateTimeField()


class AgentPageSerializer(serializers.Serializer):
    """A page of `GET /agents/`: AgentSummary rows, or AgentAt rows when listing `?at=`."""

    results = PolymorphicProxySerializer(
        component_name="AgentListRow",
        serializers=[AgentSummarySerializer, AgentAtSerializer],
        resource_type_field_name=None,
        many=True,
    )
    next = next_page_field


class RevisionSummarySerializer(serializers.Serializer):
    revision = serializers.IntegerField()
    name = serializers.CharField()
    event_type = serializers.CharField()
    reverted_to = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField()
    actor = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)
    source = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.source
    recorded_at = serializers.DateTimeField()
    occurred_at = serializers.DateTimeField()
    # Set by the view from the events' metadata (selectors.revision_provenance); null for
    # a change that was not imported from git (API.md, "Import provenance").
    provenance = serializers.DictField(allow_null=True, required=False)
    changed_keys = serializers.ListField(child=serializers.CharField())
    lines_added = serializers.IntegerField()
    lines_removed = serializers.IntegerField()
    file_lines_added = serializers.IntegerField()
    file_lines_removed = serializers.IntegerField()


class RevisionPageSerializer(serializers.Serializer):
    results = RevisionSummarySerializer(many=True)
    next = next_page_field


class RevisionDetailSerializer(RevisionSummarySerializer):
    content = serializers.CharField()
    frontmatter = serializers.DictField()
    body = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    model = serializers.CharField(allow_blank=True)
    tools = serializers.ListField(child=serializers.CharField(), allow_null=True)
    warnings = serializers.SerializerMethodField()
    dialect = serializers.CharField()
    permissions = serializers.DictField()

    def get_warnings(self, row) -> list[dict[str, Any]]:
        return document_warnings(row.warnings)


class DiffSideSerializer(serializers.Serializer):
    agent = serializers.CharField()
    revision = serializers.IntegerField()
    sha256 = serializers.CharField()
    actor = serializers.CharField()
    recorded_at = serializers.DateTimeField()


class DiffOutputSerializer(serializers.Serializer):
    """The JSON diff (API.md, "Diff")."""

    from_ = DiffSideSerializer()
    to = DiffSideSerializer()
    identical = serializers.BooleanField()
    frontmatter = serializers.DictField(help_text="added, removed and changed keys")
    tools = serializers.DictField(help_text="added, removed, from_all, to_all")
    body = serializers.DictField(help_text="additions, deletions, unified")
    warnings = serializers.ListField(child=serializers.DictField())
    permissions = serializers.DictField(help_text="from, to, widened, changes (API.md, Diff)")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class EventSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    event_id = serializers.UUIDField()
    stream_id = serializers.UUIDField()
    stream_version = serializers.IntegerField()
    type = serializers.CharField()
    schema_version = serializers.IntegerField()
    data = serializers.DictField()  # type: ignore[assignment]  # a declared field, not Serializer.data
    metadata = serializers.DictField()
    recorded_at = serializers.DateTimeField()
    hash = serializers.CharField()


class EventDetailSerializer(EventSerializer):
    previous_hash = serializers.CharField(
        allow_null=True, help_text="Hash of the stream's previous event; null for its first."
    )


class EventPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    next = next_page_field


class ProblemSerializer(serializers.Serializer):
    """An error (RFC 9457)."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField(), required=False)  # type: ignore[assignment]


class PermissionsReportSerializer(serializers.Serializer):
    """GET /permissions/report/."""

    tools = serializers.DictField(help_text="tool -> agents that declare it (and are not denied it)")
    every_tool = serializers.ListField(child=serializers.DictField(), help_text="[{agent, denied}]")
    modes = serializers.DictField(help_text="permission mode -> agents")
    mcp_servers = serializers.DictField(help_text="MCP server -> agents")
    warnings = serializers.ListField(child=serializers.DictField(), help_text="[{agent, warnings}]")
    widened = serializers.ListField(
        child=serializers.DictField(),
        help_text="[{agent, agent_id, revision, actor, reason, recorded_at, changes}]",
    )
    truncated = serializers.BooleanField(help_text="More revisions in the range than were classified")
