"""Who wrote each replayed change and when it landed: a generated repository with merges.

The first-parent line of `main`:

    2024-01-01  Ann adds alpha and beta                       (plain)
    2024-01-04  Erin edits alpha line 10                      (plain; newer than the side commits)
    2024-01-05  Mia merges `feature`: Bob (01-02) and Carol (01-03) each edited alpha
    2024-01-06  Mia merges `docs`: Dave edited docs/guide.txt (no agent file)
    2024-01-07  Mia merges `rename`: Dave renamed beta.md to omega.md (name omega)
    2024-01-08  Ann edits omega                               (plain)
"""

import pytest

from agents_app.importing import git as git_module
from agents_app.provenance import provenance_from_metadata
from agents_app.selectors import agent_get, revision_list
from events.models import Event
from tests.agents_app.test_git_history import AGENTS, ANN, BOB, CAROL, Repo, replay, utc

pytestmark = pytest.mark.django_db

DAVE = ("Dave Doe", "dave@example.com")
ERIN = ("Erin", "erin@example.org")
MIA = ("Mia Merger", "mia@example.com")


def person(who: tuple[str, str]) -> str:
    return f"{who[0]} <{who[1]}>"


def lines_document(name: str, edits: dict[int, str] | None = None) -> bytes:
    """An agent file of 12 body lines; `edits` replaces lines (far apart lines merge cleanly)."""
    body = [f"Line {number}: do the work well." for number in range(12)]
    for number, text in (edits or {}).items():
        body[number] = text
    return f"---\nname: {name}\ndescription: Helps\n---\n".encode() + "\n".join(body).encode() + b"\n"


def merge(repo: Repo, branch: str, *, when: str) -> str:
    repo.git(
        "merge", "-q", "--no-ff", branch, "-m", f"Merge branch '{branch}'",
        env={"GIT_AUTHOR_NAME": MIA[0], "GIT_AUTHOR_EMAIL": MIA[1],
             "GIT_COMMITTER_NAME": MIA[0], "GIT_COMMITTER_EMAIL": MIA[1],
             "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when},
    )  # fmt: skip
    return repo.git("rev-parse", "HEAD").decode().strip()


@pytest.fixture
def merged(tmp_path) -> tuple[Repo, dict[str, str]]:
    repo = Repo(tmp_path / "repo")
    shas: dict[str, str] = {}
    repo.write("alpha.md", lines_document("alpha"))
    repo.write("beta.md", lines_document("beta"))
    shas["add"] = repo.commit("Add alpha and beta", author=ANN, when="2024-01-01T10:00:00Z")

    repo.git("checkout", "-q", "-b", "feature")
    repo.write("alpha.md", lines_document("alpha", {2: "Line 2: by Bob."}))
    shas["bob"] = repo.commit("Bob edits alpha", author=BOB, when="2024-01-02T10:00:00Z")
    repo.write("alpha.md", lines_document("alpha", {2: "Line 2: by Bob.", 4: "Line 4: by Carol."}))
    shas["carol"] = repo.commit(
        "Carol edits alpha", author=CAROL, authored="2024-01-03T08:00:00+01:00", when="2024-01-03T10:00:00Z"
    )

    repo.git("checkout", "-q", "main")
    repo.write("alpha.md", lines_document("alpha", {10: "Line 10: by Erin."}))
    shas["erin"] = repo.commit("Erin edits alpha", author=ERIN, when="2024-01-04T10:00:00Z")
    shas["merge_feature"] = merge(repo, "feature", when="2024-01-05T10:00:00Z")

    repo.git("checkout", "-q", "-b", "docs")
    repo.write("guide.txt", b"How to use the agents.\n", folder="docs")
    shas["docs"] = repo.commit("Dave writes a guide", author=DAVE, when="2024-01-05T12:00:00Z")
    repo.git("checkout", "-q", "main")
    shas["merge_docs"] = merge(repo, "docs", when="2024-01-06T10:00:00Z")

    repo.git("checkout", "-q", "-b", "rename")
    repo.git("mv", f"{AGENTS}/beta.md", f"{AGENTS}/omega.md")
    repo.write("omega.md", lines_document("omega"))
    shas["dave"] = repo.commit("Dave renames beta to omega", author=DAVE, when="2024-01-06T12:00:00Z")
    repo.git("checkout", "-q", "main")
    shas["merge_rename"] = merge(repo, "rename", when="2024-01-07T10:00:00Z")

    repo.write("omega.md", lines_document("omega", {6: "Line 6: by Ann."}))
    shas["ann"] = repo.commit("Ann edits omega", author=ANN, when="2024-01-08T10:00:00Z")
    return repo, shas


def git_metadata(agent: str) -> list[dict]:
    stream = agent_get(name=agent).agent_id
    return [event.metadata for event in Event.objects.filter(stream_id=stream).order_by("stream_version")]


def test_each_replayed_change_names_who_wrote_it_and_when_it_landed(merged):
    repo, _ = merged

    replay(repo.path)

    alpha = revision_list(agent_id=agent_get(name="alpha").agent_id)
    assert [(row.revision, row.actor, row.occurred_at) for row in alpha] == [
        (1, f"git:{person(ANN)}", utc("2024-01-01T10:00:00Z")),
        (2, f"git:{person(ERIN)}", utc("2024-01-04T10:00:00Z")),
        # The merge is credited to the newest side commit that touched alpha (Carol), not to
        # Mia who merged it, nor to Erin whose commit is newer but was on main already.
        (3, f"git:{person(CAROL)}", utc("2024-01-05T10:00:00Z")),
    ]
    omega = revision_list(agent_id=agent_get(name="omega").agent_id)
    assert [(row.revision, row.name, row.actor, row.occurred_at) for row in omega] == [
        (1, "beta", f"git:{person(ANN)}", utc("2024-01-01T10:00:00Z")),
        (2, "omega", f"git:{person(DAVE)}", utc("2024-01-07T10:00:00Z")),
        (3, "omega", f"git:{person(ANN)}", utc("2024-01-08T10:00:00Z")),
    ]


def test_the_event_keeps_commit_and_merge_ids_every_author_and_both_dates(merged):
    repo, shas = merged

    replay(repo.path)

    first, erin, merge_feature = git_metadata("alpha")
    assert first["git"] == {
        "commit": shas["add"],
        "author": person(ANN),
        "authored_at": "2024-01-01T10:00:00+00:00",
        "authors": [person(ANN)],
        "committer": "Merge Bot <bot@example.com>",
        "committed_at": "2024-01-01T10:00:00+00:00",
    }
    assert "merge_commit" not in erin["git"] and erin["git"]["commit"] == shas["erin"]
    assert merge_feature["git_commit"] == shas["merge_feature"]  # what a re-run resumes after
    assert merge_feature["occurred_at"] == "2024-01-05T10:00:00+00:00"
    assert merge_feature["git"] == {
        "commit": shas["carol"],
        "author": person(CAROL),
        "authored_at": "2024-01-03T08:00:00+01:00",
        "authors": [person(CAROL), person(BOB)],  # newest first
        "committer": person(MIA),
        "committed_at": "2024-01-05T10:00:00+00:00",
        "merge_commit": shas["merge_feature"],
        "merged_by": person(MIA),
    }
    _, renamed, plain = git_metadata("omega")
    assert renamed["git_old_path"] == f"{AGENTS}/beta.md"
    assert (renamed["git"]["commit"], renamed["git"]["authors"], renamed["git"]["merge_commit"]) == (
        shas["dave"],
        [person(DAVE)],
        shas["merge_rename"],
    )
    assert plain["git"]["commit"] == shas["ann"] and "merged_by" not in plain["git"]
    # The merge of docs/ touched no agent file: nothing of it is stored.
    assert not Event.objects.filter(metadata__git_commit=shas["merge_docs"]).exists()
    assert not Event.objects.filter(metadata__git__commit=shas["docs"]).exists()
    assert provenance_from_metadata(merge_feature) == {"git": merge_feature["git"]}


def test_a_replay_runs_the_same_few_git_commands_however_many_merges_it_meets(merged, monkeypatch):
    repo, _ = merged
    calls: list[str] = []
    real_git = git_module._git

    def counting_git(path, *args):
        calls.append(args[0])
        return real_git(path, *args)

    monkeypatch.setattr(git_module, "_git", counting_git)

    replay(repo.path)

    # The root, the first-parent log, the commit graph, the log of every non-merge commit
    # (plus one `git cat-file --batch` process for the contents): not one per merge or file.
    assert sorted(calls) == ["log", "log", "rev-list", "rev-list"]


def test_a_rerun_after_new_merges_credits_them_like_a_first_run(merged):
    repo, _ = merged
    replay(repo.path)
    repo.git("checkout", "-q", "-b", "late")
    repo.write("alpha.md", lines_document("alpha", {2: "Line 2: by Bob.", 4: "Line 4: by Carol.", 7: "Dave"}))
    late = repo.commit("Dave edits alpha late", author=DAVE, when="2024-02-01T10:00:00Z")
    repo.git("checkout", "-q", "main")
    merged_late = merge(repo, "late", when="2024-02-02T10:00:00Z")

    out = replay(repo.path)

    assert "replayed 1 commits" in out
    newest = git_metadata("alpha")[-1]
    assert (newest["actor"], newest["git"]["commit"], newest["git"]["merge_commit"]) == (
        f"git:{person(DAVE)}",
        late,
        merged_late,
    )
