"""Bearer tokens for the REST API: create, revoke, authenticate.

A token is `ar_` + 43 url-safe characters (32 random bytes). Only its SHA-256 digest is
stored, so a leaked table or backup cannot be replayed; the plaintext is returned once, by
`api_token_create`. SHA-256 rather than a slow password hash is enough here: the token has
256 bits of entropy, so there is nothing to brute-force, and every request can afford it.
"""

import datetime as dt
import hashlib
import hmac
import re
import secrets

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents_app.exceptions import InvalidCommand
from agents_app.models import ApiToken

TOKEN_PREFIX = "ar_"  # noqa: S105 (a marker, not a secret)
PREFIX_LENGTH = 11  # `ar_` + 8 characters: enough to tell tokens apart in a list, useless to guess
MAX_TOKEN_LENGTH = 200
MIN_DAYS = 1
MAX_DAYS = 3650
# Recording every use would turn each read request into a write; a minute is precise enough
# to tell a live token from an abandoned one.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)

# What `secrets.token_urlsafe` produces after our prefix; anything else is refused before a query.
_TOKEN_SHAPE = re.compile(rf"{TOKEN_PREFIX}[A-Za-z0-9_-]{{1,{MAX_TOKEN_LENGTH - len(TOKEN_PREFIX)}}}")


# An InvalidCommand so that the API's error handler answers 422 should an endpoint ever
# create tokens; a ValueError because that is what it is to callers outside the domain.
class TokenInvalid(InvalidCommand, ValueError):
    """A token cannot be created as asked (lifetime out of range, user inactive)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def api_token_state(*, token: ApiToken, at: dt.datetime | None = None) -> str:
    """`revoked`, `expired` or `active`, as of `at` (default now)."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= (at or timezone.now()):
        return "expired"
    return "active"


def api_token_create(*, user: User, name: str = "", days: int | None = None) -> tuple[ApiToken, str]:
    """Create a token for `user` valid for `days`; return the row and the plaintext, shown only this once."""
    if days is None:
        days = settings.API_TOKEN_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not MIN_DAYS <= days <= MAX_DAYS:
        raise TokenInvalid(f"days must be a whole number from {MIN_DAYS} to {MAX_DAYS}; got {days!r}")
    if not user.is_active:
        raise TokenInvalid(f"user {user} is inactive: its tokens would never authenticate")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=plaintext[:PREFIX_LENGTH],
            digest=_digest(plaintext),
            expires_at=timezone.now() + dt.timedelta(days=days),
        )
    return token, plaintext


def api_token_revoke(*, token: ApiToken) -> None:
    """Revoke `token` for good; revoking it again keeps the first revocation time."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional update rather than read-then-save: two admins revoking at once would
        # otherwise both write, and the later time would overwrite when it really stopped.
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    token.refresh_from_db(fields=["revoked_at"])


def api_token_authenticate(*, token: str) -> ApiToken | None:
    """The live token (with its active user) whose plaintext is `token`, or None."""
    # Malformed input is refused before hashing or querying: cheap for junk and floods.
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _TOKEN_SHAPE.fullmatch(token):
        return None
    digest = _digest(token)
    api_token = ApiToken.objects.select_related("user").filter(digest=digest).first()
    # The lookup already matched the digest; the constant-time comparison guards against a
    # database whose collation compares case-insensitively or pads, at no real cost.
    if api_token is None or not hmac.compare_digest(api_token.digest, digest):
        return None
    now = timezone.now()
    if api_token_state(token=api_token, at=now) != "active" or not api_token.user.is_active:
        return None
    if api_token.last_used_at is None or now - api_token.last_used_at >= LAST_USED_RESOLUTION:
        # One conditional UPDATE, no lock: concurrent requests of the same minute may both
        # pass the check above, but only the first matches the filter and writes.
        ApiToken.objects.filter(pk=api_token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        api_token.last_used_at = now
    return api_token
