"""Which Django permission each API operation needs (the constants: agents_app/permissions.py)."""

from rest_framework.permissions import BasePermission

from agents_app.permissions import ARCHIVE, AUDIT, CHANGE, PUBLISH, VIEW

__all__ = ["ARCHIVE", "AUDIT", "CHANGE", "PUBLISH", "VIEW", "IsStaff", "OperationPermission"]

# Methods that read what GET reads: they need GET's permission, and only these fall back to it.
SAME_AS_GET = frozenset({"HEAD", "OPTIONS"})


class OperationPermission(BasePermission):
    """Checks the view's `permissions` map: HTTP method -> required Django permission.

    Fails closed: a method the view implements but does not map is refused, whatever the
    caller may otherwise do (falling back to GET's permission let a viewer call a write a
    view forgot to map).
    """

    message = "you do not have permission for this operation"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        method = request.method.lower()
        if method not in view.http_method_names or not hasattr(view, method):
            return True  # nothing to protect: dispatch answers 405 with Allow, not a misleading 403
        key = "GET" if request.method in SAME_AS_GET else request.method
        required = view.permissions.get(key)
        return bool(required) and user.has_perm(required)


class IsStaff(BasePermission):
    message = "projection control is for staff users"

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
