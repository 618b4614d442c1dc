"""Byte-preserving edits of agent documents, for HTTP PATCH.

The raw bytes are the source of truth (ARCHITECTURE.md), so a PATCH must not re-dump the
frontmatter: that would lose comments, quoting, block scalars and key order. Instead the
frontmatter is cut into top-level key blocks, and only the blocks of the keys named in the
patch are replaced, removed or appended; every other line is copied through untouched.

A key block is the line holding `key:` plus the lines that continue its value: indented
lines, and for strict YAML also column-0 lines that YAML reads as part of the value (an
indentless `- item` list, a flow collection or quoted scalar wrapped onto the next line).
Blank lines and column-0 comments after the last such line sit *between* blocks and are
never touched. Where the block boundaries come from:

* strict YAML: the line of each top-level key node, as PyYAML composes it;
* otherwise (the lenient case of document.py): lines matching `key: value` at column 0,
  with indented lines continuing the key before them, exactly as `_lenient` reads them.

Choices, each kept simple on purpose:

* A replaced key keeps its position, but its block is rewritten whole: a trailing comment on
  the key line (`model: sonnet  # cheap`) is dropped with the old value.
* Comment lines directly above a removed key stay where they are (they may describe more than
  that key, and deleting text the patch did not name is worse than keeping a stale comment).
* Setting a key to the value it already has changes nothing, so no bytes move.
* A key written more than once: set replaces the last occurrence (the one YAML keeps) and
  removes the earlier ones; remove removes every occurrence. Removing an absent key is a no-op.
* New keys are appended just before the closing `---`.
* Values are rendered by yaml.dump with a safe dumper: lists of scalars in flow style
  (`[Read, Grep]`) unless the key being replaced was written as a block list, other
  collections in block style with sequences indented under their key (the lenient reader
  needs that), multi-line strings as literal `|` blocks, everything else on one line.
* Inserted lines, and a replacement body, take the document's line ending: CRLF when the
  opening `---` line ends with CRLF, else LF.

The result is parsed with parse_agent_document and every patched key is read back; a patch
whose result is invalid, or whose value would not read back as given (a mapping in a
frontmatter that only parses leniently), raises DocumentInvalid and nothing is returned.
"""

import functools
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from agents_app.dialects import DEFAULT_DIALECT
from agents_app.document import LENIENT_KEY, SafeLoader, _split, parse_agent_document
from agents_app.exceptions import DocumentInvalid, DocumentProblem

PATCH_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
RENDER_WIDTH = 1_000_000_000  # never fold: a long description stays on one line


class _Dumper(yaml.SafeDumper):
    """Block-style collections, sequences indented under their key."""

    flow_scalar_lists = True
    literal_strings = True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # `key:\n  - item` rather than PyYAML's `key:\n- item`: the lenient reader of document.py
        # only takes indented lines as the continuation of a key
        super().increase_indent(flow, False)


def _represent_str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    style = None
    if "\n" in value:
        # A literal block reads best, but not where the lenient reader would join its lines, nor
        # for text ending in several line breaks: PyYAML writes that as `|+` followed by a `...`
        # document end marker, which would cut the frontmatter short. There: one double-quoted
        # line with `\n` escapes. PyYAML itself falls back to quoting when a literal block
        # cannot hold the text (trailing spaces, control characters).
        body = value.rstrip("\n\x85\u2028\u2029")
        literal = dumper.literal_strings and body and len(value) - len(body) <= 1
        style = "|" if literal else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: _Dumper, value: list[Any]) -> yaml.SequenceNode:
    flow = dumper.flow_scalar_lists and all(not isinstance(item, list | dict) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)


@functools.cache
def _dumper(*, flow_lists: bool, literal_strings: bool) -> type[_Dumper]:
    return type(
        "_PatchDumper", (_Dumper,), {"flow_scalar_lists": flow_lists, "literal_strings": literal_strings}
    )


def _invalid(key: str, message: str) -> DocumentInvalid:
    return DocumentInvalid([DocumentProblem(f"frontmatter.{key}", message)])


def _check_value(key: str, value: Any, depth: int = 0) -> None:
    """Only what JSON can say: the API hands us parsed JSON, anything else is a programming error."""
    if depth > 20:
        raise _invalid(key, "is nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(key, "must be a finite number")
    if value is None or isinstance(value, str | int | float | bool):
        return
    if isinstance(value, list):
        for item in value:
            _check_value(key, item, depth + 1)
        return
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise _invalid(key, f"mapping keys must be text; got {name!r}")
            _check_value(key, item, depth + 1)
        return
    raise _invalid(
        key, f"must be text, a number, true/false, null, a list or a mapping; got {type(value).__name__}"
    )


def _same(left: Any, right: Any) -> bool:
    """Equal as JSON says: `1`, `1.0` and `true` differ; mapping key order does not matter."""
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def _is_trivia(line: str) -> bool:
    """A line that belongs to no key: blank, or a comment at column 0."""
    stripped = line.strip()
    return not stripped or (stripped.startswith("#") and line[:1] not in " \t")


@dataclass(frozen=True)
class _Layout:
    """How the frontmatter is written, so inserted lines match it."""

    strict: bool  # strict YAML, or only readable by document.py's lenient parser
    indent: int  # column of the top-level keys
    line_end: str  # '\r' in a CRLF document (lines are split on '\n'), else ''


def _key_starts(lines: list[str]) -> tuple[list[tuple[int, str, int]], bool]:
    """(line index, key, column) of every top-level key, in order; and whether it is strict YAML."""
    loader = SafeLoader("\n".join(lines))
    strict = True
    try:
        root = loader.get_single_node()
    except yaml.YAMLError:
        root, strict = None, False  # not strict YAML: read it as document.py's lenient parser does
    finally:
        loader.dispose()
    if root is None and strict:
        return [], True
    if isinstance(root, yaml.MappingNode):
        if root.flow_style:
            raise DocumentInvalid(
                [
                    DocumentProblem(
                        "frontmatter",
                        "is a one-line {...} mapping; PATCH edits 'key: value' lines, send the whole"
                        " document with PUT instead",
                    )
                ]
            )
        starts = [
            (key_node.start_mark.line, str(key_node.value), key_node.start_mark.column)
            for key_node, _ in root.value
        ]
        if any(later[0] <= earlier[0] for earlier, later in itertools.pairwise(starts)):
            raise DocumentInvalid(
                [DocumentProblem("frontmatter", "has two keys on one line; PATCH needs one key per line")]
            )
        return starts, True
    starts = []
    current = False
    for index, line in enumerate(lines):
        if _is_trivia(line) or (line[:1] in " \t" and (current or line.lstrip().startswith("#"))):
            continue
        match = LENIENT_KEY.match(line.rstrip("\r"))
        if match is None:  # parse_agent_document refuses such a document, so it is never stored
            raise DocumentInvalid([DocumentProblem("frontmatter", "is neither YAML nor 'key: value' lines")])
        starts.append((index, match.group(1), 0))
        current = True
    return starts, False


def _blocks(lines: list[str], starts: list[tuple[int, str, int]]) -> list[tuple[str, int, int]]:
    """(key, first line, end line exclusive) of each key block; trailing trivia stays outside."""
    blocks = []
    for number, (first, key, _) in enumerate(starts):
        limit = starts[number + 1][0] if number + 1 < len(starts) else len(lines)
        end = first + 1
        for index in range(first + 1, limit):
            if not _is_trivia(lines[index]):
                end = index + 1
        blocks.append((key, first, end))
    return blocks


def _render(key: str, value: Any, layout: _Layout, *, flow_lists: bool = True) -> list[str]:
    """The lines of `key: value` as this document writes lines (split on '\\n')."""
    try:
        text = yaml.dump(
            {key: value},
            Dumper=_dumper(flow_lists=flow_lists, literal_strings=layout.strict),
            default_flow_style=False,
            allow_unicode=True,
            width=RENDER_WIDTH,
            sort_keys=False,
        )
    except yaml.YAMLError as exc:
        raise _invalid(key, f"cannot be written as YAML ({exc})") from exc
    return [" " * layout.indent + line + layout.line_end for line in text.split("\n")[:-1]]


def _written_as_block_list(lines: list[str]) -> bool:
    return any(line.lstrip().startswith("- ") or line.strip() == "-" for line in lines[1:])


def _with_line_ending(text: str, newline: str) -> str:
    lf = text.replace("\r\n", "\n")
    return lf.replace("\n", newline) if newline != "\n" else lf


def document_patch(
    content: str,
    *,
    set_keys: Mapping[str, Any] | None = None,
    remove_keys: Iterable[str] = (),
    body: str | None = None,
    dialect: str = DEFAULT_DIALECT,
) -> str:
    """The document with `set_keys` set, `remove_keys` removed and the body replaced; other bytes kept.

    `dialect`: the rules the document is read with (a copilot one may have no name).
    """
    set_keys = dict(set_keys or {})
    remove = list(dict.fromkeys(remove_keys))
    for key in [*set_keys, *remove]:
        if not isinstance(key, str) or not PATCH_KEY.fullmatch(key):
            raise _invalid(str(key), "is not a plain top-level key name (letters, digits, '_' and '-')")
    for key, value in set_keys.items():
        _check_value(key, value)
    for key in remove:
        if key in set_keys:
            raise _invalid(key, "is both set and removed")

    current = parse_agent_document(content, dialect=dialect).frontmatter
    set_keys = {
        key: value for key, value in set_keys.items() if key not in current or not _same(current[key], value)
    }
    remove = [key for key in remove if key in current]

    lines = content.split("\n")
    _, _, closing_line = _split(content)
    closing = closing_line - 1  # index of the closing '---' in `lines`
    newline = "\r\n" if lines[0].endswith("\r") else "\n"
    frontmatter = lines[1:closing]
    starts, strict = _key_starts(frontmatter)
    layout = _Layout(strict=strict, indent=starts[0][2] if starts else 0, line_end=newline[:-1])
    blocks = _blocks(frontmatter, starts)
    last_block = {key: number for number, (key, _, _) in enumerate(blocks)}

    edited: list[str] = []
    position = 0
    for number, (key, first, end) in enumerate(blocks):
        if key not in set_keys and key not in remove:
            continue
        edited.extend(frontmatter[position:first])
        position = end
        if key in set_keys and last_block[key] == number:
            block_list = _written_as_block_list(frontmatter[first:end])
            edited.extend(_render(key, set_keys[key], layout, flow_lists=not block_list))
    edited.extend(frontmatter[position:])
    for key, value in set_keys.items():
        if key not in last_block:
            edited.extend(_render(key, value, layout))

    head = "\n".join([lines[0], *edited, lines[closing]])
    if body is None:
        result = "\n".join([head, *lines[closing + 1 :]])
    elif closing + 1 < len(lines):  # the closing line ends with '\r' in a CRLF document already
        result = f"{head}\n{_with_line_ending(body, newline)}"
    else:  # '---' was the last line, without a line break
        result = f"{head}{newline}{_with_line_ending(body, newline)}" if body else head
    return _checked(result, set_keys, remove, strict=strict, dialect=dialect)


def _checked(result: str, set_keys: dict[str, Any], remove: list[str], *, strict: bool, dialect: str) -> str:
    """Parse the result; problems with a patched key are reported as `frontmatter.<key>`."""
    patched = {*set_keys, *remove}
    try:
        document = parse_agent_document(result, dialect=dialect)
    except DocumentInvalid as exc:
        raise DocumentInvalid(
            [
                DocumentProblem(f"frontmatter.{problem.field}", problem.message, problem.line)
                if problem.field in patched
                else problem
                for problem in exc.problems
            ]
        ) from exc
    for key, value in set_keys.items():
        if key not in document.frontmatter or not _same(document.frontmatter[key], value):
            read_back = json.dumps(document.frontmatter.get(key), ensure_ascii=False)
            hint = (
                ""
                if strict
                else "; the frontmatter is not strict YAML, so only text, numbers, true/false and lists"
                " of those can be set"
            )
            raise _invalid(key, f"would be read back as {read_back}, not as the value given{hint}")
    for key in remove:
        if key in document.frontmatter:
            raise _invalid(key, "is still read from the document after removing it")
    return result
