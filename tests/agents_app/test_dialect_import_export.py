"""The copilot dialect in files (issue 15 item 6): `*.agent.md` imports as copilot (named after
its file when the frontmatter has none), exports back under the same file name and bytes, git
replays pick it up, and a rebuild of the views gives the rows inline apply gave."""

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from agents_app.models import AgentCurrent, AgentNameClaim, AgentRevision
from agents_app.projections import CURRENT, REVISIONS
from agents_app.selectors import agent_get
from agents_app.services import (
    ChangeContext,
    agent_archive,
    agent_create,
    agent_restore,
    agent_revert,
    agent_revise,
)
from events.models import Event
from events.rebuild import projection_rebuild
from tests.agents_app.test_git_history import Repo, replay
from tests.conftest import agent_text

pytestmark = pytest.mark.django_db

CONTEXT = ChangeContext(actor="alice", source="cli", reason="test change")
# Nameless, CRLF, no final newline: the export must give these exact bytes back.
NAMELESS = (
    b"---\r\ndescription: Plans a change\r\ntools: ['read', 'search']\r\ntarget: vscode\r\n---\r\nPlan."
)
CLAUDE = agent_text("reviewer", extra="tools: Read\n").encode()


def run(command: str, *args: object, **options: object) -> str:
    out = io.StringIO()
    call_command(command, *[str(arg) for arg in args], stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def run_failing(command: str, *args: object) -> str:
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command(command, *[str(arg) for arg in args], stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def repository(tmp_path) -> Path:
    """A checkout with a nameless copilot agent, a Claude Code agent, and an issue template."""
    root = tmp_path / "checkout"
    (root / ".github" / "agents").mkdir(parents=True)
    (root / ".github" / "agents" / "planner.agent.md").write_bytes(NAMELESS)
    (root / ".github" / "ISSUE_TEMPLATE").mkdir()
    (root / ".github" / "ISSUE_TEMPLATE" / "bug.md").write_bytes(b"---\nname: Bug report\nabout: x\n---\n")
    (root / ".claude" / "agents").mkdir(parents=True)
    (root / ".claude" / "agents" / "reviewer.md").write_bytes(CLAUDE)
    return root


def test_importing_a_checkout_picks_each_agents_dialect_from_its_file_name(repository):
    out = run("import_agents", repository)

    assert "created 2, revised 0, unchanged 0, archived 0, failed 0" in out
    planner, reviewer = agent_get(name="planner"), agent_get(name="reviewer")
    assert (planner.dialect, planner.permissions["tools"], planner.content) == (
        "copilot",
        ["read", "search"],
        NAMELESS.decode(),
    )
    assert (reviewer.dialect, reviewer.permissions["tools"]) == ("claude-code", ["Read"])
    created = Event.objects.get(stream_id=planner.agent_id)
    assert (created.data["dialect"], created.data["name"]) == ("copilot", "planner")
    # .github holds issue templates with frontmatter: only its agents/ folder is read.
    assert "ISSUE_TEMPLATE" not in out


def test_reimporting_identical_copilot_files_stores_nothing(repository):
    run("import_agents", repository)
    events = Event.objects.count()

    out = run("import_agents", repository)

    assert "created 0, revised 0, unchanged 2" in out
    assert Event.objects.count() == events


def test_a_changed_nameless_copilot_file_revises_its_agent_and_keeps_its_name(repository):
    run("import_agents", repository)
    path = repository / ".github" / "agents" / "planner.agent.md"
    path.write_bytes(NAMELESS.replace(b"['read', 'search']", b"[]"))

    out = run("import_agents", repository)

    assert "created 0, revised 1, unchanged 1" in out
    planner = agent_get(name="planner")
    assert (planner.revision, planner.dialect, planner.permissions["tools"]) == (2, "copilot", [])


def test_export_writes_each_agent_under_the_file_name_of_its_dialect_with_the_stored_bytes(
    repository, tmp_path
):
    run("import_agents", repository)

    out = run("export_agents", tmp_path / "out")

    assert "exported 2 files" in out
    exported = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()}
    assert exported == {"planner.agent.md": NAMELESS, "reviewer.md": CLAUDE}


def test_export_then_import_round_trips_file_names_dialects_and_bytes(repository, tmp_path):
    run("import_agents", repository)
    run("export_agents", tmp_path / "out")
    AgentNameClaim.objects.all().delete()  # free the names: the second import creates again
    before = set(AgentCurrent.objects.values_list("name", "dialect", "content"))

    out = run("import_agents", tmp_path / "out")

    assert "created 2" in out
    assert set(AgentCurrent.objects.filter(revision=1).values_list("name", "dialect", "content")) == before


def test_an_invalid_name_from_a_file_name_fails_that_file_and_stores_nothing(tmp_path):
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "Bad Name.agent.md").write_bytes(NAMELESS)

    out = run_failing("import_agents", folder)

    assert "failed" in out and "'Bad Name'" in out and "from the file name" in out
    assert not Event.objects.exists() and not AgentNameClaim.objects.exists()


def test_a_named_copilot_file_whose_file_name_differs_is_imported_under_its_name_with_a_note(tmp_path):
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "Other File.agent.md").write_bytes(NAMELESS.replace(b"---\r\n", b"---\r\nname: planner\r\n", 1))

    out = run("import_agents", folder)

    assert "the file name differs from the name 'planner'" in out
    assert agent_get(name="planner").dialect == "copilot"


def test_a_copilot_file_cannot_revise_a_claude_code_agent_of_the_same_name(tmp_path):
    agent_create(content=agent_text("planner"), context=CONTEXT)
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "planner.agent.md").write_bytes(NAMELESS)

    out = run_failing("import_agents", folder)

    assert "dialect: the agent is a claude-code agent; this document is copilot" in out
    assert Event.objects.count() == 1


def test_a_git_replay_picks_up_github_agents_with_the_default_glob(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("planner.agent.md", NAMELESS, folder=".github/agents")
    repo.write("reviewer.md", CLAUDE)
    repo.commit("add agents", when="2026-01-05T10:00:00+00:00")
    repo.write(
        "planner.agent.md", NAMELESS.replace(b"target: vscode", b"target: github-copilot"), ".github/agents"
    )
    repo.commit("retarget", when="2026-01-06T10:00:00+00:00")

    out = replay(repo.path)

    assert "created 2, revised 1" in out
    planner = agent_get(name="planner")
    assert (planner.dialect, planner.revision, planner.permissions["target"]) == (
        "copilot",
        2,
        "github-copilot",
    )
    assert agent_get(name="reviewer").dialect == "claude-code"
    assert "created 0, revised 0" in replay(repo.path)  # a re-run stores nothing


@pytest.fixture
def copilot_history(django_capture_on_commit_callbacks):
    """Run history() with the projections' after-COMMIT catch-up, as a committed write would."""

    def run() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            history()

    return run


def history() -> None:
    """A copilot agent renamed by a named revision, reverted to its nameless first revision,
    archived and restored; and a Claude Code agent beside it."""
    change = agent_create(content=NAMELESS, context=CONTEXT, dialect="copilot", name="planner")
    named = NAMELESS.decode().replace("---\r\n", "---\r\nname: planner-two\r\n", 1)
    agent_revise(agent_id=change.agent_id, content=named, context=CONTEXT)
    agent_revert(agent_id=change.agent_id, to_revision=1, context=CONTEXT)
    # Restoring reads the name from the log (no claim while archived): the event's, not the content's.
    agent_archive(agent_id=change.agent_id, context=CONTEXT)
    agent_restore(agent_id=change.agent_id, context=CONTEXT)
    agent_create(content=agent_text("reviewer"), context=CONTEXT)


def test_a_revert_to_a_nameless_revision_keeps_the_name_the_agent_has(copilot_history):
    copilot_history()

    rows = list(
        AgentRevision.objects.order_by("revision").filter(dialect="copilot").values_list("revision", "name")
    )

    assert rows == [(1, "planner"), (2, "planner-two"), (3, "planner-two")]
    restored = agent_get(name="planner-two")
    assert (restored.revision, restored.status, restored.dialect) == (3, "active", "copilot")
    assert AgentNameClaim.objects.get(agent_id=restored.agent_id).name == "planner-two"


def view_rows() -> tuple[list, list]:
    skip = {"id", "generation"}
    current = [
        {key: value for key, value in row.items() if key not in skip}
        for row in AgentCurrent.objects.order_by("agent_id").values()
    ]
    revisions = [
        {key: value for key, value in row.items() if key not in skip}
        for row in AgentRevision.objects.order_by("agent_id", "revision").values()
    ]
    return current, revisions


def test_a_rebuild_gives_the_rows_inline_apply_gave_dialects_and_names_included(copilot_history):
    copilot_history()
    inline = view_rows()
    assert {row["dialect"] for row in inline[0]} == {"copilot", "claude-code"}

    for name in (CURRENT, REVISIONS):
        result = projection_rebuild(name=name, verify=True)
        assert result.differences == [] and result.swapped, (name, result)

    assert view_rows() == inline


def test_a_git_rename_of_a_nameless_copilot_file_renames_its_agent(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("planner.agent.md", NAMELESS, folder=".github/agents")
    repo.commit("add", when="2026-01-05T10:00:00+00:00")
    repo.git("mv", ".github/agents/planner.agent.md", ".github/agents/architect.agent.md")
    repo.commit("rename", when="2026-01-06T10:00:00+00:00")

    out = replay(repo.path)

    assert "created 1, revised 1" in out
    architect = agent_get(name="architect")
    assert (architect.revision, architect.content, architect.dialect) == (2, NAMELESS.decode(), "copilot")
    assert list(AgentRevision.objects.order_by("revision").values_list("name", flat=True)) == [
        "planner",
        "architect",
    ]
    assert AgentNameClaim.objects.get().name == "architect"


def test_a_git_rename_of_a_nameless_copilot_file_to_a_bad_name_fails_and_keeps_the_agent(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.write("planner.agent.md", NAMELESS, folder=".github/agents")
    repo.commit("add", when="2026-01-05T10:00:00+00:00")
    repo.git("mv", ".github/agents/planner.agent.md", ".github/agents/Bad Name.agent.md")
    repo.commit("rename", when="2026-01-06T10:00:00+00:00")

    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_git_history", str(repo.path), stdout=out, stderr=io.StringIO())

    assert "'Bad Name'" in out.getvalue() and "from the file name" in out.getvalue()
    assert agent_get(name="planner").revision == 1
