"""`provenance_from_metadata`: the API's `provenance` object from a revision's event metadata."""

from agents_app.provenance import provenance_from_metadata

GIT = {
    "commit": "c" * 40,
    "author": "Carol <carol@example.net>",
    "authored_at": "2024-01-03T08:00:00+01:00",
    "authors": ["Carol <carol@example.net>", "Bob <bob@example.org>"],
    "committer": "Mia <mia@example.com>",
    "committed_at": "2024-01-05T10:00:00+00:00",
    "merge_commit": "m" * 40,
    "merged_by": "Mia <mia@example.com>",
}


def test_a_replayed_change_gives_its_git_provenance_in_the_api_shape():
    metadata = {"actor": "git:Carol <carol@example.net>", "source": "git", "git_commit": "m" * 40, "git": GIT}

    assert provenance_from_metadata(metadata) == {"git": GIT}


def test_keys_outside_the_documented_shape_are_not_passed_on():
    metadata = {"git": {**GIT, "internal": "x"}}

    assert provenance_from_metadata(metadata) == {"git": GIT}


def test_changes_not_from_git_have_no_provenance():
    assert provenance_from_metadata({"actor": "alice", "source": "api", "reason": "fix"}) is None
    assert provenance_from_metadata({}) is None
    assert provenance_from_metadata(None) is None


def test_a_replay_stored_before_provenance_gives_what_it_recorded_and_nothing_made_up():
    metadata = {
        "actor": "git:Ann <ann@example.com>",
        "source": "git",
        "occurred_at": "2024-01-01T10:00:00+00:00",
        "git_commit": "a" * 40,
        "git_authored_at": "2024-01-01T09:00:00+00:00",
    }

    assert provenance_from_metadata(metadata) == {
        "git": {
            "commit": "a" * 40,
            "author": "Ann <ann@example.com>",
            "authors": ["Ann <ann@example.com>"],
            "authored_at": "2024-01-01T09:00:00+00:00",
            "committed_at": "2024-01-01T10:00:00+00:00",
        }
    }
