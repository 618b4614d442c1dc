"""`Authorization: Bearer <token>` for the REST API, and how the OpenAPI schema documents it.

First in DEFAULT_AUTHENTICATION_CLASSES, so its `authenticate_header` is the challenge DRF
sends: anonymous requests get 401 with `WWW-Authenticate`, not 403.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from agents_app.tokens import api_token_authenticate

KEYWORD = b"bearer"
FAILED = "invalid, expired or revoked token"


class BearerTokenAuthentication(BaseAuthentication):
    """A user from an API token; no `Bearer` header means "not mine", so session auth can try."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        # RFC 9110: the scheme is case-insensitive.
        if not parts or parts[0].lower() != KEYWORD:
            return None
        # One message for every failure: telling "expired" from "unknown" would confirm to a
        # guesser that a token once existed.
        if len(parts) != 2:
            raise AuthenticationFailed(FAILED)
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed(FAILED) from None
        api_token = api_token_authenticate(token=token)
        if api_token is None:
            raise AuthenticationFailed(FAILED)
        return api_token.user, api_token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents BearerTokenAuthentication as the `bearerAuth` security scheme."""

    target_class = "agents_app.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
