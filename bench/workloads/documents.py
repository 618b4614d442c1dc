"""The documents every system stores: ~4 KB agent definitions, each revision changing 1-3 body lines.

Deterministic (seeded by agent name), so every system gets exactly the same texts.
"""

import random
import zlib
from collections.abc import Iterator

TARGET_BYTES = 4 * 1024

VOCABULARY = (
    "agent review change diff test file function module error check security input output "
    "context repository branch commit patch line code style type import export config value "
    "request response handler query index cache lock event stream revision token user read "
    "write report summary finding severity risk owner reason example guidance step task"
)
WORDS = VOCABULARY.split()


def _sentence(rng: random.Random, length: int) -> str:
    words: list[str] = []
    while len(" ".join(words)) < length:
        words.append(rng.choice(WORDS))
    return " ".join(words).capitalize() + "."


def _frontmatter(name: str) -> str:
    return (
        f"---\nname: {name}\n"
        "description: Reviews pull requests for correctness, security and style. Use it after every"
        " change to code that handles input, tokens or files.\n"
        "tools: Read, Grep, Glob, Bash\nmodel: sonnet\ncolor: blue\n---\n"
    )


def _first_body(rng: random.Random, name: str, frontmatter: str) -> list[str]:
    """Markdown: sections of a heading, a paragraph and bullets, until the file is ~4 KB."""
    lines = [f"# {name}", "", "You are a careful reviewer. Follow the steps below.", ""]
    section = 0
    while len(frontmatter) + sum(len(line) + 1 for line in lines) < TARGET_BYTES - 300:
        section += 1
        lines += [f"## Section {section}", "", _sentence(rng, 70), ""]
        lines += [f"- {_sentence(rng, rng.randint(40, 90))}" for _ in range(5)]
        lines.append("")
    return lines


def _revise(rng: random.Random, lines: list[str]) -> None:
    """Rewrite 1-3 bullet or paragraph lines in place, keeping each about as long as it was."""
    candidates = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
    for index in rng.sample(candidates, rng.randint(1, 3)):
        old = lines[index]
        prefix = "- " if old.startswith("- ") else ""
        new = old
        while new == old:
            new = prefix + _sentence(rng, max(20, len(old) - len(prefix) - 4))
        lines[index] = new


def agent_name(number: int, prefix: str = "bench") -> str:
    return f"{prefix}-{number:05d}"


def revisions(name: str, count: int, *, start: int = 1) -> Iterator[str]:
    """The content of revisions start..start+count-1 of agent `name` (revision 1 is the first text)."""
    rng = random.Random(zlib.crc32(name.encode()))
    frontmatter = _frontmatter(name)
    body = _first_body(rng, name, frontmatter)
    for revision in range(1, start + count):
        if revision > 1:
            _revise(rng, body)
        if revision >= start:
            yield frontmatter + "\n".join(body) + "\n"


def edit(content: str, rng: random.Random) -> str:
    """What a person's edit does to the current text: 1-3 body lines rewritten, frontmatter kept."""
    lines = content.split("\n")
    closing = lines.index("---", 1)
    body = lines[closing + 1 :]
    _revise(rng, body)
    return "\n".join(lines[: closing + 1] + body)
