"""`manage.py bootstrap_demo`: load the demo agents and create an admin user (used by `make run`)."""

import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from agents_app.services import ChangeContext, agent_create
from events.selectors import head_position

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo_agents"


class Command(BaseCommand):
    help = "Load the demo agents into an empty registry and create the admin user, each once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        # Once: a registry that has any event already holds the demo (or the user's own data),
        # and a second `make run` must leave it as the user left it: edited, archived or gone.
        if head_position() > 0:
            self.stdout.write("demo agents: not loaded (the registry already has data)")
        else:
            context = ChangeContext(actor="system", source="system", reason="demo agents")
            for path in sorted(DEMO_DIR.glob("*.md")):
                agent_create(content=path.read_bytes(), context=context)
                self.stdout.write(f"demo agent {path.stem}: created")

        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(
                f"admin user {username!r} exists; its password is unchanged"
                f" (reset it with: manage.py changepassword {username})"
            )
            return
        password = secrets.token_urlsafe(18)
        user_model.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"admin user: {username}  password: {password}  (shown once)"))
