"""What an import, export or replay did to each file, counted; the errors that refuse a run."""

from collections.abc import Callable
from dataclasses import dataclass

CREATED = "created"
REVISED = "revised"
RESTORED = "restored"
UNCHANGED = "unchanged"
ARCHIVED = "archived"
FAILED = "failed"
SKIPPED = "skipped"
WRITTEN = "written"


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

    def add(self, outcome: FileOutcome) -> None:
        kind = REVISED if outcome.action == RESTORED else outcome.action
        setattr(self, kind, getattr(self, kind) + 1)

    def __str__(self) -> str:
        text = (
            f"created {self.created}, revised {self.revised}, unchanged {self.unchanged},"
            f" archived {self.archived}, failed {self.failed}"
        )
        return text + (f", skipped {self.skipped}" if self.skipped else "")


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
