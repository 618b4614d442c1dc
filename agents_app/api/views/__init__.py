"""REST API v1 (API.md), one module per resource. Views are thin: they parse the request, call
one service or selector, and shape the answer; every error leaves through agents_app.api.errors
as a problem body. Idempotent writes: agents_app.api.idempotency.
"""

from agents_app.api.views.agents import AgentApi, AgentRestoreApi, AgentRevertApi, AgentsApi
from agents_app.api.views.audit import EventApi, EventListApi
from agents_app.api.views.base import ApiView, PreconditionFailed
from agents_app.api.views.diff import AgentBlameApi, AgentDiffApi, CrossDiffApi
from agents_app.api.views.labels import AgentLabelApi, AgentLabelsApi
from agents_app.api.views.operations import HealthApi, ProjectionListApi, ProjectionRebuildApi, ReadyApi
from agents_app.api.views.permissions import PermissionsReportApi
from agents_app.api.views.revisions import RevisionApi, RevisionListApi

__all__ = [
    "AgentApi",
    "AgentBlameApi",
    "AgentDiffApi",
    "AgentLabelApi",
    "AgentLabelsApi",
    "AgentRestoreApi",
    "AgentRevertApi",
    "AgentsApi",
    "ApiView",
    "CrossDiffApi",
    "EventApi",
    "EventListApi",
    "HealthApi",
    "PermissionsReportApi",
    "PreconditionFailed",
    "ProjectionListApi",
    "ProjectionRebuildApi",
    "ReadyApi",
    "RevisionApi",
    "RevisionListApi",
]
