"""Hostile input: every request of tests/hostile/corpus.yaml against REST API v1, and agent
files full of markup shown by the admin and the HTML diff.

A refused request gets its 4xx as an RFC 9457 problem naming the problem type (and, for
validation errors, the field) and stores nothing; a harmless one (an injection string where
text is legitimate) is stored byte for byte or matched literally. See the corpus header.
"""

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.test import Client

from events.models import Event
from tests.agents_app.api.conftest import assert_problem

CORPUS = yaml.safe_load((Path(__file__).parent / "corpus.yaml").read_text(encoding="utf-8"))
AGENTS = "/api/v1/agents/"
SEED = "---\nname: reviewer\ndescription: Reviews code\ntools: Read, Grep\n---\nReview carefully.\n"


def _padded_document(size: int) -> str:
    """A valid agent file of exactly `size` bytes (UTF-8)."""
    head = "---\nname: padded\ndescription: Big\n---\n"
    return head + "x" * (size - len(head) - 1) + "\n"


def _deep_flow_yaml() -> str:
    # Far deeper than any parser's recursion limit: a crash here would be a 500.
    return "---\nname: deep\ndescription: d\nx: " + "[" * 50_000 + "]" * 50_000 + "\n---\n"


def _deep_block_yaml() -> str:
    lines = [f"{'  ' * level}k{level}:" for level in range(40)]
    return "---\nname: deep\ndescription: d\n" + "\n".join(lines) + " leaf\n---\n"


def _deep_lenient_yaml() -> str:
    # The description line is not strict YAML (": " inside a plain scalar), so the whole
    # frontmatter is read leniently, key by key; the nested value must still be refused.
    return "---\nname: deep\ndescription: Use: when\nx: " + "[" * 100 + "]" * 100 + "\n---\n"


def _billion_laughs() -> str:
    lines = ['lol0: &lol0 "lol"']
    lines += [f"lol{n}: &lol{n} [{', '.join([f'*lol{n - 1}'] * 10)}]" for n in range(1, 10)]
    return "---\nname: laughs\ndescription: d\n" + "\n".join(lines) + "\n---\nbody\n"


GENERATORS = {
    "over-agent-max-bytes": lambda: _padded_document(settings.AGENT_MAX_BYTES + 1),
    "over-upload-limit": lambda: _padded_document(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
    "deep-flow-yaml": _deep_flow_yaml,
    "deep-block-yaml": _deep_block_yaml,
    "deep-lenient-yaml": _deep_lenient_yaml,
    "billion-laughs": _billion_laughs,
}


def build(value: Any) -> Any:
    """A corpus value with its {repeat}, {concat} and {generate} parts made."""
    if isinstance(value, dict):
        if set(value) == {"repeat", "times"}:
            return value["repeat"] * value["times"]
        if set(value) == {"concat"}:
            return "".join(build(part) for part in value["concat"])
        if set(value) == {"generate"}:
            return GENERATORS[value["generate"]]()
        return {key: build(item) for key, item in value.items()}
    if isinstance(value, list):
        return [build(item) for item in value]
    return value


def _environ_headers(headers: dict[str, Any]) -> dict[str, str]:
    # As WSGI environ entries: the exact value reaches Django, whatever its characters.
    return {"HTTP_" + name.upper().replace("-", "_"): build(value) for name, value in headers.items()}


def send(api, users, entry: dict[str, Any]):
    """Send one corpus request as its user; the response."""
    user = entry.get("user", "editor")
    client = api.anonymous() if user == "anonymous" else api.as_user(users[user])
    kwargs: dict[str, Any] = {"content_type": entry.get("content_type")}
    if "json" in entry:
        kwargs["body"] = json.dumps(build(entry["json"])).encode()
        kwargs["content_type"] = kwargs["content_type"] or "application/json"
    elif "raw" in entry:
        kwargs["body"] = build(entry["raw"]).encode("utf-8", "surrogatepass")
    elif "raw_latin1" in entry:
        kwargs["body"] = build(entry["raw_latin1"]).encode("latin-1")
    return client.call(
        entry["method"], build(entry["path"]), **kwargs, **_environ_headers(entry.get("headers", {}))
    )


@pytest.fixture
def seeded(api, users):
    """`reviewer` at revision 1 with the label `production` (stream version 2)."""
    created = api.as_user(users["editor"]).post(AGENTS, {"content": SEED, "reason": "seed"})
    assert created.status_code == 201, created.content
    moved = api.as_user(users["publisher"]).put(f"{AGENTS}reviewer/labels/production/", {"revision": 1})
    assert moved.status_code == 200, moved.content
    api.anonymous()
    return api


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    ids = [entry["id"] for entry in entries]
    assert len(ids) == len(set(ids)), "corpus ids must be unique"
    return ids


def test_the_corpus_is_large_and_covers_anonymous_callers():
    assert len(CORPUS["refused"]) >= 60
    assert sum(entry.get("user") == "anonymous" for entry in CORPUS["refused"]) >= 5


@pytest.mark.parametrize("entry", CORPUS["refused"], ids=_ids(CORPUS["refused"]))
def test_a_hostile_request_gets_its_4xx_problem_and_stores_nothing(seeded, users, entry):
    before = Event.objects.count()

    response = send(seeded, users, entry)

    expect = entry["expect"]
    body = assert_problem(response, expect["status"], expect["type"])
    if "field" in expect:
        fields = [error["field"] for error in body.get("errors", [])]
        assert expect["field"] in fields, body
    assert "Traceback" not in body["detail"]
    assert Event.objects.count() == before


@pytest.mark.parametrize("entry", CORPUS["harmless"], ids=_ids(CORPUS["harmless"]))
def test_injection_text_is_stored_verbatim_or_matched_literally(seeded, users, entry):
    before = Event.objects.count()

    response = send(seeded, users, entry)

    expect = entry["expect"]
    assert response.status_code == expect["status"], response.content
    assert Event.objects.count() == before + expect.get("events_added", 0)
    if expect.get("empty_results"):
        assert response.json()["results"] == []
    if expect.get("stored_verbatim"):
        sent = build(entry["json"])["content"] if "json" in entry else build(entry["raw"])
        name = response.json()["name"]
        raw = seeded.as_user(users["viewer"]).get(f"{AGENTS}{name}/", HTTP_ACCEPT="text/markdown")
        assert raw.content == sent.encode("utf-8")
        reason = (
            build(entry["json"]).get("reason") if "json" in entry else entry["headers"]["X-Change-Reason"]
        )
        history = seeded.get(f"{AGENTS}{name}/revisions/").json()["results"]
        assert history[-1]["reason"] == reason
    # The tables the strings name are still there, with everything in them.
    assert Event.objects.filter(stream_version=1).exists()
    assert seeded.as_user(users["viewer"]).get(f"{AGENTS}reviewer/").status_code == 200


# ----------------------------------------------------------------------------------------------
# Markup from agent files, shown as HTML
# ----------------------------------------------------------------------------------------------
SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
PAYLOADS = (SCRIPT, BREAKOUT)


def _hostile_document(version: int) -> str:
    quoted = json.dumps(f"{SCRIPT} {BREAKOUT} v{version}")  # a YAML double-quoted scalar
    return (
        "---\n"
        "name: marked-up\n"
        f"description: {quoted}\n"
        f"model: {json.dumps(BREAKOUT)}\n"
        f"tools: {json.dumps(f'Read, {SCRIPT}')}\n"
        f"x-note: {quoted}\n"
        "---\n"
        f"{SCRIPT}\n{BREAKOUT}\nrevision {version}\n"
    )


class _ActiveMarkup(HTMLParser):
    """Collects what a browser would run: inline scripts, event handlers, javascript: URLs, and
    images pointing at `x` (the payload's)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and not attributes.get("src") and attributes.get("type") != "application/json":
            self.found.append(f"inline <script> at {self.getpos()}")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...> at {self.getpos()}")
            if name in ("href", "src") and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL at {self.getpos()}")
        if tag == "img" and attributes.get("src") == "x":
            self.found.append(f"<img src=x> at {self.getpos()}")


def assert_no_active_markup(page: str) -> None:
    for payload in PAYLOADS:
        assert payload not in page, f"{payload!r} is shown unescaped"
    parser = _ActiveMarkup()
    parser.feed(page)
    parser.close()
    assert parser.found == []


@pytest.fixture
def marked_up(api, users):
    """An agent whose text fields and reasons all carry markup: two revisions and a label."""
    editor = api.as_user(users["editor"])
    created = editor.post(AGENTS, {"content": _hostile_document(1), "reason": f"{SCRIPT}{BREAKOUT}"})
    assert created.status_code == 201, created.content
    revised = editor.put(
        f"{AGENTS}marked-up/",
        {"content": _hostile_document(2), "reason": f"why {BREAKOUT}"},
        HTTP_IF_MATCH='"1"',
    )
    assert revised.status_code == 200, revised.content
    labelled = api.as_user(users["publisher"]).put(
        f"{AGENTS}marked-up/labels/production/", {"revision": 1, "reason": f"ship {SCRIPT}"}
    )
    assert labelled.status_code == 200, labelled.content
    return created.json()["id"]


@pytest.fixture
def admin_client(users) -> Client:
    client = Client()
    client.force_login(users["admin"])
    return client


ADMIN_AGENT = "/admin/agents_app/agentcurrent/"


@pytest.mark.parametrize(
    ("page", "shows_agent_text"),
    [
        ("", True),  # the tools column
        (f"?q={SCRIPT}", False),  # the search box echoes the query
        ("{id}/change/", True),
        ("{id}/history/", True),
        ("{id}/compare/?a=1&b=2", True),
        ("{id}/labels/", True),
        ("{id}/revisions/1/revert/", True),
        ("{id}/archive/", False),
    ],
)
def test_admin_agent_pages_escape_everything_from_agent_files(
    admin_client, marked_up, page, shows_agent_text
):
    response = admin_client.get(ADMIN_AGENT + page.format(id=marked_up))

    assert response.status_code == 200
    text = response.content.decode()
    assert_no_active_markup(text)
    if shows_agent_text:  # shown, escaped: the check above is not passing on an empty page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.parametrize("page", ["/admin/events/event/", "/admin/events/event/?q=marked-up"])
def test_the_event_log_in_the_admin_escapes_event_data(admin_client, marked_up, page):
    response = admin_client.get(page)

    assert response.status_code == 200
    assert_no_active_markup(response.content.decode())


def test_an_event_page_in_the_admin_escapes_event_data(admin_client, marked_up):
    event = Event.objects.filter(stream_id=marked_up).order_by("position").first()

    response = admin_client.get(f"/admin/events/event/{event.pk}/change/")

    assert response.status_code == 200
    text = response.content.decode()
    assert_no_active_markup(text)
    assert "&lt;script&gt;" in text


def test_the_raw_file_in_the_admin_is_plain_text_never_html(admin_client, marked_up):
    response = admin_client.get(f"{ADMIN_AGENT}{marked_up}/revisions/1/raw/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content.decode() == _hostile_document(1)  # the exact bytes, nothing escaped


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/agents/marked-up/diff/?from=1&to=2&format=html",
        "/api/v1/agents/marked-up/diff/?from=production&to=latest&format=html",
        "/api/v1/diff/?left=marked-up@1&right=marked-up@2&format=html",
    ],
)
def test_the_html_diff_escapes_everything_from_agent_files(api, users, marked_up, path):
    response = api.as_user(users["viewer"]).get(path)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    text = response.content.decode()
    assert_no_active_markup(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
