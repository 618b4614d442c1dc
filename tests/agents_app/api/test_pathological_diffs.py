"""Every diff and blame surface on 256 KiB pathological pairs (issue 13, defect 6).

Each surface answers, with a correct result that agrees with the others: the unified diff
patches the old bytes into the new ones, and the JSON counts, the unified diff's lines, the
HTML rows and the lines blame gives the newer revision all name the same lines. Timing is the
benchmark's business (`python -m bench.pathological`), not the tests'.
"""

import io
import json
import random
import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse

from agents_app.selectors import agent_get

AGENTS = "/api/v1/agents/"

HEAD = "---\nname: {name}\ndescription: Reviews code\n---\n"
ROOM = settings.AGENT_MAX_BYTES - len(HEAD.format(name="reviewer")) - 8


def _alternating() -> tuple[str, str]:
    pairs = ROOM // 4
    return "a\nb\n" * pairs, "b\na\n" * pairs


def _three_way() -> tuple[str, str]:
    # No line unique, and every line differs from its counterpart: Myers' search runs out of
    # steps and the bodies are replaced whole.
    triples = ROOM // 6
    return "a\nb\nc\n" * triples, "c\nb\na\n" * triples


def _shuffled_unique() -> tuple[str, str]:
    lines = [f"{number:05d}\n" for number in range(ROOM // 6)]
    return "".join(lines), "".join(random.Random(13).sample(lines, len(lines)))


PAIRS = {"alternating": _alternating(), "three-way": _three_way(), "shuffled-unique": _shuffled_unique()}


def document(name: str, body: str) -> str:
    return HEAD.format(name=name) + body


@pytest.fixture(params=list(PAIRS))
def pair(request) -> tuple[str, str]:
    old, new = PAIRS[request.param]
    # At the size limit: one byte more and the document would be refused.
    assert settings.AGENT_MAX_BYTES - 16 < len(document("reviewer", old)) <= settings.AGENT_MAX_BYTES
    return old, new


@pytest.fixture
def revised(editor_api, pair) -> tuple[str, str]:
    """`reviewer` at revision 1 with the old body and at revision 2 with the new one."""
    old, new = document("reviewer", pair[0]), document("reviewer", pair[1])
    response = editor_api.post(AGENTS, {"content": old, "reason": "old"})
    assert response.status_code == 201, response.content[:500]
    response = editor_api.put(f"{AGENTS}reviewer/", {"content": new, "reason": "new"}, HTTP_IF_MATCH='"1"')
    assert response.status_code == 200, response.content[:500]
    return old, new


def patched(tmp_path: Path, old: str, patch: bytes) -> bytes:
    """`patch -p1` applied to `old` saved as the file the patch names."""
    filename = re.match(rb"--- a/(\S+)\n", patch).group(1).decode()
    (tmp_path / filename).write_text(old, newline="")
    result = subprocess.run(
        ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch"],
        input=patch,
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[:2000]
    return (tmp_path / filename).read_bytes()


def unified_counts(patch: str) -> tuple[int, int]:
    """(lines added, lines removed) in a unified diff, headers left out."""
    lines = patch.splitlines()
    return (
        sum(1 for line in lines if line.startswith("+") and not line.startswith("+++ ")),
        sum(1 for line in lines if line.startswith("-") and not line.startswith("--- ")),
    )


def html_counts(fragment: str) -> tuple[int, int]:
    """(lines added, lines removed) in the side-by-side HTML: a replace row shows one of each."""
    replaced = fragment.count('<tr class="replace">')
    return fragment.count('<tr class="insert">') + replaced, fragment.count('<tr class="delete">') + replaced


def test_json_unified_html_and_blame_agree_on_a_256_kib_pathological_pair(editor_api, revised, tmp_path):
    old, new = revised

    summary = editor_api.get(f"{AGENTS}reviewer/diff/?from=1&to=2")
    unified = editor_api.get(f"{AGENTS}reviewer/diff/?from=1&to=2&format=unified")
    html = editor_api.get(f"{AGENTS}reviewer/diff/?from=1&to=2&format=html")
    blame = editor_api.get(f"{AGENTS}reviewer/blame/?ref=2")

    for response in (summary, unified, html, blame):
        assert response.status_code == 200, response.content[:500]
    body = summary.json()["body"]
    counts = (body["additions"], body["deletions"])
    assert counts[0] > 0 and counts[1] > 0
    assert patched(tmp_path, old, unified.content) == new.encode()
    assert unified_counts(unified.content.decode()) == counts
    assert unified_counts(body["unified"]) == counts
    assert html_counts(html.content.decode()) == counts
    lines = blame.json()["lines"]
    new_body = new.removeprefix(HEAD.format(name="reviewer"))
    assert [line["text"] + "\n" for line in lines] == new_body.splitlines(keepends=True)
    assert {line["revision"] for line in lines} <= {1, 2}
    assert sum(1 for line in lines if line["revision"] == 2) == counts[0]


def test_the_history_counts_the_same_lines_as_the_diff(editor_api, revised):
    rows = editor_api.get(f"{AGENTS}reviewer/revisions/").json()["results"]
    body = editor_api.get(f"{AGENTS}reviewer/diff/?from=1&to=2").json()["body"]

    assert (rows[1]["lines_added"], rows[1]["lines_removed"]) == (body["additions"], body["deletions"])


def test_the_alternating_pair_is_diffed_as_the_one_line_it_moves(editor_api):
    old, new = PAIRS["alternating"]
    assert editor_api.post(AGENTS, {"content": document("reviewer", old)}).status_code == 201
    put = editor_api.put(f"{AGENTS}reviewer/", {"content": document("reviewer", new)}, HTTP_IF_MATCH='"1"')
    assert put.status_code == 200

    body = editor_api.get(f"{AGENTS}reviewer/diff/?from=1&to=2").json()["body"]

    assert (body["additions"], body["deletions"]) == (1, 1)


def test_a_cross_agent_diff_of_a_256_kib_pathological_pair_applies_and_agrees(editor_api, pair, tmp_path):
    left, right = document("alpha", pair[0]), document("beta", pair[1])
    for content in (left, right):
        assert editor_api.post(AGENTS, {"content": content}).status_code == 201

    summary = editor_api.get("/api/v1/diff/?left=alpha@1&right=beta@1").json()
    unified = editor_api.get("/api/v1/diff/?left=alpha@1&right=beta@1&format=unified")
    html = editor_api.get("/api/v1/diff/?left=alpha@1&right=beta@1&format=html")

    counts = (summary["body"]["additions"], summary["body"]["deletions"])
    assert patched(tmp_path, left, unified.content) == right.encode()
    # The file diff also shows the renamed `name:` line; the body diff does not.
    assert unified_counts(unified.content.decode()) == (counts[0] + 1, counts[1] + 1)
    assert html_counts(html.content.decode()) == (counts[0] + 1, counts[1] + 1)


def test_agent_diff_prints_what_the_api_answers_for_a_256_kib_pathological_pair(editor_api, revised):
    def command(output_format: str) -> str:
        out = io.StringIO()
        call_command("agent_diff", "reviewer", "1", "2", "--format", output_format, stdout=out)
        return out.getvalue()

    api = {
        "json": editor_api.get(f"{AGENTS}reviewer/diff/?from=1&to=2").json(),
        "unified": editor_api.get(f"{AGENTS}reviewer/diff/?from=1&to=2&format=unified").content.decode(),
        "html": editor_api.get(f"{AGENTS}reviewer/diff/?from=1&to=2&format=html").content.decode(),
    }

    assert json.loads(command("json")) == api["json"]
    assert command("unified") == api["unified"]
    # The API wraps the same fragment in a page (agents_app.api.renderers.diff_page).
    assert fragment(api["html"]) + "\n" == command("html")


def test_the_admin_compare_and_conflict_pages_show_the_same_diff_for_a_256_kib_pathological_pair(
    client, users, editor_api, pair, django_capture_on_commit_callbacks
):
    old, new = document("reviewer", pair[0]), document("reviewer", pair[1])
    assert editor_api.post(AGENTS, {"content": old}).status_code == 201
    agent_id = agent_get(name="reviewer").agent_id
    client.force_login(users["admin"])
    change = reverse("admin:agents_app_agentcurrent_change", args=[agent_id])
    opened = re.search(r'name="opened" value="([^"]+)"', client.get(change).content.decode()).group(1)
    # Someone else stores the new body while the form is open ...
    assert editor_api.put(f"{AGENTS}reviewer/", {"content": new}, HTTP_IF_MATCH='"1"').status_code == 200
    expected = fragment(editor_api.get(f"{AGENTS}reviewer/diff/?from=1&to=2&format=html").content.decode())

    compare = client.get(reverse("admin:agents_app_agentcurrent_compare", args=[agent_id]), {"a": 1, "b": 2})
    with django_capture_on_commit_callbacks(execute=True):
        # ... so saving from the stale form shows the conflict page with their change.
        conflict = client.post(change, {"content": old + "mine\n", "reason": "mine", "opened": opened})

    assert compare.status_code == 200
    assert expected in compare.content.decode()
    assert conflict.status_code == 200 and 'id="conflict"' in conflict.content.decode()
    assert expected in conflict.content.decode()
    assert agent_get(name="reviewer").revision == 2


def fragment(page: str) -> str:
    """The diff fragment inside a `?format=html` page (after its heading, before </body>)."""
    return page.split("</h1>\n", 1)[1].rsplit("\n</body>", 1)[0]
