"""URL configuration: the admin, REST API v1, and health probes at the root for orchestrators."""

from django.contrib import admin
from django.urls import include, path

from agents_app.api import views as api_views
from agents_app.api.errors import problem_json
from project.login_throttle import ThrottledAdminAuthenticationForm
from project.views import landing

# Says why a throttled login is refused (the backend refuses it whatever the form).
admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("agents_app.api.urls")),
    path("healthz", api_views.HealthApi.as_view(), name="healthz"),
    path("readyz", api_views.ReadyApi.as_view(), name="readyz"),
]


def handler404(request, exception=None):
    return problem_json(request, status_code=404, code="not-found", detail=f"nothing at {request.path}")


def handler500(request):
    return problem_json(
        request, status_code=500, code="internal", detail="the server failed; the error was logged"
    )
