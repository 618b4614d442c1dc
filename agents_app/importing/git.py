"""Replay of a git repository's history of agent definition files.

Git replay follows the first-parent line of a revision, oldest commit first. The agent of a
file follows its path (renames keep the agent; the agent's *name* comes from the frontmatter).
That path -> agent map is a pure function of the history and of which creates succeeded, and
creates use event ids derived from (repository, commit, path): a re-run rebuilds the map by
walking the already imported commits without writing, then replays only the new ones.
"""

import datetime as dt
import functools
import os
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction

from agents_app import event_types
from agents_app.dialects import dialect_module, dialect_of_file
from agents_app.document import parse_agent_document
from agents_app.exceptions import AgentArchived, AgentError, DocumentInvalid, NameTaken, StatusUnchanged
from agents_app.importing.batches import bulk_writes, dry_run_writes
from agents_app.importing.files import agent_file_has_frontmatter
from agents_app.importing.outcomes import (
    ARCHIVED,
    CREATED,
    FAILED,
    NOT_AGENT_FILE,
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
from agents_app.models import AgentNameClaim, GitImportedCommit
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

# Claude Code's agents, and GitHub Copilot's (`<name>.agent.md`, agents_app.dialects); a
# `--glob` given replaces both. Comma-separated: git ORs several pathspecs.
DEFAULT_GIT_GLOB = ".claude/agents/*.md,.github/agents/*.agent.md"

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
    committer: str = ""
    committer_email: str = ""

    @property
    def actor(self) -> str:
        return f"git:{self.author} <{self.email}>"[:MAX_ACTOR]

    @property
    def author_person(self) -> str:
        return f"{self.author} <{self.email}>"

    @property
    def committer_person(self) -> str:
        return f"{self.committer} <{self.committer_email}>"


@dataclass(frozen=True)
class GitSideCommit:
    """A non-merge commit that touched matching files: who wrote it, when, and which paths."""

    sha: str
    author: str  # "Name <email>"
    authored_at: str  # ISO 8601, as git gives it
    paths: frozenset[str]  # the paths it changed, both sides of a rename


def git_pathspecs(*, glob: str, exclude: Sequence[str] = ()) -> list[str]:
    """The git pathspecs of `glob` (one glob, or several separated by commas) minus each
    `exclude` glob, all from the repository's top."""
    globs = [part.strip() for part in glob.split(",") if part.strip()]
    return [
        *(f":(top,glob){part}" for part in globs),
        *(f":(top,glob,exclude){pattern}" for pattern in exclude),
    ]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _oid(raw: str) -> str | None:
    return None if raw.strip("0") == "" else raw


def _parse_log(output: bytes, fields: int) -> list[tuple[list[str], list[GitChange]]]:
    """`git log -z --raw --format=<fields NUL-separated>` as (header fields, changes) per commit."""
    # With -z every field is NUL-terminated: the header fields of each commit, then raw
    # entries (":<old mode> <new mode> <old oid> <new oid> <status>") each followed by one
    # path, or two for renames and copies. Paths are taken by position, so any byte is safe.
    tokens = output.split(b"\0")
    commits: list[tuple[list[str], list[GitChange]]] = []
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
            commits[-1][1].append(GitChange(letter, path, old_path, _oid(blob), _oid(old_blob), mode))
            continue
        header = [
            _text(tokens[index]).lstrip("\n"),
            *(_text(part) for part in tokens[index + 1 : index + fields]),
        ]
        index += fields
        commits.append((header, []))
    return commits


def git_commits(*, repo: Path, rev: str, glob: str, exclude: Sequence[str] = ()) -> list[GitCommit]:
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
        "--format=%H%x00%aN%x00%aE%x00%aI%x00%cI%x00%cN%x00%cE%x00%s",
        rev,
        "--",
        *git_pathspecs(glob=glob, exclude=exclude),
    )
    commits = []
    for header, changes in _parse_log(output, 8):
        sha, author, email, authored, committed, committer, committer_email, subject = header
        commits.append(
            GitCommit(
                sha=sha.strip(),
                author=author,
                email=email,
                authored_at=dt.datetime.fromisoformat(authored),
                committed_at=dt.datetime.fromisoformat(committed),
                subject=subject,
                changes=changes,
                committer=committer,
                committer_email=committer_email,
            )
        )
    return commits


def git_merged_commits(
    *, repo: Path, rev: str, glob: str, exclude: Sequence[str] = (), commits: Sequence[str]
) -> dict[str, list[GitSideCommit]]:
    """For each merge among `commits` (commits on `rev`'s first-parent line): the non-merge
    commits that touched matching files and that the merge brought onto the line, newest first.

    Two git calls whatever the number of merges: the commit graph (`rev-list --parents`), and
    every non-merge commit that touched matching files with its paths. A commit "lands" at
    the first commit of the first-parent line that reaches it: walking the line oldest first,
    what a commit reaches that no earlier one did is what it brought in, which for a merge is
    exactly `<first parent>..<merge>`. Linear in the size of the history.
    """
    if not commits:
        return {}
    parents: dict[str, list[str]] = {}
    tip = ""
    for line in _text(_git(repo, "rev-list", "--parents", rev, "--")).splitlines():
        shas = line.split()
        tip = tip or shas[0]  # rev-list starts with the tip (the only commit it starts from)
        parents[shas[0]] = shas[1:]
    wanted = {commit for commit in commits if len(parents.get(commit, ())) > 1}
    if not wanted:
        return {}
    line_commits = []
    current: str | None = tip
    while current is not None:
        line_commits.append(current)
        current = parents[current][0] if parents.get(current) else None
    reached: set[str] = set()
    landed_at: dict[str, str] = {}  # a commit a wanted merge brought in -> that merge
    for commit in reversed(line_commits):
        stack = [commit]
        reached.add(commit)
        while stack:
            for parent in parents.get(stack.pop(), ()):
                if parent not in reached:
                    reached.add(parent)
                    stack.append(parent)
                    if commit in wanted:
                        landed_at[parent] = commit
    # --full-history: without it git prunes a side branch whose merge result equals one
    # parent, and with it the commits we look for. --date-order lists newest first (and a
    # commit never before its descendants).
    output = _git(
        repo,
        "log",
        "--no-merges",
        "--full-history",
        "--date-order",
        "-M",
        "--raw",
        "--no-abbrev",
        "-z",
        "--no-color",
        "--format=%H%x00%aN%x00%aE%x00%aI",
        rev,
        "--",
        *git_pathspecs(glob=glob, exclude=exclude),
    )
    brought: dict[str, list[GitSideCommit]] = {merge: [] for merge in wanted}
    for (sha, author, email, authored), changes in _parse_log(output, 4):
        merge = landed_at.get(sha.strip())
        if merge is not None:
            paths = {change.path for change in changes} | {c.old_path for c in changes if c.old_path}
            brought[merge].append(
                GitSideCommit(sha.strip(), f"{author} <{email}>", authored, frozenset(paths))
            )
    return brought


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


def _git_commits_record(*, root: str, commits: Sequence[tuple[str, int]]) -> None:
    """Record that each (commit, position) stored events up to that position, in the transaction
    that stores them (a batch writes its commits' records last, before its COMMIT)."""
    # One INSERT ... ON CONFLICT DO UPDATE per batch (issue 14): an update_or_create per
    # commit cost a savepoint, a locking SELECT and an INSERT, and the position a read of the
    # log's head. The position is the newest event the commit's own services returned: they
    # appended under the append lock the batch holds, so it is the head a read would give.
    if commits:
        GitImportedCommit.objects.bulk_create(
            [
                GitImportedCommit(repository=root, commit=commit, position=position)
                for commit, position in commits
            ],
            update_conflicts=True,
            unique_fields=["repository", "commit"],
            update_fields=["position"],
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
class HeldName:
    """A name a file of the replay wants, held by an agent of another path or not of this replay."""

    path: str
    name: str
    first_commit: str
    changes: int = 1  # the file's changes not imported because of it

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.changes} change(s) not imported (from commit {self.first_commit[:12]}):"
            f" the name {self.name!r} is held by another agent"
        )


@dataclass
class GitImportResult:
    """What a replay did: the totals, the commits replayed now and those imported before."""

    root: str
    totals: ImportTotals
    commits: int
    already_imported: int
    held: list[HeldName] = field(default_factory=list)
    dry_run: bool = False


def git_provenance(
    commit: GitCommit, *, path: str, old_path: str | None, merged: dict[str, list[GitSideCommit]]
) -> tuple[str, dict[str, object]]:
    """(actor, provenance) of one file's change at a commit of the first-parent line.

    A plain commit: its author wrote the change. A merge: the author of the newest non-merge
    commit it brought in that touched the file (or its name before a rename) wrote it, and
    every author of those commits is listed; a merge that brought none (a conflict resolved
    in the merge itself) is its own author's. Either way `occurred_at` is when the change
    landed on the replayed line: the first-parent commit's committer date ("committed_at").
    Dates are kept with the offset git recorded.
    """
    landed = {"committer": commit.committer_person, "committed_at": commit.committed_at.isoformat()}
    own = {
        "commit": commit.sha,
        "author": commit.author_person,
        "authored_at": commit.authored_at.isoformat(),
        "authors": [commit.author_person],
    }
    brought = merged.get(commit.sha)
    if brought is None:
        return commit.actor, {**own, **landed}
    merge = {"merge_commit": commit.sha, "merged_by": commit.author_person}
    paths = {path} if old_path is None else {path, old_path}
    touching = [side for side in brought if side.paths & paths]
    if not touching:
        return commit.actor, {**own, **landed, **merge}
    newest = touching[0]
    written = {
        "commit": newest.sha,
        "author": newest.author,
        "authored_at": newest.authored_at,
        "authors": list(dict.fromkeys(side.author for side in touching)),
    }
    return f"git:{newest.author}"[:MAX_ACTOR], {**written, **landed, **merge}


class _Replay:
    """The path -> agent map of one repository and the writes of each commit."""

    def __init__(
        self,
        *,
        repo: Path,
        root: str,
        blobs: _BlobReader,
        report: FileReport,
        merged: dict[str, list[GitSideCommit]] | None = None,
    ) -> None:
        self.repo = repo
        self.root = root
        self.blobs = blobs
        self.report = report
        self.merged = merged or {}
        self.agents: dict[str, uuid.UUID] = {}
        self.totals = ImportTotals()
        self.newest = git_newest_imported(root=root)
        self.held: dict[tuple[str, str], HeldName] = {}
        self.position = 0
        # (commit, its newest event's position) of the open batch's commits that stored events.
        self.recorded: list[tuple[str, int]] = []

    def check_alone(self) -> None:
        """Refuse to go on if another replay of this repository stored commits since we looked."""
        # Without this, two overlapping runs (a slow first import and the next cron run) would
        # both start from the same point, and the later one would write old content over the
        # new as fresh revisions. Called with the append lock held, at each batch's start.
        self.recorded = []  # a batch starts: nothing of it to record yet
        newest = git_newest_imported(root=self.root)
        if newest != self.newest:
            raise GitRepositoryError(
                f"another import of this repository stored commit {newest} meanwhile; this run stopped"
                " (what it stored before is kept): run it again to continue"
            )

    def _name_of(self, oid: str | None, path: str) -> str | None:
        if oid is None:
            return None
        dialect, file_name = dialect_of_file(path.rsplit("/", 1)[-1])
        try:
            return parse_agent_document(self.blobs.read(oid), dialect=dialect).name or file_name
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
                if (name := self._name_of(change.old_blob, path)) is not None:
                    names.setdefault(name, path)
            for change in list(added):
                name = self._name_of(change.blob, change.path)
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
        self.position = 0  # the newest event this commit stored (_stored)
        for step in self.steps(commit):
            actor, provenance = git_provenance(
                commit, path=step.change.path, old_path=step.old_path, merged=self.merged
            )
            context = ChangeContext(
                actor=actor,
                source="git",
                reason=commit.subject[:MAX_REASON],
                occurred_at=commit.committed_at,
                # git_commit is the commit of the first-parent line (what a re-run resumes
                # after); "git" is the provenance the API and the admin show.
                extra={
                    "git_repo": self.root,
                    "git_commit": commit.sha,
                    "git_path": step.change.path,
                    **({"git_old_path": step.old_path} if step.old_path else {}),
                    "git": provenance,  # type: ignore[dict-item]
                },
            )
            outcome = self._step(commit, step, context)
            if outcome.action not in (FAILED, SKIPPED, UNCHANGED):
                self.newest = commit.sha
            self.totals.add(outcome)
            self.report(outcome)
        if self.newest == commit.sha:
            self.recorded.append((commit.sha, self.position))

    def record(self) -> None:
        """Write the records of the batch's commits that stored events (WriteBatches' before_commit)."""
        recorded, self.recorded = self.recorded, []
        _git_commits_record(root=self.root, commits=recorded)

    def _stored(self, *changes: AgentChange) -> None:
        """Note the newest event position of changes that stored events (for the commit's record)."""
        for change in changes:
            if change.changed and change.position is not None:
                self.position = max(self.position, change.position)

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
                    detail = "deleted; never imported"
                    return FileOutcome(SKIPPED, path, commit=commit.sha, detail=detail, routine=True)
                try:
                    change = agent_archive(agent_id=agent_id, context=context)
                except StatusUnchanged:
                    return FileOutcome(UNCHANGED, path, commit=commit.sha, detail="already archived")
                self._stored(change)
                return FileOutcome(ARCHIVED, path, name=change.name, commit=commit.sha)
            if step.change.mode not in REGULAR_FILE_MODES:
                # A symbolic link (a README linked into each folder) or a submodule is not an
                # agent file: skipped, unless it replaces the file of an agent.
                detail = f"not a regular file (mode {step.change.mode})"
                action = SKIPPED if agent_id is None else FAILED
                return FileOutcome(action, path, commit=commit.sha, detail=detail)
            assert step.change.blob is not None
            content = self.blobs.read(step.change.blob)
            if agent_id is None and not agent_file_has_frontmatter(content):
                return FileOutcome(SKIPPED, path, commit=commit.sha, detail=NOT_AGENT_FILE, routine=True)
            # `x.agent.md` is a copilot agent (named `x` when its frontmatter has no name).
            dialect, file_name = dialect_of_file(path.rsplit("/", 1)[-1])
            if agent_id is None:
                event_id = git_create_event_id(root=self.root, commit=commit.sha, path=path)
                named = parse_agent_document(content, dialect=dialect).name
                change = agent_create(
                    content=content,
                    context=context,
                    event_id=event_id,
                    dialect=dialect,
                    name=None if named else file_name,
                    name_from="the file name",
                )
                self.agents[path] = change.agent_id
                self._stored(change)
                return self._outcome(CREATED if change.changed else UNCHANGED, commit, path, change)
            # A copilot file without a name is named by its file: a rename renames the agent.
            unnamed = None if dialect_module(dialect).NAME_REQUIRED else file_name
            revise = functools.partial(
                agent_revise,
                agent_id=agent_id,
                content=content,
                context=context,
                dialect=dialect,
                name_if_unnamed=unnamed,
            )
            try:
                change = revise()
            except AgentArchived:
                if step.change.status != "A":
                    raise
                # The file was deleted (archiving its agent) and is back: the same agent. One
                # savepoint for both, so invalid content does not leave it restored.
                with transaction.atomic():
                    restored = agent_restore(agent_id=agent_id, context=context)
                    change = revise()
                self._stored(restored, change)
                return self._outcome(RESTORED, commit, path, change)
            self._stored(change)
            return self._outcome(REVISED if change.changed else UNCHANGED, commit, path, change)
        except NameTaken as exc:
            return self._held(commit, path, exc)
        except AgentError as exc:
            return FileOutcome(FAILED, path, commit=commit.sha, detail=str(exc))

    def _held(self, commit: GitCommit, path: str, exc: NameTaken) -> FileOutcome:
        """A name held by another agent: one failure the first time, a counted skip after."""
        # Every later commit of the file would meet the same name and fail the same way (a
        # public collection's `code-reviewer` against a local one): one line, not one per
        # commit. The count of changes not imported goes in the summary.
        held = self.held.get((path, exc.name))
        if held is not None:
            held.changes += 1
            detail = f"the name {exc.name!r} is held by another agent (reported at {held.first_commit[:12]})"
            return FileOutcome(SKIPPED, path, name=exc.name, commit=commit.sha, detail=detail, routine=True)
        self.held[(path, exc.name)] = HeldName(path, exc.name, commit.sha)
        holder = AgentNameClaim.objects.filter(name=exc.name).values_list("agent_id", flat=True).first()
        others = [other for other, agent in self.agents.items() if agent == holder and other != path]
        whose = f"the agent of {others[0]}" if others else "an agent this replay did not create"
        detail = (
            f"the name {exc.name!r} is held by {whose}: this file's changes are not imported while it is"
            " (the count is in the summary)"
        )
        return FileOutcome(FAILED, path, name=exc.name, commit=commit.sha, detail=detail)

    @staticmethod
    def _outcome(action: str, commit: GitCommit, path: str, change: AgentChange) -> FileOutcome:
        return FileOutcome(action, path, name=change.name, revision=change.revision, commit=commit.sha)


def git_history_import(
    *,
    repo: Path,
    glob: str = DEFAULT_GIT_GLOB,
    rev: str = "HEAD",
    exclude: Sequence[str] = (),
    dry_run: bool = False,
    report: FileReport = report_nothing,
    progress: Progress | None = None,
) -> GitImportResult:
    """Replay the first-parent history of `rev` for files matching `glob`, skipping imported commits.

    `exclude` globs (git glob pathspecs from the top) leave files out; `dry_run` replays
    everything in a transaction that is rolled back: the same outcomes, nothing stored.
    """
    if not repo.is_dir():
        raise GitRepositoryError(f"{repo} is not a folder")
    if rev.startswith("-"):
        # git would read it as an option (e.g. --output=<file> writes a file).
        raise GitRepositoryError(f"{rev!r} is not a revision")
    root = git_root_commit(repo=repo, rev=rev)
    commits = git_commits(repo=repo, rev=rev, glob=glob, exclude=exclude)
    imported = git_commits_imported(root=root)
    # Resume after the newest commit that stored events. Commits before it that stored
    # nothing (failed or unchanged files) must not be replayed: they would write old
    # content over newer. Commits after it that stored nothing replay to nothing again.
    start = max((index + 1 for index, commit in enumerate(commits) if commit.sha in imported), default=0)
    blobs = _BlobReader(repo)
    try:
        pending = commits[start:]
        merged = git_merged_commits(
            repo=repo, rev=rev, glob=glob, exclude=exclude, commits=[commit.sha for commit in pending]
        )
        replay = _Replay(repo=repo, root=root, blobs=blobs, report=report, merged=merged)
        replay.rebuild(commits[:start])
        if progress is not None:
            progress(0, len(pending))
        writes = dry_run_writes if dry_run else bulk_writes
        with writes(on_open=replay.check_alone, before_commit=replay.record) as batches:
            for done, commit in enumerate(pending, start=1):
                replay.apply(commit)
                batches.unit_done()
                if progress is not None:
                    progress(done, len(pending))
    finally:
        blobs.close()
    return GitImportResult(
        root=root,
        totals=replay.totals,
        commits=len(pending),
        already_imported=start,
        held=list(replay.held.values()),
        dry_run=dry_run,
    )
