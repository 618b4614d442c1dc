"""Routes of REST API v1 (API.md)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agents_app.api import views, webhooks
from agents_app.api.views import promotions

app_name = "api"

urlpatterns = [
    path("agents/", views.AgentsApi.as_view(), name="agents"),
    path("agents/<str:name>/", views.AgentApi.as_view(), name="agent"),
    path("agents/<str:name>/restore/", views.AgentRestoreApi.as_view(), name="agent-restore"),
    path("agents/<str:name>/revert/", views.AgentRevertApi.as_view(), name="agent-revert"),
    path("agents/<str:name>/revisions/", views.RevisionListApi.as_view(), name="revisions"),
    path("agents/<str:name>/revisions/<int:revision>/", views.RevisionApi.as_view(), name="revision"),
    path("agents/<str:name>/diff/", views.AgentDiffApi.as_view(), name="agent-diff"),
    path("agents/<str:name>/blame/", views.AgentBlameApi.as_view(), name="agent-blame"),
    path("agents/<str:name>/labels/", views.AgentLabelsApi.as_view(), name="labels"),
    path("agents/<str:name>/labels/<str:label>/", views.AgentLabelApi.as_view(), name="label"),
    path("diff/", views.CrossDiffApi.as_view(), name="diff"),
    path("permissions/report/", views.PermissionsReportApi.as_view(), name="permissions-report"),
    path("events/", views.EventListApi.as_view(), name="events"),
    path("events/<int:position>/", views.EventApi.as_view(), name="event"),
    path("projections/", views.ProjectionListApi.as_view(), name="projections"),
    path("projections/<str:name>/rebuild/", views.ProjectionRebuildApi.as_view(), name="projection-rebuild"),
    path("healthz", views.HealthApi.as_view(), name="healthz"),
    path("readyz", views.ReadyApi.as_view(), name="readyz"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The template puts the Content-Security-Policy nonce on the page's inline script and style.
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api:schema", template_name="agents_app/swagger_ui.html"),
        name="docs",
    ),
    # Promotions of protected labels (API.md, "Promotions").
    path("labels/<str:label>/policy/", promotions.LabelPolicyApi.as_view(), name="label-policy"),
    path("promotions/", promotions.PromotionListApi.as_view(), name="promotions"),
    path("promotions/<str:request_id>/", promotions.PromotionApi.as_view(), name="promotion"),
    path(
        "promotions/<str:request_id>/approve/",
        promotions.PromotionApproveApi.as_view(),
        name="promotion-approve",
    ),
    path(
        "promotions/<str:request_id>/reject/",
        promotions.PromotionRejectApi.as_view(),
        name="promotion-reject",
    ),
    path(
        "promotions/<str:request_id>/withdraw/",
        promotions.PromotionWithdrawApi.as_view(),
        name="promotion-withdraw",
    ),
    # Webhooks (staff): subscriptions and their delivery log.
    path("webhooks/", webhooks.WebhooksApi.as_view(), name="webhooks"),
    path("webhooks/<int:webhook_id>/", webhooks.WebhookApi.as_view(), name="webhook"),
    path(
        "webhooks/<int:webhook_id>/deliveries/",
        webhooks.WebhookDeliveriesApi.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver/",
        webhooks.WebhookRedeliverApi.as_view(),
        name="webhook-redeliver",
    ),
]
