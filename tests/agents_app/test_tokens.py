"""API tokens: the services, the DRF authentication class, the command and the admin."""

import datetime as dt
import hashlib
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView, exception_handler

from agents_app.api.authentication import BearerTokenAuthentication
from agents_app.models import ApiToken
from agents_app.tokens import TokenInvalid, api_token_authenticate, api_token_create, api_token_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return get_user_model().objects.create_user(username="alice", password=None)


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser(username="root", email="", password=None)


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def row_values(token: ApiToken) -> list[str]:
    return [str(value) for value in ApiToken.objects.filter(pk=token.pk).values().get().values()]


# ------------------------------------------------------------------------------
# Services
# ------------------------------------------------------------------------------


def test_a_new_token_is_stored_only_as_its_sha256_digest(user, settings):
    token, plaintext = api_token_create(user=user, name="ci")

    assert plaintext.startswith("ar_") and len(plaintext) == 3 + 43
    assert token.digest == hashlib.sha256(plaintext.encode()).hexdigest()
    assert token.prefix == plaintext[:11]
    assert not any(plaintext in value for value in row_values(token))
    expected_expiry = timezone.now() + dt.timedelta(days=settings.API_TOKEN_DAYS)
    assert abs(token.expires_at - expected_expiry) < dt.timedelta(minutes=1)


def test_two_tokens_for_the_same_user_differ(user):
    _, first = api_token_create(user=user)
    _, second = api_token_create(user=user)

    assert first != second
    assert ApiToken.objects.filter(user=user).count() == 2


@pytest.mark.parametrize("days", [0, -1, 3651, True, "30"])
def test_a_lifetime_outside_one_to_3650_days_is_refused_and_nothing_is_stored(user, days):
    with pytest.raises(TokenInvalid):
        api_token_create(user=user, days=days)

    assert not ApiToken.objects.exists()


def test_a_good_token_authenticates_as_its_token_and_records_the_use(user):
    token, plaintext = api_token_create(user=user)

    found = api_token_authenticate(token=plaintext)

    assert found is not None and found.pk == token.pk and found.user == user
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_last_use_is_written_at_most_once_a_minute(user):
    token, plaintext = api_token_create(user=user)
    api_token_authenticate(token=plaintext)
    token.refresh_from_db()
    first_use = token.last_used_at

    api_token_authenticate(token=plaintext)
    token.refresh_from_db()
    assert token.last_used_at == first_use

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - dt.timedelta(minutes=2))
    api_token_authenticate(token=plaintext)
    token.refresh_from_db()
    assert token.last_used_at > first_use


def test_an_expired_token_is_refused(user):
    token, plaintext = api_token_create(user=user, days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert api_token_authenticate(token=plaintext) is None


def test_a_revoked_token_is_refused_and_keeps_its_first_revocation_time(user):
    token, plaintext = api_token_create(user=user)

    api_token_revoke(token=token)
    revoked_at = token.revoked_at
    api_token_revoke(token=token)

    assert api_token_authenticate(token=plaintext) is None
    token.refresh_from_db()
    assert token.revoked_at == revoked_at is not None


def test_a_token_of_an_inactive_user_is_refused(user):
    _, plaintext = api_token_create(user=user)
    user.is_active = False
    user.save()

    assert api_token_authenticate(token=plaintext) is None


def test_no_token_is_created_for_an_inactive_user(user):
    user.is_active = False
    user.save()

    with pytest.raises(TokenInvalid):
        api_token_create(user=user)
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "ar_",
        "xx_" + "a" * 43,
        "ar_" + "a" * 300,
        "ar_" + "é" * 43,
        "ar_has spaces in it",
        "ar_bad/chars=",
    ],
)
def test_malformed_tokens_are_refused(user, malformed):
    api_token_create(user=user)

    assert api_token_authenticate(token=malformed) is None


def test_a_well_formed_but_unknown_token_is_refused(user):
    _, plaintext = api_token_create(user=user)

    assert api_token_authenticate(token=plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None


# ------------------------------------------------------------------------------
# DRF authentication
# ------------------------------------------------------------------------------


class WhoAmI(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = []

    def get_exception_handler(self):
        # DRF's own handler: this tests the status and the challenge, not the problem body.
        return exception_handler

    def get(self, request):
        return Response({"username": request.user.username})


def call_whoami(authorization: str | None) -> Response:
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    return WhoAmI.as_view()(APIRequestFactory().get("/whoami/", **headers))


def test_a_good_bearer_token_authenticates_the_request_as_its_user(user):
    _, plaintext = api_token_create(user=user)

    response = call_whoami(f"Bearer {plaintext}")

    assert response.status_code == 200
    assert response.data == {"username": "alice"}


def test_the_bearer_scheme_is_case_insensitive(user):
    _, plaintext = api_token_create(user=user)

    assert call_whoami(f"bearer {plaintext}").status_code == 200


@pytest.mark.parametrize("state", ["unknown", "expired", "revoked", "two words", "empty"])
def test_a_bad_bearer_token_is_a_401_with_a_bearer_challenge(user, state):
    token, plaintext = api_token_create(user=user)
    if state == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    elif state == "revoked":
        api_token_revoke(token=token)
    header = {
        "unknown": "Bearer ar_" + "x" * 43,
        "expired": f"Bearer {plaintext}",
        "revoked": f"Bearer {plaintext}",
        "two words": f"Bearer {plaintext} extra",
        "empty": "Bearer",
    }[state]

    response = call_whoami(header)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.data["detail"] == "invalid, expired or revoked token"


def test_an_anonymous_request_is_a_401_with_a_bearer_challenge():
    response = call_whoami(None)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("authorization", [None, "Basic YWxpY2U6c2VjcmV0", "Token abc"])
def test_without_a_bearer_header_the_class_steps_aside_for_other_schemes(authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    request = Request(APIRequestFactory().get("/", **headers))

    assert BearerTokenAuthentication().authenticate(request) is None


def test_the_schema_documents_the_class_as_http_bearer():
    extension = OpenApiAuthenticationExtension.get_match(BearerTokenAuthentication())

    assert extension is not None and extension.name == "bearerAuth"
    assert extension.get_security_definition(None) == {"type": "http", "scheme": "bearer"}


# ------------------------------------------------------------------------------
# create_api_token command
# ------------------------------------------------------------------------------


def test_the_command_prints_only_a_token_that_authenticates(user):
    out, err = io.StringIO(), io.StringIO()

    call_command("create_api_token", "alice", "--days", "7", "--name", "deploy", stdout=out, stderr=err)

    plaintext = out.getvalue().strip()
    assert out.getvalue() == plaintext + "\n"
    found = api_token_authenticate(token=plaintext)
    assert found is not None and found.user == user and found.name == "deploy"
    assert abs(found.expires_at - (timezone.now() + dt.timedelta(days=7))) < dt.timedelta(minutes=1)
    assert "expires" in err.getvalue() and plaintext not in err.getvalue()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nobody"], "no user named 'nobody'"),
        (["alice", "--days", "0"], "days must be"),
        (["alice", "--days", "4000"], "days must be"),
        (["alice", "--days", "soon"], "invalid int value"),
    ],
)
def test_the_command_refuses_unknown_users_and_bad_lifetimes(user, arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_token", *arguments, stdout=io.StringIO(), stderr=io.StringIO())

    assert not ApiToken.objects.exists()


def test_the_command_refuses_an_inactive_user(user):
    user.is_active = False
    user.save()

    with pytest.raises(CommandError, match="inactive"):
        call_command("create_api_token", "alice", stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiToken.objects.exists()


# ------------------------------------------------------------------------------
# Admin
# ------------------------------------------------------------------------------


def test_the_admin_creates_a_token_and_shows_it_once(admin_client, user):
    response = admin_client.post(
        reverse("admin:agents_app_apitoken_add"), {"user": user.pk, "name": "laptop", "days": 30}, follow=True
    )

    assert response.redirect_chain[0][1] == 302
    token = ApiToken.objects.get()
    assert token.user == user and token.name == "laptop"
    assert abs(token.expires_at - (timezone.now() + dt.timedelta(days=30))) < dt.timedelta(minutes=1)
    plaintexts = re.findall(r"ar_[A-Za-z0-9_-]{43}", response.content.decode())
    assert len(plaintexts) == 1
    plaintext = plaintexts[0]
    assert hashlib.sha256(plaintext.encode()).hexdigest() == token.digest
    assert api_token_authenticate(token=plaintext) is not None

    changelist = admin_client.get(reverse("admin:agents_app_apitoken_changelist"))
    detail = admin_client.get(reverse("admin:agents_app_apitoken_change", args=[token.pk]))
    assert changelist.status_code == detail.status_code == 200
    assert plaintext not in changelist.content.decode() + detail.content.decode()


def test_the_admin_add_form_asks_only_user_name_and_days(admin_client, settings):
    response = admin_client.get(reverse("admin:agents_app_apitoken_add"))

    form = response.context["adminform"].form
    assert list(form.fields) == ["user", "name", "days"]
    assert form["days"].initial == settings.API_TOKEN_DAYS


def test_a_digest_posted_to_the_admin_add_form_is_ignored(admin_client, user):
    admin_client.post(
        reverse("admin:agents_app_apitoken_add"),
        {"user": user.pk, "name": "x", "days": 30, "digest": "0" * 64, "prefix": "ar_chosen"},
    )

    token = ApiToken.objects.get()
    assert token.digest != "0" * 64 and token.prefix != "ar_chosen"


def test_the_admin_refuses_a_lifetime_out_of_range(admin_client, user):
    response = admin_client.post(
        reverse("admin:agents_app_apitoken_add"), {"user": user.pk, "name": "x", "days": 5000}
    )

    assert response.status_code == 200
    assert "days" in response.context["adminform"].form.errors
    assert not ApiToken.objects.exists()


def test_the_admin_never_shows_the_digest(admin_client, user):
    token, _ = api_token_create(user=user, name="ci")

    changelist = admin_client.get(reverse("admin:agents_app_apitoken_changelist"))
    detail = admin_client.get(reverse("admin:agents_app_apitoken_change", args=[token.pk]))

    assert changelist.status_code == detail.status_code == 200
    assert token.prefix in changelist.content.decode()
    assert token.digest not in changelist.content.decode()
    assert token.digest not in detail.content.decode()


def test_the_admin_change_view_cannot_edit_a_token(admin_client, user):
    token, _ = api_token_create(user=user, name="ci")

    response = admin_client.post(
        reverse("admin:agents_app_apitoken_change", args=[token.pk]), {"name": "renamed", "user": user.pk}
    )

    assert response.status_code == 403
    token.refresh_from_db()
    assert token.name == "ci"


def test_the_admin_revoke_action_revokes_the_selected_tokens(admin_client, user):
    chosen, chosen_plaintext = api_token_create(user=user, name="old")
    kept, kept_plaintext = api_token_create(user=user, name="new")

    response = admin_client.post(
        reverse("admin:agents_app_apitoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [chosen.pk]},
    )

    assert response.status_code == 302
    chosen.refresh_from_db()
    kept.refresh_from_db()
    assert chosen.revoked_at is not None and kept.revoked_at is None
    assert api_token_authenticate(token=chosen_plaintext) is None
    assert api_token_authenticate(token=kept_plaintext) is not None


def test_staff_without_superuser_rights_can_only_create_tokens_for_themselves(client, user):
    staff = get_user_model().objects.create_user(username="staff", password=None, is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_apitoken", "view_apitoken"]))
    client.force_login(staff)

    response = client.post(reverse("admin:agents_app_apitoken_add"), {"user": user.pk, "days": 30})

    assert response.status_code == 200
    assert "user" in response.context["adminform"].form.errors
    assert not ApiToken.objects.exists()
