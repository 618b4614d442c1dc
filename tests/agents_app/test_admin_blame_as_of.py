"""The admin's blame page and "as of" time travel (the registry list and one agent's page),
on the generated repository with merges by several authors."""

import re
from html import unescape

import pytest
from django.urls import reverse

from agents_app.selectors import agent_get
from tests.agents_app import test_git_provenance
from tests.agents_app.test_git_history import replay
from tests.agents_app.test_git_provenance import CAROL, ERIN, person

pytestmark = pytest.mark.django_db

merged = test_git_provenance.merged


@pytest.fixture
def replayed(merged, client, django_user_model):
    repo, shas = merged
    replay(repo.path)
    client.force_login(django_user_model.objects.create_superuser(username="root", email=None, password=None))
    return client, shas


def url(name, *args):
    return reverse(f"admin:agents_app_agentcurrent_{name}", args=args)


def rows_of(html: str, table_id: str) -> list[str]:
    body = html.split(f'id="{table_id}"')[1].split("</table>")[0].split("<tbody>")[1]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()) for row in rows]


def test_blame_names_the_revision_author_landing_time_and_reason_of_each_line(replayed):
    client, _ = replayed
    alpha = agent_get(name="alpha")

    html = client.get(url("blame", alpha.agent_id)).content.decode()

    lines = rows_of(html, "blame-lines")
    assert len(lines) == 12
    # Line 1 (r1, Ann), line 3 written by the merge of Carol's branch (r3), line 11 by Erin (r2).
    assert lines[0].startswith("r1 git:Ann") and "2024-01-01 10:00:00 UTC" in lines[0]
    assert lines[2].startswith(f"r3 git:{person(CAROL)}")
    assert "2024-01-05 10:00:00 UTC" in lines[2] and lines[2].endswith("3 Line 2: by Bob.")
    assert lines[1] == "2 Line 1: do the work well."  # the same change as the line above: not repeated
    assert lines[10].startswith(f"r2 git:{person(ERIN)}")
    assert f'href="{url("compare", alpha.agent_id)}?a=2&amp;b=3"' in html
    keys = rows_of(html, "blame-frontmatter")
    assert [key.split()[:2] for key in keys] == [["name", "r1"], ["description", "r1"]]


def test_blame_of_an_older_revision_and_a_bad_reference(replayed):
    client, _ = replayed
    alpha = agent_get(name="alpha")

    older = client.get(url("blame", alpha.agent_id), {"ref": "1"}).content.decode()
    bad = client.get(url("blame", alpha.agent_id), {"ref": "99"}, follow=True)

    assert "Blame of alpha, revision 1" in older and "r2" not in "".join(rows_of(older, "blame-lines"))
    assert bad.status_code == 200 and "no revision 99" in bad.content.decode()


def test_the_agent_page_and_history_link_to_blame(replayed):
    client, _ = replayed
    alpha = agent_get(name="alpha")

    for page in ("change", "history"):
        html = client.get(url(page, alpha.agent_id)).content.decode()
        assert f'href="{url("blame", alpha.agent_id)}' in html


def test_the_agent_page_as_of_a_time_shows_the_revision_current_then(replayed):
    client, shas = replayed
    alpha = agent_get(name="alpha")

    html = client.get(url("change", alpha.agent_id), {"at": "2024-01-04T12:00:00"}).content.decode()

    assert "the current revision was <strong>2</strong>" in html
    assert "Line 10: by Erin." in html and "Line 2: by Bob." not in html
    assert f'title="{shas["erin"]}"' in html


def test_the_agent_page_before_the_agent_existed_says_so(replayed):
    client, _ = replayed
    alpha = agent_get(name="alpha")

    response = client.get(url("change", alpha.agent_id), {"at": "2020-01-01T00:00:00"}, follow=True)

    assert "did not exist yet at 2020-01-01 00:00:00 UTC" in response.content.decode()


def test_the_registry_as_of_a_time_lists_each_agent_at_its_revision_then(replayed):
    client, _ = replayed

    html = client.get(url("changelist"), {"at": "2024-01-06T12:00:00"}).content.decode()

    rows = rows_of(html, "registry-at")
    # beta was renamed omega on 2024-01-07: on the 6th it is still beta at revision 1.
    assert [row.split()[:3] for row in rows] == [["alpha", "3", "active"], ["beta", "1", "active"]]


def test_the_registry_as_of_a_bad_time_is_an_error_message_not_a_server_error(replayed):
    client, _ = replayed

    response = client.get(url("changelist"), {"at": "yesterday"}, follow=True)

    assert response.status_code == 200 and "is not a timestamp" in response.content.decode()


def test_the_registry_as_of_pages_by_fifty(replayed, monkeypatch):
    client, _ = replayed
    monkeypatch.setattr("agents_app.admin.AS_OF_PAGE", 1)

    first = client.get(url("changelist"), {"at": "2024-01-06T12:00:00"}).content.decode()
    second = client.get(url("changelist"), {"at": "2024-01-06T12:00:00", "page": "2"}).content.decode()

    assert [row.split()[0] for row in rows_of(first, "registry-at")] == ["alpha"]
    assert 'id="as-of-next"' in first
    assert [row.split()[0] for row in rows_of(second, "registry-at")] == ["beta"]
    assert 'id="as-of-next"' not in second


def test_the_agent_list_offers_the_registry_as_of_picker(replayed):
    client, _ = replayed

    html = client.get(url("changelist")).content.decode()

    assert 'type="datetime-local"' in html and 'name="at"' in html
