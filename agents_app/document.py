"""Agent definition documents: Markdown with YAML frontmatter, parsed leniently, validated strictly.

The raw bytes are the source of truth and are never rewritten; the structured view
(`frontmatter`, `name`, `tools`, ...) is derived from them. Frontmatter that strict YAML
rejects (typically a one-line `description:` holding `Examples: <example>Context: ...`,
which Claude Code accepts) is read as top-level `key: value` lines with a warning.
"""

import collections
import datetime as dt
import hashlib
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.conf import settings

from agents_app.dialects import DEFAULT_DIALECT, NAME_OPTIONAL, document_warnings
from agents_app.dialects.notes import document_note
from agents_app.exceptions import DocumentInvalid, DocumentProblem, InvalidField

# ARCHITECTURE.md: 1 to 64 lowercase letters, digits, '.', '_' and '-', starting with a letter or
# digit (real files use `dotnet-framework-4.8-expert`). Two dots in a row are refused: such a name
# reads like a path escape in URLs and export file names, and no real agent needs one.
NAME_PATTERN = re.compile(r"(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,63}")
# Claude Code's documented set; a name outside it is stored with a `name_format` warning.
DOCUMENTED_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
LENIENT_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*:(?:[ \t]+(.*)|[ \t]*)$")
MAX_YAML_DEPTH = 20
FIRST_FRONTMATTER_LINE = 2  # line 1 of the file is the opening '---'

try:  # the C loader is several times faster; both refuse the same documents
    SafeLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    SafeLoader = yaml.SafeLoader


@dataclass(frozen=True)
class AgentDocument:
    """A parsed, valid agent definition."""

    content: str
    frontmatter: dict[str, Any]
    body: str
    name: str
    description: str
    tools: list[str] | None
    model: str | None
    color: str | None
    notes: list[dict[str, Any]] = field(default_factory=list)  # API.md: [{code, message, line?, suggestion?}]
    key_lines: dict[str, int] = field(default_factory=dict)
    # The rules it was read with; `name` is "" when the dialect lets the frontmatter omit it
    # (copilot: the name then comes from the file name or the request, see agent_name).
    dialect: str = DEFAULT_DIALECT

    @property
    def warnings(self) -> list[str]:
        """The warnings' messages alone."""
        return [note["message"] for note in self.notes]

    @property
    def raw(self) -> bytes:
        return self.content.encode("utf-8")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _jsonable(value: Any) -> Any:
    """YAML values as plain JSON (dates as ISO text, non-finite floats as text, keys as text)."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(item) for item in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _split(text: str) -> tuple[str, str, int]:
    """(frontmatter text, body, line number of the closing '---') or DocumentInvalid."""
    lines = text.split("\n")
    if lines[0].lstrip("\ufeff").rstrip() != "---":
        raise DocumentInvalid([DocumentProblem("content", "no frontmatter: the first line must be '---'", 1)])
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            frontmatter = "\n".join(lines[1:index])
            body = "\n".join(lines[index + 1 :])
            return frontmatter, body, index + 1
    raise DocumentInvalid(
        [DocumentProblem("content", "the frontmatter opened on line 1 is never closed by a '---' line", 1)]
    )


def _check_yaml_events(frontmatter: str, first_line: int = FIRST_FRONTMATTER_LINE) -> None:
    """Refuse aliases (billion-laughs expansion) and absurd nesting before building anything."""
    depth = 0
    for event in yaml.parse(frontmatter, Loader=SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise DocumentInvalid(
                [
                    DocumentProblem(
                        "frontmatter",
                        f"YAML aliases (*{event.anchor}) are not allowed",
                        (event.start_mark.line if event.start_mark else 0) + first_line,
                    )
                ]
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise DocumentInvalid(
                    [
                        DocumentProblem(
                            "frontmatter",
                            f"nested deeper than {MAX_YAML_DEPTH} levels",
                            (event.start_mark.line if event.start_mark else 0) + first_line,
                        )
                    ]
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _strict(frontmatter: str) -> tuple[dict[str, Any], dict[str, int], list[dict[str, Any]]]:
    """Parse with safe YAML; raises yaml.YAMLError when it is not valid YAML."""
    _check_yaml_events(frontmatter)
    loader = SafeLoader(frontmatter)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {}, []
        if not isinstance(node, yaml.MappingNode):
            raise DocumentInvalid(
                [
                    DocumentProblem(
                        "frontmatter", "must be a mapping of 'key: value' lines", FIRST_FRONTMATTER_LINE
                    )
                ]
            )
        key_lines: dict[str, int] = {}
        warnings = []
        for key_node, _ in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + FIRST_FRONTMATTER_LINE
            if key in key_lines:
                warnings.append(
                    document_note(
                        "duplicate_key",
                        f"key {key!r} appears on lines {key_lines[key]} and {line}; the last one counts",
                        line,
                    )
                )
            key_lines[key] = line
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    return data, key_lines, warnings


def _lenient_value(text: str, line: int) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        _check_yaml_events(text, first_line=line)
        value = yaml.load(text, Loader=SafeLoader)  # noqa: S506 - SafeLoader (C or Python)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool | list) else text


def _lenient(
    frontmatter: str, problem: str, problem_line: int | None = None
) -> tuple[dict[str, Any], dict[str, int], list[dict[str, Any]]]:
    """Read top-level `key: value` lines and indented continuations, as Claude Code does."""
    data: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    raw_values: dict[str, list[str]] = {}
    current: str | None = None
    for offset, line in enumerate(frontmatter.split("\n")):
        number = offset + FIRST_FRONTMATTER_LINE
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and (current is None or line[:1] not in " \t")):
            continue
        if line[:1] in " \t" and current is not None:
            raw_values[current].append(stripped)
            continue
        match = LENIENT_KEY.match(line.rstrip("\r"))
        if match is None:
            raise DocumentInvalid(
                [
                    DocumentProblem(
                        "frontmatter",
                        f"not valid YAML ({problem}), and this line is neither 'key: value' nor an"
                        " indented continuation",
                        number,
                    )
                ]
            )
        current = match.group(1)
        key_lines[current] = number
        raw_values[current] = [match.group(2) or ""]
    for key, parts in raw_values.items():
        first, rest = parts[0], parts[1:]
        if not first.strip() and rest and all(part.startswith("- ") for part in rest):
            data[key] = [_lenient_value(part[2:], key_lines[key]) for part in rest]
        else:
            data[key] = _lenient_value(
                " ".join(part for part in [first, *rest] if part.strip()), key_lines[key]
            )
    return (
        data,
        key_lines,
        [
            document_note(
                "lenient_yaml",
                f"frontmatter is not strict YAML ({problem}); it was read as plain 'key: value' lines",
                problem_line,
            )
        ],
    )


def _tools(
    value: Any, line: int | None, problems: list[DocumentProblem], warnings: list[dict[str, Any]]
) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        names = [item.strip() for item in value]
    else:
        problems.append(
            DocumentProblem("tools", "must be a comma-separated string or a list of tool names", line)
        )
        return None
    tools: list[str] = []
    seen: set[str] = set()  # a set, not `in tools`: 10,000 tools stay linear
    for tool in names:
        if tool and tool not in seen:
            seen.add(tool)
            tools.append(tool)
        elif tool:
            warnings.append(document_note("duplicate_tool", f"tool {tool!r} is listed twice", line))
    return tools


# Texts up to this size are remembered once parsed, the most recently used kept, up to
# CACHED_TOTAL_CHARS characters of text and CACHED_ENTRIES documents in all (a few MB): a
# write parses its document to validate it, then both projections parse the same text again
# when they apply the event. A bulk import commits a batch of 200 documents, which one
# projection applies and then the other: a cache of 128 documents had forgotten each by the
# time the second parsed it (issue 14), so it is bounded by size rather than by count.
CACHED_TEXT_CHARS = 64 * 1024
CACHED_TOTAL_CHARS = 8 * 1024 * 1024
CACHED_ENTRIES = 2048


def name_problem(name: Any) -> str | None:
    """What is wrong with an agent name, or None: the one name rule (frontmatter, file name, request)."""
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return None
    return (
        "must be lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, with"
        f" no '..', at most 64 characters; got {name!r}"
    )


def agent_name(document: "AgentDocument", *, given: str | None, given_as: str = "the request") -> str:
    """The name of an agent created from `document`: the frontmatter's, else `given`.

    `given` (a request's `name`, a copilot file's name) follows the same name rule; given
    beside a frontmatter name it must be the same name. A document of a dialect where `name`
    is optional needs one of the two.
    """
    if given is not None:
        if (problem := name_problem(given)) is not None:
            raise InvalidField("name", f"{problem} (from {given_as})")
        if document.name and document.name != given:
            raise InvalidField(
                "name", f"the frontmatter names the agent {document.name!r}, {given_as} {given!r}"
            )
    name = document.name or given
    if not name:
        raise InvalidField(
            "name",
            f"a {document.dialect} document without a name key needs a name given beside it (the name"
            " field; X-Agent-Name with a raw text/markdown body) or its file name (<name>.agent.md)",
        )
    return name


def parse_agent_document(raw: bytes | str, *, dialect: str = DEFAULT_DIALECT) -> AgentDocument:
    """Parse and validate a document under `dialect`'s rules; raise DocumentInvalid listing every problem.

    The document returned may be shared with other callers: treat it as read-only.
    """
    # Bytes too (a file's, a blob's): an import parses them to learn the name, then the
    # service parses the same bytes to validate them (issue 14). A str and bytes never make
    # the same key.
    if len(raw) <= CACHED_TEXT_CHARS:
        return _parse_text(raw, settings.AGENT_MAX_BYTES, dialect)
    return _parse(raw, settings.AGENT_MAX_BYTES, dialect)


class _ParsedTexts:
    """A least-recently-used cache of parsed texts (str or bytes) bounded by total size; threads share it."""

    def __init__(self, *, total_chars: int, entries: int) -> None:
        self._documents: collections.OrderedDict[tuple[bytes | str, int, str], AgentDocument] = (
            collections.OrderedDict()
        )
        self._chars = 0
        self._total_chars = total_chars
        self._entries = entries
        self._lock = threading.Lock()

    def get(self, raw: bytes | str, limit: int, dialect: str) -> AgentDocument:
        key = (raw, limit, dialect)
        with self._lock:
            document = self._documents.get(key)
            if document is not None:
                self._documents.move_to_end(key)
                return document
        document = _parse(raw, limit, dialect)  # outside the lock; DocumentInvalid is not kept
        with self._lock:
            if key not in self._documents:
                self._documents[key] = document
                self._chars += len(raw)
                while self._chars > self._total_chars or len(self._documents) > self._entries:
                    oldest, _ = self._documents.popitem(last=False)
                    self._chars -= len(oldest[0])
        return document

    def clear(self) -> None:
        with self._lock:
            self._documents.clear()
            self._chars = 0


_parsed_texts = _ParsedTexts(total_chars=CACHED_TOTAL_CHARS, entries=CACHED_ENTRIES)


def _parse_text(raw: bytes | str, limit: int, dialect: str) -> AgentDocument:
    return _parsed_texts.get(raw, limit, dialect)


def _parse(raw: bytes | str, limit: int, dialect: str) -> AgentDocument:
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DocumentInvalid(
                [DocumentProblem("content", "text holds characters that cannot be stored (lone surrogates)")]
            ) from exc
    if len(raw) > limit:
        raise DocumentInvalid(
            [DocumentProblem("content", f"document is {len(raw)} bytes; the limit is {limit} bytes")]
        )
    if not raw.strip():
        raise DocumentInvalid([DocumentProblem("content", "document is empty", 1)])
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DocumentInvalid([DocumentProblem("content", "contains a NUL byte", _line_of(raw, nul))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentInvalid(
            [
                DocumentProblem(
                    "content", f"is not UTF-8 (byte 0x{raw[exc.start]:02x})", _line_of(raw, exc.start)
                )
            ]
        ) from exc

    frontmatter_text, body, _ = _split(text)
    try:
        data, key_lines, warnings = _strict(frontmatter_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + FIRST_FRONTMATTER_LINE}" if mark is not None else ""
        problem = f"{getattr(exc, 'problem', None) or exc}{where}"
        data, key_lines, warnings = _lenient(
            frontmatter_text, problem, mark.line + FIRST_FRONTMATTER_LINE if mark is not None else None
        )
    frontmatter = _jsonable(data)

    problems: list[DocumentProblem] = []
    if "name" in data and not isinstance(data["name"], str | None):
        # e.g. `name: 2024-01-01` is a YAML date: refuse it before it is turned into text
        frontmatter["name"] = data["name"]
    name = frontmatter.get("name")
    if name is None or name == "":
        if dialect not in NAME_OPTIONAL:
            problems.append(DocumentProblem("name", "is required", key_lines.get("name", 1)))
    elif (name_error := name_problem(name)) is not None:
        problems.append(DocumentProblem("name", name_error, key_lines.get("name")))
    description = frontmatter.get("description")
    if description is None or (isinstance(description, str) and not description.strip()):
        problems.append(DocumentProblem("description", "is required", key_lines.get("description", 1)))
    elif not isinstance(description, str):
        problems.append(DocumentProblem("description", "must be text", key_lines.get("description")))
    for key in ("model", "color"):
        if frontmatter.get(key) is not None and not isinstance(frontmatter[key], str):
            problems.append(DocumentProblem(key, "must be text", key_lines.get(key)))
    for key, value in frontmatter.items():
        # A YAML escape ("\0", "\ud800") can put into a value what the raw bytes may not hold;
        # PostgreSQL's jsonb refuses NUL, so the views could never show such an event.
        if _holds_unstorable_text(key) or _holds_unstorable_text(value):
            problems.append(
                DocumentProblem(
                    key, "holds a NUL or an unpaired surrogate (from a YAML escape)", key_lines.get(key)
                )
            )
    tools = _tools(frontmatter.get("tools"), key_lines.get("tools"), problems, warnings)
    if "tools" in frontmatter and frontmatter["tools"] is None:
        warnings.append(
            document_note(
                "empty_tools",
                "tools is empty: like no tools key, the agent is granted every tool",
                key_lines.get("tools"),
            )
        )
    if problems:
        raise DocumentInvalid(problems)
    if name and dialect == DEFAULT_DIALECT and not DOCUMENTED_NAME.fullmatch(name):
        warnings.append(
            document_note(
                "name_format",
                f"name {name!r} is outside Claude Code's documented set (lowercase letters, digits and"
                " hyphens); the runtime loads it, other tools may not",
                key_lines.get("name"),
            )
        )
    warnings += document_warnings(frontmatter, key_lines, dialect=dialect)
    return AgentDocument(
        content=text,
        frontmatter=frontmatter,
        body=body,
        name=name or "",
        description=description,
        tools=tools,
        model=frontmatter.get("model"),
        color=frontmatter.get("color"),
        notes=warnings,
        key_lines=key_lines,
        dialect=dialect,
    )


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _holds_unstorable_text(value: Any) -> bool:
    if isinstance(value, str):
        return UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_unstorable_text(k) or _holds_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_unstorable_text(item) for item in value)
    return False


def body_lines(text: str) -> list[str]:
    """The lines of a text as `patch`, `git` and the diff count them: only "\\n" ends a line.

    `str.splitlines()` also breaks on "\\r", "\\x0c", "\\u2028"...: line numbers would then
    disagree with the diff's hunks for the same file.
    """
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines
