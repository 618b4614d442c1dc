"""`/api/v1/agents/{name}/diff/`, `/api/v1/diff/` and `/api/v1/agents/{name}/blame/` (API.md, "Diff")."""

import datetime as dt
import itertools
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_app.diff import DiffSide
from agents_app.models import AgentRevision
from agents_app.selectors import agent_get, revision_pair, revision_pair_by_name
from events.models import Event
from tests.agents_app.api.conftest import assert_problem
from tests.conftest import agent_text

AGENTS = "/api/v1/agents/"
DIFF = "/api/v1/agents/reviewer/diff/"
CROSS_DIFF = "/api/v1/diff/"
BLAME = "/api/v1/agents/reviewer/blame/"

SIDE_KEYS = {"agent", "revision", "sha256", "actor", "recorded_at"}

# One agent's history through the API, written to exercise what breaks unified diffs:
# CRLF line endings, a missing final newline, non-ASCII text, markup in the body.
HISTORY = [
    # 1: plain LF
    "---\nname: reviewer\ndescription: Reviews code\ntools: Read, Grep\n---\n"
    "Review carefully.\n\nCheck the tests.\nThen stop.\n",
    # 2: the same as CRLF, with non-ASCII text
    "---\r\nname: reviewer\r\ndescription: Prüft Code — gründlich\r\ntools: Read, Grep\r\n---\r\n"
    "Review carefully: café, 漢字, 🔍.\r\n\r\nCheck the tests.\r\nThen stop.\r\n",
    # 3: CRLF, no final newline, a model added
    "---\r\nname: reviewer\r\ndescription: Prüft Code — gründlich\r\ntools: Read, Grep\r\nmodel: opus\r\n"
    "---\r\nReview carefully: café, 漢字, 🔍.\r\n\r\nCheck the tests.\r\nThen stop.",
    # 4: LF again, still no final newline, a tool added and markup in the body
    "---\nname: reviewer\ndescription: Reviews code\ntools: [Read, Grep, Bash]\nmodel: opus\n---\n"
    "Review carefully: café, 漢字, 🔍.\n<script>alert('x')</script>\nCheck the tests.\nThen stop.",
    # 5: the tools key removed (every tool), final newline back, one line with a lone CR
    "---\nname: reviewer\ndescription: Reviews code\nmodel: opus\n---\n"
    "Review carefully 🔍.\nA lone\rcarriage return.\n\nCheck the tests.\nThen stop.\n",
]


def revise(api, name: str, content: str, *, version: int, reason: str = ""):
    """A new revision through PUT; a short pause keeps the recorded instants apart (SQLite has ms)."""
    time.sleep(0.003)
    response = api.put(
        f"{AGENTS}{name}/", {"content": content, "reason": reason}, HTTP_IF_MATCH=f'"{version}"'
    )
    assert response.status_code == 200, response.content
    return response.json()


def create(api, content: str, reason: str = ""):
    response = api.post(AGENTS, {"content": content, "reason": reason})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def history(editor_api):
    """`reviewer` with the five revisions of HISTORY, all by the editor."""
    create(editor_api, HISTORY[0])
    for version, content in enumerate(HISTORY[1:], start=1):
        revise(editor_api, "reviewer", content, version=version)
    return HISTORY


def apply_with_patch(workdir: Path, filename: str, old: bytes, patch: bytes) -> bytes:
    """Run the system `patch -p1` on `old` saved as `filename`; the patched bytes."""
    workdir.mkdir()
    (workdir / filename).write_bytes(old)
    result = subprocess.run(
        ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch"],
        input=patch,
        cwd=workdir,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in workdir.iterdir()) == [filename]  # no .rej, no .orig
    return (workdir / filename).read_bytes()


def recorded_at(revision: int) -> dt.datetime:
    """When the event that made `reviewer`'s revision `revision` was recorded."""
    return Event.objects.get(type__in=["agent.created", "agent.revised"], data__revision=revision).recorded_at


# ---------------------------------------------------------------------------------------
# /agents/{name}/diff/: JSON
# ---------------------------------------------------------------------------------------


def test_the_default_diff_is_the_latest_revision_against_the_one_before_in_the_contract_shape(
    editor_api,
):
    create(
        editor_api, agent_text("reviewer", extra="tools: Read, Grep\n", body="Review carefully.\n\nStop.\n")
    )
    revise(
        editor_api,
        "reviewer",
        agent_text(
            "reviewer",
            description="Reviews code well",
            extra="tools: Read, Grep, Bash\nmodel: opus\n",
            body="Review very carefully.\n\nStop.\n",
        ),
        version=1,
    )
    revisions = editor_api.get(f"{AGENTS}reviewer/revisions/").json()["results"]

    response = editor_api.get(DIFF)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"from", "to", "identical", "frontmatter", "tools", "body", "warnings", "permissions"}
    assert set(body["from"]) == SIDE_KEYS and set(body["to"]) == SIDE_KEYS
    for side, row in ((body["from"], revisions[0]), (body["to"], revisions[1])):
        assert side["agent"] == "reviewer" and side["actor"] == "editor"
        assert side["revision"] == row["revision"] and side["sha256"] == row["sha256"]
        assert dt.datetime.fromisoformat(side["recorded_at"]) == dt.datetime.fromisoformat(
            row["recorded_at"].replace("Z", "+00:00")
        )
    assert (body["from"]["revision"], body["to"]["revision"]) == (1, 2)
    assert body["identical"] is False
    assert body["frontmatter"] == {
        "added": {"model": "opus"},
        "removed": {},
        "changed": {
            "description": {"from": "Reviews code", "to": "Reviews code well"},
            "tools": {"from": "Read, Grep", "to": "Read, Grep, Bash"},
        },
    }
    assert body["tools"] == {"added": ["Bash"], "removed": [], "from_all": False, "to_all": False}
    assert body["body"] == {
        "additions": 1,
        "deletions": 1,
        "unified": "@@ -1,3 +1,3 @@\n-Review carefully.\n+Review very carefully.\n \n Stop.\n",
    }
    assert body["warnings"] == [
        {"code": "tool_added", "detail": "Bash"},
        {"code": "model_changed", "detail": "(not set) -> opus"},
    ]


def test_the_first_revision_alone_diffs_as_identical_to_itself(editor_api, created):
    response = editor_api.get(DIFF)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["identical"] is True
    assert body["from"]["revision"] == body["to"]["revision"] == 1
    assert body["from"]["sha256"] == body["to"]["sha256"] == created["sha256"]
    assert body["frontmatter"] == {"added": {}, "removed": {}, "changed": {}}
    assert body["tools"]["added"] == body["tools"]["removed"] == []
    assert body["body"] == {"additions": 0, "deletions": 0, "unified": ""}
    assert body["warnings"] == []


def test_to_alone_diffs_against_the_revision_before_it(editor_api, history):
    body = editor_api.get(f"{DIFF}?to=3").json()
    first = editor_api.get(f"{DIFF}?to=1").json()

    assert (body["from"]["revision"], body["to"]["revision"]) == (2, 3)
    assert body["frontmatter"]["added"] == {"model": "opus"}
    assert (first["from"]["revision"], first["to"]["revision"], first["identical"]) == (1, 1, True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("from=1&to=latest", (1, 5)),
        ("from=4&to=2", (4, 2)),
        ("from=latest&to=latest", (5, 5)),
        ("from=3", (3, 5)),
        ("from=2&to=2", (2, 2)),
    ],
)
def test_from_and_to_take_revision_numbers_and_latest(editor_api, history, query, expected):
    response = editor_api.get(f"{DIFF}?{query}")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["from"]["revision"], body["to"]["revision"]) == expected
    assert body["identical"] is (expected[0] == expected[1])


def test_from_and_to_take_a_label(api, users, history):
    api.as_user(users["publisher"]).put("/api/v1/agents/reviewer/labels/production/", {"revision": 2})

    response = api.as_user(users["viewer"]).get(f"{DIFF}?from=production")
    backwards = api.get(f"{DIFF}?from=latest&to=production")

    assert response.status_code == 200, response.content
    assert (response.json()["from"]["revision"], response.json()["to"]["revision"]) == (2, 5)
    assert (backwards.json()["from"]["revision"], backwards.json()["to"]["revision"]) == (5, 2)


@pytest.mark.postgres
def test_the_diff_reads_the_agent_and_both_revisions_in_one_statement(editor_api, history):
    with CaptureQueriesContext(connection) as captured:
        response = editor_api.get(f"{DIFF}?from=1&to=4")

    assert response.status_code == 200, response.content
    assert (response.json()["from"]["revision"], response.json()["to"]["revision"]) == (1, 4)
    views = [query["sql"] for query in captured if "agents_app_agent" in query["sql"]]
    assert len(views) == 1, views


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("from_ref", "to_ref"),
    [("1", "4"), (None, None), (None, "3"), ("latest", None), ("production", None), ("4", "production"),
     ("2", "latest"), ("1", "1"), ("", ""), ("", "3")],
)  # fmt: skip
def test_the_one_statement_read_answers_as_agent_get_and_revision_pair(api, users, history, from_ref, to_ref):
    api.as_user(users["publisher"]).put("/api/v1/agents/reviewer/labels/production/", {"revision": 2})

    fast = revision_pair_by_name(name="reviewer", from_ref=from_ref, to_ref=to_ref)
    general = revision_pair(agent=agent_get(name="reviewer"), from_ref=from_ref, to_ref=to_ref)

    assert fast is not None
    assert [DiffSide.from_revision(row) for row in fast] == [DiffSide.from_revision(row) for row in general]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("name", "from_ref", "to_ref"),
    [("nobody", None, None), ("reviewer", "6", None), ("reviewer", None, "9"), ("reviewer", "staging", None),
     ("reviewer", "@2026-01-01T00:00:00Z", None)],
)  # fmt: skip
def test_what_the_one_statement_read_cannot_answer_goes_the_general_way(history, name, from_ref, to_ref):
    assert revision_pair_by_name(name=name, from_ref=from_ref, to_ref=to_ref) is None


def test_from_and_to_take_a_url_encoded_timestamp(editor_api, history):
    second, fourth = recorded_at(2), recorded_at(4)
    between = second + (recorded_at(3) - second) / 2
    query = urlencode({"from": f"@{between.isoformat()}", "to": f"@{fourth.isoformat()}"})
    assert "%2B00%3A00" in query  # the "+" of the offset is sent encoded

    response = editor_api.get(f"{DIFF}?{query}")

    assert response.status_code == 200, response.content
    assert (response.json()["from"]["revision"], response.json()["to"]["revision"]) == (2, 4)


def test_a_timestamp_whose_plus_arrives_as_a_space_still_resolves(editor_api, history):
    query = f"from=@{recorded_at(1).isoformat()}&to=@{recorded_at(3).isoformat()}"  # "+" unencoded

    response = editor_api.get(f"{DIFF}?{query}")

    assert response.status_code == 200, response.content
    assert (response.json()["from"]["revision"], response.json()["to"]["revision"]) == (1, 3)


def test_respelling_the_tools_as_a_list_is_no_change_and_no_warning(editor_api):
    create(editor_api, agent_text("reviewer", extra="tools: Read, Bash\n"))
    revise(editor_api, "reviewer", agent_text("reviewer", extra="tools: [Read, Bash]\n"), version=1)

    body = editor_api.get(DIFF).json()

    assert body["identical"] is False  # the bytes differ ...
    assert body["frontmatter"] == {"added": {}, "removed": {}, "changed": {}}  # ... the grant does not
    assert body["tools"] == {"added": [], "removed": [], "from_all": False, "to_all": False}
    assert body["body"] == {"additions": 0, "deletions": 0, "unified": ""}
    assert body["warnings"] == []


def test_removing_the_tools_key_warns_that_every_tool_is_now_granted(editor_api):
    create(editor_api, agent_text("reviewer", extra="tools: Read, Bash\n"))
    revise(editor_api, "reviewer", agent_text("reviewer"), version=1)

    body = editor_api.get(DIFF).json()
    narrowed = editor_api.get(f"{DIFF}?from=2&to=1").json()

    assert body["tools"] == {"added": [], "removed": ["Bash", "Read"], "from_all": False, "to_all": True}
    assert body["frontmatter"]["removed"] == {"tools": "Read, Bash"}
    assert [warning["code"] for warning in body["warnings"]] == ["tools_removed"]
    # From no tools key to a list narrows the agent: not a warning.
    assert narrowed["tools"] == {"added": ["Bash", "Read"], "removed": [], "from_all": True, "to_all": False}
    assert narrowed["warnings"] == []


# ---------------------------------------------------------------------------------------
# /agents/{name}/diff/: unified and HTML
# ---------------------------------------------------------------------------------------

PAIRS = list(itertools.permutations(range(len(HISTORY)), 2))


@pytest.mark.parametrize(
    "how",
    [{"HTTP_ACCEPT": "text/x-diff"}, {"query": "format=unified"}],
    ids=["accept-header", "format-parameter"],
)
def test_the_unified_diff_of_every_pair_of_revisions_patches_the_old_bytes_into_the_new(
    editor_api, history, tmp_path, how
):
    assert "\r\n" in HISTORY[1] and not HISTORY[2].endswith("\n") and any(ord(c) > 127 for c in HISTORY[1])
    headers = {key: value for key, value in how.items() if key.startswith("HTTP_")}
    extra = f"&{how['query']}" if "query" in how else ""

    for old_index, new_index in PAIRS:
        old, new = HISTORY[old_index], HISTORY[new_index]
        response = editor_api.get(f"{DIFF}?from={old_index + 1}&to={new_index + 1}{extra}", **headers)

        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "text/x-diff; charset=utf-8"
        assert response.content.startswith(b"--- a/reviewer.md\n+++ b/reviewer.md\n@@ -")
        patched = apply_with_patch(
            tmp_path / f"r{old_index + 1}-r{new_index + 1}", "reviewer.md", old.encode(), response.content
        )
        assert patched == new.encode(), f"r{old_index + 1} -> r{new_index + 1}"


def test_the_unified_diff_of_identical_revisions_is_empty(editor_api, history):
    response = editor_api.get(f"{DIFF}?from=3&to=3", HTTP_ACCEPT="text/x-diff")

    assert response.status_code == 200
    assert response.content == b""  # nothing to apply (DRF sends no Content-Type for an empty body)


def test_the_html_diff_is_a_side_by_side_table_with_the_file_text_escaped(editor_api, history):
    response = editor_api.get(f"{DIFF}?from=3&to=4&format=html")

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/html; charset=utf-8"
    html = response.content.decode()
    assert '<table class="agent-diff"' in html
    assert "reviewer@3" in html and "reviewer@4" in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "<script" not in html
    sentence = "Bash is now granted. <small><code>tool_added</code></small>"
    assert f'<li class="agent-diff-warning tool_added">{sentence}</li>' in html


def test_an_unknown_format_is_a_406_problem(editor_api, created):
    body = assert_problem(editor_api.get(f"{DIFF}?format=pdf"), 406)
    assert "unified" in body["detail"] and "html" in body["detail"]
    assert_problem(editor_api.get(DIFF, HTTP_ACCEPT="application/pdf"), 406)


# ---------------------------------------------------------------------------------------
# /agents/{name}/diff/: errors
# ---------------------------------------------------------------------------------------


def test_an_anonymous_diff_is_401_with_a_challenge(api, created):
    response = api.anonymous().get(DIFF)

    assert_problem(response, 401, "not-authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_user_without_the_view_permission_gets_403(api, users, created):
    assert_problem(api.as_user(users["nobody"]).get(DIFF), 403, "permission-denied")
    assert_problem(api.get(f"{DIFF}?format=unified"), 403)


def test_an_unknown_agent_revision_or_label_is_a_404_problem(editor_api, history):
    assert_problem(editor_api.get("/api/v1/agents/ghost/diff/"), 404, "not-found")
    assert_problem(editor_api.get(f"{DIFF}?to=6"), 404, "not-found")
    assert_problem(editor_api.get(f"{DIFF}?from=99"), 404, "not-found")
    assert_problem(editor_api.get(f"{DIFF}?from=production"), 404, "not-found")
    assert_problem(editor_api.get(f"{DIFF}?from=@2000-01-01T00:00:00Z"), 404, "not-found")
    # Errors are problem JSON whichever diff format was asked for.
    assert_problem(editor_api.get(f"{DIFF}?to=6", HTTP_ACCEPT="text/x-diff"), 404)
    assert_problem(editor_api.get(f"{DIFF}?to=6&format=html"), 404)


@pytest.mark.parametrize(
    "query", ["from=-1", "to=0", "from=Prod!", "to=@yesterday", "from=@2026-01-01T00:00:00", "to=1234567890"]
)
def test_a_malformed_reference_is_a_400_problem_naming_ref(editor_api, created, query):
    body = assert_problem(editor_api.get(f"{DIFF}?{query}"), 400, "invalid-reference")

    assert body["errors"][0]["field"] == "ref"


# ---------------------------------------------------------------------------------------
# /diff/?left=&right=: across agents
# ---------------------------------------------------------------------------------------


@pytest.fixture
def two_agents(editor_api):
    left = agent_text("alpha", extra="tools: Read\n", body="Alpha checks.\nShared line.\n")
    create(editor_api, left)
    right_1 = agent_text("beta", body="Beta checks.\nShared line.\n")
    right_2 = agent_text("beta", extra="model: opus\n", body="Beta checks twice.\nShared line.\n")
    create(editor_api, right_1)
    revise(editor_api, "beta", right_2, version=1)
    return left, right_2


def test_a_diff_across_two_agents_names_both_sides(editor_api, two_agents):
    response = editor_api.get(f"{CROSS_DIFF}?left=alpha@1&right=beta@latest")

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body["from"]) == SIDE_KEYS
    assert (body["from"]["agent"], body["from"]["revision"]) == ("alpha", 1)
    assert (body["to"]["agent"], body["to"]["revision"]) == ("beta", 2)
    assert body["identical"] is False
    assert body["frontmatter"]["changed"] == {"name": {"from": "alpha", "to": "beta"}}
    assert body["frontmatter"]["added"] == {"model": "opus"}
    assert body["tools"] == {"added": [], "removed": ["Read"], "from_all": False, "to_all": True}
    assert body["body"]["additions"] == 1 and body["body"]["deletions"] == 1
    assert [warning["code"] for warning in body["warnings"]] == ["tools_removed", "model_changed"]


def test_a_ref_left_out_of_a_cross_agent_side_means_latest(editor_api, two_agents):
    body = editor_api.get(f"{CROSS_DIFF}?left=beta&right=beta@1").json()

    assert (body["from"]["revision"], body["to"]["revision"]) == (2, 1)


def test_the_unified_cross_agent_diff_patches_one_file_into_the_other(editor_api, two_agents, tmp_path):
    left, right = two_agents

    response = editor_api.get(f"{CROSS_DIFF}?left=alpha@1&right=beta@2", HTTP_ACCEPT="text/x-diff")
    by_format = editor_api.get(f"{CROSS_DIFF}?left=alpha@1&right=beta@2&format=unified")

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/x-diff")
    assert response.content.startswith(b"--- a/alpha.md\n+++ b/beta.md\n@@ -")
    assert by_format.content == response.content
    assert apply_with_patch(tmp_path / "p", "alpha.md", left.encode(), response.content) == right.encode()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("right=beta@1", "left"),
        ("left=&right=beta@1", "left"),
        ("left=@1&right=beta@1", "left"),
        ("left=Not%20A%20Name@1&right=beta@1", "left"),
        ("left=alpha@1", "right"),
        ("left=alpha@1&right=beta!@1", "right"),
    ],
)
def test_a_missing_or_malformed_side_is_a_400_naming_it(editor_api, two_agents, query, field):
    body = assert_problem(editor_api.get(f"{CROSS_DIFF}?{query}"), 400, "invalid-parameter")

    assert body["errors"][0]["field"] == field


def test_a_cross_agent_diff_with_an_unknown_agent_or_revision_is_404_and_a_bad_ref_400(
    editor_api, two_agents
):
    assert_problem(editor_api.get(f"{CROSS_DIFF}?left=ghost@1&right=beta@1"), 404, "not-found")
    assert_problem(editor_api.get(f"{CROSS_DIFF}?left=alpha@1&right=ghost"), 404, "not-found")
    assert_problem(editor_api.get(f"{CROSS_DIFF}?left=alpha@2&right=beta@1"), 404, "not-found")
    assert_problem(editor_api.get(f"{CROSS_DIFF}?left=alpha@-1&right=beta@1"), 400, "invalid-reference")


def test_a_cross_agent_diff_needs_authentication_and_the_view_permission(api, users, two_agents):
    anonymous = api.anonymous().get(f"{CROSS_DIFF}?left=alpha@1&right=beta@1")
    assert_problem(anonymous, 401)
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="api"'
    assert_problem(api.as_user(users["nobody"]).get(f"{CROSS_DIFF}?left=alpha@1&right=beta@1"), 403)
    assert api.as_user(users["viewer"]).get(f"{CROSS_DIFF}?left=alpha@1&right=beta@1").status_code == 200


# ---------------------------------------------------------------------------------------
# /agents/{name}/blame/
# ---------------------------------------------------------------------------------------


@pytest.fixture
def blamed(api, users):
    """`reviewer` with three revisions: 1 and 3 by the editor, 2 by the admin."""
    create(
        api.as_user(users["editor"]),
        "---\nname: reviewer\ndescription: Reviews code\n---\nline one\nline two\nline three\n",
        reason="first",
    )
    revise(
        api.as_user(users["admin"]),
        "reviewer",
        "---\nname: reviewer\ndescription: Reviews code\nmodel: opus\n---\n"
        "line one\nline TWO\nline three\nline four\n",
        version=1,
        reason="sharper",
    )
    revise(
        api.as_user(users["editor"]),
        "reviewer",
        "---\nname: reviewer\ndescription: Reviews code well\nmodel: opus\n---\n"
        "line zero\nline one\nline TWO\nline three\nline four\n",
        version=2,
        reason="intro",
    )
    return api


def who(entries: list[dict]) -> list[tuple]:
    return [(entry.get("line", entry.get("key")), entry["revision"], entry["actor"]) for entry in entries]


def test_blame_attributes_each_body_line_and_frontmatter_key_to_its_revision_and_actor(blamed, users):
    revisions = {row["revision"]: row for row in blamed.get(f"{AGENTS}reviewer/revisions/").json()["results"]}

    response = blamed.as_user(users["viewer"]).get(BLAME)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"agent", "revision", "lines", "frontmatter"}
    assert body["agent"] == "reviewer" and body["revision"] == 3
    assert [(line["line"], line["text"], line["revision"], line["actor"]) for line in body["lines"]] == [
        (1, "line zero", 3, "editor"),
        (2, "line one", 1, "editor"),
        (3, "line TWO", 2, "admin"),
        (4, "line three", 1, "editor"),
        (5, "line four", 2, "admin"),
    ]
    assert who(body["frontmatter"]) == [
        ("name", 1, "editor"),
        ("description", 3, "editor"),
        ("model", 2, "admin"),
    ]
    for entry in body["lines"] + body["frontmatter"]:
        row = revisions[entry["revision"]]
        assert entry["reason"] == row["reason"]
        assert dt.datetime.fromisoformat(entry["recorded_at"]) == dt.datetime.fromisoformat(
            row["recorded_at"].replace("Z", "+00:00")
        )
    assert [revisions[n]["reason"] for n in (1, 2, 3)] == ["first", "sharper", "intro"]


def test_blame_with_a_ref_blames_that_revision(blamed):
    body = blamed.get(f"{BLAME}?ref=2").json()

    assert body["revision"] == 2
    assert [(line["text"], line["revision"], line["actor"]) for line in body["lines"]] == [
        ("line one", 1, "editor"),
        ("line TWO", 2, "admin"),
        ("line three", 1, "editor"),
        ("line four", 2, "admin"),
    ]
    assert who(body["frontmatter"]) == [
        ("name", 1, "editor"),
        ("description", 1, "editor"),
        ("model", 2, "admin"),
    ]


def test_blame_of_the_first_revision_and_by_label_or_latest(blamed, users):
    blamed.as_user(users["publisher"]).put("/api/v1/agents/reviewer/labels/stable/", {"revision": 1})

    first = blamed.get(f"{BLAME}?ref=1").json()
    labelled = blamed.get(f"{BLAME}?ref=stable").json()
    latest = blamed.get(f"{BLAME}?ref=latest").json()

    assert {line["revision"] for line in first["lines"]} == {1}
    assert [line["text"] for line in first["lines"]] == ["line one", "line two", "line three"]
    assert labelled == first
    assert latest["revision"] == 3 and len(latest["lines"]) == 5


def test_blame_errors_are_problems(api, users, blamed):
    anonymous = api.anonymous().get(BLAME)
    assert_problem(anonymous, 401, "not-authenticated")
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="api"'
    assert_problem(api.as_user(users["nobody"]).get(BLAME), 403, "permission-denied")
    api.as_user(users["viewer"])
    assert_problem(api.get("/api/v1/agents/ghost/blame/"), 404, "not-found")
    assert_problem(api.get(f"{BLAME}?ref=4"), 404, "not-found")
    assert_problem(api.get(f"{BLAME}?ref=nolabel"), 404, "not-found")
    assert_problem(api.get(f"{BLAME}?ref=-2"), 400, "invalid-reference")
    assert_problem(api.get(f"{BLAME}?ref=@noon"), 400, "invalid-reference")


def test_blame_numbers_body_lines_as_the_diff_does_only_a_newline_ends_a_line(editor_api):
    create(editor_api, agent_text("reviewer", body="one\x0cstill one\nA lone\rCR\nthree\u2028same\n"))

    body = editor_api.get(BLAME).json()

    assert [line["text"] for line in body["lines"]] == ["one\x0cstill one", "A lone\rCR", "three\u2028same"]


def test_blame_reads_the_blamed_revision_row_alone_however_long_the_history(editor_api, monkeypatch):
    content = agent_text("reviewer", body="line one\nline two\n")
    create(editor_api, content)
    for version in range(1, 30):
        content = content.replace(f"\n{version - 1}\n", "\n") + f"{version}\n"
        revise(editor_api, "reviewer", content, version=version)
    loaded: list[int] = []
    from_db = AgentRevision.from_db.__func__

    def counting(cls, db, field_names, values):
        row = from_db(cls, db, field_names, values)
        loaded.append(row.revision)
        return row

    monkeypatch.setattr(AgentRevision, "from_db", classmethod(counting))

    early = editor_api.get(f"{BLAME}?ref=3")
    early_rows, loaded[:] = list(loaded), []
    late = editor_api.get(f"{BLAME}?ref=30")

    assert early.status_code == late.status_code == 200
    assert [line["revision"] for line in late.json()["lines"]] == [1, 1, 30]
    assert early_rows == [3] and loaded == [30]  # not every revision before it


def test_the_html_diff_is_a_complete_page_with_its_stylesheets_and_no_inline_style(editor_api, history):
    response = editor_api.get(f"{DIFF}?from=3&to=4&format=html")

    html = response.content.decode()
    assert html.startswith('<!DOCTYPE html>\n<html lang="en">') and html.rstrip().endswith("</html>")
    assert (
        "<title>reviewer@3 \u2192 reviewer@4</title>" in html
        and "<h1>reviewer@3 \u2192 reviewer@4</h1>" in html
    )
    assert '<link rel="stylesheet" href="/static/agents_app/admin.css">' in html
    assert '<link rel="stylesheet" href="/static/agents_app/diff-page.css">' in html
    assert "<style" not in html and " style=" not in html  # the CSP allows styles from files only
    assert (
        "default-src 'none'" in response["Content-Security-Policy"]
        or "style-src" in response["Content-Security-Policy"]
    )
