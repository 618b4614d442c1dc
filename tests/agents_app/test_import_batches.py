"""Bulk imports commit in batches: what one batch stores, and the after-commit work it does once.

These tests commit for real (transaction=True): the after-commit work of a batch only runs
after a COMMIT, which a test's own transaction never does. PostgreSQL only: emptying the
append-only tables after such a test takes TRUNCATE, which SQLite has not (its DELETE fires
the append-only triggers).
"""

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from agents_app.importing import batches as batches_module
from agents_app.models import AgentNameClaim, GitImportedCommit
from agents_app.selectors import agent_get
from bench.import_rates import build_repository, document
from events.models import Event
from events.projections import projection_names
from events.rebuild import projection_rebuild
from events.verification import events_verify

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def queued(monkeypatch) -> list[str]:
    """The catch-ups queued after commits (none run: the command's final wait catches up itself)."""
    calls: list[str] = []
    monkeypatch.setattr("events.tasks.projections_catch_up.delay", lambda *a, **k: calls.append("queued"))
    return calls


def import_folder(folder: Path, *args: str, failing: bool = False) -> str:
    out = io.StringIO()
    try:
        call_command("import_agents", str(folder), *args, stdout=out, stderr=io.StringIO(), verbosity=2)
    except CommandError:
        if not failing:
            raise
    else:
        assert not failing
    return out.getvalue()


def assert_views_equal_a_rebuild_and_the_log_verifies() -> None:
    for name in projection_names():
        result = projection_rebuild(name=name, verify=True, swap=False)
        assert result.differences == [], name
        assert result.problem is None
    assert events_verify().ok


def test_a_folder_import_queues_one_catch_up_per_batch_not_one_per_file(tmp_path, monkeypatch, queued):
    monkeypatch.setattr(batches_module, "BATCH_UNITS", 3)
    for index in range(7):
        (tmp_path / f"batch-agent-{index}.md").write_bytes(document(f"batch-agent-{index}", 0))

    import_folder(tmp_path)

    assert Event.objects.count() == 7
    assert queued == ["queued"] * 3  # batches of 3, 3 and 1 files: before, one per file (7)
    for index in range(7):
        assert agent_get(name=f"batch-agent-{index}") is not None  # the views are current
    assert_views_equal_a_rebuild_and_the_log_verifies()


def test_a_bad_file_in_a_batch_stores_nothing_and_the_others_of_that_batch_are_stored(
    tmp_path, monkeypatch, queued
):
    monkeypatch.setattr(batches_module, "BATCH_UNITS", 10)
    for index in range(4):
        (tmp_path / f"good-{index}.md").write_bytes(document(f"good-{index}", 0))
    (tmp_path / "good-2b.md").write_bytes(b"---\nname: good-2b\ntools: [unclosed\n---\nbody\n")
    (tmp_path / "twin.md").write_bytes(document("good-1", 0))  # a name another file of the run has

    output = import_folder(tmp_path, failing=True)

    assert "failed    " + str(tmp_path / "good-2b.md") in output
    assert f"failed    {tmp_path / 'twin.md'}: the name 'good-1' is also the name in" in output
    names = set(AgentNameClaim.objects.values_list("name", flat=True))
    assert names == {"good-0", "good-1", "good-2", "good-3"}
    assert Event.objects.count() == 4
    assert queued == ["queued"]  # one batch
    assert_views_equal_a_rebuild_and_the_log_verifies()


def test_a_dry_run_commits_nothing_and_queues_nothing(tmp_path, queued):
    for index in range(3):
        (tmp_path / f"dry-{index}.md").write_bytes(document(f"dry-{index}", 0))

    output = import_folder(tmp_path, "--dry-run")

    assert output.count("\ncreated   ") == 3
    assert Event.objects.count() == 0
    assert not AgentNameClaim.objects.exists()
    assert queued == []


def test_a_replay_records_each_commit_at_its_newest_event_and_queues_one_catch_up_per_batch(
    tmp_path, monkeypatch, queued
):
    monkeypatch.setattr(batches_module, "BATCH_UNITS", 4)
    repo = tmp_path / "repo"
    build_repository(repo, versions=10, files=3, prefix="replayed")

    call_command("import_git_history", str(repo), stdout=io.StringIO(), stderr=io.StringIO())

    assert Event.objects.count() == 10
    assert len(queued) == 3  # batches of 4, 4 and 2 commits
    newest: dict[str, int] = {}
    for commit, position in Event.objects.values_list("metadata__git_commit", "position"):
        newest[commit] = max(position, newest.get(commit, 0))
    recorded = dict(GitImportedCommit.objects.values_list("commit", "position"))
    assert recorded == newest
    assert_views_equal_a_rebuild_and_the_log_verifies()
