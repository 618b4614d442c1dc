"""Byte-preserving PATCH edits of agent documents (API.md, PATCH: "keys not named keep their exact bytes")."""

import pytest

from agents_app.document import parse_agent_document
from agents_app.document_edit import document_patch
from agents_app.exceptions import DocumentInvalid

# Every way of writing a key that a re-dump of the YAML would lose.
DOCUMENT = """---
# Code reviewer, owned by the platform team
name: code-reviewer  # must match the file name
description: 'Reviews code: style, bugs and "tests"'
model: sonnet   # the cheap one
color: "blue"

summary: >
  Folded text that
  spans two lines.
notes: |
  First line.

    Indented line.
tools:
  - Read
  - Grep   # read-only on purpose
# the turn limit was agreed with the team
maxTurns: 12
---
You review code.

Be kind.
"""


def with_line(document: str, old: str, new: str) -> str:
    """`document` with exactly one line replaced: the expected result of a one-key patch."""
    assert document.count(old) == 1
    return document.replace(old, new)


def field_of_problem(**patch) -> list[tuple[str, str]]:
    with pytest.raises(DocumentInvalid) as caught:
        document_patch(patch.pop("content", DOCUMENT), **patch)
    return [(problem.field, problem.message) for problem in caught.value.problems]


def test_patching_model_changes_that_line_only_and_keeps_every_other_byte():
    result = document_patch(DOCUMENT, set_keys={"model": "opus"})

    assert result == with_line(DOCUMENT, "model: sonnet   # the cheap one\n", "model: opus\n")
    assert parse_agent_document(result).model == "opus"


def test_patching_a_key_keeps_its_place_even_when_it_is_the_first_one():
    result = document_patch(DOCUMENT, set_keys={"name": "reviewer"})

    assert result == with_line(
        DOCUMENT, "name: code-reviewer  # must match the file name\n", "name: reviewer\n"
    )


def test_a_new_key_is_appended_at_the_end_of_the_frontmatter():
    result = document_patch(DOCUMENT, set_keys={"permissionMode": "plan"})

    assert result == with_line(DOCUMENT, "maxTurns: 12\n---\n", "maxTurns: 12\npermissionMode: plan\n---\n")


def test_new_keys_are_rendered_as_yaml_with_flow_lists_and_block_mappings():
    result = document_patch(
        DOCUMENT,
        set_keys={
            "skills": ["review", "lint"],
            "hooks": {"PreToolUse": [{"matcher": "Bash", "command": "check.sh"}]},
            "enabled": True,
            "temperature": 0.5,
            "memory": None,
            "since": "2024-01-01",
        },
    )

    assert result == with_line(
        DOCUMENT,
        "maxTurns: 12\n---\n",
        "maxTurns: 12\n"
        "skills: [review, lint]\n"
        "hooks:\n"
        "  PreToolUse:\n"
        "    - matcher: Bash\n"
        "      command: check.sh\n"
        "enabled: true\n"
        "temperature: 0.5\n"
        "memory: null\n"
        "since: '2024-01-01'\n"
        "---\n",
    )
    assert parse_agent_document(result).frontmatter["since"] == "2024-01-01"


def test_a_long_description_that_needs_quoting_stays_on_one_quoted_line():
    description = "Use this agent when: " + "the code needs a careful review, " * 10 + "end."

    result = document_patch(DOCUMENT, set_keys={"description": description})

    assert result == with_line(
        DOCUMENT,
        "description: 'Reviews code: style, bugs and \"tests\"'\n",
        f"description: '{description}'\n",
    )


def test_a_multi_line_value_is_written_as_a_literal_block():
    result = document_patch(DOCUMENT, set_keys={"model": "first\nsecond"})

    assert result == with_line(
        DOCUMENT, "model: sonnet   # the cheap one\n", "model: |-\n  first\n  second\n"
    )
    assert parse_agent_document(result).model == "first\nsecond"


def test_replacing_a_block_list_keeps_it_a_block_list_and_keeps_the_comment_after_it():
    result = document_patch(DOCUMENT, set_keys={"tools": ["Read", "Edit"]})

    assert result == with_line(
        DOCUMENT, "  - Read\n  - Grep   # read-only on purpose\n", "  - Read\n  - Edit\n"
    )


def test_removing_a_key_with_a_multi_line_value_removes_its_whole_block_only():
    result = document_patch(DOCUMENT, remove_keys=["notes"])

    assert result == with_line(DOCUMENT, "notes: |\n  First line.\n\n    Indented line.\n", "")
    assert "notes" not in parse_agent_document(result).frontmatter


def test_removing_a_folded_key_keeps_the_blank_line_before_it_and_the_keys_around_it():
    result = document_patch(DOCUMENT, remove_keys=["summary"])

    assert result == with_line(DOCUMENT, "summary: >\n  Folded text that\n  spans two lines.\n", "")


def test_a_comment_line_above_a_removed_key_stays():
    result = document_patch(DOCUMENT, remove_keys=["maxTurns"])

    assert result == with_line(DOCUMENT, "maxTurns: 12\n", "")
    assert "# the turn limit was agreed with the team\n---\n" in result


def test_replacing_the_body_keeps_the_frontmatter_bytes():
    result = document_patch(DOCUMENT, body="New instructions.\n")

    assert result == DOCUMENT[: DOCUMENT.index("You review code.")] + "New instructions.\n"


def test_keys_and_body_can_be_patched_together():
    result = document_patch(DOCUMENT, set_keys={"color": "red"}, remove_keys=["summary"], body="")

    expected = with_line(DOCUMENT, 'color: "blue"\n', "color: red\n")
    expected = with_line(expected, "summary: >\n  Folded text that\n  spans two lines.\n", "")
    assert result == expected[: expected.index("You review code.")]


def test_setting_a_key_to_the_value_it_has_moves_no_byte():
    assert document_patch(DOCUMENT, set_keys={"color": "blue", "maxTurns": 12}) == DOCUMENT


def test_removing_a_key_that_is_not_there_changes_nothing():
    assert document_patch(DOCUMENT, remove_keys=["memory"]) == DOCUMENT


def test_a_crlf_document_keeps_crlf_in_kept_replaced_added_and_body_lines():
    crlf = DOCUMENT.replace("\n", "\r\n")

    result = document_patch(
        crlf, set_keys={"model": "opus", "skills": ["review"]}, body="Line one.\nLine two.\n"
    )

    expected = with_line(crlf, "model: sonnet   # the cheap one\r\n", "model: opus\r\n")
    expected = with_line(expected, "maxTurns: 12\r\n", "maxTurns: 12\r\nskills: [review]\r\n")
    assert result == expected[: expected.index("You review code.")] + "Line one.\r\nLine two.\r\n"
    assert "\n" not in result.replace("\r\n", "")


def test_a_missing_final_newline_stays_missing():
    content = "---\nname: reviewer\ndescription: Reviews code\n---\nReview carefully."

    result = document_patch(content, set_keys={"model": "haiku"})

    assert result == "---\nname: reviewer\ndescription: Reviews code\nmodel: haiku\n---\nReview carefully."


def test_a_body_added_after_a_closing_line_without_newline_gets_one_line_break():
    content = "---\r\nname: reviewer\r\ndescription: Reviews code\r\n---"

    assert document_patch(content, body="Review.") == (
        "---\r\nname: reviewer\r\ndescription: Reviews code\r\n---\r\nReview."
    )
    assert document_patch(content, body="") == content


def test_non_ascii_values_are_written_as_text_and_other_non_ascii_bytes_are_kept():
    content = (
        "---\nname: reviewer\ndescription: コードをレビューする 🔍  # 説明\n---\nあなたはレビュアーです。\n"
    )

    result = document_patch(content, set_keys={"color": "vert ✅", "notes": "naïve café"})

    assert result == (
        "---\nname: reviewer\ndescription: コードをレビューする 🔍  # 説明\n"
        "color: vert ✅\nnotes: naïve café\n---\nあなたはレビュアーです。\n"
    )
    assert result.encode("utf-8").count("🔍".encode()) == 1


def test_a_utf8_bom_is_kept():
    content = "\ufeff---\nname: reviewer\ndescription: Reviews code\n---\n"

    assert document_patch(content, set_keys={"model": "haiku"}) == (
        "\ufeff---\nname: reviewer\ndescription: Reviews code\nmodel: haiku\n---\n"
    )


LENIENT = (
    "---\n"
    "name: release-notes\n"
    "description: Use this agent when: x. Examples: <example>Context: y</example>\n"
    "model: sonnet\n"
    "tools: Read, Grep\n"
    "---\n"
    "You write release notes.\n"
)


def test_a_lenient_document_patched_on_another_key_keeps_the_description_bytes():
    result = document_patch(LENIENT, set_keys={"model": "opus"}, remove_keys=["tools"])

    assert result == (
        "---\n"
        "name: release-notes\n"
        "description: Use this agent when: x. Examples: <example>Context: y</example>\n"
        "model: opus\n"
        "---\n"
        "You write release notes.\n"
    )
    assert parse_agent_document(result).description.startswith("Use this agent when: x.")


def test_a_lenient_document_gets_indented_lists_and_one_line_multi_line_text():
    result = document_patch(LENIENT, set_keys={"notes": "a\nb", "skills": [["nested"]]})

    assert result == with_line(
        LENIENT, "tools: Read, Grep\n", 'tools: Read, Grep\nnotes: "a\\nb"\nskills:\n  - [nested]\n'
    )
    assert parse_agent_document(result).frontmatter["notes"] == "a\nb"


def test_a_mapping_cannot_be_set_in_a_lenient_document_because_it_would_be_read_back_as_text():
    problems = field_of_problem(content=LENIENT, set_keys={"hooks": {"Stop": "done"}})

    assert [field for field, _ in problems] == ["frontmatter.hooks"]
    assert "not strict YAML" in problems[0][1]


def test_setting_the_description_of_a_lenient_document_quotes_it():
    result = document_patch(LENIENT, set_keys={"description": "Use this agent when: z"})

    assert result == with_line(
        LENIENT,
        "description: Use this agent when: x. Examples: <example>Context: y</example>\n",
        "description: 'Use this agent when: z'\n",
    )


def test_a_key_written_twice_is_replaced_where_yaml_reads_it_and_its_earlier_copy_removed():
    content = "---\nmodel: a\nname: reviewer\nmodel: b  # wins\ndescription: Reviews code\n---\n"

    assert document_patch(content, set_keys={"model": "c"}) == (
        "---\nname: reviewer\nmodel: c\ndescription: Reviews code\n---\n"
    )
    assert document_patch(content, remove_keys=["model"]) == (
        "---\nname: reviewer\ndescription: Reviews code\n---\n"
    )


def test_a_column_zero_list_and_a_wrapped_flow_mapping_are_part_of_their_key():
    content = (
        "---\nname: reviewer\ndescription: Reviews code\ntools:\n- Read\n- Grep\n"
        "hooks: {a: 1,\nb: 2}\nmodel: x\n---\n"
    )

    result = document_patch(content, set_keys={"tools": ["Bash"]}, remove_keys=["hooks"])

    assert result == "---\nname: reviewer\ndescription: Reviews code\ntools:\n  - Bash\nmodel: x\n---\n"


@pytest.mark.parametrize("key", ["bad key", "1model", "a.b", "", "-x", "a:b"])
def test_a_key_that_is_not_a_plain_top_level_name_is_refused(key):
    assert [field for field, _ in field_of_problem(set_keys={key: "x"})] == [f"frontmatter.{key}"]
    assert [field for field, _ in field_of_problem(remove_keys=[key])] == [f"frontmatter.{key}"]


def test_a_key_both_set_and_removed_is_refused():
    assert field_of_problem(set_keys={"model": "opus"}, remove_keys=["model"]) == [
        ("frontmatter.model", "is both set and removed")
    ]


@pytest.mark.parametrize("value", [object(), {1: "x"}, float("nan"), ("a", "b"), b"raw"])
def test_a_value_json_cannot_hold_is_refused(value):
    assert [field for field, _ in field_of_problem(set_keys={"extra": value})] == ["frontmatter.extra"]


def test_removing_name_makes_the_document_invalid_and_says_which_key():
    assert field_of_problem(remove_keys=["name"]) == [("frontmatter.name", "is required")]


def test_setting_an_invalid_name_is_refused_with_the_key_and_its_line():
    with pytest.raises(DocumentInvalid) as caught:
        document_patch(DOCUMENT, set_keys={"name": "Code Reviewer"})

    [problem] = caught.value.problems
    assert (problem.field, problem.line) == ("frontmatter.name", 3)


def test_a_body_with_a_nul_byte_is_refused():
    assert [field for field, _ in field_of_problem(body="a\x00b")] == ["content"]


def test_a_replacement_body_takes_the_line_ending_of_an_lf_document():
    result = document_patch(DOCUMENT, body="One.\r\nTwo.\r\n")

    assert result == DOCUMENT[: DOCUMENT.index("You review code.")] + "One.\nTwo.\n"
