"""The agent admin: every save goes through the services, conflicts keep the user's text,
history, compare, raw, revert, archive, restore and labels, each checking its permission."""

import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from agents_app.selectors import agent_get
from events.models import Event
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(django_user_model):
    def make(name, groups, **flags):
        user = django_user_model.objects.create_user(username=name, is_staff=True, **flags)
        user.groups.set(Group.objects.filter(name__in=groups))
        return user

    return {
        "editor": make("erin", ["Agent editors"]),
        "viewer": make("victor", ["Agent viewers"]),
        "publisher": make("paula", ["Agent publishers"]),
        "outsider": make("oscar", []),
    }


class Browser:
    """A logged-in Django test client whose POSTs commit as they would in production."""

    def __init__(self, client, capture, user):
        self.client, self.capture = client, capture
        client.force_login(user)

    def get(self, url, **params):
        return self.client.get(url, params)

    def post(self, url, data):
        with self.capture(execute=True):
            return self.client.post(url, data)


@pytest.fixture
def as_user(client, django_capture_on_commit_callbacks):
    def login(user):
        return Browser(client, django_capture_on_commit_callbacks, user)

    return login


def url(name, *args):
    return reverse(f"admin:agents_app_agentcurrent_{name}", args=args)


def opened(page) -> str:
    return re.search(r'name="opened" value="([^"]+)"', page.content.decode()).group(1)


@pytest.fixture
def agent(as_user, people):
    browser = as_user(people["editor"])
    response = browser.post(url("add"), {"content": agent_text("reviewer"), "reason": "first version"})
    assert response.status_code == 302, response.content.decode()[:2000]
    return agent_get(name="reviewer")


def test_adding_an_agent_appends_an_event_with_the_reason_and_the_user(agent):
    event = Event.objects.get()
    assert event.type == "agent.created"
    assert event.metadata["actor"] == "erin" and event.metadata["source"] == "admin"
    assert event.metadata["reason"] == "first version"


def test_the_reason_is_required_and_nothing_is_stored_without_it(as_user, people):
    response = as_user(people["editor"]).post(url("add"), {"content": agent_text("x"), "reason": ""})

    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert Event.objects.count() == 0


def test_validation_errors_show_next_to_the_file_with_line_numbers(as_user, people):
    bad = "---\nname: Bad Name\ndescription: d\n---\n"

    response = as_user(people["editor"]).post(url("add"), {"content": bad, "reason": "r"})

    page = response.content.decode()
    assert 'id="content-errors"' in page and "line 2: name:" in page
    assert "Bad Name" in page  # the text the user typed is still in the editor
    assert Event.objects.count() == 0


def test_saving_the_change_form_makes_a_new_revision(as_user, people, agent):
    browser = as_user(people["editor"])
    page = browser.get(url("change", agent.agent_id))

    response = browser.post(
        url("change", agent.agent_id),
        {"content": agent_text("reviewer", body="Stricter.\n"), "reason": "stricter", "opened": opened(page)},
    )

    assert response.status_code == 302
    current = agent_get(name="reviewer")
    assert current.revision == 2 and current.body == "Stricter.\n" and current.updated_by == "erin"


def test_a_conflicting_save_is_refused_keeps_the_text_and_shows_who_changed_what(as_user, people, agent):
    first = as_user(people["editor"])
    page = first.get(url("change", agent.agent_id))
    token = opened(page)
    # meanwhile someone else saves
    first.post(
        url("change", agent.agent_id),
        {"content": agent_text("reviewer", body="Their line.\n"), "reason": "theirs", "opened": token},
    )

    response = first.post(
        url("change", agent.agent_id),
        {"content": agent_text("reviewer", body="My careful edit.\n"), "reason": "mine", "opened": token},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="conflict"' in page and "theirs" in page
    assert "My careful edit." in page  # the user's text survives
    assert "Their line." in page  # and the diff shows the other change
    assert agent_get(name="reviewer").body == "Their line.\n"
    # saving again from the conflict page (after merging) goes through
    merged = first.post(
        url("change", agent.agent_id),
        {
            "content": agent_text("reviewer", body="Their line.\nMy careful edit.\n"),
            "reason": "merged",
            "opened": opened(response),
        },
    )
    assert merged.status_code == 302
    assert agent_get(name="reviewer").revision == 3


def test_a_forged_version_is_refused(as_user, people, agent):
    response = as_user(people["editor"]).post(
        url("change", agent.agent_id),
        {"content": agent_text("reviewer", body="x\n"), "reason": "r", "opened": "1:forged"},
    )

    assert "The form is damaged" in response.content.decode()
    assert Event.objects.count() == 1


def test_history_lists_revisions_and_compare_shows_the_side_by_side_diff(as_user, people, agent):
    browser = as_user(people["editor"])
    page = browser.get(url("change", agent.agent_id))
    browser.post(
        url("change", agent.agent_id),
        {
            "content": agent_text("reviewer", body="Review <b>carefully</b>.\n", extra="tools: Read\n"),
            "reason": "tighter",
            "opened": opened(page),
        },
    )

    history = browser.get(url("history", agent.agent_id)).content.decode()
    compare = browser.get(url("compare", agent.agent_id), a=1, b=2).content.decode()

    assert 'name="a" value="1"' in history and 'name="b" value="2"' in history
    assert "tighter" in history and "erin" in history and "+1" in history
    assert '<table class="agent-diff"' in compare
    assert "&lt;" in compare and "<b>" not in compare
    assert "tools" in compare


def test_raw_view_returns_the_exact_bytes_of_a_revision(as_user, people, agent):
    response = as_user(people["viewer"]).get(url("raw", agent.agent_id, 1))

    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == agent_text("reviewer")


def test_revert_asks_for_confirmation_and_a_reason_then_makes_a_new_revision(as_user, people, agent):
    browser = as_user(people["editor"])
    page = browser.get(url("change", agent.agent_id))
    browser.post(
        url("change", agent.agent_id),
        {"content": agent_text("reviewer", body="v2\n"), "reason": "v2", "opened": opened(page)},
    )

    confirm = browser.get(url("revert", agent.agent_id, 1))
    no_reason = browser.post(url("revert", agent.agent_id, 1), {"reason": "", "opened": opened(confirm)})
    done = browser.post(
        url("revert", agent.agent_id, 1), {"reason": "v2 broke reviews", "opened": opened(confirm)}
    )

    assert "Store the content of revision 1 as a new revision 3" in confirm.content.decode()
    assert no_reason.status_code == 200
    assert done.status_code == 302
    current = agent_get(name="reviewer")
    assert current.revision == 3 and current.content == agent_text("reviewer")


def test_archive_and_restore_from_their_confirmation_pages(as_user, people, agent):
    browser = as_user(people["editor"])

    archive = browser.get(url("archive", agent.agent_id))
    browser.post(url("archive", agent.agent_id), {"reason": "retired", "opened": opened(archive)})
    archived_list = browser.get(url("changelist"), status="archived").content.decode()
    active_list = browser.get(url("changelist")).content.decode()
    restore = browser.get(url("restore", agent.agent_id))
    browser.post(url("restore", agent.agent_id), {"reason": "needed again", "opened": opened(restore)})

    assert "reviewer" in archived_list and ">reviewer<" not in active_list
    assert agent_get(name="reviewer").status == "active"
    assert [e.metadata["reason"] for e in Event.objects.order_by("position")][1:] == [
        "retired",
        "needed again",
    ]


def test_labels_move_for_publishers_only(as_user, people, agent):
    editor_post = as_user(people["editor"]).post(
        url("labels", agent.agent_id), {"label": "production", "revision": 1}
    )
    publisher = as_user(people["publisher"])
    shown = publisher.get(url("labels", agent.agent_id))
    moved = publisher.post(
        url("labels", agent.agent_id),
        {"label": "production", "revision": 1, "reason": "ship", "opened": opened(shown)},
    )
    page = publisher.get(url("labels", agent.agent_id)).content.decode()

    assert editor_post.status_code == 403
    assert moved.status_code == 302
    assert agent_get(name="reviewer").labels == {"production": 1}
    assert "ship" in page and "paula" in page


def test_the_list_shows_model_tools_revision_status_labels_and_filters(as_user, people):
    browser = as_user(people["editor"])
    browser.post(
        url("add"), {"content": agent_text("alpha", extra="model: opus\ntools: Bash\n"), "reason": "r"}
    )
    browser.post(url("add"), {"content": agent_text("beta", extra="model: sonnet\n"), "reason": "r"})

    everything = browser.get(url("changelist")).content.decode()
    by_model = browser.get(url("changelist"), model="opus").content.decode()
    by_tool = browser.get(url("changelist"), tool="Bash").content.decode()
    searched = browser.get(url("changelist"), q="beta").content.decode()

    assert "alpha" in everything and "beta" in everything and "all" in everything  # beta: every tool
    assert "alpha" in by_model and ">beta<" not in by_model
    assert "alpha" in by_tool and ">beta<" not in by_tool
    assert ">alpha<" not in searched and "beta" in searched


@pytest.mark.parametrize(
    ("who", "page", "expected"),
    [
        ("outsider", "changelist", 403),
        ("outsider", "history", 403),
        ("viewer", "changelist", 200),
        ("viewer", "history", 200),
        ("viewer", "add", 403),
        ("publisher", "add", 403),
        ("viewer", "archive", 403),
    ],
)
def test_each_page_checks_its_permission(as_user, people, agent, who, page, expected):
    args = [] if page in ("changelist", "add") else [agent.agent_id]

    response = as_user(people[who]).get(url(page, *args))

    assert response.status_code == expected


def test_a_viewer_sees_the_file_read_only_and_cannot_post(as_user, people, agent):
    browser = as_user(people["viewer"])

    page = browser.get(url("change", agent.agent_id)).content.decode()
    posted = browser.post(
        url("change", agent.agent_id), {"content": agent_text("reviewer", body="x\n"), "reason": "r"}
    )

    assert "readonly" in page and 'name="_save"' not in page
    assert posted.status_code == 403
    assert Event.objects.count() == 1


def test_the_admin_escapes_what_it_shows_from_agent_files(as_user, people):
    browser = as_user(people["editor"])
    browser.post(
        url("add"),
        {"content": agent_text("xss", description="<script>alert(1)</script>"), "reason": "<img src=x>"},
    )
    agent = agent_get(name="xss")

    pages = [
        browser.get(url("changelist")).content.decode(),
        browser.get(url("change", agent.agent_id)).content.decode(),
        browser.get(url("history", agent.agent_id)).content.decode(),
    ]

    for page in pages:
        assert "<script>alert(1)</script>" not in page and "<img src=x>" not in page


def test_the_crlf_a_browser_sends_keeps_the_files_own_line_endings(as_user, people):
    browser = as_user(people["editor"])
    browser.post(
        url("add"), {"content": "---\r\nname: lf\r\ndescription: d\r\n---\r\nbody\r\n", "reason": "r"}
    )
    crlf_text = "---\r\nname: crlf\r\ndescription: d\r\n---\r\nbody\r\n"
    browser.post(url("add"), {"content": crlf_text, "reason": "r"})
    # a CRLF file created through the API keeps CRLF when edited in the admin
    from agents_app.services import ChangeContext, agent_create

    with browser.capture(execute=True):
        agent_create(
            content="---\r\nname: windows\r\ndescription: d\r\n---\r\nold\r\n",
            context=ChangeContext(actor="x", source="cli"),
        )
    windows = agent_get(name="windows")
    page = browser.get(url("change", windows.agent_id))
    browser.post(
        url("change", windows.agent_id),
        {
            "content": "---\r\nname: windows\r\ndescription: d\r\n---\r\nnew\r\n",
            "reason": "r",
            "opened": opened(page),
        },
    )

    assert agent_get(name="lf").content == "---\nname: lf\ndescription: d\n---\nbody\n"
    assert agent_get(name="windows").content == "---\r\nname: windows\r\ndescription: d\r\n---\r\nnew\r\n"


# ---------------------------------------------------------------------------------------
# Confirmation pages are checked against the version they were rendered with (issue 13,
# defect 10): a change made between showing the page and confirming it is never overridden.
# ---------------------------------------------------------------------------------------
def _revise_in_between(browser, agent_id, body="Changed in between.\n") -> None:
    page = browser.get(url("change", agent_id))
    response = browser.post(
        url("change", agent_id),
        {"content": agent_text("reviewer", body=body), "reason": "in between", "opened": opened(page)},
    )
    assert response.status_code == 302


def _confirm_pages(agent_id):
    """page name -> (URL, form data, who confirms) of each confirmation page."""
    return {
        "revert": (url("revert", agent_id, 1), {"reason": "back to one"}, "editor"),
        "archive": (url("archive", agent_id), {"reason": "retire"}, "editor"),
        "labels": (
            url("labels", agent_id),
            {"label": "production", "revision": 1, "reason": "ship"},
            "publisher",
        ),
    }


@pytest.fixture
def two_revisions(as_user, people, agent):
    _revise_in_between(as_user(people["editor"]), agent.agent_id, body="Second.\n")
    return agent_get(name="reviewer")


@pytest.mark.parametrize("page_name", ["revert", "archive", "labels"])
def test_a_confirmation_rendered_before_a_change_stores_nothing_and_shows_the_change(
    as_user, people, two_revisions, page_name
):
    agent_id = two_revisions.agent_id
    page_url, data, person = _confirm_pages(agent_id)[page_name]
    browser = as_user(people[person])
    shown = browser.get(page_url)
    _revise_in_between(as_user(people["editor"]), agent_id)
    stored = Event.objects.count()

    browser = as_user(people[person])
    response = browser.post(page_url, {**data, "opened": opened(shown)})

    body = response.content.decode()
    assert response.status_code == 200
    assert Event.objects.count() == stored  # nothing stored
    assert 'id="conflict"' in body and "in between" in body and "Nothing was stored" in body
    current = agent_get(name="reviewer")
    assert current.body == "Changed in between.\n" and current.status == "active" and current.labels == {}
    # The page now carries the version it shows: confirming again is a deliberate decision.
    again = browser.post(page_url, {**data, "opened": opened(response)})
    assert again.status_code == 302
    assert Event.objects.count() == stored + 1


def test_a_restore_rendered_before_a_change_stores_nothing_and_shows_the_change(as_user, people, agent):
    editor = as_user(people["editor"])
    archive = editor.get(url("archive", agent.agent_id))
    editor.post(url("archive", agent.agent_id), {"reason": "retire", "opened": opened(archive)})
    shown = editor.get(url("restore", agent.agent_id))
    restore = editor.get(url("restore", agent.agent_id))
    editor.post(url("restore", agent.agent_id), {"reason": "back", "opened": opened(restore)})
    archive = editor.get(url("archive", agent.agent_id))
    editor.post(url("archive", agent.agent_id), {"reason": "retired in between", "opened": opened(archive)})
    stored = Event.objects.count()

    response = editor.post(url("restore", agent.agent_id), {"reason": "stale", "opened": opened(shown)})

    assert response.status_code == 200
    assert Event.objects.count() == stored
    assert 'id="conflict"' in response.content.decode()
    assert "retired in between" in response.content.decode()


@pytest.mark.parametrize("page_name", ["revert", "archive", "labels"])
@pytest.mark.parametrize(
    "token", ["", "forged", "WzEsMV0:forged:signature"], ids=["missing", "junk", "bad-signature"]
)
def test_a_confirmation_with_a_tampered_version_is_refused(as_user, people, two_revisions, page_name, token):
    page_url, data, person = _confirm_pages(two_revisions.agent_id)[page_name]
    stored = Event.objects.count()

    response = as_user(people[person]).post(page_url, {**data, "opened": token})

    assert response.status_code == 200
    assert "The form is damaged" in response.content.decode()
    assert Event.objects.count() == stored


def test_a_confirmation_signed_for_another_agent_is_refused(as_user, people, two_revisions):
    editor = as_user(people["editor"])
    editor.post(url("add"), {"content": agent_text("other"), "reason": "r"})
    other = agent_get(name="other")
    other_token = opened(editor.get(url("archive", other.agent_id)))
    stored = Event.objects.count()

    response = editor.post(url("archive", two_revisions.agent_id), {"reason": "r", "opened": other_token})

    assert "The form is damaged" in response.content.decode()
    assert Event.objects.count() == stored


@pytest.fixture
def labelled(agent):
    from agents_app.services import ChangeContext, agent_label_move

    for label in ("production", "staging"):
        agent_label_move(
            agent_id=agent.agent_id,
            label=label,
            revision=1,
            context=ChangeContext(actor="paula", source="admin", reason=f"set {label}"),
        )
    return agent_get(name="reviewer")


def test_each_current_label_has_a_remove_button_that_asks_for_a_reason_then_removes_it(
    as_user, people, labelled
):
    publisher = as_user(people["publisher"])
    page = publisher.get(url("labels", labelled.agent_id)).content.decode()
    remove = url("label_remove", labelled.agent_id, "staging")
    confirm = publisher.get(remove)

    removed = publisher.post(remove, {"reason": "staging is retired", "opened": opened(confirm)})

    assert f'href="{remove}"' in page
    assert f'href="{url("label_remove", labelled.agent_id, "production")}"' in page
    assert "Remove the label staging (now on revision 1)?" in confirm.content.decode()
    assert removed.status_code == 302 and removed["Location"] == url("labels", labelled.agent_id)
    assert agent_get(name="reviewer").labels == {"production": 1}
    event = Event.objects.filter(stream_id=labelled.agent_id).order_by("-stream_version").first()
    assert event.type == "agent.label_moved" and event.data == {"label": "staging", "revision": None}
    assert event.metadata["reason"] == "staging is retired" and event.metadata["actor"] == "paula"


def test_removing_a_label_without_a_reason_stores_nothing(as_user, people, labelled):
    publisher = as_user(people["publisher"])
    remove = url("label_remove", labelled.agent_id, "staging")
    confirm = publisher.get(remove)
    events = Event.objects.count()

    refused = publisher.post(remove, {"reason": "", "opened": opened(confirm)})

    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    assert Event.objects.count() == events and agent_get(name="reviewer").labels["staging"] == 1


def test_a_remove_confirmed_after_another_change_stores_nothing_and_shows_it(as_user, people, labelled):
    from agents_app.services import ChangeContext, agent_label_move

    publisher = as_user(people["publisher"])
    remove = url("label_remove", labelled.agent_id, "staging")
    confirm = publisher.get(remove)
    agent_label_move(
        agent_id=labelled.agent_id,
        label="canary",
        revision=1,
        context=ChangeContext(actor="victor", source="api", reason="canary set meanwhile"),
    )
    events = Event.objects.count()

    stale = publisher.post(remove, {"reason": "retire", "opened": opened(confirm)})

    assert stale.status_code == 200 and 'id="conflict"' in stale.content.decode()
    assert "canary set meanwhile" in stale.content.decode()
    assert Event.objects.count() == events and "staging" in agent_get(name="reviewer").labels


def test_only_publishers_see_and_use_the_remove_buttons(as_user, people, labelled):
    viewer = as_user(people["viewer"])
    remove = url("label_remove", labelled.agent_id, "staging")

    page = viewer.get(url("labels", labelled.agent_id)).content.decode()

    assert "agent-label-remove" not in page
    assert viewer.get(remove).status_code == 403
    assert viewer.post(remove, {"reason": "x", "opened": "x"}).status_code == 403
    assert agent_get(name="reviewer").labels == {"production": 1, "staging": 1}


def test_removing_a_label_the_agent_does_not_have_is_not_found(as_user, people, labelled):
    publisher = as_user(people["publisher"])

    assert publisher.get(url("label_remove", labelled.agent_id, "canary")).status_code == 404
    assert publisher.get(url("label_remove", labelled.agent_id, "Bad Label")).status_code == 404
