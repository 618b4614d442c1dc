"""Pages of the site itself: the landing page at `/`."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """What runs here and where to go: the admin, the API docs and schema, the health probes."""
    return render(request, "agents_app/landing.html")
