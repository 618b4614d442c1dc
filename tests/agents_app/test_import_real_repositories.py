"""Imports of collections as they are published: READMEs beside the agents, files to leave out,
local agents with the same names, a trial run first, and a terminal kept for the summary."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from agents_app.models import AgentNameClaim, GitImportedCommit
from agents_app.selectors import agent_get
from agents_app.services import ChangeContext, agent_create
from events.models import Event
from tests.agents_app.test_git_history import AGENTS, ANN, BOB, CAROL, Repo, document, replay, replay_failing
from tests.agents_app.test_import_export import GOOD, run, run_failing

pytestmark = pytest.mark.django_db

README = b"# Engineering agents\n\nA collection of subagents. Copy them into .claude/agents/.\n"


@pytest.fixture
def collection(tmp_path) -> Path:
    """A published collection: categories with agents and a README each, and a top README."""
    root = tmp_path / "collection"
    for category, samples in (("review", GOOD[:2]), ("writing", GOOD[2:])):
        folder = root / "categories" / category
        folder.mkdir(parents=True)
        (folder / "README.md").write_bytes(README)
        for sample in samples:
            shutil.copyfile(sample, folder / sample.name)
    (root / "README.md").write_bytes(README)
    (root / "CONTRIBUTING.md").write_bytes(b"")  # empty: no frontmatter either
    return root


def counts(out: str) -> str:
    """The totals of a summary line, without the timing."""
    summary = [line for line in out.splitlines() if "created " in line and ", failed " in line][-1]
    return summary[summary.index("created ") :].split(" (")[0]


# --- import_agents -------------------------------------------------------------------------


def test_readmes_beside_the_agents_are_skipped_not_failed_and_the_import_exits_0(collection):
    out, _ = run("import_agents", collection)  # raises CommandError on a non-zero exit

    assert counts(out) == "created 5, revised 0, unchanged 0, archived 0, failed 0, skipped 4"
    assert "skipped 4 (4 not agent files)" in out
    assert "README" not in out  # routine skips are listed only with -v 2
    assert AgentNameClaim.objects.count() == 5

    out, _ = run("import_agents", collection, verbosity=2)

    readme = collection / "categories" / "review" / "README.md"
    assert f"skipped   {readme}: not an agent file (no frontmatter)" in out


def test_a_file_with_frontmatter_that_is_invalid_still_fails_with_its_reason(collection):
    bad = collection / "categories" / "review" / "broken.md"
    bad.write_bytes(b"---\nname: Broken Agent\ndescription: x\n---\nbody\n")

    error, out = run_failing("import_agents", collection)

    assert error.returncode == 1
    assert f"failed    {bad}: line 2: name: must be lowercase letters" in out
    assert "failed 1, skipped 4" in out


def test_exclude_leaves_out_files_by_path_under_the_folder_or_by_name(collection):
    (collection / "drafts").mkdir()
    (collection / "drafts" / "draft.md").write_bytes(b"---\nname: Not Ready\n---\n")

    out, _ = run("import_agents", collection, exclude=["drafts/*", "README.md", "crlf-*"])

    assert counts(out) == "created 4, revised 0, unchanged 0, archived 0, failed 0, skipped 1"
    assert not AgentNameClaim.objects.filter(name="crlf-reviewer").exists()


def test_a_dry_run_reports_what_the_real_run_then_does_and_stores_nothing(collection):
    agent_create(
        content=GOOD[0].read_bytes().replace(b"\n", b"\n\n", 1),
        context=ChangeContext(actor="alice", source="admin"),
    )
    events = Event.objects.count()

    dry, _ = run("import_agents", collection, dry_run=True, verbosity=2)

    assert Event.objects.count() == events
    assert AgentNameClaim.objects.count() == 1
    assert dry.splitlines()[-1].startswith("dry run, nothing stored: ")
    assert f"would revise 1 existing agent(s): {GOOD[0].stem} (revision 2)" in dry

    real, _ = run("import_agents", collection, verbosity=2)

    assert counts(dry) == counts(real) == "created 4, revised 1, unchanged 0, archived 0, failed 0, skipped 4"
    # Line for line the same outcomes, the summary apart.
    assert dry.splitlines()[0].startswith("dry run: ")
    assert dry.splitlines()[1:-2] == real.splitlines()[:-2]
    assert f"revised 1 existing agent(s): {GOOD[0].stem} (revision 2)" in real
    assert Event.objects.count() == events + 5


def test_only_new_creates_the_new_names_and_leaves_existing_agents_alone(collection):
    local = GOOD[0].read_bytes().replace(b"\n", b"\n\n", 1)
    agent_create(content=local, context=ChangeContext(actor="alice", source="admin"))

    out, _ = run("import_agents", collection, only_new=True)

    path = collection / "categories" / "review" / GOOD[0].name
    assert f"skipped   {path}: agent '{GOOD[0].stem}' exists (--only-new)" in out
    assert counts(out) == "created 4, revised 0, unchanged 0, archived 0, failed 0, skipped 5"
    assert "existing agent" not in out
    assert agent_get(name=GOOD[0].stem).revision == 1


# --- import_git_history ------------------------------------------------------------------------


@pytest.fixture
def published(tmp_path) -> Repo:
    """A repository laid out as categories/*/*.md with a README in each category, edited often."""
    repo = Repo(tmp_path / "published")
    repo.write("README.md", README, folder="categories/review")
    repo.write("reviewer.md", document("reviewer"), folder="categories/review")
    repo.commit("Add the reviewer", author=ANN, when="2024-03-01T10:00:00Z")
    repo.write("README.md", README + b"\n- reviewer\n", folder="categories/review")
    repo.write("draft-planner.md", document("planner"), folder="categories/review")
    repo.commit("List it in the README, start a planner", author=BOB, when="2024-03-02T10:00:00Z")
    repo.write("reviewer.md", document("reviewer", tag=" Gently."), folder="categories/review")
    repo.write("README.md", README + b"\n- reviewer, gently\n", folder="categories/review")
    repo.commit("Gentler reviewer", author=CAROL, when="2024-03-03T10:00:00Z")
    return repo


def test_a_replay_skips_readmes_at_every_commit_and_exits_0(published):
    out = replay(published.path, glob="categories/*/*.md")

    assert "created 2, revised 1, unchanged 0, archived 0, failed 0, skipped 3 (3 not agent files)" in out
    assert "README" not in out
    assert Event.objects.count() == 3


def test_a_replay_leaves_out_excluded_files(published):
    out = replay(published.path, glob="categories/*/*.md", exclude=["**/draft-*.md", "**/README.md"])

    assert "created 1, revised 1, unchanged 0, archived 0, failed 0" in out
    assert not AgentNameClaim.objects.filter(name="planner").exists()


def test_a_replay_dry_run_counts_what_the_real_replay_stores_and_stores_nothing(published):
    dry = replay(published.path, "--dry-run", glob="categories/*/*.md", verbosity=2)

    assert Event.objects.count() == 0
    assert GitImportedCommit.objects.count() == 0
    assert dry.splitlines()[-1].startswith("dry run, nothing stored: replayed 3 commits")

    real = replay(published.path, glob="categories/*/*.md", verbosity=2)

    # The third commit revises the agent the first created: the dry run saw it too.
    assert counts(dry) == counts(real) == "created 2, revised 1, unchanged 0, archived 0, failed 0, skipped 3"
    assert dry.splitlines()[1:-1] == real.splitlines()[:-1]
    assert Event.objects.count() == 3
    # After a dry run a real run starts from the beginning: nothing was recorded as imported.
    assert "(0 imported before)" in real


def test_a_name_held_by_an_agent_the_replay_did_not_create_is_reported_once(tmp_path):
    agent_create(
        content=document("epsilon", description="made in the admin"),
        context=ChangeContext(actor="alice", source="admin"),
    )
    repo = Repo(tmp_path / "repo")
    for number in range(4):
        repo.write("epsilon.md", document("epsilon", tag=f" Edit {number}."))
        repo.write("zeta.md", document("zeta", tag=f" Edit {number}."))
        repo.commit(f"Edit {number}", when=f"2024-05-0{number + 1}T10:00:00Z")

    error, out = replay_failing(repo.path)

    assert error.returncode == 1
    failures = [line for line in out.splitlines() if line.startswith("failed ")]
    assert len(failures) == 1
    assert failures[0].endswith(
        f"{AGENTS}/epsilon.md: the name 'epsilon' is held by an agent this replay did not create:"
        " this file's changes are not imported while it is (the count is in the summary)"
    )
    assert (
        f"name held: {AGENTS}/epsilon.md: 4 change(s) not imported" in out
        and "the name 'epsilon' is held by another agent" in out
    )
    assert "created 1, revised 3, unchanged 0, archived 0, failed 1, skipped 3" in out
    assert agent_get(name="epsilon").revision == 1  # the local agent is untouched


# --- the terminal ----------------------------------------------------------------------------------


@pytest.mark.postgres  # transaction=True needs TRUNCATE: the log refuses DELETE
@pytest.mark.django_db(transaction=True)
def test_commands_log_no_line_per_projection_catch_up(collection, published, caplog, capfd):
    # The batches really commit: each one's on-commit hook queues a projection catch-up,
    # which runs in process (eager) and which Celery traces at INFO.
    out, err = run("import_agents", collection)
    replayed = replay(published.path, glob="categories/*/*.md")

    noisy = [r for r in caplog.records if r.name.startswith(("celery", "kombu")) and r.levelname == "INFO"]
    assert noisy == []
    assert not [r for r in caplog.records if "No hostname was supplied" in r.getMessage()]
    captured = capfd.readouterr()
    assert "succeeded in" not in captured.err + captured.out + out + err + replayed
    assert Event.objects.count() == 8


def test_the_commands_in_their_own_process_print_the_summary_and_no_log_lines(
    collection, published, tmp_path
):
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("REDIS", "CELERY", "TEST_"))
    }
    environment.update(
        DEBUG="1",
        LOG_FORMAT="json",
        DATABASE_URL=f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
    )

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    assert manage("migrate", "-v", "0").returncode == 0
    imported = manage("import_agents", str(collection))
    replayed = manage("import_git_history", str(published.path), "--glob", "categories/*/*.md")

    assert imported.returncode == 0, imported.stderr
    assert imported.stderr == ""
    assert imported.stdout.splitlines()[-1].startswith("created 5, revised 0, unchanged 0, archived 0")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stderr == ""
    assert replayed.stdout.splitlines() == [replayed.stdout.splitlines()[-1]]  # just the summary
    assert "created 2, revised 1" in replayed.stdout


def test_a_symbolic_link_in_the_replayed_folder_is_skipped_unless_it_replaces_an_agent_file(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("kappa.md", document("kappa"))
    (repo.path / AGENTS / "README.md").symlink_to("../../README.md")
    repo.write("README.md", README, folder=".")
    linked = repo.commit("Add kappa and link the README", when="2024-07-01T10:00:00Z")
    (repo.path / AGENTS / "kappa.md").unlink()
    (repo.path / AGENTS / "kappa.md").symlink_to("README.md")
    replaced = repo.commit("Replace kappa by a link", when="2024-07-02T10:00:00Z")

    error, out = replay_failing(repo.path)

    assert f"skipped   {linked[:12]} {AGENTS}/README.md: not a regular file (mode 120000)" in out
    assert f"failed    {replaced[:12]} {AGENTS}/kappa.md: not a regular file (mode 120000)" in out
    assert error.returncode == 1
    assert "created 1, revised 0, unchanged 0, archived 0, failed 1, skipped 1" in out
