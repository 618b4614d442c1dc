"""`manage.py create_api_token USER [--days N] [--name TEXT]`: print a new API token, once."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from agents_app.tokens import MAX_DAYS, MIN_DAYS, TokenInvalid, api_token_create


class Command(BaseCommand):
    help = (
        "Create a bearer token for the REST API and print it on stdout (only the token, so it can be "
        "captured by a script); it is stored hashed and cannot be shown again."
    )

    def add_arguments(self, parser):
        parser.add_argument("user", help="Username of the token's owner.")
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"Lifetime in days, {MIN_DAYS} to {MAX_DAYS} (default: API_TOKEN_DAYS, "
            f"{settings.API_TOKEN_DAYS}).",
        )
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args, user: str, days: int | None, name: str, **options):
        user_model = get_user_model()
        try:
            owner = user_model._default_manager.get_by_natural_key(user)
        except user_model.DoesNotExist:
            raise CommandError(f"no user named {user!r}") from None
        if not owner.is_active:
            raise CommandError(f"user {user!r} is inactive; activate it before creating a token")
        try:
            token, plaintext = api_token_create(user=owner, name=name, days=days)
        except TokenInvalid as error:
            raise CommandError(str(error)) from None
        self.stdout.write(plaintext)
        self.stderr.write(
            f"token {token.prefix}... for {owner} expires {token.expires_at:%Y-%m-%d %H:%M} UTC; "
            "it is shown only this once: store it now.",
            style_func=self.style.WARNING,
        )
