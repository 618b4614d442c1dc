"""`manage.py bootstrap_demo` (run by `make run`): the demo agents once, the admin user once."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from agents_app.selectors import agent_get
from agents_app.services import ChangeContext, agent_archive, agent_revise
from events.models import Event
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def bootstrap(django_capture_on_commit_callbacks):
    def run() -> str:
        out = StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("bootstrap_demo", stdout=out)
        return out.getvalue()

    return run


def test_the_first_run_loads_the_four_demo_agents_and_prints_a_generated_admin_password(bootstrap):
    output = bootstrap()

    assert Event.objects.filter(type="agent.created").count() == 4
    assert "demo agent code-reviewer: created" in output
    password = output.split("password: ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)


def test_a_second_run_leaves_the_users_edits_and_archives_alone(
    bootstrap, django_capture_on_commit_callbacks
):
    bootstrap()
    context = ChangeContext(actor="erin", source="admin", reason="my own words")
    with django_capture_on_commit_callbacks(execute=True):
        reviewer = agent_get(name="code-reviewer")
        agent_revise(
            agent_id=reviewer.agent_id,
            content=agent_text("code-reviewer", body="Mine now.\n"),
            context=context,
        )
        agent_archive(agent_id=agent_get(name="sql-explainer").agent_id, context=context)
    events_before = Event.objects.count()

    output = bootstrap()

    assert "not loaded (the registry already has data)" in output
    assert "exists; its password is unchanged" in output
    assert Event.objects.count() == events_before
    assert agent_get(name="code-reviewer").body == "Mine now.\n"


def test_a_registry_with_the_users_own_agents_gets_no_demo_agents(bootstrap):
    from agents_app.services import agent_create

    agent_create(content=agent_text("mine"), context=ChangeContext(actor="a", source="cli", reason="r"))

    bootstrap()

    assert Event.objects.filter(type="agent.created").count() == 1
