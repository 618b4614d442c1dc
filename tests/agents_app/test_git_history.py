"""`import_git_history`: a repository built here, replayed, re-run, and exported back.

Git runs with GIT_CONFIG_GLOBAL=/dev/null and GIT_CONFIG_NOSYSTEM=1 (the command's own git
processes too), so the user's config (autocrlf, signing, hooks) cannot change the result.
"""

import datetime as dt
import importlib
import io
import os
import subprocess
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_app import importing
from agents_app.importing import git_create_event_id
from agents_app.management.commands import import_git_history
from agents_app.models import GitImportedCommit
from agents_app.selectors import agent_get, revision_list
from agents_app.services import ChangeContext, agent_create
from events.models import Event

pytestmark = pytest.mark.django_db

GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
AGENTS = ".claude/agents"
ANN = ("Ann Example", "ann@example.com")
BOB = ("Bob Ðerić", "bob@example.org")
CAROL = ("Carol", "carol@example.net")


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch):
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def document(
    name: str, *, description: str = "Helps", lines: int = 12, tag: str = "", crlf: bool = False
) -> bytes:
    """An agent file long enough for git to see a small edit plus a move as a rename."""
    body = "".join(
        f"Step {number}: do the work well.{tag if number == 3 else ''}\n" for number in range(lines)
    )
    text = f"---\nname: {name}\ndescription: {description}\ntools: Read, Grep\n---\n{body}"
    return text.replace("\n", "\r\n").encode() if crlf else text.encode()


class Repo:
    """A throwaway repository with commits at chosen times by chosen authors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, env: dict[str, str] | None = None) -> bytes:
        environment = {**os.environ, **GIT_ENV, **(env or {})}
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=environment, capture_output=True, check=True
        )
        return result.stdout

    def write(self, name: str, content: bytes, folder: str = AGENTS) -> None:
        target = self.path / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    def commit(
        self, subject: str, *, author: tuple[str, str] = ANN, when: str, authored: str | None = None
    ) -> str:
        self.git("add", "-A")
        self.git(
            "commit", "-q", "--allow-empty", "-m", subject,
            env={
                "GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
                "GIT_COMMITTER_NAME": "Merge Bot", "GIT_COMMITTER_EMAIL": "bot@example.com",
                "GIT_AUTHOR_DATE": authored or when, "GIT_COMMITTER_DATE": when,
            },
        )  # fmt: skip
        return self.git("rev-parse", "HEAD").decode().strip()

    def files(self, sha: str) -> dict[str, bytes]:
        """The agent files at a commit, by file name, as `git show` gives them."""
        names = self.git("ls-tree", "-r", "--name-only", sha, "--", AGENTS).decode().split()
        return {Path(name).name: self.git("show", f"{sha}:{name}") for name in names}


def replay(repo: Path, *args: str, **options: object) -> str:
    out = io.StringIO()
    call_command("import_git_history", str(repo), *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def replay_failing(repo: Path, *args: str, **options: object) -> tuple[CommandError, str]:
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("import_git_history", str(repo), *args, stdout=out, stderr=io.StringIO(), **options)
    return failure.value, out.getvalue()


def export(directory: Path, **options: object) -> dict[str, bytes]:
    call_command("export_agents", str(directory), stdout=io.StringIO(), **options)
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def history(tmp_path) -> tuple[Repo, dict[str, str]]:
    """Create two agents, revise one, rename a file with an edit, delete one, a bad commit, a fix."""
    repo = Repo(tmp_path / "repo")
    shas = {}
    repo.write("reviewer.md", document("reviewer"))
    repo.write("planner.md", document("planner", description="Plans ✍️ 漢字", crlf=True))
    repo.write("README.md", b"not an agent\n", folder=".")
    shas["add"] = repo.commit("Add reviewer and planner", when="2024-01-01T10:00:00Z")
    repo.write("reviewer.md", document("reviewer", tag=" Be kind."))
    shas["revise"] = repo.commit(
        "Tighten the reviewer", author=BOB, authored="2024-01-02T10:00:00+02:00", when="2024-01-02T12:00:00Z"
    )
    repo.git("mv", f"{AGENTS}/planner.md", f"{AGENTS}/architect.md")
    repo.write("architect.md", document("architect", description="Plans ✍️ 漢字", crlf=True))
    shas["rename"] = repo.commit("Rename planner to architect", when="2024-01-03T10:00:00Z")
    repo.git("rm", "-q", f"{AGENTS}/reviewer.md")
    shas["delete"] = repo.commit("Retire the reviewer", author=CAROL, when="2024-01-04T10:00:00Z")
    repo.write("architect.md", b"---\nname: architect\n---\nhalf-finished\n")
    repo.write("tester.md", document("tester"))
    shas["bad"] = repo.commit("Half-finished edit", author=BOB, when="2024-01-05T10:00:00Z")
    repo.write("architect.md", document("architect", description="Plans ✍️ 漢字", tag=" Fixed.", crlf=True))
    shas["fix"] = repo.commit("Fix the architect frontmatter", when="2024-01-06T10:00:00Z")
    return repo, shas


def test_replay_stores_each_change_with_author_commit_date_subject_and_commit(history):
    repo, shas = history

    error, out = replay_failing(repo.path)

    assert error.returncode == 1
    assert "replayed 6 commits" in out and "(0 imported before)" in out
    assert "created 3, revised 3, unchanged 0, archived 1, failed 1" in out
    reviewer = agent_get(name="reviewer")
    assert reviewer.status == "archived"
    assert [
        (r.revision, r.actor, r.occurred_at, r.reason, r.source)
        for r in revision_list(agent_id=reviewer.agent_id)
    ] == [
        (
            1,
            "git:Ann Example <ann@example.com>",
            utc("2024-01-01T10:00:00Z"),
            "Add reviewer and planner",
            "git",
        ),
        (2, "git:Bob Ðerić <bob@example.org>", utc("2024-01-02T12:00:00Z"), "Tighten the reviewer", "git"),
    ]
    events = list(Event.objects.filter(stream_id=reviewer.agent_id).order_by("stream_version"))
    assert [event.metadata["git_commit"] for event in events] == [shas["add"], shas["revise"], shas["delete"]]
    assert [event.metadata["git_path"] for event in events] == [f"{AGENTS}/reviewer.md"] * 3
    # occurred_at is the committer date; the author date is kept beside it.
    assert events[1].metadata["occurred_at"] == "2024-01-02T12:00:00+00:00"
    assert events[1].metadata["git"] == {
        "commit": shas["revise"],
        "author": "Bob Ðerić <bob@example.org>",
        "authored_at": "2024-01-02T10:00:00+02:00",
        "authors": ["Bob Ðerić <bob@example.org>"],
        "committer": "Merge Bot <bot@example.com>",
        "committed_at": "2024-01-02T12:00:00+00:00",
    }
    assert events[2].type == "agent.archived"
    assert events[2].metadata["actor"] == "git:Carol <carol@example.net>"
    assert events[2].metadata["reason"] == "Retire the reviewer"


def test_a_renamed_file_keeps_its_agent_and_a_bad_commit_is_reported_and_skipped(history):
    repo, shas = history

    _, out = replay_failing(repo.path)

    architect = agent_get(name="architect")
    rows = list(revision_list(agent_id=architect.agent_id))
    assert [(row.revision, row.name, row.reason) for row in rows] == [
        (1, "planner", "Add reviewer and planner"),
        (2, "architect", "Rename planner to architect"),
        (3, "architect", "Fix the architect frontmatter"),
    ]
    renamed = Event.objects.get(stream_id=architect.agent_id, stream_version=2)
    assert renamed.metadata["git_old_path"] == f"{AGENTS}/planner.md"
    assert renamed.metadata["git_path"] == f"{AGENTS}/architect.md"
    assert f"failed    {shas['bad'][:12]} {AGENTS}/architect.md: line 1: description: is required" in out
    assert not Event.objects.filter(metadata__git_commit=shas["bad"], stream_id=architect.agent_id).exists()
    # The same commit's good file went in.
    assert agent_get(name="tester").revision == 1
    assert Event.objects.get(metadata__git_commit=shas["bad"]).stream_id == agent_get(name="tester").agent_id


def test_export_after_the_replay_equals_the_files_at_head(history, tmp_path):
    repo, shas = history
    replay_failing(repo.path)

    exported = export(tmp_path / "head")

    assert exported == repo.files(shas["fix"])
    assert b"\r\n" in exported["architect.md"] and "漢字".encode() in exported["architect.md"]


@pytest.mark.parametrize("step", ["add", "revise", "rename", "delete", "fix"])
def test_export_at_a_commit_date_equals_the_files_at_that_commit(history, tmp_path, step):
    repo, shas = history
    replay_failing(repo.path)
    committed = repo.git("show", "-s", "--format=%cI", shas[step]).decode().strip()

    assert export(tmp_path / step, at=committed) == repo.files(shas[step])


def test_export_at_the_bad_commit_keeps_the_last_good_content_of_the_bad_file(history, tmp_path):
    repo, shas = history
    replay_failing(repo.path)

    exported = export(tmp_path / "bad", at="2024-01-05T10:00:00Z")

    at_bad = repo.files(shas["bad"])
    assert exported["tester.md"] == at_bad["tester.md"]
    assert exported["architect.md"] == repo.files(shas["rename"])["architect.md"]


def test_a_rerun_imports_nothing_and_a_new_commit_imports_just_that_commit(history):
    repo, _ = history
    replay_failing(repo.path)
    events = Event.objects.count()

    out = replay(repo.path)

    assert "replayed 0 commits" in out and "(6 imported before)" in out
    assert Event.objects.count() == events

    repo.write("tester.md", document("tester", tag=" Now with fixtures."))
    new = repo.commit("Teach the tester fixtures", author=CAROL, when="2024-01-07T10:00:00Z")
    out = replay(repo.path, verbosity=2)

    assert "replayed 1 commits" in out and "(6 imported before)" in out
    assert f"revised   {new[:12]} {AGENTS}/tester.md -> tester (revision 2)" in out
    assert Event.objects.count() == events + 1
    assert Event.objects.filter(metadata__git_commit=new).count() == 1


def test_creates_use_event_ids_derived_from_repository_commit_and_path(history):
    repo, shas = history
    replay_failing(repo.path)
    root = shas["add"]

    created = Event.objects.get(type="agent.created", stream_id=agent_get(name="tester").agent_id)

    assert created.event_id == git_create_event_id(root=root, commit=shas["bad"], path=f"{AGENTS}/tester.md")
    assert created.metadata["git_repo"] == root


def test_a_rename_without_changes_is_followed_across_runs(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("alpha.md", document("alpha"))
    repo.commit("Add alpha", when="2024-02-01T10:00:00Z")
    replay(repo.path)
    repo.git("mv", f"{AGENTS}/alpha.md", f"{AGENTS}/first.md")
    repo.commit("Move alpha, no edit", when="2024-02-02T10:00:00Z")
    out = replay(repo.path, verbosity=2)
    assert "unchanged" in out and Event.objects.count() == 1  # a move alone stores nothing

    repo.write("first.md", document("alpha", tag=" Edited."))
    edited = repo.commit("Edit alpha at its new path", when="2024-02-03T10:00:00Z")
    replay(repo.path)

    alpha = agent_get(name="alpha")
    assert alpha.revision == 2
    assert Event.objects.get(metadata__git_commit=edited).stream_id == alpha.agent_id
    assert Event.objects.filter(type="agent.created").count() == 1


def test_a_deleted_file_added_again_restores_its_agent(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("gamma.md", document("gamma"))
    repo.commit("Add gamma", when="2024-03-01T10:00:00Z")
    repo.git("rm", "-q", f"{AGENTS}/gamma.md")
    repo.commit("Drop gamma", when="2024-03-02T10:00:00Z")
    repo.write("gamma.md", document("gamma", tag=" Back."))
    repo.commit("Bring gamma back", when="2024-03-03T10:00:00Z")

    out = replay(repo.path, verbosity=2)

    gamma = agent_get(name="gamma")
    assert gamma.status == "active" and gamma.revision == 2
    assert "restored" in out
    types = list(
        Event.objects.filter(stream_id=gamma.agent_id).order_by("stream_version").values_list("type")
    )
    assert [kind for (kind,) in types] == [
        "agent.created",
        "agent.archived",
        "agent.restored",
        "agent.revised",
    ]


def test_a_move_git_does_not_see_as_a_rename_keeps_the_agent_when_the_name_is_the_same(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("delta.md", document("delta"))
    repo.commit("Add delta", when="2024-04-01T10:00:00Z")
    repo.git("rm", "-q", f"{AGENTS}/delta.md")
    repo.write("rewritten.md", b"---\nname: delta\ndescription: Entirely new words\n---\nNothing alike.\n")
    moved = repo.commit("Rewrite delta under a new file name", when="2024-04-02T10:00:00Z")
    status = repo.git("show", "--name-status", "--format=", "-M", moved).decode()
    assert status.startswith("D") or "\nD" in status  # git saw a deletion and an addition

    replay(repo.path)

    delta = agent_get(name="delta")
    assert delta.status == "active" and delta.revision == 2
    assert Event.objects.filter(type="agent.archived").count() == 0


def test_a_name_taken_by_another_active_agent_fails_that_commit_only(tmp_path):
    agent_create(
        content=document("epsilon", description="made in the admin"),
        context=ChangeContext(actor="alice", source="admin"),
    )
    repo = Repo(tmp_path / "repo")
    repo.write("epsilon.md", document("epsilon"))
    repo.write("zeta.md", document("zeta"))
    taken = repo.commit("Add epsilon and zeta", when="2024-05-01T10:00:00Z")

    error, out = replay_failing(repo.path)

    assert error.returncode == 1
    assert (
        f"failed    {taken[:12]} {AGENTS}/epsilon.md: the name 'epsilon' is held by an agent this replay"
        " did not create" in out
    )
    assert agent_get(name="zeta").revision == 1
    assert Event.objects.filter(metadata__git_path=f"{AGENTS}/epsilon.md").count() == 0


def test_a_merge_replays_as_one_change_of_the_branch_credited_to_the_side_commit_author(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("eta.md", document("eta"))
    repo.commit("Add eta", when="2024-06-01T10:00:00Z")
    repo.git("checkout", "-q", "-b", "side")
    repo.write("eta.md", document("eta", tag=" From the side branch."))
    side = repo.commit("Edit eta on a branch", author=BOB, when="2024-06-02T10:00:00Z")
    repo.git("checkout", "-q", "main")
    repo.write("other.txt", b"unrelated\n", folder=".")
    repo.commit("Unrelated work", when="2024-06-03T10:00:00Z")
    repo.git(
        "merge", "-q", "--no-ff", "side", "-m", "Merge branch 'side'",
        env={"GIT_AUTHOR_NAME": "Carol", "GIT_AUTHOR_EMAIL": "carol@example.net",
             "GIT_COMMITTER_NAME": "Carol", "GIT_COMMITTER_EMAIL": "carol@example.net",
             "GIT_AUTHOR_DATE": "2024-06-04T10:00:00Z", "GIT_COMMITTER_DATE": "2024-06-04T10:00:00Z"},
    )  # fmt: skip

    replay(repo.path)

    latest = revision_list(agent_id=agent_get(name="eta").agent_id).last()
    assert (latest.revision, latest.actor, latest.reason, latest.occurred_at) == (
        2,
        "git:Bob Ðerić <bob@example.org>",
        "Merge branch 'side'",
        utc("2024-06-04T10:00:00Z"),
    )
    # One revision for the merge (the side commit is not replayed on its own) that names it.
    assert not Event.objects.filter(metadata__git_commit=side).exists()
    merge = repo.git("rev-parse", "HEAD").decode().strip()
    assert Event.objects.get(metadata__git_commit=merge).metadata["git"]["merge_commit"] == merge


def test_glob_and_rev_choose_the_files_and_the_history(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("theta.md", document("theta"), folder="agents/team")
    repo.write("iota.md", document("iota"), folder=AGENTS)
    first = repo.commit("Two folders", when="2024-07-01T10:00:00Z")
    repo.write("kappa.md", document("kappa"), folder="agents")
    repo.commit("Another", when="2024-07-02T10:00:00Z")

    replay(repo.path, glob="agents/**/*.md", rev=first)

    assert agent_get(name="theta").revision == 1
    assert Event.objects.count() == 1


@pytest.mark.parametrize("rev", ["no-such-branch", "--output=/tmp/pwned"])
def test_bad_repositories_and_revisions_exit_2(tmp_path, rev):
    repo = Repo(tmp_path / "repo")
    repo.write("lambda.md", document("lambda"))
    repo.commit("Add lambda", when="2024-08-01T10:00:00Z")

    error, _ = replay_failing(repo.path, rev=rev)
    assert error.returncode == 2
    error, _ = replay_failing(tmp_path / "not-a-repo")
    assert error.returncode == 2
    (tmp_path / "plain").mkdir()
    error, _ = replay_failing(tmp_path / "plain")
    assert error.returncode == 2
    assert Event.objects.count() == 0
    assert not Path("/tmp/pwned").exists()


def test_progress_off_a_terminal_is_plain_lines(history, monkeypatch):
    repo, _ = history
    monkeypatch.setattr(import_git_history, "PROGRESS_COMMITS", 2)
    err = io.StringIO()

    with pytest.raises(CommandError):
        call_command("import_git_history", str(repo.path), stdout=io.StringIO(), stderr=err)

    lines = err.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "replayed 2/6 commits",
        "replayed 4/6 commits",
    ]
    assert "commits/s" in lines[0] and "left" in lines[0]


def test_a_crash_keeps_the_batches_committed_before_it_and_a_rerun_finishes_the_replay(
    history, monkeypatch, tmp_path
):
    repo, shas = history
    monkeypatch.setattr(importing.batches, "BATCH_UNITS", 2)  # batches: add+revise | rename+delete | ...
    monkeypatch.setattr(importing.batches, "BATCH_SECONDS", 3600)
    apply = importing.git._Replay.apply

    def power_cut_at_the_deletion(self, commit):
        if commit.sha == shas["delete"]:
            raise RuntimeError("power cut")
        return apply(self, commit)

    monkeypatch.setattr(importing.git._Replay, "apply", power_cut_at_the_deletion)
    with pytest.raises(RuntimeError):
        replay(repo.path)
    imported = set(Event.objects.values_list("metadata__git_commit", flat=True))
    assert imported == {shas["add"], shas["revise"]}  # the rename's batch was rolled back whole

    monkeypatch.setattr(importing.git._Replay, "apply", apply)
    _, out = replay_failing(repo.path)

    assert "replayed 4 commits" in out and "(2 imported before)" in out
    planner = Event.objects.get(metadata__git_commit=shas["add"], metadata__git_path=f"{AGENTS}/planner.md")
    assert agent_get(name="architect").agent_id == planner.stream_id
    assert export(tmp_path / "head") == repo.files(shas["fix"])


def test_a_batch_whose_commit_records_cannot_be_written_stores_nothing_and_a_rerun_finishes(
    history, monkeypatch, tmp_path
):
    repo, shas = history
    monkeypatch.setattr(importing.batches, "BATCH_UNITS", 2)  # batches: add+revise | rename+delete | ...
    monkeypatch.setattr(importing.batches, "BATCH_SECONDS", 3600)
    record = importing.git._git_commits_record

    def failing_second_batch(*, root, commits):
        if any(commit == shas["rename"] for commit, _ in commits):
            raise RuntimeError("disk full")
        record(root=root, commits=commits)

    monkeypatch.setattr(importing.git, "_git_commits_record", failing_second_batch)
    with pytest.raises(RuntimeError):
        replay(repo.path)
    # The records are written last in each batch: the failed one took its events with it.
    imported = set(Event.objects.values_list("metadata__git_commit", flat=True))
    assert imported == {shas["add"], shas["revise"]}
    recorded = dict(GitImportedCommit.objects.values_list("commit", "position"))
    assert recorded == {
        sha: max(Event.objects.filter(metadata__git_commit=sha).values_list("position", flat=True))
        for sha in (shas["add"], shas["revise"])
    }

    monkeypatch.setattr(importing.git, "_git_commits_record", record)
    _, out = replay_failing(repo.path)

    assert "(2 imported before)" in out
    assert export(tmp_path / "head") == repo.files(shas["fix"])


def test_a_file_added_back_with_invalid_content_leaves_its_agent_archived(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("mu.md", document("mu"))
    repo.commit("Add mu", when="2024-09-01T10:00:00Z")
    repo.git("rm", "-q", f"{AGENTS}/mu.md")
    repo.commit("Drop mu", when="2024-09-02T10:00:00Z")
    repo.write("mu.md", b"---\nname: mu\n---\nno description\n")
    back = repo.commit("Bring mu back, broken", when="2024-09-03T10:00:00Z")

    _, out = replay_failing(repo.path)

    assert f"failed    {back[:12]} {AGENTS}/mu.md: line 1: description: is required" in out
    mu = agent_get(name="mu")
    assert mu.status == "archived" and mu.revision == 1
    assert not Event.objects.filter(type="agent.restored").exists()


def test_a_replay_that_overlaps_another_stops_instead_of_writing_old_content_over_new(history, monkeypatch):
    repo, shas = history
    replay_failing(repo.path)
    events = Event.objects.count()
    # A second run that looked before the first one stored anything, as two overlapping cron
    # runs would: it must not replay the history again over the newer content.
    newest = importing.git.git_newest_imported
    first_look = iter([None])
    monkeypatch.setattr(importing.git, "git_commits_imported", lambda *, root: set())
    monkeypatch.setattr(
        importing.git, "git_newest_imported", lambda *, root: next(first_look, newest(root=root))
    )

    error, _ = replay_failing(repo.path)

    assert error.returncode == 2
    assert f"another import of this repository stored commit {shas['fix']} meanwhile" in str(error)
    assert Event.objects.count() == events


def test_where_a_replay_resumes_is_read_from_the_imported_commits_table_not_from_the_log(history):
    repo, shas = history
    replay_failing(repo.path)
    root = importing.git_root_commit(repo=repo.path, rev="HEAD")
    stored = set(Event.objects.values_list("metadata__git_commit", flat=True))

    with CaptureQueriesContext(connection) as queries:
        newest = importing.git_newest_imported(root=root)
        imported = importing.git_commits_imported(root=root)

    assert newest == shas["fix"]
    assert imported == stored == {shas[key] for key in ("add", "revise", "rename", "delete", "bad", "fix")}
    assert len(queries) == 2 and not any("events_event" in query["sql"] for query in queries)
    newest_row = GitImportedCommit.objects.get(repository=root, commit=shas["fix"])
    assert (
        newest_row.position
        == Event.objects.filter(metadata__git_commit=shas["fix"]).latest("position").position
    )


def test_the_imported_commits_of_a_log_written_before_the_table_are_filled_from_it(history):
    repo, _ = history
    replay_failing(repo.path)
    recorded = set(GitImportedCommit.objects.values_list("repository", "commit", "position"))
    GitImportedCommit.objects.all().delete()

    fill = importlib.import_module("agents_app.migrations.0006_git_imported_commits_idempotency_purge")
    fill.fill_imported_commits(django_apps, None)

    assert set(GitImportedCommit.objects.values_list("repository", "commit", "position")) == recorded
