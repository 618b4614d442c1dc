"""The admin index: the projection status page is one click away, the scheduler's models are
grouped apart from the registry's own, and every admin page names its favicon."""

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser(username="root", email=None, password=None))
    return client


def test_the_index_links_the_projection_status_page(superuser_client):
    page = superuser_client.get(reverse("admin:index")).content.decode()

    assert f'href="{reverse("admin:events_projectionrun_status")}"' in page.split('id="operations-module"')[1]


def test_the_periodic_task_models_are_grouped_in_one_closed_box_after_the_registry(superuser_client):
    page = superuser_client.get(reverse("admin:index")).content.decode()

    registry, scheduler = page.split('id="scheduler-module"')
    assert "Agents" in registry and "/admin/django_celery_beat/" not in registry
    assert "/admin/django_celery_beat/periodictask/" in scheduler
    assert page.count('<details class="module" id="scheduler-module">') == 1  # closed until opened


def test_staff_without_the_scheduler_permission_see_no_scheduler_box(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="staff", is_staff=True))

    page = client.get(reverse("admin:index")).content.decode()

    assert 'id="scheduler-module"' not in page and 'id="operations-module"' in page


def test_admin_pages_name_a_favicon_served_from_this_origin(superuser_client):
    page = superuser_client.get(reverse("admin:agents_app_agentcurrent_changelist")).content.decode()

    assert '<link rel="icon" type="image/svg+xml" href="/static/agents_app/favicon.svg">' in page
    assert finders.find("agents_app/favicon.svg")


def test_pages_django_renders_itself_write_dates_in_the_one_admin_format(superuser_client, django_user_model):
    from agents_app.tokens import api_token_create

    token, _ = api_token_create(user=django_user_model.objects.get(username="root"), name="ci", days=7)

    page = superuser_client.get(reverse("admin:agents_app_apitoken_changelist")).content.decode()

    assert f"{token.created_at:%Y-%m-%d %H:%M:%S} UTC" in page
