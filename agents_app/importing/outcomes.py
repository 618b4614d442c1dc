"""What an import, export or replay did to each file, counted; the errors that refuse a run."""

from collections.abc import Callable
from dataclasses import dataclass, field

CREATED = "created"
REVISED = "revised"
RESTORED = "restored"
UNCHANGED = "unchanged"
ARCHIVED = "archived"
FAILED = "failed"
SKIPPED = "skipped"
WRITTEN = "written"

# Why a file was skipped when it is simply not an agent definition (a README, notes): such
# skips are counted, not failed, and listed only with -v 2.
NOT_AGENT_FILE = "not an agent file (no frontmatter)"


class ImportRefused(Exception):
    """Arguments an import or export cannot work with: a missing path, an unsafe file name, ..."""


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file (for git replays: to one file at one commit)."""

    action: str
    path: str
    name: str = ""
    revision: int | None = None
    detail: str = ""
    commit: str = ""
    # A routine outcome (a README skipped, a deleted README) is listed only with -v 2.
    routine: bool = False

    def __str__(self) -> str:
        where = f"{self.commit[:12]} {self.path}" if self.commit else self.path
        if self.action in (FAILED, SKIPPED):
            return f"{self.action:<9} {where}: {self.detail}"
        text = f"{self.action:<9} {where} -> {self.name}"
        if self.revision is not None:
            text += f" (revision {self.revision})"
        return text + (f"; {self.detail}" if self.detail else "")


@dataclass
class ImportTotals:
    """Outcomes counted by kind; a restored agent (file added again) counts as revised."""

    created: int = 0
    revised: int = 0
    unchanged: int = 0
    archived: int = 0
    failed: int = 0
    skipped: int = 0
    not_agent_files: int = 0  # of the skipped: files without frontmatter
    # Agents that existed before this run and that it revised (name -> revision now), in order.
    revised_existing: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: FileOutcome) -> None:
        kind = REVISED if outcome.action == RESTORED else outcome.action
        setattr(self, kind, getattr(self, kind) + 1)
        if outcome.action == SKIPPED and outcome.detail == NOT_AGENT_FILE:
            self.not_agent_files += 1

    def __str__(self) -> str:
        text = (
            f"created {self.created}, revised {self.revised}, unchanged {self.unchanged},"
            f" archived {self.archived}, failed {self.failed}"
        )
        if self.skipped:
            text += f", skipped {self.skipped}"
            if self.not_agent_files:
                text += f" ({self.not_agent_files} not agent files)"
        return text


@dataclass
class ExportTotals:
    """Files written, agents skipped (no such revision, a name already written) and failures."""

    written: int = 0
    skipped: int = 0
    failed: int = 0

    def add(self, outcome: FileOutcome) -> None:
        setattr(self, outcome.action, getattr(self, outcome.action) + 1)


FileReport = Callable[[FileOutcome], None]
Progress = Callable[[int, int], None]  # (done, total)


def report_nothing(outcome: FileOutcome) -> None:
    """The default report: outcomes are only counted."""
    return None


def failure(path: str, detail: str, name: str = "") -> FileOutcome:
    """A file that could not be imported or written, and why."""
    return FileOutcome(FAILED, path, name=name, detail=detail)
