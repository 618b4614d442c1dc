"""Import and export of agent definition files, and replay of a git repository's history.

Files are read and written as bytes and handed to the services unchanged: the raw bytes are
the source of truth, so CRLF, a missing final newline and non-ASCII text come back exactly.
Bulk runs write in batched transactions without the per-write read-your-writes wait, and
bring the projections up to date once at the end (`bulk_writes`): the views are current
when a run returns.

Git replay follows the first-parent line of a revision, oldest commit first. The agent of a
file follows its path (renames keep the agent; the agent's *name* comes from the frontmatter).
That path -> agent map is a pure function of the history and of which creates succeeded, and
creates use event ids derived from (repository, commit, path): a re-run rebuilds the map by
walking the already imported commits without writing, then replays only the new ones.
"""

import datetime as dt
import os
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery

from agents_app import event_types
from agents_app.document import NAME_PATTERN, parse_agent_document
from agents_app.exceptions import AgentArchived, AgentError, AgentNotFound, DocumentInvalid, StatusUnchanged
from agents_app.models import AgentCurrent, AgentNameClaim, AgentRevision
from agents_app.selectors import agent_revisions, agents_current, parse_ref, revision_resolve
from agents_app.services import (
    MAX_ACTOR,
    MAX_REASON,
    AgentChange,
    ChangeContext,
    agent_archive,
    agent_create,
    agent_restore,
    agent_revise,
)
from events.models import Event
from events.runner import projections_wait, read_your_writes
from events.selectors import head_position
from events.services import append_lock

CREATED = "created"
REVISED = "revised"
RESTORED = "restored"
UNCHANGED = "unchanged"
ARCHIVED = "archived"
FAILED = "failed"
SKIPPED = "skipped"
WRITTEN = "written"

DEFAULT_GIT_GLOB = ".claude/agents/*.md"
# A bulk run commits its transaction after this many files or git commits, or this many seconds.
BATCH_UNITS = 200
BATCH_SECONDS = 0.5
# Namespace of the create event ids of git replays: uuid5(namespace, "<root>:<commit>:<path>").
GIT_EVENT_NAMESPACE = uuid.UUID("6b1f7a52-3a8e-4c55-9b1e-5d0c2f4a9e31")
# Options that keep the output parseable whatever the user's or the repository's config says,
# and keep a repository's own config from running programs (fsmonitor) while we read it.
GIT_CONFIG = (
    "-c", "log.showRoot=true",
    "-c", "log.showSignature=false",
    "-c", "diff.relative=false",
    "-c", "core.quotePath=false",
    "-c", "core.fsmonitor=false",
)  # fmt: skip
REGULAR_FILE_MODES = frozenset({"100644", "100755"})


class ImportRefused(Exception):
    """Arguments an import or export cannot work with: a missing path, an unsafe file name, ..."""


class GitRepositoryError(ImportRefused):
    """`git` failed: not a repository, an unknown revision, git not installed."""


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


def _ignore(outcome: FileOutcome) -> None:
    return None


class WriteBatches:
    """The open transaction of a bulk run, committed every BATCH_UNITS files or commits or BATCH_SECONDS."""

    def __init__(self, on_open: Callable[[], None] | None = None) -> None:
        self._atomic: transaction.Atomic | None = None
        self._units = 0
        self._opened = 0.0
        self._on_open = on_open

    def open(self) -> None:
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self._units = 0
        self._opened = time.monotonic()
        if self._on_open is not None:
            append_lock()  # what on_open checks cannot change before this batch commits
            self._on_open()

    def close(self, error: BaseException | None = None) -> None:
        """Commit the open batch, or roll it back when `error` is given."""
        atomic, self._atomic = self._atomic, None
        if atomic is not None:
            atomic.__exit__(type(error) if error else None, error, error.__traceback__ if error else None)

    def unit_done(self) -> None:
        """One file or commit is written; commit the batch if it is big or old enough."""
        self._units += 1
        if self._units >= BATCH_UNITS or time.monotonic() - self._opened >= BATCH_SECONDS:
            self.close()
            self.open()


@contextmanager
def bulk_writes(*, on_open: Callable[[], None] | None = None) -> Iterator[WriteBatches]:
    """Batched transactions, no read-your-writes waits; the projections are brought up to date at the end."""
    # Each commit queues a projection catch-up (in the embedded mode it runs right there, in
    # process) and, with read-your-writes on, waits for it: per file or git commit that
    # tripled an import's time. Batches of units share one COMMIT and one catch-up of all
    # their events. The append lock is held until a batch commits, so other writers wait at
    # most about BATCH_SECONDS. A batch is stored entirely or not at all, which is what lets
    # a re-run tell exactly which commits were imported. Read-your-writes is turned off for
    # this thread only (the runner's context switch): an import run from a web request must
    # not turn it off for the other requests the process serves meanwhile.
    batches = WriteBatches(on_open)
    with read_your_writes(False):
        try:
            batches.open()
            yield batches
        except BaseException as exc:
            batches.close(exc)
            raise
        else:
            batches.close()
    projections_wait(position=head_position())


# ----------------------------------------------------------------------------------------
# Import of files and folders
# ----------------------------------------------------------------------------------------


def agent_files_find(*, paths: Sequence[Path]) -> tuple[list[Path], list[FileOutcome]]:
    """The `*.md` files under each folder (a named file as it is), and what was skipped and why."""
    found: list[Path] = []
    skipped: list[FileOutcome] = []
    for given in paths:
        if not given.exists():
            raise ImportRefused(f"{given}: no such file or folder")
        if not given.is_dir():
            found.append(given)
            continue
        root = given.resolve()
        # os.walk does not descend into symlinked folders (followlinks=False): a link could
        # lead anywhere on the machine, or loop.
        for folder, folders, names in os.walk(given):
            here = Path(folder)
            kept = []
            for sub in sorted(folders):
                if sub.startswith("."):
                    continue  # .git, .venv, editors' folders: never agent definitions to import
                if (here / sub).is_symlink():
                    skipped.append(FileOutcome(SKIPPED, str(here / sub), detail="symbolic link to a folder"))
                    continue
                kept.append(sub)
            folders[:] = kept
            for name in sorted(names):
                if name.startswith(".") or not name.lower().endswith(".md"):
                    continue
                path = here / name
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


def _read_file(path: Path) -> bytes:
    """The file's bytes, or at most one byte over the size limit (the parser refuses that)."""
    # O_NONBLOCK: opening a FIFO named *.md must not hang the import; it is refused below.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return handle.read(settings.AGENT_MAX_BYTES + 1)


def _failed(path: str, detail: str, name: str = "") -> FileOutcome:
    return FileOutcome(FAILED, path, name=name, detail=detail)


def _import_file(path: Path, context: ChangeContext, names_seen: dict[str, str]) -> FileOutcome:
    shown = str(path)
    try:
        content = _read_file(path)
    except OSError as exc:
        return _failed(shown, f"cannot read: {exc.strerror or exc}")
    try:
        name = parse_agent_document(content).name
    except DocumentInvalid as exc:
        return _failed(shown, str(exc))
    if name in names_seen:
        # Two files of one run naming the same agent would silently overwrite each other.
        return _failed(shown, f"the name {name!r} is also the name in {names_seen[name]}", name)
    names_seen[name] = shown
    try:
        with transaction.atomic():
            # Look up and write under one append lock: without it, another writer creating
            # this name between our lookup and our create would fail this file with NameTaken.
            append_lock()
            holder = AgentNameClaim.objects.filter(name=name).values_list("agent_id", flat=True).first()
            if holder is None:
                change = agent_create(content=content, context=context)
            else:
                change = agent_revise(agent_id=holder, content=content, context=context)
    except AgentError as exc:
        return _failed(shown, str(exc), name)
    action = CREATED if holder is None else REVISED if change.changed else UNCHANGED
    note = "" if path.stem == name else f"the file name differs from the name {name!r}"
    return FileOutcome(action, shown, name=name, revision=change.revision, detail=note)


def agents_import(
    *,
    paths: Sequence[Path],
    actor: str,
    reason: str = "",
    report: FileReport = _ignore,
    progress: Progress | None = None,
) -> ImportTotals:
    """Create or revise an agent from each file; identical content stores nothing, nor does a bad file."""
    ChangeContext(actor=actor, source="import", reason=reason).metadata()  # bad actor/reason: refuse all
    files, skipped = agent_files_find(paths=paths)
    totals = ImportTotals()
    names_seen: dict[str, str] = {}
    with bulk_writes() as batches:
        for outcome in skipped:
            totals.add(outcome)
            report(outcome)
        if progress is not None:
            progress(0, len(files))
        for done, path in enumerate(files, start=1):
            context = ChangeContext(
                actor=actor,
                source="import",
                reason=reason or f"import of {path}"[:MAX_REASON],
                extra={"import_path": str(path)},
            )
            outcome = _import_file(path, context, names_seen)
            batches.unit_done()
            totals.add(outcome)
            report(outcome)
            if progress is not None:
                progress(done, len(files))
    return totals


# ----------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------


def agent_file_path(*, directory: Path, name: str) -> Path:
    """`directory/<name>.md`, refusing any name that could place the file elsewhere."""
    # Stored names always match NAME_PATTERN (no '/', no '..'); checking again here means a
    # row that somehow holds another name still cannot write outside the directory.
    if not NAME_PATTERN.fullmatch(name):
        raise ImportRefused(f"{name!r} is not a safe file name")
    target = directory / f"{name}.md"
    if target.resolve().parent != directory.resolve():
        raise ImportRefused(f"{target} resolves to outside {directory} (a symbolic link?)")
    return target


def _write_exactly(target: Path, content: str) -> None:
    # Binary mode: no newline translation. O_NOFOLLOW: a symlink put there after the check
    # in agent_file_path is refused rather than followed.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(target, flags, 0o666), "wb") as handle:
        handle.write(content.encode("utf-8"))


def _status_at(at: dt.datetime) -> dict[uuid.UUID, bool]:
    """stream id -> archived at `at`, for streams with an archive or restore by then."""
    # Business time (occurred_at, else recorded_at), like revision_at: a git deletion is
    # archived as of its commit date, not as of the day it was imported.
    latest: dict[uuid.UUID, tuple[int, str]] = {}
    rows = Event.objects.filter(type__in=(event_types.ARCHIVED, event_types.RESTORED)).values_list(
        "stream_id", "stream_version", "type", "metadata", "recorded_at"
    )
    for stream_id, version, kind, metadata, recorded_at in rows.iterator():
        occurred = metadata.get("occurred_at")
        when = dt.datetime.fromisoformat(occurred) if occurred else recorded_at
        if when <= at and version > latest.get(stream_id, (0, ""))[0]:
            latest[stream_id] = (version, kind)
    return {stream_id: kind == event_types.ARCHIVED for stream_id, (_, kind) in latest.items()}


def agents_as_at(*, at: dt.datetime, include_archived: bool = False) -> list[tuple[AgentRevision, bool]]:
    """Per agent that existed at `at`: the revision current then and whether it was archived then."""
    revisions = agent_revisions().filter(occurred_at__lte=at)
    newest = revisions.filter(agent_id=OuterRef("agent_id")).order_by("-occurred_at", "-revision")
    rows = revisions.filter(revision=Subquery(newest.values("revision")[:1])).order_by("name", "agent_id")
    archived = _status_at(at)
    return [
        (row, archived.get(row.agent_id, False))
        for row in rows.iterator(chunk_size=500)
        if include_archived or not archived.get(row.agent_id, False)
    ]


@dataclass(frozen=True)
class _ExportItem:
    agent_id: uuid.UUID
    name: str
    revision: int
    content: str
    archived: bool


def _export_items(
    *, ref: str | None, at: dt.datetime | None, include_archived: bool, report: FileReport
) -> list[_ExportItem]:
    if at is not None:
        return [
            _ExportItem(row.agent_id, row.name, row.revision, row.content, archived)
            for row, archived in agents_as_at(at=at, include_archived=include_archived)
        ]
    agents = agents_current()
    if not include_archived:
        agents = agents.filter(status=AgentCurrent.Status.ACTIVE)
    items = []
    for agent in agents.order_by("name", "agent_id").iterator(chunk_size=500):
        archived = agent.status == AgentCurrent.Status.ARCHIVED
        if ref is None:
            items.append(_ExportItem(agent.agent_id, agent.name, agent.revision, agent.content, archived))
            continue
        try:
            row = revision_resolve(agent=agent, ref=ref)
        except AgentNotFound as exc:
            report(FileOutcome(SKIPPED, f"{agent.name}.md", name=agent.name, detail=str(exc)))
            continue
        items.append(_ExportItem(agent.agent_id, row.name, row.revision, row.content, archived))
    return items


def agents_export(
    *,
    directory: Path,
    ref: str | None = None,
    at: dt.datetime | None = None,
    include_archived: bool = False,
    report: FileReport = _ignore,
) -> ExportTotals:
    """Write `<name>.md` with the exact stored bytes of each agent's revision: latest, `ref` or as at `at`."""
    if ref is not None and at is not None:
        raise ImportRefused("give --ref or --at, not both")
    if ref is not None:
        parse_ref(ref)  # an unreadable reference is the caller's mistake, not 1,000 skipped agents
    if directory.exists() and not directory.is_dir():
        raise ImportRefused(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    # The export reflects every event stored before it started, even if a worker lags.
    projections_wait(position=head_position())
    totals = ExportTotals()
    written: dict[str, uuid.UUID] = {}

    def counted(outcome: FileOutcome) -> None:
        totals.add(outcome)
        report(outcome)

    items = _export_items(ref=ref, at=at, include_archived=include_archived, report=counted)
    # Active agents first: an archived agent may share its name with the active one.
    for item in sorted(items, key=lambda item: (item.archived, item.name)):
        shown = f"{item.name}.md"
        if item.name in written:
            outcome = FileOutcome(
                SKIPPED,
                shown,
                name=item.name,
                detail=f"agent {item.agent_id} has the name of agent {written[item.name]}, written already",
            )
        else:
            try:
                _write_exactly(agent_file_path(directory=directory, name=item.name), item.content)
            except (ImportRefused, OSError) as exc:
                outcome = _failed(shown, getattr(exc, "strerror", None) or str(exc), item.name)
            else:
                written[item.name] = item.agent_id
                detail = "archived" if item.archived else ""
                outcome = FileOutcome(WRITTEN, shown, name=item.name, revision=item.revision, detail=detail)
        counted(outcome)
    return totals


# ----------------------------------------------------------------------------------------
# Git history replay
# ----------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> bytes:
    command = ["git", "-C", str(repo), *GIT_CONFIG, *args]
    try:
        result = subprocess.run(  # noqa: S603 - fixed executable, arguments as a list, no shell
            command, capture_output=True, check=False, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        )
    except FileNotFoundError as exc:
        raise GitRepositoryError("git is not installed (or not on PATH)") from exc
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", errors="replace").strip()
        raise GitRepositoryError(f"git {args[0]} failed in {repo}: {message}")
    return result.stdout


@dataclass(frozen=True)
class GitChange:
    """One file changed by a commit, against the commit's first parent."""

    status: str  # A, M, T, D, R (renamed), C (copied)
    path: str
    old_path: str | None
    blob: str | None  # the new content's object id (None when deleted)
    old_blob: str | None
    mode: str


@dataclass(frozen=True)
class GitCommit:
    """A commit of the replay: who, when, why, and the matching files it changed."""

    sha: str
    author: str
    email: str
    authored_at: dt.datetime
    committed_at: dt.datetime
    subject: str
    changes: list[GitChange] = field(default_factory=list)

    @property
    def actor(self) -> str:
        return f"git:{self.author} <{self.email}>"[:MAX_ACTOR]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _oid(raw: str) -> str | None:
    return None if raw.strip("0") == "" else raw


def git_commits(*, repo: Path, rev: str, glob: str) -> list[GitCommit]:
    """The first-parent commits of `rev` that change files matching `glob`, oldest first."""
    # --first-parent with merges diffed against their first parent: every state replayed is
    # a state the branch really had. Side-branch commits interleaved by date would show mixes
    # that never existed, and could revise a file another branch deleted meanwhile.
    output = _git(
        repo,
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--reverse",
        "-M",
        "--raw",
        "--no-abbrev",
        "-z",
        "--no-color",
        "--format=%H%x00%aN%x00%aE%x00%aI%x00%cI%x00%s",
        rev,
        "--",
        f":(top,glob){glob}",
    )
    # With -z every field is NUL-terminated: 6 header fields per commit, then raw entries
    # (":<old mode> <new mode> <old oid> <new oid> <status>") each followed by one path, or
    # two for renames and copies. Paths are taken by position, so any byte in them is safe.
    tokens = output.split(b"\0")
    commits: list[GitCommit] = []
    index = 0
    while index < len(tokens):
        token = tokens[index].lstrip(b"\n")
        if not token:
            index += 1
            continue
        if token.startswith(b":"):
            old_mode, mode, old_blob, blob, status = _text(token[1:]).split()
            letter = status[0]
            if letter in "RC":
                old_path, path = _text(tokens[index + 1]), _text(tokens[index + 2])
                index += 3
            else:
                old_path, path = None, _text(tokens[index + 1])
                index += 2
            # A deletion's new mode is 000000: keep the mode the file had.
            mode = old_mode if letter == "D" else mode
            commits[-1].changes.append(GitChange(letter, path, old_path, _oid(blob), _oid(old_blob), mode))
            continue
        sha, author, email, authored, committed, subject = (_text(part) for part in tokens[index : index + 6])
        index += 6
        commits.append(
            GitCommit(
                sha=sha.strip(),
                author=author,
                email=email,
                authored_at=dt.datetime.fromisoformat(authored),
                committed_at=dt.datetime.fromisoformat(committed),
                subject=subject,
            )
        )
    return commits


def git_root_commit(*, repo: Path, rev: str) -> str:
    """The first commit of `rev`'s first-parent line: the repository's identity in event metadata."""
    lines = _git(repo, "rev-list", "--first-parent", "--max-parents=0", rev, "--").split()
    if not lines:
        raise GitRepositoryError(f"{rev} has no root commit in {repo}")
    return _text(lines[0])


def git_commits_imported(*, root: str) -> set[str]:
    """Ids of the repository's commits that stored at least one event (from event metadata)."""
    # A JSON key lookup, the same on PostgreSQL and SQLite; it scans the log, which a
    # command run now and then can afford.
    return set(Event.objects.filter(metadata__git_repo=root).values_list("metadata__git_commit", flat=True))


def git_newest_imported(*, root: str) -> str | None:
    """The commit of the newest event stored for the repository, if any."""
    rows = Event.objects.filter(metadata__git_repo=root).order_by("-position")
    return rows.values_list("metadata__git_commit", flat=True).first()


def git_create_event_id(*, root: str, commit: str, path: str) -> uuid.UUID:
    """The id of the event that creates the agent of `path` at `commit`: the same on every run."""
    return uuid.uuid5(GIT_EVENT_NAMESPACE, f"{root}:{commit}:{path}")


class _BlobReader:
    """Object contents through one `git cat-file --batch` process instead of one `git show` each."""

    def __init__(self, repo: Path) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - fixed executable, arguments as a list
            ["git", "-C", str(repo), *GIT_CONFIG, "cat-file", "--batch"],  # noqa: S607 - git from PATH
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )

    def read(self, oid: str) -> bytes:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(oid.encode("ascii") + b"\n")
        self.process.stdin.flush()
        header = self.process.stdout.readline().split()
        if len(header) != 3:
            raise GitRepositoryError(f"git cat-file: object {oid} is missing")
        size = int(header[2])
        # Keep at most one byte over the limit (the parser refuses that), but drain the rest
        # of the object from the pipe so the next answer starts where it should.
        limit = settings.AGENT_MAX_BYTES + 1
        content = self.process.stdout.read(min(size, limit))
        remaining = size - len(content)
        while remaining > 0:
            remaining -= len(self.process.stdout.read(min(remaining, 1 << 20)))
        self.process.stdout.read(1)  # the newline after each object
        return content

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass(frozen=True)
class _Step:
    kind: str  # "write", "rename" or "delete"
    change: GitChange
    old_path: str | None = None


@dataclass
class GitImportResult:
    """What a replay did: the totals, the commits replayed now and those imported before."""

    root: str
    totals: ImportTotals
    commits: int
    already_imported: int


class _Replay:
    """The path -> agent map of one repository and the writes of each commit."""

    def __init__(self, *, repo: Path, root: str, blobs: _BlobReader, report: FileReport) -> None:
        self.repo = repo
        self.root = root
        self.blobs = blobs
        self.report = report
        self.agents: dict[str, uuid.UUID] = {}
        self.totals = ImportTotals()
        self.newest = git_newest_imported(root=root)

    def check_alone(self) -> None:
        """Refuse to go on if another replay of this repository stored commits since we looked."""
        # Without this, two overlapping runs (a slow first import and the next cron run) would
        # both start from the same point, and the later one would write old content over the
        # new as fresh revisions. Called with the append lock held, at each batch's start.
        newest = git_newest_imported(root=self.root)
        if newest != self.newest:
            raise GitRepositoryError(
                f"another import of this repository stored commit {newest} meanwhile; this run stopped"
                " (what it stored before is kept): run it again to continue"
            )

    def _name_of(self, oid: str | None) -> str | None:
        if oid is None:
            return None
        try:
            return parse_agent_document(self.blobs.read(oid)).name
        except DocumentInvalid:
            return None

    def steps(self, commit: GitCommit) -> list[_Step]:
        """The commit's changes in an order that frees names before they are taken again."""
        deleted = {change.path: change for change in commit.changes if change.status == "D"}
        added = [change for change in commit.changes if change.status in "AC"]
        paired: list[_Step] = []
        if deleted and added:
            # git missed a rename (the content changed too much to be "similar"): a file deleted
            # and a file added in one commit with the same agent name are the same agent.
            names: dict[str, str] = {}
            for path, change in deleted.items():
                if (name := self._name_of(change.old_blob)) is not None:
                    names.setdefault(name, path)
            for change in list(added):
                name = self._name_of(change.blob)
                if name is not None and name in names:
                    old_path = names.pop(name)
                    del deleted[old_path]
                    added.remove(change)
                    paired.append(_Step("rename", change, old_path))
        renamed = [_Step("rename", c, c.old_path) for c in commit.changes if c.status == "R"]
        modified = [_Step("write", c) for c in commit.changes if c.status in "MT"]
        # Deletions first (they free names), additions last (they take names).
        return [
            *paired,
            *(_Step("delete", change) for change in deleted.values()),
            *renamed,
            *modified,
            *(_Step("write", change) for change in added),
        ]

    def rebuild(self, commits: Sequence[GitCommit]) -> None:
        """Rebuild the path map over commits imported before, writing nothing."""
        plan = [(commit, self.steps(commit)) for commit in commits]
        candidates = {
            git_create_event_id(root=self.root, commit=commit.sha, path=step.change.path): None
            for commit, steps in plan
            for step in steps
            if step.kind != "delete"
        }
        created: dict[uuid.UUID, uuid.UUID] = {}
        ids = list(candidates)
        for start in range(0, len(ids), 500):
            rows = Event.objects.filter(event_id__in=ids[start : start + 500], type=event_types.CREATED)
            created.update(rows.values_list("event_id", "stream_id"))
        for commit, steps in plan:
            for step in steps:
                path = step.change.path
                if step.kind == "rename" and step.old_path in self.agents:
                    self.agents[path] = self.agents.pop(step.old_path)
                elif step.kind != "delete" and path not in self.agents:
                    event_id = git_create_event_id(root=self.root, commit=commit.sha, path=path)
                    if event_id in created:
                        self.agents[path] = created[event_id]

    def apply(self, commit: GitCommit) -> None:
        """Replay one commit's files (in the bulk's open batch, so a commit is stored whole or not at all)."""
        for step in self.steps(commit):
            context = ChangeContext(
                actor=commit.actor,
                source="git",
                reason=commit.subject[:MAX_REASON],
                occurred_at=commit.committed_at,
                extra={
                    "git_repo": self.root,
                    "git_commit": commit.sha,
                    "git_path": step.change.path,
                    "git_authored_at": commit.authored_at.isoformat(),
                    **({"git_old_path": step.old_path} if step.old_path else {}),
                },
            )
            outcome = self._step(commit, step, context)
            if outcome.action not in (FAILED, SKIPPED, UNCHANGED):
                self.newest = commit.sha
            self.totals.add(outcome)
            self.report(outcome)

    def _step(self, commit: GitCommit, step: _Step, context: ChangeContext) -> FileOutcome:
        path = step.change.path
        if step.kind == "rename" and step.old_path in self.agents:
            # The agent follows its file: even if this content fails, later commits of the new
            # path belong to the same agent.
            self.agents[path] = self.agents.pop(step.old_path)
        agent_id = self.agents.get(path)
        # Each service call is its own savepoint: a failed file leaves the commit's other files
        # applied (and nothing of itself).
        try:
            if step.kind == "delete":
                if agent_id is None:
                    return FileOutcome(SKIPPED, path, commit=commit.sha, detail="deleted; never imported")
                try:
                    change = agent_archive(agent_id=agent_id, context=context)
                except StatusUnchanged:
                    return FileOutcome(UNCHANGED, path, commit=commit.sha, detail="already archived")
                return FileOutcome(ARCHIVED, path, name=change.name, commit=commit.sha)
            if step.change.mode not in REGULAR_FILE_MODES:
                detail = f"not a regular file (mode {step.change.mode})"
                return FileOutcome(FAILED, path, commit=commit.sha, detail=detail)
            assert step.change.blob is not None
            content = self.blobs.read(step.change.blob)
            if agent_id is None:
                event_id = git_create_event_id(root=self.root, commit=commit.sha, path=path)
                change = agent_create(content=content, context=context, event_id=event_id)
                self.agents[path] = change.agent_id
                return self._outcome(CREATED if change.changed else UNCHANGED, commit, path, change)
            try:
                change = agent_revise(agent_id=agent_id, content=content, context=context)
            except AgentArchived:
                if step.change.status != "A":
                    raise
                # The file was deleted (archiving its agent) and is back: the same agent. One
                # savepoint for both, so invalid content does not leave it restored.
                with transaction.atomic():
                    agent_restore(agent_id=agent_id, context=context)
                    change = agent_revise(agent_id=agent_id, content=content, context=context)
                return self._outcome(RESTORED, commit, path, change)
            return self._outcome(REVISED if change.changed else UNCHANGED, commit, path, change)
        except AgentError as exc:
            return FileOutcome(FAILED, path, commit=commit.sha, detail=str(exc))

    @staticmethod
    def _outcome(action: str, commit: GitCommit, path: str, change: AgentChange) -> FileOutcome:
        return FileOutcome(action, path, name=change.name, revision=change.revision, commit=commit.sha)


def git_history_import(
    *,
    repo: Path,
    glob: str = DEFAULT_GIT_GLOB,
    rev: str = "HEAD",
    report: FileReport = _ignore,
    progress: Progress | None = None,
) -> GitImportResult:
    """Replay the first-parent history of `rev` for files matching `glob`, skipping imported commits."""
    if not repo.is_dir():
        raise GitRepositoryError(f"{repo} is not a folder")
    if rev.startswith("-"):
        # git would read it as an option (e.g. --output=<file> writes a file).
        raise GitRepositoryError(f"{rev!r} is not a revision")
    root = git_root_commit(repo=repo, rev=rev)
    commits = git_commits(repo=repo, rev=rev, glob=glob)
    imported = git_commits_imported(root=root)
    # Resume after the newest commit that stored events. Commits before it that stored
    # nothing (failed or unchanged files) must not be replayed: they would write old
    # content over newer. Commits after it that stored nothing replay to nothing again.
    start = max((index + 1 for index, commit in enumerate(commits) if commit.sha in imported), default=0)
    blobs = _BlobReader(repo)
    try:
        replay = _Replay(repo=repo, root=root, blobs=blobs, report=report)
        replay.rebuild(commits[:start])
        pending = commits[start:]
        if progress is not None:
            progress(0, len(pending))
        with bulk_writes(on_open=replay.check_alone) as batches:
            for done, commit in enumerate(pending, start=1):
                replay.apply(commit)
                batches.unit_done()
                if progress is not None:
                    progress(done, len(pending))
    finally:
        blobs.close()
    return GitImportResult(root=root, totals=replay.totals, commits=len(pending), already_imported=start)
