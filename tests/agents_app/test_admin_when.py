""" "When" as people read it: the time a change was made (a git commit's landing), with the time
this registry stored it beside it, on every admin page and in the API's revision list."""

import pytest
from django.urls import reverse

from agents_app.selectors import agent_get
from tests.agents_app import test_git_provenance
from tests.agents_app.test_git_history import replay
from tests.agents_app.test_git_provenance import CAROL, person

pytestmark = pytest.mark.django_db

# The generated repository with merges by several authors (test_git_provenance).
merged = test_git_provenance.merged


@pytest.fixture
def admin_client_(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser(username="root", email=None, password=None))
    return client


def page(client, name, *args) -> str:
    response = client.get(reverse(f"admin:agents_app_agentcurrent_{name}", args=args))
    assert response.status_code == 200
    return response.content.decode()


def test_the_revision_list_api_gives_each_git_revision_its_provenance(merged, admin_client_):
    repo, shas = merged
    replay(repo.path)

    rows = admin_client_.get("/api/v1/agents/alpha/revisions/").json()["results"]

    assert [row["provenance"]["git"]["commit"] for row in rows] == [shas["add"], shas["erin"], shas["carol"]]
    assert rows[2]["provenance"]["git"]["merge_commit"] == shas["merge_feature"]
    assert rows[2]["provenance"]["git"]["author"] == person(CAROL)
    assert rows[2]["occurred_at"] == "2024-01-05T10:00:00Z"


def test_a_revision_made_here_has_no_provenance(admin_client_):
    from tests.conftest import agent_text

    body = {"content": agent_text("plain"), "reason": "first"}
    response = admin_client_.post("/api/v1/agents/", body, content_type="application/json")
    assert response.status_code == 201, response.content

    rows = admin_client_.get("/api/v1/agents/plain/revisions/").json()["results"]

    assert rows[0]["provenance"] is None


def test_history_shows_when_the_commit_landed_the_recorded_time_and_the_commit_id(merged, admin_client_):
    repo, shas = merged
    replay(repo.path)
    alpha = agent_get(name="alpha")

    html = page(admin_client_, "history", alpha.agent_id)

    assert "2024-01-05 10:00:00 UTC" in html  # the merge's landing, not the import time
    assert f'title="{shas["carol"]}">{shas["carol"][:10]}</code>' in html
    assert f'title="{shas["merge_feature"]}">{shas["merge_feature"][:10]}</code>' in html
    assert html.count('class="agent-recorded"') >= 3


def test_compare_header_agent_page_and_list_show_the_commit_time_and_the_recorded_one(merged, admin_client_):
    repo, shas = merged
    replay(repo.path)
    alpha = agent_get(name="alpha")

    compare = page(admin_client_, "compare", alpha.agent_id)
    agent_page = page(admin_client_, "change", alpha.agent_id)
    listing = admin_client_.get(reverse("admin:agents_app_agentcurrent_changelist")).content.decode()

    header = compare.split('id="compare-header"')[1].split("</p>")[0]
    assert "2024-01-04 10:00:00 UTC" in header and "2024-01-05 10:00:00 UTC" in header
    assert f'title="{shas["carol"]}"' in header and "recorded " in header
    assert 'made <span class="agent-occurred">2024-01-05 10:00:00 UTC</span>' in agent_page
    assert '2024-01-05 10:00:00 UTC <small class="agent-recorded">(recorded ' in listing
