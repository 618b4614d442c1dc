"""Diffs between two revisions of agent definitions: JSON summary, unified patch, side-by-side HTML.

Pure functions over `DiffSide` values, no database: the REST API, the `agent_diff` command
and the admin all build two sides from revision rows and call the same renderer, so the
three can never disagree about what changed (API.md, "Diff"). Which lines changed is decided
by `agents_app.line_matching`, bounded for any pair up to the size limit, which blame and the
history's line counts use too.

Lines are split on "\\n" only and keep their endings, because that is what `patch` and
`git apply` count as a line: `str.splitlines()` would also break on "\\r", "\\x0c",
"\\u2028"... and the hunks would no longer apply to the stored bytes.
"""

import datetime as dt
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from django.utils.safestring import SafeString, mark_safe

from agents_app.dialects import DEFAULT_DIALECT, effective_permissions, permission_changes
from agents_app.dialects.claude_code import Change
from agents_app.line_matching import Opcode, line_opcodes, opcode_changes

CONTEXT_LINES = 3

NO_NEWLINE_MARKER = "\\ No newline at end of file\n"

# Words of a replaced line are matched by the same algorithm as lines (bounded per call); past
# this a replaced line is highlighted whole, so one huge description line costs nothing.
INTRALINE_MAX_CHARS = 5000
# Past this many characters of replaced lines in one diff the rest are highlighted whole: a
# whole-file rewrite (131,000 one-character lines) would otherwise match words 131,000 times.
INTRALINE_TOTAL_CHARS = 100_000
# Below this share of common visible characters a replaced line is marked whole.
INTRALINE_MIN_SIMILARITY = 0.4
WORD = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)

DIFF_CSS = """
.agent-diff-view { font-size: 13px; }
.agent-diff-warnings { margin: 0 0 1em; padding: 0.5em 1em 0.5em 2em; background: #fff4e5;
  border: 1px solid #f0b37e; border-radius: 4px; }
.agent-diff-warnings code { font-weight: bold; }
.agent-diff-permissions { margin: 0 0 1em; }
.agent-diff-permissions h3 { margin: 0 0 0.3em; font-size: 14px; }
.agent-diff-permissions ul { margin: 0; padding: 0; list-style: none; }
.agent-diff-permissions li { margin: 2px 0; padding: 3px 8px; border-left: 4px solid #8c959f;
  background: #f6f8fa; }
.agent-diff-permissions li.widened.high { background: #ffebe9; border-left-color: #cf222e; }
.agent-diff-permissions li.widened.medium, .agent-diff-permissions li.widened.low
  { background: #fff4e5; border-left-color: #f0883e; }
.agent-diff-permissions li.narrowed { background: #e6ffec; border-left-color: #2da44e; }
.agent-diff-permissions .kind { font-weight: bold; text-transform: uppercase; font-size: 11px; }
table.agent-diff-frontmatter tr.tools td.value { background: none; }
table.agent-diff-frontmatter ins.widened { background: #ffd8a8; text-decoration: none; }
table.agent-diff-frontmatter del.narrowed { background: #d3f9d8; }
.agent-diff-identical { color: #555; font-style: italic; }
table.agent-diff-frontmatter, table.agent-diff { border-collapse: collapse; width: 100%; margin-bottom: 1em; }
table.agent-diff-frontmatter th, table.agent-diff-frontmatter td { border: 1px solid #ddd;
  padding: 2px 6px; vertical-align: top; text-align: left; }
table.agent-diff-frontmatter td.value { font-family: monospace; white-space: pre-wrap;
  word-break: break-word; }
table.agent-diff-frontmatter tr.added td.new, table.agent-diff-frontmatter tr.changed td.new
  { background: #e6ffec; }
table.agent-diff-frontmatter tr.removed td.old, table.agent-diff-frontmatter tr.changed td.old
  { background: #ffebe9; }
table.agent-diff { table-layout: fixed; font-family: monospace; }
table.agent-diff col.lineno { width: 4em; }
table.agent-diff th { background: #f6f8fa; text-align: left; padding: 4px 6px; }
table.agent-diff td { padding: 0 6px; vertical-align: top; }
table.agent-diff td.lineno { color: #888; text-align: right; user-select: none; }
table.agent-diff td.text { white-space: pre-wrap; word-break: break-word; }
table.agent-diff tr.delete td.old, table.agent-diff tr.replace td.old { background: #ffebe9; }
table.agent-diff tr.insert td.new, table.agent-diff tr.replace td.new { background: #e6ffec; }
table.agent-diff tr.skip td { background: #f1f8ff; color: #555; text-align: center; }
table.agent-diff del { background: #ffc0c0; text-decoration: none; }
table.agent-diff ins { background: #abf2bc; text-decoration: none; }
table.agent-diff .eol { color: #aaa; }
""".strip()


class RevisionLike(Protocol):
    """What `DiffSide.from_revision` reads: `agents_app.models.AgentRevision` or a look-alike."""

    name: str
    revision: int
    content: str
    sha256: str
    actor: str
    recorded_at: dt.datetime
    frontmatter: dict[str, Any]
    tools: list[str] | None

    @property
    def body(self) -> str: ...  # a property of AgentRevision (an offset into the content)


@dataclass(frozen=True, kw_only=True)
class DiffSide:
    """One side of a diff: a revision's exact text, its parsed view, and who stored it when."""

    agent: str
    revision: int
    content: str
    sha256: str
    actor: str
    recorded_at: dt.datetime
    frontmatter: dict[str, Any]
    body: str
    tools: list[str] | None  # None: no `tools` key, so every tool is granted
    dialect: str = DEFAULT_DIALECT

    @classmethod
    def from_revision(cls, row: RevisionLike) -> "DiffSide":
        return cls(
            agent=row.name,
            revision=row.revision,
            content=row.content,
            sha256=row.sha256,
            actor=row.actor,
            recorded_at=row.recorded_at,
            frontmatter=dict(row.frontmatter),
            body=row.body,
            tools=None if row.tools is None else list(row.tools),
            dialect=getattr(row, "dialect", DEFAULT_DIALECT) or DEFAULT_DIALECT,
        )

    @property
    def label(self) -> str:
        return f"{self.agent}@{self.revision}"


# ---------------------------------------------------------------------------------------
# Lines and hunks
# ---------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Lines as patch sees them: split on "\\n" only, endings kept, no empty last line."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _range(start: int, stop: int) -> str:
    """A hunk range as GNU diff writes it (`3` for one line, `2,0` for none, after line 2)."""
    length = stop - start
    first = start + 1
    if length == 1:
        return str(first)
    if not length:
        # an empty range names the line *before* the change, as `diff -u` does
        first -= 1
    return f"{first},{length}"


def _patch_line(prefix: str, line: str) -> str:
    if line.endswith("\n"):
        return prefix + line
    # Without the marker, patch and git apply would add a newline the file never had.
    return prefix + line + "\n" + NO_NEWLINE_MARKER


def line_changes(old_lines: list[str], new_lines: list[str]) -> tuple[int, int]:
    """(lines added, lines removed): what the hunks of a diff of the two show as + and -."""
    return opcode_changes(line_opcodes(old_lines, new_lines))


def _grouped(opcodes: list[Opcode], context: int) -> Iterator[list[Opcode]]:
    """The opcodes cut into hunks as `diff -u` prints them: each change with up to `context`
    equal lines around it, and changes whose contexts would meet in one hunk."""
    if not opcodes:
        return
    codes = list(opcodes)
    tag, i1, i2, j1, j2 = codes[0]
    if tag == "equal":  # only the context before the first change
        codes[0] = (tag, max(i1, i2 - context), i2, max(j1, j2 - context), j2)
    tag, i1, i2, j1, j2 = codes[-1]
    if tag == "equal":  # only the context after the last change
        codes[-1] = (tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context))
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * context:
            # Too long to join two changes: it ends one hunk and starts the next.
            group.append((tag, i1, i1 + context, j1, j1 + context))
            yield group
            group = []
            i1, j1 = i2 - context, j2 - context
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        yield group


def _hunks(old_lines: list[str], new_lines: list[str]) -> Iterator[str]:
    """Unified-diff hunks (no file headers), each output line ending in "\\n"."""
    for group in _grouped(line_opcodes(old_lines, new_lines), CONTEXT_LINES):
        first, last = group[0], group[-1]
        yield f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n"
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for line in old_lines[i1:i2]:
                    yield _patch_line(" ", line)
                continue
            for line in old_lines[i1:i2]:
                yield _patch_line("-", line)
            for line in new_lines[j1:j2]:
                yield _patch_line("+", line)


def unified_diff(*, old: DiffSide, new: DiffSide) -> str:
    """The raw files as a unified diff that `patch -p1` and `git apply` turn old into new exactly."""
    if old.content == new.content:
        return ""
    hunks = "".join(_hunks(_lines(old.content), _lines(new.content)))
    return f"--- a/{old.agent}.md\n+++ b/{new.agent}.md\n{hunks}"


# ---------------------------------------------------------------------------------------
# The JSON summary
# ---------------------------------------------------------------------------------------


def _side_summary(side: DiffSide) -> dict[str, Any]:
    return {
        "agent": side.agent,
        "revision": side.revision,
        "sha256": side.sha256,
        "actor": side.actor,
        "recorded_at": side.recorded_at.isoformat(),
    }


def _same_tool_grant(old: DiffSide, new: DiffSide) -> bool:
    if old.tools is None or new.tools is None:
        return old.tools is None and new.tools is None
    return set(old.tools) == set(new.tools)


def _frontmatter_changes(old: DiffSide, new: DiffSide) -> dict[str, dict[str, Any]]:
    before, after = old.frontmatter, new.frontmatter
    # `tools: Read, Bash` and `tools: [Bash, Read]` grant the same: a respelling is not a change.
    ignored = {"tools"} if _same_tool_grant(old, new) else set()
    return {
        "added": {key: value for key, value in after.items() if key not in before and key not in ignored},
        "removed": {key: value for key, value in before.items() if key not in after and key not in ignored},
        "changed": {
            key: {"from": value, "to": after[key]}
            for key, value in before.items()
            if key in after and after[key] != value and key not in ignored
        },
    }


def _tool_changes(old: DiffSide, new: DiffSide) -> dict[str, Any]:
    # A side without a `tools` key declares nothing (though it is granted everything).
    before, after = set(old.tools or ()), set(new.tools or ())
    return {
        "added": sorted(after - before),
        "removed": sorted(before - after),
        "from_all": old.tools is None,
        "to_all": new.tools is None,
    }


def _shown(value: Any) -> str:
    if value is None:
        return "(not set)"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _permissions(old: DiffSide, new: DiffSide) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The `permissions` section and the `warnings` it implies: one classification for both.

    A warning is only ever the short code of a change classified here, so the two sections
    cannot disagree (e.g. a removed tools line is a high widening AND `tools_removed`).
    """
    changes = permission_changes(old.frontmatter, new.frontmatter, dialect=new.dialect)
    if old.dialect != new.dialect:
        # Two agents of different runtimes (GET /diff/): the changes above read both sides with
        # the right side's rules; `from` and `to` below each follow their own. Say so first.
        changes.insert(
            0,
            Change(
                "dialect",
                "changed",
                "medium",
                f"the sides are for different runtimes ({old.dialect} -> {new.dialect}); the changes"
                f" below read both with {new.dialect}'s rules",
            ),
        )
    warnings = [{"code": code, "detail": detail} for change in changes for code, detail in change.warnings]
    section = {
        "from": effective_permissions(old.frontmatter, dialect=old.dialect),
        "to": effective_permissions(new.frontmatter, dialect=new.dialect),
        "widened": any(change.kind == "widened" for change in changes),
        "changes": [change.as_json() for change in changes],
    }
    return section, warnings


def _body_changes(old: DiffSide, new: DiffSide) -> dict[str, Any]:
    hunks = list(_hunks(_lines(old.body), _lines(new.body)))
    # Counted from the hunks themselves so the numbers always match the text shown beside them.
    return {
        "additions": sum(1 for line in hunks if line.startswith("+")),
        "deletions": sum(1 for line in hunks if line.startswith("-")),
        "unified": "".join(hunks),
    }


def revision_diff(*, old: DiffSide, new: DiffSide) -> dict[str, Any]:
    """The JSON diff of API.md: sides, frontmatter, tools, body hunks and widening warnings."""
    permissions, warnings = _permissions(old, new)
    return {
        "from": _side_summary(old),
        "to": _side_summary(new),
        "identical": old.content == new.content,
        "frontmatter": _frontmatter_changes(old, new),
        "tools": _tool_changes(old, new),
        "body": _body_changes(old, new),
        "warnings": warnings,
        "permissions": permissions,
    }


# ---------------------------------------------------------------------------------------
# Side-by-side HTML
# ---------------------------------------------------------------------------------------


def _text_html(text: str) -> str:
    # A CR is invisible in a browser, yet LF -> CRLF is a real change of the bytes.
    return html.escape(text).replace("\r", '<span class="eol">\u240d</span>')


def _line_html(line: str, inner: str | None = None) -> str:
    """One file line as HTML (its "\\n" dropped, a missing final newline shown)."""
    text = line[:-1] if line.endswith("\n") else line
    shown = _text_html(text) if inner is None else inner
    if not line.endswith("\n"):
        shown += '<span class="eol">\u2205 no newline at end of file</span>'
    return shown


def _similarity(old_words: list[str], new_words: list[str], opcodes: list[Opcode]) -> float:
    """Share of the visible characters that the two lines have in common, word by word."""
    visible = sum(len(word) for word in (*old_words, *new_words) if not word.isspace())
    common = sum(
        len(word)
        for tag, i1, i2, _, _ in opcodes
        if tag == "equal"
        for word in old_words[i1:i2]
        if not word.isspace()
    )
    return 2 * common / visible if visible else 1.0


def _intraline(old_line: str, new_line: str, *, whole: bool = False) -> tuple[str, str]:
    """Both lines as HTML with the changed words wrapped in <del> and <ins> (`whole`: all of them)."""
    old_text = old_line[:-1] if old_line.endswith("\n") else old_line
    new_text = new_line[:-1] if new_line.endswith("\n") else new_line
    if whole:
        return (
            _line_html(old_line, f"<del>{_text_html(old_text)}</del>" if old_text else ""),
            _line_html(new_line, f"<ins>{_text_html(new_text)}</ins>" if new_text else ""),
        )
    # Words, not characters: "Check the tests." -> "Check tests." marks "the ", not "he t".
    old_words, new_words = WORD.findall(old_text), WORD.findall(new_text)
    whole_line = [("replace", 0, len(old_words), 0, len(new_words))]
    if len(old_text) + len(new_text) > INTRALINE_MAX_CHARS:
        opcodes = whole_line  # huge: marking the whole line is cheap and reads as well
    else:
        opcodes = line_opcodes(old_words, new_words)
        if _similarity(old_words, new_words, opcodes) < INTRALINE_MIN_SIMILARITY:
            opcodes = whole_line  # mostly rewritten: the whole line reads better than a word soup
    old_parts: list[str] = []
    new_parts: list[str] = []
    for tag, i1, i2, j1, j2 in opcodes:
        old_piece, new_piece = "".join(old_words[i1:i2]), "".join(new_words[j1:j2])
        if tag == "equal":
            old_parts.append(_text_html(old_piece))
            new_parts.append(_text_html(new_piece))
            continue
        if old_piece:
            old_parts.append(f"<del>{_text_html(old_piece)}</del>")
        if new_piece:
            new_parts.append(f"<ins>{_text_html(new_piece)}</ins>")
    return _line_html(old_line, "".join(old_parts)), _line_html(new_line, "".join(new_parts))


def _row(kind: str, old_number: int | None, old_html: str, new_number: int | None, new_html: str) -> str:
    def cells(number: int | None, text: str, side: str) -> str:
        if number is None:
            return f'<td class="lineno"></td><td class="text {side} empty"></td>'
        return f'<td class="lineno">{number}</td><td class="text {side}">{text}</td>'

    return f'<tr class="{kind}">{cells(old_number, old_html, "old")}{cells(new_number, new_html, "new")}</tr>'


def _skip_row(count: int) -> str:
    unit = "line" if count == 1 else "lines"
    return f'<tr class="skip"><td colspan="4">\u22ef {count} unchanged {unit}</td></tr>'


def _equal_rows(
    old_lines: list[str], new_lines: list[str], i1: int, i2: int, j1: int, *, first: bool, last: bool
) -> list[str]:
    """An unchanged run, with its middle folded away when it is longer than the context needs."""
    keep_head = 0 if first else CONTEXT_LINES
    keep_tail = 0 if last else CONTEXT_LINES
    length = i2 - i1
    shown = list(range(length))
    hidden = length - keep_head - keep_tail
    # Folding one or two lines would save nothing and hide text.
    if hidden >= 2:
        shown = [*range(keep_head), *range(length - keep_tail, length)]
    rows: list[str] = []
    previous = -1
    for offset in shown:
        if offset != previous + 1:
            rows.append(_skip_row(offset - previous - 1))
        rows.append(
            _row(
                "equal",
                i1 + offset + 1,
                _line_html(old_lines[i1 + offset]),
                j1 + offset + 1,
                _line_html(new_lines[j1 + offset]),
            )
        )
        previous = offset
    if previous != length - 1:
        rows.append(_skip_row(length - 1 - previous))
    return rows


def _file_rows(old_lines: list[str], new_lines: list[str]) -> list[str]:
    opcodes = line_opcodes(old_lines, new_lines)
    intraline_left = INTRALINE_TOTAL_CHARS
    rows: list[str] = []
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            rows += _equal_rows(
                old_lines, new_lines, i1, i2, j1, first=index == 0, last=index == len(opcodes) - 1
            )
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for offset in range(paired):
            old_line, new_line = old_lines[i1 + offset], new_lines[j1 + offset]
            intraline_left -= len(old_line) + len(new_line)
            old_html, new_html = _intraline(old_line, new_line, whole=intraline_left < 0)
            rows.append(_row("replace", i1 + offset + 1, old_html, j1 + offset + 1, new_html))
        for number in range(i1 + paired, i2):
            rows.append(_row("delete", number + 1, _line_html(old_lines[number]), None, ""))
        for number in range(j1 + paired, j2):
            rows.append(_row("insert", None, "", number + 1, _line_html(new_lines[number])))
    return rows


def _value_html(value: Any) -> str:
    return html.escape(
        json.dumps(value, ensure_ascii=False, indent=1) if not isinstance(value, str) else value
    )


def _frontmatter_html(old: DiffSide, new: DiffSide, summary: dict[str, Any]) -> str:
    changes = summary["frontmatter"]
    rows = [
        *(
            f'<tr class="added"><th>{html.escape(key)}</th><td>added</td><td class="value old"></td>'
            f'<td class="value new">{_value_html(value)}</td></tr>'
            for key, value in changes["added"].items()
        ),
        *(
            f'<tr class="removed"><th>{html.escape(key)}</th><td>removed</td>'
            f'<td class="value old">{_value_html(value)}</td><td class="value new"></td></tr>'
            for key, value in changes["removed"].items()
        ),
        *(
            f'<tr class="changed"><th>{html.escape(key)}</th><td>changed</td>'
            f'<td class="value old">{_value_html(change["from"])}</td>'
            f'<td class="value new">{_value_html(change["to"])}</td></tr>'
            for key, change in changes["changed"].items()
        ),
    ]
    tools = summary["tools"]
    if tools["added"] or tools["removed"] or tools["from_all"] != tools["to_all"]:
        # Marks only between two declared lists: going to or from every tool is said in words
        # (a removed tools line once showed its tools struck through in red, like a restriction).
        both = old.tools is not None and new.tools is not None
        widened = any(
            change["field"] == "tools" and change["kind"] == "widened"
            for change in summary["permissions"]["changes"]
        )
        kind = "widened" if widened else "narrowed"
        was = _granted_html(old.tools, tools["removed"] if both else [], "del", "narrowed")
        now = _granted_html(new.tools, tools["added"] if both else [], "ins", "widened")
        rows.append(
            f'<tr class="changed tools {kind}"><th>tools (granted)</th><td>{kind}</td>'
            f'<td class="value old">{was}</td><td class="value new">{now}</td></tr>'
        )
    if not rows:
        return ""
    return (
        '<table class="agent-diff-frontmatter"><thead><tr><th>frontmatter</th><th>change</th>'
        f"<th>{html.escape(old.label)}</th><th>{html.escape(new.label)}</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _granted_html(tools: list[str] | None, marked: list[str], element: str, meaning: str) -> str:
    """The tools one side grants, those that differ from the other side wrapped in `element`.

    `meaning` is the class that colours the mark: a newly granted tool is a widening
    (orange), a tool no longer granted a narrowing (green), never the other way round.
    """
    if tools is None:
        return "every tool (no tools key)"
    return (
        ", ".join(
            f'<{element} class="{meaning}">{html.escape(tool)}</{element}>'
            if tool in marked
            else html.escape(tool)
            for tool in sorted(tools)
        )
        or "no tools"
    )


def permission_changes_html(changes: list[dict[str, Any]]) -> SafeString:
    """The compare page's permission section for a list of classified changes (the admin's
    revision page shows a revision's changes against the one before it with it)."""
    widened = any(change["kind"] == "widened" for change in changes)
    return mark_safe(_permissions_html({"changes": changes, "widened": widened}))  # noqa: S308 - escaped


def _permissions_html(section: dict[str, Any]) -> str:
    """The permission changes in words, coloured by meaning: widening red/orange, narrowing green."""
    if not section["changes"]:
        return ""
    headline = (
        "This change widens what the agent may do."
        if section["widened"]
        else "This change does not widen what the agent may do."
    )
    items = "".join(
        f'<li class="{html.escape(change["kind"])} {html.escape(change["severity"])}">'
        f'<span class="kind">{html.escape(change["kind"])} ({html.escape(change["severity"])})</span> '
        f"<code>{html.escape(change['field'])}</code>: {html.escape(change['detail'])}</li>"
        for change in section["changes"]
    )
    state = "widened" if section["widened"] else "not-widened"
    return (
        f'<div class="agent-diff-permissions {state}"><h3>Permissions</h3>'
        f"<p>{headline}</p><ul>{items}</ul></div>"
    )


# What each warning means, as a reviewer reads it; `{detail}` is the warning's detail. The code
# itself is shown small beside the sentence (it is what API clients match on).
WARNING_SENTENCES = {
    "tool_added": "{detail} is now granted.",
    "tools_removed": "Every tool is now granted: the tools line was removed.",
    "disallowed_tool_removed": "{detail} is no longer denied.",
    "permission_mode_loosened": "The permission mode is looser: {detail}.",
    "permission_mode_changed": "The permission mode changed: {detail}.",
    "hooks_changed": "Hooks changed (they run commands): {detail}.",
    "mcp_servers_changed": "MCP servers changed: {detail}.",
    "model_changed": "The model changed: {detail}.",
}


def warning_sentence(warning: dict[str, str]) -> str:
    """A diff warning as a sentence a reviewer understands."""
    template = WARNING_SENTENCES.get(warning["code"], "{detail}")
    return template.format(detail=warning["detail"])


def _warnings_html(warnings: list[dict[str, str]]) -> str:
    if not warnings:
        return ""
    items = "".join(
        f'<li class="agent-diff-warning {code}">{html.escape(warning_sentence(item))}'
        f" <small><code>{code}</code></small></li>"
        for item in warnings
        for code in [html.escape(item["code"])]
    )
    return f'<ul class="agent-diff-warnings">{items}</ul>'


def html_diff(*, old: DiffSide, new: DiffSide) -> SafeString:
    """A side-by-side HTML fragment (warnings, frontmatter table, line table); see DIFF_CSS."""
    summary = revision_diff(old=old, new=new)
    identical = (
        '<p class="agent-diff-identical">The two revisions are identical.</p>' if summary["identical"] else ""
    )
    table = (
        '<table class="agent-diff">'
        '<colgroup><col class="lineno"><col class="text"><col class="lineno"><col class="text"></colgroup>'
        f'<thead><tr><th colspan="2">{html.escape(old.label)}</th>'
        f'<th colspan="2">{html.escape(new.label)}</th></tr></thead>'
        f"<tbody>{''.join(_file_rows(_lines(old.content), _lines(new.content)))}</tbody></table>"
    )
    fragment = (
        f'<div class="agent-diff-view">{_permissions_html(summary["permissions"])}'
        f"{_warnings_html(summary['warnings'])}{identical}"
        f"{_frontmatter_html(old, new, summary)}{table}</div>"
    )
    # Safe by construction: every piece of text taken from the documents went through
    # html.escape above; the admin can put the fragment into a template as it is.
    return mark_safe(fragment)  # noqa: S308
