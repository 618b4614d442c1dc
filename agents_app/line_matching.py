"""The one line-matching algorithm: which lines two texts share, for every diff format and blame.

The JSON, unified and HTML diffs (REST, `agent_diff`, admin), the revision history's line
counts and blame all call `line_opcodes`, so they can never disagree about which lines
changed (STYLE.md, rule 11). Any viewer can ask for a diff of two 256 KiB documents, so the
work is bounded for every input up to that size, not only for typical ones:

1. Regions small enough go to RapidFuzz's LCS (bit-parallel C++: the fewest lines added and
   removed, as `git diff` aims for). Its opcodes keep a bit matrix of len(old) * len(new) / 64
   words for the backtracking: 32,000 lines a side took 0.6 s and 140 MB, and 256 KiB of
   one-character lines (131,000 a side) would take gigabytes. So each call is capped at
   `EXACT_CELLS` and all calls together at `TOTAL_CELLS`.
2. A larger region first loses its common head and tail; then lines that occur exactly once
   on each side are matched in order (patience diff: their longest increasing run) and the
   gaps between them are matched again, recursively.
3. A large region without such anchors (alternating "a"/"b" lines) gets Myers' O((N+M)D)
   search, which is fast when few lines differ, given at most `SEARCH_STEPS` steps.
4. What is left when the budget is spent is replaced whole: still a correct edit script
   (applied to the old lines it gives the new ones, so the unified diff still applies), just
   not a minimal one.
"""

from bisect import bisect_left
from dataclasses import dataclass, field

from rapidfuzz.distance import Indel

Opcode = tuple[str, int, int, int, int]
Block = tuple[int, int, int]  # (old start, new start, length) of a run of equal lines

# One RapidFuzz call: about 60 ms and 14 MB at 10,000 x 10,000 lines.
EXACT_CELLS = 100_000_000
# Every RapidFuzz call of one diff together: about 0.3 s.
TOTAL_CELLS = 500_000_000
# Python-level steps (a line counted, compared or placed) for the patience anchors, and
# for Myers' search, each about 0.3 s at worst: kept apart, so that anchors sought in vain
# in a big region leave the search its steps (alternating lines moved by one take 260,000).
ANCHOR_STEPS = 1_000_000
SEARCH_STEPS = 1_000_000


@dataclass
class _Matcher:
    old: list[int]
    new: list[int]
    cells: int = TOTAL_CELLS
    anchor_steps: int = ANCHOR_STEPS
    search_steps: int = SEARCH_STEPS
    blocks: list[Block] = field(default_factory=list)

    def match(self, alo: int, ahi: int, blo: int, bhi: int) -> None:
        """Append the equal runs between old[alo:ahi] and new[blo:bhi] to `blocks`, in order."""
        old, new = self.old, self.new
        if alo == ahi or blo == bhi:
            return
        size = (ahi - alo) * (bhi - blo)
        if size <= EXACT_CELLS and size <= self.cells:
            self._exact(alo, ahi, blo, bhi)
            return
        # Common head and tail: a typical revision edits a few lines in the middle.
        head = 0
        limit = min(ahi - alo, bhi - blo)
        while head < limit and old[alo + head] == new[blo + head]:
            head += 1
        tail = 0
        while tail < limit - head and old[ahi - 1 - tail] == new[bhi - 1 - tail]:
            tail += 1
        self.anchor_steps -= head + tail
        if head:
            self.blocks.append((alo, blo, head))
        alo, blo, ahi, bhi = alo + head, blo + head, ahi - tail, bhi - tail
        if alo < ahi and blo < bhi:
            size = (ahi - alo) * (bhi - blo)
            if size <= EXACT_CELLS and size <= self.cells:
                self._exact(alo, ahi, blo, bhi)
            elif not self._patience(alo, ahi, blo, bhi):
                self._myers(alo, ahi, blo, bhi)  # or nothing matched: replaced whole
        if tail:
            self.blocks.append((ahi, bhi, tail))

    def _exact(self, alo: int, ahi: int, blo: int, bhi: int) -> None:
        self.cells -= (ahi - alo) * (bhi - blo)
        for block in Indel.opcodes(self.old[alo:ahi], self.new[blo:bhi]).as_matching_blocks():
            if block.size:
                self.blocks.append((alo + block.a, blo + block.b, block.size))

    def _patience(self, alo: int, ahi: int, blo: int, bhi: int) -> bool:
        """Match the lines unique on both sides in order, then the gaps; False if there were none."""
        self.anchor_steps -= 2 * ((ahi - alo) + (bhi - blo))
        if self.anchor_steps < 0:
            return False
        in_old: dict[int, int] = {}  # line -> its index, or -1 when it occurs more than once
        for i in range(alo, ahi):
            in_old[self.old[i]] = -1 if self.old[i] in in_old else i
        in_new: dict[int, int] = {}
        for j in range(blo, bhi):
            line = self.new[j]
            if in_old.get(line, -1) >= 0:
                in_new[line] = -1 if line in in_new else j
        pairs = sorted((in_old[line], j) for line, j in in_new.items() if j >= 0)
        if not pairs:
            return False
        self.anchor_steps -= len(pairs) * max(1, len(pairs).bit_length())
        # The longest run of pairs increasing on both sides (patience sorting): tops[k] is the
        # pair that ends the best run of length k + 1 seen so far, with the smallest new index.
        tops: list[int] = []
        top_js: list[int] = []
        before: list[int] = [-1] * len(pairs)
        for index, (_, j) in enumerate(pairs):
            k = bisect_left(top_js, j)
            before[index] = tops[k - 1] if k else -1
            if k == len(tops):
                tops.append(index)
                top_js.append(j)
            else:
                tops[k] = index
                top_js[k] = j
        anchors: list[tuple[int, int]] = []
        index = tops[-1]
        while index >= 0:
            anchors.append(pairs[index])
            index = before[index]
        anchors.reverse()
        i, j = alo, blo
        for anchor_i, anchor_j in anchors:
            self.match(i, anchor_i, j, anchor_j)
            self.blocks.append((anchor_i, anchor_j, 1))
            i, j = anchor_i + 1, anchor_j + 1
        self.match(i, ahi, j, bhi)
        return True

    def _myers(self, alo: int, ahi: int, blo: int, bhi: int) -> None:
        """The fewest lines added and removed, if Myers' search finds them within the steps left."""
        old, new = self.old, self.new
        n, m = ahi - alo, bhi - blo
        offset = n + m + 1
        frontier = [0] * (2 * offset + 1)  # frontier[offset + k]: the furthest x on diagonal k = x - y
        trace: list[list[int]] = []  # per depth, the frontier it started from (diagonals -d-1..d+1)
        for depth in range(n + m + 1):
            trace.append(frontier[offset - depth - 1 : offset + depth + 2])
            for k in range(-depth, depth + 1, 2):
                if k == -depth or (k != depth and frontier[offset + k - 1] < frontier[offset + k + 1]):
                    x = frontier[offset + k + 1]  # a line added
                else:
                    x = frontier[offset + k - 1] + 1  # a line removed
                y = x - k
                start = x
                while x < n and y < m and old[alo + x] == new[blo + y]:
                    x += 1
                    y += 1
                self.search_steps -= x - start + 1
                frontier[offset + k] = x
                if x >= n and y >= m:
                    self.blocks.extend(_myers_snakes(trace, n, m, alo, blo))
                    return
            if self.search_steps < 0:
                return  # too costly: the region stays replaced whole


def _myers_snakes(trace: list[list[int]], n: int, m: int, alo: int, blo: int) -> list[Block]:
    """The runs of equal lines on the path Myers' search found to (n, m), in order."""
    snakes: list[Block] = []
    x, y = n, m
    for depth in range(len(trace) - 1, 0, -1):
        frontier = trace[depth]
        k = x - y
        if k == -depth or (k != depth and frontier[k - 1 + depth + 1] < frontier[k + 1 + depth + 1]):
            before_k = k + 1
            before_x = frontier[before_k + depth + 1]
            mid_x = before_x  # a line added: x stays
        else:
            before_k = k - 1
            before_x = frontier[before_k + depth + 1]
            mid_x = before_x + 1  # a line removed
        if x > mid_x:
            snakes.append((alo + mid_x, blo + mid_x - k, x - mid_x))
        x, y = before_x, before_x - before_k
    if x:
        snakes.append((alo, blo, x))  # the first snake, from (0, 0)
    snakes.reverse()
    return snakes


def matching_blocks(old: list[str], new: list[str]) -> list[Block]:
    """The runs of equal lines, in order and merged: (old start, new start, length)."""
    ids: dict[str, int] = {}
    # Lines as small integers: RapidFuzz and the dictionaries above then hash numbers, not text.
    matcher = _Matcher(
        [ids.setdefault(line, len(ids)) for line in old],
        [ids.setdefault(line, len(ids)) for line in new],
        cells=TOTAL_CELLS,
        anchor_steps=ANCHOR_STEPS,
        search_steps=SEARCH_STEPS,
    )
    matcher.match(0, len(old), 0, len(new))
    merged: list[Block] = []
    for a, b, size in matcher.blocks:
        if merged and merged[-1][0] + merged[-1][2] == a and merged[-1][1] + merged[-1][2] == b:
            merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + size)
        else:
            merged.append((a, b, size))
    return merged


def line_opcodes(old: list[str], new: list[str]) -> list[Opcode]:
    """difflib-style opcodes (tag, i1, i2, j1, j2) turning `old` into `new`.

    The removals and additions between two runs of equal lines are one `replace`, as in
    difflib, so a hunk shows the old lines, then the new ones.
    """
    opcodes: list[Opcode] = []
    i = j = 0
    for a, b, size in [*matching_blocks(old, new), (len(old), len(new), 0)]:
        if i < a and j < b:
            opcodes.append(("replace", i, a, j, b))
        elif i < a:
            opcodes.append(("delete", i, a, j, b))
        elif j < b:
            opcodes.append(("insert", i, a, j, b))
        if size:
            opcodes.append(("equal", a, a + size, b, b + size))
        i, j = a + size, b + size
    return opcodes


def opcode_changes(opcodes: list[Opcode]) -> tuple[int, int]:
    """(lines added, lines removed) by the opcodes: what a diff's hunks show as + and -."""
    added = removed = 0
    for tag, i1, i2, j1, j2 in opcodes:
        if tag != "equal":
            removed += i2 - i1
            added += j2 - j1
    return added, removed


def file_changes(
    *, old_head: list[str], new_head: list[str], body_changes: tuple[int, int]
) -> tuple[int, int]:
    """(lines added, lines removed) of the whole file: the frontmatter block's lines (the head,
    up to and including its closing `---`) matched here, plus the body's counts already made.

    Matching the two parts apart costs a few dozen lines more than the body's diff, instead
    of a second diff of the whole file; the closing `---` line, on both sides, is where a
    whole-file match would split them too.
    """
    head_added, head_removed = opcode_changes(line_opcodes(old_head, new_head))
    return head_added + body_changes[0], head_removed + body_changes[1]
