"""Replay of a git repository's history of agent definition files.

Git replay follows the first-parent line of a revision, oldest commit first. The agent of a
file follows its path (renames keep the agent; the agent's *name* comes from the frontmatter).
That path -> agent map is a pure function of the history and of which creates succeeded, and
creates use event ids derived from (repository, commit, path): a re-run rebuilds the map by
walking the already imported commits without writing, then replays only the new ones.
"""

import datetime as dt
import os
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction

from agents_app import event_types
from agents_app.document import parse_agent_document
from agents_app.exceptions import AgentArchived, AgentError, DocumentInvalid, StatusUnchanged
from agents_app.importing.batches import bulk_writes
from agents_app.importing.outcomes import (
    ARCHIVED,
    CREATED,
    FAILED,
    RESTORED,
    REVISED,
    SKIPPED,
    UNCHANGED,
    FileOutcome,
    FileReport,
    ImportRefused,
    ImportTotals,
    Progress,
    report_nothing,
)
from agents_app.models import GitImportedCommit
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
from events.selectors import head_position

DEFAULT_GIT_GLOB = ".claude/agents/*.md"

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


class GitRepositoryError(ImportRefused):
    """`git` failed: not a repository, an unknown revision, git not installed."""


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
    """Ids of the repository's commits that stored at least one event."""
    return set(GitImportedCommit.objects.filter(repository=root).values_list("commit", flat=True))


def git_newest_imported(*, root: str) -> str | None:
    """The commit of the newest event stored for the repository, if any: one indexed row."""
    rows = GitImportedCommit.objects.filter(repository=root).order_by("-position")
    return rows.values_list("commit", flat=True).first()


def _git_commit_record(*, root: str, commit: str) -> None:
    """Record that `commit` stored events, in the transaction that stores them."""
    # The caller holds the append lock (its appends took it): nothing else appends between
    # its events and this read of the head, so the head is the commit's newest event.
    GitImportedCommit.objects.update_or_create(
        repository=root, commit=commit, defaults={"position": head_position()}
    )


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
        if self.newest == commit.sha:
            _git_commit_record(root=self.root, commit=commit.sha)

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
    report: FileReport = report_nothing,
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
