"""`import_agents` and `export_agents`: files in, the same bytes out.

The samples (tests/agents_app/import_samples) hold CRLF, a missing final newline, non-ASCII
text, a description strict YAML rejects, comments and quoting; `bad/` holds an invalid file.
The commands bring the projections up to date themselves before they return, so these tests
read the views right after `call_command` with no on-commit capture: inside the test
transaction nothing else would.
"""

import datetime as dt
import filecmp
import io
import os
import shutil
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from agents_app import importing
from agents_app.importing import ImportRefused, agent_file_path
from agents_app.models import AgentNameClaim
from agents_app.selectors import agent_get, revision_list
from agents_app.services import ChangeContext, agent_archive, agent_create, agent_label_move
from events.models import Event

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).parent / "import_samples"
GOOD = sorted(SAMPLES.glob("*.md"))
BAD = SAMPLES / "bad" / "broken-agent.md"
CONTEXT = ChangeContext(actor="alice", source="cli", reason="test change")


def run(command: str, *args: object, **options: object) -> tuple[str, str]:
    """Run a command; (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *[str(arg) for arg in args], stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def run_failing(command: str, *args: object, **options: object) -> tuple[CommandError, str]:
    """Run a command that must fail; (the CommandError, stdout)."""
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command(command, *[str(arg) for arg in args], stdout=out, stderr=io.StringIO(), **options)
    return failure.value, out.getvalue()


def same_bytes(left: Path, right: Path) -> bool:
    return filecmp.cmp(left, right, shallow=False) and left.read_bytes() == right.read_bytes()


@pytest.fixture
def folder(tmp_path) -> Path:
    """A writable copy of the good samples."""
    target = tmp_path / "agents"
    target.mkdir()
    for path in GOOD:
        shutil.copyfile(path, target / path.name)
    return target


def test_samples_cover_the_awkward_cases():
    raw = {path.name: path.read_bytes() for path in GOOD}
    assert b"\r\n" in raw["crlf-reviewer.md"] and b"\n" not in raw["crlf-reviewer.md"].replace(b"\r\n", b"")
    assert not raw["terse-helper.md"].endswith(b"\n")
    assert "é".encode() in raw["unicode-writer.md"] and "漢字".encode() in raw["unicode-writer.md"]
    assert "🚀".encode() in raw["unicode-writer.md"]
    assert b"description: Use this agent when: the user" in raw["lenient-triager.md"]
    assert b"# Planner agent" in raw["commented-planner.md"]


def test_import_creates_each_file_and_export_gives_back_the_same_bytes(tmp_path):
    out, _ = run("import_agents", *GOOD, actor="importer")

    for path in GOOD:
        assert f"created   {path} -> {path.stem} (revision 1)" in out
    assert "created 5, revised 0, unchanged 0, archived 0, failed 0" in out
    # The views are current without any on-commit hook having run: the command caught up.
    assert agent_get(name="unicode-writer").revision == 1
    assert agent_get(name="lenient-triager").warnings  # read leniently, with a warning

    out, _ = run("export_agents", tmp_path / "export")

    assert "exported 5 files" in out
    exported = sorted((tmp_path / "export").iterdir())
    assert [path.name for path in exported] == [path.name for path in GOOD]
    for path in GOOD:
        assert same_bytes(path, tmp_path / "export" / path.name), path.name


def test_import_records_actor_source_reason_and_path_in_each_event():
    run("import_agents", SAMPLES / "terse-helper.md", actor="ops-bot", reason="seed the registry")
    run("import_agents", SAMPLES / "crlf-reviewer.md")

    first, second = Event.objects.order_by("position")
    assert first.metadata["actor"] == "ops-bot"
    assert first.metadata["source"] == "import"
    assert first.metadata["reason"] == "seed the registry"
    assert first.metadata["import_path"] == str(SAMPLES / "terse-helper.md")
    assert second.metadata["actor"] == "system"  # the default
    assert second.metadata["reason"] == f"import of {SAMPLES / 'crlf-reviewer.md'}"
    assert revision_list(agent_id=first.stream_id).get().actor == "ops-bot"


def test_a_second_import_of_the_same_files_is_all_unchanged_and_stores_nothing(folder):
    run("import_agents", folder)
    events = Event.objects.count()

    out, _ = run("import_agents", folder)

    assert "created 0, revised 0, unchanged 5, archived 0, failed 0" in out
    assert sum(line.startswith("unchanged ") for line in out.splitlines()) == 5
    assert Event.objects.count() == events


def test_a_changed_file_revises_its_agent_and_export_gives_the_new_bytes(folder, tmp_path):
    run("import_agents", folder)
    changed = folder / "crlf-reviewer.md"
    new_bytes = changed.read_bytes().replace(b"You review diffs.", b"You review diffs, gently.")
    changed.write_bytes(new_bytes)

    out, _ = run("import_agents", folder)

    assert f"revised   {changed} -> crlf-reviewer (revision 2)" in out
    assert "created 0, revised 1, unchanged 4, archived 0, failed 0" in out
    assert agent_get(name="crlf-reviewer").revision == 2
    run("export_agents", tmp_path / "export")
    assert (tmp_path / "export" / "crlf-reviewer.md").read_bytes() == new_bytes


def test_a_bad_file_is_reported_with_its_reason_stores_nothing_and_exits_1():
    error, out = run_failing("import_agents", SAMPLES)

    assert error.returncode == 1
    assert f"failed    {BAD}: line 2: name: must be lowercase letters" in out
    assert "created 5, revised 0, unchanged 0, archived 0, failed 1" in out
    # The good files went in; nothing of the bad one did.
    assert Event.objects.count() == 5
    assert not AgentNameClaim.objects.filter(name__icontains="broken").exists()
    assert not any("Broken Agent" in event.data["content"] for event in Event.objects.all())


def test_a_file_with_frontmatter_that_is_never_closed_fails_with_the_problem_and_line(tmp_path):
    path = tmp_path / "half.md"
    path.write_bytes(b"---\nname: half\ndescription: never closed\n")

    error, out = run_failing("import_agents", path)

    assert error.returncode == 1
    assert f"failed    {path}: line 1: content: the frontmatter opened on line 1 is never closed" in out
    assert Event.objects.count() == 0


def test_hidden_folders_non_markdown_files_and_symlinks_out_of_the_folder_are_not_read(folder, tmp_path):
    (folder / ".git").mkdir()
    (folder / ".git" / "stray.md").write_bytes(b"---\nname: stray\ndescription: x\n---\n")
    (folder / "notes.txt").write_bytes(b"---\nname: notes\ndescription: x\n---\n")
    outside = tmp_path / "outside.md"
    outside.write_bytes(b"---\nname: outside\ndescription: x\n---\n")
    (folder / "linked-out.md").symlink_to(outside)
    (folder / "nested").mkdir()
    (folder / "nested" / "linked-in.md").symlink_to(folder / "terse-helper.md")
    (folder / "linked-folder").symlink_to(tmp_path, target_is_directory=True)

    out, _ = run("import_agents", folder, folder / "terse-helper.md")

    assert f"skipped   {folder / 'linked-out.md'}: symbolic link to outside {folder}" in out
    assert f"skipped   {folder / 'linked-folder'}: symbolic link to a folder" in out
    names = set(AgentNameClaim.objects.values_list("name", flat=True))
    assert names == {path.stem for path in GOOD}
    # A link to a file inside the folder is followed; here it is the same file as another.
    helper = folder / "terse-helper.md"
    assert f"skipped   {folder / 'nested' / 'linked-in.md'}: the same file as {helper}" in out
    assert f"skipped   {helper}: the same file as {helper}" in out
    assert "created 5, revised 0, unchanged 0, archived 0, failed 0, skipped 4" in out


def test_two_files_with_the_same_name_in_one_run_fail_the_second(folder, tmp_path):
    other = tmp_path / "copy"
    other.mkdir()
    (other / "terse-helper.md").write_bytes(b"---\nname: terse-helper\ndescription: another\n---\n")

    error, out = run_failing("import_agents", folder, other)

    assert error.returncode == 1
    assert f"the name 'terse-helper' is also the name in {folder / 'terse-helper.md'}" in out
    assert agent_get(name="terse-helper").revision == 1


def test_a_name_taken_after_the_chunk_was_looked_up_revises_its_agent_and_a_freed_one_is_created(
    tmp_path, monkeypatch
):
    """The chunk's name lookup is read before the writes: force it to be stale both ways."""
    taken = agent_create(content=b"---\nname: taken-meanwhile\ndescription: first\n---\n", context=CONTEXT)
    freed = agent_create(content=b"---\nname: freed-meanwhile\ndescription: first\n---\n", context=CONTEXT)
    (tmp_path / "taken-meanwhile.md").write_bytes(b"---\nname: taken-meanwhile\ndescription: second\n---\n")
    (tmp_path / "freed-meanwhile.md").write_bytes(b"---\nname: freed-meanwhile\ndescription: second\n---\n")
    looked_up = importing.folders._names_held

    def stale(files):
        held = looked_up(files)
        assert held == {"taken-meanwhile", "freed-meanwhile"}
        # Between the lookup and the writes: the archive frees one name; the other looks free.
        agent_archive(agent_id=freed.agent_id, context=CONTEXT)
        return {"freed-meanwhile"}

    monkeypatch.setattr(importing.folders, "_names_held", stale)

    out, _ = run("import_agents", tmp_path, "--verbosity", "2")

    assert "revised   " in out and "-> taken-meanwhile (revision 2)" in out
    assert "created   " in out and "-> freed-meanwhile (revision 1)" in out
    assert agent_get(name="taken-meanwhile").agent_id == taken.agent_id  # not a second agent
    assert agent_get(name="freed-meanwhile").agent_id != freed.agent_id  # a new one; the old stays archived
    assert AgentNameClaim.objects.count() == 2


def test_a_file_named_unlike_its_agent_says_so(tmp_path):
    path = tmp_path / "old-name.md"
    path.write_bytes(b"---\nname: new-name\ndescription: x\n---\n")

    out, _ = run("import_agents", path)

    assert "-> new-name (revision 1); the file name differs from the name 'new-name'" in out


def test_missing_paths_and_bad_actors_are_bad_arguments_that_store_nothing(tmp_path):
    error, _ = run_failing("import_agents", SAMPLES / "terse-helper.md", tmp_path / "missing")
    assert error.returncode == 2
    error, _ = run_failing("import_agents", SAMPLES / "terse-helper.md", actor="x" * 201)
    assert error.returncode == 2
    assert Event.objects.count() == 0


def test_read_your_writes_is_back_on_after_the_bulk_import():
    assert settings.PROJECTION_READ_YOUR_WRITES
    run("import_agents", SAMPLES / "terse-helper.md")
    assert settings.PROJECTION_READ_YOUR_WRITES


def test_export_with_a_label_writes_the_labelled_revision_and_notes_agents_without_it(folder, tmp_path):
    run("import_agents", folder)
    planner = agent_get(name="commented-planner")
    agent_label_move(agent_id=planner.agent_id, label="production", revision=1, context=CONTEXT)
    changed = folder / "commented-planner.md"
    changed.write_bytes(changed.read_bytes().replace(b"3. Write it down.", b"3. Write it all down."))
    run("import_agents", folder)

    out, _ = run("export_agents", tmp_path / "prod", ref="production")

    assert "exported 1 files" in out and "skipped 4" in out
    assert "skipped   crlf-reviewer.md: agent 'crlf-reviewer' has no label 'production'" in out
    assert [path.name for path in (tmp_path / "prod").iterdir()] == ["commented-planner.md"]
    assert same_bytes(tmp_path / "prod" / "commented-planner.md", SAMPLES / "commented-planner.md")

    run("export_agents", tmp_path / "second", ref="2")
    assert sorted(path.name for path in (tmp_path / "second").iterdir()) == ["commented-planner.md"]
    assert (tmp_path / "second" / "commented-planner.md").read_bytes() == changed.read_bytes()


def test_export_at_a_past_instant_gives_the_content_of_then(folder, tmp_path):
    run("import_agents", folder / "terse-helper.md")
    time.sleep(0.01)  # SQLite keeps milliseconds: keep the instants apart
    before_change = timezone.now()
    time.sleep(0.01)
    changed = folder / "terse-helper.md"
    old_bytes = changed.read_bytes()
    changed.write_bytes(old_bytes + b" Now with more.")
    run("import_agents", folder)

    run("export_agents", tmp_path / "then", at=before_change.isoformat())
    run("export_agents", tmp_path / "at-ref", ref=f"@{before_change.isoformat()}")
    run("export_agents", tmp_path / "now")
    run("export_agents", tmp_path / "before", at="2000-01-01T00:00:00Z")

    assert [path.name for path in (tmp_path / "then").iterdir()] == ["terse-helper.md"]
    assert (tmp_path / "then" / "terse-helper.md").read_bytes() == old_bytes
    # --ref @time is per agent: agents with no revision by then are skipped.
    assert [path.name for path in (tmp_path / "at-ref").iterdir()] == ["terse-helper.md"]
    assert (tmp_path / "at-ref" / "terse-helper.md").read_bytes() == old_bytes
    assert (tmp_path / "now" / "terse-helper.md").read_bytes() == old_bytes + b" Now with more."
    assert len(list((tmp_path / "now").iterdir())) == 5
    assert list((tmp_path / "before").iterdir()) == []


def test_archived_agents_are_exported_only_with_include_archived(folder, tmp_path):
    run("import_agents", folder)
    helper = agent_get(name="terse-helper")
    agent_archive(agent_id=helper.agent_id, context=CONTEXT)
    run("import_agents", folder / "crlf-reviewer.md")  # catches the views up

    run("export_agents", tmp_path / "active")
    out, _ = run("export_agents", tmp_path / "all", include_archived=True, verbosity=2)

    assert not (tmp_path / "active" / "terse-helper.md").exists()
    assert len(list((tmp_path / "active").iterdir())) == 4
    assert "written   terse-helper.md -> terse-helper (revision 1); archived" in out
    assert same_bytes(tmp_path / "all" / "terse-helper.md", folder / "terse-helper.md")

    # As at now the archive is in effect too; the flag brings the agent back.
    now = timezone.now().isoformat()
    run("export_agents", tmp_path / "at", at=now)
    run("export_agents", tmp_path / "at-all", at=now, include_archived=True)
    assert not (tmp_path / "at" / "terse-helper.md").exists()
    assert (tmp_path / "at-all" / "terse-helper.md").exists()


def test_an_archived_name_imported_again_becomes_a_new_agent(folder):
    run("import_agents", folder / "terse-helper.md")
    old = agent_get(name="terse-helper")
    agent_archive(agent_id=old.agent_id, context=CONTEXT)

    out, _ = run("import_agents", folder / "terse-helper.md")

    assert "created   " in out
    assert agent_get(name="terse-helper").agent_id != old.agent_id


def test_export_refuses_names_that_would_write_outside_the_folder(tmp_path):
    for name in ("../evil", "a/b", "/etc/passwd", "..", "", "UPPER"):
        with pytest.raises(ImportRefused):
            agent_file_path(directory=tmp_path, name=name)
    assert agent_file_path(directory=tmp_path, name="ok-name") == tmp_path / "ok-name.md"


def test_export_does_not_follow_a_symlink_in_the_folder_to_outside(folder, tmp_path):
    run("import_agents", folder)
    target = tmp_path / "export"
    target.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    (target / "terse-helper.md").symlink_to(victim)

    error, out = run_failing("export_agents", target)

    assert error.returncode == 1
    assert "failed    terse-helper.md:" in out and "outside" in out
    assert "exported 4 files" in out
    assert victim.read_bytes() == b"keep me"
    assert (target / "terse-helper.md").is_symlink()


def test_export_creates_the_folder_and_leaves_other_files_alone(folder, tmp_path):
    run("import_agents", folder / "terse-helper.md")
    target = tmp_path / "deep" / "er" / "out"
    run("export_agents", target)
    (target / "unrelated.txt").write_bytes(b"mine")

    run("export_agents", target)

    assert sorted(path.name for path in target.iterdir()) == ["terse-helper.md", "unrelated.txt"]


@pytest.mark.parametrize(
    "options",
    [
        {"ref": "Not A Ref!"},
        {"at": "yesterday"},
        {"at": "2026-01-01T00:00:00"},  # no time zone
        {"ref": "latest", "at": "2026-01-01T00:00:00Z"},
    ],
)
def test_bad_export_arguments_exit_2_and_write_nothing(tmp_path, options):
    agent_create(content=SAMPLES.joinpath("terse-helper.md").read_bytes(), context=CONTEXT)

    error, _ = run_failing("export_agents", tmp_path / "out", **options)

    assert error.returncode == 2
    assert not (tmp_path / "out").exists()


def test_export_into_a_path_that_is_a_file_exits_2(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    error, _ = run_failing("export_agents", tmp_path / "file")
    assert error.returncode == 2


def test_exported_files_are_plain_files_with_the_umask_permissions(folder, tmp_path):
    run("import_agents", folder / "terse-helper.md")
    run("export_agents", tmp_path / "out")
    mode = os.stat(tmp_path / "out" / "terse-helper.md").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_export_at_uses_business_time_for_archives(tmp_path):
    """An archive whose occurred_at is in the past (e.g. a git deletion) counts from then."""
    created_at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    archived_at = dt.datetime(2020, 6, 1, tzinfo=dt.UTC)
    content = SAMPLES.joinpath("terse-helper.md").read_bytes()
    change = agent_create(
        content=content, context=ChangeContext(actor="a", source="git", occurred_at=created_at)
    )
    agent_archive(
        agent_id=change.agent_id, context=ChangeContext(actor="a", source="git", occurred_at=archived_at)
    )

    run("export_agents", tmp_path / "spring", at="2020-03-01T00:00:00Z")
    run("export_agents", tmp_path / "summer", at="2020-07-01T00:00:00Z")

    assert [path.name for path in (tmp_path / "spring").iterdir()] == ["terse-helper.md"]
    assert list((tmp_path / "summer").iterdir()) == []
