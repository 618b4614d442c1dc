"""Throttling of password logins: the admin's login form, and anything else that calls `authenticate`.

Failures are counted per (username, client address) in the cache, which is Redis when
configured, so every web process sees the same counts. After LOGIN_FAILURE_LIMIT failures
within LOGIN_FAILURE_WINDOW_SECONDS of the first one, that username is refused from that
address, even with the right password, until the window ends; a success resets the count.
Keying on the pair, not the username alone, means a guesser elsewhere cannot lock a user out
of their own address. The address is REMOTE_ADDR: a forwarded-for header is the client's to
write, so trusting it would let a guesser pick a new "address" for every attempt.

The counting and the refusal live in the authentication backend, so every login path is
covered; the admin's form checks first only to say plainly why it refuses.
"""

import hashlib
import math
import time

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest


def _client_address(request: HttpRequest | None) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def _keys(username: str, address: str) -> tuple[str, str]:
    # Hashed: usernames are user input of any length and characters, cache keys are not.
    digest = hashlib.sha256(f"{username.casefold()}\0{address}".encode()).hexdigest()
    return f"login-failures:{digest}", f"login-failures-until:{digest}"


def login_lockout_seconds(*, username: str, request: HttpRequest | None) -> int:
    """Seconds until `username` may try to log in again from this request's address (0: now)."""
    count_key, until_key = _keys(username, _client_address(request))
    if (cache.get(count_key) or 0) < settings.LOGIN_FAILURE_LIMIT:
        return 0
    until = cache.get(until_key) or time.time() + settings.LOGIN_FAILURE_WINDOW_SECONDS
    return max(1, math.ceil(until - time.time()))


def login_failure_record(*, username: str, request: HttpRequest | None) -> None:
    """Count one failed login; the window starts with the first failure and is not extended."""
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    count_key, until_key = _keys(username, _client_address(request))
    # add + incr, not get + set: two processes failing at once would both write the same count.
    if cache.add(count_key, 1, timeout=window):
        cache.set(until_key, time.time() + window, timeout=window)
        return
    try:
        cache.incr(count_key)
    except ValueError:  # the window ended between add and incr: this failure opens a new one
        cache.set(count_key, 1, timeout=window)
        cache.set(until_key, time.time() + window, timeout=window)


def login_failures_clear(*, username: str, request: HttpRequest | None) -> None:
    cache.delete_many(_keys(username, _client_address(request)))


class ThrottledModelBackend(ModelBackend):
    """Django's username/password backend, refusing a (username, address) over its failure limit."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        if login_lockout_seconds(username=username, request=request):
            # Raised, not returned: `authenticate` stops at PermissionDenied instead of asking
            # the next backend, and reports the attempt as failed (user_login_failed).
            raise PermissionDenied("too many failed logins")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            login_failure_record(username=username, request=request)
        else:
            login_failures_clear(username=username, request=request)
        return user


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin login form, saying so when the backend would refuse the attempt as throttled."""

    def clean(self):
        username = self.cleaned_data.get("username")
        if username is not None:
            seconds = login_lockout_seconds(username=username, request=self.request)
            if seconds:
                raise ValidationError(
                    "Too many failed login attempts for this account from your address. "
                    "Try again in %(minutes)d minute(s).",
                    code="throttled",
                    params={"minutes": math.ceil(seconds / 60)},
                )
        return super().clean()
