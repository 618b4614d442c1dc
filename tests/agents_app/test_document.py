"""Parsing and validating agent-definition documents (ARCHITECTURE.md, "The agent-definition document")."""

import hashlib

import pytest
import yaml

from agents_app.document import parse_agent_document
from agents_app.exceptions import DocumentInvalid

# A one-line description as Claude Code subagents write it: a plain scalar holding ': ',
# which strict YAML refuses ("mapping values are not allowed here").
EXAMPLES_DESCRIPTION = (
    "Use this agent when the user wants a changelog drafted from merged pull requests. "
    "Examples: <example>Context: the user asks for the notes of the 2.3 release. "
    "user: 'Write the release notes for 2.3' assistant: 'I will use the release-notes agent.'</example>"
)


def problems_of(raw: bytes | str) -> list[tuple[str, str, int | None]]:
    """The (field, message, line) of every problem parse_agent_document reports for `raw`."""
    with pytest.raises(DocumentInvalid) as caught:
        parse_agent_document(raw)
    assert caught.value.problems, "DocumentInvalid must say what is wrong"
    return [(problem.field, problem.message, problem.line) for problem in caught.value.problems]


# ---------------------------------------------------------------------------------------
# The raw bytes are the source of truth
# ---------------------------------------------------------------------------------------

ROUND_TRIP_DOCUMENTS = {
    "lf": b"---\nname: reviewer\ndescription: Reviews code\n---\nReview carefully.\n",
    "crlf": b"---\r\nname: reviewer\r\ndescription: Reviews code\r\n---\r\n"
    b"Review carefully.\r\n\r\nThen stop.\r\n",
    "no-final-newline": b"---\nname: reviewer\ndescription: Reviews code\n---\nReview carefully.",
    "crlf-no-final-newline": b"---\r\nname: reviewer\r\ndescription: Reviews code\r\n---\r\n"
    b"Review carefully.",
    "non-ascii": (
        "---\nname: reviewer\ndescription: コードをレビューする 🔍\n---\n"
        "あなたは慎重なレビュアーです。✅ Ünïcödé, naïve café, 😀\n"
    ).encode(),
    "comments-and-odd-key-order": (
        b"---\n"
        b"# who may use it\n"
        b"model: sonnet   # the cheap one\n"
        b"\n"
        b"color: 'blue'\n"
        b'description: "Reviews code"\n'
        b"name: reviewer\n"
        b"---\n"
        b"\n\nBody after two blank lines.\n"
    ),
    "utf8-bom": b"\xef\xbb\xbf---\nname: reviewer\ndescription: Reviews code\n---\nReview carefully.\n",
    "empty-body": b"---\nname: reviewer\ndescription: Reviews code\n---\n",
    "trailing-whitespace-and-tabs": b"---  \nname: reviewer\t\ndescription: Reviews code  \n---\t\n"
    b"  body  \n\n\n",
}


@pytest.mark.parametrize("raw", ROUND_TRIP_DOCUMENTS.values(), ids=ROUND_TRIP_DOCUMENTS.keys())
def test_a_document_keeps_its_exact_bytes(raw):
    document = parse_agent_document(raw)

    assert document.raw == raw
    assert document.sha256 == hashlib.sha256(raw).hexdigest()
    assert document.name == "reviewer"
    assert document.description in ("Reviews code", "コードをレビューする 🔍")


@pytest.mark.parametrize("raw", ROUND_TRIP_DOCUMENTS.values(), ids=ROUND_TRIP_DOCUMENTS.keys())
def test_a_document_given_as_text_keeps_the_same_bytes_as_one_given_as_bytes(raw):
    assert parse_agent_document(raw.decode("utf-8")).raw == raw


def test_crlf_line_endings_stay_out_of_the_parsed_values_but_stay_in_the_body():
    document = parse_agent_document(ROUND_TRIP_DOCUMENTS["crlf"])

    assert document.frontmatter == {"name": "reviewer", "description": "Reviews code"}
    assert document.body == "Review carefully.\r\n\r\nThen stop.\r\n"
    assert document.warnings == []


def test_a_missing_final_newline_is_not_added_to_the_body():
    document = parse_agent_document(ROUND_TRIP_DOCUMENTS["no-final-newline"])

    assert document.body == "Review carefully."
    assert document.content.endswith("carefully.")


def test_non_ascii_text_comes_out_unchanged_in_fields_and_body():
    document = parse_agent_document(ROUND_TRIP_DOCUMENTS["non-ascii"])

    assert document.description == "コードをレビューする 🔍"
    assert document.body == "あなたは慎重なレビュアーです。✅ Ünïcödé, naïve café, 😀\n"


def test_comments_are_ignored_and_the_key_order_of_the_file_is_kept():
    document = parse_agent_document(ROUND_TRIP_DOCUMENTS["comments-and-odd-key-order"])

    assert list(document.frontmatter) == ["model", "color", "description", "name"]
    assert document.model == "sonnet"
    assert document.color == "blue"
    assert document.key_lines == {"model": 3, "color": 5, "description": 6, "name": 7}
    assert document.body == "\n\nBody after two blank lines.\n"


def test_a_utf8_bom_is_kept_in_the_bytes_and_does_not_hide_the_frontmatter():
    document = parse_agent_document(ROUND_TRIP_DOCUMENTS["utf8-bom"])

    assert document.raw.startswith(b"\xef\xbb\xbf---\n")
    assert document.frontmatter == {"name": "reviewer", "description": "Reviews code"}
    assert document.body == "Review carefully.\n"


# ---------------------------------------------------------------------------------------
# Lenient parsing of what Claude Code accepts
# ---------------------------------------------------------------------------------------


def test_a_description_holding_examples_is_refused_by_strict_yaml():
    frontmatter = f"name: release-notes\ndescription: {EXAMPLES_DESCRIPTION}\n"

    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(frontmatter)


def test_a_description_holding_examples_is_accepted_with_a_warning_and_read_as_text():
    raw = (
        "---\n"
        "name: release-notes\n"
        f"description: {EXAMPLES_DESCRIPTION}\n"
        "model: haiku\n"
        "color: green\n"
        "---\n"
        "You write release notes.\n"
    ).encode()

    document = parse_agent_document(raw)

    assert document.raw == raw
    assert document.name == "release-notes"
    assert document.description == EXAMPLES_DESCRIPTION
    assert document.model == "haiku"
    assert document.color == "green"
    assert document.tools is None
    assert document.body == "You write release notes.\n"
    assert document.key_lines == {"name": 2, "description": 3, "model": 4, "color": 5}
    assert len(document.warnings) == 1
    assert "not strict YAML" in document.warnings[0]
    assert "line 3" in document.warnings[0]


def test_lenient_parsing_joins_indented_continuation_lines_and_reads_crlf_files():
    raw = (
        "---\r\n"
        "name: release-notes\r\n"
        f"description: {EXAMPLES_DESCRIPTION}\r\n"
        "  Second line of the description.\r\n"
        "tools: Read, Grep\r\n"
        "---\r\n"
        "Body\r\n"
    ).encode()

    document = parse_agent_document(raw)

    assert document.raw == raw
    assert document.description == f"{EXAMPLES_DESCRIPTION} Second line of the description."
    assert document.tools == ["Read", "Grep"]
    assert "not strict YAML" in document.warnings[0]


def test_lenient_parsing_reads_a_block_list_of_tools():
    raw = f"---\nname: release-notes\ndescription: {EXAMPLES_DESCRIPTION}\ntools:\n  - Read\n  - Bash\n---\n"

    document = parse_agent_document(raw)

    assert document.tools == ["Read", "Bash"]
    assert document.frontmatter["tools"] == ["Read", "Bash"]


# ---------------------------------------------------------------------------------------
# Structured view
# ---------------------------------------------------------------------------------------

TOOLS_SPELLINGS = {
    "comma-string": "tools: Read, Bash\n",
    "comma-string-without-spaces": "tools: Read,Bash\n",
    "comma-string-with-stray-commas": "tools: ' Read , Bash , '\n",
    "flow-list": "tools: [Read, Bash]\n",
    "quoted-flow-list": 'tools: ["Read", "Bash"]\n',
    "block-list": "tools:\n  - Read\n  - Bash\n",
    "block-list-not-indented": "tools:\n- Read\n- Bash\n",
}


@pytest.mark.parametrize("spelling", TOOLS_SPELLINGS.values(), ids=TOOLS_SPELLINGS.keys())
def test_tools_are_normalised_to_a_list_of_names(make_agent_text, spelling):
    document = parse_agent_document(make_agent_text(extra=spelling))

    assert document.tools == ["Read", "Bash"]
    assert document.warnings == []


def test_a_tool_listed_twice_is_kept_once_with_a_warning(make_agent_text):
    document = parse_agent_document(make_agent_text(extra="tools: Read, Bash, Read\n"))

    assert document.tools == ["Read", "Bash"]
    assert document.warnings == ["tool 'Read' is listed twice"]


def test_no_tools_key_means_every_tool(make_agent_text):
    document = parse_agent_document(make_agent_text())

    assert document.tools is None
    assert document.warnings == []


def test_an_empty_tools_key_means_every_tool_and_says_so(make_agent_text):
    document = parse_agent_document(make_agent_text(extra="tools:\n"))

    assert document.tools is None
    assert document.warnings == ["tools is empty: like no tools key, the agent is granted every tool"]


def test_keys_the_registry_does_not_know_are_kept_in_the_frontmatter(make_agent_text):
    extra = (
        "disallowedTools: Write, Edit\n"
        "permissionMode: plan\n"
        "hooks:\n"
        "  PreToolUse:\n"
        "    - matcher: Bash\n"
        "      command: ./check.sh\n"
        "role: reviewer\n"
        "capabilities: [read, comment]\n"
        "priority: 3\n"
        "maxTurns: 12\n"
    )

    document = parse_agent_document(make_agent_text(extra=extra))

    assert document.frontmatter == {
        "name": "reviewer",
        "description": "Reviews code",
        "disallowedTools": "Write, Edit",
        "permissionMode": "plan",
        "hooks": {"PreToolUse": [{"matcher": "Bash", "command": "./check.sh"}]},
        "role": "reviewer",
        "capabilities": ["read", "comment"],
        "priority": 3,
        "maxTurns": 12,
    }
    assert document.tools is None


def test_yaml_dates_in_unknown_keys_become_iso_text_so_the_frontmatter_is_plain_json(make_agent_text):
    document = parse_agent_document(make_agent_text(extra="reviewed: 2024-05-01\n"))

    assert document.frontmatter["reviewed"] == "2024-05-01"


def test_a_name_of_exactly_64_characters_is_accepted(make_agent_text):
    name = "a" * 62 + "-1"

    assert parse_agent_document(make_agent_text(name)).name == name


def test_a_key_given_twice_counts_once_with_a_warning_naming_both_lines():
    document = parse_agent_document(b"---\nname: first\ndescription: Reviews code\nname: second\n---\n")

    assert document.name == "second"
    assert document.warnings == ["key 'name' appears on lines 2 and 4; the last one counts"]


# ---------------------------------------------------------------------------------------
# Invalid documents: what and where
# ---------------------------------------------------------------------------------------

NAME_RULE = "must be lowercase letters, digits, '.', '_' or '-'"
VALID_HEAD = b"---\nname: reviewer\ndescription: Reviews code\n"

# id -> (raw, field, message substring, line); every one of them is refused with that one problem.
INVALID_DOCUMENTS = {
    "no-frontmatter": (b"# Reviewer\n\nReview code.\n", "content", "no frontmatter", 1),
    "frontmatter-not-on-first-line": (
        b"\n---\nname: reviewer\ndescription: Reviews code\n---\n",
        "content",
        "no frontmatter",
        1,
    ),
    "unterminated-frontmatter": (
        b"---\nname: reviewer\ndescription: Reviews code\nBody\n",
        "content",
        "never closed",
        1,
    ),
    "missing-name": (b"---\ndescription: Reviews code\n---\nBody\n", "name", "is required", 1),
    "empty-name": (b"---\nname:\ndescription: Reviews code\n---\n", "name", "is required", 2),
    "missing-description": (b"---\nname: reviewer\n---\nBody\n", "description", "is required", 1),
    "blank-description": (b"---\nname: reviewer\ndescription: '  '\n---\n", "description", "is required", 3),
    "description-not-text": (
        b"---\nname: reviewer\ndescription: [a, b]\n---\n",
        "description",
        "must be text",
        3,
    ),
    "name-uppercase": (b"---\ndescription: Reviews code\nname: Reviewer\n---\n", "name", NAME_RULE, 3),
    "name-with-spaces": (b"---\nname: code reviewer\ndescription: Reviews code\n---\n", "name", NAME_RULE, 2),
    "name-65-characters": (
        b"---\nname: " + b"a" * 65 + b"\ndescription: Reviews code\n---\n",
        "name",
        "at most 64 characters",
        2,
    ),
    "name-leading-hyphen": (b"---\nname: -reviewer\ndescription: Reviews code\n---\n", "name", NAME_RULE, 2),
    # Dots and underscores are allowed (ARCHITECTURE.md), but not two dots in a row nor a slash.
    "name-two-dots": (b"---\nname: a..b\ndescription: Reviews code\n---\n", "name", NAME_RULE, 2),
    "name-with-slash": (b"---\nname: a/b\ndescription: Reviews code\n---\n", "name", NAME_RULE, 2),
    "name-leading-dot": (b"---\nname: .hidden\ndescription: Reviews code\n---\n", "name", NAME_RULE, 2),
    "name-an-integer": (b"---\nname: 123\ndescription: Reviews code\n---\n", "name", "got 123", 2),
    "name-a-boolean": (b"---\nname: true\ndescription: Reviews code\n---\n", "name", "got True", 2),
    "name-a-list": (
        b"---\nname: [reviewer]\ndescription: Reviews code\n---\n",
        "name",
        "got ['reviewer']",
        2,
    ),
    "empty-file": (b"", "content", "document is empty", 1),
    "whitespace-only-file": (b"  \n\n\t\r\n", "content", "document is empty", 1),
    "yaml-alias-bomb": (
        VALID_HEAD
        + b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + b"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        + b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        + b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        + b"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        + b"f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        + b"g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
        + b"h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        + b"i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
        + b"---\n",
        "frontmatter",
        "YAML aliases (*a) are not allowed",
        5,
    ),
    "yaml-single-alias": (
        VALID_HEAD + b"base: &base {model: opus}\nother: *base\n---\n",
        "frontmatter",
        "aliases",
        5,
    ),
    "deep-nesting-flow": (
        VALID_HEAD + b"x: " + b"[" * 50 + b"]" * 50 + b"\n---\n",
        "frontmatter",
        "nested deeper than 20 levels",
        4,
    ),
    "deep-nesting-block": (
        VALID_HEAD + b"".join(b"  " * depth + b"k%d:\n" % depth for depth in range(25)) + b"---\n",
        "frontmatter",
        "nested deeper than 20 levels",
        24,  # k20 on line 24 opens the 21st mapping (the frontmatter itself is the first)
    ),
    "invalid-utf8-in-body": (
        VALID_HEAD + b"---\nline five\ncaf\xe9\n",
        "content",
        "not UTF-8 (byte 0xe9)",
        6,
    ),
    "invalid-utf8-in-frontmatter": (
        b"---\nname: reviewer\ndescription: Reviews \xff code\n---\n",
        "content",
        "not UTF-8 (byte 0xff)",
        3,
    ),
    "truncated-utf8-sequence": (VALID_HEAD + b"---\n\xe3\x81", "content", "not UTF-8 (byte 0xe3)", 5),
    "nul-byte-in-body": (VALID_HEAD + b"---\nfirst\nsecond\x00\n", "content", "NUL byte", 6),
    "nul-byte-in-frontmatter": (
        b"---\nname: reviewer\x00\ndescription: Reviews code\n---\n",
        "content",
        "NUL",
        2,
    ),
    "tools-an-integer": (VALID_HEAD + b"tools: 5\n---\n", "tools", "comma-separated string or a list", 4),
    "tools-a-mapping": (VALID_HEAD + b"tools:\n  Read: yes\n---\n", "tools", "comma-separated string", 4),
    "tools-a-list-of-numbers": (VALID_HEAD + b"tools: [1, 2]\n---\n", "tools", "list of tool names", 4),
    "model-not-text": (VALID_HEAD + b"model: 4\n---\n", "model", "must be text", 4),
    "frontmatter-a-list": (
        b"---\n- name: reviewer\n- description: Reviews code\n---\n",
        "frontmatter",
        "mapping",
        2,
    ),
    "frontmatter-a-scalar": (b"---\njust some words\n---\n", "frontmatter", "must be a mapping", 2),
    "lenient-fallback-still-fails": (
        f"---\nname: release-notes\ndescription: {EXAMPLES_DESCRIPTION}\nnot a key line\n---\n".encode(),
        "frontmatter",
        "neither 'key: value' nor an indented continuation",
        4,
    ),
    "lenient-fallback-refuses-a-bad-name": (
        f"---\nname: Release Notes\ndescription: {EXAMPLES_DESCRIPTION}\n---\n".encode(),
        "name",
        NAME_RULE,
        2,
    ),
}


@pytest.mark.parametrize(
    ("raw", "field", "message", "line"), INVALID_DOCUMENTS.values(), ids=INVALID_DOCUMENTS.keys()
)
def test_an_invalid_document_is_refused_saying_what_and_on_which_line(raw, field, message, line):
    [(got_field, got_message, got_line)] = problems_of(raw)

    assert got_field == field
    assert message in got_message
    assert got_line == line


def test_every_problem_of_a_document_is_listed_at_once():
    raw = b"---\nname: Bad Name\ntools: 5\nmodel: [a]\n---\n"

    assert problems_of(raw) == [
        (
            "name",
            "must be lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, with"
            " no '..', at most 64 characters; got 'Bad Name'",
            2,
        ),
        ("description", "is required", 1),
        ("model", "must be text", 4),
        ("tools", "must be a comma-separated string or a list of tool names", 3),
    ]


def test_the_error_message_names_the_line_and_the_field(make_agent_text):
    with pytest.raises(DocumentInvalid) as caught:
        parse_agent_document(b"---\nname: Reviewer\ndescription: x\n---\n")

    assert str(caught.value).startswith("line 2: name: must be lowercase")


def test_text_with_lone_surrogates_is_refused(make_agent_text):
    [(field, message, _)] = problems_of(make_agent_text(body="broken \ud800 text\n"))

    assert field == "content"
    assert "lone surrogates" in message


def test_a_document_over_the_configured_size_limit_is_refused(settings, make_agent_text):
    settings.AGENT_MAX_BYTES = 100
    raw = make_agent_text(body="x" * 200).encode()

    assert problems_of(raw) == [("content", f"document is {len(raw)} bytes; the limit is 100 bytes", None)]


def test_a_document_exactly_at_the_size_limit_is_accepted(settings, make_agent_text):
    raw = make_agent_text().encode()
    settings.AGENT_MAX_BYTES = len(raw)

    assert parse_agent_document(raw).raw == raw


def test_the_size_limit_counts_bytes_not_characters(settings, make_agent_text):
    text = make_agent_text(body="日本語\n")
    settings.AGENT_MAX_BYTES = len(text)  # characters: fewer than the UTF-8 bytes

    [(field, message, _)] = problems_of(text)

    assert field == "content"
    assert f"document is {len(text.encode())} bytes" in message


def test_a_document_over_the_default_256_kib_is_refused(make_agent_text):
    raw = make_agent_text(body="y" * (256 * 1024)).encode()

    [(field, message, line)] = problems_of(raw)

    assert field == "content"
    assert message == f"document is {len(raw)} bytes; the limit is 262144 bytes"
    assert line is None


def test_aliases_are_refused_even_when_the_frontmatter_falls_back_to_lenient_parsing():
    # Strict YAML fails on the description, so the lenient reader takes over; it must
    # still refuse the aliases on line 4 instead of expanding them (9**4 items here).
    bomb = "[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]]"
    raw = f"---\nname: reviewer\ndescription: {EXAMPLES_DESCRIPTION}\nx: {bomb}\n---\n"

    [(field, message, line)] = problems_of(raw)

    assert (field, line) == ("frontmatter", 4)
    assert "aliases" in message


def test_deep_nesting_is_refused_even_when_the_frontmatter_falls_back_to_lenient_parsing():
    raw = f"---\nname: reviewer\ndescription: {EXAMPLES_DESCRIPTION}\nx: {'[' * 5000}{']' * 5000}\n---\n"

    [(field, message, line)] = problems_of(raw)

    assert (field, line) == ("frontmatter", 4)
    assert "nested deeper" in message


def test_a_text_parsed_once_is_refused_again_when_the_size_limit_drops_below_it(settings, make_agent_text):
    text = make_agent_text(body="Remembered once parsed.\n")
    assert parse_agent_document(text).content == text  # now in the cache of parsed texts
    settings.AGENT_MAX_BYTES = len(text.encode()) - 1

    [(field, message, _)] = problems_of(text)

    assert (field, message) == (
        "content",
        f"document is {len(text.encode())} bytes; the limit is {len(text) - 1} bytes",
    )


def test_parsed_texts_are_kept_most_recently_used_first_within_their_size_and_count_bounds():
    from agents_app.document import _ParsedTexts

    def text(name: str, padding: int = 0) -> str:
        return f"---\nname: {name}\ndescription: d\n---\n{'x' * padding}\n"

    cache = _ParsedTexts(total_chars=len(text("a-1", 100)) * 3, entries=10)
    first = cache.get(text("a-1", 100), 1000, "claude-code")
    cache.get(text("a-2", 100), 1000, "claude-code")
    cache.get(text("a-3", 100), 1000, "claude-code")
    assert cache.get(text("a-1", 100), 1000, "claude-code") is first  # kept, and now the newest
    cache.get(text("a-4", 100), 1000, "claude-code")  # over the size: the least recently used (a-2) goes
    assert list(key[0] for key in cache._documents) == [text(n, 100) for n in ("a-3", "a-1", "a-4")]
    assert cache._chars == 3 * len(text("a-1", 100))

    by_count = _ParsedTexts(total_chars=10**6, entries=2)
    for name in ("b-1", "b-2", "b-3"):
        by_count.get(text(name), 1000, "claude-code")
    assert [key[0] for key in by_count._documents] == [text("b-2"), text("b-3")]

    with pytest.raises(DocumentInvalid):
        by_count.get("---\nname: [\n---\n", 1000, "claude-code")
    assert len(by_count._documents) == 2  # a refused text is not kept
