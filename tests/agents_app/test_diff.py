"""Diffs between two revisions (API.md, "Diff"): pure functions, no database.

The round trip runs the real `patch -p1` and `git apply` on every ordered pair of a scripted
history, because a unified diff that only looks right is the usual way such code is wrong
(CRLF, a missing final newline, lines split on characters other than "\\n").
"""

import datetime as dt
import difflib
import itertools
import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents_app.diff import (
    DiffSide,
    _grouped,
    html_diff,
    line_changes,
    line_opcodes,
    revision_diff,
    unified_diff,
)
from agents_app.document import parse_agent_document

RECORDED_AT = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)

LONG_DESCRIPTION = (
    "Use this agent when a pull request needs a careful review of correctness, naming and tests; "
    "it reads the diff, runs the suite and reports findings with file and line references. " * 12
).strip() + " Ça va é."

# One agent's history, written to exercise what breaks unified diffs.
HISTORY = [
    # 1: plain LF file
    "---\nname: reviewer\ndescription: Reviews code\ntools: Read, Grep\nmodel: sonnet\n---\n"
    "Review carefully.\n\nCheck the tests.\nThen stop.\n",
    # 2: the same as CRLF, with non-ASCII text
    "---\r\nname: reviewer\r\ndescription: Reviews code\r\ntools: Read, Grep\r\nmodel: sonnet\r\n---\r\n"
    "Review carefully: café, 漢字, 🔍.\r\n\r\nCheck the tests.\r\nThen stop.\r\n",
    # 3: CRLF, final newline removed
    "---\r\nname: reviewer\r\ndescription: Reviews code\r\ntools: Read, Grep\r\nmodel: sonnet\r\n---\r\n"
    "Review carefully: café, 漢字, 🔍.\r\n\r\nCheck the tests.\r\nThen stop.",
    # 4: LF again, no final newline, frontmatter changed, a very long description line
    f"---\nname: reviewer\ndescription: {LONG_DESCRIPTION}\ntools: [Read, Grep, Bash]\nmodel: opus\n"
    "permissionMode: acceptEdits\n---\nReview carefully: café, 漢字, 🔍.\n\nCheck the tests.\nThen stop.",
    # 5: empty body
    f"---\nname: reviewer\ndescription: {LONG_DESCRIPTION}\nmodel: opus\n---\n",
    # 6: empty body and no newline after the closing '---'
    "---\nname: reviewer\ndescription: Reviews code\n---",
    # 7: final newline back; a lone CR and a form feed inside lines, which are not line breaks to patch
    "---\nname: reviewer\ndescription: Reviews code\ntools:\n  - Read\n  - Grep\n---\n"
    "Review carefully 🔍.\nA lone\rcarriage return and a form\x0cfeed.\n\nCheck the tests.\nThen stop.\n",
]


def side(content: str, *, revision: int = 1, actor: str = "alice") -> DiffSide:
    """A diff side as the revisions projection would hold it for `content`."""
    document = parse_agent_document(content)
    return DiffSide(
        agent=document.name,
        revision=revision,
        content=document.content,
        sha256=document.sha256,
        actor=actor,
        recorded_at=RECORDED_AT,
        frontmatter=document.frontmatter,
        body=document.body,
        tools=document.tools,
    )


def doc(frontmatter: str = "", body: str = "Review carefully.\n") -> str:
    return f"---\nname: reviewer\ndescription: Reviews code\n{frontmatter}---\n{body}"


def diff_of(old: str, new: str) -> dict:
    return revision_diff(old=side(old, revision=1), new=side(new, revision=2))


def codes(diff: dict) -> list[tuple[str, str]]:
    return [(warning["code"], warning["detail"]) for warning in diff["warnings"]]


def apply_with_patch(workdir: Path, old: bytes, patch: bytes) -> bytes:
    workdir.mkdir()
    (workdir / "reviewer.md").write_bytes(old)
    result = subprocess.run(
        ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch"],
        input=patch,
        cwd=workdir,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in workdir.iterdir()) == ["reviewer.md"]  # no .rej / .orig
    return (workdir / "reviewer.md").read_bytes()


def apply_with_git(workdir: Path, old: bytes, patch: bytes) -> bytes:
    workdir.mkdir()
    (workdir / "reviewer.md").write_bytes(old)
    # No user or system config (apply.whitespace=fix would strip the CRs), and no repository
    # found above the temporary folder (paths would then be taken relative to its root).
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CEILING_DIRECTORIES": str(workdir.parent),
    }
    result = subprocess.run(
        ["git", "apply", "-p1", "--whitespace=nowarn", "-"],
        input=patch,
        cwd=workdir,
        env=env,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return (workdir / "reviewer.md").read_bytes()


# ---------------------------------------------------------------------------------------
# Unified diff of the raw files
# ---------------------------------------------------------------------------------------

PAIRS = list(itertools.permutations(range(len(HISTORY)), 2))


@pytest.mark.parametrize(("old_index", "new_index"), PAIRS, ids=[f"r{i + 1}-to-r{j + 1}" for i, j in PAIRS])
def test_unified_diff_applied_by_patch_and_git_apply_gives_the_new_bytes_exactly(
    tmp_path, old_index, new_index
):
    old, new = HISTORY[old_index], HISTORY[new_index]
    patch = unified_diff(old=side(old, revision=1), new=side(new, revision=2)).encode("utf-8")

    assert patch.startswith(b"--- a/reviewer.md\n+++ b/reviewer.md\n@@ -")
    assert apply_with_patch(tmp_path / "patch", old.encode("utf-8"), patch) == new.encode("utf-8")
    assert apply_with_git(tmp_path / "git", old.encode("utf-8"), patch) == new.encode("utf-8")


def test_the_scripted_history_covers_the_cases_that_break_unified_diffs():
    assert "\r\n" in HISTORY[1] and not HISTORY[2].endswith("\n") and HISTORY[6].endswith("\n")
    assert side(HISTORY[4]).body == side(HISTORY[5]).body == ""
    assert len(LONG_DESCRIPTION) > 2000
    assert all(parse_agent_document(content).name == "reviewer" for content in HISTORY)


def test_unified_diff_of_identical_revisions_is_empty():
    assert unified_diff(old=side(HISTORY[0]), new=side(HISTORY[0], revision=2)) == ""


def test_unified_diff_marks_a_removed_final_newline_and_keeps_the_carriage_returns():
    old = side("---\r\nname: reviewer\r\ndescription: Reviews code\r\n---\r\nOne.\r\nTwo.\r\n")
    new = side("---\r\nname: reviewer\r\ndescription: Reviews code\r\n---\r\nOne.\r\nTwo.", revision=2)

    assert unified_diff(old=old, new=new) == (
        "--- a/reviewer.md\n"
        "+++ b/reviewer.md\n"
        "@@ -3,4 +3,4 @@\n"
        " description: Reviews code\r\n"
        " ---\r\n"
        " One.\r\n"
        "-Two.\r\n"
        "+Two.\n"
        "\\ No newline at end of file\n"
    )


def test_unified_diff_headers_name_each_side_after_its_own_agent():
    old = side(doc())
    new = side(doc().replace("name: reviewer", "name: code-reviewer"), revision=2)

    assert unified_diff(old=old, new=new).startswith(
        "--- a/reviewer.md\n+++ b/code-reviewer.md\n@@ -1,5 +1,5 @@\n"
    )


# ---------------------------------------------------------------------------------------
# The JSON summary
# ---------------------------------------------------------------------------------------


def test_revision_diff_has_exactly_the_shape_of_the_api_contract():
    old = side(doc("model: sonnet\n"), revision=1, actor="alice")
    new = side(doc("model: opus\n", body="Review carefully.\nThen stop.\n"), revision=2, actor="bob")

    diff = revision_diff(old=old, new=new)

    assert list(diff) == [
        "from",
        "to",
        "identical",
        "frontmatter",
        "tools",
        "body",
        "warnings",
        "permissions",
    ]
    assert diff["from"] == {
        "agent": "reviewer",
        "revision": 1,
        "sha256": old.sha256,
        "actor": "alice",
        "recorded_at": "2026-11-01T12:00:00+00:00",
    }
    assert (diff["to"]["revision"], diff["to"]["actor"], diff["to"]["sha256"]) == (2, "bob", new.sha256)
    assert diff["identical"] is False
    assert diff["frontmatter"] == {
        "added": {},
        "removed": {},
        "changed": {"model": {"from": "sonnet", "to": "opus"}},
    }
    assert diff["tools"] == {"added": [], "removed": [], "from_all": True, "to_all": True}
    assert diff["body"] == {
        "additions": 1,
        "deletions": 0,
        "unified": "@@ -1 +1,2 @@\n Review carefully.\n+Then stop.\n",
    }
    assert diff["warnings"] == [{"code": "model_changed", "detail": "sonnet -> opus"}]
    assert diff["permissions"]["widened"] is False
    assert diff["permissions"]["changes"] == [
        {"field": "model", "kind": "changed", "severity": "medium", "detail": "model changed: sonnet -> opus"}
    ]
    assert json.loads(json.dumps(diff)) == diff


def test_identical_revisions_are_identical_with_nothing_changed():
    diff = diff_of(HISTORY[0], HISTORY[0])

    assert diff["identical"] is True
    assert diff["frontmatter"] == {"added": {}, "removed": {}, "changed": {}}
    assert diff["tools"] == {"added": [], "removed": [], "from_all": False, "to_all": False}
    assert diff["body"] == {"additions": 0, "deletions": 0, "unified": ""}
    assert diff["warnings"] == []


def test_body_hunks_count_lines_of_the_body_only_and_mark_a_missing_final_newline():
    diff = diff_of(doc(body="One.\nTwo.\nThree.\n"), doc("model: opus\n", body="One.\nTwo!\nThree."))

    assert diff["body"] == {
        "additions": 2,
        "deletions": 2,
        "unified": "@@ -1,3 +1,3 @@\n One.\n-Two.\n-Three.\n+Two!\n+Three.\n\\ No newline at end of file\n",
    }


def test_frontmatter_keys_added_removed_and_changed_are_reported_with_their_values():
    diff = diff_of(doc("color: blue\nmodel: sonnet\n"), doc("model: haiku\nmaxTurns: 3\n"))

    assert diff["frontmatter"] == {
        "added": {"maxTurns": 3},
        "removed": {"color": "blue"},
        "changed": {"model": {"from": "sonnet", "to": "haiku"}},
    }


def test_tools_spelled_as_a_string_or_a_list_in_any_order_are_not_a_change():
    for new_tools in ("tools: [Read, Bash]\n", "tools: [Bash, Read]\n", "tools:\n  - Bash\n  - Read\n"):
        diff = diff_of(doc("tools: Read, Bash\n"), doc(new_tools))

        assert diff["tools"] == {"added": [], "removed": [], "from_all": False, "to_all": False}
        assert diff["frontmatter"] == {"added": {}, "removed": {}, "changed": {}}
        assert diff["warnings"] == []
        assert diff["identical"] is False


def test_a_changed_tool_set_is_reported_in_tools_and_frontmatter_and_an_added_tool_warns():
    diff = diff_of(doc("tools: Read, Grep\n"), doc("tools: [Read, WebFetch, Bash]\n"))

    assert diff["tools"] == {
        "added": ["Bash", "WebFetch"],
        "removed": ["Grep"],
        "from_all": False,
        "to_all": False,
    }
    assert diff["frontmatter"]["changed"] == {
        "tools": {"from": "Read, Grep", "to": ["Read", "WebFetch", "Bash"]}
    }
    assert codes(diff) == [("tool_added", "Bash"), ("tool_added", "WebFetch")]


def test_removing_a_tool_narrows_and_is_not_a_warning():
    diff = diff_of(doc("tools: Read, Bash\n"), doc("tools: Read\n"))

    assert diff["tools"]["removed"] == ["Bash"]
    assert diff["warnings"] == []


def test_removing_the_tools_key_grants_every_tool_and_warns():
    diff = diff_of(doc("tools: Read, Grep\n"), doc())

    assert diff["tools"] == {"added": [], "removed": ["Grep", "Read"], "from_all": False, "to_all": True}
    assert diff["frontmatter"]["removed"] == {"tools": "Read, Grep"}
    assert diff["warnings"] == [{"code": "tools_removed", "detail": "no tools key: every tool is granted"}]


def test_adding_a_tools_key_where_there_was_none_narrows_and_is_not_a_warning():
    diff = diff_of(doc(), doc("tools: Read, Grep\n"))

    assert diff["tools"] == {"added": ["Grep", "Read"], "removed": [], "from_all": True, "to_all": False}
    assert diff["frontmatter"]["added"] == {"tools": "Read, Grep"}
    assert diff["warnings"] == []


def test_an_empty_tools_key_grants_every_tool_like_no_key_so_it_is_no_change():
    diff = diff_of(doc(), doc("tools:\n"))

    assert diff["tools"] == {"added": [], "removed": [], "from_all": True, "to_all": True}
    assert diff["frontmatter"] == {"added": {}, "removed": {}, "changed": {}}
    assert diff["warnings"] == []


@pytest.mark.parametrize(
    ("old_mode", "new_mode", "expected"),
    [
        ("", "permissionMode: acceptEdits\n", [("permission_mode_loosened", "default -> acceptEdits")]),
        ("permissionMode: plan\n", "", [("permission_mode_loosened", "plan -> default")]),
        (
            "permissionMode: acceptEdits\n",
            "permissionMode: bypassPermissions\n",
            [("permission_mode_loosened", "acceptEdits -> bypassPermissions")],
        ),
        ("permissionMode: bypassPermissions\n", "permissionMode: plan\n", []),
        ("permissionMode: acceptEdits\n", "", []),
        ("", "permissionMode: default\n", []),
        ("permissionMode: plan\n", "permissionMode: yolo\n", [("permission_mode_changed", "plan -> yolo")]),
    ],
    ids=[
        "absent-to-acceptEdits",
        "plan-to-absent",
        "to-bypass",
        "tightened",
        "back-to-default",
        "spelled-default",
        "unknown",
    ],
)
def test_a_loosened_permission_mode_warns_and_a_tightened_one_does_not(old_mode, new_mode, expected):
    assert codes(diff_of(doc(old_mode), doc(new_mode))) == expected


def test_hooks_and_mcp_servers_added_or_changed_warn_but_removed_do_not():
    hooks = "hooks:\n  PreToolUse:\n    - matcher: Bash\n"
    other_hooks = "hooks:\n  PreToolUse:\n    - matcher: Edit\n"
    servers = "mcpServers:\n  - github\n"

    assert codes(diff_of(doc(), doc(hooks + servers))) == [
        ("hooks_changed", "hooks added"),
        ("mcp_servers_changed", "mcpServers added"),
    ]
    assert codes(diff_of(doc(hooks), doc(other_hooks))) == [("hooks_changed", "hooks changed")]
    assert codes(diff_of(doc(hooks + servers), doc())) == []


def test_a_changed_model_warns_with_both_models():
    assert codes(diff_of(doc("model: sonnet\n"), doc("model: opus\n"))) == [
        ("model_changed", "sonnet -> opus")
    ]
    assert codes(diff_of(doc(), doc("model: haiku\n"))) == [("model_changed", "(not set) -> haiku")]


def test_a_tool_no_longer_disallowed_warns():
    diff = diff_of(doc("disallowedTools: Bash, WebFetch\n"), doc("disallowedTools: [WebFetch]\n"))

    assert codes(diff) == [("disallowed_tool_removed", "Bash")]
    assert codes(diff_of(doc("disallowedTools: [Bash]\n"), doc())) == [("disallowed_tool_removed", "Bash")]


def test_warnings_come_in_a_fixed_order():
    old = doc("tools: Read\nmodel: sonnet\ndisallowedTools: Bash\n")
    new = doc(
        "tools: Read, Write, Edit\nmodel: opus\npermissionMode: bypassPermissions\n"
        "mcpServers: [github]\nhooks:\n  Stop: []\n"
    )

    assert [code for code, _ in codes(diff_of(old, new))] == [
        "tool_added",
        "tool_added",
        "disallowed_tool_removed",
        "permission_mode_loosened",
        "hooks_changed",
        "mcp_servers_changed",
        "model_changed",
    ]


def test_a_side_is_built_from_a_revision_row():
    row = SimpleNamespace(
        name="reviewer",
        revision=4,
        content=HISTORY[0],
        sha256="ab" * 32,
        actor="git:bob",
        recorded_at=RECORDED_AT,
        frontmatter={"name": "reviewer", "tools": "Read, Grep"},
        body="Review carefully.\n",
        tools=["Read", "Grep"],
    )

    built = DiffSide.from_revision(row)

    assert (built.agent, built.revision, built.content, built.actor) == ("reviewer", 4, HISTORY[0], "git:bob")
    assert (built.tools, built.frontmatter["tools"], built.label) == (
        ["Read", "Grep"],
        "Read, Grep",
        "reviewer@4",
    )


# ---------------------------------------------------------------------------------------
# Side-by-side HTML
# ---------------------------------------------------------------------------------------


def test_html_escapes_everything_taken_from_the_documents():
    old = side(doc(body="Review carefully.\n"))
    new = side(
        "---\nname: reviewer\ndescription: <script>alert(1)</script>\ntools: <b>Bash</b>\n---\n"
        'Review carefully.\n<script>alert(1)</script>\n<img src=x onerror="alert(2)">\n',
        revision=2,
    )

    fragment = html_diff(old=old, new=new)

    assert "<script" not in fragment and "<img" not in fragment and "<b>" not in fragment
    # in the frontmatter table, the replaced description line and the inserted body line
    assert fragment.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in fragment
    assert "&lt;b&gt;Bash&lt;/b&gt;" in fragment


def test_html_is_a_side_by_side_table_with_intraline_highlights():
    old = side(doc(body="Review carefully.\nCheck the tests.\nThen stop.\n"))
    new = side(
        doc("model: opus\n", body="Review very carefully.\nCheck tests.\nThen stop.\nBye.\n"), revision=2
    )

    fragment = html_diff(old=old, new=new)

    assert '<table class="agent-diff">' in fragment
    assert '<th colspan="2">reviewer@1</th><th colspan="2">reviewer@2</th>' in fragment
    # words, not characters: "the " is what went, not "he t"
    assert '<td class="text old">Check <del>the </del>tests.</td>' in fragment
    assert (
        '<tr class="replace"><td class="lineno">5</td><td class="text old">Review carefully.</td>'
        '<td class="lineno">6</td><td class="text new">Review <ins>very </ins>carefully.</td></tr>'
    ) in fragment
    assert (
        '<tr class="insert"><td class="lineno"></td><td class="text old empty"></td>'
        '<td class="lineno">9</td><td class="text new">Bye.</td></tr>'
    ) in fragment
    assert (
        '<tr class="insert"><td class="lineno"></td><td class="text old empty"></td><td class="lineno">4</td>'
        in fragment
    )
    assert (
        '<table class="agent-diff-frontmatter">' in fragment
        and '<tr class="added"><th>model</th>' in fragment
    )
    assert '<ul class="agent-diff-warnings"><li class="agent-diff-warning model_changed">' in fragment


def test_html_folds_long_unchanged_runs_to_three_lines_of_context():
    lines = [f"Line {number}.\n" for number in range(1, 31)]
    changed = [*lines[:14], "Line fifteen.\n", *lines[15:]]

    fragment = html_diff(old=side(doc(body="".join(lines))), new=side(doc(body="".join(changed)), revision=2))

    # 4 frontmatter lines + 14 body lines before the change, 15 after it
    assert fragment.count("\u22ef 15 unchanged lines") == 1
    assert fragment.count("\u22ef 12 unchanged lines") == 1
    assert fragment.count('<tr class="equal">') == 6
    assert fragment.count('<tr class="replace">') == 1


def test_html_shows_carriage_returns_and_a_missing_final_newline():
    fragment = html_diff(old=side(HISTORY[1]), new=side(HISTORY[2], revision=2))

    assert "\u240d" in fragment
    assert "no newline at end of file" in fragment


def test_html_of_identical_revisions_says_so_and_folds_the_whole_file():
    fragment = html_diff(old=side(HISTORY[0]), new=side(HISTORY[0], revision=2))

    assert "identical" in fragment
    assert "\u22ef 10 unchanged lines" in fragment
    assert '<tr class="equal">' not in fragment


# ---------------------------------------------------------------------------------------
# Line opcodes and hunks
# ---------------------------------------------------------------------------------------

LINE_LISTS = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "\n", "d", "a"]), max_size=30)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(old=LINE_LISTS, new=LINE_LISTS)
def test_line_opcodes_turn_the_old_lines_into_the_new_and_keep_every_common_line_they_can(old, new):
    opcodes = line_opcodes(old, new)

    rebuilt, equal = [], 0
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            assert old[i1:i2] == new[j1:j2]
            equal += i2 - i1
            rebuilt += old[i1:i2]
        else:
            rebuilt += new[j1:j2]
    assert rebuilt == new
    # As many lines kept as the longest common subsequence (never fewer than difflib keeps).
    kept_by_difflib = sum(
        block.size for block in difflib.SequenceMatcher(None, old, new, autojunk=False).get_matching_blocks()
    )
    assert equal >= kept_by_difflib
    assert line_changes(old, new) == (len(new) - equal, len(old) - equal)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(old=LINE_LISTS, new=LINE_LISTS)
def test_hunks_are_cut_as_difflib_cuts_them(old, new):
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    expected = [] if old == new else list(matcher.get_grouped_opcodes(3))

    assert list(_grouped(matcher.get_opcodes(), 3)) == expected


def test_past_the_intraline_budget_replaced_lines_are_highlighted_whole(monkeypatch):
    monkeypatch.setattr("agents_app.diff.INTRALINE_TOTAL_CHARS", 60)
    old = doc(body="".join(f"Review file {n} carefully.\n" for n in range(4)))
    new = doc(body="".join(f"Review file {n} quickly.\n" for n in range(4)))

    fragment = html_diff(old=side(old), new=side(new, revision=2))

    # The first pair fits the budget: its words are matched; the rest are marked whole.
    assert fragment.count("<del>carefully</del>") == 1
    assert fragment.count("<del>Review file") == 3 and fragment.count("<ins>Review file") == 3
