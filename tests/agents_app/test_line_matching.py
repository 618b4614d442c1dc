"""The one line-matching algorithm (agents_app.line_matching): always a correct edit script, bounded."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Indel

from agents_app import line_matching
from agents_app.line_matching import line_opcodes

# 256 KiB (the document size limit) of pathological pairs.
ALTERNATING = (["a\n", "b\n"] * 65536, ["b\n", "a\n"] * 65536)
# Unique lines above the alternating ones (a cross-agent diff: the name differs): anchors
# are sought first and must leave Myers' search its steps.
RENAMED = (
    ["---\n", "name: alpha\n", "description: d\n", "---\n", *ALTERNATING[0][:-4]],
    ["---\n", "name: beta\n", "description: d\n", "---\n", *ALTERNATING[1][:-4]],
)
THREE_WAY = (["a\n", "b\n", "c\n"] * 43690, ["c\n", "b\n", "a\n"] * 43690)
UNIQUE = [f"{number:05d}\n" for number in range(43690)]
SHUFFLED = (UNIQUE, random.Random(13).sample(UNIQUE, len(UNIQUE)))


def applied(old: list[str], new: list[str], opcodes) -> tuple[list[str], int]:
    """The new lines the opcodes build from the old ones (checking they tile both), and how many were kept."""
    rebuilt: list[str] = []
    kept = i = j = 0
    for tag, i1, i2, j1, j2 in opcodes:
        assert (i1, j1) == (i, j), "opcodes must cover both sides in order"
        if tag == "equal":
            assert old[i1:i2] == new[j1:j2]
            kept += i2 - i1
            rebuilt += old[i1:i2]
        else:
            assert (
                tag
                == {(True, True): "replace", (True, False): "delete", (False, True): "insert"}[
                    (i2 > i1, j2 > j1)
                ]
            )
            rebuilt += new[j1:j2]
        i, j = i2, j2
    assert (i, j) == (len(old), len(new))
    return rebuilt, kept


@pytest.mark.parametrize(
    ("pair", "fewest_kept"),
    [(ALTERNATING, 131071), (RENAMED, 131070), (THREE_WAY, 0), (SHUFFLED, 300)],
    ids=["alternating", "alternating-renamed", "three-way", "shuffled-unique"],
)
def test_a_256_kib_pathological_pair_gets_a_correct_edit_script(pair, fewest_kept):
    old, new = pair
    assert len("".join(old)) >= 256 * 1024 - 6

    rebuilt, kept = applied(old, new, line_opcodes(old, new))

    assert rebuilt == new
    assert kept >= fewest_kept  # alternating lines: one line moved, found exactly by Myers' search


SMALL = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=40)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(old=SMALL, new=SMALL)
def test_without_the_exact_matcher_anchors_and_myers_still_give_a_correct_script(old, new, monkeypatch_cells):
    rebuilt, _ = applied(old, new, line_opcodes(old, new))

    assert rebuilt == new


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    old=st.lists(st.sampled_from(["a", "b"]), max_size=40),
    new=st.lists(st.sampled_from(["a", "b"]), max_size=40),
)
def test_myers_search_keeps_a_longest_common_subsequence(old, new):
    matcher = line_matching._Matcher(old, new)

    matcher._myers(0, len(old), 0, len(new))

    blocks = matcher.blocks
    assert all(old[a : a + size] == new[b : b + size] for a, b, size in blocks)
    assert all(a1 + s1 <= a2 and b1 + s1 <= b2 for (a1, b1, s1), (a2, b2, _) in itertools.pairwise(blocks))
    assert sum(size for _, _, size in blocks) == (len(old) + len(new) - Indel.distance(old, new)) // 2


@settings(max_examples=100, deadline=None, derandomize=True)
@given(old=SMALL, new=SMALL)
def test_with_no_budget_left_a_region_is_replaced_whole_and_still_correct(old, new, starved):
    rebuilt, _ = applied(old, new, line_opcodes(old, new))

    assert rebuilt == new


@pytest.fixture(scope="module")
def monkeypatch_cells():
    """No region is small enough for RapidFuzz: every match goes through anchors and Myers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(line_matching, "EXACT_CELLS", 0)
        yield


@pytest.fixture(scope="module")
def starved():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(line_matching, "EXACT_CELLS", 0)
        patch.setattr(line_matching, "ANCHOR_STEPS", 5)
        patch.setattr(line_matching, "SEARCH_STEPS", 5)
        yield
