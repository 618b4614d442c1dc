"""`manage.py agent_diff NAME FROM TO [--format json|unified|html]` against stored revisions."""

import io
import json
import subprocess

import pytest
from django.core.management import CommandError, call_command

from agents_app.services import ChangeContext, agent_create, agent_label_move, agent_revise

pytestmark = pytest.mark.django_db

CONTEXT = ChangeContext(actor="alice", source="cli", reason="test change")


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Call a write service, then run what it queued for after COMMIT (the projection catch-up)."""

    def run(service, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return service(**kwargs)

    return run


@pytest.fixture
def history(commit, unique_name) -> tuple[str, list[str]]:
    """An agent with three revisions: LF, then CRLF with 漢字 and Bash, then no final newline."""
    contents = [
        f"---\nname: {unique_name}\ndescription: Reviews code\ntools: Read, Grep\nmodel: sonnet\n---\n"
        "Review carefully.\nThen stop.\n",
        f"---\r\nname: {unique_name}\r\ndescription: Reviews code\r\ntools: [Read, Grep, Bash]\r\n"
        "model: opus\r\n---\r\nReview carefully: 漢字 🔍.\r\nThen stop.\r\n",
        f"---\r\nname: {unique_name}\r\ndescription: Reviews <script>alert(1)</script>\r\n"
        "tools: [Read, Grep, Bash]\r\nmodel: opus\r\n---\r\nReview carefully: 漢字 🔍.\r\nThen stop.",
    ]
    change = commit(agent_create, content=contents[0], context=CONTEXT)
    for content in contents[1:]:
        commit(agent_revise, agent_id=change.agent_id, content=content, context=CONTEXT)
    commit(agent_label_move, agent_id=change.agent_id, label="production", revision=1, context=CONTEXT)
    return unique_name, contents


def run_diff(*args: str) -> str:
    out = io.StringIO()
    call_command("agent_diff", *args, stdout=out)
    return out.getvalue()


def test_json_output_is_the_rest_diff_pretty_printed_with_a_final_newline(history):
    name, _ = history

    output = run_diff(name, "1", "2")

    assert output.endswith("}\n")
    assert "漢字" in output  # ensure_ascii=False
    diff = json.loads(output)
    assert output == json.dumps(diff, indent=2, ensure_ascii=False) + "\n"
    assert (diff["from"]["agent"], diff["from"]["revision"], diff["to"]["revision"]) == (name, 1, 2)
    assert (diff["from"]["actor"], diff["identical"]) == ("alice", False)
    assert diff["tools"] == {"added": ["Bash"], "removed": [], "from_all": False, "to_all": False}
    assert diff["warnings"] == [
        {"code": "tool_added", "detail": "Bash"},
        {"code": "model_changed", "detail": "sonnet -> opus"},
    ]


def test_references_may_be_labels_and_latest(history):
    name, _ = history

    diff = json.loads(run_diff(name, "production", "latest"))

    assert (diff["from"]["revision"], diff["to"]["revision"]) == (1, 3)


def test_unified_output_piped_to_patch_gives_the_new_bytes_exactly(history, tmp_path):
    name, contents = history
    for old_ref, new_ref in [("1", "2"), ("2", "3"), ("3", "1"), ("1", "latest")]:
        old = contents[int(old_ref) - 1].encode("utf-8")
        new = contents[int(new_ref) - 1 if new_ref.isdigit() else -1].encode("utf-8")
        workdir = tmp_path / f"{old_ref}-{new_ref}"
        workdir.mkdir()
        (workdir / f"{name}.md").write_bytes(old)

        output = run_diff(name, old_ref, new_ref, "--format", "unified")

        assert output.startswith(f"--- a/{name}.md\n+++ b/{name}.md\n@@ ")
        subprocess.run(
            ["patch", "-p1", "--batch", "--no-backup-if-mismatch"],
            input=output.encode("utf-8"),
            cwd=workdir,
            capture_output=True,
            check=True,
        )
        assert (workdir / f"{name}.md").read_bytes() == new


def test_unified_output_of_the_same_revision_is_empty(history):
    name, _ = history

    assert run_diff(name, "2", "2", "--format", "unified") == ""


def test_output_reaches_a_real_stdout_as_utf_8_bytes_whatever_its_text_encoding(history):
    name, _ = history
    raw = io.BytesIO()
    # latin-1 cannot encode 漢字: writing through the text layer would fail or change bytes
    stdout = io.TextIOWrapper(raw, encoding="latin-1", newline="")

    call_command("agent_diff", name, "1", "2", "--format", "unified", stdout=stdout)

    patch = raw.getvalue()
    assert "+Review carefully: 漢字 🔍.\r\n".encode() in patch
    assert patch == run_diff(name, "1", "2", "--format", "unified").encode("utf-8")


def test_html_output_is_the_escaped_side_by_side_fragment(history):
    name, _ = history

    output = run_diff(name, "2", "3", "--format", "html")

    assert output.startswith('<div class="agent-diff-view">') and output.endswith("</div>\n")
    assert '<table class="agent-diff">' in output
    assert f"{name}@2" in output and f"{name}@3" in output
    assert "<script" not in output and "&lt;script&gt;alert(1)&lt;/script&gt;" in output


def test_an_unknown_agent_is_a_command_error():
    with pytest.raises(CommandError, match="no agent named 'nobody'"):
        run_diff("nobody", "1", "2")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("0", "is not a revision number"),
        ("@yesterday", "is not a timestamp"),
        ("Not A Ref!", "is not a revision number, 'latest', a label or @timestamp"),
        ("9", "has no revision 9"),
        ("staging", "has no label 'staging'"),
    ],
)
def test_a_bad_reference_is_a_command_error_naming_it(history, ref, message):
    name, _ = history

    with pytest.raises(CommandError, match=message):
        run_diff(name, "1", ref)


def test_an_unknown_format_is_refused():
    with pytest.raises(CommandError, match="invalid choice: 'patch'"):
        run_diff("reviewer", "1", "2", "--format", "patch")
