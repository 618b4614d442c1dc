"""`manage.py bootstrap_demo`: load the demo agents and create an admin user (used by `make run`)."""

import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from agents_app.exceptions import AgentNotFound
from agents_app.selectors import agent_get
from agents_app.services import ChangeContext, agent_create, agent_revise

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo_agents"


class Command(BaseCommand):
    help = "Load the demo agents (through the same commands as any edit) and create the admin user once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        context = ChangeContext(actor="system", source="system", reason="demo agents")
        for path in sorted(DEMO_DIR.glob("*.md")):
            content = path.read_bytes()
            try:
                agent = agent_get(name=path.stem)
            except AgentNotFound:
                agent_create(content=content, context=context)
                self.stdout.write(f"demo agent {path.stem}: created")
                continue
            change = agent_revise(agent_id=agent.agent_id, content=content, context=context)
            self.stdout.write(f"demo agent {path.stem}: {'revised' if change.changed else 'unchanged'}")

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
