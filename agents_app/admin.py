"""Admin of agents_app: agents edited as raw files through the services, their history,
comparisons, reverts and labels; and API tokens.

The agent pages sit over the `agents.current` view but never write it: every save calls a
service, which appends events, and the projections update the view.
"""

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from agents_app import event_types as agent_event_types
from agents_app import services
from agents_app.admin_permissions import (
    instant_or_utc,
    notify_saved_revision,
    permission_badge,
    permissions_report_view,
    revision_page_view,
)
from agents_app.dialects import DEFAULT_DIALECT, DIALECTS, file_name_of
from agents_app.diff import DiffSide, html_diff, revision_diff
from agents_app.exceptions import (
    AgentError,
    AgentNotFound,
    DocumentInvalid,
    InvalidCommand,
    InvalidField,
    InvalidReference,
)
from agents_app.labels import label_error
from agents_app.models import AgentCurrent, ApiToken, WebhookDelivery, WebhookSubscription
from agents_app.permissions import ARCHIVE, CHANGE, MANAGE_TOKENS, PUBLISH, VIEW
from agents_app.promotions.exceptions import LabelProtected
from agents_app.promotions.models import LabelPolicy, PromotionRequest
from agents_app.promotions.selectors import promotion_list, protected_labels
from agents_app.promotions.services import (
    MAX_APPROVALS,
    label_policy_set,
    promotion_approve,
    promotion_reject,
    promotion_request,
    promotion_withdraw,
)
from agents_app.selectors import (
    agents_current,
    agents_current_dated,
    agents_that_can,
    changes_since,
    label_moves_page,
    registry_at,
    revision_at,
    revision_blame,
    revision_get,
    revision_history,
    revision_list,
    revision_provenance,
)
from agents_app.tokens import MAX_DAYS, MIN_DAYS, api_token_create, api_token_revoke, api_token_state
from agents_app.webhooks.selectors import webhook_deliveries
from agents_app.webhooks.services import (
    WebhookInvalid,
    webhook_create,
    webhook_redeliver,
    webhook_update,
    webhook_validate,
)
from events.exceptions import ConcurrencyConflict
from events.timefmt import readable

admin.site.site_header = "agent-registry"
admin.site.site_title = "agent-registry"
admin.site.index_title = "Agents, their history and the event log"

EDITOR_ROWS = 30
# Agents per page of the "registry as of" list (read from the revisions view, by name).
AS_OF_PAGE = 50
# Changes listed on the conflict page; the rest are counted.
CONFLICT_CHANGES = 20


# ------------------------------------------------------------------------------
# Agents
# ------------------------------------------------------------------------------
class OpenedVersionForm(forms.Form):
    """A form that carries the (stream version, revision) of the agent its page was rendered
    with, signed so that it cannot be forged: the command is then checked against what the
    user saw, not against what the agent is when the POST arrives (a revert confirmed on a
    stale diff, an archive of an agent someone has just changed, went through otherwise)."""

    opened = forms.CharField(widget=forms.HiddenInput, required=False)

    def opened_version(self, agent_id: uuid.UUID) -> tuple[int, int]:
        """(stream version, revision) the page was rendered at; a forged value is refused."""
        try:
            version, revision = signing.loads(self.cleaned_data["opened"], salt=f"agent-edit:{agent_id}")
        except (signing.BadSignature, ValueError, TypeError):
            raise forms.ValidationError(
                "The form is damaged; reload the page and make your change again."
            ) from None
        return int(version), int(revision)


class AgentFileForm(OpenedVersionForm):
    """The raw file, the reason, and the version the editor opened (signed, so it cannot be forged)."""

    content = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": EDITOR_ROWS, "class": "agent-editor", "spellcheck": "false"}),
        help_text="The whole agent file: frontmatter between --- lines, then the body.",
    )
    reason = forms.CharField(
        max_length=services.MAX_REASON,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="Why you make this change: it is kept with the revision for everyone to see.",
    )

    def content_for(self, existing: str | None) -> str:
        """The submitted file with the line endings the agent already uses.

        Browsers send every textarea line ending as CRLF; taken as is, a one-word edit of an
        LF file would change every line of it.
        """
        content = self.cleaned_data["content"].replace("\r\n", "\n")
        if existing is not None and "\r\n" in existing:
            content = content.replace("\n", "\r\n")
        return content


class AgentAddForm(AgentFileForm):
    """The add page's form: the file, and the runtime it is for (the name when its file has none)."""

    dialect = forms.ChoiceField(
        choices=[(key, key) for key in DIALECTS],
        initial=DEFAULT_DIALECT,
        required=False,  # a form posted without it (a script, an older page) is Claude Code's
        help_text="claude-code: .claude/agents/<name>.md; copilot: .github/agents/<name>.agent.md."
        " It decides how the permissions are read, and cannot change later.",
    )
    name = forms.CharField(
        required=False,
        max_length=64,
        help_text="Only for a copilot file without a name key (its file name gives it otherwise).",
    )

    def clean_dialect(self) -> str:
        return self.cleaned_data["dialect"] or DEFAULT_DIALECT


def opened_token(agent: AgentCurrent) -> str:
    return signing.dumps([agent.stream_version, agent.revision], salt=f"agent-edit:{agent.agent_id}")


class ReasonForm(OpenedVersionForm):
    reason = forms.CharField(
        max_length=services.MAX_REASON,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="Why: kept with the change.",
    )


class LabelForm(OpenedVersionForm):
    label = forms.CharField(
        max_length=64,
        help_text="e.g. production or staging: lowercase letters, digits, '.', '_' or '-'.",
    )
    revision = forms.IntegerField(
        min_value=0,
        help_text="The revision the label points at (0 removes it; so does the Remove button below).",
    )
    reason = forms.CharField(
        max_length=services.MAX_REASON, required=False, widget=forms.TextInput(attrs={"size": 80})
    )

    def clean_label(self) -> str:
        label = self.cleaned_data["label"]
        if (problem := label_error(label)) is not None:
            raise forms.ValidationError(f"The label {problem}.")
        return label


def _apply_problems(form: forms.Form, exc: AgentError) -> None:
    """Put a domain error next to the field it concerns, with its line number."""
    if isinstance(exc, DocumentInvalid):
        for problem in exc.problems:
            where = f"line {problem.line}: " if problem.line else ""
            form.add_error("content", f"{where}{problem.field}: {problem.message}")
    elif isinstance(exc, InvalidField) and exc.field in form.fields:
        form.add_error(exc.field, exc.message)
    else:
        form.add_error(None, str(exc))


class ToolFilter(admin.SimpleListFilter):
    title = "tool"
    parameter_name = "tool"

    def lookups(self, request, model_admin):
        tools: set[str] = set()
        for declared in (
            model_admin.get_queryset(request).exclude(tools=None).values_list("tools", flat=True)[:5000]
        ):
            tools.update(declared or [])
        return [(tool, tool) for tool in sorted(tools)[:100]]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(tools__icontains=json.dumps(self.value()))
        return queryset


class CanFilter(ToolFilter):
    """What an agent can effectively do: no tools key grants every tool, disallowedTools removes."""

    title = "can use (effective)"
    parameter_name = "can"

    def queryset(self, request, queryset):
        tool = self.value()
        return agents_that_can(queryset, tool=tool) if tool else queryset


class LabelFilter(admin.SimpleListFilter):
    title = "label"
    parameter_name = "label"

    def lookups(self, request, model_admin):
        labels: set[str] = set()
        for assigned in (
            model_admin.get_queryset(request).exclude(labels={}).values_list("labels", flat=True)[:5000]
        ):
            labels.update(assigned)
        return [(label, label) for label in sorted(labels)[:100]]

    def queryset(self, request, queryset):
        return queryset.filter(labels__has_key=self.value()) if self.value() else queryset


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        models = model_admin.get_queryset(request).exclude(model="").values_list("model", flat=True)
        return [(model, model) for model in models.order_by("model").distinct()[:50]]

    def queryset(self, request, queryset):
        return queryset.filter(model=self.value()) if self.value() else queryset


class StatusFilter(admin.SimpleListFilter):
    """Active agents by default; archived ones under their own filter, where they can be restored."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("archived", "Archived"), ("all", "All")]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Active",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == "all":
            return queryset
        return queryset.filter(status="archived" if self.value() == "archived" else "active")


class AgentChangeList(ChangeList):
    def url_for_result(self, result: Model) -> str:
        # Rows of the view are rebuilt with new primary keys; the agent id is forever.
        assert isinstance(result, AgentCurrent)
        return reverse("admin:agents_app_agentcurrent_change", args=[result.agent_id])


@admin.register(AgentCurrent)
class AgentAdmin(admin.ModelAdmin):
    """Agents as people edit them: the raw file, a reason, and the full history."""

    list_display = [
        "name",
        "model",
        "tool_list",
        "revision",
        "status",
        "label_list",
        "updated_by",
        "when",
    ]
    list_filter = [StatusFilter, ModelFilter, ToolFilter, CanFilter, LabelFilter]
    search_fields = ["name", "description"]
    ordering = ["name"]
    list_per_page = 50
    # No COUNT(*) over the whole view for every page: 10,000 agents page just as fast.
    show_full_result_count = False

    # -- permissions: the agent permissions, not Django's per-model defaults --------------------
    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(VIEW)

    def has_add_permission(self, request):
        return request.user.has_perm(CHANGE)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm(CHANGE)

    def has_delete_permission(self, request, obj=None):
        return False  # archiving is a command with a reason, on its own page

    def has_module_permission(self, request):
        return request.user.has_perm(VIEW)

    def get_actions(self, request):
        return {}

    # -- the list --------------------------------------------------------------------------------
    def get_queryset(self, request):
        return agents_current_dated()

    def changelist_view(self, request, extra_context=None):
        if "at" in request.GET:
            return self.registry_at_view(request)
        return super().changelist_view(request, {"title": "Agents", **(extra_context or {})})

    def registry_at_view(self, request):
        """`?at=<date-time>`: every agent as it was then (selectors.registry_at), a page at a time."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            at = _instant(request.GET["at"])
        except ValueError as exc:
            messages.error(request, f"“{request.GET['at']}” {exc}.")
            return HttpResponseRedirect(reverse("admin:agents_app_agentcurrent_changelist"))
        try:
            page = max(int(request.GET.get("page", 1)), 1)
        except ValueError:
            page = 1
        state = registry_at(at=at)
        start = (page - 1) * AS_OF_PAGE
        # One row more than shown says whether there is a next page, without counting them all.
        shown = state.rows.defer("content", "line_origins", "key_origins")
        rows = list(shown[start : start + AS_OF_PAGE + 1])
        return TemplateResponse(
            request,
            "admin/agents_app/agentcurrent/registry_at.html",
            self._context(
                request,
                None,
                f"The registry as of {readable(at)}",
                at=at,
                at_param=request.GET["at"],
                picker_value=f"{at:%Y-%m-%dT%H:%M:%S}",
                rows=[(row, row.agent_id in state.archived) for row in rows[:AS_OF_PAGE]],
                page=page,
                has_next=len(rows) > AS_OF_PAGE,
            ),
        )

    def get_changelist(self, request, **kwargs):
        return AgentChangeList

    @admin.display(description="tools")
    def tool_list(self, agent: AgentCurrent) -> str:
        return "all" if agent.tools is None else ", ".join(agent.tools)

    @admin.display(description="revised (recorded)", ordering="revised_at")
    def when(self, agent: AgentCurrent) -> str:
        """When the current revision was made (a git import: when its commit landed) and, beside
        it, when this registry stored it, if that differs."""
        return _when_pair(getattr(agent, "revised_at", None), getattr(agent, "revised_recorded_at", None))

    @admin.display(description="labels")
    def label_list(self, agent: AgentCurrent) -> str:
        return ", ".join(f"{label}→{revision}" for label, revision in agent.labels.items())

    # -- pages -----------------------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        name = "agents_app_agentcurrent"
        return [
            *self.permission_urls(),
            path("<uuid:agent_id>/compare/", view(self.compare_view), name=f"{name}_compare"),
            path("<uuid:agent_id>/blame/", view(self.blame_view), name=f"{name}_blame"),
            path(
                "<uuid:agent_id>/revisions/<int:revision>/raw/",
                view(self.raw_view),
                name=f"{name}_raw",
            ),
            path(
                "<uuid:agent_id>/revisions/<int:revision>/revert/",
                view(self.revert_view),
                name=f"{name}_revert",
            ),
            path("<uuid:agent_id>/archive/", view(self.archive_view), name=f"{name}_archive"),
            path("<uuid:agent_id>/restore/", view(self.restore_view), name=f"{name}_restore"),
            path("<uuid:agent_id>/labels/", view(self.labels_view), name=f"{name}_labels"),
            path(
                "<uuid:agent_id>/labels/<str:label>/remove/",
                view(self.label_remove_view),
                name=f"{name}_label_remove",
            ),
            *super().get_urls(),
        ]

    def permission_urls(self) -> list:
        """The security report and the page of one revision (agents_app.admin_permissions)."""
        view = self.admin_site.admin_view
        name = "agents_app_agentcurrent"
        return [
            path(
                "permissions/",
                view(lambda request: permissions_report_view(self, request)),
                name=f"{name}_permissions_report",
            ),
            path(
                "<uuid:agent_id>/revisions/<int:revision>/",
                view(lambda request, **kwargs: revision_page_view(self, request, **kwargs)),
                name=f"{name}_revision",
            ),
        ]

    def _agent(self, request, agent_id) -> AgentCurrent:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            agent_uuid = agent_id if isinstance(agent_id, uuid.UUID) else uuid.UUID(str(agent_id))
        except ValueError:
            raise Http404("no such agent") from None
        agent = agents_current_dated().filter(agent_id=agent_uuid).first()
        if agent is None:
            raise Http404("no such agent")
        return agent

    def _context(self, request, agent: AgentCurrent | None, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "agent": agent,
            "can_change": self.has_change_permission(request),
            "can_archive": request.user.has_perm(ARCHIVE),
            "can_publish": request.user.has_perm(PUBLISH),
            **extra,
        }

    def _context_for(self, request) -> services.ChangeContext:
        return services.ChangeContext(
            actor=request.user.get_username(),
            source="admin",
            reason="",
            request_id=getattr(request, "request_id", None),
        )

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = AgentAddForm(request.POST or None, initial={"content": NEW_AGENT_TEMPLATE})
        if request.method == "POST" and form.is_valid():
            context = self._context_for(request)
            try:
                change = services.agent_create(
                    content=form.content_for(None),
                    context=_with_reason(context, form.cleaned_data["reason"]),
                    dialect=form.cleaned_data["dialect"],
                    name=form.cleaned_data["name"] or None,
                    name_from="the name field",
                )
            except AgentError as exc:
                _apply_problems(form, exc)
            else:
                messages.success(request, f"Created {change.name} (revision 1).")
                notify_saved_revision(request, change=change)
                return HttpResponseRedirect(
                    reverse("admin:agents_app_agentcurrent_change", args=[change.agent_id])
                )
        return TemplateResponse(
            request,
            "admin/agents_app/agentcurrent/edit.html",
            self._context(request, None, "Add agent", form=form, adding=True),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        agent = self._agent(request, object_id)
        if request.method == "GET" and "at" in request.GET:
            return self._as_of_view(request, agent)
        can_change = self.has_change_permission(request) and agent.status == "active"
        conflict = None
        if request.method == "POST":
            if not can_change:
                raise PermissionDenied
            form = AgentFileForm(request.POST)
            if form.is_valid():
                try:
                    version, revision = form.opened_version(agent.agent_id)
                    change = services.agent_revise(
                        agent_id=agent.agent_id,
                        content=form.content_for(agent.content),
                        context=_with_reason(self._context_for(request), form.cleaned_data["reason"]),
                        expected_version=version,
                    )
                except forms.ValidationError as exc:
                    form.add_error(None, exc)
                except ConcurrencyConflict:
                    conflict = _conflict(agent_id=agent.agent_id, opened=(version, revision))
                    agent = conflict["agent"]
                    # The user's text stays; the form now carries the version they have seen,
                    # so saving again (after merging) is a deliberate overwrite of it.
                    data = request.POST.copy()
                    data["opened"] = opened_token(agent)
                    form = AgentFileForm(data)
                    form.is_valid()
                except AgentError as exc:
                    _apply_problems(form, exc)
                else:
                    if change.changed:
                        messages.success(request, f"Saved {change.name} as revision {change.revision}.")
                        notify_saved_revision(request, change=change)
                    else:
                        messages.info(request, "The content is unchanged: nothing was saved.")
                    return HttpResponseRedirect(
                        reverse("admin:agents_app_agentcurrent_change", args=[change.agent_id])
                    )
        else:
            form = AgentFileForm(initial={"content": agent.content, "opened": opened_token(agent)})
        if not can_change:
            form.fields["content"].widget.attrs["readonly"] = True
        return TemplateResponse(
            request,
            "admin/agents_app/agentcurrent/edit.html",
            self._context(
                request,
                agent,
                f"{'Change' if can_change else 'View'} agent {agent.name}",
                form=form,
                adding=False,
                editable=can_change,
                conflict=conflict,
                revisions=revision_list(agent_id=agent.agent_id).order_by("-revision").defer("content")[:5],
            ),
        )

    def history_view(self, request, object_id, extra_context=None):
        agent = self._agent(request, object_id)
        history = revision_history(agent_id=agent.agent_id, limit=500)
        revisions: list[Any] = [row for row, _ in history]
        for row, (_, changes) in zip(revisions, history, strict=True):
            row.permission_badge = permission_badge(changes)
        _attach_git(agent.agent_id, revisions)
        newest = revisions[0].revision if revisions else 1
        return TemplateResponse(
            request,
            "admin/agents_app/agentcurrent/history.html",
            self._context(
                request,
                agent,
                f"History of {agent.name}",
                revisions=revisions,
                default_a=max(newest - 1, 1),
                default_b=newest,
                truncated=agent.revision > len(revisions),
            ),
        )

    def compare_view(self, request, agent_id):
        agent = self._agent(request, agent_id)
        try:
            a = int(request.GET.get("a", max(agent.revision - 1, 1)))
            b = int(request.GET.get("b", agent.revision))
            old, new = (
                revision_get(agent_id=agent.agent_id, revision=a),
                revision_get(agent_id=agent.agent_id, revision=b),
            )
        except (ValueError, OverflowError, AgentNotFound):
            messages.error(request, "Pick two revisions that exist.")
            return HttpResponseRedirect(
                reverse("admin:agents_app_agentcurrent_history", args=[agent.agent_id])
            )
        old_side, new_side = DiffSide.from_revision(old), DiffSide.from_revision(new)
        _attach_git(agent.agent_id, [old, new])
        return TemplateResponse(
            request,
            "admin/agents_app/agentcurrent/compare.html",
            self._context(
                request,
                agent,
                f"{agent.name}: revision {a} → {b}",
                old=old,
                new=new,
                diff_html=html_diff(old=old_side, new=new_side),
                summary=revision_diff(old=old_side, new=new_side),
            ),
        )

    def _as_of_view(self, request, agent: AgentCurrent):
        """The agent page at `?at=`: the revision that was current then (selectors.revision_at)."""
        now = reverse("admin:agents_app_agentcurrent_change", args=[agent.agent_id])
        try:
            at = _instant(request.GET["at"])
            row = revision_at(agent_id=agent.agent_id, at=at)
        except ValueError as exc:
            messages.error(request, f"“{request.GET['at']}” {exc}.")
            return HttpResponseRedirect(now)
        except AgentNotFound:
            messages.error(request, f"{agent.name} did not exist yet at {readable(at)}.")
            return HttpResponseRedirect(now)
        _attach_git(agent.agent_id, [row])
        return TemplateResponse(
            request,
            "admin/agents_app/agentcurrent/as_of.html",
            self._context(
                request,
                agent,
                f"{agent.name} as of {readable(at)}",
                at=at,
                row=row,
                picker_value=f"{at:%Y-%m-%dT%H:%M:%S}",
            ),
        )

    def blame_view(self, request, agent_id):
        """Each body line and frontmatter key with the revision that last wrote it (who, when, why).

        Bounded by the blamed file: selectors.revision_blame reads the origins the revisions
        projection stored, and the attribution columns of the revisions they name.
        """
        agent = self._agent(request, agent_id)
        ref = request.GET.get("ref", "").strip() or str(agent.revision)
        try:
            blamed = revision_blame(agent=agent, ref=ref)
        except (AgentNotFound, InvalidReference) as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(reverse("admin:agents_app_agentcurrent_blame", args=[agent.agent_id]))
        compare = reverse("admin:agents_app_agentcurrent_compare", args=[agent.agent_id])
        lines, previous = [], None
        for line in blamed["lines"]:
            # Like `git blame`: the change is named on the first line of each run it wrote.
            first = line["revision"] != previous
            previous = line["revision"]
            lines.append({**_blamed(line, compare), "first": first})
        return TemplateResponse(
            request,
            "admin/agents_app/agentcurrent/blame.html",
            self._context(
                request,
                agent,
                f"Blame of {agent.name}, revision {blamed['revision']}",
                blamed_revision=blamed["revision"],
                ref=request.GET.get("ref", ""),
                lines=lines,
                keys=[_blamed(key, compare) for key in blamed["frontmatter"]],
            ),
        )

    def raw_view(self, request, agent_id, revision):
        agent = self._agent(request, agent_id)
        try:
            row = revision_get(agent_id=agent.agent_id, revision=revision)
        except AgentNotFound:
            raise Http404("no such revision") from None
        response = HttpResponse(row.content, content_type="text/plain; charset=utf-8")
        file_name = file_name_of(f"{row.name}-r{row.revision}", row.dialect)
        response["Content-Disposition"] = f'inline; filename="{file_name}"'
        return response

    def _confirm(
        self,
        request,
        agent,
        *,
        title: str,
        question: str,
        action,
        allowed: bool,
        done: str = "",
        stores_revision: bool = False,
        **extra,
    ):
        """A confirmation page: `action(context, expected_version)` runs on POST, checked against
        the version the page was rendered with (OpenedVersionForm), never the one at POST time.
        `stores_revision`: the action stores a revision, whose warnings and widenings are told."""
        if not allowed:
            raise PermissionDenied
        conflict = None
        if request.method == "POST":
            form = ReasonForm(request.POST)
            if form.is_valid():
                try:
                    version, revision = form.opened_version(agent.agent_id)
                    context = _with_reason(self._context_for(request), form.cleaned_data["reason"])
                    change = action(context, version)
                except forms.ValidationError as exc:
                    form.add_error(None, exc)
                except ConcurrencyConflict:
                    conflict = _conflict(agent_id=agent.agent_id, opened=(version, revision))
                    form = _reopened(ReasonForm, request, conflict["agent"])
                except (AgentError, InvalidCommand) as exc:
                    form.add_error(None, str(exc))
                else:
                    messages.success(request, f"{title}: done ({change.name}, revision {change.revision}).")
                    if stores_revision and change.changed:
                        notify_saved_revision(request, change=change)
                    return HttpResponseRedirect(
                        done or reverse("admin:agents_app_agentcurrent_change", args=[agent.agent_id])
                    )
        else:
            form = ReasonForm(initial={"opened": opened_token(agent)})
        return TemplateResponse(
            request,
            "admin/agents_app/agentcurrent/confirm.html",
            self._context(
                request,
                agent,
                title,
                form=form,
                question=question,
                conflict=conflict,
                back=done or reverse("admin:agents_app_agentcurrent_change", args=[agent.agent_id]),
                **extra,
            ),
        )

    def revert_view(self, request, agent_id, revision):
        agent = self._agent(request, agent_id)
        try:
            target = revision_get(agent_id=agent.agent_id, revision=revision)
        except AgentNotFound:
            raise Http404("no such revision") from None
        current = revision_get(agent_id=agent.agent_id, revision=agent.revision)
        return self._confirm(
            request,
            agent,
            title=f"Revert {agent.name} to revision {revision}",
            question=f"Store the content of revision {revision} as a new revision {agent.revision + 1}?",
            allowed=self.has_change_permission(request) and agent.status == "active",
            stores_revision=True,
            action=lambda context, version: services.agent_revert(
                agent_id=agent.agent_id, to_revision=revision, context=context, expected_version=version
            ),
            diff_html=html_diff(old=DiffSide.from_revision(current), new=DiffSide.from_revision(target)),
        )

    def archive_view(self, request, agent_id):
        agent = self._agent(request, agent_id)
        return self._confirm(
            request,
            agent,
            title=f"Archive {agent.name}",
            question="Archive this agent? It keeps its history, leaves the list of active agents, and its "
            "name becomes free. You can restore it later.",
            allowed=request.user.has_perm(ARCHIVE) and agent.status == "active",
            action=lambda context, version: services.agent_archive(
                agent_id=agent.agent_id, context=context, expected_version=version
            ),
        )

    def restore_view(self, request, agent_id):
        agent = self._agent(request, agent_id)
        return self._confirm(
            request,
            agent,
            title=f"Restore {agent.name}",
            question="Restore this agent? It comes back under its name, if no other active agent took it.",
            allowed=request.user.has_perm(ARCHIVE) and agent.status == "archived",
            action=lambda context, version: services.agent_restore(
                agent_id=agent.agent_id, context=context, expected_version=version
            ),
        )

    def label_remove_view(self, request, agent_id, label):
        """Remove one label, from its button in the "Current labels" table: the confirmation
        page with a required reason, checked against the version the page showed."""
        agent = self._agent(request, agent_id)
        if label_error(label) is not None or (request.method == "GET" and label not in agent.labels):
            raise Http404("no such label")
        return self._confirm(
            request,
            agent,
            title=f"Remove label {label}",
            question=f"Remove the label {label} (now on revision {agent.labels.get(label, '?')})? "
            "The revision stays; only the label goes.",
            allowed=request.user.has_perm(PUBLISH),
            done=reverse("admin:agents_app_agentcurrent_labels", args=[agent.agent_id]),
            action=lambda context, version: services.agent_label_move(
                agent_id=agent.agent_id, label=label, revision=None, context=context, expected_version=version
            ),
        )

    def labels_view(self, request, agent_id):
        agent = self._agent(request, agent_id)
        if request.method == "POST" and not request.user.has_perm(PUBLISH):
            raise PermissionDenied
        conflict = None
        form = LabelForm(
            request.POST or None, initial={"revision": agent.revision, "opened": opened_token(agent)}
        )
        if request.method == "POST" and form.is_valid():
            revision = form.cleaned_data["revision"] or None
            try:
                # Checked against the version the page showed (its label table and revision),
                # not the one at POST time: see OpenedVersionForm.
                version, opened_revision = form.opened_version(agent.agent_id)
                services.agent_label_move(
                    agent_id=agent.agent_id,
                    label=form.cleaned_data["label"],
                    revision=revision,
                    context=_with_reason(self._context_for(request), form.cleaned_data["reason"]),
                    expected_version=version,
                )
            except forms.ValidationError as exc:
                form.add_error(None, exc)
            except ConcurrencyConflict:
                conflict = _conflict(agent_id=agent.agent_id, opened=(version, opened_revision))
                agent = conflict["agent"]
                form = _reopened(LabelForm, request, agent)
            except LabelProtected as exc:
                if revision is None:
                    form.add_error(None, str(exc))
                else:
                    return self._request_promotion(request, agent, form, revision)
            except (AgentError, InvalidCommand) as exc:
                form.add_error(None, str(exc))
            else:
                label = form.cleaned_data["label"]
                messages.success(
                    request,
                    f"Label {label} removed."
                    if revision is None
                    else f"Label {label} → revision {revision}.",
                )
                return HttpResponseRedirect(
                    reverse("admin:agents_app_agentcurrent_labels", args=[agent.agent_id])
                )
        try:
            before = int(request.GET["before"]) if "before" in request.GET else None
        except ValueError:
            before = None
        page = label_moves_page(agent_id=agent.agent_id, before=before)
        return TemplateResponse(
            request,
            "admin/agents_app/agentcurrent/labels.html",
            self._context(
                request,
                agent,
                f"Labels of {agent.name}",
                form=form,
                labels=sorted(agent.labels.items()),
                moves=page.moves,
                older_before=page.older_before,
                paged=before is not None,
                conflict=conflict,
                protected=protected_labels(),
                promotions=list(promotion_list(agent_id=agent.agent_id)[:50]),
            ),
        )

    def _request_promotion(self, request, agent: AgentCurrent, form: "LabelForm", revision: int):
        """A protected label: the move becomes a request that others approve (Promotions page)."""
        context = _with_reason(self._context_for(request), form.cleaned_data["reason"])
        try:
            row = promotion_request(
                agent_id=agent.agent_id, label=form.cleaned_data["label"], revision=revision, context=context
            )
        except AgentError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"Label {row.label} is protected: promotion to revision {revision} requested; it needs "
                f"{row.required_approvals} approval(s) by others on the Promotions page.",
            )
        return HttpResponseRedirect(reverse("admin:agents_app_agentcurrent_labels", args=[agent.agent_id]))


OpenedForm = TypeVar("OpenedForm", bound="OpenedVersionForm")


def _reopened(form_class: type[OpenedForm], request, agent: AgentCurrent) -> OpenedForm:
    """The submitted form again, now carrying the version the conflict page shows: submitting
    it once more is a deliberate decision about the agent as it is now."""
    data = request.POST.copy()
    data["opened"] = opened_token(agent)
    form = form_class(data)
    form.is_valid()
    return form


# A date-time from the picker (no zone: UTC, as the page says) or ISO 8601 with a zone.
_instant = instant_or_utc


def _blamed(item: dict[str, Any], compare: str) -> dict[str, Any]:
    """A blame line or key with its times readable and the link to the change that wrote it."""
    revision = item["revision"]
    return {
        **item,
        "occurred": readable(dt.datetime.fromisoformat(item["occurred_at"])),
        "recorded": readable(dt.datetime.fromisoformat(item["recorded_at"])),
        "compare_url": f"{compare}?a={max(revision - 1, 1)}&b={revision}",
    }


def _when_pair(occurred, recorded) -> str:
    """ "occurred" and, when it differs from it by a second or more, "(recorded ...)"."""
    if occurred is None:
        return readable(recorded)
    if recorded is None or abs((recorded - occurred).total_seconds()) < 1:
        return readable(occurred)
    return format_html(
        '{} <small class="agent-recorded">(recorded {})</small>', readable(occurred), readable(recorded)
    )


def _attach_git(agent_id: uuid.UUID, revisions: list) -> None:
    """Give each revision row `git`: its git provenance (commit, authors...) or None, in one query."""
    provenance = revision_provenance(agent_id=agent_id, versions=[row.stream_version for row in revisions])
    for row in revisions:
        found = provenance.get(row.stream_version)
        row.git = found["git"] if found else None


def _with_reason(context: services.ChangeContext, reason: str) -> services.ChangeContext:
    return services.ChangeContext(
        actor=context.actor, source=context.source, reason=reason, request_id=context.request_id
    )


def _conflict(*, agent_id: uuid.UUID, opened: tuple[int, int]) -> dict[str, Any]:
    """What changed since the editor opened the form: who did what, and the content diff."""
    agent = agents_current().get(agent_id=agent_id)
    version, revision = opened
    # At most CONFLICT_CHANGES events, without their content: the page lists who did what.
    changes = changes_since(agent_id=agent_id, version=version, revision=revision, limit=CONFLICT_CHANGES)
    more = max(agent.stream_version - version - len(changes), 0)
    diff = None
    if revision != agent.revision:
        old = revision_get(agent_id=agent_id, revision=revision)
        new = revision_get(agent_id=agent_id, revision=agent.revision)
        diff = html_diff(old=DiffSide.from_revision(old), new=DiffSide.from_revision(new))
    return {"agent": agent, "changes": changes, "more": more, "diff_html": diff, "opened_revision": revision}


NEW_AGENT_TEMPLATE = """---
name: my-agent
description: Use this agent when ...
tools: Read, Grep, Glob
---
You are ...
"""


# ------------------------------------------------------------------------------
# API tokens
# ------------------------------------------------------------------------------


class ApiTokenAddForm(forms.ModelForm):
    """Who and for how long: the token itself is generated, never typed in."""

    days = forms.IntegerField(
        min_value=MIN_DAYS,
        max_value=MAX_DAYS,
        initial=lambda: settings.API_TOKEN_DAYS,
        help_text="How many days the token is valid.",
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Create tokens (shown once) and revoke them; every other field is read-only."""

    add_form = ApiTokenAddForm
    add_fields = ["user", "name", "days"]
    # The digest is left out everywhere (list, detail, search): it is all that stands between
    # a database reader and a usable token.
    view_fields = [
        "prefix",
        "name",
        "user",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "status",
    ]
    list_display: list[str | Callable[[Any], str | bool]] = [*view_fields]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email", "name", "prefix"]
    ordering = ["-created_at"]
    actions = ["revoke_selected"]

    @admin.display(description="status")
    def status(self, token: ApiToken) -> str:
        return api_token_state(token=token)

    def get_fields(self, request, obj=None):
        return self.add_fields if obj is None else self.view_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.view_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            users = get_user_model()._default_manager.filter(is_active=True)
            # A token acts as its user: without this, staff allowed to add tokens could mint
            # one for a superuser and act as them through the API.
            if not request.user.is_superuser:
                users = users.filter(pk=request.user.pk)
            kwargs["queryset"] = users
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        # Tokens are never edited; revoking is the one change, through its action.
        return False

    def has_delete_permission(self, request, obj=None):
        # Revoking keeps the record of who had which token and when it was last used.
        return request.user.is_superuser

    def has_revoke_permission(self, request):
        return request.user.has_perm(MANAGE_TOKENS)

    def save_model(self, request, obj, form, change):
        if change:
            return
        token, plaintext = api_token_create(user=obj.user, name=obj.name, days=form.cleaned_data["days"])
        # The admin logs the addition and redirects with `obj`: make it the row just created.
        obj.pk = token.pk
        obj.refresh_from_db()
        messages.success(
            request,
            f"New API token for {token.user} (expires {readable(token.expires_at)}): {plaintext} "
            "- copy it now, it will not be shown again.",
        )

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)


# ------------------------------------------------------------------------------
# Webhooks
# ------------------------------------------------------------------------------


class WebhookForm(forms.ModelForm):
    """Event types and agent names as comma-separated text; every rule is the service's."""

    url = forms.URLField(
        max_length=2000,
        assume_scheme="https",
        help_text="https URL of the receiver",
        widget=forms.URLInput(attrs={"class": "vTextField"}),
    )
    events = forms.CharField(
        initial="*",
        widget=forms.TextInput(attrs={"class": "vTextField"}),
        help_text=f"Comma-separated event types ({', '.join(sorted(agent_event_types.ALL))}), or *",
    )
    agents = forms.CharField(
        required=False,
        help_text="Comma-separated agent names; empty: every agent",
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )

    class Meta:
        model = WebhookSubscription
        fields = ["url", "events", "agents", "description", "active"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["events"] = ", ".join(self.instance.event_types)
            self.initial["agents"] = ", ".join(self.instance.agent_names)

    def clean(self):
        cleaned = super().clean() or {}
        changes = {
            "url": cleaned.get("url") or self.data.get("url", ""),
            "event_types": _split(cleaned.get("events", "")),
            "agent_names": _split(cleaned.get("agents", "")),
            "description": cleaned.get("description", ""),
            "active": bool(cleaned.get("active")),
        }
        try:
            self.changes = webhook_validate(changes)
        except WebhookInvalid as exc:
            for field, message in exc.errors:
                self.add_error({"event_types": "events", "agent_names": "agents"}.get(field, field), message)
        return cleaned


def _split(text: str) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    """Subscriptions: the secret is shown once after adding; the delivery log is a linked page."""

    form = WebhookForm
    # Few columns, no filter sidebar and no bulk actions (deleting is on the change page):
    # the list must fit next to the admin's navigation at 900 px.
    list_display = ["url", "description", "events_shown", "state", "log_link"]
    list_display_links = ["url"]
    actions = None
    search_fields = ["url", "description"]
    readonly = [
        "checkpoint",
        "failures",
        "next_attempt_at",
        "paused_reason",
        "paused_at",
        "created_by",
        "created_at",
    ]
    ordering = ["id"]

    def get_fieldsets(self, request, obj=None):
        fieldsets: list[tuple[str | None, dict[str, list[str]]]] = [
            (None, {"fields": ["url", "events", "agents", "description", "active"]})
        ]
        if obj is not None:
            fieldsets.append(("Delivery", {"fields": self.readonly}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly

    @admin.display(description="events")
    def events_shown(self, subscription: WebhookSubscription) -> str:
        return ", ".join(subscription.event_types)

    @admin.display(description="state")
    def state(self, subscription: WebhookSubscription) -> str:
        # Short, so that the list fits 900 px; the reason is on the change page.
        if subscription.active:
            return f"backing off ({subscription.failures} failures)" if subscription.failures else "active"
        return f"paused ({subscription.failures} failures)" if subscription.failures else "paused"

    @admin.display(description="log")
    def log_link(self, subscription: WebhookSubscription) -> str:
        return format_html('<a href="{}">log</a>', self.log_link_url(subscription))

    def log_link_url(self, subscription: WebhookSubscription) -> str:
        return (
            reverse("admin:agents_app_webhookdelivery_changelist")
            + f"?subscription__id__exact={subscription.pk}"
        )

    def save_model(self, request, obj, form, change):
        if change:
            saved = webhook_update(subscription_id=obj.pk, changes=form.changes)
        else:
            saved, secret = webhook_create(**form.changes, created_by_id=request.user.pk)
            # Server-side (the session), for the one page that shows it: not in a message cookie.
            request.session[f"webhook-secret-{saved.pk}"] = secret
        obj.pk = saved.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # no relations edited here

    def response_add(self, request, obj, post_url_continue=None):
        # To the change page, the one place the new secret is shown.
        return HttpResponseRedirect(reverse("admin:agents_app_webhooksubscription_change", args=[obj.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        if request.method == "GET":
            extra_context["signing_secret"] = request.session.pop(f"webhook-secret-{object_id}", None)
        # Below the form at full width (a table in a read-only field is squeezed at 900 px).
        if str(object_id).isdigit():
            extra_context["recent_deliveries"] = [
                (delivery, reverse("admin:agents_app_webhookdelivery_redeliver", args=[delivery.pk]))
                for delivery in webhook_deliveries(subscription_id=int(object_id))[:10]
            ]
            changelist = reverse("admin:agents_app_webhookdelivery_changelist")
            extra_context["delivery_log_url"] = f"{changelist}?subscription__id__exact={object_id}"
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: read-only, newest first, with a Redeliver button per attempt."""

    list_display = ["when", "webhook", "event", "result", "redeliver_link"]
    actions = None
    # No filter sidebar: it would push the Redeliver buttons off a 900 px screen. A webhook's
    # own log is ?subscription__id__exact=N (linked from the webhook's list and change page).
    list_select_related = ["subscription"]
    ordering = ["-id"]
    list_per_page = 50

    @admin.display(description="attempted", ordering="id")
    def when(self, delivery: WebhookDelivery) -> str:
        return readable(delivery.attempted_at)

    @admin.display(description="webhook")
    def webhook(self, delivery: WebhookDelivery) -> str:
        url = reverse("admin:agents_app_webhooksubscription_change", args=[delivery.subscription.pk])
        return format_html('<a href="{}">{}</a>', url, delivery.subscription.pk)

    @admin.display(description="event (attempt)")
    def event(self, delivery: WebhookDelivery) -> str:
        again = ", redelivery" if delivery.redelivery else ""
        return f"{delivery.position} {delivery.event_type} ({delivery.attempt}{again})"

    @admin.display(description="result")
    def result(self, delivery: WebhookDelivery) -> str:
        status = "no answer" if delivery.status_code is None else str(delivery.status_code)
        if delivery.succeeded:
            return f"{status}, {delivery.latency_ms} ms"
        return f"{status}, {delivery.latency_ms} ms: {delivery.error[:100]}"

    @admin.display(description="")
    def redeliver_link(self, delivery: WebhookDelivery) -> str:
        url = reverse("admin:agents_app_webhookdelivery_redeliver", args=[delivery.pk])
        return format_html('<a class="button" href="{}">Redeliver</a>', url)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path(
                "<int:delivery_id>/redeliver/",
                self.admin_site.admin_view(self.redeliver_view),
                name="agents_app_webhookdelivery_redeliver",
            ),
            *super().get_urls(),
        ]

    def redeliver_view(self, request, delivery_id: int):
        if not request.user.has_perm("agents_app.change_webhooksubscription"):
            raise PermissionDenied
        delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_id).first()
        if delivery is None:
            raise Http404("no such delivery")
        back = reverse("admin:agents_app_webhookdelivery_changelist") + (
            f"?subscription__id__exact={delivery.subscription.pk}"
        )
        if request.method == "POST":
            webhook_redeliver(subscription_id=delivery.subscription.pk, delivery_id=delivery.pk)
            messages.success(request, f"Event {delivery.position} is queued to be sent once more.")
            return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Redeliver event {delivery.position}",
            "delivery": delivery,
            "back": back,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/agents_app/webhookdelivery/redeliver.html", context)


# ------------------------------------------------------------------------------
# Label policies and promotions (issue 17): every change through agents_app.promotions.services
# ------------------------------------------------------------------------------
class LabelPolicyForm(forms.ModelForm):
    reason = forms.CharField(required=False, max_length=2000, help_text="Why (kept in the event).")

    class Meta:
        model = LabelPolicy
        fields = ["label", "protected", "approvals", "approvals_when_widened"]

    def clean(self):
        cleaned = super().clean() or {}
        for field in ("approvals", "approvals_when_widened"):
            value = cleaned.get(field)
            if value is not None and not 1 <= value <= MAX_APPROVALS:
                self.add_error(field, f"From 1 to {MAX_APPROVALS}.")
        approvals, widened = cleaned.get("approvals"), cleaned.get("approvals_when_widened")
        if approvals and widened and widened < approvals:
            self.add_error("approvals_when_widened", "At least as many as approvals.")
        if (label := cleaned.get("label")) and (problem := label_error(label)) is not None:
            self.add_error("label", f"The label {problem}.")
        return cleaned


@admin.register(LabelPolicy)
class LabelPolicyAdmin(admin.ModelAdmin):
    """Staff set policies; each save is a registry.label_policy_set event (never a row edit alone)."""

    form = LabelPolicyForm
    list_display = ["label", "protected", "approvals", "approvals_when_widened", "updated_by", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        return ["label"] if obj else []

    def has_delete_permission(self, request, obj=None):
        return False  # unprotect instead: the history stays in the registry stream

    def save_model(self, request, obj, form, change):
        context = services.ChangeContext(
            actor=request.user.get_username(), source="admin", reason=form.cleaned_data.get("reason", "")
        )
        label_policy_set(
            label=obj.label,
            protected=obj.protected,
            approvals=obj.approvals,
            approvals_when_widened=obj.approvals_when_widened,
            context=context,
        )

    def get_changeform_initial_data(self, request):
        return {"approvals": 1, "approvals_when_widened": 1, "protected": True}


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])
    comment = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_comment(self) -> str:
        comment = self.cleaned_data["comment"]
        if not comment.strip():
            raise forms.ValidationError("A comment is required.")
        return comment


def _promotion_diff(row: PromotionRequest) -> Any:
    """The compare page's renderer, from the label's revision to the proposed one."""
    try:
        new = revision_get(agent_id=row.agent_id, revision=row.to_revision)
        if row.from_revision is None:
            return None
        old = revision_get(agent_id=row.agent_id, revision=row.from_revision)
    except AgentNotFound:
        return None
    return html_diff(old=DiffSide.from_revision(old), new=DiffSide.from_revision(new))


@admin.register(PromotionRequest)
class PromotionRequestAdmin(admin.ModelAdmin):
    """The "Promotions" page: pending requests first with their diff and decision forms, then history."""

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(VIEW)

    def has_module_permission(self, request):
        return request.user.has_perm(VIEW)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("", view(self.promotions_view), name="agents_app_promotionrequest_changelist"),
            path(
                "<uuid:request_id>/decide/", view(self.decide_view), name="agents_app_promotionrequest_decide"
            ),
            path(
                "<uuid:request_id>/withdraw/",
                view(self.withdraw_view),
                name="agents_app_promotionrequest_withdraw",
            ),
        ]

    def promotions_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = list(promotion_list()[:200])
        pending = [
            (row, _promotion_diff(row), DecisionForm(prefix=str(row.pk)))
            for row in rows
            if row.status == "pending"
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Promotions",
            "pending": pending,
            "history": [row for row in rows if row.status != "pending"],
            "can_publish": request.user.has_perm(PUBLISH),
            "username": request.user.get_username(),
        }
        return TemplateResponse(request, "admin/agents_app/promotionrequest/promotions.html", context)

    def _back(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:agents_app_promotionrequest_changelist"))

    def decide_view(self, request, request_id):
        if request.method != "POST":
            return self._back()
        if not request.user.has_perm(PUBLISH):
            raise PermissionDenied
        form = DecisionForm(request.POST, prefix=str(request_id))
        if not form.is_valid():
            messages.error(request, "Approving or rejecting needs a comment.")
            return self._back()
        context = services.ChangeContext(actor=request.user.get_username(), source="admin")
        action = promotion_approve if form.cleaned_data["decision"] == "approve" else promotion_reject
        try:
            row = action(request_id=request_id, comment=form.cleaned_data["comment"], context=context)
        except AgentError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, f"Request for {row.agent_name} {row.label} → {row.to_revision}: {row.status}."
            )
        return self._back()

    def withdraw_view(self, request, request_id):
        if request.method != "POST":
            return self._back()
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = services.ChangeContext(actor=request.user.get_username(), source="admin")
        try:
            promotion_withdraw(request_id=request_id, comment="", context=context)
        except AgentError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Request withdrawn.")
        return self._back()
