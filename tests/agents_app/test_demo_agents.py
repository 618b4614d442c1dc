"""The demo agent definitions shipped in agents_app/demo_agents: each one is valid and keeps its bytes."""

from pathlib import Path

import pytest
import yaml

import agents_app
from agents_app.document import parse_agent_document

DEMO_DIR = Path(agents_app.__file__).resolve().parent / "demo_agents"
DEMO_FILES = sorted(DEMO_DIR.glob("*.md"))


def test_the_demo_directory_holds_the_four_demo_agents():
    assert [path.name for path in DEMO_FILES] == [
        "code-reviewer.md",
        "release-notes.md",
        "sql-explainer.md",
        "test-writer.md",
    ]


@pytest.mark.parametrize("path", DEMO_FILES, ids=lambda path: path.name)
def test_every_demo_agent_parses_and_round_trips_its_bytes(path):
    raw = path.read_bytes()

    document = parse_agent_document(raw)

    assert document.raw == raw
    assert document.name == path.stem
    assert document.description
    assert 10 <= len(document.body.splitlines()) <= 30


def test_code_reviewer_normalises_its_comma_separated_tools():
    document = parse_agent_document((DEMO_DIR / "code-reviewer.md").read_bytes())

    assert document.tools == ["Read", "Grep", "Glob", "Bash"]
    assert document.frontmatter["tools"] == "Read, Grep, Glob, Bash"
    assert document.model == "sonnet"
    assert document.warnings == []


def test_test_writer_reads_its_block_list_of_tools_and_keeps_its_comment_in_the_bytes():
    raw = (DEMO_DIR / "test-writer.md").read_bytes()

    document = parse_agent_document(raw)

    assert document.tools == ["Read", "Write", "Edit", "Bash"]
    assert b"\n# " in raw.split(b"\n---\n")[0]
    assert document.warnings == []


def test_release_notes_is_not_strict_yaml_but_is_read_leniently_with_a_warning():
    raw = (DEMO_DIR / "release-notes.md").read_bytes()
    frontmatter = raw.decode().split("---\n")[1]

    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(frontmatter)
    document = parse_agent_document(raw)

    assert document.description.startswith("Use this agent when")
    assert "Examples: <example>Context: " in document.description
    assert document.description.endswith("</example>")
    assert document.tools is None
    assert "tools" not in document.frontmatter
    assert document.model == "haiku"
    assert len(document.warnings) == 1
    assert "not strict YAML" in document.warnings[0]


def test_sql_explainer_has_crlf_endings_no_final_newline_and_non_ascii_text():
    raw = (DEMO_DIR / "sql-explainer.md").read_bytes()

    document = parse_agent_document(raw)

    assert raw.count(b"\r\n") == raw.count(b"\n") > 0
    assert not raw.endswith(b"\n")
    assert not raw.isascii()
    assert "売上" in document.body
    assert document.tools == ["Read", "Grep"]
    assert document.warnings == []
