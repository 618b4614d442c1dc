"""Agent definition files on disk: finding them under folders, reading and writing their exact bytes.

Files are read and written as bytes and handed to the services unchanged: the raw bytes are
the source of truth, so CRLF, a missing final newline and non-ASCII text come back exactly.
"""

import fnmatch
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings

from agents_app.dialects import DEFAULT_DIALECT, file_name_of
from agents_app.document import NAME_PATTERN
from agents_app.importing.outcomes import SKIPPED, FileOutcome, ImportRefused

# Where the runtimes keep their agents in a repository: `.claude/agents/<name>.md` (Claude Code),
# `.github/agents/<name>.agent.md` (GitHub Copilot). Other folders starting with '.' are skipped.
RUNTIME_FOLDERS = frozenset({".claude", ".github"})


def agent_file_excluded(relative: str, exclude: Sequence[str]) -> bool:
    """Whether a file, by its path under the PATH it was found in ('/'-separated), is excluded.

    Each pattern is an fnmatch glob matched against that path and against the bare file name:
    `README.md` excludes every README, `drafts/*` everything under drafts (`*` crosses '/').
    """
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(relative, glob) or fnmatch.fnmatchcase(name, glob) for glob in exclude)


def agent_file_has_frontmatter(content: bytes) -> bool:
    """Whether the content starts like an agent definition: a first line '---' (after a BOM).

    A Markdown file that does not (a README, notes) is not an agent file: imports skip it
    instead of failing. One that does is parsed, and refused with its reasons if invalid.
    """
    first = content.split(b"\n", 1)[0].removeprefix(b"\xef\xbb\xbf")
    return first.rstrip() == b"---"


def agent_files_find(
    *, paths: Sequence[Path], exclude: Sequence[str] = ()
) -> tuple[list[Path], list[FileOutcome]]:
    """The `*.md` files under each folder (a named file as it is), and what was skipped and why.

    Folders starting with '.' are skipped, but for `.claude/agents` and `.github/agents`.

    Files matching an `exclude` pattern (see agent_file_excluded) are left out silently.
    """
    found: list[Path] = []
    skipped: list[FileOutcome] = []
    for given in paths:
        if not given.exists():
            raise ImportRefused(f"{given}: no such file or folder")
        if not given.is_dir():
            if not agent_file_excluded(given.name, exclude):
                found.append(given)
            continue
        root = given.resolve()
        # os.walk does not descend into symlinked folders (followlinks=False): a link could
        # lead anywhere on the machine, or loop.
        for folder, folders, names in os.walk(given):
            here = Path(folder)
            # In a runtime's own folder (.claude, .github) only its agents/ folder holds agents:
            # .github's issue templates are Markdown with frontmatter too, and are not agents.
            runtime_home = here.name in RUNTIME_FOLDERS
            kept = []
            for sub in sorted(folders):
                if runtime_home and sub != "agents":
                    continue
                if sub.startswith(".") and sub not in RUNTIME_FOLDERS:
                    continue  # .git, .venv, editors' folders: never agent definitions to import
                if (here / sub).is_symlink():
                    skipped.append(FileOutcome(SKIPPED, str(here / sub), detail="symbolic link to a folder"))
                    continue
                kept.append(sub)
            folders[:] = kept
            for name in sorted(names):
                if runtime_home or name.startswith(".") or not name.lower().endswith(".md"):
                    continue
                path = here / name
                if exclude and agent_file_excluded(path.relative_to(given).as_posix(), exclude):
                    continue
                if path.is_symlink() and not path.resolve().is_relative_to(root):
                    skipped.append(
                        FileOutcome(SKIPPED, str(path), detail=f"symbolic link to outside {given}; not read")
                    )
                    continue
                found.append(path)
    # A file named twice (two overlapping PATHs, a link to a file of the same folder) is read once.
    files: dict[Path, Path] = {}
    for path in found:
        first = files.setdefault(path.resolve(), path)
        if first is not path:
            skipped.append(FileOutcome(SKIPPED, str(path), detail=f"the same file as {first}"))
    return list(files.values()), skipped


def agent_file_read(path: Path) -> bytes:
    """The file's bytes, or at most one byte over the size limit (the parser refuses that)."""
    # O_NONBLOCK: opening a FIFO named *.md must not hang the import; it is refused below.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return handle.read(settings.AGENT_MAX_BYTES + 1)


def agent_file_path(*, directory: Path, name: str, dialect: str = DEFAULT_DIALECT) -> Path:
    """`directory/<name>.md` (copilot: `<name>.agent.md`), refusing any name that could place it elsewhere."""
    # Stored names always match NAME_PATTERN (no '/', no '..'); checking again here means a
    # row that somehow holds another name still cannot write outside the directory.
    if not NAME_PATTERN.fullmatch(name):
        raise ImportRefused(f"{name!r} is not a safe file name")
    target = directory / file_name_of(name, dialect)
    if target.resolve().parent != directory.resolve():
        raise ImportRefused(f"{target} resolves to outside {directory} (a symbolic link?)")
    return target


def agent_file_write(target: Path, content: str) -> None:
    # Binary mode: no newline translation. O_NOFOLLOW: a symlink put there after the check
    # in agent_file_path is refused rather than followed.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(target, flags, 0o666), "wb") as handle:
        handle.write(content.encode("utf-8"))
