"""Which Django permission each API operation needs (groups in migration agents_app/0003)."""

from rest_framework.permissions import BasePermission

VIEW = "agents_app.view_agent"
CHANGE = "agents_app.change_agent"
ARCHIVE = "agents_app.archive_agent"
PUBLISH = "agents_app.publish_agent"
AUDIT = "events.view_event"


class OperationPermission(BasePermission):
    """Checks the view's `permissions` map: HTTP method -> required Django permission."""

    message = "you do not have permission for this operation"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        method = request.method.lower()
        if method not in view.http_method_names or not hasattr(view, method):
            return True  # nothing to protect: dispatch answers 405 with Allow, not a misleading 403
        required = view.permissions.get(request.method)
        if required is None:  # e.g. HEAD/OPTIONS follow GET
            required = view.permissions.get("GET")
        return bool(required) and user.has_perm(required)


class IsStaff(BasePermission):
    message = "projection control is for staff users"

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
