"""The admin's security views of effective permissions (issue 15): the registry-wide report
page, the notes shown after a save, and the history's badges.

Kept beside agents_app/admin.py, which wires them in: every read is a selector
(`permissions_report`, `revision_notes`, `revision_history`), and every classification
is agents_app.dialects' through `selectors.permission_changes_between`.
"""

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from agents_app import selectors
from agents_app.diff import permission_changes_html
from agents_app.models import AgentCurrent
from agents_app.permissions import VIEW
from agents_app.selectors import parse_instant, permissions_report, revision_notes
from agents_app.services import AgentChange
from events.runner import projections_wait

# Agents named per tool, mode or server on the report page; the rest are counted (and, for a
# tool, one click away: the agent list filtered by "can use").
REPORT_NAMES_SHOWN = 50
# Agents with document warnings listed on the report page.
REPORT_WARNED_SHOWN = 100
# Warnings listed in the message after a save; the agent page lists them all.
SAVED_WARNINGS_SHOWN = 10
SEVERITIES = ("low", "medium", "high")


def instant_or_utc(text: str):
    """A date-time from a picker (no zone: UTC, as the page says) or ISO 8601 with a zone."""
    text = text.strip()
    try:
        return parse_instant(text)
    except ValueError as exc:
        if "time zone" not in str(exc):
            raise
    return parse_instant(text + "Z")


class ReportRangeForm(forms.Form):
    """The report's time range for widened changes: both ends optional, UTC when no zone is given."""

    since = forms.CharField(required=False, label="From", max_length=64)
    until = forms.CharField(required=False, label="Until", max_length=64)

    def _instant(self, name: str):
        text = self.cleaned_data.get(name, "").strip()
        if not text:
            return None
        try:
            return instant_or_utc(text)
        except ValueError as exc:
            raise forms.ValidationError(f"“{text}” {exc}.") from None

    def clean_since(self):
        return self._instant("since")

    def clean_until(self):
        return self._instant("until")

    def clean(self):
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since is not None and until is not None and since > until:
            raise forms.ValidationError("“From” is after “Until”: no change can be in that range.")
        return cleaned


def _named(names: list[str], agent_ids: dict[str, uuid.UUID], more_url: str = "") -> dict[str, Any]:
    """A bounded list of agents to link: at most REPORT_NAMES_SHOWN, the rest counted."""
    return {
        "agents": [(name, _agent_url(agent_ids.get(name))) for name in names[:REPORT_NAMES_SHOWN]],
        "more": max(len(names) - REPORT_NAMES_SHOWN, 0),
        "more_url": more_url,
        "count": len(names),
    }


def _agent_url(agent_id: uuid.UUID | None) -> str:
    return reverse("admin:agents_app_agentcurrent_change", args=[agent_id]) if agent_id else ""


def permissions_report_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """The registry-wide security report: selectors.permissions_report, as GET /permissions/report/
    answers it, with the agents linked and a from/until form for the widened changes."""
    if not request.user.has_perm(VIEW):  # the permission the REST report asks for
        raise PermissionDenied
    form = ReportRangeForm(request.GET or None)
    since = until = None
    if form.is_bound and form.is_valid():
        since, until = form.cleaned_data["since"], form.cleaned_data["until"]
    range_valid = not form.is_bound or form.is_valid()
    report = permissions_report(since=since, until=until)
    ids = report["agent_ids"]
    changelist = reverse("admin:agents_app_agentcurrent_changelist")
    compare = "admin:agents_app_agentcurrent_compare"
    widened = [
        {
            **entry,
            "agent_url": _agent_url(entry["agent_id"]),
            "compare_url": reverse(compare, args=[entry["agent_id"]])
            + f"?a={entry['revision'] - 1}&b={entry['revision']}",
            "severity": _highest(entry["changes"]),
        }
        for entry in report["widened"]
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": AgentCurrent._meta,
        "title": "Permissions report",
        "form": form,
        "range_valid": range_valid,
        "since": since,
        "until": until,
        # What the pickers show: the instant read (in UTC, the picker's format), else the text sent.
        "since_value": _picker_value(since, form, "since"),
        "until_value": _picker_value(until, form, "until"),
        "tools": [
            (tool, _named(names, ids, f"{changelist}?{urlencode({'can': tool})}"))
            for tool, names in report["tools"].items()
        ],
        "every_tool": [
            {"agent": entry["agent"], "url": _agent_url(ids.get(entry["agent"])), "denied": entry["denied"]}
            for entry in report["every_tool"][:REPORT_NAMES_SHOWN]
        ],
        "every_tool_more": max(len(report["every_tool"]) - REPORT_NAMES_SHOWN, 0),
        "modes": [(mode, _named(names, ids)) for mode, names in report["modes"].items()],
        "mcp_servers": [(server, _named(names, ids)) for server, names in report["mcp_servers"].items()],
        "warned": [
            {**entry, "url": _agent_url(ids.get(entry["agent"]))}
            for entry in report["warnings"][:REPORT_WARNED_SHOWN]
        ],
        "warned_more": max(len(report["warnings"]) - REPORT_WARNED_SHOWN, 0),
        # Shown only for a range that was read: an invalid one shows its error instead.
        "widened": widened if range_valid else [],
        "truncated": report["truncated"] and range_valid,
        "max_revisions": selectors.REPORT_MAX_REVISIONS,
        "names_shown": REPORT_NAMES_SHOWN,
    }
    return TemplateResponse(request, "admin/agents_app/agentcurrent/permissions_report.html", context)


def _picker_value(instant, form: ReportRangeForm, name: str) -> str:
    if instant is not None:
        return f"{instant:%Y-%m-%dT%H:%M:%S}"
    return str(form.data.get(name, "")) if form.is_bound else ""


def _highest(changes: list[dict[str, Any]]) -> str:
    severities = [change["severity"] for change in changes if change.get("severity") in SEVERITIES]
    return max(severities, key=SEVERITIES.index) if severities else "medium"


def permission_badge(changes: list[dict[str, Any]]) -> dict[str, str] | None:
    """The history's flag for one revision: `widened` with the highest severity of its
    widenings; else `narrowed` or `changed`, shown neutrally; None when nothing changed."""
    widened = [change for change in changes if change["kind"] == "widened"]
    if widened:
        return {
            "kind": "widened",
            "severity": _highest(widened),
            "title": "; ".join(change["detail"] for change in widened),
        }
    for kind in ("narrowed", "changed"):
        matching = [change for change in changes if change["kind"] == kind]
        if matching:
            return {"kind": kind, "severity": "", "title": "; ".join(change["detail"] for change in matching)}
    return None


def warning_sentence(warning: Any) -> str:
    """A stored document warning as the reader sees it: "line 3: <message>" (rows from before
    migration 0009 hold plain text)."""
    if not isinstance(warning, dict):
        return str(warning)
    line = warning.get("line")
    return f"line {line}: {warning.get('message', '')}" if line else str(warning.get("message", ""))


def _line_of(warning: Any) -> int:
    line = warning.get("line") if isinstance(warning, dict) else None
    return line if isinstance(line, int) else 0


def notify_saved_revision(request: HttpRequest, *, change: AgentChange) -> None:
    """After a save that stored a revision: a warning listing its document warnings with their
    line numbers, and one saying what it widened; nothing when there is neither."""
    notes = revision_notes(agent_id=change.agent_id, revision=change.revision)
    if notes is None and change.position is not None:
        # The views apply a write when its transaction commits; one the append could not
        # apply inline (a worker held a view) is caught up here, as the REST answer does.
        projections_wait(position=change.position)
        notes = revision_notes(agent_id=change.agent_id, revision=change.revision)
    if notes is None:
        return  # still behind: the agent page it leads to says what the views have
    revision = change.revision
    if notes.warnings:
        # In the order of the file, so that the first ten are the first ten a reader meets.
        ordered = sorted(notes.warnings, key=_line_of)
        shown = [warning_sentence(warning) for warning in ordered[:SAVED_WARNINGS_SHOWN]]
        more = len(notes.warnings) - len(shown)
        count = len(notes.warnings)
        listed = "; ".join(shown) + (f"; and {more} more, listed on the agent page" if more else "")
        messages.warning(
            request,
            f"Revision {revision} is stored with {count} document warning{'s' if count != 1 else ''}: "
            + _sentence(listed),
        )
    widened = [change["detail"] for change in notes.changes if change["kind"] == "widened"]
    if widened:
        messages.warning(
            request, _sentence(f"This revision widens what the agent may do: {'; '.join(widened)}")
        )


def _sentence(text: str) -> str:
    """The text with a full stop, unless it already ends a sentence ("did you mean 'tools'?")."""
    return text if text.endswith((".", "?", "!")) else f"{text}."


def revision_page_view(
    model_admin: Any, request: HttpRequest, *, agent_id: uuid.UUID, revision: int
) -> HttpResponse:
    """One revision: who, when, why, what it changed in the effective permissions, its effective
    permissions and document warnings (with line numbers), and its file."""
    agent = model_admin._agent(request, agent_id)
    notes = revision_notes(agent_id=agent.agent_id, revision=revision)
    if notes is None:
        raise Http404("no such revision")
    row = notes.row
    from agents_app.admin import _attach_git  # admin.py imports this module

    _attach_git(agent.agent_id, [row])
    return TemplateResponse(
        request,
        "admin/agents_app/agentcurrent/revision.html",
        model_admin._context(
            request,
            agent,
            f"{agent.name}: revision {revision}",
            row=row,
            changes=notes.changes,
            changes_html=permission_changes_html(notes.changes),
            badge=permission_badge(notes.changes),
        ),
    )
