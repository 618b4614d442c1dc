"""Blame of body lines and frontmatter keys (API.md, `GET /agents/{name}/blame/`)."""

import datetime as dt
from types import SimpleNamespace

import pytest

from agents_app.blame import BlameRevision, blame

START = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def history(*steps: tuple[dict, str]) -> list[BlameRevision]:
    """Revisions 1..n by actor-1..actor-n, an hour apart, from (frontmatter, body) pairs."""
    return [
        BlameRevision(
            revision=number,
            actor=f"actor-{number}",
            recorded_at=START + dt.timedelta(hours=number),
            reason=f"reason {number}",
            frontmatter=frontmatter,
            body=body,
        )
        for number, (frontmatter, body) in enumerate(steps, start=1)
    ]


def who(number: int) -> dict:
    return {
        "revision": number,
        "actor": f"actor-{number}",
        # without a business time of its own a revision occurred when it was recorded
        "occurred_at": (START + dt.timedelta(hours=number)).isoformat(),
        "recorded_at": (START + dt.timedelta(hours=number)).isoformat(),
        "reason": f"reason {number}",
    }


def line_revisions(result: dict) -> list[tuple[str, int]]:
    return [(line["text"], line["revision"]) for line in result["lines"]]


def key_revisions(result: dict) -> list[tuple[str, int]]:
    return [(key["key"], key["revision"]) for key in result["frontmatter"]]


BASE = {"name": "reviewer", "description": "Reviews code"}


def test_lines_and_keys_are_blamed_on_the_revision_that_last_changed_them():
    revisions = history(
        (BASE, "You review code.\nBe kind.\n"),
        (BASE, "You review code.\nCheck the tests.\nBe kind.\n"),
        ({**BASE, "model": "sonnet"}, "You review code.\nCheck the tests first.\nBe kind.\n"),
        ({**BASE, "model": "opus"}, "You review code.\nCheck the tests first.\nBe kind.\n"),
    )

    result = blame(revisions)

    assert result == {
        "revision": 4,
        "lines": [
            {"line": 1, "text": "You review code.", **who(1)},
            {"line": 2, "text": "Check the tests first.", **who(3)},
            {"line": 3, "text": "Be kind.", **who(1)},
        ],
        "frontmatter": [
            {"key": "name", **who(1)},
            {"key": "description", **who(1)},
            {"key": "model", **who(4)},
        ],
    }


def test_a_line_deleted_and_written_again_is_blamed_on_the_revision_that_wrote_it_back():
    revisions = history(
        (BASE, "one\ntwo\nthree\n"),
        (BASE, "one\nthree\n"),
        (BASE, "one\ntwo\nthree\n"),
    )

    assert line_revisions(blame(revisions)) == [("one", 1), ("two", 3), ("three", 1)]


def test_a_revert_is_blamed_for_the_lines_it_changes_back_and_nothing_else():
    revisions = history(
        (BASE, "a\nb\nc\n"),
        (BASE, "a\nB\nc\n"),
        (BASE, "a\nb\nc\n"),
    )

    assert line_revisions(blame(revisions)) == [("a", 1), ("b", 3), ("c", 1)]


def test_an_empty_body_has_no_lines_but_its_keys_are_still_blamed():
    revisions = history((BASE, "Something.\n"), ({**BASE, "color": "red"}, ""))

    result = blame(revisions)

    assert result["lines"] == []
    assert key_revisions(result) == [("name", 1), ("description", 1), ("color", 2)]


def test_lines_moved_below_an_insertion_keep_their_origin():
    revisions = history(
        (BASE, "\n".join(f"line {n}" for n in range(1, 6))),
        (BASE, "new top\n" + "\n".join(f"line {n}" for n in range(1, 6)) + "\nnew bottom"),
    )

    assert line_revisions(blame(revisions)) == [
        ("new top", 2),
        *[(f"line {n}", 1) for n in range(1, 6)],
        ("new bottom", 2),
    ]


def test_crlf_bodies_are_blamed_per_line_without_the_line_endings():
    revisions = history((BASE, "a\r\nb\r\n"), (BASE, "a\r\nc\r\n"))

    assert line_revisions(blame(revisions)) == [("a", 1), ("c", 2)]


def test_a_key_removed_and_added_back_with_the_same_value_is_blamed_on_the_revision_that_added_it_back():
    revisions = history(
        ({**BASE, "model": "sonnet"}, ""),
        (BASE, ""),
        ({**BASE, "model": "sonnet"}, ""),
        ({**BASE, "model": "sonnet", "color": "red"}, ""),
    )

    assert key_revisions(blame(revisions)) == [
        ("name", 1),
        ("description", 1),
        ("model", 3),
        ("color", 4),
    ]


def test_keys_follow_the_order_of_the_blamed_revision_and_type_changes_count_as_changes():
    revisions = history(
        ({"maxTurns": 1, **BASE, "hooks": {"a": 1, "b": 2}}, ""),
        ({**BASE, "hooks": {"b": 2, "a": 1}, "maxTurns": True}, ""),
    )

    assert key_revisions(blame(revisions)) == [
        ("name", 1),
        ("description", 1),
        ("hooks", 1),
        ("maxTurns", 2),
    ]


def test_a_revision_row_is_turned_into_a_blame_revision():
    row = SimpleNamespace(
        revision=7,
        actor="alice",
        recorded_at=START,
        reason="",
        frontmatter={"name": "reviewer"},
        body="x\n",
        content="---\nname: reviewer\n---\nx\n",
    )

    assert BlameRevision.from_revision(row) == BlameRevision(
        7, "alice", START, "", {"name": "reviewer"}, "x\n", "---\nname: reviewer\n---\nx\n"
    )


def test_frontmatter_keys_come_in_the_files_order_whatever_order_the_dict_has():
    content = "---\nname: r\nmodel: opus\ndescription: d\n---\n"
    revision = BlameRevision(
        1, "a", START, "", {"description": "d", "model": "opus", "name": "r"}, "", content
    )

    assert [entry["key"] for entry in blame([revision])["frontmatter"]] == ["name", "model", "description"]


def test_a_long_history_is_blamed_line_by_line():
    body = [f"line {n}" for n in range(100)]
    steps = []
    for number in range(1, 1001):
        body[number % 100] = f"line {number % 100} edited in {number}"
        steps.append(({**BASE, "maxTurns": number // 10}, "\n".join(body)))

    result = blame(history(*steps))

    assert result["revision"] == 1000
    assert [line["revision"] for line in result["lines"]] == [900 + n if n else 1000 for n in range(100)]
    assert key_revisions(result)[-1] == ("maxTurns", 1000)


def test_blame_needs_a_revision():
    with pytest.raises(ValueError, match="at least one revision"):
        blame([])
